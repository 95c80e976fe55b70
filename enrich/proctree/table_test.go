package proctree

import (
	"encoding/base64"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
)

const (
	hostNS = 4026531836
	ctrNS  = 4026532000
)

// world drives a table with synthetic kernel events, as the engine reports
// them: the task an event is about, with its parent and ids.
type world struct {
	t   *testing.T
	tab *Table
	now time.Duration
}

func newWorld(t *testing.T, cfg Config) *world {
	cfg.AgentID = "agent-1"
	cfg.HostPIDNamespace = hostNS
	cfg.ProcRoot = t.TempDir() // nothing to adopt: every process comes from events
	w := &world{t: t}
	cfg.Clock = func() time.Duration { return w.now }
	w.tab = New(cfg)
	return w
}

func (w *world) ev(kind event.Kind, p event.Process) *event.Event {
	w.now += time.Millisecond
	if p.TID == 0 {
		p.TID = p.PID
	}
	ev := &event.Event{Kind: kind, Time: w.now, Process: p}
	w.tab.Apply(ev)
	return ev
}

func (w *world) fork(p event.Process) event.Process {
	p.Start = w.now + time.Millisecond
	w.ev(event.Fork, p)
	return p
}

func (w *world) exec(p event.Process, exe string, args ...string) {
	w.now += time.Millisecond
	w.tab.Apply(&event.Event{Kind: event.Exec, Time: w.now, Process: p, Executable: exe, Filename: exe, Args: args, Cwd: "/work"})
}

func (w *world) exit(p event.Process, status uint32) {
	w.now += time.Millisecond
	w.tab.Apply(&event.Event{Kind: event.Exit, Time: w.now, Process: p, ExitCode: status})
}

func (w *world) view(p event.Process) View {
	w.t.Helper()
	v, ok := w.tab.Lookup(&p)
	if !ok {
		w.t.Fatalf("pid %d unknown", p.PID)
	}
	return v
}

func TestEntityID(t *testing.T) {
	got := EntityID("agent-1", 42, 1234567891*time.Nanosecond)
	raw, err := base64.StdEncoding.DecodeString(got)
	if err != nil || string(raw) != "agent-1-42-1230000000" {
		t.Fatalf("EntityID = %q (%q, %v), want base64 of agent-1-42-1230000000", got, raw, err)
	}
	// The kernel's nanoseconds and /proc's ticks name the same process.
	if EntityID("a", 1, 5*time.Second+3*time.Millisecond) != EntityID("a", 1, 5*time.Second) {
		t.Fatal("entity id differs between tick and nanosecond start times")
	}
}

func TestHostProcessChain(t *testing.T) {
	w := newWorld(t, Config{})
	init := w.fork(event.Process{PID: 1, PGID: 1, SID: 1, PIDNamespace: hostNS, Comm: "systemd"})
	w.exec(init, "/usr/lib/systemd/systemd", "/sbin/init")
	sshd := w.fork(event.Process{PID: 100, PPID: 1, PGID: 100, SID: 100, PIDNamespace: hostNS, Comm: "sshd"})
	w.exec(sshd, "/usr/sbin/sshd", "sshd", "-D")
	// A login: sshd forks, the child starts a session and runs a shell.
	sess := w.fork(event.Process{PID: 200, PPID: 100, PGID: 100, SID: 100, PIDNamespace: hostNS, Comm: "sshd"})
	sess.PGID, sess.SID, sess.TTYMajor, sess.TTYMinor = 200, 200, 136, 0
	w.ev(event.Setsid, sess)
	w.exec(sess, "/bin/bash", "-bash")
	cmd := w.fork(event.Process{PID: 201, PPID: 200, PGID: 201, SID: 200, TTYMajor: 136, PIDNamespace: hostNS, UID: 1000, EUID: 1000, Comm: "bash"})
	w.exec(cmd, "/usr/bin/ls", "ls", "-l")

	v := w.view(cmd)
	p := v.Process
	if p.Executable != "/usr/bin/ls" || p.Name != "ls" || !slices.Equal(p.Args, []string{"ls", "-l"}) || p.WorkingDirectory != "/work" {
		t.Errorf("process %+v", p)
	}
	if !p.Interactive || p.UID != 1000 {
		t.Errorf("interactive %v uid %d", p.Interactive, p.UID)
	}
	if len(p.Previous) != 1 || p.Previous[0].Executable != "/bin/bash" {
		t.Errorf("previous %+v, want the forked bash image", p.Previous)
	}
	if v.Parent == nil || v.Parent.PID != 200 || v.Parent.Executable != "/bin/bash" {
		t.Fatalf("parent %+v", v.Parent)
	}
	if v.GroupLeader == nil || !v.GroupLeader.SameAsProcess {
		t.Errorf("group leader %+v, want itself", v.GroupLeader)
	}
	if v.SessionLeader == nil || v.SessionLeader.PID != 200 || v.SessionLeader.SameAsProcess {
		t.Errorf("session leader %+v", v.SessionLeader)
	}
	if v.EntryLeader == nil || v.EntryLeader.PID != 200 || v.EntryLeader.EntryMetaType != EntrySSHD {
		t.Errorf("entry leader %+v, want the ssh session", v.EntryLeader)
	}
	if iv := w.view(init); iv.EntryLeader == nil || iv.EntryLeader.EntryMetaType != EntryInit || !iv.EntryLeader.SameAsProcess {
		t.Errorf("init's entry leader %+v", iv.EntryLeader)
	}

	w.exit(cmd, 2<<8)
	v = w.view(cmd)
	if !v.Process.Exited || !v.Process.ExitKnown || v.Process.Exit.Code != 2 || v.Process.End == 0 {
		t.Errorf("after exit: %+v", v.Process)
	}
}

