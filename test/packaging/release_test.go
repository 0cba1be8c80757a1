package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/netns"
)

// releaseBinary is the release builder, test/cmd/release.
func releaseBinary(t testing.TB) string {
	return goBuild(t, "release", "github.com/csrguard/csrguard/test/cmd/release")
}

// runRelease runs test/cmd/release from the repository root with a private
// helm home, and logs its output.
func runRelease(t *testing.T, args ...string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(releaseBinary(t), args...)
	cmd.Dir = repoRoot
	cmd.Env = helmEnv(home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("release %s: %v\n%s%s", args[0], err, stdout.String(), stderr.String())
	}
	t.Logf("release %s:\n%s%s", args[0], stderr.String(), stdout.String())
}

// TestReleaseVersions: make release refuses a VERSION that is not a
// release's semantic version, including what git describe gives a commit
// after a tag.
func TestReleaseVersions(t *testing.T) {
	for _, v := range []string{"0.1.0", "v0.1", "v01.2.3", "v1.2.3+build.1", "v0.1.0-3-g99e5fd9", "v0.1.0-dirty", "99e5fd9", "dev", ""} {
		out, err := exec.Command(releaseBinary(t), "build", "--version", v).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--version") {
			t.Errorf("release build --version %q: err %v, output %q; want a refusal naming --version", v, err, out)
		}
	}
}

