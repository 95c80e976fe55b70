package output

import (
	"io"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// BenchmarkPipeline is the event path on one goroutine, from a decoded kernel
// record to the _bulk request body: the process table takes fork, exec and
// exit; the fork and exec decisions (a policy logging both) wait for their
// context and become ECS documents, and the process's end a third; each goes into the spool (handed to the OS
// every 50 documents, as the daemon does at the end of each ring drain), read
// back in batches of 1000 and framed as _bulk creates. Only the HTTP request is
// left out. Reported: kernel events/s and documents/s.
func BenchmarkPipeline(b *testing.B) {
	sp, err := openSpool(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	defer sp.close()
	tab := proctree.New(proctree.Config{AgentID: "agent-1", HostPIDNamespace: 1, ProcRoot: b.TempDir(), Grace: time.Millisecond})
	enr := enrich.New(tab, nil)
	names := []string{"allProcesses"}
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "bench"}, host.Local("/proc", "/etc"), nil, time.Now(),
		func(*event.Event) ([]string, error) { return names, nil })
	meta := ecs.Meta{Namespace: "default", PackagePolicyID: "pp", Revision: 1}
	var body bulkBody
	// Read as net/http does: into its write buffer (256 KiB, see newClient).
	wire, discard := make([]byte, 256<<10), struct{ io.Writer }{io.Discard}
	docs, events := 0, 0
	publish := func(d ecs.Doc) {
		if err := sp.append(d.Stream, d.ID, d.Body); err != nil {
			b.Fatal(err)
		}
		docs++
		if docs%50 == 0 {
			sp.flush(false) // a batch of events read: its documents go to the OS
		}
		if docs%1000 == 0 {
			batch, err := sp.next(1000, 8<<20)
			if err != nil {
				b.Fatal(err)
			}
			// The request body as the HTTP transport reads it.
			body = bulkBody{recs: batch, buf: body.buf}
			if _, err := io.CopyBuffer(discard, &body, wire); err != nil {
				b.Fatal(err)
			}
			if err := sp.ack(batch[len(batch)-1], int64(len(batch))); err != nil {
				b.Fatal(err)
			}
		}
	}
	emit := func(ev *event.Event, ctx *enrich.Context) {
		if err := enc.EncodeAll(ev, ctx, meta, publish); err != nil {
			b.Fatal(err)
		}
	}
	args := []string{"/usr/bin/python3", "-m", "http.server", "--bind", "0.0.0.0", "8080"}
	shell := event.Process{PID: 100, TID: 100, PPID: 1, PGID: 100, SID: 100, PIDNamespace: 2, Start: time.Second, Comm: "sh"}
	var now time.Duration = 2 * time.Second
	ev := func(kind event.Kind, p event.Process) event.Event {
		now += time.Microsecond
		return event.Event{Kind: kind, Time: now, Process: p}
	}
	first := ev(event.Fork, shell)
	enr.Handle(&first, emit)
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		child := shell
		child.PID, child.TID, child.PPID, child.Start = uint32(1000+i%30000), uint32(1000+i%30000), 100, now
		child.Comm = "sh"
		// In the kernel's order: task_alloc decides in the parent, then the
		// fork event names the child.
		fd := ev(event.ProcessDecision, shell)
		fd.Op, fd.Actions, fd.Path = policy.OpFork, policy.ActionLog, "/bin/sh"
		fork := ev(event.Fork, child)
		fork.ParentTID = shell.TID
		dec := ev(event.ProcessDecision, child)
		dec.Op, dec.Actions, dec.Path = policy.OpExec, policy.ActionLog, args[0]
		exec := ev(event.Exec, child)
		exec.Executable, exec.Filename, exec.Args, exec.Cwd = args[0], args[0], args, "/srv"
		exit := ev(event.Exit, child)
		for _, e := range []*event.Event{&fd, &fork, &dec, &exec, &exit} {
			enr.Handle(e, emit)
			events++
		}
	}
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(events)/secs, "events/s")
	b.ReportMetric(float64(docs)/secs, "docs/s")
}
