package ebpf

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
)

// busyboxBundle writes a runc bundle (a busybox root, a tmpfs /tmp) whose process
// runs args, and returns runc's path and the bundle's.
func busyboxBundle(t *testing.T, args ...string) (runc, bundle string) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("runc is not installed")
		}
		t.Skip("runc is not installed")
	}
	bundle = t.TempDir()
	for _, d := range []string{"rootfs/bin", "rootfs/tmp"} {
		if err := os.MkdirAll(filepath.Join(bundle, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs/bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRuncSpec(t, runc, bundle, func(spec, proc map[string]any) {
		proc["terminal"] = false
		proc["args"] = args
		// The root stays read-only, as runc spec makes it; /tmp is a tmpfs; the
		// node's /etc/hostname is bind-mounted where the root has no file, so runc
		// creates one (its setup's own file operation, before the pivot), as
		// runtimes do for /etc/hosts and /etc/resolv.conf.
		spec["mounts"] = append(spec["mounts"].([]any),
			map[string]any{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"}},
			map[string]any{"destination": "/etc/hostname", "type": "bind", "source": "/etc/hostname", "options": []string{"rbind", "ro"}})
	})
	return runc, bundle
}

// writeRuncSpec writes the bundle's config.json: runc spec's default, as edit
// changes it (spec, and its process).
func writeRuncSpec(t *testing.T, runc, bundle string, edit func(spec, proc map[string]any)) {
	t.Helper()
	if out, err := exec.Command(runc, "spec", "-b", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	cfgPath := filepath.Join(bundle, "config.json")
	data, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	edit(spec, spec["process"].(map[string]any))
	data, _ = json.Marshal(spec)
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeSetupIsNotTheWorkload: without BPF LSM, what runc does in the
// container's namespaces before it execs the entrypoint (its process forked
// there by a node process, still running runc: mount points made and
// chmod'ed, paths still the node's, e.g. <bundle>/rootfs/sys/fs/cgroup) is the
// runtime's setup, not the workload's: no file decision names it. What the
// entrypoint then does is judged.
func TestRuntimeSetupIsNotTheWorkload(t *testing.T) {
	runc, bundle := busyboxBundle(t, "/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /tmp/drift && /bin/busybox chmod +x /tmp/drift")
	e, ch := openEngine(t, Options{DisableLSM: true})
	if err := e.Swap(mustParse(t, `file:
  selectors:
    - name: all
      operation: [createFile, modifyFile, deleteFile, createExecutable, modifyExecutable]
  responses:
    - match: [all]
      actions: [alert]
`)); err != nil {
		t.Fatal(err)
	}
	hostNS, _ := pidNamespace("self")
	cmd := exec.Command(runc, "run", "-b", bundle, "cd-setup-"+strconv.Itoa(os.Getpid()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc: %v %s", err, out)
	}
	var got []string
	waitFor(t, ch, "the container's chmod", func(ev *event.Event) bool {
		if ev.Kind != event.FileDecision || ev.Process.PIDNamespace == hostNS {
			return false
		}
		if strings.HasPrefix(ev.Path, bundle) {
			t.Errorf("runc's setup judged as the workload: %s %s by %s (pid %d)", ev.Op, ev.Path, ev.Process.Comm, ev.Process.PID)
		}
		if strings.HasPrefix(ev.Path, "/tmp/") {
			got = append(got, ev.Op.String()+" "+ev.Path+" "+ev.Hook.String())
		}
		return ev.Hook == event.HookSysChmod && ev.Path == "/tmp/drift"
	})
	want := []string{"createExecutable /tmp/drift tracepoint__sys_exit_openat", "createExecutable /tmp/drift tracepoint__sys_exit_fchmodat"}
	if !slices.Equal(got, want) {
		t.Errorf("the entrypoint's file operations: got %q, want %q", got, want)
	}
}

// TestRuncContainerTelemetry runs a real runc container on the host and checks the
// telemetry of its processes against what /proc says about them while they run.
func TestRuncContainerTelemetry(t *testing.T) {
	marker := strconv.Itoa(1000 + os.Getpid()%9000) // a sleep length no other process uses
	// The shell announces its child (a sleep we can inspect), waits for stdin to close, exits 7.
	runc, bundle := busyboxBundle(t, "/bin/busybox", "sh", "-c", "/bin/busybox sleep "+marker+" & echo $!; read x; kill $!; exit 7")

	_, ch := openEngine(t, Options{})
	id := "cd-test-" + strconv.Itoa(os.Getpid())
	cmd := exec.Command(runc, "run", "-b", bundle, id)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exec.Command(runc, "delete", "-f", id).Run() }() // gone already when it exited

	// The sleep's exec event, found by its argv, and the fork events before it.
	forks := map[uint32]event.Event{}
	sleep := waitFor(t, ch, "container exec", func(ev *event.Event) bool {
		if ev.Kind == event.Fork {
			forks[ev.Process.PID] = *ev
		}
		return ev.Kind == event.Exec && slices.Equal(ev.Args, []string{"/bin/busybox", "sleep", marker})
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) == "" {
		t.Fatalf("container did not report its child: %q %v", line, err)
	}
	if sleep.Filename != "/bin/busybox" || sleep.Executable != "/bin/busybox" || sleep.Cwd != "/" || sleep.Process.Comm != "busybox" {
		t.Errorf("exec: filename %q executable %q cwd %q comm %q", sleep.Filename, sleep.Executable, sleep.Cwd, sleep.Process.Comm)
	}
	pid := strconv.Itoa(int(sleep.Process.PID))
	nsIno := func(ns string) uint32 {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+pid+"/ns/"+ns, &st); err != nil {
			t.Fatalf("inspect container process %s: %v", pid, err)
		}
		return uint32(st.Ino)
	}
	hostNS, _ := pidNamespace("self")
	p := sleep.Process
	if p.PIDNamespace != nsIno("pid") || p.PIDNamespace == hostNS {
		t.Errorf("pid namespace %d, want the container's %d (host %d)", p.PIDNamespace, nsIno("pid"), hostNS)
	}
	if p.MountNamespace != nsIno("mnt") {
		t.Errorf("mount namespace %d, want %d", p.MountNamespace, nsIno("mnt"))
	}
	if want := cgroupID(t, pid); p.CgroupID != want || p.CgroupID == cgroupID(t, "self") {
		t.Errorf("cgroup id %d, want the container's %d", p.CgroupID, want)
	}
	stat, _ := os.ReadFile("/proc/" + pid + "/stat")
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if ppid, _ := strconv.Atoi(fields[1]); uint32(ppid) != p.PPID {
		t.Errorf("ppid %d, /proc says %d", p.PPID, ppid)
	}
	// The fork that made the sleep came from the container's shell, which is in the
	// same namespaces.
	fork, ok := forks[p.PID]
	if !ok || fork.Process.PPID != p.PPID || fork.Process.PIDNamespace != p.PIDNamespace || fork.Process.CgroupID != p.CgroupID {
		t.Errorf("fork (seen %v): %+v", ok, fork.Process)
	}
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	// The killed sleep and the shell exit in either order.
	exits := map[uint32]event.Event{}
	waitFor(t, ch, "sleep and shell exits", func(ev *event.Event) bool {
		if ev.Kind == event.Exit && (ev.Process.PID == p.PID || ev.Process.PID == p.PPID) {
			exits[ev.Process.PID] = *ev
		}
		return len(exits) == 2
	})
	if shell := exits[p.PPID]; shell.ExitCode != 7<<8 {
		t.Errorf("shell exit code %#x, want %#x", shell.ExitCode, 7<<8)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Logf("runc: %v", err) // the container's shell exited 7: runc says so
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runc did not exit")
	}
}
