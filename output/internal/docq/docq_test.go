package docq

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestBound: the queue holds at most its limit in bytes, newlines included;
// what does not fit is dropped, and every document is accounted for.
func TestBound(t *testing.T) {
	release := make(chan struct{})
	var got []string
	q := New(100, time.Hour, func(b *Batch) Result {
		<-release
		data := b.Data
		for _, n := range b.Lens {
			got = append(got, string(data[:n]))
			data = data[n:]
		}
		return Result{Docs: b.Len(), Bytes: int64(len(b.Data))}
	})
	for _, body := range []string{strings.Repeat("a", 49), strings.Repeat("b", 49), "c", strings.Repeat("d", 200)} {
		if _, err := q.Publish([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	c := q.Counters()
	if c.Published != 4 || c.DroppedFull != 2 || c.Pending != 2 || c.PendingBytes != 100 {
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
