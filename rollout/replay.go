package rollout

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/cloud-defend/cloud-defend/policy"
)

// TopN is how many processes, images and paths a rule's report lists.
const TopN = 5

// Counts is how many operations a rule would log, alert on and block.
type Counts struct {
	Operations int `json:"operations"`
	Log        int `json:"log"`
	Alert      int `json:"alert"`
	Block      int `json:"block"`
	// Ambiguous of the Operations are documents that may stand for more than
	// one operation (see Record.Candidates) and whose readings the policy
	// decides differently; they are counted by the union of the readings'
	// actions, so a gate errs on the side of "would block".
	Ambiguous int `json:"ambiguous"`
}

// Top is one value and how many operations had it.
type Top struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Rule is one response or selector's share of the replay.
type Rule struct {
	Type string `json:"type"` // process, file or network
	// Name is the selector's name, or the response rendered as its rule.
	Name      string `json:"name"`
	Actions   string `json:"actions,omitempty"` // a response's actions
	Counts           // operations the selector matched / the response fired on
	Processes []Top  `json:"top_processes"`
	Images    []Top  `json:"top_images"`
	Paths     []Top  `json:"top_paths"`

	tops [3]map[string]int
}

// Blocked is one document that would be refused.
type Blocked struct {
	File      string          `json:"file"`
	Line      int             `json:"line"`
	Operation string          `json:"operation"`
	Path      string          `json:"path"`
	Process   string          `json:"process"`
	Image     string          `json:"image"`
	Selectors []string        `json:"matched_selectors"`
	Ambiguous bool            `json:"ambiguous"`
	Document  json.RawMessage `json:"document"`
}

// Report is what a policy would have done to a recording. Its JSON form is
// `cloud-defend policy test --format json`; fields are only ever added.
type Report struct {
	Policy     string         `json:"policy"`
	Operations map[string]int `json:"operations"` // by type
	Totals     Counts         `json:"totals"`
	Responses  []Rule         `json:"responses"`
	Selectors  []Rule         `json:"selectors"`
	Blocked    []Blocked      `json:"blocked"`
	Problems   []Problem      `json:"problems"`
	Ignored    map[string]int `json:"ignored"`
	Duplicates int            `json:"duplicates"`
	Notes      []string       `json:"notes"`
}

// WouldBlock reports whether any operation would have been refused.
func (r *Report) WouldBlock() bool { return r.Totals.Block > 0 }

// Decide evaluates a record: for an ambiguous document, every reading, with
// the union of their decisions, and whether they differ.
func Decide(p *policy.Policy, rec *Record) (d policy.Decision, ambiguous bool) {
	op := rec.Op
	if len(rec.Candidates) == 0 {
		return p.Evaluate(&op), false
	}
	for i, c := range rec.Candidates {
		op.Op = c
		x := p.Evaluate(&op)
		if i == 0 {
			d = x
			continue
		}
		if x.Actions != d.Actions || x.Matched != d.Matched {
			ambiguous = true
		}
		d.Matched |= x.Matched
		d.Fired |= x.Fired
		d.Actions |= x.Actions
	}
	return d, ambiguous
}

