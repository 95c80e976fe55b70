// Package output delivers encoded documents to Elasticsearch data streams, at
// least once: every document is written to an on-disk spool before it is sent
// (see spool.go), sent in _bulk create requests, and committed only once
// Elasticsearch answered for it. Elasticsearch being slow or down fills the
// spool, not memory; past the spool's cap the oldest documents are dropped and
// counted. Health says what is wrong, in words.
//
// Requests go through go-elasticsearch's Bulk API (its transport, auth and
// product check), not esutil.BulkIndexer: the indexer queues in memory and
// reports item by item through callbacks, with no point at which a whole batch
// is known to be answered, so it cannot advance a durable cursor per batch, and
// at-least-once across a SIGKILL needs exactly that.
package output

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/output/internal/words"
	"github.com/elastic/go-elasticsearch/v8"
)

// Config says where documents go and how hard to try.
type Config struct {
	Hosts    []string
	APIKey   string // "id:key" (as Fleet gives it) or its base64 form
	Username string
	Password string
	CACerts  [][]byte // PEM; empty means the system roots
	Insecure bool     // skip certificate verification (ssl.verification_mode: none)

	DataDir       string        // the spool lives in DataDir/spool
	SpoolMaxBytes int64         // default 256 MiB
	BatchSize     int           // documents per _bulk request, default 1000
	BatchBytes    int           // default 4 MiB
	FlushInterval time.Duration // how often the spool is checked without a wake-up, default 1s
	// Linger is how long the sender lets documents gather once one arrives,
	// default 100ms: one request per batch, not per document.
	Linger     time.Duration
	Timeout    time.Duration // per request, default 30s
	MaxBackoff time.Duration // default 60s
}

// Logger is what the shipper logs through (logp.Logger satisfies it).
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Stats are the shipper's counters.
type Stats struct {
	Published, Acked, Duplicates, Retries int64
	Rejected                              map[string]int64 // permanent per-document errors by type
	Dropped                               int64            // lost to the spool cap
	Torn                                  int64            // torn records found in the spool at start
	SpoolBytes, Pending                   int64
	LastError                             string
	LastErrorAt                           time.Time
	FailingSince                          time.Time // zero when the last request succeeded
}

// Shipper sends documents. Publish is safe for concurrent use.
type Shipper struct {
	cfg    Config
	es     *elasticsearch.Client
	log    Logger
	spool  *spool
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed bool
	bulk   bulkBody     // the request body, reused
	resp   bytes.Buffer // the response body, reused: it is read whole, then parsed

	mu       sync.Mutex
	st       Stats
	logged   map[string]bool // rejection reasons already logged
	lastDrop time.Time       // when Dropped last grew
	drops    int64
	lastRej  time.Time
	authErr  string
	// unreachable: the failing request got no HTTP answer at all (connection
	// refused, reset, timeout), as opposed to an answer that was an error.
	unreachable bool
}

// New opens the spool (replaying what an earlier run left) and starts sending.
func New(cfg Config, log Logger) (*Shipper, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("output: no Elasticsearch hosts")
	}
	if cfg.SpoolMaxBytes == 0 {
		cfg.SpoolMaxBytes = 256 << 20
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchBytes == 0 {
		cfg.BatchBytes = 4 << 20
	}
	if cfg.Linger == 0 {
		cfg.Linger = 100 * time.Millisecond
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 60 * time.Second
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	es, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	sp, err := openSpool(cfg.DataDir+"/spool", cfg.SpoolMaxBytes)
	if err != nil {
		return nil, err
	}
	s := &Shipper{cfg: cfg, es: es, log: log, spool: sp, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), logged: map[string]bool{}}
	s.st.Rejected = map[string]int64{}
	if _, pending, _, torn := sp.stats(); pending > 0 || torn > 0 {
		log.Infof("output: replaying %d spooled documents (%d torn records cut off)", pending, torn)
	}
	go s.run()
	return s, nil
}

