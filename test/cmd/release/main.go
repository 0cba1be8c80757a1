// Command release builds a csrguard release offline and reproducibly, and
// pushes its image and chart to OCI registries.
//
//	release build --version v0.1.0 [--output _output/release/v0.1.0]
//	release push --dir _output/release/v0.1.0 [--image-repo R] [--chart-repo oci://R]
//
// build writes, from the checked-out commit and the Go module cache only (no
// base image, no registry): the csrguard binary for each --platforms as
// .tar.gz (.zip for windows) with LICENSE and README.md; a multi-arch OCI
// image index (package test/ociimage: an empty base plus our own layers) as
// an OCI layout in one tar; the Helm chart packaged by the pinned helm;
// install.yaml, which is deploy/install.yaml with its image pinned to the
// index digest; a CycloneDX SBOM (cyclonedx-gomod); a krew plugin manifest
// pointing at the GitHub release's archives; and SHA256SUMS of them all.
// Every file time is SOURCE_DATE_EPOCH (default: the commit's time), every
// archive lists its entries sorted, and binaries are built with -trimpath,
// so two builds of one commit give the same SHA256SUMS.
//
// push copies the image index to --image-repo:<version> with
// go-containerregistry and the chart to --chart-repo with `helm push`.
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Fixed names of the project and its release assets.
const (
	module       = "github.com/csrguard/csrguard"
	source       = "https://" + module
	chartDir     = "deploy/helm/csrguard"
	installFile  = "deploy/install.yaml"
	defaultImage = "ghcr.io/csrguard/csrguard"
	defaultChart = "oci://ghcr.io/csrguard/charts"
)

