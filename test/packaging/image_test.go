package packaging

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// buildImage runs test/cmd/ociimage as `make image` does and returns the
// tarball's path.
func buildImage(t *testing.T, binary, tag string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "csrguard-image.tar")
	cmd := exec.Command(ociimageBinary(t), "--binary", binary, "--output", out, "--tag", tag,
		"--version", appVersion(t), "--revision", "0123456789abcdef0123456789abcdef01234567", "--created", "2026-01-02T03:04:05Z")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ociimage: %v\n%s", err, b)
	}
	return out
}

// TestImage builds the image tarball from a static csrguard binary and reads
// it back as a container runtime would: a non-root user, the expected
// entrypoint, a layer with passwd, group and CA roots, and one holding
// /csrguard, executable.
func TestImage(t *testing.T) {
	bin := csrguardBinary(t)
	tag := "ghcr.io/csrguard/csrguard:" + appVersion(t)
	path := buildImage(t, bin, tag)

	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		t.Fatalf("read image %s from %s: %v", tag, path, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, ok := strings.Cut(cf.Config.User, ":")
	if n, err := strconv.Atoi(uid); !ok || err != nil || n == 0 || uid != "65532" || gid != "65532" {
		t.Errorf("config User = %q, want the non-root 65532:65532 (numeric, so that runAsNonRoot can check it)", cf.Config.User)
	}
	if diff := cmp.Diff(cf.Config.Entrypoint, []string{"/csrguard"}); diff != "" {
		t.Errorf("Entrypoint (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(cf.Config.Cmd, []string{"controller"}); diff != "" {
		t.Errorf("Cmd (-got +want):\n%s", diff)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.title":    "csrguard",
		"org.opencontainers.image.source":   "https://github.com/csrguard/csrguard",
		"org.opencontainers.image.version":  appVersion(t),
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.created":  "2026-01-02T03:04:05Z",
	} {
		if got := cf.Config.Labels[label]; got != want {
			t.Errorf("label %s = %q, want %q", label, got, want)
		}
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("want two layers on an empty base (users and CA roots, the binary), got %d", len(layers))
	}
	base := layerFiles(t, layers[0])
	baseNames := keys(base)
	slices.Sort(baseNames)
	wantBase := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "home/", "home/nonroot/", "tmp/"}
	if diff := cmp.Diff(baseNames, wantBase); diff != "" {
		t.Errorf("base layer entries (-got +want):\n%s", diff)
	}
	if !strings.Contains(string(base["etc/passwd"].content), "nonroot:x:65532:65532:") || !strings.Contains(string(base["etc/group"].content), "nonroot:x:65532:") {
		t.Errorf("/etc/passwd and /etc/group lack nonroot 65532:\n%s%s", base["etc/passwd"].content, base["etc/group"].content)
	}
	// The CA bundle is a PEM file Go's crypto/x509 loads as the system roots.
	pool := x509.NewCertPool()
	if ca := base["etc/ssl/certs/ca-certificates.crt"].content; !pool.AppendCertsFromPEM(ca) || bytes.Count(ca, []byte("BEGIN CERTIFICATE")) < 100 {
		t.Errorf("/etc/ssl/certs/ca-certificates.crt holds %d certificates, want the NSS roots (over 100)", bytes.Count(ca, []byte("BEGIN CERTIFICATE")))
	}
	for name, f := range base {
		if f.hdr.Uid != 0 && name != "home/nonroot/" {
			t.Errorf("/%s is owned by %d, want root", name, f.hdr.Uid)
		}
	}
	files := layerFiles(t, layers[1])
	if len(files) != 1 {
		t.Errorf("binary layer holds %d entries, want only csrguard: %v", len(files), keys(files))
	}
	f, ok := files["csrguard"]
	if !ok {
		t.Fatalf("layer has no /csrguard: %v", keys(files))
	}
	if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o111 != 0o111 {
		t.Errorf("/csrguard: type %c mode %o, want a regular file executable by all", f.hdr.Typeflag, f.hdr.Mode)
	}
	if f.hdr.Uid != 0 || f.hdr.Mode&0o022 != 0 {
		t.Errorf("/csrguard: owner %d mode %o, want root-owned and not writable by the running user", f.hdr.Uid, f.hdr.Mode)
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(f.content) != sha256.Sum256(want) {
		t.Error("/csrguard in the layer is not the binary given")
	}

	// The binary in the image runs on its own: static, no libc, no loader.
	if runtime.GOOS == "linux" {
		extracted := filepath.Join(t.TempDir(), "csrguard")
		if err := os.WriteFile(extracted, f.content, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(extracted, "version").CombinedOutput()
		if err != nil {
			t.Errorf("/csrguard version from the image: %v\n%s", err, out)
		}
	}

	// Reproducible: the same binary gives the same image.
	again := buildImage(t, bin, tag)
	img2, err := tarball.ImageFromPath(again, &ref)
	if err != nil {
		t.Fatal(err)
	}
	d1, err1 := img.ConfigName()
	d2, err2 := img2.ConfigName()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("two builds of the same binary differ: %s and %s", d1, d2)
	}
}

// TestImageRefusesNonStaticBinary: the empty base has no loader, so anything
// but a static linux executable is refused rather than shipped broken.
func TestImageRefusesNonStaticBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "image.tar")
	b, err := exec.Command(ociimageBinary(t), "--binary", chartDir+"/Chart.yaml", "--output", out).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "not an ELF executable") {
		t.Errorf("ociimage with a non-executable: err %v, output %q; want a refusal", err, b)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused build left %s behind (%v)", out, err)
	}
}

type layerFile struct {
	hdr     *tar.Header
	content []byte
}

func layerFiles(t *testing.T, l v1.Layer) map[string]layerFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, tr); err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(hdr.Name, "/")] = layerFile{hdr: hdr, content: buf.Bytes()}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDockerfileMatchesImage: the Dockerfile, for container engines, builds
// the image test/cmd/ociimage builds: static binary, distroless non-root base,
// same path, user, entrypoint and command.
func TestDockerfileMatchesImage(t *testing.T) {
	df := readFile(t, repoRoot+"/Dockerfile")
	for _, want := range []string{
		"FROM gcr.io/distroless/static:nonroot\n",
		"CGO_ENABLED=0",
		"go build -trimpath",
		"COPY --from=build /out/csrguard /csrguard\n",
		"USER 65532:65532\n",
		`ENTRYPOINT ["/csrguard"]` + "\n",
		`CMD ["controller"]` + "\n",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
	if !strings.HasPrefix(strings.TrimSpace(strings.Split(df, "FROM ")[1]), "--platform=$BUILDPLATFORM golang:${GO_VERSION} AS build") {
		t.Error("the Dockerfile's first stage is not the golang build stage")
	}
}
