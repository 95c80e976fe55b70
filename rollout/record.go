// Package rollout is what a team needs before it switches blocking on: replay
// recorded activity through the policy evaluator (Replay), learn an allowlist
// policy from it (Learn), and read the recordings both work from (Reader).
//
// Recordings are NDJSON or Elasticsearch exports, detected per line: our ECS
// documents (what every output of `cloud-defend run` writes) and
// Elasticsearch hits (objects with _source, or a whole search response). Every line that cannot be used is reported with FILE:LINE and
// why; records that are not operations (exits, metrics) are counted.
package rollout

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/cloud-defend/cloud-defend/policy"
)

// Record is one operation reconstructed from a recording.
type Record struct {
	File string
	Line int    // 1-based; for hits of a whole search response, the hit's index
	Raw  []byte // the line (or the hit's _source) as recorded
	// Op is the operation as the evaluator sees it. When the recording does not
	// say which of several operations it was (see Candidates), Op.Op is the
	// first candidate.
	Op policy.Operation
	// Candidates are the operations the document may stand for, when it is
	// ambiguous: ECS file documents say "creation" for both createFile and
	// createExecutable, and "modification" for modifyFile and
	// modifyExecutable. Empty when Op.Op is certain.
	Candidates  []policy.Op
	ContainerID string
	// VolumeUnknown: the recording does not say whether the target is on a
	// volume (ECS documents do not carry it); Op assumes it is not.
	VolumeUnknown bool
	// Recorded is what the recording's own policy decided: the selectors that
	// matched (cloud_defend.matched_selectors, or the engine record's), and
	// whether the kernel refused the operation.
	RecordedSelectors []string
	RecordedBlocked   bool
}

// Problem is a line that could not be used.
type Problem struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason) }

// Reader collects the operations of one or more recordings, each kernel event
// once.
type Reader struct {
	Records  []Record
	Problems []Problem
	// Ignored counts records that are not operations, by what they are
	// (e.g. "engine exit", "ecs end", "metrics"), so nothing vanishes unsaid.
	Ignored map[string]int
	// Duplicates counts documents dropped as another copy of an event already
	// read (the alerts and process streams both carry an event that is logged
	// and alerted).
	Duplicates int

	seen map[string]bool
}

// maxLine bounds one NDJSON line; ECS documents are a few KiB.
const maxLine = 16 << 20

