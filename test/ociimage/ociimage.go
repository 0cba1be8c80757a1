// Package ociimage builds csrguard's container image without a container
// engine and without pulling a base image: an empty base plus two layers
// that csrguard writes itself.
//
//  1. The base layer, what distroless/static:nonroot would provide:
//     /etc/passwd and /etc/group with root, nobody and nonroot (65532),
//     /home/nonroot, /tmp, and /etc/ssl/certs/ca-certificates.crt holding
//     the Mozilla NSS roots of golang.org/x/crypto/x509roots/fallback/bundle
//     (pinned by go.mod, so no network and no host file decides them).
//  2. The static csrguard binary at /csrguard.
//
// Every file time is the given creation time and every tar is written in a
// fixed order, so the same binary always gives the same image digest. The
// package owns the image's layout; test/cmd/ociimage (`make image`) and
// test/cmd/release (`make release`) write it out.
package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Fixed facts of the image, shared with the Dockerfile.
const (
	BinaryPath = "/csrguard"
	User       = "65532:65532" // distroless "nonroot"
	CAFile     = "/etc/ssl/certs/ca-certificates.crt"
)

// Passwd and Group are the image's /etc/passwd and /etc/group, as in
// distroless: numeric User above is what Kubernetes' runAsNonRoot checks,
// the names are for tools that look them up.
const (
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
)

// Labels are the OCI annotations recorded in the image config.
type Labels struct {
	Version  string
	Revision string
	Source   string
}

// Image returns csrguard's image for a static linux binary; its platform is
// the binary's architecture. created is the image's and every file's time.
func Image(bin []byte, created time.Time, l Labels) (v1.Image, error) {
	arch, err := StaticLinuxArch(bin)
	if err != nil {
		return nil, err
	}
	created = created.UTC()
	base, err := tarOf(baseFiles(), created)
	if err != nil {
		return nil, err
	}
	binary, err := tarOf([]file{{name: BinaryPath[1:], mode: 0o755, content: bin}}, created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []struct {
		tar             []byte
		createdBy, what string
	}{
		{base, "ADD passwd group ca-certificates.crt # test/ociimage", "users root, nobody, nonroot (65532); Mozilla NSS CA roots"},
		{binary, "COPY csrguard " + BinaryPath + " # test/ociimage", "static csrguard binary"},
	} {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(l.tar)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: l.createdBy, Comment: l.what},
		})
		if err != nil {
			return nil, fmt.Errorf("append layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = []string{"controller"}
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=" + CAFile}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "csrguard",
		"org.opencontainers.image.description": "Safe approver and monitor of kubelet serving certificates",
		"org.opencontainers.image.source":      l.Source,
		"org.opencontainers.image.url":         l.Source,
		"org.opencontainers.image.version":     l.Version,
		"org.opencontainers.image.revision":    l.Revision,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.base.name":   "scratch",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// Index returns an OCI image index of images, one manifest per platform, in
// the order given.
func Index(images ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
			},
		})
	}
	return idx, nil
}

// CABundle returns the PEM bundle of the NSS roots that carry no extra
// constraint: a PEM file cannot express a root's distrust-after date, so a
// constrained root is left out rather than trusted without its limit.
func CABundle() []byte {
	var buf bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return buf.Bytes()
}

type file struct {
	name    string
	mode    int64
	uid     int
	dir     bool
	content []byte
}

func baseFiles() []file {
	return []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, content: []byte(Group)},
		{name: "etc/passwd", mode: 0o644, content: []byte(Passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: CAFile[1:], mode: 0o644, content: CABundle()},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: 65532, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
}

// tarOf returns an uncompressed layer of files, in the order given, owned by
// root (unless uid says otherwise) so that the non-root user cannot replace
// them.
func tarOf(files []file, modTime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Mode:     f.mode,
			Size:     int64(len(f.content)),
			ModTime:  modTime,
			Uid:      f.uid,
			Gid:      f.uid,
			Format:   tar.FormatPAX,
		}
		if f.dir {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
		if _, err := tw.Write(f.content); err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// StaticLinuxArch returns the GOARCH of a statically linked linux ELF
// executable, and an error for anything else: an image on an empty base has
// no dynamic loader and no libc.
func StaticLinuxArch(bin []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable (build with GOOS=linux): %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (has an ELF interpreter): build with CGO_ENABLED=0")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return "", fmt.Errorf("needs shared libraries %v: build with CGO_ENABLED=0", libs)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("unsupported ELF machine %v", f.Machine)
}