func newClient(cfg Config) (*elasticsearch.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A _bulk body is megabytes: written through the default 4 KiB buffer it
	// costs hundreds of write(2) calls per request.
	tr.WriteBufferSize = 256 << 10
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: cfg.Insecure, MinVersion: tls.VersionTLS12}
	var ca []byte
	for _, c := range cfg.CACerts {
		ca = append(ca, c...)
	}
	key := cfg.APIKey
	if strings.Contains(key, ":") {
		key = base64.StdEncoding.EncodeToString([]byte(key))
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: cfg.Hosts, APIKey: key, Username: cfg.Username, Password: cfg.Password, CACert: ca,
		Transport:    sizedBodies{tr},
		DisableRetry: true, // retries are ours: they keep order and back off
	})
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	return es, nil
}

// Publish spools one document for delivery. It fails only when the disk does.
// The document is in the spool's buffer when Publish returns and reaches the
// OS at the next Flush (or once the buffer fills): callers flush at the end of
// each batch of events they read, so a crash of this process loses nothing
// that was flushed, and what it read since lies in a batch not yet finished.
func (s *Shipper) Publish(stream, id string, body []byte) error {
	if err := s.spool.append(stream, id, body); err != nil {
		return err
	}
	s.mu.Lock()
	s.st.Published++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Flush hands what Publish spooled to the OS: from then on, a crash of this
// process cannot lose it; only the kernel going down before the next sync
// (once a second) can.
func (s *Shipper) Flush() error { return s.spool.flush(false) }

// Stats returns a copy of the counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	st := s.st
	st.Rejected = map[string]int64{}
	for k, v := range s.st.Rejected {
		st.Rejected[k] = v
	}
	s.mu.Unlock()
	st.SpoolBytes, st.Pending, st.Dropped, st.Torn = s.spool.stats()
	return st
}

// Health is healthy, or degraded with what is wrong.
func (s *Shipper) Health() (degraded bool, message string) {
	st := s.Stats()
	s.mu.Lock()
	if st.Dropped > s.drops {
		s.drops, s.lastDrop = st.Dropped, time.Now()
	}
	authErr, lastDrop, lastRej, unreachable := s.authErr, s.lastDrop, s.lastRej, s.unreachable
	s.mu.Unlock()
	// One line, as the agent's status view shows it: what is wrong, since when,
	// and what waits in the spool.
	var msgs []string
	spooled := fmt.Sprintf("%s spooled (%s of %s)", words.Plural(st.Pending, "document"), words.Bytes(st.SpoolBytes), words.Bytes(s.cfg.SpoolMaxBytes))
	since := st.FailingSince.UTC().Format(time.RFC3339)
	switch {
	case authErr != "":
		msgs = append(msgs, fmt.Sprintf("Elasticsearch refuses our credentials: %s; %s since %s", oneLine(authErr), spooled, since))
	case !st.FailingSince.IsZero() && unreachable:
		msgs = append(msgs, fmt.Sprintf("Elasticsearch unreachable since %s (%s); %s", since, oneLine(st.LastError), spooled))
	case !st.FailingSince.IsZero():
		msgs = append(msgs, fmt.Sprintf("Elasticsearch requests failing since %s (%s); %s", since, oneLine(st.LastError), spooled))
	}
	if st.Dropped > 0 && time.Since(lastDrop) < 10*time.Minute {
		msgs = append(msgs, fmt.Sprintf("dropping events: %d dropped, the spool is full (%s)", st.Dropped, words.Bytes(s.cfg.SpoolMaxBytes)))
	}
	if time.Since(lastRej) < 10*time.Minute {
		var rs []string
		for k, v := range st.Rejected {
			rs = append(rs, fmt.Sprintf("%d %s", v, k))
		}
		msgs = append(msgs, "Elasticsearch rejected documents: "+strings.Join(rs, ", "))
	}
	if len(msgs) == 0 {
		return false, ""
	}
	return true, strings.Join(msgs, "; ")
}

