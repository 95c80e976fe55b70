// Package ecs turns kernel events into the ECS documents Elastic's consumers read
// (detection rules, Session View, the integration's mappings): which data stream
// a document goes to, and its fields. Booleans that rules test are always present,
// false included; timestamps are ISO-8601 with nanoseconds.
package ecs

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Version is the ECS version of our documents.
const Version = "8.11.0"

// Agent identifies the agent writing the documents.
type Agent struct {
	ID      string // the Elastic Agent id (or a node-stable id standalone)
	Version string
}

// Meta is what the input in force adds to every document.
type Meta struct {
	Namespace       string // data stream namespace
	PackagePolicyID string
	Revision        uint64
}

// Doc is one encoded document and where it goes.
type Doc struct {
	Stream string // data stream, e.g. logs-cloud_defend.alerts-default
	ID     string // event.id
	Body   []byte
}

// Encoder encodes events. One goroutine (the event loop) may use it.
type Encoder struct {
	agent Agent
	// boot converts the kernel's boot-relative times to wall clock.
	boot time.Time
	// names resolves a decision's selector names.
	names func(*event.Event) ([]string, error)

	common  atomic.Pointer[[]byte] // "agent", "ecs", "host" and "cloud", encoded once
	host    host.Host
	seq     atomic.Uint64
	prefix  string
	buf     jw
	streams map[streamKey]string
	// lastStream is the stream of the last document, looked at before streams.
	lastStream lastStream
	// records holds the encoding of the process records written as a
	// relative (parent, leaders): the same few leaders are in every
	// document of a session or container. Direct-mapped by pid, each slot
	// reusing its buffer: no allocation, and a collision only costs an
	// encoding.
	records [numRecords]record
}

// numRecords is how many relatives' encodings are kept (a power of two).
const numRecords = 512

// record is a relative's encoding with the fields it shows: it is used again
// only while they are as they were. It holds the strings and args it
// compares, so their memory cannot be reused for others under the same
// addresses.
type record struct {
	pid, euid, egid, uid, gid uint32
	interactive               bool
	start                     time.Duration
	entityID, exe, name, cwd  string
	args                      []string
	b                         []byte // empty: the slot is free
}

// matches reports whether p encodes as the record did: pointer-equal strings
// compare in constant time, and args, shared and never modified, are the
// same slice.
func (r *record) matches(p *proctree.Process) bool {
	return len(r.b) > 0 && r.pid == p.PID && r.start == p.Start && r.entityID == p.EntityID && r.exe == p.Executable &&
		r.name == p.Name && r.cwd == p.WorkingDirectory && r.interactive == p.Interactive &&
		r.euid == p.EUID && r.egid == p.EGID && r.uid == p.UID && r.gid == p.GID &&
		len(r.args) == len(p.Args) && unsafe.SliceData(r.args) == unsafe.SliceData(p.Args)
}

type streamKey struct{ dataset, ns string }

type lastStream struct{ dataset, ns, stream string }

// NewEncoder returns an encoder; boot is when CLOCK_BOOTTIME was zero. The
// host and cloud are encoded once here: they do not change while we run.
func NewEncoder(agent Agent, host host.Host, cloud *enrich.Cloud, boot time.Time, names func(*event.Event) ([]string, error)) *Encoder {
	var r [8]byte
	rand.Read(r[:])
	e := &Encoder{agent: agent, boot: boot, names: names, prefix: base64.RawURLEncoding.EncodeToString(r[:]),
		streams: map[streamKey]string{}, host: host}
	e.SetCloud(cloud)
	return e
}

// SetCloud sets cloud.* for the documents that follow (the metadata service
// answers after startup). Safe to call while documents are encoded.
func (e *Encoder) SetCloud(cloud *enrich.Cloud) {
	var w jw
	w.b = append(w.b, '{')
	w.obj("ecs")
	w.str("version", Version)
	w.close()
	w.obj("agent")
	w.str("id", e.agent.ID)
	w.str("type", "cloud-defend")
	w.str("version", e.agent.Version)
	w.close()
	writeHost(&w, e.host)
	if cloud != nil {
		writeCloud(&w, cloud)
	}
	common := w.b[1:]
	e.common.Store(&common)
}