func TestContainerEntryLeaders(t *testing.T) {
	w := newWorld(t, Config{})
	shim := w.fork(event.Process{PID: 50, PPID: 1, PGID: 50, SID: 50, PIDNamespace: hostNS, Comm: "containerd-shim"})
	w.exec(shim, "/usr/bin/containerd-shim-runc-v2", "containerd-shim-runc-v2")
	// The container's init: forked by runc into a new pid namespace.
	ctrInit := w.fork(event.Process{PID: 60, PPID: 50, PGID: 60, SID: 60, PIDNamespace: ctrNS, Comm: "runc:[2:INIT]"})
	w.exec(ctrInit, "/usr/sbin/nginx", "nginx", "-g", "daemon off;")
	worker := w.fork(event.Process{PID: 61, PPID: 60, PGID: 60, SID: 60, PIDNamespace: ctrNS, Comm: "nginx"})

	v := w.view(worker)
	if v.EntryLeader == nil || v.EntryLeader.PID != 60 || v.EntryLeader.EntryMetaType != EntryContainer || v.EntryLeader.SameAsProcess {
		t.Errorf("worker's entry leader %+v, want the container's init", v.EntryLeader)
	}
	if v.Process.Executable != "/usr/sbin/nginx" {
		t.Errorf("a forked child runs its parent's image until it execs: %q", v.Process.Executable)
	}

	// kubectl exec: runc (host) forks into the container's namespace; that
	// process is the entry leader of everything the user runs.
	execd := w.fork(event.Process{PID: 70, PPID: 50, PGID: 70, SID: 70, TTYMajor: 136, TTYMinor: 3, PIDNamespace: ctrNS, Comm: "runc:[2:INIT]"})
	w.exec(execd, "/bin/sh", "sh")
	cat := w.fork(event.Process{PID: 71, PPID: 70, PGID: 71, SID: 70, TTYMajor: 136, TTYMinor: 3, PIDNamespace: ctrNS, Comm: "sh"})
	w.exec(cat, "/bin/cat", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
	v = w.view(cat)
	if v.EntryLeader == nil || v.EntryLeader.PID != 70 || v.EntryLeader.EntryMetaType != EntryContainer || !v.EntryLeader.Interactive {
		t.Errorf("exec'd cat's entry leader %+v, want the interactive exec", v.EntryLeader)
	}
	if v.SessionLeader == nil || v.SessionLeader.PID != 70 {
		t.Errorf("session leader %+v", v.SessionLeader)
	}
	if ev := w.view(execd); ev.EntryLeader == nil || !ev.EntryLeader.SameAsProcess {
		t.Errorf("the entry leader's own entry leader %+v, want same_as_process", ev.EntryLeader)
	}
}

// TestReparentAndPIDReuse: an orphan follows its new parent; a reused pid is a
// new process, and the old one is ended (its exit was missed).
func TestReparentAndPIDReuse(t *testing.T) {
	w := newWorld(t, Config{})
	a := w.fork(event.Process{PID: 10, PPID: 1, PGID: 10, SID: 10, PIDNamespace: hostNS})
	b := w.fork(event.Process{PID: 11, PPID: 10, PGID: 10, SID: 10, PIDNamespace: hostNS})
	w.exit(a, 0)
	b.PPID = 1
	w.exec(b, "/bin/true", "true")
	if v := w.view(b); v.Process.PPID != 1 {
		t.Errorf("ppid %d after reparenting", v.Process.PPID)
	}
	// pid 11 again, a second later: b's exit was never seen.
	w.now += time.Second
	c := w.fork(event.Process{PID: 11, PPID: 1, PGID: 11, SID: 11, PIDNamespace: hostNS})
	vc := w.view(c)
	if vc.Process.EntityID == EntityID("agent-1", 11, b.Start) {
		t.Error("a reused pid kept the old entity id")
	}
	if _, ok := w.tab.Lookup(&b); ok {
		t.Error("the displaced process is still resolvable by its identity")
	}
	if s := w.tab.Stats(); s.MissedExits != 1 {
		t.Errorf("missed exits %d, want 1", s.MissedExits)
	}
}

// TestBoundedByLiveProcesses runs a long-lived shell that forks a million short
// commands: the table holds the live ones and those within their grace, not
// every process that ever ran.
func TestBoundedByLiveProcesses(t *testing.T) {
	w := newWorld(t, Config{Grace: 5 * time.Millisecond})
	sh := w.fork(event.Process{PID: 2, PPID: 1, PGID: 2, SID: 2, PIDNamespace: hostNS})
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	maxTracked := 0
	for i := range n {
		c := w.fork(event.Process{PID: uint32(1000 + i%30000), PPID: 2, PGID: 2, SID: 2, PIDNamespace: hostNS})
		w.exec(c, "/bin/true", "true")
		w.exit(c, 0)
		if i%1000 == 0 {
			maxTracked = max(maxTracked, w.tab.Stats().Tracked)
		}
	}
	s := w.tab.Stats()
	if s.Live != 1 || maxTracked > 100 || s.Evicted < uint64(n)-100 {
		t.Errorf("after %d processes: %+v, at most %d tracked", n, s, maxTracked)
	}
	if v := w.view(sh); v.Process.Exited {
		t.Error("the live shell was evicted")
	}
}

// TestDeadParentKeptWhileChildLives: a child links to its exited parent for as
// long as it lives; then both go.
func TestDeadParentKeptWhileChildLives(t *testing.T) {
	w := newWorld(t, Config{Grace: time.Millisecond})
	p := w.fork(event.Process{PID: 10, PPID: 1, PGID: 10, SID: 10, PIDNamespace: hostNS})
	w.exec(p, "/bin/parent", "parent")
	c := w.fork(event.Process{PID: 11, PPID: 10, PGID: 10, SID: 10, PIDNamespace: hostNS})
	w.exit(p, 0)
	for range 10 {
		w.ev(event.Fork, event.Process{PID: 500, PPID: 1, PIDNamespace: hostNS, Start: w.now}) // time passes
	}
	v := w.view(c)
	if v.Parent == nil || v.Parent.Executable != "/bin/parent" || !v.Parent.Exited {
		t.Errorf("the exited parent is gone while its child lives: %+v", v.Parent)
	}
	w.exit(c, 0)
	for range 10 {
		w.ev(event.Fork, event.Process{PID: 501, PPID: 1, PIDNamespace: hostNS, Start: w.now})
	}
	if _, ok := w.tab.LookupPID(10); ok {
		t.Error("the exited parent outlived its last child")
	}
}

func TestParseStat(t *testing.T) {
	// comm with spaces and parentheses; tty 136:3; start 12345 ticks.
	line := "4242 (a b) (c)) S 1 4242 4200 34819 4242 4194560 0 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	s, ok := parseStat([]byte(line))
	if !ok || s.comm != "a b) (c)" || s.ppid != 1 || s.pgid != 4242 || s.sid != 4200 || s.ttyMajor != 136 || s.ttyMinor != 3 || s.start != 12345*Tick || s.kthread {
		t.Fatalf("parseStat = %+v %v", s, ok)
	}
}

// TestScanFindsRunningProcesses reads this machine's /proc: a child started
// before the scan is found with its image, args, parent and credentials.
func TestScanFindsRunningProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("/bin/sleep", "30")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitExec(t, cmd.Process.Pid, "sleep")

	tab := New(Config{AgentID: "agent-1"})
	if err := tab.Scan(); err != nil {
		t.Fatal(err)
	}
	v, ok := tab.LookupPID(uint32(cmd.Process.Pid))
	if !ok {
		t.Fatal("child not found by the scan")
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe")
	p := v.Process
	if p.Executable != exe || !slices.Equal(p.Args, []string{"/bin/sleep", "30"}) || p.WorkingDirectory != dir {
		t.Errorf("scanned %q %q cwd %q", p.Executable, p.Args, p.WorkingDirectory)
	}
	if p.PPID != uint32(os.Getpid()) || v.Parent == nil || v.Parent.PID != uint32(os.Getpid()) {
		t.Errorf("ppid %d parent %+v", p.PPID, v.Parent)
	}
	if p.UID != uint32(os.Getuid()) || p.EGID != uint32(os.Getegid()) || p.PIDNamespace != nsInode("/proc/self/ns/pid") {
		t.Errorf("ids %d/%d ns %d", p.UID, p.EGID, p.PIDNamespace)
	}
	// Init is the host's entry leader, where its namespace can be read (a
	// sandbox may hide it: then which namespace it is in is unknown).
	if one, ok := tab.LookupPID(1); !ok {
		t.Error("pid 1 not found")
	} else if nsInode("/proc/1/ns/pid") == nsInode("/proc/self/ns/pid") && (one.EntryLeader == nil || one.EntryLeader.EntryMetaType != EntryInit) {
		t.Errorf("pid 1's entry leader %+v", one.EntryLeader)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// Its exit event could still be on its way: the first check only suspects it.
	tab.Reconcile()
	if v, _ := tab.LookupPID(uint32(cmd.Process.Pid)); v.Process.Exited {
		t.Error("ended at the first Reconcile that missed it: its exit event may still be in the ring")
	}
	tab.Reconcile()
	if v, _ := tab.LookupPID(uint32(cmd.Process.Pid)); !v.Process.Exited || v.Process.ExitKnown {
		t.Errorf("after the child died unseen: exited %v exit known %v", v.Process.Exited, v.Process.ExitKnown)
	}
}

// waitExec waits until pid runs the named image (Start returns before exec).
func waitExec(t *testing.T, pid int, comm string) {
	t.Helper()
	for range 200 {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if string(b) == comm+"\n" {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d never ran %s", pid, comm)
}

// BenchmarkTable measures the table's memory at 10k live processes (each with
// an exec'd image and args, as a busy node has) and the cost of a
// fork+exec+exit cycle through it.
func BenchmarkTable(b *testing.B) {
	b.Run("live10k", func(b *testing.B) {
		for range b.N {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			w := &world{tab: New(Config{AgentID: "agent-1", HostPIDNamespace: hostNS, ProcRoot: b.TempDir()})}
			w.tab.cfg.Clock = func() time.Duration { return w.now }
			for i := range 10_000 {
				p := w.fork(event.Process{PID: uint32(100 + i), PPID: 1, PGID: uint32(100 + i), SID: 1, PIDNamespace: hostNS, Comm: "worker"})
				// Distinct strings, as each exec event decodes its own.
				exe := "/usr/local/bin/some-service-binary-" + strconv.Itoa(i)
				w.exec(p, exe, exe, "--config", "/etc/service/config-"+strconv.Itoa(i)+".yaml", "--verbose")
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-heap")
			runtime.KeepAlive(w.tab)
		}
	})
	b.Run("cycle", func(b *testing.B) {
		w := &world{tab: New(Config{AgentID: "agent-1", HostPIDNamespace: hostNS, ProcRoot: b.TempDir(), Grace: time.Millisecond})}
		w.tab.cfg.Clock = func() time.Duration { return w.now }
		w.fork(event.Process{PID: 2, PPID: 1, PGID: 2, SID: 2, PIDNamespace: hostNS})
		args := []string{"true"}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c := w.fork(event.Process{PID: uint32(1000 + i%30000), PPID: 2, PGID: 2, SID: 2, PIDNamespace: hostNS})
			w.exec(c, "/bin/true", args...)
			w.exit(c, 0)
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(w.tab.Stats().Tracked), "tracked")
	})
}
