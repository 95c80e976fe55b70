package fileloop

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// TestRun runs each operation pattern a few times on files in a temporary
// directory, as the benchmarks prepare them.
func TestRun(t *testing.T) {
	gc := debug.SetGCPercent(-1) // as Run leaves it; set back at the end
	defer debug.SetGCPercent(gc)
	dir := t.TempDir()
	p := Paths{Read: filepath.Join(dir, "passwd"), Write: filepath.Join(dir, "data"), New: filepath.Join(dir, "new"),
		A: filepath.Join(dir, "a"), B: filepath.Join(dir, "b")}
	for _, f := range []string{p.Read, p.Write, p.A} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kinds := []string{"open-ro", "open-wr", "create-unlink", "chmod", "rename", "mmap-shared"}
	if os.Geteuid() == 0 {
		kinds = append(kinds, "setxattr") // trusted.* xattrs are root's
	}
	for _, kind := range kinds {
		if code := Run(kind, "4", p); code != 0 {
			t.Errorf("%s: exit %d", kind, code)
		}
	}
	if code := Run("no-such-kind", "4", p); code != 2 {
		t.Errorf("an unknown kind: exit %d, want 2", code)
	}
	if code := Run("chmod", "x", p); code != 2 {
		t.Errorf("a bad count: exit %d, want 2", code)
	}
}