// Encode returns the document an event makes: decisions (process, file and
// network responses) become one document on the stream their actions choose; telemetry
// is not shipped on its own. ok is false when the event makes no document.
// ctx may be nil.
func (e *Encoder) Encode(ev *event.Event, ctx *enrich.Context, m Meta) (Doc, bool, error) {
	d, ok, err := e.first(ev, ctx, m)
	if ok {
		d.Body = slices.Clone(d.Body)
	}
	return d, ok, err
}

// first encodes the document Encode returns into the encoder's buffer.
func (e *Encoder) first(ev *event.Event, ctx *enrich.Context, m Meta) (Doc, bool, error) {
	switch ev.Kind {
	case event.ProcessDecision, event.FileDecision, event.NetworkDecision:
	case event.Exit:
		// The end of a process whose fork or exec was logged (enrich gives it
		// the logging decision's selectors and ActionLog): a log document
		// only, never an alert.
		if !ev.Actions.Has(policy.ActionLog) {
			return Doc{}, false, nil
		}
		return e.encode(ev, ctx, m, false)
	default:
		return Doc{}, false, nil
	}
	if ev.Actions&(policy.ActionLog|policy.ActionAlert|policy.ActionBlock) == 0 {
		return Doc{}, false, nil
	}
	return e.encode(ev, ctx, m, ev.Actions.Has(policy.ActionAlert) || ev.Actions.Has(policy.ActionBlock))
}

// EncodeAll passes every document an event makes to emit: the one Encode
// returns and, when a response logs what another alerts on, the log
// document too — rules that read the process and file streams must see the
// event whether or not it also raised an alert. A document's Body is the
// encoder's buffer, valid until emit returns: emit copies what it keeps.
func (e *Encoder) EncodeAll(ev *event.Event, ctx *enrich.Context, m Meta, emit func(Doc)) error {
	d, ok, err := e.first(ev, ctx, m)
	if err != nil || !ok {
		return err
	}
	emit(d)
	if ev.Kind != event.Exit && ev.Actions.Has(policy.ActionLog) && (ev.Actions.Has(policy.ActionAlert) || ev.Actions.Has(policy.ActionBlock)) {
		d, _, err = e.encode(ev, ctx, m, false)
		if err != nil {
			return err
		}
		emit(d)
	}
	return nil
}

func (e *Encoder) encode(ev *event.Event, ctx *enrich.Context, m Meta, alert bool) (Doc, bool, error) {
	if ctx == nil {
		ctx = &enrich.Context{}
	}
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	}
	category, dataset := "process", "cloud_defend.process"
	switch ev.Kind {
	case event.FileDecision:
		category, dataset = "file", "cloud_defend.file"
	case event.NetworkDecision:
		category, dataset = "network", "cloud_defend.network"
	}
	kind := "event"
	if alert {
		kind, dataset = "alert", "cloud_defend.alerts"
	}
	names, err := e.names(ev)
	if err != nil || names == nil {
		names = []string{}
	}
	action, typ := actionOf(ev)
	now := time.Now()

	w := &e.buf
	w.b = w.b[:0]
	idStart, idEnd := e.writeHead(w, e.boot.Add(ev.Time), "logs", dataset, ns)
	w.lit("kind", kind)
	w.arr("category")
	w.litElem(category)
	w.end()
	w.arr("type")
	w.litElem(typ)
	w.end()
	w.lit("action", action)
	w.lit("module", "cloud_defend")
	w.lit("dataset", dataset)
	w.key("created")
	t0 := len(w.b)
	w.b = append(appendTime(append(w.b, '"'), now), '"')
	t1 := len(w.b)
	// Set here too for writes that bypass the ingest pipeline; the pipeline
	// overwrites it with the time Elasticsearch took the document. The same
	// time: its text is copied, not formatted again.
	w.key("ingested")
	w.b = append(w.b, w.b[t0:t1]...)
	w.lit("outcome", outcome(ev))
	w.close()

	e.writeProcess(w, ev, ctx.Process)
	w.obj("user")
	w.id("id", ev.Process.EUID)
	w.close()
	w.obj("group")
	w.id("id", ev.Process.EGID)
	w.close()
	if c := ctx.Container; c != nil && c.ID != "" {
		writeContainer(w, c)
	}
	if p := ctx.Pod; p != nil {
		writePod(w, p)
	}
	if ev.Kind == event.FileDecision {
		w.obj("file")
		w.str("path", ev.Path)
		w.str("name", path.Base(ev.Path))
		w.strIf("extension", ext(ev.Path))
		w.close()
	}
	if ev.Kind == event.NetworkDecision {
		writeNetwork(w, ev)
	}
	w.obj("cloud_defend")
	w.strs("matched_selectors", names)
	if ev.Kind.Decision() {
		// The policy's own name of the operation: event.action and event.type
		// cannot tell createFile from createExecutable, nor modifyFile from
		// modifyExecutable.
		op := ev.Op
		if ev.Kind == event.NetworkDecision {
			op = networkOp(ev)
		}
		w.lit("operation", op.String())
	}
	w.str("package_policy_id", m.PackagePolicyID)
	w.uint("package_policy_revision", m.Revision)
	w.arr("hook_point")
	w.litElem(hookPoint(ev))
	w.end()
	w.bool("blocked", ev.Blocked)
	w.bool("detected_in_user_space", ev.UserSpace)
	if v := ctx.Process; v != nil && v.Process.ArgsTruncated && v.Process.Args != nil {
		// process.args holds argv's beginning only: say so, never silently.
		w.bool("args_truncated", true)
	}
	if v := ctx.Process; v != nil && v.Process.PathTruncated && (v.Process.Executable != "" || v.Process.WorkingDirectory != "") {
		// process.executable or process.working_directory holds the path's
		// beginning only.
		w.bool("path_truncated", true)
	}
	if ev.Layer != event.LayerNone {
		w.lit("executable_layer", ev.Layer.String())
	}
	w.close()
	if kind == "alert" {
		w.key("message")
		if ev.Kind == event.NetworkDecision {
			w.b = appendNetworkMessage(w.b, ev, names)
		} else {
			w.b = appendString(w.b, message(ev, names))
		}
	}
	w.close()

	return Doc{Stream: e.stream(dataset, ns), ID: string(w.b[idStart:idEnd]), Body: w.b}, true, nil
}

