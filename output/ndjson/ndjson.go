// Package ndjson writes documents as NDJSON, one per line, to a stream
// (stdout) or to a file rotated by size, as Beats' and Elastic Agent's file
// output does. Each line is a document's body exactly as the Elasticsearch
// output sends it as the source line of its _bulk create, followed by '\n'.
//
// Publish copies the document into a queue bounded by bytes, drained by a
// writer goroutine that writes what accumulated in as few write(2) calls as it
// can (one per batch, more only across a rotation). There is no user-space
// buffer left behind a batch: once drained, a document is in the OS. When the
// queue is full, Publish waits while the writer is writing (the caller, the
// kernel reader, then leaves the burst in the kernel's ring buffer); when the
// writer fails (disk full) or is stuck for docq.Stall, documents are dropped
// and counted, as are documents a write failed for.
// The writer keeps trying: after a failed write it closes the file, cut back
// to its last whole line, and reopens it (or rotates) for the next batch, at
// most once a second.
//
// Rotation: the file at Path is the one written; when the next line would
// take it past RotateEveryKB, it is renamed Path.1, what was Path.1 becomes
// Path.2, and so on up to Path.<NumberOfFiles-1>, the oldest, which is
// deleted: NumberOfFiles files at most, Path included, newest first. A line
// is never split across files (a line longer than the limit gets a file of
// its own). At start, an existing file at Path is appended to.
package ndjson

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/output/internal/docq"
	"github.com/cloud-defend/cloud-defend/output/internal/words"
)

// Defaults, as Beats' file output has them (queue aside).
const (
	DefaultRotateEveryKB = 10240
	DefaultNumberOfFiles = 7
	DefaultPermissions   = fs.FileMode(0o600)
	DefaultQueueBytes    = 8 << 20
	DefaultFlushInterval = time.Second
	// MaxNumberOfFiles is Beats' limit.
	MaxNumberOfFiles = 1024
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = docq.ErrClosed

// Logger is what the writer logs through; output.Logger and logp.Logger
// satisfy it. nil logs nothing.
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Config configures a writer. The file settings are Beats' file output's
// (path, rotate_every_kb, number_of_files, permissions); New ignores them.
type Config struct {
	Path          string      // the file written; Open needs it
	RotateEveryKB int         // rotate before a file would pass this size; default 10240
	NumberOfFiles int         // files kept, Path included; default 7, at least 2, at most 1024
	Permissions   fs.FileMode // of files created; default 0600

	QueueBytes    int           // documents accepted and not yet written, at most; default 8 MiB
	FlushInterval time.Duration // how often the queue is drained without a Flush; default 1s
}

// Stats are the writer's counters. Published = Written + Dropped + Pending.
type Stats struct {
	Published    int64 // documents handed to Publish
	Written      int64 // documents written to the OS
	Dropped      int64 // DroppedFull + DroppedError
	DroppedFull  int64 // dropped because the queue was full while the writer failed or was stuck (or Close's deadline passed)
	DroppedError int64 // lost to write errors
	Pending      int64 // documents queued or being written
	PendingBytes int64
	Bytes        int64 // bytes written, newlines included
	Rotations    int64
	LastError    string
	LastErrorAt  time.Time
}

// Writer writes documents as NDJSON.
type Writer struct {
	name string // what messages call the target: the path, or "stdout"
	log  Logger
	q    *docq.Queue
	sink interface {
		write(*docq.Batch) docq.Result
		close() error
	}

	mu        sync.Mutex
	rotations int64
	closeErr  error
}

type nopLogger struct{}

func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}

// New writes to w (stdout, a pipe): each drained batch in one Write. name is
// what messages call it ("stdout" when empty).
func New(w io.Writer, name string, cfg Config, log Logger) *Writer {
	if name == "" {
		name = "stdout"
	}
	cfg = defaults(cfg)
	if log == nil {
		log = nopLogger{}
	}
	x := &Writer{name: name, log: log}
	x.sink = &streamSink{w: w}
	x.q = docq.New(cfg.QueueBytes, cfg.FlushInterval, x.sink.write)
	return x
}

