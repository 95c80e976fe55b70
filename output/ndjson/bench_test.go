package ndjson

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// BenchmarkPublishFile is the file output as the daemon drives it: ~1 KB
// documents published from one goroutine, a Flush every 50 (the end of a
// ring drain), into a file rotated at the default 10 MiB with 7 kept. The
// clock runs until Close has written everything, so the figure is what the
// writer sustains, not what the queue absorbs; a drop fails the benchmark.
// Publish alone is far faster than any disk, so the loop waits, at a Flush,
// while more than half the queue is unwritten: it measures the fastest rate
// that loses nothing.
func BenchmarkPublishFile(b *testing.B) {
	w, err := Open(Config{Path: filepath.Join(b.TempDir(), "out.ndjson")}, nopLog{})
	if err != nil {
		b.Fatal(err)
	}
	body := doc(0, 1024)
	b.SetBytes(int64(len(body) + 1))
	b.ResetTimer()
	start := time.Now()
	i := 0
	for b.Loop() {
		if err := w.Publish("logs-cloud_defend.process-default", "id", body); err != nil {
			b.Fatal(err)
		}
		if i++; i%50 == 0 {
			w.Flush()
			for w.q.Counters().PendingBytes > DefaultQueueBytes/2 {
				runtime.Gosched()
			}
		}
	}
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	st := w.Stats()
	if st.Dropped > 0 {
		b.Fatalf("%d of %d documents dropped", st.Dropped, st.Published)
	}
	b.ReportMetric(float64(st.Written)/el.Seconds(), "docs/s")
}

// BenchmarkPublish is Publish's own cost on the kernel reader's goroutine,
// the writer discarding.
func BenchmarkPublish(b *testing.B) {
	w := New(discard{}, "", Config{}, nopLog{})
	defer w.Close(context.Background())
	body := doc(0, 1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := w.Publish("logs-cloud_defend.process-default", "id", body); err != nil {
			b.Fatal(err)
		}
		if i++; i%50 == 0 {
			w.Flush()
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type nopLog struct{}

func (nopLog) Infof(string, ...any)  {}
func (nopLog) Warnf(string, ...any)  {}
func (nopLog) Errorf(string, ...any) {}