// semver is vMAJOR.MINOR.PATCH with an optional pre-release, as in
// semver.org (no leading zeros, no build metadata: a "+" is not valid in an
// image tag).
var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$`)

func main() {
	var err error
	switch cmd := strings.Join(os.Args[1:2], ""); cmd {
	case "build":
		err = runBuild(os.Args[2:])
	case "push":
		err = runPush(os.Args[2:])
	default:
		err = fmt.Errorf("usage: release build|push [flags] (got %q)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// describeSuffix is what `git describe --tags --dirty` appends when HEAD is
// not exactly at a tag: valid semver pre-release syntax, but not a release.
var describeSuffix = regexp.MustCompile(`(-[0-9]+-g[0-9a-f]+)?(-dirty)?$`)

// checkVersion refuses anything but vMAJOR.MINOR.PATCH[-pre], and the
// versions git describe gives a commit after a tag or a modified tree.
func checkVersion(v string) error {
	if !semver.MatchString(v) {
		return fmt.Errorf("--version %q is not a semantic version vMAJOR.MINOR.PATCH[-pre] (tag the commit, e.g. git tag v0.1.0, or set VERSION=v0.1.0)", v)
	}
	if m := describeSuffix.FindString(v); m != "" {
		return fmt.Errorf("--version %q is git describe's name for a commit after a tag or a modified tree (%q), not a release: release a tagged commit", v, m)
	}
	return nil
}

// platform is one GOOS/GOARCH pair.
type platform struct{ os, arch string }

func (p platform) String() string { return p.os + "/" + p.arch }

func parsePlatforms(s string) ([]platform, error) {
	var out []platform
	for f := range strings.SplitSeq(s, ",") {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(f), "/")
		if !ok || !slices.Contains([]string{"linux", "darwin", "windows"}, goos) || !slices.Contains([]string{"amd64", "arm64"}, goarch) {
			return nil, fmt.Errorf("platform %q: want os/arch with os linux, darwin or windows and arch amd64 or arm64", f)
		}
		out = append(out, platform{goos, goarch})
	}
	return out, nil
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH, else the commit's time.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		out, err := exec.Command("git", "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("commit time (set SOURCE_DATE_EPOCH outside git): %w", err)
		}
		s = strings.TrimSpace(string(out))
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// archiveName is the name of a platform's archive.
func archiveName(version string, p platform) string {
	ext := ".tar.gz"
	if p.os == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("csrguard_%s_%s_%s%s", version, p.os, p.arch, ext)
}

// imageArchive, sbomFile, chartPackage and krewFile name the other assets.
func imageArchive(version string) string { return "csrguard_" + version + "_image.oci.tar" }
func sbomFile(version string) string     { return "csrguard_" + version + "_sbom.cdx.json" }
func chartPackage(version string) string {
	return "csrguard-" + strings.TrimPrefix(version, "v") + ".tgz"
}

const krewFile = "csrguard.yaml"

// goBuild builds cmd/csrguard for p, stamped with version, and returns it.
func goBuild(dir, version string, p platform) ([]byte, error) {
	out := filepath.Join(dir, p.os+"_"+p.arch, "csrguard")
	// -buildvcs=true: the commit goes into the binary (csrguard version shows
	// it) even where GOFLAGS or go env turn VCS stamping off; a release is
	// always built from a git checkout.
	cmd := exec.Command("go", "build", "-trimpath", "-mod=readonly", "-buildvcs=true",
		"-ldflags", "-s -w -buildid= -X "+module+"/internal/buildinfo.Version="+version,
		"-o", out, "./cmd/csrguard")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.os, "GOARCH="+p.arch, "GOFLAGS=", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", p, err, b)
	}
	return os.ReadFile(out)
}

// entry is one file of an archive.
type entry struct {
	name    string
	mode    int64
	content []byte
}

// tarGz returns a gzipped tar of entries in name order, every header fixed:
// time mtime, owner 0:0 without names.
func tarGz(entries []entry, mtime time.Time) ([]byte, error) {
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(e.content)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.content); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// zipOf returns a zip of entries in name order with fixed times.
func zipOf(entries []entry, mtime time.Time) ([]byte, error) {
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(fs.FileMode(e.mode))
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(e.content); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarDir returns an uncompressed tar of every file under dir, sorted, with
// fixed times: the OCI layout of the image index in one file.
func tarDir(dir string, mtime time.Time) ([]byte, error) {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(b)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// untar writes a tar's regular files under dir (for push: the OCI layout).
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.FromSlash(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !filepath.IsLocal(name) {
			return fmt.Errorf("unexpected entry %q in the image archive", hdr.Name)
		}
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
	}
}

// writeIndex writes idx as an OCI layout under a temporary directory and
// returns that layout as one tar.
func writeIndex(idx v1.ImageIndex, mtime time.Time) ([]byte, error) {
	dir, err := os.MkdirTemp("", "csrguard-release-oci-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := p.AppendIndex(idx); err != nil {
		return nil, err
	}
	return tarDir(dir, mtime)
}

// krewManifest is the krew plugin manifest (krew-index plugins/<name>.yaml).
var krewManifest = template.Must(template.New("krew").Parse(`apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: csrguard
spec:
  version: {{ .Version }}
  homepage: ` + source + `
  shortDescription: Explain, check and safely approve kubelet serving CSRs
  description: |
    csrguard approves a kubelet-serving certificate signing request only for
    names and addresses that are really its node's. As a kubectl plugin it
    explains why a CSR was or would be approved or denied, checks a cluster
    and its machine configs before kubelet serving-certificate rotation is
    turned on, and approves pending CSRs once with the same policy.
  platforms:
{{- range .Platforms }}
  - selector:
      matchLabels:
        os: {{ .OS }}
        arch: {{ .Arch }}
    uri: {{ .URI }}
    sha256: {{ .SHA256 }}
    bin: {{ .Bin }}
{{- end }}
`))

type krewPlatform struct{ OS, Arch, URI, SHA256, Bin string }

// downloadURL is where the GitHub release serves an asset.
func downloadURL(version, asset string) string {
	return source + "/releases/download/" + version + "/" + asset
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sha256Sums returns SHA256SUMS for files (name → content), sorted by name,
// in the format `sha256sum -c` reads.
func sha256Sums(files map[string][]byte) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", sha256Hex(files[n]), n)
	}
	return []byte(b.String())
}

// pinInstall returns deploy/install.yaml with its one image reference
// repo:version replaced by repo@digest.
func pinInstall(install []byte, repo, version string, digest v1.Hash) ([]byte, error) {
	tagged := fmt.Sprintf("image: %q\n", repo+":"+version)
	if n := bytes.Count(install, []byte(tagged)); n != 1 {
		return nil, fmt.Errorf("%s has %d lines %q, want exactly one: is the chart's appVersion %s (run make manifests)?", installFile, n, strings.TrimSpace(tagged), version)
	}
	return bytes.Replace(install, []byte(tagged), fmt.Appendf(nil, "image: %q\n", repo+"@"+digest.String()), 1), nil
}
