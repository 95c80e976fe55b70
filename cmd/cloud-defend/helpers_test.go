package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// needRoot skips a test that needs root, except in CI, where the run must be
// root and a missing privilege fails it.
func needRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s: CI must run as root", why)
	}
	tb.Skipf("%s: needs root", why)
}

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// daemonBinary is the command built once for the whole test binary (static,
// stripped, as `mage build` makes it); TestMain removes it.
func daemonBinary(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "cloud-defend-bin-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "cloud-defend")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", built.bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		tb.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	// The daemons tests start pin nothing unless a test asks (--pin-path): they
	// must not adopt each other's programs, nor leave them on the node.
	os.Setenv("CLOUD_DEFEND_PIN_PATH", "")
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
