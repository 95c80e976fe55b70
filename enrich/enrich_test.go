package enrich

import (
	"net/netip"
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

// TestNetworkDecision: a network decision needs its process's context but
// waits for nothing (the kernel reports it when the socket call is made,
// after the exec that runs the process): it is emitted at once, with the
// process as the table has it, and after a decision of its task still
// waiting for its exec.
func TestNetworkDecision(t *testing.T) {
	e, out, emit := newTestEnricher(t)
	p := event.Process{PID: 20, TID: 20, PPID: 1, Start: time.Second}
	at := func(ms int) time.Duration { return 2*time.Second + time.Duration(ms)*time.Millisecond }
	e.Handle(&event.Event{Kind: event.Fork, Time: at(0), Process: p}, emit)
	e.Handle(&event.Event{Kind: event.Exec, Time: at(1), Process: p, Executable: "/usr/bin/curl", Args: []string{"curl", "https://example.com"}}, emit)
	conn := event.Event{Kind: event.NetworkDecision, Time: at(2), Process: p, Op: policy.OpConnect, Hook: event.HookSocketConnect,
		Actions: policy.ActionLog, Protocol: event.ProtocolTCP, Destination: netip.MustParseAddrPort("93.184.215.14:443"), Direction: event.DirectionEgress}
	e.Handle(&conn, emit)
	if len(*out) != 1 || (*out)[0].ev.Kind != event.NetworkDecision || (*out)[0].exe != "/usr/bin/curl" ||
		(*out)[0].ev.Destination != conn.Destination || (*out)[0].ev.Protocol != event.ProtocolTCP {
		t.Fatalf("network decision: %+v", *out)
	}

	// An exec decision waiting for its exec is released first: documents
	// stay in the order the kernel made them.
	e.Handle(&event.Event{Kind: event.ProcessDecision, Time: at(3), Process: p, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/nc"}, emit)
	bind := event.Event{Kind: event.NetworkDecision, Time: at(4), Process: p, Op: policy.OpBind, Hook: event.HookSocketBind, Blocked: true,
		Actions: policy.ActionBlock | policy.ActionAlert, Protocol: event.ProtocolTCP, Source: netip.MustParseAddrPort("0.0.0.0:4444")}
	e.Handle(&bind, emit)
	if len(*out) != 3 || (*out)[1].ev.Kind != event.ProcessDecision || (*out)[2].ev.Kind != event.NetworkDecision || (*out)[2].ev.Source != bind.Source {
		t.Fatalf("after a pending exec decision: %+v", *out)
	}

	// A process the table does not know: emitted, without process context.
	q := event.Process{PID: 21, TID: 21, PPID: 1, Start: time.Second}
	e.Handle(&event.Event{Kind: event.NetworkDecision, Time: at(5), Process: q, Op: policy.OpAccept, Hook: event.HookSocketAccept, Actions: policy.ActionLog}, emit)
	if len(*out) != 4 || (*out)[3].exe != "" || (*out)[3].ev.Process.PID != 21 {
		t.Fatalf("unknown process: %+v", *out)
	}
	e.Flush(emit)
	if len(*out) != 4 {
		t.Fatalf("Flush emitted %d more", len(*out)-4)
	}
}
