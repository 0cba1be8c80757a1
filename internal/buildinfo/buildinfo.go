// Package buildinfo reports which csrguard build is running, and where the
// release the tools recommend is published. Version is set at link time
// (-X github.com/csrguard/csrguard/internal/buildinfo.Version=v0.1.0);
// otherwise it falls back to the module version recorded by the Go toolchain.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// InstallURL is the release manifest the doctor's and check-config's fixes
// install csrguard from. It is pinned to a release, so a Talos machine config
// that names it always applies the same manifest.
const InstallURL = "https://github.com/csrguard/csrguard/releases/download/v0.1.0/install.yaml"

// HelmChart is the chart reference the generic fixes install csrguard from.
const HelmChart = "oci://ghcr.io/csrguard/charts/csrguard"

// Version is the release version, stamped by the Makefile.
var Version = ""

// Get returns the version, the VCS revision when known, and the Go version.
func Get() (version, revision, goVersion string) {
	version, revision = Version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" && bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	return version, revision, runtime.Version()
}