// Close sends what it can before ctx ends; the rest stays spooled for the next
// start.
func (s *Shipper) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	deadline := make(chan struct{})
	go func() {
		<-ctx.Done()
		close(deadline)
	}()
	for {
		_, pending, _, _ := s.spool.stats()
		if pending == 0 {
			break
		}
		select {
		case <-deadline:
			s.log.Warnf("output: %d documents stay spooled for the next start", pending)
			goto stop
		case <-time.After(20 * time.Millisecond):
		}
	}
stop:
	close(s.stop)
	<-s.done
	return s.spool.close()
}

// run is the sender: read a batch from the spool, send it until Elasticsearch
// answers for every document, commit, repeat.
func (s *Shipper) run() {
	defer close(s.done)
	backoff := time.Duration(0)
	tick := time.NewTicker(s.cfg.FlushInterval)
	defer tick.Stop()
	// fsync once a second, also while a batch is being retried.
	syncDone := make(chan struct{})
	defer close(syncDone)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-syncDone:
				return
			case <-t.C:
				s.spool.flush(true)
			}
		}
	}()
	for {
		batch, err := s.spool.next(s.cfg.BatchSize, s.cfg.BatchBytes)
		if err != nil {
			s.failed(err)
		}
		if len(batch) == 0 {
			select {
			case <-s.stop:
				return
			case <-s.wake:
				if s.spool.pendingCount() < int64(s.cfg.BatchSize) {
					select {
					case <-s.stop:
						return
					case <-time.After(s.cfg.Linger):
					}
				}
			case <-tick.C:
			}
			continue
		}
		all := batch
		for {
			retry, err := s.send(batch)
			if err == nil && len(retry) == 0 {
				break
			}
			if err != nil {
				s.failed(err)
			}
			if len(retry) > 0 {
				batch = retry
			}
			backoff = nextBackoff(backoff, s.cfg.MaxBackoff)
			s.mu.Lock()
			s.st.Retries++
			s.mu.Unlock()
			select {
			case <-s.stop:
				return // uncommitted: replayed next start
			case <-time.After(backoff):
			}
		}
		backoff = 0
		if err := s.spool.ack(all[len(all)-1], int64(len(all))); err != nil {
			s.log.Errorf("output: %v", err)
		}
	}
}

// sizedBodies sends a _bulk body with its length. Without one, net/http
// sends it chunked and flushes every chunk it copies (32 KiB) to the socket
// on its own, whatever the write buffer; with one, the body is read straight
// into the 256 KiB buffer and written out as it fills.
type sizedBodies struct{ http.RoundTripper }

func (t sizedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	if b, ok := req.Body.(*bulkBody); ok && req.ContentLength == 0 {
		r := *req // a RoundTripper leaves its caller's request as it was
		r.ContentLength = b.size()
		req = &r
	}
	return t.RoundTripper.RoundTrip(req)
}

// bulkBody streams a batch as a _bulk body, an action line and a document per
// record, straight from the spool's read buffer: no copy of the whole batch.
type bulkBody struct {
	recs []record
	next int
	buf  []byte // the action line's storage, reused from record to record
	line []byte // what is left of the current record's action line, in buf
	doc  []byte // what is left of its document
	nl   bool   // the newline after the document is still to come
}

// Close lets http.NewRequest take the body as it is (an io.ReadCloser), so
// sizedBodies can tell it.
func (b *bulkBody) Close() error { return nil }

// size is the length of the whole body, as Read writes it.
func (b *bulkBody) size() int64 {
	var n int64
	for _, r := range b.recs {
		b.buf = appendAction(b.buf[:0], r.Stream, r.ID)
		n += int64(len(b.buf) + len(r.Body) + 1)
	}
	b.buf = b.buf[:0]
	return n
}

