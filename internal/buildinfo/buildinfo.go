// Package buildinfo reports which csrguard build is running. Version is set at
// link time (-X github.com/csrguard/csrguard/internal/buildinfo.Version=v0.1.0);
// otherwise it falls back to the module version recorded by the Go toolchain.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

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
