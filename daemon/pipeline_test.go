package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// sliceSource replays events, then ends as a closed engine does.
type sliceSource struct{ evs []event.Event }

func (s *sliceSource) Buffered() bool { return len(s.evs) > 0 }
func (s *sliceSource) Read() (event.Event, error) {
	if len(s.evs) == 0 {
		return event.Event{}, ebpf.ErrClosed
	}
	ev := s.evs[0]
	s.evs = s.evs[1:]
	return ev, nil
}

// TestPipelineToFile runs the event loop from kernel events to the file
// output: each exec logged and alerted is an event and an alert document, the alerts
// past the throttle's burst are counted in one summary alert at the end of
// the stream, nothing is lost, and no document arrives before a policy is in
// force.
func TestPipelineToFile(t *testing.T) {
	const execs = 30
	shell := event.Process{PID: 100, TID: 100, PPID: 1, PGID: 100, SID: 100, PIDNamespace: 2, Start: time.Second, Comm: "sh"}
	evs := minerExecs(shell, execs, 2*time.Second)
	path := filepath.Join(t.TempDir(), "events.ndjson")
	sink, err := NewFileSink(path, 1024, 3, discardLog{})
	if err != nil {
		t.Fatal(err)
	}
	tab := proctree.New(proctree.Config{AgentID: "agent-1", HostPIDNamespace: 1, ProcRoot: t.TempDir(), Grace: time.Millisecond})
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "t"}, host.Host{}, nil, time.Now(),
		func(*event.Event) ([]string, error) { return []string{"miner"}, nil })
	inForce := false
	meta := func() (ecs.Meta, bool) { return ecs.Meta{Namespace: "t"}, inForce }
	lim := throttle.New(throttle.Config{Rate: 0.001, Burst: 5})

	// Before a policy is in force nothing was decided: no documents.
	p := newPipeline(&sliceSource{evs: evs[:3]}, enrich.New(tab, nil), enc, sink, meta, lim, discardLog{})
	p.run()
	inForce = true
	p.source = &sliceSource{evs: evs[3:]}
	p.run()
	if err := sink.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var suppressed float64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var d struct {
			DataStream  struct{ Dataset string } `json:"data_stream"`
			Event       struct{ Kind string }
			Process     struct{ Executable string }
			CloudDefend struct {
				Throttle struct{ Suppressed float64 }
			} `json:"cloud_defend"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("not a document: %v: %s", err, line)
		}
		counts[d.DataStream.Dataset+"/"+d.Event.Kind]++
		suppressed += d.CloudDefend.Throttle.Suppressed
	}
	// 29 execs decided under the policy (the first came before it): 29 event
	// documents; 5 alerts, then one summary for the other 24.
	want := map[string]int{"cloud_defend.process/event": execs - 1, "cloud_defend.alerts/alert": 5 + 1}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d documents, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	if suppressed != execs-1-5 {
		t.Errorf("the summary counts %v suppressed alerts, want %d:\n%s", suppressed, execs-1-5, data)
	}
	var c ecs.Counters
	sink.Counters(&c)
	if c.Dropped != 0 || c.Acked != c.Published {
		t.Errorf("counters %+v: every document written, none dropped", c)
	}
}

// minerExecs are n children of shell, each forked, then exec'ing /tmp/miner,
// logged and alerted.
func minerExecs(shell event.Process, n int, now time.Duration) []event.Event {
	var evs []event.Event
	for i := range n {
		child := shell
		child.PID, child.TID, child.PPID, child.Start = shell.PID+uint32(1+i), shell.PID+uint32(1+i), shell.PID, now
		now += time.Millisecond
		evs = append(evs, event.Event{Kind: event.Fork, Time: now, Process: child, ParentTID: shell.TID})
		now += time.Millisecond
		evs = append(evs, event.Event{Kind: event.ProcessDecision, Time: now, Process: child, Op: policy.OpExec, Actions: policy.ActionLog | policy.ActionAlert, Path: "/tmp/miner", Matched: 1})
		evs = append(evs, event.Event{Kind: event.Exec, Time: now, Process: child, Executable: "/tmp/miner", Filename: "/tmp/miner", Args: []string{"/tmp/miner"}, Cwd: "/"})
	}
	return evs
}

// TestThrottleByPIDNamespace: two workloads without a container (sandboxes in
// pid namespaces 2 and 3) each get their own burst of alerts; a noisy one does
// not use up the other's.
func TestThrottleByPIDNamespace(t *testing.T) {
	noisy := event.Process{PID: 100, TID: 100, PPID: 1, PGID: 100, SID: 100, PIDNamespace: 2, Start: time.Second, Comm: "sh"}
	quiet := event.Process{PID: 5000, TID: 5000, PPID: 1, PGID: 5000, SID: 5000, PIDNamespace: 3, Start: time.Second, Comm: "sh"}
	evs := append(minerExecs(noisy, 30, 2*time.Second), minerExecs(quiet, 2, 3*time.Second)...)
	tab := proctree.New(proctree.Config{AgentID: "agent-1", HostPIDNamespace: 1, ProcRoot: t.TempDir(), Grace: time.Millisecond})
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "t"}, host.Host{}, nil, time.Now(),
		func(*event.Event) ([]string, error) { return []string{"miner"}, nil })
	sink := &memSink{}
	meta := func() (ecs.Meta, bool) { return ecs.Meta{Namespace: "t"}, true }
	p := newPipeline(&sliceSource{evs: evs}, enrich.New(tab, nil), enc, sink, meta, throttle.New(throttle.Config{Rate: 0.001, Burst: 5}), discardLog{})
	p.run()
	alerts := map[uint32]int{} // parent pid → alerts (summaries excluded)
	var summaries []string
	for _, d := range sink.docs {
		if d.Stream != "logs-cloud_defend.alerts-t" {
			continue
		}
		var doc struct {
			Message string
			Process struct {
				Parent struct{ PID uint32 }
			}
			CloudDefend struct {
				Throttle *struct{ Suppressed float64 }
			} `json:"cloud_defend"`
		}
		if err := json.Unmarshal(d.Body, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.CloudDefend.Throttle != nil {
			summaries = append(summaries, doc.Message)
			continue
		}
		alerts[doc.Process.Parent.PID]++
	}
	if alerts[noisy.PID] != 5 || alerts[quiet.PID] != 2 {
		t.Errorf("alerts by parent: %v, want 5 of the noisy workload's and both of the quiet one's", alerts)
	}
	// The noisy workload's window is summarized when the pipeline ends.
	if len(summaries) != 1 || !strings.Contains(summaries[0], "25 alerts suppressed for container (none, pid namespace 2)") {
		t.Errorf("summaries %q, want one for the noisy workload's pid namespace", summaries)
	}
}

// memSink keeps what it is given.
type memSink struct {
	mu   sync.Mutex
	docs []ecs.Doc
}

func (s *memSink) Publish(d ecs.Doc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.Body = slices.Clone(d.Body)
	s.docs = append(s.docs, d)
}
func (s *memSink) Flush()                          {}
func (s *memSink) Status() component.Status        { return component.Status{} }
func (s *memSink) Counters(*ecs.Counters)          {}
func (s *memSink) Close(ctx context.Context) error { return nil }
func (s *memSink) streams() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[string]int{}
	for _, d := range s.docs {
		n[d.Stream]++
	}
	return n
}

// TestPeriodicFollowsTheInput: nothing is sent before an input is in force;
// then the heartbeat at once and the metrics at the input's period, which
// arrives after the loop started (a daemon's default of a day must not hold
// the first metrics document back).
func TestPeriodicFollowsTheInput(t *testing.T) {
	sink := &memSink{}
	d := &Daemon{sink: sink, log: discardLog{}, heartbeat: 30 * time.Minute, metrics: 24 * time.Hour}
	tab := proctree.New(proctree.Config{AgentID: "agent-1", HostPIDNamespace: 1, ProcRoot: t.TempDir()})
	d.enr = enrich.New(tab, nil)
	d.enc = ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "t"}, host.Host{}, nil, time.Now(), func(*event.Event) ([]string, error) { return nil, nil })
	d.pipe = newPipeline(&sliceSource{}, d.enr, d.enc, sink, d.input, nil, discardLog{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); d.periodic(ctx) }()
	time.Sleep(1500 * time.Millisecond)
	if n := len(sink.streams()); n != 0 {
		t.Fatalf("%d documents before an input was in force", n)
	}
	d.SetInput(Input{Meta: ecs.Meta{Namespace: "t"}, HeartbeatPeriod: time.Hour, Metrics: time.Second})
	deadline := time.Now().Add(5 * time.Second)
	for sink.streams()["metrics-cloud_defend.metrics-t"] < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	got := sink.streams()
	if got["metrics-cloud_defend.heartbeat-t"] != 1 || got["metrics-cloud_defend.metrics-t"] < 2 {
		t.Errorf("documents by stream %v: want one heartbeat (period an hour) and a metrics document a second", got)
	}
}
