package enrich

import (
	"slices"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

type emitted struct {
	ev   event.Event
	exe  string
	args []string
}

func newTestEnricher(t *testing.T) (*Enricher, *[]emitted, Emit) {
	tab := proctree.New(proctree.Config{AgentID: "a", HostPIDNamespace: 1, ProcRoot: t.TempDir()})
	var out []emitted
	emit := func(ev *event.Event, ctx *Context) {
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
	p := event.Process{PID: 10, TID: 10, PPID: 1, Start: time.Second}
	at := func(ms int) time.Duration { return 2*time.Second + time.Duration(ms)*time.Millisecond }
	e.Handle(&event.Event{Kind: event.Fork, Time: at(0), Process: p}, emit)
	e.Handle(&event.Event{Kind: event.Exec, Time: at(1), Process: p, Executable: "/bin/sh", Args: []string{"sh"}}, emit)
	e.Handle(&event.Event{Kind: event.ProcessDecision, Time: at(2), Process: p, Op: policy.OpExec, Actions: policy.ActionAlert, Path: "/bin/cat"}, emit)
	if len(*out) != 0 {
		t.Fatalf("decision emitted before its exec: %+v", *out)
	}
	e.Handle(&event.Event{Kind: event.Exec, Time: at(3), Process: p, Executable: "/bin/cat", Args: []string{"cat", "/etc/shadow"}}, emit)
	if len(*out) != 1 || (*out)[0].exe != "/bin/cat" || !slices.Equal((*out)[0].args, []string{"cat", "/etc/shadow"}) {
		t.Fatalf("after the exec: %+v", *out)
	}

	// A blocked exec never happens: emitted at once.
	e.Handle(&event.Event{Kind: event.ProcessDecision, Time: at(4), Process: p, Op: policy.OpExec, Actions: policy.ActionBlock, Blocked: true, Path: "/tmp/x"}, emit)
	if len(*out) != 2 {
		t.Fatalf("blocked decision waited: %d emitted", len(*out))
	}

	// An exec that fails after the decision: the next event of the task, or
	// time, releases it.
	e.Handle(&event.Event{Kind: event.ProcessDecision, Time: at(5), Process: p, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/false"}, emit)
	e.Handle(&event.Event{Kind: event.FileDecision, Time: at(6), Process: p, Op: policy.OpModifyFile, Actions: policy.ActionLog, Path: "/etc/x"}, emit)
	if len(*out) != 4 || (*out)[2].ev.Path != "/bin/false" || (*out)[3].ev.Kind != event.FileDecision {
		t.Fatalf("pending decision not released by the task's next event, in order: %+v", *out)
	}
	q := event.Process{PID: 11, TID: 11, PPID: 1, Start: time.Second}
	e.Handle(&event.Event{Kind: event.ProcessDecision, Time: at(7), Process: q, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/false"}, emit)
	e.Handle(&event.Event{Kind: event.Fork, Time: at(7) + execWait + time.Millisecond, Process: event.Process{PID: 12, PPID: 1, Start: at(8)}}, emit)
	if len(*out) != 5 || (*out)[4].ev.Process.PID != 11 {
		t.Fatalf("pending decision not released after %v: %d emitted", execWait, len(*out))
	}
	e.Handle(&event.Event{Kind: event.ProcessDecision, Time: at(500), Process: q, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/true"}, emit)
	e.Flush(emit)
	if len(*out) != 6 {
		t.Fatalf("Flush left decisions waiting: %d emitted", len(*out))
	}
}
