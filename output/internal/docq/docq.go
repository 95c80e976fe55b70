// Package docq is the bounded in-memory queue the non-Elasticsearch outputs
// (output/ndjson, output/console) share: Publish copies a document into the
// queue; a drain goroutine hands what accumulated to the sink in one batch.
// The queue is bounded by bytes. When it is full, Publish waits for room as
// long as the sink is writing: a burst then backs up into the kernel's ring
// buffer, many times the queue's size in events, and is written late rather
// than lost. Only a sink that fails (its last batch ended in an error) or has
// not finished a batch for Stall costs documents, dropped and counted, so a
// dead disk or a stuck terminal never stops the kernel reader for longer.
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

// Stall is how long Publish waits for room in a full queue while the sink
// finishes no batch; past it, the sink counts as stuck and what does not fit
// is dropped.
const Stall = 2 * time.Second

// Counters are the queue's numbers.
type Counters struct {
	Published    int64 // documents handed to Publish
	Written      int64 // documents the sink took
	DroppedFull  int64 // dropped because the queue was full while the sink failed or stalled (or the output closed)
	Waits        int64 // times Publish waited for room (the sink was behind)
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
	stall         time.Duration

	mu        sync.Mutex
	room      *sync.Cond // signalled when a batch is done and when the queue closes
	cur       Batch      // waiting for the drain goroutine
	spare     Batch      // the buffers of the batch drained last, for reuse
	queued    int        // bytes in cur and in the batch being drained
	inflight  int64      // documents in the batch being drained
	batches   int64      // batches the sink has finished
	stuck     bool       // a wait for room ran out: drop at once until a batch finishes within the stall time
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
	q := &Queue{limit: limit, wakeAt: limit / 2, drain: drain, stall: Stall,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	q.room = sync.NewCond(&q.mu)
	go q.run(interval)
	return q
}

// Publish copies body into the queue. When the queue is full it waits for
// room while the sink is writing (see the package comment); it drops the
// document and counts it (false) when the sink's last batch failed, when no
// batch finished for Stall (and from then on at once, until one finishes in
// less than Stall), or when the document is larger than the whole queue. Only
// after Close does it return an error.
func (q *Queue) Publish(body []byte) (bool, error) {
	n := len(body) + 1
	q.mu.Lock()
	q.c.Published++
	if q.closed {
		q.c.DroppedFull++
		q.mu.Unlock()
		return false, ErrClosed
	}
	if q.queued+n > q.limit && n <= q.limit && !q.c.Failing && !q.stuck {
		q.c.Waits++
		q.waitForRoom(n)
		if q.closed {
			q.c.DroppedFull++
			q.mu.Unlock()
			return false, ErrClosed
		}
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

// waitForRoom waits, q.mu held, until n more bytes fit, the queue closes, the
// sink fails, or no batch has finished for the stall time.
func (q *Queue) waitForRoom(n int) {
	q.Flush()
	done := q.batches
	deadline := time.Now().Add(q.stall)
	timer := time.AfterFunc(q.stall, func() {
		q.mu.Lock()
		q.room.Broadcast()
		q.mu.Unlock()
	})
	defer timer.Stop()
	for q.queued+n > q.limit && !q.closed && !q.c.Failing && !q.stuck {
		if q.batches != done {
			// The sink is making progress: give it the full stall time again.
			done = q.batches
			deadline = time.Now().Add(q.stall)
		} else if !time.Now().Before(deadline) {
			q.stuck = true
			q.room.Broadcast() // every other waiter gives up too
			return
		}
		// Armed before each wait for what is left (the callback needs q.mu,
		// which Wait releases), so no wake-up is missed whatever the clock does.
		timer.Reset(time.Until(deadline))
		q.room.Wait()
	}
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

	start := time.Now()
	r := q.drain(&b)
	took := time.Since(start)

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
	q.batches++
	if took < q.stall {
		// A batch in less than the stall time: the sink writes again. (One
		// slower than that is a stuck sink that moved once: waiting for the
		// next would hold the caller for most of the time and save nothing.)
		q.stuck = false
	}
	q.room.Broadcast()
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
	q.room.Broadcast()
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
