package ecs

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// TestAppendTime: the hand-written formatter writes what AppendFormat does.
func TestAppendTime(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{time.Unix(0, 0), time.Date(2026, 12, 1, 9, 5, 7, 1, time.UTC), time.Date(999, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", 3600))}
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(1<<36), r.Int64N(1e9)))
	}
	for _, tm := range times {
		if got, want := string(appendTime(nil, tm)), tm.UTC().Format("2006-01-02T15:04:05.000000000Z"); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

// TestLiteralsNeedNoEscape: the values written with lit, unescaped, are
// what appendString would write.
func TestLiteralsNeedNoEscape(t *testing.T) {
	var vals []string
	for op := range policy.Op(64) {
		vals = append(vals, op.String())
	}
	for h := range event.HookPoint(64) {
		vals = append(vals, h.String())
	}
	for l := range event.Layer(8) {
		vals = append(vals, l.String())
	}
	kinds := []event.Kind{event.Exit, event.ProcessDecision, event.FileDecision, event.NetworkDecision}
	for _, k := range kinds {
		for op := range policy.Op(64) {
			for h := range event.HookPoint(32) {
				for _, blocked := range []bool{false, true} {
					ev := &event.Event{Kind: k, Op: op, Hook: h, Blocked: blocked}
					action, typ := actionOf(ev)
					vals = append(vals, action, typ, outcome(ev), hookPoint(ev))
				}
			}
		}
	}
	for _, s := range vals {
		if got := string(appendString(nil, s)); got != `"`+s+`"` {
			t.Errorf("%q is written as %s", s, got)
		}
	}
}