// Open writes to the file at cfg.Path, appending to it if it exists, and
// rotates it by size. It fails when the file cannot be opened.
func Open(cfg Config, log Logger) (*Writer, error) {
	if cfg.Path == "" {
		return nil, errors.New("ndjson: no path")
	}
	cfg = defaults(cfg)
	if cfg.NumberOfFiles < 2 || cfg.NumberOfFiles > MaxNumberOfFiles {
		return nil, fmt.Errorf("ndjson: number_of_files %d: must be between 2 and %d", cfg.NumberOfFiles, MaxNumberOfFiles)
	}
	if log == nil {
		log = nopLogger{}
	}
	x := &Writer{name: cfg.Path, log: log}
	fsk := &fileSink{path: cfg.Path, limit: int64(cfg.RotateEveryKB) * 1024, files: cfg.NumberOfFiles, perm: cfg.Permissions, w: x}
	if err := fsk.open(); err != nil {
		return nil, fmt.Errorf("ndjson: %w", err)
	}
	x.sink = fsk
	x.q = docq.New(cfg.QueueBytes, cfg.FlushInterval, fsk.write)
	return x, nil
}

func defaults(cfg Config) Config {
	if cfg.RotateEveryKB <= 0 {
		cfg.RotateEveryKB = DefaultRotateEveryKB
	}
	if cfg.NumberOfFiles == 0 {
		cfg.NumberOfFiles = DefaultNumberOfFiles
	}
	if cfg.Permissions == 0 {
		cfg.Permissions = DefaultPermissions
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	return cfg
}

// Publish queues one document; stream and id are not written (the body has
// data_stream.* and event.id). It copies body; when the queue is full it waits
// for the writer, or drops the document and counts it when the writer is
// failing or stuck (see the package comment and Health). It fails only after
// Close.
func (x *Writer) Publish(stream, id string, body []byte) error {
	_, err := x.q.Publish(body)
	return err
}

// Flush wakes the writer, which writes what is queued to the OS; it does not
// wait for it.
func (x *Writer) Flush() error {
	x.q.Flush()
	return nil
}

// Stats returns a copy of the counters.
func (x *Writer) Stats() Stats {
	c := x.q.Counters()
	x.mu.Lock()
	rot := x.rotations
	x.mu.Unlock()
	return Stats{Published: c.Published, Written: c.Written, Dropped: c.DroppedFull + c.DroppedError,
		DroppedFull: c.DroppedFull, DroppedError: c.DroppedError, Pending: c.Pending, PendingBytes: c.PendingBytes,
		Bytes: c.Bytes, Rotations: rot, LastError: c.LastError, LastErrorAt: c.LastErrorAt}
}

// RecentDrops is how long drops keep Health degraded.
const RecentDrops = 10 * time.Minute

// Health is degraded while the last write failed or documents were dropped
// in the last RecentDrops, with what happened in words.
func (x *Writer) Health() (degraded bool, message string) {
	c := x.q.Counters()
	var msgs []string
	if c.DroppedFull+c.DroppedError > 0 && time.Since(c.LastDropAt) < RecentDrops {
		var why []string
		if c.DroppedFull > 0 {
			why = append(why, fmt.Sprintf("%d because the %s could not keep up (queue of %s full while it failed or was stuck)", c.DroppedFull, x.what(), words.Bytes(int64(x.queueLimit()))))
		}
		if c.DroppedError > 0 {
			why = append(why, fmt.Sprintf("%d lost to write errors", c.DroppedError))
		}
		msgs = append(msgs, fmt.Sprintf("%s dropped: %s", words.Plural(c.DroppedFull+c.DroppedError, "document"), strings.Join(why, ", ")))
	}
	if c.Failing {
		msgs = append(msgs, fmt.Sprintf("write error on the %s since %s: %s", x.what(), c.LastErrorAt.UTC().Format(time.RFC3339), c.LastError))
	}
	if len(msgs) == 0 {
		return false, ""
	}
	return true, strings.Join(msgs, "; ")
}

func (x *Writer) what() string {
	if _, ok := x.sink.(*fileSink); ok {
		return "file output at " + x.name
	}
	return "output to " + x.name
}

func (x *Writer) queueLimit() int { return x.q.Limit() }

// Close writes what is queued before ctx ends, then closes the file (a
// stream is not closed). What is still queued when ctx ends is dropped and
// counted, and Close returns ctx's error; a write then in progress finishes
// on its own and the file is closed after it.
func (x *Writer) Close(ctx context.Context) error {
	st := x.Stats()
	err := x.q.Close(ctx, func() {
		x.mu.Lock()
		x.closeErr = x.sink.close()
		x.mu.Unlock()
	})
	if err != nil {
		lost := x.Stats().DroppedFull - st.DroppedFull
		x.log.Warnf("ndjson: %s: %d documents not written before the deadline: %v", x.name, lost, err)
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.closeErr
}

// streamSink writes to an io.Writer.
type streamSink struct{ w io.Writer }

func (s *streamSink) write(b *docq.Batch) docq.Result {
	n, err := s.w.Write(b.Data)
	if err == nil && n < len(b.Data) {
		err = io.ErrShortWrite
	}
	return docq.Result{Docs: whole(b.Lens, n), Bytes: int64(n), Err: err}
}

func (s *streamSink) close() error { return nil }

// whole counts the documents wholly in the first n bytes.
func whole(lens []int32, n int) int {
	i := 0
	for ; i < len(lens) && n >= int(lens[i]); i++ {
		n -= int(lens[i])
	}
	return i
}

// fileSink writes to a file and rotates it.
type fileSink struct {
	path  string
	limit int64
	files int
	perm  fs.FileMode
	w     *Writer

	f         *os.File
	size      int64
	retryAt   time.Time // after a failure, not before
	lastError string    // logged once until a write succeeds
}

// open opens (or creates) the file at path for appending. A file that ends
// in a torn line (a crash mid-write of another writer) gets a newline first,
// so that the first document written is a line of its own.
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, s.perm)
	if err == nil {
		// umask may have taken bits the configuration asks for.
		if err := f.Chmod(s.perm); err != nil {
			f.Close()
			return err
		}
	} else if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, fi.Size()
	if s.size > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(s.path); err == nil {
			_, err = r.ReadAt(last, s.size-1)
			r.Close()
			if err == nil && last[0] != '\n' {
				if _, err := f.Write([]byte{'\n'}); err != nil {
					f.Close()
					s.f = nil
					return err
				}
				s.size++
			}
		}
	}
	return nil
}