// TestRelease builds a release as `make release` does, for this machine's
// platform only (the binary archive, and an image index of the one linux
// image: arm64's build would compile every dependency again, over 20
// minutes on a cold 2-core machine; `make release` builds both through the
// same code, see docs/releasing.md), no SBOM, pushes its image index and chart to a registry in this process,
// pulls them back, installs the chart from oci:// with helm into a real API
// server, and runs the csrguard binary taken out of the pulled image for
// this machine with the installed ServiceAccount's token: it must report the
// release's version and approve the kubelets' CSRs.
func TestRelease(t *testing.T) {
	version := appVersion(t)
	host := "linux/" + runtime.GOARCH
	dir := filepath.Join(t.TempDir(), version)
	out, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	build := []string{"build", "--version", version, "--platforms", host, "--image-platforms", host,
		"--helm", helmBin(t), "--allow-dirty"}
	runRelease(t, append(build, "--output", out)...)
	assets := checkReleaseFiles(t, out, version, host)
	checkReadmeURLs(t, assets, version)

	// Push to a registry on loopback, as `make release-push` pushes to ghcr.io.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	imageRepo := reg + "/csrguard/csrguard"
	runRelease(t, "push", "--dir", out, "--image-repo", imageRepo, "--chart-repo", "oci://"+reg+"/charts", "--helm", helmBin(t), "--plain-http")

	// The index pulled back is the one install.yaml pins.
	digest := installDigest(t, assets["install.yaml"])
	ref, err := name.NewTag(imageRepo+":"+version, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if got, err := idx.Digest(); err != nil || got.String() != digest {
		t.Fatalf("pulled index %s has digest %v (%v), install.yaml pins %s", ref, got, err, digest)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
	}
	if diff := cmp.Diff(platforms, []string{host}); diff != "" {
		t.Errorf("image index platforms (-got +want):\n%s", diff)
	}

	// Install the chart from oci:// into a namespace labelled as the README
	// says, with the image of the registry it was pushed to.
	cp := controlplane.StartForTest(t, controlplane.Options{})
	ctx := controlplane.Deadline(t, 3*time.Minute)
	admin, err := kubernetes.NewForConfig(cp.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := controlplane.WriteKubeconfig(kubeconfig, cp.AdminConfig()); err != nil {
		t.Fatal(err)
	}
	chartVersion := strings.TrimPrefix(version, "v")
	if out, err := runHelm(t, "install", releaseName, "oci://"+reg+"/charts/csrguard", "--version", chartVersion, "--plain-http",
		"--namespace", releaseNamespace, "--kubeconfig", kubeconfig,
		"--set", "image.repository="+imageRepo, "--set", "image.digest="+digest); err != nil {
		t.Fatalf("helm install from oci://%s/charts/csrguard: %v", reg, err)
	} else {
		t.Logf("helm install:\n%s", out)
	}
	dep, err := admin.AppsV1().Deployments(releaseNamespace).Get(ctx, "csrguard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := container(t, dep).Image, imageRepo+"@"+digest; got != want {
		t.Errorf("installed Deployment's image = %q, want %q", got, want)
	}
	if got := dep.Labels["helm.sh/chart"]; got != "csrguard-"+chartVersion {
		t.Errorf("installed chart label helm.sh/chart = %q, want csrguard-%s", got, chartVersion)
	}

	// The binary for this machine, from the image the Deployment names.
	bin := binaryFromImage(t, container(t, dep).Image)
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.Contains(string(out), version) || strings.Contains(string(out), "revision unknown") {
		t.Fatalf("csrguard version from the pulled image: %q (%v), want %s and the commit", out, err, version)
	}

	t.Run("pod_passes_restricted_pod_security", func(t *testing.T) {
		checkPodAdmitted(t, controlplane.Deadline(t, time.Minute), admin, dep)
	})
	t.Run("controller_runs_as_service_account", func(t *testing.T) {
		runAsServiceAccount(t, controlplane.Deadline(t, 2*time.Minute), cp, admin, bin, dep, netns.NewPool())
	})
}

// checkReleaseFiles checks a release directory built for the host platform:
// the asset list, SHA256SUMS, the archive's contents and the krew manifest.
// It returns the assets by name.
func checkReleaseFiles(t *testing.T, dir, version, host string) map[string][]byte {
	t.Helper()
	archive := "csrguard_" + version + "_" + strings.ReplaceAll(host, "/", "_") + ".tar.gz"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	assets := map[string][]byte{}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		assets[e.Name()] = readBytes(t, filepath.Join(dir, e.Name()))
	}
	want := []string{"SHA256SUMS", "csrguard-" + strings.TrimPrefix(version, "v") + ".tgz", "csrguard.yaml", archive, "csrguard_" + version + "_image.oci.tar", "install.yaml"}
	slices.Sort(want)
	if diff := cmp.Diff(names, want); diff != "" {
		t.Fatalf("release files (-got +want):\n%s", diff)
	}

	var sums []string
	for _, n := range want {
		if n != "SHA256SUMS" {
			sum := sha256.Sum256(assets[n])
			sums = append(sums, hex.EncodeToString(sum[:])+"  "+n+"\n")
		}
	}
	if diff := cmp.Diff(string(assets["SHA256SUMS"]), strings.Join(sums, "")); diff != "" {
		t.Errorf("SHA256SUMS (-got +want):\n%s", diff)
	}

	files := keys(tarGzFiles(t, assets[archive]))
	slices.Sort(files)
	if diff := cmp.Diff(files, []string{"LICENSE", "README.md", "csrguard"}); diff != "" {
		t.Errorf("%s entries (-got +want):\n%s", archive, diff)
	}
	sum := sha256.Sum256(assets[archive])
	krew := string(assets["csrguard.yaml"])
	for _, line := range []string{
		"kind: Plugin\n",
		"  version: " + version + "\n",
		"    uri: https://github.com/csrguard/csrguard/releases/download/" + version + "/" + archive + "\n",
		"    sha256: " + hex.EncodeToString(sum[:]) + "\n",
		"    bin: csrguard\n",
	} {
		if !strings.Contains(krew, line) {
			t.Errorf("krew manifest csrguard.yaml lacks %q:\n%s", line, krew)
		}
	}

	// install.yaml is deploy/install.yaml with the image pinned by digest.
	digest := installDigest(t, assets["install.yaml"])
	tagged := `image: "ghcr.io/csrguard/csrguard:` + version + `"`
	pinned := `image: "ghcr.io/csrguard/csrguard@` + digest + `"`
	if got, want := string(assets["install.yaml"]), strings.Replace(readFile(t, installFile), tagged, pinned, 1); got != want {
		t.Errorf("install.yaml is not deploy/install.yaml with %s:\n%s", pinned, cmp.Diff(got, want))
	}
	return assets
}

// checkReadmeURLs: every release download the README names is an asset
// of this release (the SBOM aside, which this test does not build), and
// every OCI chart it names is where make release-push pushes the chart.
func checkReadmeURLs(t *testing.T, assets map[string][]byte, version string) {
	t.Helper()
	readme := readFile(t, repoRoot+"/README.md")
	downloads := regexp.MustCompile("https://github\\.com/csrguard/csrguard/releases/download/([^/\\s]+)/([^\\s)`\"]+)").FindAllStringSubmatch(readme, -1)
	checked := 0
	for _, m := range downloads {
		if strings.HasPrefix(m[1], "<") { // releases/download/<new version>/…
			continue
		}
		if m[1] != version {
			t.Errorf("README names %s: version %s, want the chart's %s", m[0], m[1], version)
		}
		if _, ok := assets[m[2]]; !ok && !strings.HasSuffix(m[2], "_sbom.cdx.json") {
			t.Errorf("README names %s, which the release does not produce (%v)", m[0], keys(assets))
		}
		checked++
	}
	if checked == 0 {
		t.Error("README names no release download: the check proves nothing")
	}
	for _, ref := range regexp.MustCompile("oci://[^\\s`\"]+").FindAllString(readme, -1) {
		if ref != "oci://ghcr.io/csrguard/charts/csrguard" {
			t.Errorf("README names chart %s; make release-push pushes oci://ghcr.io/csrguard/charts/csrguard", ref)
		}
	}
}

var digestLine = regexp.MustCompile(`image: "[^"@]+@(sha256:[0-9a-f]{64})"`)

// installDigest returns the image digest install.yaml pins.
func installDigest(t *testing.T, install []byte) string {
	t.Helper()
	m := digestLine.FindAllSubmatch(install, -1)
	if len(m) != 1 {
		t.Fatalf("install.yaml has %d images pinned by digest, want 1", len(m))
	}
	return string(m[0][1])
}

// binaryFromImage pulls ref from the registry and writes the /csrguard of
// its manifest for this machine's platform to a file.
func binaryFromImage(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if f, ok := layerFiles(t, l)["csrguard"]; ok {
			path := filepath.Join(t.TempDir(), "csrguard")
			if err := os.WriteFile(path, f.content, 0o755); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	t.Fatalf("no /csrguard in any layer of %s", ref)
	return ""
}

// tarGzFiles returns the regular files of a .tar.gz by name.
func tarGzFiles(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = c
	}
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
