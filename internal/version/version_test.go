package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	defer func(v, c, b string) { Version, Commit, BuildTime = v, c, b }(Version, Commit, BuildTime)
	Version, Commit, BuildTime = "1.2.3", "abc1234", "2026-11-22T12:00:00Z"
	want := "cloud-defend 1.2.3 (commit abc1234, built 2026-11-22T12:00:00Z, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got := String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	BuildTime = ""
	if got := String(); strings.Contains(got, "built") {
		t.Errorf("String() without a build time = %q", got)
	}
}
