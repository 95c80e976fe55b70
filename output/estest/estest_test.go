package estest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The server refuses what Elasticsearch refuses.
func TestStrict(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetBasicAuth("elastic", "changeme")
	post := func(body string, auth bool) (int, map[string]any) {
		req, _ := http.NewRequest("POST", s.URL()+"/_bulk", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		if auth {
			req.SetBasicAuth("elastic", "changeme")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.Header.Get("X-Elastic-Product") != "Elasticsearch" {
			t.Error("no product header")
		}
		data, _ := io.ReadAll(res.Body)
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("response %s: %v", data, err)
		}
		return res.StatusCode, m
	}
	ts := `{"@timestamp":"2026-11-22T10:00:00Z"}`
	if code, _ := post(`{"create":{"_index":"logs-a.b-default"}}`+"\n"+ts+"\n", false); code != 401 {
		t.Errorf("no credentials: %d", code)
	}
	if code, _ := post(`{"create":{"_index":"logs-a.b-default"}}`+"\n"+ts, true); code != 400 {
		t.Errorf("no final newline: %d", code)
	}
	if code, _ := post(`{"upsert":{"_index":"logs-a.b-default"}}`+"\n"+ts+"\n", true); code != 400 {
		t.Errorf("unknown action: %d", code)
	}
	code, m := post(`{"index":{"_index":"logs-a.b-default"}}`+"\n"+ts+"\n"+
		`{"create":{"_index":"logs-a.b-default","_id":"1"}}`+"\n"+ts+"\n"+
		`{"create":{"_index":"logs-a.b-default","_id":"1"}}`+"\n"+ts+"\n"+
		`{"create":{"_index":"logs-a.b-default"}}`+"\n"+`{"no":"ts"}`+"\n", true)
	if code != 200 || m["errors"] != true {
		t.Fatalf("bulk: %d %v", code, m)
	}
	var statuses []float64
	for _, it := range m["items"].([]any) {
		for _, v := range it.(map[string]any) {
			statuses = append(statuses, v.(map[string]any)["status"].(float64))
		}
	}
	if want := []float64{400, 201, 409, 400}; len(statuses) != 4 || statuses[0] != want[0] || statuses[1] != want[1] || statuses[2] != want[2] || statuses[3] != want[3] {
		t.Errorf("item statuses %v, want %v (index refused in a data stream, created, duplicate id, no @timestamp)", statuses, want)
	}
	if n := len(s.Docs("logs-a.b-default")); n != 1 {
		t.Errorf("%d documents stored", n)
	}
}
