package throttle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Document turns a summary into the alert document that reports it: the last
// suppressed alert (so host, container, pod, process and selectors say whose
// flood it was), with event.type info, event.action alerts_suppressed, a
// message with the count and window, and cloud_defend.throttle.* holding
// them. It is an alert (event.kind alert) so the flood itself surfaces where
// alerts are read. Its event.id is the sample's with "-throttle": one sample
// closes at most one window, so ids stay unique and a retried bulk write
// stays idempotent.
func Document(s Summary, cfg Config, now time.Time) (id string, body []byte, err error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(s.Sample))
	dec.UseNumber() // keep integers as written
	if err := dec.Decode(&doc); err != nil {
		return "", nil, fmt.Errorf("throttle summary: the sample alert is not a JSON object: %w", err)
	}
	ev, _ := doc["event"].(map[string]any)
	if ev == nil {
		ev = map[string]any{}
		doc["event"] = ev
	}
	sampleID, _ := ev["id"].(string)
	id = sampleID + "-throttle"
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }
	ev["id"] = id
	ev["kind"] = "alert"
	ev["type"] = []string{"info"}
	ev["action"] = "alerts_suppressed"
	ev["created"], ev["ingested"] = ts(now), ts(now)
	delete(ev, "outcome")
	doc["@timestamp"] = ts(s.End)
	cd, _ := doc["cloud_defend"].(map[string]any)
	if cd == nil {
		cd = map[string]any{}
		doc["cloud_defend"] = cd
	}
	cd["throttle"] = map[string]any{
		"suppressed": s.Suppressed,
		"window":     map[string]any{"start": ts(s.Start), "end": ts(s.End)},
		"rate":       cfg.Rate,
		"burst":      cfg.Burst,
	}
	var sel []string
	if xs, ok := cd["matched_selectors"].([]any); ok {
		for _, x := range xs {
			if v, ok := x.(string); ok {
				sel = append(sel, v)
			}
		}
	}
	container := s.Key.Container
	if container == "" {
		container = "(none, pid namespace " + strconv.FormatUint(uint64(s.Key.PIDNS), 10) + ")"
	} else if len(container) > 12 {
		container = container[:12]
	}
	last, _ := doc["message"].(string)
	doc["message"] = fmt.Sprintf("cloud-defend: %d alerts suppressed for container %s, selectors %s, from %s to %s (over %d at once or %s a second); the last: %s",
		s.Suppressed, container, strings.Join(sel, ", "), ts(s.Start), ts(s.End), cfg.Burst, strconv.FormatFloat(cfg.Rate, 'g', -1, 64), last)
	body, err = json.Marshal(doc)
	return id, body, err
}

// AddMetric puts the suppressed count into a metrics document's
// cloud_defend.metrics object as alerts_suppressed. The ECS encoder owns
// that document; splicing keeps the encoder unaware of throttling.
func AddMetric(body []byte, suppressed uint64) []byte {
	key := []byte(`"metrics":{`)
	i := bytes.Index(body, key)
	if i < 0 {
		return body
	}
	i += len(key)
	out := make([]byte, 0, len(body)+40)
	out = append(out, body[:i]...)
	out = append(out, `"alerts_suppressed":`...)
	out = strconv.AppendUint(out, suppressed, 10)
	if body[i] != '}' {
		out = append(out, ',')
	}
	return append(out, body[i:]...)
}
