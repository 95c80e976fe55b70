package vmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAddTree copies a file, a directory tree with a symlink in it, and makes the
// directories above each guest path.
func TestAddTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tree", "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tree", "sub", "a.o"), []byte("obj"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/a.o", filepath.Join(dir, "tree", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin"), []byte("ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]entry{}
	if err := addTree(files, "usr/lib/peer", filepath.Join(dir, "tree")); err != nil {
		t.Fatal(err)
	}
	if err := addTree(files, "opt/peer/bin/agent", filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	want := map[string]entry{
		"usr":                  {mode: modeDir | 0o755},
		"usr/lib":              {mode: modeDir | 0o755},
		"usr/lib/peer":         {mode: modeDir | 0o750}, // the tree's own mode
		"usr/lib/peer/sub":     {mode: modeDir | 0o750},
		"usr/lib/peer/sub/a.o": {mode: modeFile | 0o640, data: []byte("obj")},
		"usr/lib/peer/link":    {mode: modeSymlink | 0o777, data: []byte("sub/a.o")},
		"opt":                  {mode: modeDir | 0o755},
		"opt/peer":             {mode: modeDir | 0o755},
		"opt/peer/bin":         {mode: modeDir | 0o755},
		"opt/peer/bin/agent":   {mode: modeFile | 0o755, data: []byte("ELF")},
	}
	for name, w := range want {
		got, ok := files[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if got.mode != w.mode || string(got.data) != string(w.data) {
			t.Errorf("%s: mode %o data %q, want %o %q", name, got.mode, got.data, w.mode, w.data)
		}
	}
	if len(files) != len(want) {
		t.Errorf("%d entries, want %d: %v", len(files), len(want), files)
	}
	if err := addTree(files, "..", dir); err == nil {
		t.Error("a guest path above / was accepted")
	}
}
