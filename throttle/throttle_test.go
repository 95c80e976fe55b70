package throttle

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/event"
	pkg "github.com/cloud-defend/cloud-defend/package"
	"github.com/cloud-defend/cloud-defend/policy"
)

// TestAccounting floods two keys at 1000 alerts a second for 3 seconds:
// each lets through the burst plus the refill, and every alert is either
// delivered or counted in exactly one summary.
func TestAccounting(t *testing.T) {
	l := New(Config{Rate: 5, Burst: 20, Window: time.Second})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := Key{Container: "a", Selectors: 1}, Key{Container: "b", Selectors: 1}
	delivered := map[Key]int{}
	var summaries []Summary
	var now time.Time
	for i := range 3000 {
		now = t0.Add(time.Duration(i) * time.Millisecond)
		for _, k := range []Key{a, b} {
			ok, s := l.Allow(k, now, []byte(fmt.Sprintf(`{"n":%d}`, i)), "s")
			if s != nil {
				summaries = append(summaries, *s)
			}
			if ok {
				delivered[k]++
			}
		}
		if i%100 == 0 {
			summaries = append(summaries, l.Expire(now)...)
		}
	}
	summaries = append(summaries, l.Flush(now)...)
	suppressed := map[Key]uint64{}
	for _, s := range summaries {
		suppressed[s.Key] += s.Suppressed
		if s.End.Before(s.Start) || s.End.Sub(s.Start) > 1100*time.Millisecond {
			t.Errorf("window %v..%v", s.Start, s.End)
		}
	}
	for _, k := range []Key{a, b} {
		// 20 at once, then 5/s over 3 s: 20 + 15 (the last token may be a
		// millisecond short).
		if d := delivered[k]; d < 34 || d > 35 {
			t.Errorf("%v: %d delivered, want 20 + 5/s * 3 s", k, d)
		}
		if got := uint64(delivered[k]) + suppressed[k]; got != 3000 {
			t.Errorf("%v: delivered %d + suppressed %d = %d, want 3000", k, delivered[k], suppressed[k], got)
		}
	}
	total, n := l.Stats()
	if total != suppressed[a]+suppressed[b] || n != uint64(len(summaries)) {
		t.Errorf("stats %d %d", total, n)
	}
	// Quiet again: the buckets refill and are forgotten.
	l.Expire(now.Add(time.Minute))
	if len(l.buckets) != 0 {
		t.Errorf("%d buckets kept", len(l.buckets))
	}
	if New(Config{Rate: 0}) != nil {
		t.Error("rate 0 should turn throttling off")
	}
}

// TestSummaryDocument: a summary is the last suppressed alert, as the ECS
// encoder wrote it, with the count and window; every field is declared in the
// alerts data stream; and the metric splices into the metrics document.
func TestSummaryDocument(t *testing.T) {
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "test"}, host.Host{Hostname: "n", Name: "n"}, nil, time.Unix(0, 0),
		func(*event.Event) ([]string, error) { return []string{"deniedExec"}, nil })
	ev := event.Event{Kind: event.ProcessDecision, Time: time.Second, Process: event.Process{PID: 9, Comm: "nc"}, Op: policy.OpExec,
		Actions: policy.ActionAlert | policy.ActionBlock, Blocked: true, Path: "/usr/bin/nc"}
	doc, _, err := enc.Encode(&ev, &enrich.Context{Container: &enrich.Container{ID: "0123456789abcdef0123", ImageName: "docker.io/x/y"}}, ecs.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rate: 5, Burst: 20}
	start := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	s := Summary{Key: Key{Container: "0123456789abcdef0123"}, Suppressed: 4980, Start: start, End: start.Add(9 * time.Second), Sample: doc.Body, Stream: doc.Stream}
	id, body, err := Document(s, cfg, start.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if und, err := pkg.Undeclared("alerts", body); err != nil || len(und) > 0 {
		t.Errorf("undeclared in alerts: %v %v", und, err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	ev2 := m["event"].(map[string]any)
	th := m["cloud_defend"].(map[string]any)["throttle"].(map[string]any)
	if id != doc.ID+"-throttle" || ev2["id"] != id || ev2["kind"] != "alert" || ev2["action"] != "alerts_suppressed" ||
		th["suppressed"] != float64(4980) || th["window"].(map[string]any)["start"] != "2026-01-01T00:00:01.000000000Z" ||
		m["@timestamp"] != "2026-01-01T00:00:10.000000000Z" || m["container"].(map[string]any)["id"] != "0123456789abcdef0123" {
		t.Errorf("summary: %s", body)
	}
	want := "cloud-defend: 4980 alerts suppressed for container 0123456789ab, selectors deniedExec, from 2026-01-01T00:00:01.000000000Z to 2026-01-01T00:00:10.000000000Z (over 20 at once or 5 a second); the last: cloud-defend blocked: exec /usr/bin/nc by nc (pid 9), selectors deniedExec"
	if m["message"] != want {
		t.Errorf("message %q", m["message"])
	}

	md := enc.Metrics(ecs.Meta{}, ecs.Counters{Events: 3}, start)
	mb := AddMetric(md.Body, 4980)
	var mm map[string]any
	if err := json.Unmarshal(mb, &mm); err != nil {
		t.Fatalf("%v: %s", err, mb)
	}
	met := mm["cloud_defend"].(map[string]any)["metrics"].(map[string]any)
	if met["alerts_suppressed"] != float64(4980) || met["events"] != float64(3) {
		t.Errorf("metrics: %s", mb)
	}
	if und, err := pkg.Undeclared("metrics", mb); err != nil || len(und) > 0 {
		t.Errorf("undeclared in metrics: %v %v", und, err)
	}
}

// TestSetConfig: a new setting applies to the next alert; rate 0 lets all
// through, and a window open before it is still summarized.
func TestSetConfig(t *testing.T) {
	l := New(Config{Rate: 1, Burst: 1})
	now := time.Unix(100, 0)
	k := Key{Container: "c"}
	if ok, _ := l.Allow(k, now, []byte(`{}`), "s"); !ok {
		t.Fatal("first alert held")
	}
	if ok, _ := l.Allow(k, now, []byte(`{}`), "s"); ok {
		t.Fatal("second alert at once let through with burst 1")
	}
	l.SetConfig(Config{Rate: 0})
	for range 5 {
		if ok, _ := l.Allow(k, now, []byte(`{}`), "s"); !ok {
			t.Fatal("held with rate 0")
		}
	}
	if s := l.Flush(now); len(s) != 1 || s[0].Suppressed != 1 {
		t.Errorf("flush: %+v", s)
	}
}