// Replay evaluates every record of rd with p, as the kernel would have.
func Replay(p *policy.Policy, rd *Reader) *Report {
	r := &Report{Policy: p.Name(), Operations: map[string]int{}, Problems: rd.Problems, Ignored: rd.Ignored,
		Duplicates: rd.Duplicates, Blocked: []Blocked{}, Notes: []string{}}
	if r.Problems == nil {
		r.Problems = []Problem{}
	}
	if r.Ignored == nil {
		r.Ignored = map[string]int{}
	}
	types := []policy.Type{policy.Process, policy.File, policy.Network}
	var resp, sels [3][]*Rule
	for _, t := range types {
		for _, x := range p.Responses(t) {
			resp[t] = append(resp[t], &Rule{Type: t.String(), Name: x.String(), Actions: x.Actions.String()})
		}
		for _, s := range p.Selectors(t) {
			sels[t] = append(sels[t], &Rule{Type: t.String(), Name: s.Name})
		}
	}
	responses := [3][]policy.Response{p.Responses(policy.Process), p.Responses(policy.File), p.Responses(policy.Network)}
	volumeSelectors := false
	for _, s := range p.Selectors(policy.File) {
		volumeSelectors = volumeSelectors || s.IgnoreVolumeMounts || s.IgnoreVolumeFiles
	}
	volumeUnknown := 0
	for i := range rd.Records {
		rec := &rd.Records[i]
		t := rec.Op.Op.Type()
		r.Operations[t.String()]++
		d, amb := Decide(p, rec)
		if rec.VolumeUnknown && volumeSelectors {
			volumeUnknown++
		}
		if d.Actions == 0 && d.Matched == 0 {
			continue
		}
		c := Counts{Operations: 1}
		c.add(d.Actions, amb)
		if d.Actions != 0 {
			r.Totals.add(d.Actions, amb)
			r.Totals.Operations++
		}
		for j, x := range responses[t] {
			if d.Fired&(1<<j) != 0 {
				rc := Counts{Operations: 1}
				rc.add(x.Actions, amb)
				resp[t][j].count(rc, rec)
			}
		}
		for j := range sels[t] {
			if d.Matched&(1<<j) != 0 {
				sels[t][j].count(c, rec)
			}
		}
		if d.Actions.Has(policy.ActionBlock) {
			r.Blocked = append(r.Blocked, Blocked{File: rec.File, Line: rec.Line, Operation: opName(rec), Path: target(rec),
				Process: rec.Op.ProcessExecutable, Image: image(rec), Selectors: p.MatchedSelectors(d), Ambiguous: amb,
				Document: json.RawMessage(rec.Raw)})
		}
	}
	for _, t := range types {
		for _, x := range resp[t] {
			x.finish()
			r.Responses = append(r.Responses, *x)
		}
		for _, x := range sels[t] {
			x.finish()
			r.Selectors = append(r.Selectors, *x)
		}
	}
	if r.Responses == nil {
		r.Responses, r.Selectors = []Rule{}, []Rule{}
	}
	if volumeUnknown > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d file operations come from ECS documents, which do not say whether the target is on a volume; they were evaluated as not on one, so ignoreVolumeMounts/ignoreVolumeFiles did not exclude them", volumeUnknown))
	}
	if r.Totals.Ambiguous > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d documents may stand for more than one operation (ECS says \"creation\" for createFile and createExecutable, \"modification\" for modifyFile and modifyExecutable) and the policy treats the readings differently; they are counted by the union of the readings", r.Totals.Ambiguous))
	}
	return r
}

func (c *Counts) add(a policy.Actions, ambiguous bool) {
	if a.Has(policy.ActionLog) {
		c.Log++
	}
	if a.Has(policy.ActionAlert) {
		c.Alert++
	}
	if a.Has(policy.ActionBlock) {
		c.Block++
	}
	if ambiguous {
		c.Ambiguous++
	}
}

func (x *Rule) count(c Counts, rec *Record) {
	x.Operations += c.Operations
	x.Log += c.Log
	x.Alert += c.Alert
	x.Block += c.Block
	x.Ambiguous += c.Ambiguous
	for i, v := range [3]string{processOf(rec), image(rec), target(rec)} {
		if x.tops[i] == nil {
			x.tops[i] = map[string]int{}
		}
		x.tops[i][v]++
	}
}

func (x *Rule) finish() {
	x.Processes, x.Images, x.Paths = top(x.tops[0]), top(x.tops[1]), top(x.tops[2])
}

