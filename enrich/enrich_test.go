package enrich

import (
	"slices"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/policy"
)

type emitted struct {
	ev   ebpf.Event
	exe  string
	args []string
}

func newTestEnricher(t *testing.T) (*Enricher, *[]emitted, Emit) {
	tab := proctree.New(proctree.Config{AgentID: "a", HostPIDNamespace: 1, ProcRoot: t.TempDir()})
	var out []emitted
	emit := func(ev *ebpf.Event, ctx *ecs.Context) {
		e := emitted{ev: *ev}
		if ctx.Process != nil {
			e.exe, e.args = ctx.Process.Process.Executable, ctx.Process.Process.Args
		}
		out = append(out, e)
	}
	return New(tab, nil), &out, emit
}

// TestExecDecisionWaitsForExec: the kernel decides an exec before it happens;
// the document must describe the new image, so the decision waits for the
// exec event of its task.
func TestExecDecisionWaitsForExec(t *testing.T) {
	e, out, emit := newTestEnricher(t)
	p := ebpf.Process{PID: 10, TID: 10, PPID: 1, Start: time.Second}
	at := func(ms int) time.Duration { return 2*time.Second + time.Duration(ms)*time.Millisecond }
	e.Handle(&ebpf.Event{Kind: ebpf.EventFork, Time: at(0), Process: p}, emit)
	e.Handle(&ebpf.Event{Kind: ebpf.EventExec, Time: at(1), Process: p, Executable: "/bin/sh", Args: []string{"sh"}}, emit)
	e.Handle(&ebpf.Event{Kind: ebpf.EventDecision, Time: at(2), Process: p, Op: policy.OpExec, Actions: policy.ActionAlert, Path: "/bin/cat"}, emit)
	if len(*out) != 0 {
		t.Fatalf("decision emitted before its exec: %+v", *out)
	}
	e.Handle(&ebpf.Event{Kind: ebpf.EventExec, Time: at(3), Process: p, Executable: "/bin/cat", Args: []string{"cat", "/etc/shadow"}}, emit)
	if len(*out) != 1 || (*out)[0].exe != "/bin/cat" || !slices.Equal((*out)[0].args, []string{"cat", "/etc/shadow"}) {
		t.Fatalf("after the exec: %+v", *out)
	}

	// A blocked exec never happens: emitted at once.
	e.Handle(&ebpf.Event{Kind: ebpf.EventDecision, Time: at(4), Process: p, Op: policy.OpExec, Actions: policy.ActionBlock, Blocked: true, Path: "/tmp/x"}, emit)
	if len(*out) != 2 {
		t.Fatalf("blocked decision waited: %d emitted", len(*out))
	}

	// An exec that fails after the decision: the next event of the task, or
	// time, releases it.
	e.Handle(&ebpf.Event{Kind: ebpf.EventDecision, Time: at(5), Process: p, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/false"}, emit)
	e.Handle(&ebpf.Event{Kind: ebpf.EventFile, Time: at(6), Process: p, Op: policy.OpModifyFile, Actions: policy.ActionLog, Path: "/etc/x"}, emit)
	if len(*out) != 4 || (*out)[2].ev.Path != "/bin/false" || (*out)[3].ev.Kind != ebpf.EventFile {
		t.Fatalf("pending decision not released by the task's next event, in order: %+v", *out)
	}
	q := ebpf.Process{PID: 11, TID: 11, PPID: 1, Start: time.Second}
	e.Handle(&ebpf.Event{Kind: ebpf.EventDecision, Time: at(7), Process: q, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/false"}, emit)
	e.Handle(&ebpf.Event{Kind: ebpf.EventFork, Time: at(7) + execWait + time.Millisecond, Process: ebpf.Process{PID: 12, PPID: 1, Start: at(8)}}, emit)
	if len(*out) != 5 || (*out)[4].ev.Process.PID != 11 {
		t.Fatalf("pending decision not released after %v: %d emitted", execWait, len(*out))
	}
	e.Handle(&ebpf.Event{Kind: ebpf.EventDecision, Time: at(500), Process: q, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/true"}, emit)
	e.Flush(emit)
	if len(*out) != 6 {
		t.Fatalf("Flush left decisions waiting: %d emitted", len(*out))
	}
}