func (e *Encoder) stream(dataset, ns string) string {
	// The last one first: a node's documents go to few streams, and its
	// strings are mostly the very same, which compare without a hash.
	if l := &e.lastStream; l.dataset == dataset && l.ns == ns && l.stream != "" {
		return l.stream
	}
	k := streamKey{dataset, ns}
	s, ok := e.streams[k]
	if !ok {
		if len(e.streams) > 64 {
			clear(e.streams)
		}
		s = "logs-" + dataset + "-" + ns
		e.streams[k] = s
	}
	e.lastStream = lastStream{dataset, ns, s}
	return s
}

// appendEventID appends an id unique across restarts and nodes: a random
// prefix per encoder and a sequence number.
func (e *Encoder) appendEventID(b []byte) []byte {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], e.seq.Add(1))
	b = append(b, e.prefix...)
	return base64.RawURLEncoding.AppendEncode(b, n[:])
}

// writeProcess writes process.*: from the process table when it knows the
// process, else what the event says. An exec decision is made before the exec
// completes, so its executable is the event's, not the table's.
func (e *Encoder) writeProcess(w *jw, ev *event.Event, v *proctree.View) {
	w.obj("process")
	var p proctree.Process
	if v != nil {
		p = v.Process
	} else {
		pp := &ev.Process
		p = proctree.Process{PID: pp.PID, PPID: pp.PPID, Start: pp.Start, Name: pp.Comm,
			UID: pp.UID, EUID: pp.EUID, GID: pp.GID, EGID: pp.EGID,
			TTYMajor: pp.TTYMajor, TTYMinor: pp.TTYMinor, Interactive: pp.TTYMajor != 0,
			EntityID: proctree.EntityID(e.agent.ID, pp.PID, pp.Start)}
	}
	if ev.Kind == event.Exit && !p.Exited {
		// The table did not have its end (or the process): the event says it.
		p.Exited, p.End, p.ExitKnown, p.Exit = true, ev.Time, true, proctree.DecodeWaitStatus(ev.ExitCode)
	}
	if ev.Kind == event.ProcessDecision && ev.Path != "" && p.Executable != ev.Path {
		// The table has not seen this exec (blocked, or not yet applied): its
		// image and args are those before it.
		p.Previous = nil
		p.Executable, p.Name, p.Args = ev.Path, path.Base(ev.Path), nil
	}
	e.writeRecord(w, &p, true)
	if v != nil {
		if v.Parent != nil {
			w.obj("parent")
			e.writeRelative(w, v.Parent)
			w.close()
		} else {
			w.obj("parent")
			w.uint("pid", uint64(p.PPID))
			w.close()
		}
		e.writeLeader(w, "group_leader", v.GroupLeader)
		e.writeLeader(w, "session_leader", v.SessionLeader)
		e.writeLeader(w, "entry_leader", v.EntryLeader)
	} else {
		w.obj("parent")
		w.uint("pid", uint64(p.PPID))
		w.close()
	}
	w.close()
}

