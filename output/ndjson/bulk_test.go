package ndjson_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/output"
	"github.com/cloud-defend/cloud-defend/output/console"
	"github.com/cloud-defend/cloud-defend/output/estest"
	"github.com/cloud-defend/cloud-defend/output/ndjson"
	"github.com/cloud-defend/cloud-defend/policy"
)

// sink is what a daemon asks of every output: the Elasticsearch shipper,
// the file writer and the console have the same methods (Stats aside, whose
// counters are each output's own).
type sink interface {
	Publish(stream, id string, body []byte) error
	Flush() error
	Health() (degraded bool, message string)
	Close(ctx context.Context) error
}

var _ = []sink{(*output.Shipper)(nil), (*ndjson.Writer)(nil), (*console.Console)(nil)}

type nopLog struct{}

func (nopLog) Infof(string, ...any)  {}
func (nopLog) Warnf(string, ...any)  {}
func (nopLog) Errorf(string, ...any) {}

// capture forwards requests to the strict test server and keeps the raw
// _bulk bodies.
type capture struct {
	mu     sync.Mutex
	bodies [][]byte
	to     string
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/_bulk" {
		c.mu.Lock()
		c.bodies = append(c.bodies, body)
		c.mu.Unlock()
	}
	req, _ := http.NewRequest(r.Method, c.to+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	// A copy that fails shows in the client, which gets a torn response.
	_, _ = io.Copy(w, res.Body)
}

// TestSameBytesAsBulk: a document's line in the file is, byte for byte, its
// source line in the _bulk body the Elasticsearch output sends, for the
// encoder's real documents (an alert and its event, a file event, a
// heartbeat).
func TestSameBytesAsBulk(t *testing.T) {
	es, err := estest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	cp := &capture{to: es.URL()}
	proxy := httptest.NewServer(cp)
	defer proxy.Close()
	ship, err := output.New(output.Config{Hosts: []string{proxy.URL}, DataDir: t.TempDir(), FlushInterval: 10 * time.Millisecond}, nopLog{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "docs.ndjson")
	file, err := ndjson.Open(ndjson.Config{Path: path}, nopLog{})
	if err != nil {
		t.Fatal(err)
	}

	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "test"}, host.Host{Hostname: "node-1", Name: "node-1", Architecture: "x86_64"}, nil,
		time.Now().Add(-time.Hour), func(*event.Event) ([]string, error) { return []string{"sel \"quoted\" é"}, nil })
	meta := ecs.Meta{Namespace: "default", PackagePolicyID: "pp", Revision: 1}
	proc := event.Process{PID: 42, PPID: 7, Start: time.Second, Comm: "sh"}
	events := []event.Event{
		{Kind: event.ProcessDecision, Time: 2 * time.Second, Process: proc, Op: policy.OpExec, Path: "/tmp/evil\tname",
			Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock, Blocked: true},
		{Kind: event.FileDecision, Time: 3 * time.Second, Process: proc, Op: policy.OpModifyFile, Hook: 1, Path: "/etc/hosts", Actions: policy.ActionLog},
	}
	var ids []string
	publish := func(d ecs.Doc) {
		ids = append(ids, d.ID)
		if err := ship.Publish(d.Stream, d.ID, d.Body); err != nil {
			t.Fatal(err)
		}
		if err := file.Publish(d.Stream, d.ID, d.Body); err != nil {
			t.Fatal(err)
		}
	}
	for i := range events {
		if err := enc.EncodeAll(&events[i], &enrich.Context{}, meta, publish); err != nil {
			t.Fatal(err)
		}
	}
	publish(enc.Heartbeat(meta, true, time.Now()))
	ship.Flush()
	file.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ship.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := ship.Stats(); st.Acked != int64(len(ids)) {
		t.Fatalf("Elasticsearch took %d of %d documents: %+v", st.Acked, len(ids), st)
	}

	// The source lines of the _bulk bodies, in order: every other line.
	var bulk [][]byte
	for _, b := range cp.bodies {
		lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
		for i := 1; i < len(lines); i += 2 {
			bulk = append(bulk, lines[i])
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(lines) != len(ids) || len(bulk) != len(ids) {
		t.Fatalf("%d documents, %d lines in the file, %d in _bulk bodies", len(ids), len(lines), len(bulk))
	}
	for i := range lines {
		if !bytes.Equal(lines[i], bulk[i]) {
			t.Errorf("document %d (%s):\nfile %s\nbulk %s", i, ids[i], lines[i], bulk[i])
		}
		if !bytes.Contains(lines[i], []byte(`"id":"`+ids[i]+`"`)) {
			t.Errorf("line %d is not document %s", i, ids[i])
		}
	}
	if !bytes.Equal(data, append(bytes.Join(bulk, []byte("\n")), '\n')) {
		t.Error("the file is not the _bulk source lines, each followed by a newline")
	}
}