func (s *fileSink) write(b *docq.Batch) docq.Result {
	var r docq.Result
	if s.f == nil {
		if time.Now().Before(s.retryAt) {
			return docq.Result{Err: errors.New(s.lastError)}
		}
		if err := s.open(); err != nil {
			return s.failed(r, err)
		}
	}
	data, lens := b.Data, b.Lens
	for i := 0; i < len(lens); {
		if s.size > 0 && s.size+int64(lens[i]) > s.limit {
			if err := s.rotate(); err != nil {
				return s.failed(r, err)
			}
		}
		// As many whole lines as the file has room for; at least one.
		j, n := i+1, int(lens[i])
		for j < len(lens) && s.size+int64(n)+int64(lens[j]) <= s.limit {
			n += int(lens[j])
			j++
		}
		w, err := s.f.Write(data[:n])
		if err == nil && w < n {
			err = io.ErrShortWrite
		}
		if err != nil {
			// Keep the whole lines written, and cut the torn one after
			// them off, so the file stays whole lines. Should that fail,
			// the next open starts a new line after the torn one.
			k := whole(lens[i:j], w)
			kept := 0
			for _, l := range lens[i : i+k] {
				kept += int(l)
			}
			if terr := s.f.Truncate(s.size + int64(kept)); terr != nil {
				err = fmt.Errorf("%w (and cutting the torn line off: %v)", err, terr)
			}
			r.Docs += k
			r.Bytes += int64(kept)
			return s.failed(r, err)
		}
		s.size += int64(n)
		r.Docs += j - i
		r.Bytes += int64(n)
		data, i = data[n:], j
	}
	if s.lastError != "" {
		s.w.log.Infof("ndjson: writing to %s again", s.path)
		s.lastError = ""
	}
	return r
}

// failed closes the file after an error; the next batch reopens it, a
// second from now at the earliest.
func (s *fileSink) failed(r docq.Result, err error) docq.Result {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.retryAt = time.Now().Add(time.Second)
	if err.Error() != s.lastError {
		s.w.log.Errorf("ndjson: %s: %v (documents are dropped and counted until a write succeeds)", s.path, err)
	}
	s.lastError = err.Error()
	r.Err = err
	return r
}

// rotate shifts Path.i to Path.i+1 (deleting the oldest) and Path to Path.1,
// and opens a new Path.
func (s *fileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		s.f = nil
		return err
	}
	s.f = nil
	name := func(i int) string {
		if i == 0 {
			return s.path
		}
		return s.path + "." + strconv.Itoa(i)
	}
	if err := os.Remove(name(s.files - 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := s.files - 2; i >= 0; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	s.w.mu.Lock()
	s.w.rotations++
	s.w.mu.Unlock()
	return s.open()
}

func (s *fileSink) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}
