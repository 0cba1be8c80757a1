package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/csrguard/csrguard/test/netns"
)

// buildDir holds the binaries built for this test run; TestMain removes it.
var buildDir string

// TestMain runs the tests in a private network namespace (netns), as the e2e
// suite does, so the installed csrguard runs its production policy.
func TestMain(m *testing.M) {
	os.Exit(netns.RunTests(m, func() (func(), error) {
		dir, err := os.MkdirTemp("", "csrguard-packaging-")
		if err != nil {
			return nil, err
		}
		buildDir = dir
		return func() { os.RemoveAll(dir) }, nil
	}))
}

// goBuild builds pkg into buildDir/out with env added, once per output name.
func goBuild(t testing.TB, out, pkg string, env ...string) string {
	t.Helper()
	b := builds.get(out)
	b.once.Do(func() {
		b.path = filepath.Join(buildDir, out)
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.path, pkg)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, stderr.String())
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

type build struct {
	once sync.Once
	path string
	err  error
}

type buildSet struct {
	mu sync.Mutex
	m  map[string]*build
}

func (s *buildSet) get(name string) *build {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*build{}
	}
	if s.m[name] == nil {
		s.m[name] = &build{}
	}
	return s.m[name]
}

var builds buildSet

// csrguardBinary is csrguard built as `make image` builds it: static
// (CGO_ENABLED=0), for linux on this machine's architecture.
func csrguardBinary(t testing.TB) string {
	return goBuild(t, "csrguard", "github.com/csrguard/csrguard/cmd/csrguard", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
}

// ociimageBinary is the image builder, test/cmd/ociimage.
func ociimageBinary(t testing.TB) string {
	return goBuild(t, "ociimage", "github.com/csrguard/csrguard/test/cmd/ociimage")
}
