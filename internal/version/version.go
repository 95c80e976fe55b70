// Package version reports what build of cloud-defend is running. The build sets
// Version, Commit and BuildTime with -ldflags -X (see magefile.go).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

var (
	Version   = "0.1.0-dev"
	Commit    = "unknown"
	BuildTime = ""
)

// String describes the build, e.g.
// cloud-defend 0.1.0-dev (commit abc1234, built 2026-11-22T12:00:00Z, go1.26.8 linux/amd64).
func String() string {
	commit := Commit
	if commit == "unknown" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 7 {
					commit = s.Value[:7]
				}
			}
		}
	}
	built := ""
	if BuildTime != "" {
		built = ", built " + BuildTime
	}
	return fmt.Sprintf("cloud-defend %s (commit %s%s, %s %s/%s)", Version, commit, built, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
