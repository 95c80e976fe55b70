// Package estest is an Elasticsearch test server: no Elasticsearch can run here,
// so the output is tested against this one, which speaks the real protocol
// strictly (product header, API key and basic auth, NDJSON _bulk with create
// into data streams and per-item results, @timestamp required, 409 on a
// duplicate _id) and takes faults on command: refusing writes, 429s, slow
// answers, connection resets, restarts, and answers that claim success for
// fewer items than were sent.
package estest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Fault is what the server does to the next requests.
type Fault int

const (
	None         Fault = iota
	Refuse             // 503 for every write
	Throttle           // 429 for every write (es_rejected_execution_exception)
	ItemThrottle       // every other item 429
	Reset              // close the connection without answering
	Slow               // answer after Delay
	// EmptyItems stores nothing and answers {"errors":false,"items":[]}, as a
	// broken proxy or server may: a client trusting the flag loses the batch.
	EmptyItems
	// ShortItems stores every document but leaves the last item out of the
	// answer, still with "errors":false.
	ShortItems
)

// Server is a running test server.
type Server struct {
	mu                 sync.Mutex
	apiKey             string // "id:key"; empty disables API key auth
	username, password string // empty disables basic auth
	fault              Fault
	Delay              time.Duration
	docs               map[string][]map[string]any // by data stream
	ids                map[string]map[string]bool  // _id per data stream
	requests           int
	lis                net.Listener
	srv                *http.Server
	addr               string
}

// New starts a server on loopback.
func New() (*Server, error) {
	s := &Server{docs: map[string][]map[string]any{}, ids: map[string]map[string]bool{}}
	err := s.listen("127.0.0.1:0")
	return s, err
}

func (s *Server) listen(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.lis, s.addr = lis, lis.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(lis)
	return nil
}

// URL is the server's address.
func (s *Server) URL() string { return "http://" + s.addr }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Restart stops the server and starts it again on the same address with the same
// data, as an Elasticsearch node restarting does.
func (s *Server) Restart(down time.Duration) error {
	s.srv.Close()
	time.Sleep(down)
	return s.listen(s.addr)
}

// SetFault changes what the server does to the following requests.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Docs returns the documents stored in a data stream.
func (s *Server) Docs(stream string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.docs[stream]...)
}

// Streams lists the data streams written to.
func (s *Server) Streams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.docs {
		out = append(out, k)
	}
	return out
}

// EventIDs counts stored documents by event.id, across streams.
func (s *Server) EventIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, docs := range s.docs {
		for _, d := range docs {
			if ev, ok := d["event"].(map[string]any); ok {
				if id, ok := ev["id"].(string); ok {
					out[id]++
				}
			}
		}
	}
	return out
}

