// Package ecs turns kernel events into the ECS documents Elastic's consumers read
// (detection rules, Session View, the integration's mappings): which data stream
// a document goes to, and its fields. Booleans that rules test are always present,
// false included; timestamps are ISO-8601 with nanoseconds.
package ecs

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Version is the ECS version of our documents.
const Version = "8.11.0"

// Agent identifies the agent writing the documents.
type Agent struct {
	ID      string // the Elastic Agent id (or a node-stable id standalone)
	Version string
}

// Host is the node, as host.*.
type Host struct {
	Hostname, Name, ID, Architecture, BootID string
	PIDNamespace                             uint32
	IPs, MACs                                []string
	OS                                       OS
}

// OS is host.os.*.
type OS struct {
	Family, Full, Kernel, Name, Platform, Version string
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

// Encoder encodes events. Safe for one goroutine (the event loop).
type Encoder struct {
	Agent Agent
	Host  Host
	// BootTime converts the kernel's boot-relative times to wall clock.
	BootTime time.Time
	// Names resolves a decision's selector names.
	Names func(*ebpf.Event) ([]string, error)

	seq    atomic.Uint64
	prefix string
}

// NewEncoder returns an encoder; bootTime is when CLOCK_BOOTTIME was zero.
func NewEncoder(agent Agent, host Host, bootTime time.Time, names func(*ebpf.Event) ([]string, error)) *Encoder {
	var r [8]byte
	rand.Read(r[:])
	return &Encoder{Agent: agent, Host: host, BootTime: bootTime, Names: names, prefix: base64.RawURLEncoding.EncodeToString(r[:])}
}

// EntityID is Elastic's process identity: base64 of agent-id, pid and start
// time, the same in every event of the process.
func EntityID(agentID string, pid uint32, start time.Duration) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%s-%d-%d", agentID, pid, start.Nanoseconds()))
}

// Encode returns the documents an event makes: decisions (process and file
// responses) become one document on the stream their actions choose; telemetry
// is not shipped on its own. ok is false when the event makes no document.
func (e *Encoder) Encode(ev *ebpf.Event, m Meta) (Doc, bool, error) {
	if ev.Kind != ebpf.EventDecision && ev.Kind != ebpf.EventFile {
		return Doc{}, false, nil
	}
	if ev.Actions&(policy.ActionLog|policy.ActionAlert|policy.ActionBlock) == 0 {
		return Doc{}, false, nil
	}
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	}
	category, dataset := "process", "cloud_defend.process"
	if ev.Kind == ebpf.EventFile {
		category, dataset = "file", "cloud_defend.file"
	}
	kind := "event"
	if ev.Actions.Has(policy.ActionAlert) || ev.Actions.Has(policy.ActionBlock) {
		kind, dataset = "alert", "cloud_defend.alerts"
	}
	id := e.eventID()
	names, err := e.Names(ev)
	if err != nil {
		names = []string{}
	}
	ts := e.BootTime.Add(ev.Time)
	now := time.Now().UTC()
	action, typ := actionOf(ev)
	doc := map[string]any{
		"@timestamp":  stamp(ts),
		"ecs":         map[string]any{"version": Version},
		"agent":       map[string]any{"id": e.Agent.ID, "type": "cloud-defend", "version": e.Agent.Version},
		"data_stream": map[string]any{"type": "logs", "dataset": dataset, "namespace": ns},
		"event": map[string]any{
			"id": id, "kind": kind, "category": []string{category}, "type": []string{typ}, "action": action,
			"module": "cloud_defend", "dataset": dataset, "created": stamp(now), "ingested": stamp(now),
			"outcome": outcome(ev),
		},
		"host":    e.hostDoc(),
		"process": processDoc(e.Agent.ID, ev, e.BootTime),
		"user":    map[string]any{"id": fmt.Sprint(ev.Process.EUID)},
		"group":   map[string]any{"id": fmt.Sprint(ev.Process.EGID)},
		"cloud_defend": map[string]any{
			"matched_selectors": names, "package_policy_id": m.PackagePolicyID,
			"package_policy_revision": m.Revision, "hook_point": []string{hookPoint(ev)},
			"blocked": ev.Blocked, "detected_in_user_space": ev.UserSpace,
		},
	}
	if ev.Kind == ebpf.EventFile {
		doc["file"] = map[string]any{"path": ev.Path, "name": path.Base(ev.Path), "extension": ext(ev.Path)}
	}
	if ev.Layer != ebpf.LayerNone {
		doc["cloud_defend"].(map[string]any)["executable_layer"] = ev.Layer.String()
	}
	if kind == "alert" {
		doc["message"] = message(ev, names)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return Doc{}, false, err
	}
	return Doc{Stream: "logs-" + dataset + "-" + ns, ID: id, Body: body}, true, nil
}

// eventID is unique across restarts and nodes: a random prefix per encoder and a
// sequence number.
func (e *Encoder) eventID() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e.seq.Add(1))
	return e.prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func (e *Encoder) hostDoc() map[string]any {
	h := e.Host
	return map[string]any{
		"hostname": h.Hostname, "name": h.Name, "id": h.ID, "architecture": h.Architecture,
		"boot": map[string]any{"id": h.BootID}, "pid_ns_ino": h.PIDNamespace, "ip": nonNil(h.IPs), "mac": nonNil(h.MACs),
		"os": map[string]any{"type": "linux", "family": h.OS.Family, "full": h.OS.Full, "kernel": h.OS.Kernel,
			"name": h.OS.Name, "platform": h.OS.Platform, "version": h.OS.Version},
	}
}

func processDoc(agentID string, ev *ebpf.Event, boot time.Time) map[string]any {
	p := ev.Process
	exe := ev.Path
	if ev.Kind == ebpf.EventFile {
		exe = "" // the acting process's executable comes with the process table
	}
	doc := map[string]any{
		"pid": p.PID, "entity_id": EntityID(agentID, p.PID, p.Start), "name": p.Comm,
		"start": stamp(boot.Add(p.Start)), "interactive": p.TTYMajor != 0,
		"user": map[string]any{"id": fmt.Sprint(p.EUID)}, "group": map[string]any{"id": fmt.Sprint(p.EGID)},
		"parent": map[string]any{"pid": p.PPID},
	}
	if exe != "" {
		doc["executable"] = exe
		doc["name"] = path.Base(exe)
	}
	if p.TTYMajor != 0 {
		doc["tty"] = map[string]any{"char_device": map[string]any{"major": p.TTYMajor, "minor": p.TTYMinor}}
	}
	return doc
}

func actionOf(ev *ebpf.Event) (action, typ string) {
	if ev.Kind == ebpf.EventDecision {
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
		case "lsm__path_rename":
			action = "rename"
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

func outcome(ev *ebpf.Event) string {
	if ev.Blocked {
		return "failure"
	}
	return "success"
}

func hookPoint(ev *ebpf.Event) string {
	if ev.Kind == ebpf.EventFile {
		return ev.Hook.String()
	}
	if ev.UserSpace {
		return "tracepoint__sched_process_exec"
	}
	if ev.Op == policy.OpFork {
		return "lsm__task_alloc"
	}
	return "lsm__bprm_check_security"
}

func message(ev *ebpf.Event, names []string) string {
	verb := "alert"
	if ev.Blocked {
		verb = "blocked"
	}
	what := ev.Op.String()
	return fmt.Sprintf("cloud-defend %s: %s %s by %s (pid %d), selectors %s", verb, what, ev.Path, ev.Process.Comm, ev.Process.PID, strings.Join(names, ", "))
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }

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
