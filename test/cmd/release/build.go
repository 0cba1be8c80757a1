package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/csrguard/csrguard/test/ociimage"
)

type buildOptions struct {
	version        string
	output         string
	platforms      string
	imagePlatforms string
	imageRepo      string
	helm           string
	cyclonedx      string
	allowDirty     bool
}

func runBuild(args []string) error {
	var o buildOptions
	fl := flag.NewFlagSet("release build", flag.ContinueOnError)
	fl.StringVar(&o.version, "version", "", "Release version vMAJOR.MINOR.PATCH[-pre]; Chart.yaml's appVersion must be the same. Required.")
	fl.StringVar(&o.output, "output", "", "Directory to write the release to; default _output/release/<version>. Emptied first.")
	fl.StringVar(&o.platforms, "platforms", "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64,windows/arm64", "Platforms of the binary archives.")
	fl.StringVar(&o.imagePlatforms, "image-platforms", "linux/amd64,linux/arm64", "Platforms of the image index (linux only).")
	fl.StringVar(&o.imageRepo, "image-repo", defaultImage, "Image repository install.yaml pins the index digest in.")
	fl.StringVar(&o.helm, "helm", filepath.Join(os.Getenv("CSRGUARD_TOOLS_BIN"), "helm"), "The pinned helm (hack/build-tools.sh) that packages the chart.")
	fl.StringVar(&o.cyclonedx, "cyclonedx-gomod", "", "cyclonedx-gomod (hack/build-sbom.sh) that writes the SBOM; empty: no SBOM.")
	fl.BoolVar(&o.allowDirty, "allow-dirty", false, "Build from a tree with uncommitted changes (tests): the release is then not the commit's.")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := checkVersion(o.version); err != nil {
		return err
	}
	dirty, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return fmt.Errorf("git status: %w", err)
	}
	if len(dirty) > 0 {
		if !o.allowDirty {
			return fmt.Errorf("the tree has uncommitted changes: a release is built from a commit\n%s", dirty)
		}
		fmt.Fprintln(os.Stderr, "release: building from a modified tree (--allow-dirty)")
	}
	if o.output == "" {
		o.output = filepath.Join("_output", "release", o.version)
	}
	platforms, err := parsePlatforms(o.platforms)
	if err != nil {
		return fmt.Errorf("--platforms: %w", err)
	}
	imagePlatforms, err := parsePlatforms(o.imagePlatforms)
	if err != nil {
		return fmt.Errorf("--image-platforms: %w", err)
	}
	mtime, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return fmt.Errorf("git rev-parse HEAD: %w", err)
	}
	if err := checkChart(o.version); err != nil {
		return err
	}
	start := time.Now()
	r := &release{o: o, mtime: mtime, revision: strings.TrimSpace(string(rev)), files: map[string][]byte{}, binaries: map[platform][]byte{}}
	work, err := os.MkdirTemp("", "csrguard-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r.work = work

	steps := []struct {
		name string
		do   func() error
	}{
		{"binaries " + o.platforms, func() error { return r.archives(platforms) }},
		{"image index " + o.imagePlatforms, func() error { return r.image(imagePlatforms) }},
		{"chart", r.chart},
		{"SBOM", r.sbom},
		{"krew manifest", func() error { return r.krew(platforms) }},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(os.Stderr, "release: %s in %s\n", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	return r.write(start)
}

// checkChart refuses a release whose chart names another version: the
// chart's appVersion is what install.yaml, the runbook URLs and the default
// image tag pin, so it is set (and `make manifests` run) before tagging.
func checkChart(version string) error {
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	for key, want := range map[string]string{"version": strings.TrimPrefix(version, "v"), "appVersion": version} {
		m := regexp.MustCompile(`(?m)^` + key + `: *"?([^"\n]*)"?$`).FindSubmatch(b)
		if m == nil || string(m[1]) != want {
			return fmt.Errorf("%s/Chart.yaml: %s is not %s: set version %s and appVersion %s, run make manifests, commit, then release",
				chartDir, key, want, strings.TrimPrefix(version, "v"), version)
		}
	}
	return nil
}

// release is one build in progress: files are the assets by name.
type release struct {
	o        buildOptions
	mtime    time.Time
	revision string
	work     string
	files    map[string][]byte
	binaries map[platform][]byte
	digest   v1.Hash
}

// binary builds p once per release (the linux archives and the image share
// their binaries).
func (r *release) binary(p platform) ([]byte, error) {
	if b, ok := r.binaries[p]; ok {
		return b, nil
	}
	b, err := goBuild(r.work, r.o.version, p)
	if err == nil {
		r.binaries[p] = b
	}
	return b, err
}

func (r *release) archives(platforms []platform) error {
	license, err := os.ReadFile("LICENSE")
	if err != nil {
		return err
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		return err
	}
	for _, p := range platforms {
		bin, err := r.binary(p)
		if err != nil {
			return err
		}
		name := "csrguard"
		if p.os == "windows" {
			name += ".exe"
		}
		entries := []entry{{name, 0o755, bin}, {"LICENSE", 0o644, license}, {"README.md", 0o644, readme}}
		var archive []byte
		if p.os == "windows" {
			archive, err = zipOf(entries, r.mtime)
		} else {
			archive, err = tarGz(entries, r.mtime)
		}
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		r.files[archiveName(r.o.version, p)] = archive
	}
	return nil
}

func (r *release) image(platforms []platform) error {
	var images []v1.Image
	for _, p := range platforms {
		if p.os != "linux" {
			return fmt.Errorf("image platform %s: the image is linux only", p)
		}
		bin, err := r.binary(p)
		if err != nil {
			return err
		}
		img, err := ociimage.Image(bin, r.mtime, ociimage.Labels{Version: r.o.version, Revision: r.revision, Source: source})
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	idx, err := ociimage.Index(images...)
	if err != nil {
		return err
	}
	if r.digest, err = idx.Digest(); err != nil {
		return err
	}
	b, err := writeIndex(idx, r.mtime)
	if err != nil {
		return err
	}
	r.files[imageArchive(r.o.version)] = b
	return nil
}

// chart packages the chart with helm, rewrites the package with fixed times
// and sorted entries, pins install.yaml to the image digest, and checks that
// the package renders exactly install.yaml's objects.
func (r *release) chart() error {
	dir := filepath.Join(r.work, "chart")
	if _, err := r.helm("package", chartDir, "--version", strings.TrimPrefix(r.o.version, "v"), "--app-version", r.o.version, "--destination", dir); err != nil {
		return err
	}
	name := chartPackage(r.o.version)
	tgz, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if tgz, err = normalizeTarGz(tgz, r.mtime); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	r.files[name] = tgz
	if err := os.WriteFile(filepath.Join(dir, name), tgz, 0o644); err != nil {
		return err
	}

	install, err := os.ReadFile(installFile)
	if err != nil {
		return err
	}
	pinned, err := pinInstall(install, r.o.imageRepo, r.o.version, r.digest)
	if err != nil {
		return err
	}
	rendered, err := r.helm("template", "csrguard", filepath.Join(dir, name), "--namespace", "csrguard",
		"--set", "image.repository="+r.o.imageRepo, "--set", "image.digest="+r.digest.String())
	if err != nil {
		return err
	}
	if !bytes.Contains(pinned, rendered) {
		return fmt.Errorf("%s, pinned to %s, is not what the packaged chart renders: run make manifests", installFile, r.digest)
	}
	r.files["install.yaml"] = pinned
	return nil
}

// helm runs the pinned helm with a private home, so that no user
// configuration changes what it packages or renders.
func (r *release) helm(args ...string) ([]byte, error) {
	home := filepath.Join(r.work, "helm-home")
	cmd := exec.Command(r.o.helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", args[0], err, stderr.Bytes())
	}
	return out, nil
}

// normalizeTarGz rewrites a gzipped tar with entries sorted by name and
// every time mtime: helm package stamps the time of packaging.
func normalizeTarGz(tgz []byte, mtime time.Time) ([]byte, error) {
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	var entries []entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("unexpected entry %q of type %c", hdr.Name, hdr.Typeflag)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{hdr.Name, 0o644, b})
	}
	return tarGz(entries, mtime)
}

// sbom writes the CycloneDX SBOM of cmd/csrguard for linux/amd64 (the
// module set is the same on every platform the release builds).
// cyclonedx-gomod reads the main module's version from git with go-git,
// which cannot read a git worktree's HEAD and names an untagged commit by a
// pseudo-version: so it runs on a one-commit copy of the commit, tagged
// there (only there) with the release version.
func (r *release) sbom() error {
	if r.o.cyclonedx == "" {
		fmt.Fprintln(os.Stderr, "release: no --cyclonedx-gomod: no SBOM")
		return nil
	}
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return fmt.Errorf("git rev-parse --show-toplevel: %w", err)
	}
	src := filepath.Join(r.work, "src")
	for _, args := range [][]string{
		{"init", "-q", src},
		{"-C", src, "fetch", "-q", "--depth=1", "--no-tags", "file://" + strings.TrimSpace(string(root)), r.revision},
		{"-C", src, "checkout", "-q", "--detach", r.revision},
		{"-C", src, "tag", r.o.version},
	} {
		if b, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, b)
		}
	}
	out := filepath.Join(r.work, "sbom.json")
	cmd := exec.Command(r.o.cyclonedx, "app", "-json", "-noserial", "-notimestamp", "-licenses", "-main", "cmd/csrguard", "-output", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=readonly", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cyclonedx-gomod: %w\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	r.files[sbomFile(r.o.version)] = b
	return nil
}

