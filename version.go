package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set by release builds (see .goreleaser.yaml) with
// -ldflags "-X main.version=v1.2.3"; it is empty otherwise.
var version = ""

// VersionCmd prints keepgpu's version.
type VersionCmd struct{}

// Run prints the version, the Go toolchain and the platform.
func (VersionCmd) Run(io *stdio) error {
	fmt.Fprintf(io.out, "keepgpu %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildVersion returns keepgpu's version: the one set at link time, else
// the module version of a `go install module@version` build, else "devel"
// followed by the commit a build from a checkout was made from.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionOf(version, bi)
}

// versionOf is buildVersion for a link-time version linked (possibly "")
// and the binary's build information bi (possibly nil).
func versionOf(linked string, bi *debug.BuildInfo) string {
	if linked != "" {
		return linked
	}
	if bi == nil {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if len(rev) < 12 {
		return "devel"
	}
	v := "devel-" + rev[:12]
	if modified == "true" {
		v += "-dirty"
	}
	return v
}
