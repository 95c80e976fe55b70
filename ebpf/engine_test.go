package ebpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// openEngine opens the engine and drains its events into a channel.
func openEngine(t testing.TB, opts Options) (*Engine, <-chan event.Event) {
	t.Helper()
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 2 * time.Millisecond // tests wait on batched events
	}
	e, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ch := make(chan event.Event, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := e.Read()
			if errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			select {
			case ch <- ev:
			default:
				t.Errorf("test channel full")
			}
		}
	}()
	t.Cleanup(func() {
		e.Close()
		<-done
	})
	return e, ch
}

// waitFor returns the first event satisfying ok, or fails after a timeout.
func waitFor(t *testing.T, ch <-chan event.Event, what string, ok func(*event.Event) bool) event.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ok(&ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", what)
		}
	}
}

func TestProcessTelemetry(t *testing.T) {
	e, ch := openEngine(t, Options{})
	if e.LSM().Available {
		t.Log("BPF LSM is available on this host")
	}
	t.Logf("LSM: %+v", e.LSM())
	if !e.LSM().Available && e.LSM().Reason == "" {
		t.Fatal("LSM unavailable without a reason")
	}
	cmd := exec.Command("/bin/sh", "-c", "exit 3", "arg two")
	cmd.Dir = t.TempDir()
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("run: %v", err)
	}
	pid := uint32(cmd.Process.Pid)
	self := uint32(os.Getpid())

	fork := waitFor(t, ch, "fork", func(ev *event.Event) bool { return ev.Kind == event.Fork && ev.Process.PID == pid })
	if fork.Process.PPID != self {
		t.Errorf("fork: ppid %d, want %d", fork.Process.PPID, self)
	}
	exe := waitFor(t, ch, "exec", func(ev *event.Event) bool { return ev.Kind == event.Exec && ev.Process.PID == pid })
	if exe.Filename != "/bin/sh" || !slices.Equal(exe.Args, []string{"/bin/sh", "-c", "exit 3", "arg two"}) || exe.Process.Comm != "sh" {
		t.Errorf("exec: filename %q args %q comm %q", exe.Filename, exe.Args, exe.Process.Comm)
	}
	wantExe, _ := filepath.EvalSymlinks("/bin/sh")
	wantCwd, _ := filepath.EvalSymlinks(cmd.Dir)
	if exe.Executable != wantExe || exe.Cwd != wantCwd || exe.PathTruncated {
		t.Errorf("exec: executable %q cwd %q (truncated %v), want %q %q", exe.Executable, exe.Cwd, exe.PathTruncated, wantExe, wantCwd)
	}
	exit := waitFor(t, ch, "exit", func(ev *event.Event) bool { return ev.Kind == event.Exit && ev.Process.PID == pid })
	if exit.ExitCode != 3<<8 {
		t.Errorf("exit: code %#x, want %#x", exit.ExitCode, 3<<8)
	}

	// Identity and context agree with what /proc says about the process we are.
	ns, err := pidNamespace("self")
	if err != nil {
		t.Fatal(err)
	}
	var mnt syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/mnt", &mnt); err != nil {
		t.Fatal(err)
	}
	p := exe.Process
	if p.PIDNamespace != ns || uint64(p.MountNamespace) != mnt.Ino {
		t.Errorf("namespaces pid %d mnt %d, want %d %d", p.PIDNamespace, p.MountNamespace, ns, mnt.Ino)
	}
	if p.UID != uint32(os.Getuid()) || p.EGID != uint32(os.Getegid()) {
		t.Errorf("uid %d egid %d", p.UID, p.EGID)
	}
	if want := cgroupID(t, "self"); p.CgroupID != want {
		t.Errorf("cgroup id %d, want %d", p.CgroupID, want)
	}
	if fork.Process.Start != exe.Process.Start || exe.Process.Start == 0 {
		t.Errorf("start time changes across exec: fork %v exec %v", fork.Process.Start, exe.Process.Start)
	}
	if !(fork.Time <= exe.Time && exe.Time <= exit.Time) {
		t.Errorf("times out of order: %v %v %v", fork.Time, exe.Time, exit.Time)
	}
	s, err := e.Stats()
	if err != nil || s.RingbufDrops != 0 {
		t.Errorf("stats %+v %v", s, err)
	}
}

