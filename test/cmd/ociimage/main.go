// Command ociimage builds csrguard's container image for one architecture
// without a container engine (package test/ociimage: an empty base, a layer
// with passwd, group and CA roots, a layer with the static binary at
// /csrguard; user 65532:65532, entrypoint ["/csrguard"], command
// ["controller"], as the Dockerfile describes). It writes the image as a
// tarball that `docker load`, `podman load` and `crane push` accept. `make
// release` builds the multi-arch index of the same images.
//
// The output is reproducible: file times and the creation time are --created,
// so the same binary always gives the same image digest.
//
//	go run ./test/cmd/ociimage --binary _output/image/csrguard \
//	    --tag ghcr.io/csrguard/csrguard:v0.1.0 --output _output/csrguard-image.tar
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/csrguard/csrguard/test/ociimage"
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
	flag.StringVar(&o.binary, "binary", "", "Static linux csrguard binary to put at "+ociimage.BinaryPath+". Required.")
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
	img, err := ociimage.Image(bin, created, ociimage.Labels{Version: o.version, Revision: o.revision, Source: o.source})
	if err != nil {
		return fmt.Errorf("--binary %s: %w", o.binary, err)
	}
	cf, err := img.ConfigFile()
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
	fmt.Printf("wrote %s: %s linux/%s, image ID %s\n", o.output, ref, cf.Architecture, id)
	return nil
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
