package daemon

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// The pipeline's stages, in the order an event meets them. Each is an
// interface so a reader can follow an event from the kernel's ring to a sink's
// bytes here, and a benchmark can feed the same code from a recording.

// Source yields kernel events (the engine's ring reader).
type Source interface {
	// Read blocks for the next event; ebpf.ErrClosed ends the stream.
	Read() (event.Event, error)
	// Buffered reports whether Read has an event ready without waiting: at
	// the end of what the kernel delivered so far, sinks flush.
	Buffered() bool
}

// Enricher puts events in context (process tree, container, pod) and hands
// on the decisions that are ready to be encoded (*enrich.Enricher).
type Enricher interface {
	Handle(*event.Event, enrich.Emit)
	// Flush emits what still waits for context, at the end of the stream.
	Flush(enrich.Emit)
}

// Encoder turns a decision with its context into its documents
// (*ecs.Encoder): an event document, and an alert document for alerts.
type Encoder interface {
	EncodeAll(*event.Event, *enrich.Context, ecs.Meta, func(ecs.Doc)) error
	Heartbeat(m ecs.Meta, blockEnabled bool, now time.Time) ecs.Doc
	Metrics(m ecs.Meta, c ecs.Counters, now time.Time) ecs.Doc
}

// Sink takes documents to where they go: Elasticsearch, a file, stdout, a
// terminal. Publish is called by the event loop and the periodic documents'
// loop. It may wait while its writer catches up (a burst then backs up into
// the kernel's ring), but never on a writer that fails or is stuck: that costs
// documents, dropped and counted; the encoder reuses d.Body once Publish
// returns, so a sink copies what it keeps.
type Sink interface {
	Publish(d ecs.Doc)
	// Flush ends a batch: what Publish took goes to the OS (or the wire).
	Flush()
	// Status is the sink's health, in words.
	Status() component.Status
	// Counters adds the sink's numbers to the metrics document.
	Counters(*ecs.Counters)
	// Close delivers what it holds within ctx.
	Close(ctx context.Context) error
}

// pipeline moves kernel events to documents: source → enricher → encoder →
// throttle → sink. One goroutine runs it.
type pipeline struct {
	source Source
	enrich Enricher
	enc    Encoder
	sink   Sink
	meta   func() (ecs.Meta, bool) // false while no policy is in force
	log    Logger

	events atomic.Uint64

	// throttle bounds alert documents per container and selector set (nil:
	// off). publishDoc applies it to the documents of cur, the event being
	// encoded; it is a field so the event loop makes no closure per event.
	throttle   *throttle.Limiter
	cur        *event.Event
	curCtx     *enrich.Context
	publishDoc func(ecs.Doc)
	emitFn     enrich.Emit
	// ev is the event being handled: a field, not a local, so that passing
	// it to the enricher (an interface) does not move every event to the heap.
	ev event.Event
}

func newPipeline(src Source, enr Enricher, enc Encoder, sink Sink, meta func() (ecs.Meta, bool), lim *throttle.Limiter, log Logger) *pipeline {
	p := &pipeline{source: src, enrich: enr, enc: enc, sink: sink, meta: meta, throttle: lim, log: log}
	p.publishDoc = p.publishThrottled
	p.emitFn = p.emit
	return p
}

// run reads events until the source closes, then emits what still waits and
// closes every open throttle window, so no count is lost.
func (p *pipeline) run() {
	for {
		var err error
		p.ev, err = p.source.Read()
		if err != nil {
			if !errors.Is(err, ebpf.ErrClosed) {
				p.log.Errorf("read kernel events: %v", err)
			}
			p.enrich.Flush(p.emitFn)
			if p.throttle != nil {
				for _, s := range p.throttle.Flush(time.Now()) {
					p.publishSummary(s)
				}
			}
			p.sink.Flush()
			return
		}
		p.events.Add(1)
		p.enrich.Handle(&p.ev, p.emitFn)
		// Documents go to the OS once per batch the kernel delivered, not one
		// write each: until then they are as safe as the events still in the ring.
		if !p.source.Buffered() {
			p.sink.Flush()
		}
	}
}

func (p *pipeline) emit(ev *event.Event, ctx *enrich.Context) {
	m, ok := p.meta()
	if !ok {
		return // no policy in force yet: nothing was decided
	}
	p.cur, p.curCtx = ev, ctx
	if err := p.enc.EncodeAll(ev, ctx, m, p.publishDoc); err != nil {
		p.log.Errorf("encode event: %v", err)
	}
	p.cur, p.curCtx = nil, nil
}

// publishThrottled publishes a document of the event being encoded; alerts
// go through the throttle, which may first hand back the summary of the
// window it closes. Log documents are never throttled.
func (p *pipeline) publishThrottled(d ecs.Doc) {
	if p.throttle == nil || !strings.HasPrefix(d.Stream, "logs-cloud_defend.alerts-") {
		p.sink.Publish(d)
		return
	}
	k := throttle.Key{Selectors: p.cur.Matched, Generation: p.cur.Generation, Type: uint8(p.cur.Op.Type())}
	if c := p.curCtx; c != nil && c.Container != nil {
		k.Container = c.Container.ID
	} else {
		k.PIDNS = p.cur.Process.PIDNamespace
	}
	ok, closed := p.throttle.Allow(k, time.Now(), d.Body, d.Stream)
	if closed != nil {
		p.publishSummary(*closed)
	}
	if ok {
		p.sink.Publish(d)
	}
}

func (p *pipeline) publishSummary(s throttle.Summary) {
	id, body, err := throttle.Document(s, p.throttle.Config(), time.Now())
	if err != nil {
		p.log.Errorf("%v", err)
		return
	}
	p.sink.Publish(ecs.Doc{Stream: s.Stream, ID: id, Body: body})
}

// rss is this process's resident set size, from /proc/self/statm.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