func (b *bulkBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(b.line) > 0:
			c := copy(p[n:], b.line)
			b.line, n = b.line[c:], n+c
		case len(b.doc) > 0:
			c := copy(p[n:], b.doc)
			b.doc, n = b.doc[c:], n+c
		case b.nl:
			p[n], b.nl = '\n', false
			n++
		case b.next < len(b.recs):
			r := b.recs[b.next]
			b.next++
			b.buf = appendAction(b.buf[:0], r.Stream, r.ID)
			b.line = b.buf
			b.doc, b.nl = r.Body, true
		case n == 0:
			return 0, io.EOF
		default:
			return n, nil
		}
	}
	return n, nil
}

// appendAction appends the action line of one _bulk create.
func appendAction(b []byte, stream, id []byte) []byte {
	b = append(b, `{"create":{"_index":`...)
	b = appendQuoted(b, stream)
	b = append(b, `,"_id":`...)
	b = appendQuoted(b, id)
	return append(b, "}}\n"...)
}

// appendQuoted appends s as a JSON string. Streams and ids are ours (data
// stream names, base64url ids): the escapes are for a namespace nobody
// should have chosen.
func appendQuoted(b, s []byte) []byte {
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = fmt.Appendf(b, `\u%04x`, c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func nextBackoff(cur, max time.Duration) time.Duration {
	if cur == 0 {
		cur = 250 * time.Millisecond
	} else {
		cur *= 2
	}
	if cur > max {
		cur = max
	}
	// Full jitter around the step keeps restarting agents from stampeding.
	return cur/2 + rand.N(cur/2+1)
}

func (s *Shipper) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ue unreachableError
	s.unreachable = errors.As(err, &ue)
	if s.st.FailingSince.IsZero() {
		s.st.FailingSince = time.Now()
		s.log.Warnf("output: Elasticsearch: %v (retrying with backoff; documents stay spooled)", err)
	}
	s.st.LastError, s.st.LastErrorAt = err.Error(), time.Now()
}

func (s *Shipper) succeeded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.st.FailingSince.IsZero() {
		s.log.Infof("output: Elasticsearch answers again after %v", time.Since(s.st.FailingSince).Round(time.Second))
	}
	s.st.FailingSince, s.authErr = time.Time{}, ""
}

type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []map[string]struct {
		Status int `json:"status"`
		Error  *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	} `json:"items"`
}

// send posts one _bulk request. It returns the documents to try again (429 and
// 5xx items), or an error when the request as a whole failed (then all retry).
func (s *Shipper) send(batch []record) ([]record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	s.bulk = bulkBody{recs: batch, buf: s.bulk.buf}
	res, err := s.es.Bulk(&s.bulk, s.es.Bulk.WithContext(ctx))
	if err != nil {
		return batch, unreachableError{err}
	}
	defer res.Body.Close()
	s.resp.Reset()
	if _, err := s.resp.ReadFrom(res.Body); err != nil {
		return batch, fmt.Errorf("bulk response: %w", err)
	}
	data := s.resp.Bytes()
	switch {
	case res.StatusCode == 401 || res.StatusCode == 403:
		s.mu.Lock()
		s.authErr = fmt.Sprintf("%s %s", res.Status(), errorReason(data))
		s.mu.Unlock()
		return batch, fmt.Errorf("refused the request: %s %s", res.Status(), errorReason(data))
	case res.StatusCode >= 300:
		return batch, fmt.Errorf("answered %s: %s", res.Status(), errorReason(data))
	}
	errs, items, err := bulkSummary(data)
	if err != nil {
		return batch, fmt.Errorf("bulk response: %w", err)
	}
	// One item answers each document sent. A response that says nothing failed
	// but answers for fewer (a proxy or a broken server: {"errors":false,
	// "items":[]}) proves nothing was stored: the batch is sent again, and
	// what did land comes back as 409 duplicates.
	if items != len(batch) {
		return batch, fmt.Errorf("bulk response has %d items for %s sent", items, words.Plural(int64(len(batch)), "document"))
	}
	// Without errors every item was created: nothing to look at item by item.
	if !errs {
		s.succeeded()
		s.mu.Lock()
		s.st.Acked += int64(len(batch))
		s.mu.Unlock()
		return nil, nil
	}
	var br bulkResponse
	if err := json.Unmarshal(data, &br); err != nil || len(br.Items) != len(batch) {
		return batch, fmt.Errorf("bulk response with %d items for %d documents: %v", len(br.Items), len(batch), err)
	}
	s.succeeded()
	var retry []record
	var acked, dups int64
	for i, item := range br.Items {
		for _, r := range item { // one action per item
			switch {
			case r.Status < 300:
				acked++
			case r.Status == 409:
				dups++ // already there: an earlier attempt landed
			case r.Status == 429 || r.Status >= 500:
				retry = append(retry, batch[i])
			default:
				s.rejected(batch[i], r.Status, r.Error)
			}
		}
	}
	s.mu.Lock()
	s.st.Acked += acked
	s.st.Duplicates += dups
	s.mu.Unlock()
	return retry, nil
}