// Read adds the operations in r, named name in problems.
func (rd *Reader) Read(name string, r io.Reader) error {
	if rd.seen == nil {
		rd.seen, rd.Ignored = map[string]bool{}, map[string]int{}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	// A whole search response (or a JSON array of documents) is one JSON value
	// spread over many lines; NDJSON has one object per line. Peek to tell.
	head, _ := br.Peek(64 << 10)
	if whole, ok := wholeExport(head); ok {
		data, err := io.ReadAll(br)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return rd.readWhole(name, data, whole)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rd.add(name, line, bytes.Clone(b))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return nil
}

// wholeExport reports whether the input starts like one multi-line JSON value:
// an array, or an object whose first line is not a complete object.
func wholeExport(head []byte) (kind byte, ok bool) {
	t := bytes.TrimLeft(head, " \t\r\n")
	if len(t) == 0 {
		return 0, false
	}
	if t[0] == '[' {
		return '[', true
	}
	if t[0] != '{' {
		return 0, false
	}
	first, _, _ := bytes.Cut(t, []byte("\n"))
	if json.Valid(bytes.TrimSpace(first)) {
		return 0, false // NDJSON
	}
	return '{', true
}

func (rd *Reader) readWhole(name string, data []byte, kind byte) error {
	var hits []json.RawMessage
	if kind == '[' {
		if err := json.Unmarshal(data, &hits); err != nil {
			return fmt.Errorf("%s: not NDJSON and not a JSON array of documents: %v", name, err)
		}
	} else {
		var resp struct {
			Hits *struct {
				Hits []json.RawMessage `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(data, &resp); err != nil {
			return fmt.Errorf("%s: not NDJSON and not an Elasticsearch search response: %v", name, err)
		}
		if resp.Hits == nil {
			return fmt.Errorf("%s: a JSON object spanning lines without hits.hits: not an Elasticsearch search response", name)
		}
		hits = resp.Hits.Hits
	}
	for i, h := range hits {
		rd.add(name, i+1, []byte(h))
	}
	return nil
}

// add reads one document: an ECS document, a hit holding one, or an engine record.
func (rd *Reader) add(file string, line int, b []byte) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		rd.problem(file, line, "not a JSON object: "+err.Error())
		return
	}
	if src, ok := m["_source"]; ok {
		s, ok := src.(map[string]any)
		if !ok {
			rd.problem(file, line, "_source is not an object")
			return
		}
		m = s
		if raw, err := json.Marshal(s); err == nil {
			b = raw
		}
	}
	var rec Record
	var key, why string
	switch {
	case m["@timestamp"] != nil:
		rec, key, why = fromECS(m)
	default:
		rd.problem(file, line, "not an ECS document (no @timestamp)")
		return
	}
	if why != "" {
		if strings.HasPrefix(why, "ignored: ") {
			rd.Ignored[strings.TrimPrefix(why, "ignored: ")]++
			return
		}
		rd.problem(file, line, why)
		return
	}
	if rd.seen[key] {
		rd.Duplicates++
		return
	}
	rd.seen[key] = true
	rec.File, rec.Line, rec.Raw = file, line, b
	if sel := strs(m, "cloud_defend.matched_selectors"); sel != nil {
		rec.RecordedSelectors = sel
	} else {
		rec.RecordedSelectors = strs(m, "matched_selectors")
	}
	if v, ok := boolean(m, "cloud_defend.blocked"); ok {
		rec.RecordedBlocked = v
	} else {
		rec.RecordedBlocked, _ = boolean(m, "blocked")
	}
	rd.Records = append(rd.Records, rec)
}

func (rd *Reader) problem(file string, line int, why string) {
	rd.Problems = append(rd.Problems, Problem{file, line, why})
}

// get walks a dotted path through nested objects; ECS exports may also hold
// dotted keys ("process.executable": ...), which it accepts too.
func get(m map[string]any, p string) any {
	if v, ok := m[p]; ok {
		return v
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '.' {
			continue
		}
		if sub, ok := m[p[:i]].(map[string]any); ok {
			if v := get(sub, p[i+1:]); v != nil {
				return v
			}
		}
	}
	return nil
}

func str(m map[string]any, p string) string {
	switch v := get(m, p).(type) {
	case string:
		return v
	case []any: // a keyword field may be an array of one
		if len(v) > 0 {
			s, _ := v[0].(string)
			return s
		}
	case json.Number:
		return v.String()
	}
	return ""
}

func strs(m map[string]any, p string) []string {
	switch v := get(m, p).(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func boolean(m map[string]any, p string) (val, ok bool) {
	v, ok := get(m, p).(bool)
	return v, ok
}

// comm is a name as the kernel keeps it: at most 15 bytes.
func comm(s string) string {
	if len(s) > policy.MaxProcessNameBytes {
		return s[:policy.MaxProcessNameBytes]
	}
	return s
}

// fromECS reconstructs the operation an ECS document reports. key identifies
// the kernel event: an event that is both logged and alerted is encoded
// twice, with two event ids, but with the same kernel timestamp, process and
// target, so the key is made of those.
func fromECS(m map[string]any) (Record, string, string) {
	category, action := str(m, "event.category"), str(m, "event.action")
	if category == "" {
		if ds := str(m, "data_stream.dataset"); ds != "" {
			return Record{}, "", "ignored: " + ds
		}
		return Record{}, "", "ECS document without event.category"
	}
	rec := Record{ContainerID: str(m, "container.id")}
	op := &rec.Op
	op.ProcessExecutable = str(m, "process.executable")
	op.ProcessName = comm(str(m, "process.name"))
	// The kernel's flag is "the session has a controlling terminal": the
	// session leader's, when the document has it.
	if v, ok := boolean(m, "process.session_leader.interactive"); ok {
		op.SessionLeaderInteractive = v
	} else if v, ok := boolean(m, "process.entry_leader.interactive"); ok {
		op.SessionLeaderInteractive = v
	} else {
		op.SessionLeaderInteractive, _ = boolean(m, "process.interactive")
	}
	op.ExecutableLayer = str(m, "cloud_defend.executable_layer")
	setImage(op, str(m, "container.image.name"), str(m, "container.image.tag"))
	op.KubernetesNamespace = str(m, "orchestrator.namespace")
	op.KubernetesPodName = str(m, "orchestrator.resource.name")
	op.KubernetesClusterID = str(m, "orchestrator.cluster.id")
	op.KubernetesClusterName = str(m, "orchestrator.cluster.name")
	for _, l := range strs(m, "orchestrator.resource.label") {
		k, v, _ := strings.Cut(l, ":")
		if op.KubernetesPodLabels == nil {
			op.KubernetesPodLabels = map[string]string{}
		}
		op.KubernetesPodLabels[k] = v
	}
	switch category {
	case "process":
		switch action {
		case "exec":
			op.Op = policy.OpExec
			op.ExecutableIsMemfd = isMemfd(op.ProcessExecutable)
		case "fork":
			op.Op = policy.OpFork
		default:
			return Record{}, "", "ignored: ecs process " + action
		}
		if op.ProcessExecutable == "" && op.Op == policy.OpExec {
			return Record{}, "", "exec document without process.executable"
		}
	case "file":
		op.TargetPath = str(m, "file.path")
		if op.TargetPath == "" {
			return Record{}, "", "file document without file.path"
		}
		cands := fileOps(action, str(m, "event.type"), str(m, "cloud_defend.hook_point"))
		if cands == nil {
			return Record{}, "", fmt.Sprintf("file document with event.action %q and event.type %q: not a file operation a policy names", action, str(m, "event.type"))
		}
		op.Op = cands[0]
		if o, ok := policy.ParseOp(str(m, "cloud_defend.operation")); ok && slices.Contains(cands, o) {
			op.Op = o // the encoder names it exactly
		} else if len(cands) > 1 {
			rec.Candidates = cands
		}
		rec.VolumeUnknown = true
	case "network":
		if why := network(m, action, op); why != "" {
			return Record{}, "", why
		}
	default:
		return Record{}, "", "ignored: ecs " + category
	}
	ts := str(m, "@timestamp")
	key := "ecs|" + ts + "|" + str(m, "process.entity_id") + "|" + strconv.Itoa(int(op.Op.Type())) + "|" + action + "|" + op.TargetPath + "|" + op.ProcessExecutable
	if op.Op.Type() == policy.Network {
		key += "|" + op.Protocol + "|" + str(m, "source.ip") + "|" + str(m, "source.port") + "|" + str(m, "destination.ip") + "|" + str(m, "destination.port")
	}
	return rec, key, ""
}

// network fills a network operation from a network document: ours
// (cloud_defend.operation names it) or Elastic Defend's
// (logs-endpoint.events.network: connection_attempted, connection_accepted),
// whose other actions (disconnect_received, DNS lookups) are not operations a
// policy names. Source and destination are as the document has them (for an
// accept, the source is the peer, as in policy conditions); an end the
// document lacks is the zero address and port 0.
func network(m map[string]any, action string, op *policy.Operation) string {
	switch o, ok := policy.ParseOp(str(m, "cloud_defend.operation")); {
	case ok && o.Type() == policy.Network:
		op.Op = o
	case action == "connection_attempted":
		op.Op = policy.OpConnect
	case action == "connection_accepted":
		op.Op = policy.OpAccept
	case action == "bind":
		op.Op = policy.OpBind
	default:
		return "ignored: ecs network " + action
	}
	op.Protocol = strings.ToLower(str(m, "network.transport"))
	if !slices.Contains(policy.Protocols, op.Protocol) {
		return fmt.Sprintf("network document with network.transport %q: a policy names tcp and udp only", op.Protocol)
	}
	var why string
	if op.SourceAddress, op.SourcePort, why = endpoint(m, "source"); why != "" {
		return why
	}
	if op.DestinationAddress, op.DestinationPort, why = endpoint(m, "destination"); why != "" {
		return why
	}
	if !op.SourceAddress.IsValid() && !op.DestinationAddress.IsValid() {
		return "network document without source.ip or destination.ip"
	}
	return ""
}

// endpoint reads source.* or destination.*: the zero address and port 0
// when the document does not have the end.
func endpoint(m map[string]any, end string) (netip.Addr, uint16, string) {
	ip := str(m, end+".ip")
	if ip == "" {
		return netip.Addr{}, 0, ""
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}, 0, fmt.Sprintf("network document with %s.ip %q: not an IP address", end, ip)
	}
	var port uint16
	if p := str(m, end+".port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return netip.Addr{}, 0, fmt.Sprintf("network document with %s.port %q: not a port", end, p)
		}
		port = uint16(n)
	}
	return a.Unmap().WithZone(""), port, ""
}

// setImage fills the image conditions from container.image.name, which holds
// the repository ("docker.io/library/nginx"): containerImageFullName is the
// repository, containerImageName its last path segment, as D4C defines them.
func setImage(op *policy.Operation, name, tag string) {
	if name == "" {
		return
	}
	op.ContainerImageFullName = name
	op.ContainerImageName = path.Base(name)
	op.ContainerImageTag = tag
}

func isMemfd(exe string) bool {
	return strings.HasPrefix(exe, "/memfd:")
}

var (
	createOps = []policy.Op{policy.OpCreateFile, policy.OpCreateExecutable}
	modifyOps = []policy.Op{policy.OpModifyFile, policy.OpModifyExecutable}
	deleteOps = []policy.Op{policy.OpDeleteFile}
	anyFileOp = []policy.Op{policy.OpCreateFile, policy.OpCreateExecutable, policy.OpModifyFile, policy.OpModifyExecutable, policy.OpDeleteFile}
)

// fileOps maps what an ECS file document says to the operations it can stand
// for. The encoder writes event.type from the operation (creation for both
// creates, change for both modifies, deletion) and then replaces it with
// "denied" when blocked; event.action names the hook for renames, links and
// opens. A chmod that reports "creation" made a file executable: that is
// createExecutable and nothing else.
func fileOps(action, typ, hook string) []policy.Op {
	if typ == "denied" {
		switch action {
		case "creation", "link":
			if hook == "lsm__path_chmod" {
				return []policy.Op{policy.OpCreateExecutable}
			}
			return createOps
		case "deletion":
			return deleteOps
		case "modification", "open":
			return modifyOps
		case "rename":
			return anyFileOp
		}
		return nil
	}
	switch typ {
	case "creation":
		if hook == "lsm__path_chmod" {
			return []policy.Op{policy.OpCreateExecutable}
		}
		return createOps
	case "deletion":
		return deleteOps
	case "change":
		return modifyOps
	}
	return nil
}
