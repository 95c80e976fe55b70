package daemon

import (
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// forkExecSource replays a shell forking and exec'ing a child n times, as the
// kernel reports it under a policy logging both (a fork decision, the fork,
// an exec decision, the exec, the exit), in batches of 50 events.
type forkExecSource struct {
	n, i  int
	now   time.Duration
	queue []event.Event
	sent  int
}

func (s *forkExecSource) Buffered() bool { return s.sent%50 != 0 }

func (s *forkExecSource) Read() (event.Event, error) {
	if len(s.queue) == 0 {
		if s.i == s.n {
			return event.Event{}, ebpf.ErrClosed
		}
		s.queue = s.next(s.queue)
		s.i++
	}
	ev := s.queue[0]
	s.queue = s.queue[1:]
	s.sent++
	return ev, nil
}

var benchArgs = []string{"/usr/bin/python3", "-m", "http.server", "--bind", "0.0.0.0", "8080"}

func (s *forkExecSource) next(q []event.Event) []event.Event {
	shell := event.Process{PID: 100, TID: 100, PPID: 1, PGID: 100, SID: 100, PIDNamespace: 2, Start: time.Second, Comm: "sh"}
	ev := func(kind event.Kind, p event.Process) event.Event {
		s.now += time.Microsecond
		return event.Event{Kind: kind, Time: s.now, Process: p}
	}
	if s.i == 0 {
		q = append(q, ev(event.Fork, shell))
	}
	child := shell
	child.PID, child.TID, child.PPID, child.Start = uint32(1000+s.i%30000), uint32(1000+s.i%30000), 100, s.now
	fd := ev(event.ProcessDecision, shell)
	fd.Op, fd.Actions, fd.Path = policy.OpFork, policy.ActionLog, "/bin/sh"
	fork := ev(event.Fork, child)
	fork.ParentTID = shell.TID
	dec := ev(event.ProcessDecision, child)
	dec.Op, dec.Actions, dec.Path = policy.OpExec, policy.ActionLog, benchArgs[0]
	exec := ev(event.Exec, child)
	exec.Executable, exec.Filename, exec.Args, exec.Cwd = benchArgs[0], benchArgs[0], benchArgs, "/srv"
	exit := ev(event.Exit, child)
	return append(q, fd, fork, dec, exec, exit)
}

type discardLog struct{}

func (discardLog) Infof(string, ...any)  {}
func (discardLog) Warnf(string, ...any)  {}
func (discardLog) Errorf(string, ...any) {}

// BenchmarkPipeline is the daemon's event loop itself (pipeline.run: source →
// enricher → encoder → throttle → sink) on one goroutine, from decoded kernel
// events to documents written by the NDJSON file output (file) or discarded
// by it (stdout to io.Discard). Reported: kernel events/s, documents written
// per second, and documents dropped (a file output slower than the events).
func BenchmarkPipeline(b *testing.B) {
	for _, out := range []string{"file", "discard"} {
		b.Run(out, func(b *testing.B) {
			var sink Sink
			if out == "file" {
				s, err := NewFileSink(filepath.Join(b.TempDir(), "events.ndjson"), 1<<20, 2, discardLog{})
				if err != nil {
					b.Fatal(err)
				}
				sink = s
			} else {
				sink = NewWriterSink(io.Discard, "discard", discardLog{})
			}
			tab := proctree.New(proctree.Config{AgentID: "agent-1", HostPIDNamespace: 1, ProcRoot: b.TempDir(), Grace: time.Millisecond})
			enr := enrich.New(tab, nil)
			names := []string{"allProcesses"}
			enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "bench"}, host.Local("/proc", "/etc"), nil, time.Now(),
				func(*event.Event) ([]string, error) { return names, nil })
			meta := func() (ecs.Meta, bool) {
				return ecs.Meta{Namespace: "default", PackagePolicyID: "pp", Revision: 1}, true
			}
			src := &forkExecSource{n: b.N, now: 2 * time.Second}
			p := newPipeline(src, enr, enc, sink, meta, throttle.New(throttle.Config{Rate: throttle.DefaultRate, Burst: throttle.DefaultBurst}), discardLog{})
			b.ResetTimer()
			start := time.Now()
			p.run()
			if err := sink.Close(b.Context()); err != nil {
				b.Fatal(err)
			}
			secs := time.Since(start).Seconds()
			var c ecs.Counters
			sink.Counters(&c)
			// The file output drops rather than stall the kernel reader: what
			// it wrote is the figure, and what it dropped is reported beside.
			b.ReportMetric(float64(src.sent)/secs, "events/s")
			b.ReportMetric(float64(c.Acked)/secs, "docs/s")
			b.ReportMetric(float64(c.Dropped), "dropped")
		})
	}
}
