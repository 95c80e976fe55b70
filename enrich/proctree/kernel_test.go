package proctree

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/event"
)

// TestKernelEvents feeds the table from the real kernel (the engine's
// tracepoints, which load on this host): this test process is found by the
// scan, the shell it starts comes from fork/exec/exit events, and both agree on
// entity ids — the scan's tick-precise start and the kernel's nanoseconds name
// the same process.
func TestKernelEvents(t *testing.T) {
	eng, err := ebpf.Open(ebpf.Options{DisableLSM: true, FlushInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatalf("open engine (needs root and BPF tracepoints): %v", err)
	}
	tab := New(Config{AgentID: "agent-1"})
	seen := make(chan event.Event, 4096)
	done := make(chan struct{})
	// The scan runs on the writer goroutine after events flow, as in the agent.
	scanned := make(chan error, 1)
	go func() {
		defer close(done)
		scanned <- tab.Scan()
		for {
			ev, err := eng.Read()
			if errors.Is(err, ebpf.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			tab.Apply(&ev)
			select {
			case seen <- ev:
			default:
			}
		}
	}()
	t.Cleanup(func() { eng.Close(); <-done })
	if err := <-scanned; err != nil {
		t.Fatal(err)
	}
	self, ok := tab.LookupPID(uint32(os.Getpid()))
	if !ok {
		t.Fatal("this process was not found by the scan")
	}

	cmd := exec.Command("/bin/sh", "-c", "/bin/sleep 0.05; exit 3")
	cmd.Dir = t.TempDir()
	if err := cmd.Run(); err == nil {
		t.Fatal("sh exited 0, want 3")
	}
	shPID := uint32(cmd.Process.Pid)
	var sleepEv event.Event
	deadline := time.After(10 * time.Second)
	for sleepEv.Kind == 0 || !exited(tab, shPID) {
		select {
		case ev := <-seen:
			if ev.Kind == event.Exec && ev.Process.PPID == shPID && ev.Executable != "" {
				sleepEv = ev
			}
		case <-deadline:
			t.Fatalf("no exec of sleep under sh %d, or no exit of sh", shPID)
		}
	}
	sh, _ := tab.LookupPID(shPID)
	if sh.Parent == nil || sh.Parent.EntityID != self.Process.EntityID {
		t.Errorf("sh's parent %+v, want this process %s", sh.Parent, self.Process.EntityID)
	}
	if !sh.Process.ExitKnown || sh.Process.Exit.Code != 3 {
		t.Errorf("sh's exit %+v (known %v), want code 3", sh.Process.Exit, sh.Process.ExitKnown)
	}
	if !slices.Equal(sh.Process.Args, []string{"/bin/sh", "-c", "/bin/sleep 0.05; exit 3"}) || sh.Process.WorkingDirectory == "" {
		t.Errorf("sh's args %q cwd %q", sh.Process.Args, sh.Process.WorkingDirectory)
	}
	sl, ok := tab.Lookup(&sleepEv.Process)
	if !ok {
		t.Fatal("sleep not in the table")
	}
	if sl.Parent == nil || sl.Parent.PID != shPID || sl.Process.Name != "sleep" {
		t.Errorf("sleep: name %q parent %+v", sl.Process.Name, sl.Parent)
	}
	if len(sl.Process.Previous) == 0 || sl.Process.Previous[len(sl.Process.Previous)-1].Args[0] != "/bin/sh" {
		t.Errorf("sleep's previous %+v, want the forked sh", sl.Process.Previous)
	}
	if sl.EntryLeader != nil && self.EntryLeader != nil && sl.EntryLeader.EntityID != self.EntryLeader.EntityID {
		t.Errorf("sleep's entry leader %s differs from its ancestor's %s", sl.EntryLeader.EntityID, self.EntryLeader.EntityID)
	}
	if s := tab.Stats(); s.Forks == 0 || s.Execs == 0 || s.Exits == 0 {
		t.Errorf("stats %+v", s)
	}
}

func exited(tab *Table, pid uint32) bool {
	v, ok := tab.LookupPID(pid)
	return ok && v.Process.Exited
}