func (e *Encoder) writeLeader(w *jw, k string, l *proctree.Leader) {
	if l == nil {
		return
	}
	w.obj(k)
	e.writeRelative(w, &l.Process)
	w.bool("same_as_process", l.SameAsProcess)
	if l.EntryMetaType != "" && k == "entry_leader" {
		w.obj("entry_meta")
		w.str("type", l.EntryMetaType)
		w.close()
	}
	w.close()
}

// writeRelative writes a relative's record, just after its object opened:
// from its last encoding when it has not changed since.
func (e *Encoder) writeRelative(w *jw, p *proctree.Process) {
	r := &e.records[p.PID%numRecords]
	if r.matches(p) {
		w.b = append(w.b, r.b...)
		return
	}
	start := len(w.b)
	e.writeRecord(w, p, false)
	r.pid, r.start, r.entityID, r.exe, r.name, r.cwd, r.args = p.PID, p.Start, p.EntityID, p.Executable, p.Name, p.WorkingDirectory, p.Args
	r.interactive, r.euid, r.egid, r.uid, r.gid = p.Interactive, p.EUID, p.EGID, p.UID, p.GID
	r.b = append(r.b[:0], w.b[start:]...)
}

// writeRecord writes the fields of one process record; the event's own
// process also gets command_line, previous, tty, end and exit code.
func (e *Encoder) writeRecord(w *jw, p *proctree.Process, self bool) {
	w.uint("pid", uint64(p.PID))
	w.str("entity_id", p.EntityID)
	w.strIf("executable", p.Executable)
	w.strIf("name", p.Name)
	if p.Args != nil {
		w.strs("args", p.Args)
		if self {
			// The true count, also when argv was cut (cloud_defend.args_truncated).
			w.uint("args_count", uint64(max(len(p.Args), p.ArgsCount)))
			w.key("command_line")
			w.b = appendJoined(w.b, p.Args)
		}
	}
	w.strIf("working_directory", p.WorkingDirectory)
	if p.Start != 0 {
		w.time("start", e.boot.Add(p.Start))
	}
	w.bool("interactive", p.Interactive)
	w.obj("user")
	w.id("id", p.EUID)
	w.close()
	w.obj("group")
	w.id("id", p.EGID)
	w.close()
	w.obj("real_user")
	w.id("id", p.UID)
	w.close()
	w.obj("real_group")
	w.id("id", p.GID)
	w.close()
	if !self {
		return
	}
	if p.Interactive {
		w.obj("tty")
		w.obj("char_device")
		w.uint("major", uint64(p.TTYMajor))
		w.uint("minor", uint64(p.TTYMinor))
		w.close()
		w.close()
	}
	if len(p.Previous) > 0 {
		w.arr("previous")
		for i := range p.Previous {
			w.open()
			w.strIf("executable", p.Previous[i].Executable)
			w.strs("args", p.Previous[i].Args)
			w.close()
		}
		w.end()
	}
	if p.Exited {
		w.time("end", e.boot.Add(p.End))
		if p.ExitKnown {
			w.int("exit_code", int64(p.Exit.Code))
		}
	}
}

// appendJoined appends args joined by spaces as one JSON string.
func appendJoined(b []byte, args []string) []byte {
	b = append(b, '"')
	for i, a := range args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendEscaped(b, a)
	}
	return append(b, '"')
}

func writeHost(w *jw, h host.Host) {
	w.obj("host")
	w.str("hostname", h.Hostname)
	w.str("name", h.Name)
	w.strIf("id", h.ID)
	w.str("architecture", h.Architecture)
	w.obj("boot")
	w.str("id", h.BootID)
	w.close()
	w.uint("pid_ns_ino", uint64(h.PIDNamespace))
	w.strs("ip", nonNil(h.IPs))
	w.strs("mac", nonNil(h.MACs))
	w.obj("os")
	w.str("type", "linux")
	w.str("family", h.OS.Family)
	w.str("full", h.OS.Full)
	w.str("kernel", h.OS.Kernel)
	w.str("name", h.OS.Name)
	w.str("platform", h.OS.Platform)
	w.str("version", h.OS.Version)
	w.close()
	w.close()
}

