// Command ociimage builds csrguard's container image without a container
// engine: one layer holding a static csrguard binary at /csrguard on an empty
// base, run as user 65532:65532 with entrypoint ["/csrguard"] and command
// ["controller"], the same image the Dockerfile describes. It writes the
// image as a tarball that `docker load`, `podman load` and `crane push`
// accept.
//
// The output is reproducible: file times and the creation time are --created,
// so the same binary always gives the same image digest.
//
//	go run ./test/cmd/ociimage --binary _output/image/csrguard \
//	    --tag ghcr.io/csrguard/csrguard:v0.1.0 --output _output/csrguard-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Fixed facts of the image, shared with the Dockerfile.
const (
	binaryPath = "/csrguard"
	user       = "65532:65532" // distroless "nonroot"
)

type options struct {
	binary   string
	output   string
	tag      string
	version  string
	revision string
	source   string
	created  string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "Static linux csrguard binary to put at "+binaryPath+". Required.")
	flag.StringVar(&o.output, "output", "", "Image tarball to write. Required.")
	flag.StringVar(&o.tag, "tag", "ghcr.io/csrguard/csrguard:dev", "Image reference recorded in the tarball.")
	flag.StringVar(&o.version, "version", "dev", "Value of the org.opencontainers.image.version label.")
	flag.StringVar(&o.revision, "revision", "", "Value of the org.opencontainers.image.revision label (a commit).")
	flag.StringVar(&o.source, "source", "https://github.com/csrguard/csrguard", "Value of the org.opencontainers.image.source label.")
	flag.StringVar(&o.created, "created", "1970-01-01T00:00:00Z", "Creation time (RFC 3339) of the image and its files; a commit time keeps builds reproducible.")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.binary == "" || o.output == "" {
		return errors.New("--binary and --output are required")
	}
	created, err := time.Parse(time.RFC3339, o.created)
	if err != nil {
		return fmt.Errorf("--created: %w", err)
	}
	created = created.UTC()
	ref, err := name.NewTag(o.tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return fmt.Errorf("--binary: %w", err)
	}
	arch, err := staticLinuxArch(bin)
	if err != nil {
		return fmt.Errorf("--binary %s: %w", o.binary, err)
	}
	img, err := build(bin, arch, created, o)
	if err != nil {
		return err
	}
	if err := writeTarball(o.output, ref, img); err != nil {
		return err
	}
	// The config digest is the image ID `docker load` and `podman load`
	// report; the manifest digest depends on how the tarball is pushed.
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s linux/%s, image ID %s\n", o.output, ref, arch, id)
	return nil
}

// build assembles the image: an OCI manifest with one gzipped layer.
func build(bin []byte, arch string, created time.Time, o options) (v1.Image, error) {
	layerTar, err := tarOf(binaryPath[1:], bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "COPY csrguard " + binaryPath + " # test/cmd/ociimage",
			Comment:   "static csrguard binary",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: created}
	cf.Config.User = user
	cf.Config.Entrypoint = []string{binaryPath}
	cf.Config.Cmd = []string{"controller"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "csrguard",
		"org.opencontainers.image.description": "Safe approver and monitor of kubelet serving certificates",
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.url":         o.source,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// tarOf returns an uncompressed layer holding one executable file, owned by
// root so that the non-root user cannot replace it.
func tarOf(path string, content []byte, modTime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path,
		Mode:     0o755,
		Size:     int64(len(content)),
		ModTime:  modTime,
		Uid:      0,
		Gid:      0,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	if _, err := tw.Write(content); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// staticLinuxArch returns the GOARCH of a statically linked linux ELF
// executable, and an error for anything else: an image on an empty base has
// no dynamic loader and no libc.
func staticLinuxArch(bin []byte) (string, error) {
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

// writeTarball writes the image next to path and renames it into place, so
// an interrupted build never leaves a truncated tarball behind.
func writeTarball(path string, ref name.Tag, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
