// Package throttle bounds the alerts one workload can raise: a token bucket
// per container and selector set, so a pod execing a denied binary in a loop
// yields a bounded stream of alerts plus summary documents that count, and
// time, what was held back. It applies to alert documents only: enforcement
// happened in the kernel before any document exists, and log documents are
// never dropped here (an output that cannot keep up counts its own drops).
package throttle

import (
	"sync"
	"time"
)

// Defaults: 20 alerts at once, then 5 a second, per container and selector
// set; a suppression window is summarized at the latest after 10 seconds.
const (
	DefaultRate   = 5.0
	DefaultBurst  = 20
	DefaultWindow = 10 * time.Second
)

// Config is a limiter's setting. Rate <= 0 turns throttling off.
type Config struct {
	Rate   float64       // alerts per second, refilled continuously
	Burst  int           // bucket size: alerts allowed at once
	Window time.Duration // longest a suppression window stays open
}

// Key is what alerts are throttled by: the container, and the selectors that
// matched (their bits, of one policy generation and type). A workload with no
// container (a sandbox a node process made with unshare, say) is keyed by its
// pid namespace instead, so that one such workload's alerts never use up
// another's burst.
type Key struct {
	Container  string
	PIDNS      uint32 // when Container is "": the workload's pid namespace
	Selectors  uint64
	Generation uint32
	Type       uint8
}

// Summary is a closed suppression window.
type Summary struct {
	Key        Key
	Suppressed uint64
	// Start and End are when the first and the last suppressed alert came.
	Start, End time.Time
	// Sample is the last suppressed alert's document, and its stream.
	Sample []byte
	Stream string
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed uint64
	start, end time.Time
	sample     []byte
	stream     string
}

// Limiter holds the buckets. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu         sync.Mutex
	buckets    map[Key]*bucket
	suppressed uint64 // in all, for metrics
	summaries  uint64
}

// New returns a limiter, or nil when cfg turns throttling off.
func New(cfg Config) *Limiter {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.Burst < 1 {
		cfg.Burst = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	return &Limiter{cfg: cfg, buckets: map[Key]*bucket{}}
}

// SetConfig changes the setting (an input unit's new config). Rate <= 0
// lets every alert through from now on; windows already open are still
// summarized by Expire and Flush.
func (l *Limiter) SetConfig(cfg Config) {
	if cfg.Burst < 1 {
		cfg.Burst = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	l.mu.Lock()
	l.cfg = cfg
	l.mu.Unlock()
}

// Allow takes a token for an alert with key k at now. When there is none the
// alert is suppressed: counted, and doc (with its stream) kept as the
// window's sample. When a token is there and a window was open, the window's
// summary is returned too, to be shipped before the alert.
func (l *Limiter) Allow(k Key, now time.Time, doc []byte, stream string) (ok bool, closed *Summary) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Rate <= 0 {
		return true, nil
	}
	b := l.buckets[k]
	if b == nil {
		b = &bucket{tokens: float64(l.cfg.Burst), last: now}
		l.buckets[k] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		if b.suppressed > 0 {
			s := l.close(k, b)
			closed = &s
		}
		return true, closed
	}
	if b.suppressed == 0 {
		b.start = now
	}
	b.suppressed++
	l.suppressed++
	b.end = now
	b.sample = append(b.sample[:0], doc...) // the buffer is reused: no allocation per alert
	b.stream = stream
	return false, nil
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(float64(l.cfg.Burst), b.tokens+dt*l.cfg.Rate)
		b.last = now
	}
}

func (l *Limiter) close(k Key, b *bucket) Summary {
	s := Summary{Key: k, Suppressed: b.suppressed, Start: b.start, End: b.end, Sample: append([]byte(nil), b.sample...), Stream: b.stream}
	b.suppressed = 0
	l.summaries++
	return s
}

// Expire closes the windows open for Window or more, and forgets buckets
// that are full again (the workload went quiet), so memory follows the
// containers alerting now.
func (l *Limiter) Expire(now time.Time) []Summary {
	return l.sweep(now, false)
}

// Flush closes every open window: at shutdown, so no count is lost.
func (l *Limiter) Flush(now time.Time) []Summary {
	return l.sweep(now, true)
}

func (l *Limiter) sweep(now time.Time, all bool) []Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Summary
	for k, b := range l.buckets {
		if b.suppressed > 0 && (all || now.Sub(b.start) >= l.cfg.Window) {
			out = append(out, l.close(k, b))
		}
		l.refill(b, now)
		if b.suppressed == 0 && b.tokens >= float64(l.cfg.Burst) {
			delete(l.buckets, k)
		}
	}
	return out
}

// Stats are the limiter's totals: alerts suppressed, summaries made.
func (l *Limiter) Stats() (suppressed, summaries uint64) {
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.suppressed, l.summaries
}

// Config returns the limiter's setting.
func (l *Limiter) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}