func writeCloud(w *jw, c *enrich.Cloud) {
	w.obj("cloud")
	w.strIf("provider", c.Provider)
	w.strIf("region", c.Region)
	w.strIf("availability_zone", c.AvailabilityZone)
	if c.AccountID != "" || c.AccountName != "" {
		w.obj("account")
		w.strIf("id", c.AccountID)
		w.strIf("name", c.AccountName)
		w.close()
	}
	if c.ProjectID != "" || c.ProjectName != "" {
		w.obj("project")
		w.strIf("id", c.ProjectID)
		w.strIf("name", c.ProjectName)
		w.close()
	}
	if c.InstanceID != "" || c.InstanceName != "" {
		w.obj("instance")
		w.strIf("id", c.InstanceID)
		w.strIf("name", c.InstanceName)
		w.close()
	}
	w.close()
}

func writeContainer(w *jw, c *enrich.Container) {
	w.obj("container")
	w.str("id", c.ID)
	w.strIf("runtime", c.Runtime)
	if c.ImageName != "" {
		w.obj("image")
		w.str("name", c.ImageName)
		w.strIf("tag", c.ImageTag)
		w.close()
	}
	if c.Privileged != nil {
		w.obj("security_context")
		w.bool("privileged", *c.Privileged)
		w.close()
	}
	w.close()
}

func writePod(w *jw, p *enrich.Pod) {
	w.obj("orchestrator")
	w.str("type", "kubernetes")
	w.strIf("namespace", p.Namespace)
	if p.ClusterID != "" || p.ClusterName != "" {
		w.obj("cluster")
		w.strIf("id", p.ClusterID)
		w.strIf("name", p.ClusterName)
		w.close()
	}
	w.obj("resource")
	w.str("type", "pod")
	w.strIf("name", p.Name)
	if p.IP != "" {
		w.strs("ip", []string{p.IP})
	}
	if p.ParentType != "" {
		w.obj("parent")
		w.str("type", p.ParentType)
		w.close()
	}
	w.strs("label", nonNil(p.Labels))
	w.strs("annotation", nonNil(p.Annotations))
	w.close()
	w.close()
}

func actionOf(ev *event.Event) (action, typ string) {
	if ev.Kind == event.Exit {
		return "end", "end"
	}
	if ev.Kind == event.NetworkDecision {
		action, typ = networkAction(ev)
	} else if ev.Kind == event.ProcessDecision {
		action, typ = "exec", "start"
		if ev.Op == policy.OpFork {
			action = "fork"
		}
	} else {
		switch ev.Op {
		case policy.OpCreateFile, policy.OpCreateExecutable:
			action, typ = "creation", "creation"
		case policy.OpDeleteFile:
			action, typ = "deletion", "deletion"
		default:
			action, typ = "modification", "change"
		}
		switch ev.Hook.String() {
		case "lsm__path_rename", "tracepoint__sys_exit_renameat2":
			action = "rename"
		case "tracepoint__sys_exit_openat":
			// Without BPF LSM, one hook sees both: an open that created the
			// file is a creation (path_mknod's), the others opens (file_open's).
			if action == "modification" {
				action = "open"
			}
		case "lsm__path_link":
			action = "link"
		case "lsm__file_open":
			action = "open"
		}
	}
	if ev.Blocked {
		typ = "denied"
	}
	return action, typ
}

func outcome(ev *event.Event) string {
	if ev.Blocked {
		return "failure"
	}
	return "success"
}

func hookPoint(ev *event.Event) string {
	if ev.Kind == event.FileDecision || ev.Hook != 0 {
		return ev.Hook.String() // a file hook, or an executable mapping judged as an exec
	}
	if ev.Kind == event.Exit {
		return "tracepoint__sched_process_exit"
	}
	if ev.Kind == event.NetworkDecision {
		return networkHook(ev).String() // the kernel always says where; this is a fallback
	}
	if ev.UserSpace {
		if ev.Op == policy.OpFork {
			return "tracepoint__sched_process_fork"
		}
		return "tracepoint__sched_process_exec"
	}
	if ev.Op == policy.OpFork {
		return "lsm__task_alloc"
	}
	return "lsm__bprm_check_security"
}

