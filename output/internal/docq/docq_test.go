package docq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBound: the queue holds at most its limit in bytes, newlines included;
// what does not fit while the sink is stuck is dropped once the stall time
// has passed, and every document is accounted for.
func TestBound(t *testing.T) {
	release := make(chan struct{})
	var got []string
	q := newQueue(t, 100, 50*time.Millisecond, func(b *Batch) Result {
		<-release
		data := b.Data
		for _, n := range b.Lens {
			got = append(got, string(data[:n]))
			data = data[n:]
		}
		return Result{Docs: b.Len(), Bytes: int64(len(b.Data))}
	})
	// c waits the stall time and is dropped; d is larger than the queue; e,
	// with the sink still stuck, is dropped without waiting.
	for _, body := range []string{strings.Repeat("a", 49), strings.Repeat("b", 49), "c", strings.Repeat("d", 200), "e"} {
		if _, err := q.Publish([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	c := q.Counters()
	if c.Published != 5 || c.DroppedFull != 3 || c.Waits != 1 || c.Pending != 2 || c.PendingBytes != 100 {
		t.Errorf("counters %+v", c)
	}
	close(release)
	if err := q.Close(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	c = q.Counters()
	if c.Written != 2 || c.Pending != 0 || c.PendingBytes != 0 || c.Bytes != 100 || len(got) != 2 || got[1] != strings.Repeat("b", 49)+"\n" {
		t.Errorf("counters %+v, drained %q", c, got)
	}
	if _, err := q.Publish([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
}

// TestPartial: documents a drain could not write are counted as lost to
// errors, and the error stays until a drain succeeds.
func TestPartial(t *testing.T) {
	fail := true
	q := New(1<<20, time.Hour, func(b *Batch) Result {
		if fail {
			return Result{Docs: 1, Bytes: int64(b.Lens[0]), Err: errors.New("disk full")}
		}
		return Result{Docs: b.Len()}
	})
	for range 3 {
		if _, err := q.Publish([]byte("doc")); err != nil {
			t.Fatal(err)
		}
	}
	q.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for q.Counters().DroppedError != 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if c := q.Counters(); c.Written != 1 || c.DroppedError != 2 || !c.Failing || c.LastError != "disk full" {
		t.Errorf("counters %+v", c)
	}
	fail = false // the drain goroutine is idle: no batch is queued
	if _, err := q.Publish([]byte("doc")); err != nil {
		t.Fatal(err)
	}
	q.Close(context.Background(), func() {})
	if c := q.Counters(); c.Written != 2 || c.Failing {
		t.Errorf("counters %+v", c)
	}
}

// newQueue is New with the stall time set.
func newQueue(t *testing.T, limit int, stall time.Duration, drain Drain) *Queue {
	t.Helper()
	q := New(limit, time.Hour, drain)
	q.mu.Lock()
	q.stall = stall
	q.mu.Unlock()
	return q
}

// TestBackpressure: a sink slower than the documents coming, but writing,
// makes Publish wait for room instead of dropping: every document arrives,
// in order.
func TestBackpressure(t *testing.T) {
	var got strings.Builder
	q := newQueue(t, 100, time.Second, func(b *Batch) Result {
		time.Sleep(5 * time.Millisecond)
		got.Write(b.Data)
		return Result{Docs: b.Len(), Bytes: int64(len(b.Data))}
	})
	var want strings.Builder
	for i := range 200 {
		doc := fmt.Sprintf("doc-%03d-%s", i, strings.Repeat("x", 10))
		want.WriteString(doc + "\n")
		if ok, err := q.Publish([]byte(doc)); !ok || err != nil {
			t.Fatalf("document %d: %v %v", i, ok, err)
		}
	}
	if err := q.Close(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	c := q.Counters()
	if c.DroppedFull != 0 || c.Written != 200 || c.Waits == 0 || got.String() != want.String() {
		t.Errorf("counters %+v; written in order: %v", c, got.String() == want.String())
	}
}

// TestFailingSinkDropsAtOnce: while the sink's last batch failed, a full
// queue drops without waiting (a dead disk must not hold the reader up).
func TestFailingSinkDropsAtOnce(t *testing.T) {
	var stuck atomic.Bool
	release := make(chan struct{})
	q := newQueue(t, 100, time.Hour, func(b *Batch) Result {
		if stuck.Load() {
			<-release
		}
		return Result{Err: errors.New("disk full")}
	})
	defer close(release)
	if _, err := q.Publish([]byte("first")); err != nil {
		t.Fatal(err)
	}
	q.Flush()
	for deadline := time.Now().Add(5 * time.Second); !q.Counters().Failing; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failed batch was not recorded")
		}
	}
	stuck.Store(true)
	for range 10 {
		if _, err := q.Publish([]byte(strings.Repeat("y", 30))); err != nil {
			t.Fatal(err)
		}
	}
	if c := q.Counters(); c.DroppedFull == 0 || c.Waits != 0 {
		t.Errorf("counters %+v: drops at once, no waits", c)
	}
}

// TestStallWakeup: a publisher waiting on a stuck sink returns once the stall
// time has passed, however the scheduler delays it (many queues at once,
// allocation pressure); none sleeps on past its deadline.
func TestStallWakeup(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	for range 4 {
		go func() { // allocation pressure: GC assists in the publishers
			var keep [][]byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				if keep = append(keep, make([]byte, 4096)); len(keep) > 256 {
					keep = nil
				}
			}
		}()
	}
	release := make(chan struct{})
	defer close(release)
	var hung atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				q := newQueue(t, 10, 50*time.Microsecond, func(b *Batch) Result { <-release; return Result{Docs: b.Len()} })
				_, _ = q.Publish([]byte("aaaaaaaaa")) // fills the queue; the sink takes it and never returns
				done := make(chan struct{})
				go func() { _, _ = q.Publish([]byte("b")); close(done) }()
				select {
				case <-done:
				case <-time.After(time.Second): // the stall time is 50 µs
					hung.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := hung.Load(); n > 0 {
		t.Errorf("%d of 800 Publish calls on a stuck sink never returned", n)
	}
}

// TestSlowSinkCountsAsStuck: a sink whose batches take longer than the stall
// time is stuck, though it moves now and then: after the first wait runs out,
// a full queue drops at once instead of holding the caller for each batch.
func TestSlowSinkCountsAsStuck(t *testing.T) {
	q := newQueue(t, 100, 20*time.Millisecond, func(b *Batch) Result {
		time.Sleep(30 * time.Millisecond)
		return Result{Docs: b.Len(), Bytes: int64(len(b.Data))}
	})
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		if _, err := q.Publish([]byte(strings.Repeat("z", 19))); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	c := q.Counters()
	if c.Waits > 2 || c.DroppedFull == 0 || c.Published != c.Written+c.DroppedFull+c.DroppedError {
		t.Errorf("counters %+v: one wait, then drops at once; every document accounted for", c)
	}
}
