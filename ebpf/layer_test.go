package ebpf

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cloud-defend/cloud-defend/event"
)

// overlayRoot mounts an overlay like a container's rootfs: an image (lower) layer
// holding bin/image and bin/changed, and a writable (upper) layer. Through the
// merged view it then adds bin/added and changes bin/changed (a chmod copies it
// up), so the three executables, each a copy of exe, sit in the three layers an
// exec can report.
func overlayRoot(t *testing.T, exe []byte) string {
	t.Helper()
	dir := t.TempDir()
	lower, upper, work, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{filepath.Join(lower, "bin"), upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"image", "changed"} {
		if err := os.WriteFile(filepath.Join(lower, "bin", name), exe, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(merged, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(merged, "bin", "added"), exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(merged, "bin", "changed"), 0o750); err != nil {
		t.Fatal(err)
	}
	return merged
}

// checkLayers execs each of overlayRoot's executables and checks the layer its
// exec event reports; a plain file outside the overlay reports none.
func checkLayers(t *testing.T, ch <-chan event.Event, merged string) {
	t.Helper()
	for _, c := range []struct {
		path string
		want event.Layer
	}{
		{filepath.Join(merged, "bin", "image"), event.LayerImage},
		{filepath.Join(merged, "bin", "changed"), event.LayerModified},
		{filepath.Join(merged, "bin", "added"), event.LayerAdded},
		{"/bin/busybox", event.LayerNone},
	} {
		cmd := &exec.Cmd{Path: c.path, Args: []string{"true"}}
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %s: %v", c.path, err)
		}
		pid := uint32(cmd.Process.Pid)
		ev := waitFor(t, ch, "exec of "+c.path, func(ev *event.Event) bool {
			return ev.Kind == event.Exec && ev.Process.PID == pid
		})
		if ev.Layer != c.want {
			t.Errorf("exec %s: layer %q, want %q", c.path, ev.Layer, c.want)
		}
		if ev.Layer.Drift() != (c.want == event.LayerAdded || c.want == event.LayerModified) {
			t.Errorf("exec %s: Drift() = %v", c.path, ev.Layer.Drift())
		}
	}
}

// TestExecutableLayer checks the drift signal on this kernel's overlayfs.
func TestExecutableLayer(t *testing.T) {
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("needs a static busybox (Debian's busybox-static): %v", err)
	}
	merged := overlayRoot(t, busybox)
	_, ch := openEngine(t, Options{})
	checkLayers(t, ch, merged)
}
