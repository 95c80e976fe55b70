package output

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/output/estest"
)

type testLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *testLog) add(level, f string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(f, a...))
	l.mu.Unlock()
}
func (l *testLog) Infof(f string, a ...any)  { l.add("info", f, a...) }
func (l *testLog) Warnf(f string, a ...any)  { l.add("warn", f, a...) }
func (l *testLog) Errorf(f string, a ...any) { l.add("error", f, a...) }
func (l *testLog) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

func newES(t *testing.T) *estest.Server {
	t.Helper()
	es, err := estest.New()
	if err != nil {
		t.Fatal(err)
	}
	es.SetAPIKey("key-id:key-secret")
	t.Cleanup(es.Close)
	return es
}

func newShipper(t *testing.T, es *estest.Server, dir string, mod func(*Config)) (*Shipper, *testLog) {
	t.Helper()
	cfg := Config{Hosts: []string{es.URL()}, APIKey: "key-id:key-secret", DataDir: dir, FlushInterval: 10 * time.Millisecond,
		BatchSize: 50, MaxBackoff: 200 * time.Millisecond, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	log := &testLog{}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return s, log
}

func doc(i int) (string, []byte) {
	id := fmt.Sprintf("ev-%06d", i)
	return id, fmt.Appendf(nil, `{"@timestamp":"2026-11-22T10:00:00.%09dZ","event":{"id":%q,"kind":"event"},"message":"%s"}`, i, id, strings.Repeat("x", 500))
}

func publish(t *testing.T, s *Shipper, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		id, body := doc(i)
		if err := s.Publish("logs-cloud_defend.process-default", id, body); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// everyID checks that each of n documents is stored at least once, and reports
// duplicates.
func everyID(t *testing.T, es *estest.Server, n int) {
	t.Helper()
	ids := es.EventIDs()
	dups := 0
	for i := range n {
		id, _ := doc(i)
		switch c := ids[id]; {
		case c == 0:
			t.Errorf("document %s lost", id)
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("%d documents delivered, %d duplicates", n, dups)
}

func TestRoundTrip(t *testing.T) {
	es := newES(t)
	s, _ := newShipper(t, es, t.TempDir(), nil)
	publish(t, s, 0, 500)
	waitFor(t, "500 documents", 10*time.Second, func() bool { return len(es.Docs("logs-cloud_defend.process-default")) == 500 })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Published != 500 || st.Acked != 500 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	if d, msg := s.Health(); d {
		t.Errorf("degraded after a clean run: %s", msg)
	}
	everyID(t, es, 500)
}

func TestAuthFailureIsDegraded(t *testing.T) {
	es := newES(t)
	s, _ := newShipper(t, es, t.TempDir(), func(c *Config) { c.APIKey = "key-id:wrong" })
	defer closeSoon(s)
	publish(t, s, 0, 1)
	waitFor(t, "degraded health", 5*time.Second, func() bool { d, _ := s.Health(); return d })
	if _, msg := s.Health(); !strings.Contains(msg, "Elasticsearch refuses our credentials: 401") || !strings.Contains(msg, "security_exception") {
		t.Errorf("health message %q", msg)
	}
}

// TestFaults: Elasticsearch refuses writes, throttles (whole requests and single
// items), resets connections and restarts while documents flow; afterwards every
// document is there at least once and health is back to healthy.
func TestFaults(t *testing.T) {
	es := newES(t)
	s, log := newShipper(t, es, t.TempDir(), nil)
	defer closeSoon(s)
	n := 0
	flow := func(count int) { publish(t, s, n, n+count); n += count }
	for _, f := range []struct {
		fault estest.Fault
		name  string
	}{{estest.Refuse, "refuse"}, {estest.Throttle, "throttle"}, {estest.ItemThrottle, "item throttle"}, {estest.Reset, "reset"}} {
		es.SetFault(f.fault)
		flow(200)
		if f.fault != estest.ItemThrottle {
			waitFor(t, f.name+": degraded", 5*time.Second, func() bool { d, _ := s.Health(); return d })
			_, msg := s.Health()
			t.Logf("%s: %s", f.name, msg)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
		es.SetFault(estest.None)
		flow(100)
		waitFor(t, f.name+": recovery", 10*time.Second, func() bool { d, _ := s.Health(); return !d && s.Stats().Pending == 0 })
	}
	// A restart of Elasticsearch mid-stream.
	flow(200)
	if err := es.Restart(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	flow(200)
	waitFor(t, "all delivered after a restart", 15*time.Second, func() bool { return s.Stats().Pending == 0 })
	everyID(t, es, n)
	st := s.Stats()
	if st.Retries == 0 || log.count("retrying with backoff") == 0 || log.count("answers again") == 0 {
		t.Errorf("stats %+v; log %v", st, log.lines)
	}
}

// TestCrashReplay: a shipper abandoned without Close (SIGKILL), with a torn last
// record, is replayed by the next one on the same directory.
func TestCrashReplay(t *testing.T) {
	es := newES(t)
	dir := t.TempDir()
	es.SetFault(estest.Refuse)
	s1, _ := newShipper(t, es, dir, nil)
	publish(t, s1, 0, 300)
	s1.spool.flush(true) // what the OS had when the process died
	// Simulate the kill: stop the sender without committing, leave the files.
	close(s1.stop)
	<-s1.done
	// A torn record at the tail, as a write cut short by the kill leaves.
	segs, _ := filepath.Glob(filepath.Join(dir, "spool", "seg-*.log"))
	sort.Strings(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 'l', 'o'}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	es.SetFault(estest.None)
	s2, log := newShipper(t, es, dir, nil)
	defer closeSoon(s2)
	if log.count("replaying 300 spooled documents (1 torn records cut off)") != 1 {
		t.Errorf("log %v", log.lines)
	}
	waitFor(t, "replay", 10*time.Second, func() bool { return s2.Stats().Pending == 0 })
	everyID(t, es, 300)
}

// TestSpoolCap: past the cap, the oldest documents are dropped, counted exactly,
// and reported.
func TestSpoolCap(t *testing.T) {
	es := newES(t)
	es.SetFault(estest.Refuse)
	s, _ := newShipper(t, es, t.TempDir(), func(c *Config) { c.SpoolMaxBytes = 40 << 20 })
	defer closeSoon(s)
	// ~600-byte records: a 16 MiB segment holds ~27k; 100k documents overflow a 40 MiB cap.
	publish(t, s, 0, 100000)
	st := s.Stats()
	if st.Dropped == 0 || st.SpoolBytes > 40<<20 {
		t.Fatalf("stats %+v", st)
	}
	es.SetFault(estest.None)
	waitFor(t, "delivery", 30*time.Second, func() bool { return s.Stats().Pending == 0 })
	st = s.Stats()
	stored := len(es.Docs("logs-cloud_defend.process-default"))
	if int64(stored)+st.Dropped != 100000 {
		t.Errorf("%d stored + %d dropped != 100000", stored, st.Dropped)
	}
	// The dropped ones are the oldest, after the batch that was being sent (50).
	if ids := es.EventIDs(); ids["ev-000000"] != 1 || ids["ev-000060"] != 0 || ids["ev-099999"] != 1 {
		t.Errorf("the batch in flight and the newest should survive, the oldest past it go")
	}
	if d, msg := s.Health(); !d || !strings.Contains(msg, fmt.Sprintf("dropping events: %d dropped", st.Dropped)) {
		t.Errorf("health %v %q", d, msg)
	}
}

// TestPermanentErrors: documents Elasticsearch can never take are counted, logged
// once per reason, and not retried.
func TestPermanentErrors(t *testing.T) {
	es := newES(t)
	s, log := newShipper(t, es, t.TempDir(), nil)
	defer closeSoon(s)
	for i := range 5 {
		if err := s.Publish("logs-cloud_defend.process-default", fmt.Sprint("bad", i), []byte(`{"no":"timestamp"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Publish("not-a-data-stream", "x", []byte(`{"@timestamp":"2026-11-22T10:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	publish(t, s, 0, 10)
	waitFor(t, "delivery", 5*time.Second, func() bool { return s.Stats().Pending == 0 })
	st := s.Stats()
	if st.Rejected["document_parsing_exception"] != 5 || st.Rejected["index_not_found_exception"] != 1 || st.Acked != 10 || st.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	if log.count("rejected a document") != 2 {
		t.Errorf("each reason should be logged once: %v", log.lines)
	}
	if d, msg := s.Health(); !d || !strings.Contains(msg, "5 document_parsing_exception") {
		t.Errorf("health %v %q", d, msg)
	}
	if es.Requests() > 3 {
		t.Errorf("%d requests: rejected documents were retried", es.Requests())
	}
}

func BenchmarkShip(b *testing.B) {
	es, err := estest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	s, err := New(Config{Hosts: []string{es.URL()}, DataDir: b.TempDir(), FlushInterval: 5 * time.Millisecond}, &testLog{})
	if err != nil {
		b.Fatal(err)
	}
	_, body := doc(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Publish("logs-cloud_defend.process-default", fmt.Sprint(i), body); err != nil {
			b.Fatal(err)
		}
	}
	for s.Stats().Pending > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	s.Close(context.Background())
}

// closeSoon closes a shipper, leaving what Elasticsearch did not take spooled.
func closeSoon(s *Shipper) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.Close(ctx)
}

// TestBulkBody: the streamed body is the records framed as _bulk creates,
// read in any chunk size.
func TestBulkBody(t *testing.T) {
	recs := []record{
		{Stream: []byte("logs-cloud_defend.process-default"), ID: []byte("a1"), Body: []byte(`{"x":1}`)},
		{Stream: []byte(`odd"name`), ID: []byte("b\\2"), Body: []byte(`{"y":"two"}`)},
		{Stream: []byte("s"), ID: []byte("c"), Body: nil},
	}
	// The framing written out independently, JSON strings by encoding/json
	// (these names hold no <, > or &, which it would escape and we do not).
	var want []byte
	for _, r := range recs {
		stream, _ := json.Marshal(string(r.Stream))
		id, _ := json.Marshal(string(r.ID))
		want = fmt.Appendf(want, "{\"create\":{\"_index\":%s,\"_id\":%s}}\n%s\n", stream, id, r.Body)
	}
	for _, size := range []int{1, 2, 7, 64, 4096} {
		b := &bulkBody{recs: recs}
		var got []byte
		buf := make([]byte, size)
		for {
			n, err := b.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if string(got) != string(want) {
			t.Errorf("chunks of %d:\n%s\nwant\n%s", size, got, want)
		}
	}
	if got := (&bulkBody{recs: recs}).size(); got != int64(len(want)) {
		t.Errorf("size %d, want %d", got, len(want))
	}
	if !strings.Contains(string(want), `{"create":{"_index":"odd\"name","_id":"b\\2"}}`) {
		t.Errorf("quoting: %s", want)
	}
}

// TestCursor: the commit point survives a reopen; a damaged cursor replays
// from the start rather than skipping anything.
func TestCursor(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := sp.append("s", fmt.Sprintf("id-%d", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := sp.next(4, 1<<20)
	if err != nil || len(batch) != 4 {
		t.Fatalf("next: %d records, %v", len(batch), err)
	}
	if err := sp.ack(batch[3], 4); err != nil {
		t.Fatal(err)
	}
	sp.close()
	sp, err = openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if _, pending, _, _ := sp.stats(); pending != 6 {
		t.Errorf("after reopen %d pending, want 6", pending)
	}
	if batch, _ := sp.next(100, 1<<20); len(batch) != 6 || string(batch[0].ID) != "id-4" {
		t.Errorf("reopened at %d records from %q", len(batch), batch[0].ID)
	}
	sp.close()
	f, err := os.OpenFile(filepath.Join(dir, "cursor"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sp, err = openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if batch, _ := sp.next(100, 1<<20); len(batch) != 10 {
		t.Errorf("a damaged cursor left %d records to send, want all 10", len(batch))
	}
}

func TestBulkSummary(t *testing.T) {
	for _, c := range []struct {
		in    string
		errs  bool
		items int
		bad   bool
	}{
		{`{"errors":false,"took":3,"items":[]}`, false, 0, false},
		{`{"took":3,"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"x","reason":"a ] } , \"q\" ["}}}]}`, true, 2, false},
		{" {\n \"items\" : [ {\"create\":{\"_id\":\"a,b\"}} , {} ,[1,2] ] , \"errors\" : false , \"x\":{\"items\":[1,2,3]}}\n", false, 3, false},
		{`{"errors":false,"items":[1,"two",null,{"a":[{}]}]}`, false, 4, false},
		{`{"errors":false}`, false, 0, true},
		{`{"items":[]}`, false, 0, true},
		{`{"errors":false,"items":{}}`, false, 0, true},
		{`{"errors":false,"items":[`, false, 0, true},
		{`[]`, false, 0, true},
		{`<html>bad gateway</html>`, false, 0, true},
	} {
		errs, items, err := bulkSummary([]byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("%s: no error", c.in)
			}
			continue
		}
		if err != nil || errs != c.errs || items != c.items {
			t.Errorf("%s: errors %v, %d items, %v; want %v, %d", c.in, errs, items, err, c.errs, c.items)
		}
		// The count agrees with a full decode.
		var full struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(c.in), &full); err != nil || len(full.Items) != items {
			t.Errorf("%s: counted %d items, encoding/json finds %d (%v)", c.in, items, len(full.Items), err)
		}
	}
}

// TestShortAnswers: a server that answers "errors":false for fewer items than
// documents were sent (none at all, as a broken proxy may, or one short) has
// not proven they were stored: they stay spooled and are sent again, health
// says why, and once it answers properly every document is there.
func TestShortAnswers(t *testing.T) {
	for _, f := range []struct {
		fault estest.Fault
		name  string
	}{{estest.EmptyItems, "empty items"}, {estest.ShortItems, "short items"}} {
		t.Run(f.name, func(t *testing.T) {
			es := newES(t)
			s, _ := newShipper(t, es, t.TempDir(), nil)
			defer closeSoon(s)
			es.SetFault(f.fault)
			publish(t, s, 0, 120)
			waitFor(t, "degraded health", 5*time.Second, func() bool { d, _ := s.Health(); return d })
			_, msg := s.Health()
			t.Logf("health: %s", msg)
			if !strings.Contains(msg, "Elasticsearch requests failing since") || !strings.Contains(msg, "bulk response has") ||
				!strings.Contains(msg, "documents sent)") || !strings.Contains(msg, "120 documents spooled") {
				t.Errorf("health message %q", msg)
			}
			if st := s.Stats(); st.Acked != 0 || st.Pending != 120 {
				t.Errorf("while the answers are short: %d acked, %d pending; want 0 and 120", st.Acked, st.Pending)
			}
			es.SetFault(estest.None)
			waitFor(t, "recovery", 10*time.Second, func() bool { d, _ := s.Health(); return !d && s.Stats().Pending == 0 })
			everyID(t, es, 120)
		})
	}
}

// TestUnreachableMessage: with nothing listening, health is one line that says
// Elasticsearch is unreachable, since when, why, and what waits in the spool.
func TestUnreachableMessage(t *testing.T) {
	es := newES(t)
	es.Close()
	s, _ := newShipper(t, es, t.TempDir(), nil)
	defer closeSoon(s)
	publish(t, s, 0, 3)
	waitFor(t, "degraded health", 5*time.Second, func() bool { d, _ := s.Health(); return d })
	_, msg := s.Health()
	t.Logf("health: %s", msg)
	re := regexp.MustCompile(`^Elasticsearch unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(dial tcp [^)]*connection (refused|reset by peer)\); 3 documents spooled \(\d+(\.\d)? KiB of 256 MiB\)$`)
	if !re.MatchString(msg) {
		t.Errorf("health message %q does not match %s", msg, re)
	}
}

// TestBulkSentWithLength: a _bulk request says its length rather than
// coming chunked (net/http flushes each chunk to the socket on its own), and
// the body is all there.
func TestBulkSentWithLength(t *testing.T) {
	type seen struct {
		length  int64
		chunked bool
		body    int
	}
	got := make(chan seen, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if !strings.HasSuffix(r.URL.Path, "/_bulk") {
			return
		}
		data, _ := io.ReadAll(r.Body)
		got <- seen{r.ContentLength, len(r.TransferEncoding) > 0, len(data)}
		items := strings.Repeat(`{"create":{"status":201}},`, bytes.Count(data, []byte("\n"))/2)
		fmt.Fprintf(w, `{"errors":false,"items":[%s]}`, strings.TrimSuffix(items, ","))
	}))
	defer srv.Close()
	s, err := New(Config{Hosts: []string{srv.URL}, DataDir: t.TempDir(), FlushInterval: 10 * time.Millisecond, Timeout: 2 * time.Second}, &testLog{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeSoon(s)
	for i := range 3 {
		id, body := doc(i)
		if err := s.Publish("logs-x-default", id, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.chunked || r.length <= 0 || int64(r.body) != r.length {
			t.Errorf("request: Content-Length %d, chunked %v, %d bytes of body", r.length, r.chunked, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no _bulk request")
	}
}
