package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type pushOptions struct {
	dir       string
	imageRepo string
	chartRepo string
	helm      string
	plainHTTP bool
}

// runPush pushes a built release: the image index as <image-repo>:<version>
// (credentials from the Docker config, as `docker login` or `crane auth
// login` write them) and
// the chart with `helm push` to <chart-repo>/csrguard:<chart version>
// (credentials from `helm registry login`). It prints both references with
// their digests.
func runPush(args []string) error {
	var o pushOptions
	fl := flag.NewFlagSet("release push", flag.ContinueOnError)
	fl.StringVar(&o.dir, "dir", "", "A release directory written by release build, e.g. _output/release/v0.1.0. Required.")
	fl.StringVar(&o.imageRepo, "image-repo", defaultImage, "Repository to push the image index to, tagged with the version.")
	fl.StringVar(&o.chartRepo, "chart-repo", defaultChart, "OCI repository (oci://...) to push the chart to.")
	fl.StringVar(&o.helm, "helm", filepath.Join(os.Getenv("CSRGUARD_TOOLS_BIN"), "helm"), "The pinned helm (hack/build-tools.sh).")
	fl.BoolVar(&o.plainHTTP, "plain-http", false, "Talk HTTP, not HTTPS, to both registries (a registry on loopback in tests).")
	if err := fl.Parse(args); err != nil {
		return err
	}
	version := filepath.Base(filepath.Clean(o.dir))
	if err := checkVersion(version); err != nil {
		return fmt.Errorf("--dir must end in the release's version: %w", err)
	}

	var nameOpts []name.Option
	if o.plainHTTP {
		nameOpts = append(nameOpts, name.Insecure)
	}
	tag, err := name.NewTag(o.imageRepo+":"+version, nameOpts...)
	if err != nil {
		return fmt.Errorf("--image-repo: %w", err)
	}
	f, err := os.Open(filepath.Join(o.dir, imageArchive(version)))
	if err != nil {
		return err
	}
	defer f.Close()
	oci, err := os.MkdirTemp("", "csrguard-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(oci)
	if err := untar(f, oci); err != nil {
		return err
	}
	outer, err := layout.ImageIndexFromPath(oci)
	if err != nil {
		return err
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) != 1 {
		return fmt.Errorf("%s holds %d indexes, want 1", imageArchive(version), len(m.Manifests))
	}
	idx, err := outer.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(tag, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	fmt.Printf("pushed %s@%s\n", tag, m.Manifests[0].Digest)

	if !strings.HasPrefix(o.chartRepo, "oci://") {
		return fmt.Errorf("--chart-repo %q: want oci://host/path", o.chartRepo)
	}
	helmArgs := []string{"push", filepath.Join(o.dir, chartPackage(version)), o.chartRepo}
	if o.plainHTTP {
		helmArgs = append(helmArgs, "--plain-http")
	}
	cmd := exec.Command(o.helm, helmArgs...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("helm push: %w\n%s", err, out.Bytes())
	}
	fmt.Print(out.String())
	return nil
}
