// Package docq is the bounded in-memory queue the non-Elasticsearch outputs
// (output/ndjson, output/console) share: Publish copies a document into the
// queue and never blocks; a drain goroutine hands what accumulated to the
// sink in one batch. The queue is bounded by bytes: a document that does not
// fit is dropped and counted, so a slow or stalled sink costs documents,
// never the kernel reader's time.
package docq

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("output closed")

// Batch is documents in the order published: each one's body followed by
// '\n', back to back in Data; Lens[i] is the i-th document's length,
// newline included. A batch is valid only during the Drain call.
type Batch struct {
	Data []byte
	Lens []int32
}

// Len is the number of documents.
func (b *Batch) Len() int { return len(b.Lens) }

func (b *Batch) reset() {
	b.Data, b.Lens = b.Data[:0], b.Lens[:0]
}

// Result is what a Drain did with a batch: the first Docs documents (Bytes
// bytes) reached the sink; the rest were lost to Err.
type Result struct {
	Docs  int
	Bytes int64
	Err   error
}

// Drain writes one batch. It runs on the queue's goroutine only.
type Drain func(b *Batch) Result

// Counters are the queue's numbers.
type Counters struct {
	Published    int64 // documents handed to Publish
	Written      int64 // documents the sink took
	DroppedFull  int64 // dropped because the queue was full (or the output closed)
	DroppedError int64 // lost to sink errors
	Pending      int64 // documents queued or being written
	PendingBytes int64
	Bytes        int64 // bytes the sink took
	LastDropAt   time.Time
	LastError    string
	LastErrorAt  time.Time
	Failing      bool // the last batch ended in an error
}

// Queue is a bounded queue with its drain goroutine. Publish and Flush are
// safe for concurrent use.
type Queue struct {
	limit, wakeAt int
	drain         Drain

	mu        sync.Mutex
	cur       Batch // waiting for the drain goroutine
	spare     Batch // the buffers of the batch drained last, for reuse
	queued    int   // bytes in cur and in the batch being drained
	inflight  int64 // documents in the batch being drained
	closed    bool
	abandoned bool
	c         Counters

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// New starts a queue holding at most limit bytes of documents (newlines
// included) not yet drained. The drain goroutine runs on Flush, when half the
// limit is queued, and every interval.
func New(limit int, interval time.Duration, drain Drain) *Queue {
	q := &Queue{limit: limit, wakeAt: limit / 2, drain: drain,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run(interval)
	return q
}

// Publish copies body into the queue. It never blocks: when the queue is
// full the document is dropped and counted (false). Only after Close does it
// return an error.
func (q *Queue) Publish(body []byte) (bool, error) {
	n := len(body) + 1
	q.mu.Lock()
	q.c.Published++
	if q.closed {
		q.c.DroppedFull++
		q.mu.Unlock()
		return false, ErrClosed
	}
	if q.queued+n > q.limit {
		q.c.DroppedFull++
		q.c.LastDropAt = time.Now()
		q.mu.Unlock()
		q.Flush()
		return false, nil
	}
	q.cur.Data = append(append(q.cur.Data, body...), '\n')
	q.cur.Lens = append(q.cur.Lens, int32(n))
	q.queued += n
	wake := len(q.cur.Data) >= q.wakeAt
	q.mu.Unlock()
	if wake {
		q.Flush()
	}
	return true, nil
}

// Flush wakes the drain goroutine; it does not wait for it.
func (q *Queue) Flush() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Counters returns a copy of the numbers.
func (q *Queue) Counters() Counters {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.c
	c.Pending = int64(len(q.cur.Lens)) + q.inflight
	c.PendingBytes = int64(q.queued)
	return c
}

// Fail records an error of the sink outside a batch (a failed rotation that
// cost no document, a close).
func (q *Queue) Fail(err error) {
	q.mu.Lock()
	q.c.LastError, q.c.LastErrorAt = err.Error(), time.Now()
	q.mu.Unlock()
}

func (q *Queue) run(interval time.Duration) {
	defer close(q.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-q.stop:
			for q.drainOnce() {
			}
			return
		case <-q.wake:
		case <-tick.C:
		}
		for q.drainOnce() {
		}
	}
}

// drainOnce drains what is queued; false when nothing was.
func (q *Queue) drainOnce() bool {
	q.mu.Lock()
	if len(q.cur.Lens) == 0 || q.abandoned {
		q.mu.Unlock()
		return false
	}
	b := q.cur
	q.cur, q.spare = q.spare, Batch{}
	q.cur.reset()
	q.inflight = int64(len(b.Lens))
	q.mu.Unlock()

	r := q.drain(&b)

	q.mu.Lock()
	q.queued -= len(b.Data)
	q.inflight = 0
	q.c.Written += int64(r.Docs)
	q.c.Bytes += r.Bytes
	if lost := int64(len(b.Lens) - r.Docs); lost > 0 {
		q.c.DroppedError += lost
		q.c.LastDropAt = time.Now()
	}
	q.c.Failing = r.Err != nil
	if r.Err != nil {
		q.c.LastError, q.c.LastErrorAt = r.Err.Error(), time.Now()
	}
	b.reset()
	q.spare = b
	q.mu.Unlock()
	return true
}

// Close stops taking documents and drains what is queued before ctx ends.
// Then what is still queued is dropped and counted, and Close returns
// ctx's error without waiting for a sink stuck in a write; the drain
// goroutine ends when that write returns, and closed runs then. closed runs
// once the drain goroutine is done.
func (q *Queue) Close(ctx context.Context, closed func()) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	close(q.stop)
	select {
	case <-q.done:
		closed()
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	q.abandoned = true
	n := int64(len(q.cur.Lens))
	q.c.DroppedFull += n
	q.queued -= len(q.cur.Data)
	q.cur.reset()
	q.mu.Unlock()
	go func() {
		<-q.done
		closed()
	}()
	return ctx.Err()
}

// Limit is the queue's size in bytes.
func (q *Queue) Limit() int { return q.limit }

// Done is closed when the drain goroutine has ended.
func (q *Queue) Done() <-chan struct{} { return q.done }
