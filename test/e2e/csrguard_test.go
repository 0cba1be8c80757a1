package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/netns"
)

// csrguardBin is the csrguard binary built once for all tests by TestMain.
var csrguardBin string

// TestMain runs the tests in a private network namespace (netns), where
// kubelets have addresses from the documentation ranges and csrguard runs
// with its production policy, and builds csrguard once for them. Under
// -short it builds nothing: every test here needs a control plane and skips.
func TestMain(m *testing.M) {
	os.Exit(netns.RunTests(m, buildCSRGuard))
}

func buildCSRGuard() (func(), error) {
	// RunTests has parsed the flags. Under -short every test skips before it
	// needs the binary, and the build alone took most of the run.
	if testing.Short() {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "csrguard-e2e-")
	if err != nil {
		return nil, err
	}
	csrguardBin = filepath.Join(dir, "csrguard")
	build := exec.Command("go", "build", "-o", csrguardBin, "github.com/csrguard/csrguard/cmd/csrguard")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build csrguard: %w", err)
	}
	return func() { os.RemoveAll(dir) }, nil
}

// guard is a csrguard controller process started by a test.
type guard struct {
	*controlplane.Process
	log     string
	metrics string // http://host:port/metrics
	health  string // http://host:port
}

// startCSRGuard runs `csrguard controller` against c as an administrator (or as c.guardConfig),
// with the production policy, short settle and retry times, and extra flags. It waits until /readyz is ok
// unless waitReady is false.
func (c *cluster) startCSRGuard(ctx context.Context, name string, waitReady bool, extra ...string) *guard {
	c.t.Helper()
	dir := c.t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := c.guardConfig
	if cfg == nil {
		cfg = c.cp.AdminConfig()
	}
	if err := controlplane.WriteKubeconfig(kubeconfig, cfg); err != nil {
		c.t.Fatal(err)
	}
	g := &guard{log: filepath.Join(dir, name+".log")}
	mport, hport := controlplane.FreePort(), controlplane.FreePort()
	g.metrics = "http://127.0.0.1:" + strconv.Itoa(mport) + "/metrics"
	g.health = "http://127.0.0.1:" + strconv.Itoa(hport)
	args := append([]string{
		"controller", "--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(mport),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(hport),
		"--address-settle-time=3s", "--hold-retry=1s",
	}, extra...)
	p, err := controlplane.StartProcess(csrguardBin, args, g.log)
	if err != nil {
		c.t.Fatal(err)
	}
	g.Process = p
	c.t.Cleanup(func() {
		_ = p.Stop()
		if c.t.Failed() {
			c.t.Logf("--- %s log tail:\n%s", name, controlplane.Tail(g.log, 60))
		}
	})
	if waitReady {
		controlplane.Eventually(c.t, ctx, name+" ready", func() bool { return g.ready(ctx) })
	}
	return g
}

func (g *guard) ready(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.health+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