func message(ev *event.Event, names []string) string {
	verb := "alert"
	if ev.Blocked {
		verb = "blocked"
	}
	what := ev.Op.String()
	return fmt.Sprintf("cloud-defend %s: %s %s by %s (pid %d), selectors %s", verb, what, ev.Path, ev.Process.Comm, ev.Process.PID, strings.Join(names, ", "))
}

func ext(p string) string {
	e := path.Ext(p)
	if len(e) > 1 {
		return e[1:]
	}
	return ""
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Counters are the agent's own numbers, for the metrics stream.
type Counters struct {
	Events           uint64 // kernel events read
	RingDrops        uint64 // events the kernel could not queue (ring full)
	Published        int64  // documents handed to the output
	Acked            int64  // documents Elasticsearch has
	Rejected         int64  // documents Elasticsearch refused for good
	Dropped          int64  // documents lost to the spool's size cap
	Pending          int64  // documents waiting to be sent
	SpoolBytes       int64
	ProcessesTracked int
	RSSBytes         uint64
}

// Heartbeat is the document on metrics-cloud_defend.heartbeat: the agent is
// alive, and whether it can block now.
func (e *Encoder) Heartbeat(m Meta, blockEnabled bool, now time.Time) Doc {
	w, d := e.metricStart(m, "cloud_defend.heartbeat", now)
	w.obj("cloud_defend")
	w.bool("block_action_enabled", blockEnabled)
	w.str("package_policy_id", m.PackagePolicyID)
	w.uint("package_policy_revision", m.Revision)
	w.close()
	return metricEnd(w, d)
}

// Metrics is the document on metrics-cloud_defend.metrics.
func (e *Encoder) Metrics(m Meta, c Counters, now time.Time) Doc {
	w, d := e.metricStart(m, "cloud_defend.metrics", now)
	w.obj("cloud_defend")
	w.str("package_policy_id", m.PackagePolicyID)
	w.uint("package_policy_revision", m.Revision)
	w.obj("metrics")
	w.uint("events", c.Events)
	w.uint("ring_drops", c.RingDrops)
	w.int("docs_published", c.Published)
	w.int("docs_acked", c.Acked)
	w.int("docs_rejected", c.Rejected)
	w.int("docs_dropped", c.Dropped)
	w.int("queue_pending", c.Pending)
	w.int("spool_bytes", c.SpoolBytes)
	w.int("processes_tracked", int64(c.ProcessesTracked))
	w.uint("memory_rss_bytes", c.RSSBytes)
	w.close()
	w.close()
	return metricEnd(w, d)
}

// writeHead opens a document with what every one starts with: @timestamp,
// the constant agent/ecs/host/cloud part, data_stream.*, and event.id, whose
// position it returns; the event object is left open.
func (e *Encoder) writeHead(w *jw, ts time.Time, typ, dataset, ns string) (idStart, idEnd int) {
	w.b = append(w.b, '{')
	w.time("@timestamp", ts)
	w.b = append(w.b, ',')
	w.b = append(w.b, *e.common.Load()...)
	w.obj("data_stream")
	w.lit("type", typ)
	w.lit("dataset", dataset)
	w.str("namespace", ns)
	w.close()
	w.obj("event")
	w.key("id")
	idStart = len(w.b) + 1
	w.b = e.appendEventID(append(w.b, '"'))
	idEnd = len(w.b)
	w.b = append(w.b, '"')
	return idStart, idEnd
}

// metricStart writes a metrics document's head and returns it with the Doc
// it becomes (stream and id set; metricEnd adds the body).
func (e *Encoder) metricStart(m Meta, dataset string, now time.Time) (*jw, Doc) {
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	}
	w := &jw{b: make([]byte, 0, 1024)}
	idStart, idEnd := e.writeHead(w, now, "metrics", dataset, ns)
	d := Doc{Stream: "metrics-" + dataset + "-" + ns, ID: string(w.b[idStart:idEnd])}
	w.str("kind", "metric")
	w.str("module", "cloud_defend")
	w.str("dataset", dataset)
	w.time("created", now)
	w.time("ingested", now)
	w.close()
	return w, d
}

func metricEnd(w *jw, d Doc) Doc {
	w.close()
	d.Body = w.b
	return d
}