// rejected counts a document Elasticsearch will never take, logging each reason
// once.
func (s *Shipper) rejected(r record, status int, e *struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}) {
	typ, reason := fmt.Sprintf("status %d", status), ""
	if e != nil {
		typ, reason = e.Type, e.Reason
	}
	s.mu.Lock()
	s.st.Rejected[typ]++
	s.lastRej = time.Now()
	first := !s.logged[typ]
	s.logged[typ] = true
	s.mu.Unlock()
	if first {
		s.log.Errorf("output: Elasticsearch rejected a document for %s (%s): %s; such documents are counted and not retried", string(r.Stream), typ, reason)
	}
}

// bulkSummary reads a _bulk response's errors flag and counts the elements of
// its items array without decoding them: on the common path (no errors) that
// is all there is to know, and it costs one pass over the bytes.
func bulkSummary(data []byte) (errs bool, items int, err error) {
	if !json.Valid(data) {
		return false, 0, errors.New("not JSON")
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false, 0, errors.New("not a JSON object")
	}
	sawErrors, sawItems := false, false
	i++
	for {
		i = skipSpace(data, i)
		if data[i] == '}' {
			break
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		end := skipValue(data, i) // the key
		key := string(data[i+1 : end-1])
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // past ':'
		switch key {
		case "errors":
			switch {
			case bytes.HasPrefix(data[i:], []byte("true")):
				errs, sawErrors = true, true
			case bytes.HasPrefix(data[i:], []byte("false")):
				sawErrors = true
			}
			i = skipValue(data, i)
		case "items":
			if data[i] != '[' {
				return false, 0, errors.New("items is not an array")
			}
			sawItems = true
			i = skipSpace(data, i+1)
			for data[i] != ']' {
				if data[i] == ',' {
					i = skipSpace(data, i+1)
				}
				i = skipSpace(data, skipValue(data, i))
				items++
			}
			i++
		default:
			i = skipValue(data, i)
		}
	}
	if !sawErrors {
		return false, 0, errors.New("no errors flag")
	}
	if !sawItems {
		return false, 0, errors.New("no items")
	}
	return errs, items, nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at i, which
// json.Valid has vouched for.
func skipValue(data []byte, i int) int {
	depth, inStr := 0, false
	for ; i < len(data); i++ {
		c := data[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
				if depth == 0 {
					return i + 1
				}
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i // the end of the enclosing value: a scalar ended here
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return i
		}
	}
	return i
}

// unreachableError is a request that got no HTTP answer.
type unreachableError struct{ err error }

func (e unreachableError) Error() string { return e.err.Error() }
func (e unreachableError) Unwrap() error { return e.err }

// oneLine keeps an error's text to one short line for a status message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func errorReason(data []byte) string {
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Type != "" {
		return e.Error.Type + ": " + e.Error.Reason
	}
	if len(data) > 200 {
		data = data[:200]
	}
	return strings.TrimSpace(string(data))
}
