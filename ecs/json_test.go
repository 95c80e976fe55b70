package ecs

import (
	"math/rand/v2"
	"testing"
	"time"
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
