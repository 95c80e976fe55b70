// Package console renders documents for a person at a terminal: one line per
// event, fed the same documents as the other outputs.
//
//	08:00:06.000 BLOCKED web/nginx-7d9 evil[71] ← sh[70] exec /tmp/evil -x [binDrift]
//	08:00:07.000 ALERT   web/nginx-7d9 cat[72] ← sh[70] open /etc/shadow [shadowRead]
//	08:00:08.000         3f1c2a9b0d4e cat[71] ← sh[70] end exit 1
//
// Columns: local time; the mark (BLOCKED when cloud_defend.blocked, ALERT for
// an alert, else blank); where it ran (namespace/pod from orchestrator.*, else
// container.name, else container.id's first 12 characters, else "node");
// process.name[pid] ← process.parent.name[ppid]; event.action and its target
// (the executable and args after argv[0] for an exec, file.path for a file
// operation, the exit code for an end); cloud_defend.matched_selectors in
// brackets.
//
// Hidden by default (Options.ShowNode, Options.ShowMetrics show them):
// documents without container.id, the node's own processes rather than
// workloads, and metrics-* documents (heartbeat and metrics), which then
// render as one compact line each.
//
// An event that raises an alert and is also logged reaches the outputs as two
// documents (ecs.Encoder.EncodeAll: the alert, then the event document) with
// different event.id but the same @timestamp (nanoseconds, the kernel's
// time), process.entity_id, event.action, cloud_defend.hook_point and
// file.path. The console shows the alert only: an event document whose key
// (those five fields) is that of an alert seen among the last 256 alerts, or
// later in the same batch, is skipped and counted as Deduped.
//
// Strings from documents are attacker-chosen (file names, argv): control
// characters are shown escaped (\x1b), never sent to the terminal.
//
// Like the file output, Publish copies into a bounded queue and, when it is
// full, waits while the terminal takes lines; a terminal stuck for docq.Stall
// (a paused pager, say) costs dropped, counted lines.
package console

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/output/internal/docq"
)

// Logger is what the console logs through; output.Logger satisfies it.
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Options configure the view.
type Options struct {
	Color       bool           // ANSI colours (see IsTerminal)
	ShowNode    bool           // also the node's own processes (documents without container.id)
	ShowMetrics bool           // also heartbeat and metrics documents, one compact line each
	Width       int            // cut lines to this many characters, the target first, with "…"; 0: no limit
	Location    *time.Location // times are shown in it; nil: time.Local

	QueueBytes    int           // documents accepted and not yet shown, at most; default 1 MiB
	FlushInterval time.Duration // how often the queue is drained without a Flush; default 200ms
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = docq.ErrClosed

// IsTerminal says whether f is a terminal (colour makes sense there).
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Stats are the console's counters. Published = Shown + Hidden + Deduped +
// Malformed + Dropped + Pending.
type Stats struct {
	Published    int64
	Shown        int64 // lines written
	Hidden       int64 // node processes and metrics, when not shown
	Deduped      int64 // event documents of an alert shown
	Malformed    int64 // documents that are not the JSON expected
	Dropped      int64 // DroppedFull + DroppedError
	DroppedFull  int64 // the terminal could not keep up
	DroppedError int64 // lost to write errors
	Pending      int64
	LastError    string
	LastErrorAt  time.Time
}

// Console writes rendered lines to a writer.
type Console struct {
	w   io.Writer
	log Logger
	r   *Renderer
	q   *docq.Queue
	out []byte
	// lost counts lines rendered whose write failed: not shown after all.
	lost atomic.Int64
}

// New renders to w (os.Stdout, typically with Color: IsTerminal(os.Stdout)).
func New(w io.Writer, opt Options, log Logger) *Console {
	if opt.QueueBytes <= 0 {
		opt.QueueBytes = 1 << 20
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 200 * time.Millisecond
	}
	c := &Console{w: w, log: log, r: NewRenderer(opt)}
	c.q = docq.New(opt.QueueBytes, opt.FlushInterval, c.write)
	return c
}

func (c *Console) write(b *docq.Batch) docq.Result {
	docs := make([][]byte, 0, b.Len())
	data := b.Data
	for _, n := range b.Lens {
		docs = append(docs, data[:n-1])
		data = data[n:]
	}
	before := c.r.Counters()
	c.out = c.r.Render(c.out[:0], docs)
	after := c.r.Counters()
	n, err := c.w.Write(c.out)
	if err == nil && n < len(c.out) {
		err = io.ErrShortWrite
	}
	if err != nil {
		// The lines of this batch are lost; the documents it hid or deduped
		// are accounted for as such.
		lines := after.Shown - before.Shown
		c.lost.Add(lines)
		return docq.Result{Docs: b.Len() - int(lines), Err: err}
	}
	return docq.Result{Docs: b.Len(), Bytes: int64(n)}
}

// Publish queues one document; it copies body, waiting for room while the
// terminal takes lines (docq). It fails only after Close.
func (c *Console) Publish(stream, id string, body []byte) error {
	_, err := c.q.Publish(body)
	return err
}

// Flush wakes the renderer; it does not wait for it.
func (c *Console) Flush() error {
	c.q.Flush()
	return nil
}

// Stats returns a copy of the counters.
func (c *Console) Stats() Stats {
	q := c.q.Counters()
	r := c.r.Counters()
	return Stats{Published: q.Published, Shown: r.Shown - c.lost.Load(), Hidden: r.Hidden, Deduped: r.Deduped, Malformed: r.Malformed,
		Dropped: q.DroppedFull + q.DroppedError, DroppedFull: q.DroppedFull, DroppedError: q.DroppedError,
		Pending: q.Pending, LastError: q.LastError, LastErrorAt: q.LastErrorAt}
}

// Health is degraded while the last write failed or lines were dropped in
// the last 10 minutes.
func (c *Console) Health() (degraded bool, message string) {
	q := c.q.Counters()
	var msgs []string
	if d := q.DroppedFull + q.DroppedError; d > 0 && time.Since(q.LastDropAt) < 10*time.Minute {
		msgs = append(msgs, fmt.Sprintf("%d documents dropped: the console output could not keep up (%d) or failed to write (%d)", d, q.DroppedFull, q.DroppedError))
	}
	if q.Failing {
		msgs = append(msgs, "console write error: "+q.LastError)
	}
	if len(msgs) == 0 {
		return false, ""
	}
	return true, strings.Join(msgs, "; ")
}

// Close shows what is queued before ctx ends; the writer is not closed.
func (c *Console) Close(ctx context.Context) error {
	return c.q.Close(ctx, func() {})
}
