package daemon

import (
	"context"
	"io"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/output/console"
	"github.com/cloud-defend/cloud-defend/output/ndjson"
)

// writer is what the NDJSON and console outputs have in common with the
// Elasticsearch shipper: documents in, health and close out.
type writer interface {
	Publish(stream, id string, body []byte) error
	Flush() error
	Health() (degraded bool, message string)
	Close(ctx context.Context) error
}

// local is a Sink over an output that writes on this node (stdout, a file, a
// terminal): nothing is spooled; its queue waits for a writer that is writing
// and drops what a failing or stuck one cannot take, counted and reported
// (output/internal/docq).
type local struct {
	w     writer
	stats func() (published, written, dropped int64)
}

func (s *local) Publish(d ecs.Doc) { _ = s.w.Publish(d.Stream, d.ID, d.Body) } // fails only after Close
func (s *local) Flush()            { _ = s.w.Flush() }
func (s *local) Close(ctx context.Context) error {
	return s.w.Close(ctx)
}

func (s *local) Status() component.Status {
	if degraded, msg := s.w.Health(); degraded {
		return component.Status{Degraded: true, Message: msg}
	}
	return component.Status{}
}

func (s *local) Counters(c *ecs.Counters) {
	published, written, dropped := s.stats()
	c.Published += published
	c.Acked += written // written is as delivered as a local output gets
	c.Dropped += dropped
	c.Pending += published - written - dropped
}

// NewWriterSink writes each document as one NDJSON line, the bytes
// Elasticsearch would get, to w (stdout); name is how messages call it.
func NewWriterSink(w io.Writer, name string, log Logger) Sink {
	return ndjsonSink(ndjson.New(w, name, ndjson.Config{}, log))
}

// NewFileSink writes NDJSON to path, rotated at rotateKB into at most keep
// files (path, path.1, ... newest first).
func NewFileSink(path string, rotateKB, keep int, log Logger) (Sink, error) {
	x, err := ndjson.Open(ndjson.Config{Path: path, RotateEveryKB: rotateKB, NumberOfFiles: keep}, log)
	if err != nil {
		return nil, err
	}
	return ndjsonSink(x), nil
}

// ndjsonSink is the Sink over an NDJSON writer, stdout's or a file's.
func ndjsonSink(x *ndjson.Writer) *local {
	return &local{w: x, stats: func() (int64, int64, int64) { st := x.Stats(); return st.Published, st.Written, st.Dropped }}
}

// NewConsoleSink renders documents as one readable line each for a terminal.
func NewConsoleSink(w io.Writer, opt console.Options, log Logger) Sink {
	x := console.New(w, opt, log)
	return &local{w: x, stats: func() (int64, int64, int64) {
		st := x.Stats()
		return st.Published, st.Published - st.Dropped - st.Pending, st.Dropped
	}}
}