// Requests counts _bulk requests received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	if !s.authorized(r) {
		writeError(w, 401, "security_exception", "unable to authenticate user for REST request ["+r.URL.Path+"]")
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		fmt.Fprint(w, `{"name":"estest","cluster_name":"estest","version":{"number":"8.19.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
	case r.Method == http.MethodPost || r.Method == http.MethodPut:
		if r.URL.Path == "/_bulk" || strings.HasSuffix(r.URL.Path, "/_bulk") {
			s.bulk(w, r)
			return
		}
		writeError(w, 400, "illegal_argument_exception", "no handler found for uri ["+r.URL.Path+"] and method ["+r.Method+"]")
	default:
		writeError(w, 405, "illegal_argument_exception", "method not allowed")
	}
}

// SetAPIKey requires API key auth with key ("id:key").
func (s *Server) SetAPIKey(key string) {
	s.mu.Lock()
	s.apiKey = key
	s.mu.Unlock()
}

// SetBasicAuth requires basic auth with this user and password.
func (s *Server) SetBasicAuth(user, password string) {
	s.mu.Lock()
	s.username, s.password = user, password
	s.mu.Unlock()
}

func (s *Server) authorized(r *http.Request) bool {
	s.mu.Lock()
	apiKey, username, password := s.apiKey, s.username, s.password
	s.mu.Unlock()
	if apiKey == "" && username == "" {
		return true
	}
	// Auth schemes are case-insensitive (RFC 9110): clients send ApiKey or APIKey.
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if apiKey != "" && strings.EqualFold(scheme, "ApiKey") && cred == base64.StdEncoding.EncodeToString([]byte(apiKey)) {
		return true
	}
	if u, p, ok := r.BasicAuth(); ok && username != "" && u == username && p == password {
		return true
	}
	return false
}

func writeError(w http.ResponseWriter, status int, typ, reason string) {
	w.WriteHeader(status)
	// A client that went away does not read the error; nothing to do then.
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"root_cause": []any{map[string]any{"type": typ, "reason": reason}}, "type": typ, "reason": reason}, "status": status})
}

// dataStream is type-dataset-namespace, as the logs-*-* and metrics-*-* index
// templates match.
var dataStream = regexp.MustCompile(`^(logs|metrics)-[a-z0-9_.]+-[a-z0-9_]+$`)

func (s *Server) bulk(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	fault, delay := s.fault, s.Delay
	s.mu.Unlock()
	switch fault {
	case Refuse:
		writeError(w, 503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];")
		return
	case Throttle:
		writeError(w, 429, "es_rejected_execution_exception", "rejected execution of coordinating operation")
		return
	case Reset:
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
	case Slow:
		time.Sleep(delay)
	case EmptyItems:
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"errors":false,"took":0,"items":[]}`)
		return
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/x-ndjson") && !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/vnd.elasticsearch+x-ndjson") {
		writeError(w, 406, "media_type_header_exception", "Content-Type header ["+ct+"] is not supported")
		return
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(r.Body); err != nil {
		writeError(w, 400, "parse_exception", "reading the request body: "+err.Error())
		return
	}
	data := body.Bytes()
	if len(data) == 0 || data[len(data)-1] != '\n' {
		writeError(w, 400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 100<<20)
	var items []map[string]any
	start := time.Now()
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var action map[string]map[string]any
		if err := json.Unmarshal(line, &action); err != nil || len(action) != 1 {
			writeError(w, 400, "x_content_parse_exception", "malformed action/metadata line")
			return
		}
		var op string
		var meta map[string]any
		for k, v := range action {
			op, meta = k, v
		}
		if op != "create" && op != "index" && op != "delete" && op != "update" {
			writeError(w, 400, "illegal_argument_exception", "Malformed action/metadata line, expected one of [create, delete, index, update] but found ["+op+"]")
			return
		}
		if !sc.Scan() {
			writeError(w, 400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
			return
		}
		doc := append([]byte(nil), sc.Bytes()...)
		index, _ := meta["_index"].(string)
		if index == "" {
			index = strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/_bulk")
		}
		id, _ := meta["_id"].(string)
		n++
		items = append(items, map[string]any{op: s.store(op, index, id, doc, fault == ItemThrottle && n%2 == 0)})
	}
	errorsSeen := false
	for _, it := range items {
		for _, v := range it {
			if v.(map[string]any)["status"].(int) >= 300 {
				errorsSeen = true
			}
		}
	}
	if fault == ShortItems && len(items) > 0 {
		items = items[:len(items)-1]
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": errorsSeen, "took": time.Since(start).Milliseconds(), "items": items})
}

// store applies one action and returns its item result.
func (s *Server) store(op, index, id string, doc []byte, throttle bool) map[string]any {
	item := func(status int, typ, reason string) map[string]any {
		m := map[string]any{"_index": index, "_id": id, "status": status}
		if typ != "" {
			m["error"] = map[string]any{"type": typ, "reason": reason, "index": index}
		}
		return m
	}
	if throttle {
		return item(429, "es_rejected_execution_exception", "rejected execution of primary operation")
	}
	if !dataStream.MatchString(index) {
		return item(400, "index_not_found_exception", "no such index ["+index+"] and [action.auto_create_index] ([logs-*-*, metrics-*-*]) doesn't match")
	}
	if op != "create" {
		return item(400, "illegal_argument_exception", "only write ops with an op_type of create are allowed in data streams")
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return item(400, "document_parsing_exception", "failed to parse: "+err.Error())
	}
	ts, ok := m["@timestamp"].(string)
	if !ok {
		return item(400, "document_parsing_exception", "data stream timestamp field [@timestamp] is missing")
	}
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		return item(400, "document_parsing_exception", "failed to parse field [@timestamp] of type [date]: "+ts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != "" {
		if s.ids[index] == nil {
			s.ids[index] = map[string]bool{}
		}
		if s.ids[index][id] {
			return item(409, "version_conflict_engine_exception", "["+id+"]: version conflict, document already exists")
		}
		s.ids[index][id] = true
	}
	s.docs[index] = append(s.docs[index], m)
	out := item(201, "", "")
	out["result"] = "created"
	out["_index"] = ".ds-" + index + "-" + time.Now().Format("2006.01.02") + "-000001"
	return out
}