func (r *release) krew(platforms []platform) error {
	var ps []krewPlatform
	for _, p := range platforms {
		name := archiveName(r.o.version, p)
		bin := "csrguard"
		if p.os == "windows" {
			bin += ".exe"
		}
		ps = append(ps, krewPlatform{OS: p.os, Arch: p.arch, URI: downloadURL(r.o.version, name), SHA256: sha256Hex(r.files[name]), Bin: bin})
	}
	var b bytes.Buffer
	if err := krewManifest.Execute(&b, struct {
		Version   string
		Platforms []krewPlatform
	}{r.o.version, ps}); err != nil {
		return err
	}
	r.files[krewFile] = b.Bytes()
	return nil
}

// write replaces the output directory with the assets and SHA256SUMS.
func (r *release) write(start time.Time) error {
	sums := sha256Sums(r.files)
	if err := os.RemoveAll(r.o.output); err != nil {
		return err
	}
	if err := os.MkdirAll(r.o.output, 0o755); err != nil {
		return err
	}
	r.files["SHA256SUMS"] = sums
	for name, b := range r.files {
		if err := os.WriteFile(filepath.Join(r.o.output, name), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("csrguard %s (commit %s, SOURCE_DATE_EPOCH %d) in %s, built in %s\nimage index %s@%s\n%s",
		r.o.version, r.revision, r.mtime.Unix(), r.o.output, time.Since(start).Round(time.Second), r.o.imageRepo, r.digest, sums)
	return nil
}
