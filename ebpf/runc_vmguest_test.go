//go:build vmguest

package ebpf

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// runcBundle builds a container as a runtime would: an image layer (busybox, an
// /etc/passwd, a /usr/bin with one plain file), overlaid by a writable layer and
// mounted as the bundle's rootfs, with a volume directory on /data and a
// single-file volume on /config/app.conf. The container runs script with sh.
func runcBundle(t *testing.T, script string) string {
	t.Helper()
	bundle := t.TempDir()
	image := filepath.Join(bundle, "image")
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{"bin/busybox": 0o755, "etc/passwd": 0o644, "usr/bin/notes": 0o644} {
		if err := os.MkdirAll(filepath.Join(image, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		data := []byte("root:x:0:0::/:/bin/sh\n")
		if path == "bin/busybox" {
			data = busybox
		}
		if err := os.WriteFile(filepath.Join(image, path), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"upper", "work", "rootfs", "image/data", "image/config", "image/proc", "image/dev", "image/sys", "image/tmp", "volume"} {
		if err := os.MkdirAll(filepath.Join(bundle, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(bundle, "volume", "file"), 0o644)
	writeFile(t, filepath.Join(bundle, "app.conf"), 0o644)
	writeFile(t, filepath.Join(image, "config", "app.conf"), 0o644)
	finishBundle(t, bundle, image, script, func(spec, proc map[string]any) {
		spec["mounts"] = append(spec["mounts"].([]any),
			map[string]any{"destination": "/data", "type": "bind", "source": filepath.Join(bundle, "volume"), "options": []string{"rbind", "rw"}},
			map[string]any{"destination": "/config/app.conf", "type": "bind", "source": filepath.Join(bundle, "app.conf"), "options": []string{"bind", "rw"}},
		)
	})
	return bundle
}

// finishBundle mounts the container's rootfs, the image under a writable layer in
// bundle/upper, and writes the OCI config runc spec makes, running script with
// busybox sh, with edit's changes.
func finishBundle(t *testing.T, bundle, image, script string, edit func(spec, proc map[string]any)) {
	t.Helper()
	rootfs := filepath.Join(bundle, "rootfs")
	opts := "lowerdir=" + image + ",upperdir=" + filepath.Join(bundle, "upper") + ",workdir=" + filepath.Join(bundle, "work")
	if err := syscall.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		t.Fatalf("mount the container's overlay: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(rootfs, syscall.MNT_DETACH) })
	writeRuncSpec(t, "/usr/sbin/runc", bundle, func(spec, proc map[string]any) {
		proc["terminal"] = false
		proc["args"] = []string{"/bin/busybox", "sh", "-c", script}
		proc["env"] = []string{"PATH=/bin:/usr/bin"}
		spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
		edit(spec, proc)
	})
}

// TestVMRuncContainer runs the file operations of the list in a real runc
// container on an overlay rootfs with real bind-mounted volumes: blocked where the
// policy says, allowed elsewhere, and the container's own drift flagged on exec.
func TestVMRuncContainer(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, filePolicy)); err != nil {
		t.Fatal(err)
	}
	// Each step prints its name and exit status; the container keeps going.
	steps := [][2]string{
		{"cp", "cp /bin/busybox /usr/bin/newtool"},
		{"chmod", "chmod +x /usr/bin/notes"},
		{"append", "echo hacker >> /etc/passwd"},
		{"rm", "rm -f /etc/passwd"},
		{"volume", "echo ok >> /data/file"},
		{"filemount", "echo ok >> /config/app.conf"},
		{"log", "mkdir -p /var/log && echo hi > /var/log/new.log"},
		{"drift", "mkdir -p /opt && cp /bin/busybox /opt/true && /opt/true"},
	}
	var script strings.Builder
	for _, s := range steps {
		script.WriteString(s[1] + " 2>/dev/null; echo " + s[0] + "=$?\n")
	}
	bundle := runcBundle(t, script.String())
	id := "cd-vm-test"
	cmd := exec.Command("/usr/sbin/runc", "--root", "/run/runc", "run", "--no-pivot", "-b", bundle, id)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	_ = exec.Command("/usr/sbin/runc", "--root", "/run/runc", "delete", "-f", id).Run() // gone already when it exited
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, stderr.String())
	}
	status := map[string]string{}
	for _, line := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(line, "="); ok {
			status[k] = v
		}
	}
	for step, want := range map[string]string{"cp": "1", "chmod": "1", "append": "1", "rm": "1", "volume": "0", "filemount": "0", "log": "0", "drift": "0"} {
		if status[step] != want {
			t.Errorf("%s: exit status %q, want %q (container output %q)", step, status[step], want, out)
		}
	}

	// The decisions, from the container's processes only.
	hostNS, _ := pidNamespace("self")
	got := map[string]event.Event{}
	var tool *event.Event
	waitFor(t, ch, "the container's drift exec", func(ev *event.Event) bool {
		if ev.Process.PIDNamespace == hostNS {
			return false
		}
		if ev.Kind == event.FileDecision {
			got[ev.Op.String()+" "+ev.Path] = *ev
		}
		if ev.Kind == event.Exec && ev.Executable == "/opt/true" {
			tool = ev
			return true
		}
		return false
	})
	for _, want := range []struct {
		op      policy.Op
		path    string
		blocked bool
		sel     string
	}{
		{policy.OpCreateExecutable, "/usr/bin/newtool", true, "binDrift"},
		{policy.OpCreateExecutable, "/usr/bin/notes", true, "binDrift"},
		{policy.OpModifyFile, "/etc/passwd", true, "etcWrites"},
		{policy.OpDeleteFile, "/etc/passwd", true, "etcWrites"},
		{policy.OpCreateFile, "/var/log/new.log", false, "newLogs"},
	} {
		path := want.path
		d, ok := got[want.op.String()+" "+path]
		if !ok {
			t.Errorf("no decision for %s; got %v", path, slices.Sorted(maps.Keys(got)))
			continue
		}
		names, _ := e.SelectorNames(&d)
		if d.Op != want.op || d.Blocked != want.blocked || !slices.Equal(names, []string{want.sel}) || d.OnVolume {
			t.Errorf("%s: %v blocked %v selectors %v on_volume %v; want %v %v [%s]", path, d.Op, d.Blocked, names, d.OnVolume, want.op, want.blocked, want.sel)
		}
	}
	for k, d := range got {
		if strings.HasSuffix(k, " /data/file") || strings.HasSuffix(k, " /config/app.conf") {
			t.Errorf("a volume write was judged: %+v", d)
		}
	}
	if tool.Layer != event.LayerAdded {
		t.Errorf("exec of a binary copied into the container: layer %q, want added", tool.Layer)
	}
	// The image is untouched where the kernel refused.
	if data, _ := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "passwd")); !bytes.Equal(data, []byte("root:x:0:0::/:/bin/sh\n")) {
		t.Errorf("/etc/passwd in the container = %q", data)
	}
}