// cgroupID is the cgroup v2 id of a process: the inode of its unified-hierarchy directory.
func cgroupID(t *testing.T, pid string) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
				var st syscall.Stat_t
				var fs syscall.Statfs_t
				if syscall.Statfs(root, &fs) == nil && fs.Type == 0x63677270 && syscall.Stat(root+rest, &st) == nil {
					return st.Ino
				}
			}
		}
	}
	t.Fatalf("no cgroup2 membership in %s", data)
	return 0
}

func TestOpenWithoutLSM(t *testing.T) {
	e, _ := openEngine(t, Options{DisableLSM: true})
	if e.LSM().Available || e.Enforcing() || e.LSM().Reason == "" {
		t.Fatalf("LSM status %+v, enforcing %v", e.LSM(), e.Enforcing())
	}
	// A policy can still be swapped in: it is evaluated nowhere, but kept for telemetry.
	if err := e.Swap(mustParse(t, "process:\n  selectors:\n    - name: s\n      operation: [exec]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n")); err != nil {
		t.Fatal(err)
	}
}

// TestRingbufDropsAreCounted stalls the reader until the ring overflows: every event
// is either read or counted as dropped, and the ring recovers once drained.
func TestRingbufDropsAreCounted(t *testing.T) {
	e, err := Open(Options{DisableLSM: true, RingBufferSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const procs = 100
	pids := map[uint32]bool{}
	for range procs {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pids[uint32(cmd.Process.Pid)] = true
	}
	read, ours := 0, 0
	e.ring.SetDeadline(time.Now().Add(time.Second))
	for {
		rec, err := e.ring.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, err := decodeEvent(rec.RawSample, names{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		read++
		if pids[ev.Process.PID] {
			ours++
		}
	}
	s, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d processes: read %d events (%d of ours), %d dropped", procs, read, ours, s.RingbufDrops)
	if s.RingbufDrops == 0 || ours >= 3*procs {
		t.Fatalf("a 64 KiB ring did not overflow: %d drops, %d of our %d events read", s.RingbufDrops, ours, 3*procs)
	}
	if uint64(read)+s.RingbufDrops < 3*procs {
		t.Fatalf("events vanished: %d read + %d dropped < %d produced", read, s.RingbufDrops, 3*procs)
	}
	// Drained, the ring takes events again.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := e.Read()
		if err != nil {
			t.Fatalf("after draining: %v", err)
		}
		if ev.Kind == event.Exit && ev.Process.PID == uint32(cmd.Process.Pid) {
			break
		}
	}
}

// TestReaderWakeups: with an hour's flush interval only the kernel's wake-ups
// end a Read's wait. A ring holding WAKEUP_BYTES wakes it (the kernel checks
// before it adds an event, and the one read is a few KiB at most), and Close
// ends a Read that waits.
func TestReaderWakeups(t *testing.T) {
	const wakeupBytes = 256 << 10 // WAKEUP_BYTES in cloud_defend.bpf.c
	e, err := Open(Options{DisableLSM: true, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	type result struct {
		err  error
		left int
	}
	// Events from before the processes below (and from other tests' processes)
	// are read as they come; the reader then waits until the ring holds a
	// wake-up's worth. A reader that is never woken, or that polls often,
	// never sees that much left after a Read.
	first := make(chan result, 1)
	go func() {
		for {
			_, err := e.Read()
			if left := e.ring.AvailableBytes(); err != nil || left >= wakeupBytes-8<<10 {
				first <- result{err, left}
				return
			}
		}
	}()
	execs := 0
	deadline := time.Now().Add(time.Minute)
	var r result
wait:
	for {
		select {
		case r = <-first:
			break wait
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wake-up after %d processes (%d bytes in the ring)", execs, e.ring.AvailableBytes())
		}
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
		execs++
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("woken after %d processes, %d bytes left in the ring", execs, r.left)
	// Drain, then close while the reader waits.
	closed := make(chan error, 1)
	go func() {
		for {
			if _, err := e.Read(); err != nil {
				closed <- err
				return
			}
		}
	}()
	for e.ring.AvailableBytes() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	e.Close()
	select {
	case err := <-closed:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Read after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
}

// TestPathResolution checks the kernel's dentry walk on exec events' working
// directories: names on both sides of the inline-name size (copied from the
// dentry read) and longer ones (read from their own buffer), a mount crossed on
// the way up, a path longer than 255 bytes (its first 255, marked), and one
// deeper and longer than PATH_MAX, which only relative chdirs reach.
func TestPathResolution(t *testing.T) {
	_, ch := openEngine(t, Options{DisableLSM: true})
	cwdOf := func(t *testing.T, dir string, script string) event.Event {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// The shell's own exec happens in dir; the one it makes happens where the script got to.
		return waitFor(t, ch, "exec", func(ev *event.Event) bool {
			return ev.Kind == event.Exec && ev.Process.PPID == uint32(cmd.Process.Pid)
		})
	}
	base := t.TempDir()
	for _, n := range []int{1, 7, 8, 9, 31, 32, 39, 40, 41, 100} {
		t.Run(fmt.Sprintf("name of %d bytes", n), func(t *testing.T) {
			dir := filepath.Join(base, strings.Repeat("n", n), "x")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if ev := cwdOf(t, dir, "/bin/true"); ev.Cwd != dir || ev.PathTruncated {
				t.Errorf("cwd %q (truncated %v), want %q", ev.Cwd, ev.PathTruncated, dir)
			}
		})
	}
	t.Run("across a mount", func(t *testing.T) {
		mnt := filepath.Join(base, "mnt")
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		defer syscall.Unmount(mnt, syscall.MNT_DETACH)
		dir := filepath.Join(mnt, "sub", "dir")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if ev := cwdOf(t, dir, "/bin/true"); ev.Cwd != dir {
			t.Errorf("cwd %q, want %q", ev.Cwd, dir)
		}
		if ev := cwdOf(t, mnt, "/bin/true"); ev.Cwd != mnt {
			t.Errorf("cwd at the mount's root %q, want %q", ev.Cwd, mnt)
		}
	})
	t.Run("longer than 255 bytes", func(t *testing.T) {
		dir := base
		for range 12 {
			dir = filepath.Join(dir, strings.Repeat("d", 30))
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if ev := cwdOf(t, dir, "/bin/true"); ev.PathTruncated || ev.Cwd != dir { // whole, up to PATH_MAX
			t.Errorf("cwd %q (truncated %v) for %d-byte %q", ev.Cwd, ev.PathTruncated, len(dir), dir)
		}
	})
	t.Run("deeper than PATH_MAX", func(t *testing.T) {
		// 300 components of 20 bytes: 6,300 bytes below base.
		// The shell gives up on a working directory longer than PATH_MAX;
		// perl (essential in Debian) just calls chdir.
		comp := strings.Repeat("p", 20)
		script := fmt.Sprintf(`exec perl -e 'for (1..300) { mkdir "%[1]s"; chdir "%[1]s" or die "chdir: $!" } system("/bin/true") == 0 or die'`, comp)
		dir := filepath.Join(base, "deep")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ev := cwdOf(t, dir, script)
		want := dir + strings.Repeat("/"+comp, 300)
		if !ev.PathTruncated || ev.Cwd != want[:4096] {
			t.Errorf("cwd %q (truncated %v), want the first 4096 bytes of the %d-byte path: %q", abbrev(ev.Cwd), ev.PathTruncated, len(want), abbrev(want[:4096]))
		}
		if err := exec.Command("rm", "-rf", dir).Run(); err != nil {
			t.Error(err)
		}
	})
}

func TestSetsidEvents(t *testing.T) {
	e, ch := openEngine(t, Options{DisableLSM: true})
	if !e.Sessions().Available {
		t.Fatalf("setsid events unavailable: %s", e.Sessions().Reason)
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	ev := waitFor(t, ch, "setsid", func(ev *event.Event) bool { return ev.Kind == event.Setsid && ev.Process.PID == pid })
	if ev.Process.SID != pid || ev.Process.PGID != pid || ev.Process.TTYMajor != 0 {
		t.Errorf("after setsid: sid %d pgid %d tty %d, want %d %d 0", ev.Process.SID, ev.Process.PGID, ev.Process.TTYMajor, pid, pid)
	}
	exe := waitFor(t, ch, "exec", func(ev *event.Event) bool { return ev.Kind == event.Exec && ev.Process.PID == pid })
	if exe.Process.SID != pid {
		t.Errorf("exec after setsid: sid %d", exe.Process.SID)
	}
}

// TestUserSpaceDetection: without BPF LSM, a container exec that a response selects
// is still reported, as a user-space decision that blocked nothing; host execs and
// unselected ones are not.
func TestUserSpaceDetection(t *testing.T) {
	e, ch := openEngine(t, Options{DisableLSM: true})
	target, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Swap(mustParse(t, fmt.Sprintf(`process:
  selectors:
    - name: trueInContainer
      operation: [exec]
      processExecutable: [%s]
  responses:
    - match: [trueInContainer]
      actions: [alert, block]
`, target))); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) uint32 {
		cmd := exec.Command(args[0], args[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
		return uint32(cmd.Process.Pid)
	}
	host := run("/bin/true")
	ctr := run("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/true")
	// Other tests on the node (other packages run in parallel) exec too: only
	// this test's processes count.
	var decisions []event.Event
	waitFor(t, ch, "container exit", func(ev *event.Event) bool {
		if ev.Kind == event.ProcessDecision && (ev.Process.PPID == ctr || ev.Process.PID == host) {
			decisions = append(decisions, *ev)
		}
		return ev.Kind == event.Exit && ev.Process.PID == ctr
	})
	if len(decisions) != 1 {
		t.Fatalf("decisions %+v", decisions)
	}
	d := decisions[0]
	names, _ := e.SelectorNames(&d)
	if !d.UserSpace || d.Blocked || d.Actions != policy.ActionAlert|policy.ActionBlock || d.Process.PPID != ctr || d.Path != target || !slices.Equal(names, []string{"trueInContainer"}) {
		t.Fatalf("decision %+v names %v (host pid %d)", d, names, host)
	}
}

// TestLongArgv: argv is copied up to 20 KiB (in records of 1, 4 or 20 KiB of
// args, the smallest that holds it), so a long command line keeps its end; past
// 20 KiB it is cut, and the event says so with the true argument count.
func TestLongArgv(t *testing.T) {
	e, ch := openEngine(t, Options{DisableLSM: true})
	_ = e
	token := strings.Repeat("x", 1500) // a pod's bearer token is about this long
	for _, c := range []struct {
		args      []string
		truncated bool
	}{
		{[]string{"/bin/true", "-k", "-H", "Authorization: Bearer " + token, "https://10.0.0.1/api/v1/namespaces/x/secrets"}, false},
		{append([]string{"/bin/true"}, slices.Repeat([]string{token}, 8)...), false}, // 12 KiB
		{append([]string{"/bin/true"}, slices.Repeat([]string{token}, 20)...), true}, // 30 KiB
	} {
		cmd := exec.Command(c.args[0], c.args[1:]...)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pid := uint32(cmd.Process.Pid)
		ev := waitFor(t, ch, "exec", func(ev *event.Event) bool { return ev.Kind == event.Exec && ev.Process.PID == pid })
		size := 0
		for _, a := range c.args {
			size += len(a) + 1
		}
		if ev.ArgsTruncated != c.truncated || ev.ArgsCount != len(c.args) {
			t.Errorf("%d bytes of argv: truncated %v, count %d; want %v, %d", size, ev.ArgsTruncated, ev.ArgsCount, c.truncated, len(c.args))
		}
		if !c.truncated && !slices.Equal(ev.Args, c.args) {
			t.Errorf("%d bytes of argv: got %d args, last %.40q", size, len(ev.Args), ev.Args[len(ev.Args)-1])
		}
		if c.truncated {
			got := strings.Join(ev.Args, "\x00")
			if len(got) != 20480 || !strings.HasPrefix(strings.Join(c.args, "\x00"), got) {
				t.Errorf("%d bytes of argv, cut: %d bytes kept, want the first 20480", size, len(got))
			}
		}
	}
}

// TestFileSyscallDetection: without BPF LSM, a workload's file operations are
// seen at the exit of their syscalls and judged in user space as the LSM hooks
// would name them: a new file is createFile (opened for writing or not), a new executable (cp keeps the x
// bit) createExecutable, an append to an existing one modifyFile, chmod +x
// createExecutable, rename a deletion and a creation, rm deleteFile. Read-only
// opens and the node's own processes make nothing.
func TestFileSyscallDetection(t *testing.T) {
	e, ch := openEngine(t, Options{DisableLSM: true})
	if !e.FileSyscalls().Available {
		t.Fatalf("file syscalls: %+v", e.FileSyscalls())
	}
	dir := t.TempDir()
	if err := e.Swap(mustParse(t, fmt.Sprintf(`file:
  selectors:
    - name: all
      operation: [createFile, modifyFile, deleteFile, createExecutable, modifyExecutable]
      targetFilePath: [%s/**]
  responses:
    - match: [all]
      actions: [log]
`, dir))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"old", "host"} {
		if err := os.WriteFile(dir+"/"+f, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec.Command("sh", "-c", "echo >> "+dir+"/host; cat "+dir+"/old >/dev/null").Run(); err != nil {
		t.Fatal(err)
	}
	// A creation without write intent first, by the test binary in a pid
	// namespace of its own.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rd := exec.Command(self, dir+"/rdonly")
	rd.Env = append(os.Environ(), "CLOUD_DEFEND_HELPER=rdcreate")
	rd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if out, err := rd.CombinedOutput(); err != nil {
		t.Fatalf("rdcreate: %v %s", err, out)
	}
	script := fmt.Sprintf("cd %[1]s && echo a > new && cat old > /dev/null && echo b >> old && cp /bin/true tool && touch plain && chmod +x plain && mv new renamed && rm renamed", dir)
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-f", "--", "/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	unshare := uint32(cmd.Process.Pid)
	var got []string
	waitFor(t, ch, "unshare's exit", func(ev *event.Event) bool {
		if ev.Kind == event.FileDecision && strings.HasPrefix(ev.Path, dir) {
			if !ev.UserSpace || ev.Blocked {
				t.Errorf("%+v: not a user-space detection", ev)
			}
			got = append(got, ev.Op.String()+" "+strings.TrimPrefix(ev.Path, dir+"/")+" "+ev.Hook.String())
		}
		return ev.Kind == event.Exit && ev.Process.PID == unshare
	})
	want := []string{
		"createFile rdonly tracepoint__sys_exit_openat",
		"createFile new tracepoint__sys_exit_openat",
		"modifyFile old tracepoint__sys_exit_openat",
		"createExecutable tool tracepoint__sys_exit_openat",
		"createFile plain tracepoint__sys_exit_openat",
		"createExecutable plain tracepoint__sys_exit_fchmodat",
		"deleteFile new tracepoint__sys_exit_renameat2",
		"createFile renamed tracepoint__sys_exit_renameat2",
		"deleteFile renamed tracepoint__sys_exit_unlinkat",
	}
	if !slices.Equal(got, want) {
		t.Errorf("file operations\n got %q\nwant %q", got, want)
	}
}

// TestUserSpaceForkDetection: without BPF LSM, forks in a container are judged
// in user space from the fork event as task_alloc would judge them in the
// forking process (its executable, known from its exec): the decision names the
// child. The fork that starts the container (unshare, a node process, forking
// into a new pid namespace) is out of scope, as it is for the kernel.
func TestUserSpaceForkDetection(t *testing.T) {
	e, ch := openEngine(t, Options{DisableLSM: true})
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Swap(mustParse(t, fmt.Sprintf(`process:
  selectors:
    - name: shForks
      operation: [fork]
      processExecutable: [%s]
  responses:
    - match: [shForks]
      actions: [log]
`, sh))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-f", "--", "/bin/sh", "-c", "(exit 0); /bin/true; exit 0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	unshare := uint32(cmd.Process.Pid)
	var init uint32
	forks := map[uint32]event.Event{} // by child
	var decisions []event.Event
	waitFor(t, ch, "unshare's exit", func(ev *event.Event) bool {
		switch {
		case ev.Kind == event.Exec && ev.Process.PPID == unshare:
			init = ev.Process.PID
		case ev.Kind == event.Fork:
			forks[ev.Process.PID] = *ev
		case ev.Kind == event.ProcessDecision && ev.Op == policy.OpFork:
			decisions = append(decisions, *ev)
		}
		return ev.Kind == event.Exit && ev.Process.PID == unshare
	})
	var mine []event.Event
	for _, d := range decisions {
		if d.Process.PPID == init || d.Process.PPID == unshare {
			mine = append(mine, d)
		}
	}
	if init == 0 || len(mine) != 2 {
		t.Fatalf("sh (pid %d) forked a subshell and true: %d fork decisions about its children, want 2: %+v", init, len(mine), mine)
	}
	for _, d := range mine {
		f, ok := forks[d.Process.PID]
		names, _ := e.SelectorNames(&d)
		if d.Process.PPID != init || !d.UserSpace || d.Blocked || d.Path != sh || !ok || d.Time != f.Time || !slices.Equal(names, []string{"shForks"}) {
			t.Errorf("decision %+v (fork event found %v) names %v", d, ok, names)
		}
	}
}

// TestSupersededPolicies: a burst of swaps forgets no policy whose decisions may
// still be in the ring; once events stamped a second after a swap are read, the
// policies it superseded go, and the live one stays.
func TestSupersededPolicies(t *testing.T) {
	e, ch := openEngine(t, Options{})
	p := mustParse(t, "process:\n  selectors:\n    - name: all\n      operation: [exec]\n  responses:\n    - match: [all]\n      actions: [log]\n")
	first := uint32(0)
	for i := range 50 {
		if err := e.Swap(p); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = e.Generation()
		}
	}
	live := e.Generation()
	for g := first; g <= live; g++ {
		if e.PolicyOf(g) == nil {
			t.Fatalf("generation %d forgotten right after the burst (live %d)", g, live)
		}
	}
	time.Sleep(retireAfter + 100*time.Millisecond)
	// Our own exec, not any: another process's exec read late (a loaded
	// machine) can be from inside the grace period and rightly retire nothing.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	waitFor(t, ch, "exec after the grace period", func(ev *event.Event) bool { return ev.Kind == event.Exec && ev.Process.PID == pid })
	if e.PolicyOf(first) != nil || e.PolicyOf(live-1) != nil {
		t.Error("superseded policies still kept after the reader passed their grace period")
	}
	if e.PolicyOf(live) == nil {
		t.Error("the live policy was forgotten")
	}
}