func top(m map[string]int) []Top {
	out := make([]Top, 0, len(m))
	for v, n := range m {
		out = append(out, Top{v, n})
	}
	slices.SortFunc(out, func(a, b Top) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out[:min(len(out), TopN)]
}

func processOf(rec *Record) string {
	if rec.Op.ProcessExecutable != "" {
		return rec.Op.ProcessExecutable
	}
	if rec.Op.ProcessName != "" {
		return rec.Op.ProcessName
	}
	return "(unknown)"
}

func image(rec *Record) string {
	if rec.Op.ContainerImageFullName == "" {
		if rec.ContainerID != "" && !strings.HasPrefix(rec.ContainerID, "cgroup:") {
			return "(container " + rec.ContainerID[:min(12, len(rec.ContainerID))] + ", image unknown)"
		}
		return "(no image)"
	}
	if rec.Op.ContainerImageTag != "" {
		return rec.Op.ContainerImageFullName + ":" + rec.Op.ContainerImageTag
	}
	return rec.Op.ContainerImageFullName
}

func target(rec *Record) string {
	switch rec.Op.Op.Type() {
	case policy.File:
		return rec.Op.TargetPath
	case policy.Network:
		return networkTarget(&rec.Op)
	}
	return rec.Op.ProcessExecutable
}

// networkTarget is what a network operation was about, as the console shows
// it: 10.0.0.5:443/tcp for a connect, from [::1]:5000/tcp for an accept,
// 0.0.0.0:8080/udp for a bind.
func networkTarget(op *policy.Operation) string {
	a, port, prefix := op.DestinationAddress, op.DestinationPort, ""
	switch op.Op {
	case policy.OpAccept:
		a, port, prefix = op.SourceAddress, op.SourcePort, "from "
	case policy.OpBind:
		a, port = op.SourceAddress, op.SourcePort
	}
	s := "(no address)"
	if a.IsValid() {
		s = netip.AddrPortFrom(a, port).String()
	}
	return prefix + s + "/" + op.Protocol
}

func opName(rec *Record) string {
	if len(rec.Candidates) == 0 {
		return rec.Op.Op.String()
	}
	var names []string
	for _, c := range rec.Candidates {
		names = append(names, c.String())
	}
	return strings.Join(names, "|")
}

// WriteText prints the report as tables: totals, then each response and
// selector with its counts and top values. showBlocked adds the documents
// that would be blocked, as recorded.
func (r *Report) WriteText(w io.Writer, showBlocked bool) {
	if n := r.Operations["network"]; n > 0 {
		fmt.Fprintf(w, "policy %s against %d process, %d file and %d network operations", r.Policy, r.Operations["process"], r.Operations["file"], n)
	} else {
		fmt.Fprintf(w, "policy %s against %d process and %d file operations", r.Policy, r.Operations["process"], r.Operations["file"])
	}
	if r.Duplicates > 0 {
		fmt.Fprintf(w, " (%d duplicate documents of the same events skipped)", r.Duplicates)
	}
	fmt.Fprintln(w)
	if len(r.Ignored) > 0 {
		var parts []string
		for _, k := range sortedKeys(r.Ignored) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Ignored[k]))
		}
		fmt.Fprintf(w, "not operations: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "would log %d, alert %d, block %d\n", r.Totals.Log, r.Totals.Alert, r.Totals.Block)
	section := func(title string, rules []Rule) {
		fmt.Fprintf(w, "\n%s\n", title)
		fmt.Fprintf(w, "  %-8s %8s %8s %8s %8s  %s\n", "TYPE", "MATCHED", "LOG", "ALERT", "BLOCK", "RULE")
		for _, x := range rules {
			fmt.Fprintf(w, "  %-8s %8d %8d %8d %8d  %s\n", x.Type, x.Operations, x.Log, x.Alert, x.Block, x.Name)
			if x.Ambiguous > 0 {
				fmt.Fprintf(w, "  %44s  (%d ambiguous)\n", "", x.Ambiguous)
			}
			for _, tp := range []struct {
				what string
				tops []Top
			}{{"processes", x.Processes}, {"images", x.Images}, {"paths", x.Paths}} {
				if len(tp.tops) == 0 {
					continue
				}
				var parts []string
				for _, t := range tp.tops {
					parts = append(parts, fmt.Sprintf("%s (%d)", t.Value, t.Count))
				}
				fmt.Fprintf(w, "  %44s  %s: %s\n", "", tp.what, strings.Join(parts, ", "))
			}
		}
	}
	section("responses", r.Responses)
	section("selectors", r.Selectors)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
	if showBlocked && len(r.Blocked) > 0 {
		fmt.Fprintf(w, "\nwould block %d:\n", len(r.Blocked))
		for _, b := range r.Blocked {
			amb := ""
			if b.Ambiguous {
				amb = " (ambiguous)"
			}
			fmt.Fprintf(w, "%s:%d: %s %s by %s in %s, selectors %s%s\n%s\n", b.File, b.Line, b.Operation, b.Path, b.Process, b.Image,
				strings.Join(b.Selectors, ", "), amb, b.Document)
		}
	}
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
