package console

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// doc is the part of a document the view reads.
type doc struct {
	Timestamp  string `json:"@timestamp"`
	DataStream struct {
		Type    string `json:"type"`
		Dataset string `json:"dataset"`
	} `json:"data_stream"`
	Event struct {
		Kind   string `json:"kind"`
		Action string `json:"action"`
	} `json:"event"`
	Process struct {
		PID        int64    `json:"pid"`
		Name       string   `json:"name"`
		Executable string   `json:"executable"`
		EntityID   string   `json:"entity_id"`
		Args       []string `json:"args"`
		ExitCode   *int64   `json:"exit_code"`
		Parent     struct {
			PID  int64  `json:"pid"`
			Name string `json:"name"`
		} `json:"parent"`
	} `json:"process"`
	Container struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"container"`
	Orchestrator struct {
		Namespace string `json:"namespace"`
		Resource  struct {
			Name string `json:"name"`
		} `json:"resource"`
	} `json:"orchestrator"`
	File struct {
		Path string `json:"path"`
	} `json:"file"`
	Source      endpoint `json:"source"`
	Destination endpoint `json:"destination"`
	Network     struct {
		Transport string `json:"transport"`
	} `json:"network"`
	CloudDefend struct {
		Operation          string   `json:"operation"`
		MatchedSelectors   []string `json:"matched_selectors"`
		Blocked            bool     `json:"blocked"`
		HookPoint          []string `json:"hook_point"`
		BlockActionEnabled *bool    `json:"block_action_enabled"`
		Metrics            *metrics `json:"metrics"`
	} `json:"cloud_defend"`
}

// endpoint is source.* or destination.*.
type endpoint struct {
	IP   string `json:"ip"`
	Port *int64 `json:"port"`
}

// String is the end as the view shows it: 10.0.0.5:443, [::1]:5000; "" when
// the document does not have it.
func (e endpoint) String() string {
	if e.IP == "" {
		return ""
	}
	s := clean(e.IP)
	if strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if e.Port != nil {
		s += ":" + strconv.FormatInt(*e.Port, 10)
	}
	return s
}

type metrics struct {
	Events           int64 `json:"events"`
	RingDrops        int64 `json:"ring_drops"`
	Published        int64 `json:"docs_published"`
	Acked            int64 `json:"docs_acked"`
	Rejected         int64 `json:"docs_rejected"`
	Dropped          int64 `json:"docs_dropped"`
	Pending          int64 `json:"queue_pending"`
	ProcessesTracked int64 `json:"processes_tracked"`
}

// key is what an alert and its event document share (see the package
// comment).
func (d *doc) key() string {
	hook := ""
	if len(d.CloudDefend.HookPoint) > 0 {
		hook = d.CloudDefend.HookPoint[0]
	}
	return d.Timestamp + "\x00" + d.Process.EntityID + "\x00" + d.Event.Action + "\x00" + hook + "\x00" + d.File.Path +
		"\x00" + d.Source.String() + "\x00" + d.Destination.String()
}

// RendererCounters are what a renderer did with the documents it was given.
type RendererCounters struct {
	Shown, Hidden, Deduped, Malformed int64
}

// Renderer turns documents into lines. One goroutine may use it.
type Renderer struct {
	opt Options
	loc *time.Location

	alerts map[string]struct{} // keys of the last len(ring) alerts
	ring   []string
	next   int

	shown, hidden, deduped, malformed atomic.Int64
}

// recentAlerts is how many alerts' keys are kept for dedupe.
const recentAlerts = 256

// NewRenderer returns a renderer; only the view options matter (Color,
// ShowNode, ShowMetrics, Width, Location).
func NewRenderer(opt Options) *Renderer {
	loc := opt.Location
	if loc == nil {
		loc = time.Local
	}
	return &Renderer{opt: opt, loc: loc, alerts: map[string]struct{}{}, ring: make([]string, recentAlerts)}
}

// Counters returns the counts so far; safe to call from any goroutine.
func (r *Renderer) Counters() RendererCounters {
	return RendererCounters{Shown: r.shown.Load(), Hidden: r.hidden.Load(), Deduped: r.deduped.Load(), Malformed: r.malformed.Load()}
}

// Render appends the lines of docs, in order, each ending in '\n'. The alerts
// among them are remembered first, so an alert's event document is skipped
// whether it comes before or after the alert in docs, or after it in a later
// call.
func (r *Renderer) Render(dst []byte, docs [][]byte) []byte {
	ds := make([]*doc, len(docs))
	for i, b := range docs {
		d := new(doc)
		if err := json.Unmarshal(b, d); err != nil {
			r.malformed.Add(1)
			continue
		}
		ds[i] = d
		if d.Event.Kind == "alert" {
			r.remember(d.key())
		}
	}
	for _, d := range ds {
		if d == nil {
			continue
		}
		if d.Event.Kind == "event" && d.DataStream.Type == "logs" {
			k := d.key()
			if _, ok := r.alerts[k]; ok {
				delete(r.alerts, k) // one event document per alert
				r.deduped.Add(1)
				continue
			}
		}
		n := len(dst)
		dst = r.line(dst, d)
		if len(dst) == n {
			r.hidden.Add(1)
		} else {
			r.shown.Add(1)
		}
	}
	return dst
}

func (r *Renderer) remember(k string) {
	if old := r.ring[r.next]; old != "" {
		delete(r.alerts, old)
	}
	r.ring[r.next] = k
	r.next = (r.next + 1) % len(r.ring)
	r.alerts[k] = struct{}{}
}

const (
	reset   = "\x1b[0m"
	dim     = "\x1b[2m"
	red     = "\x1b[1;31m"
	yellow  = "\x1b[1;33m"
	cyan    = "\x1b[36m"
	magenta = "\x1b[35m"
	bold    = "\x1b[1m"
)

// part is a piece of a line and its colour.
type part struct{ s, color string }

// line appends d's line, or nothing when d is hidden.
func (r *Renderer) line(dst []byte, d *doc) []byte {
	ts := "--:--:--.---"
	if t, err := time.Parse(time.RFC3339Nano, d.Timestamp); err == nil {
		ts = t.In(r.loc).Format("15:04:05.000")
	}
	if d.DataStream.Type == "metrics" {
		if !r.opt.ShowMetrics {
			return dst
		}
		return r.metricLine(dst, ts, d)
	}
	if d.Container.ID == "" && !r.opt.ShowNode {
		return dst
	}
	mark := part{"       ", ""}
	switch {
	case d.CloudDefend.Blocked:
		mark = part{"BLOCKED", red}
	case d.Event.Kind == "alert":
		mark = part{"ALERT  ", yellow}
	}
	where := "node"
	switch {
	case d.Orchestrator.Resource.Name != "" && d.Orchestrator.Namespace != "":
		where = d.Orchestrator.Namespace + "/" + d.Orchestrator.Resource.Name
	case d.Orchestrator.Resource.Name != "":
		where = d.Orchestrator.Resource.Name
	case d.Container.Name != "":
		where = d.Container.Name
	case d.Container.ID != "":
		where = d.Container.ID[:min(12, len(d.Container.ID))]
	}
	proc := clean(d.Process.Name) + "[" + strconv.FormatInt(d.Process.PID, 10) + "]"
	if p := d.Process.Parent; p.PID != 0 || p.Name != "" {
		proc += " ← " + clean(p.Name) + "[" + strconv.FormatInt(p.PID, 10) + "]"
	}
	action, target := d.Event.Action, ""
	switch action {
	case "exec":
		target = clean(d.Process.Executable)
		if len(d.Process.Args) > 1 {
			for _, a := range d.Process.Args[1:] {
				target += " " + clean(a)
			}
		}
	case "connection_attempted", "connection_accepted", "bind":
		action, target = networkLine(d)
	case "fork":
	case "end":
		if d.Process.ExitCode != nil {
			target = "exit " + strconv.FormatInt(*d.Process.ExitCode, 10)
		}
	default:
		target = clean(d.File.Path)
		if target == "" {
			target = clean(d.Process.Executable)
		}
	}
	sel := ""
	if len(d.CloudDefend.MatchedSelectors) > 0 {
		sel = "["
		for i, s := range d.CloudDefend.MatchedSelectors {
			if i > 0 {
				sel += ", "
			}
			sel += clean(s)
		}
		sel += "]"
	}
	if w := r.opt.Width; w > 0 {
		fixed := runes(ts) + 1 + runes(mark.s) + 1 + runes(where) + 1 + runes(proc) + 1 + runes(action)
		if sel != "" {
			fixed += 1 + runes(sel)
		}
		if target != "" {
			target = cut(target, max(16, w-fixed-1))
		}
	}
	parts := []part{{ts, dim}, mark, {where, cyan}, {proc, ""}, {action, bold}, {target, ""}, {sel, magenta}}
	return r.join(dst, parts)
}

// networkLine is a network document's operation and what it was about:
// connect 10.0.0.5:443/tcp, accept from [::1]:5000/tcp, bind 0.0.0.0:8080/udp.
func networkLine(d *doc) (action, target string) {
	action = d.CloudDefend.Operation
	if action == "" {
		action = map[string]string{"connection_attempted": "connect", "connection_accepted": "accept"}[d.Event.Action]
		if action == "" {
			action = d.Event.Action
		}
	}
	action = clean(action)
	switch action {
	case "accept":
		if s := d.Source.String(); s != "" {
			target = "from " + s
		}
	case "bind":
		target = d.Source.String()
	default:
		target = d.Destination.String()
	}
	if t := d.Network.Transport; t != "" {
		target += "/" + clean(t)
	}
	return action, target
}

func (r *Renderer) metricLine(dst []byte, ts string, d *doc) []byte {
	cd := d.CloudDefend
	var s string
	switch {
	case cd.Metrics != nil:
		m := cd.Metrics
		s = "events=" + itoa(m.Events) + " ring_drops=" + itoa(m.RingDrops) + " published=" + itoa(m.Published) +
			" acked=" + itoa(m.Acked) + " rejected=" + itoa(m.Rejected) + " dropped=" + itoa(m.Dropped) +
			" pending=" + itoa(m.Pending) + " processes=" + itoa(m.ProcessesTracked)
		return r.join(dst, []part{{ts, dim}, {"       ", ""}, {"metrics", cyan}, {s, ""}})
	case cd.BlockActionEnabled != nil:
		s = "block_action_enabled=" + strconv.FormatBool(*cd.BlockActionEnabled)
		return r.join(dst, []part{{ts, dim}, {"       ", ""}, {"heartbeat", cyan}, {s, ""}})
	}
	return r.join(dst, []part{{ts, dim}, {"       ", ""}, {clean(d.DataStream.Dataset), cyan}})
}

func (r *Renderer) join(dst []byte, parts []part) []byte {
	first := true
	for _, p := range parts {
		if p.s == "" {
			continue
		}
		if !first {
			dst = append(dst, ' ')
		}
		first = false
		if r.opt.Color && p.color != "" && p.s[0] != ' ' {
			dst = append(append(append(dst, p.color...), p.s...), reset...)
		} else {
			dst = append(dst, p.s...)
		}
	}
	return append(dst, '\n')
}

const hex = "0123456789abcdef"

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func runes(s string) int { return utf8.RuneCountInString(s) }

// cut keeps s to n characters, the last an ellipsis when it was longer.
func cut(s string, n int) string {
	if runes(s) <= n {
		return s
	}
	i := 0
	for k := range s {
		if i == n-1 {
			return s[:k] + "…"
		}
		i++
	}
	return s
}

// clean escapes what a terminal would act on: control characters (C0, DEL,
// C1) and invalid UTF-8.
func clean(s string) string {
	ok := true
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == utf8.RuneError {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && n <= 1:
			b = append(b, '\\', 'x', hex[s[i]>>4], hex[s[i]&15])
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		case c >= 0x80 && c < 0xa0:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}
