package ecs

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

func testEncoder() *Encoder {
	boot := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	return NewEncoder(Agent{ID: "agent-1", Version: "0.1.0"}, host.Local("/proc", "/etc"), nil, boot,
		func(*event.Event) ([]string, error) { return []string{"binDrift"}, nil })
}

func decode(t *testing.T, d Doc) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(d.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// field walks a dotted path through nested objects.
func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[p]
	}
	return v
}

func TestEncodeStreams(t *testing.T) {
	e := testEncoder()
	proc := event.Process{PID: 42, PPID: 7, EUID: 0, EGID: 0, Start: 3 * time.Second, Comm: "cp"}
	cases := []struct {
		ev                     event.Event
		stream, kind, action   string
		typ                    string
		blocked, hasMessage    bool
		hook                   string
		category, filePath, nm string
	}{
		{event.Event{Kind: event.FileDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpCreateExecutable, Hook: 2,
			Actions: policy.ActionAlert | policy.ActionBlock, Blocked: true, Path: "/usr/bin/x.sh"},
			"logs-cloud_defend.alerts-prod", "alert", "creation", "denied", true, true, "lsm__path_mknod", "file", "/usr/bin/x.sh", "x.sh"},
		{event.Event{Kind: event.FileDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpModifyFile, Hook: 1,
			Actions: policy.ActionLog, Path: "/etc/hosts"},
			"logs-cloud_defend.file-prod", "event", "open", "change", false, false, "lsm__file_open", "file", "/etc/hosts", "hosts"},
		{event.Event{Kind: event.ProcessDecision, Time: 6 * time.Second, Process: proc, Op: policy.OpExec,
			Actions: policy.ActionLog, Path: "/bin/sh", Layer: event.LayerAdded},
			"logs-cloud_defend.process-prod", "event", "exec", "start", false, false, "lsm__bprm_check_security", "process", "", ""},
	}
	for _, c := range cases {
		d, ok, err := e.Encode(&c.ev, nil, Meta{Namespace: "prod", PackagePolicyID: "pp", Revision: 3})
		if err != nil || !ok {
			t.Fatalf("encode %+v: %v %v", c.ev, ok, err)
		}
		if d.Stream != c.stream {
			t.Errorf("stream %s, want %s", d.Stream, c.stream)
		}
		m := decode(t, d)
		for path, want := range map[string]any{
			"event.kind": c.kind, "event.action": c.action, "event.module": "cloud_defend", "event.id": d.ID,
			"host.os.type": "linux", "agent.type": "cloud-defend", "cloud_defend.package_policy_id": "pp",
			"cloud_defend.package_policy_revision": float64(3), "cloud_defend.blocked": c.blocked,
			"process.pid": float64(42), "process.interactive": false, "data_stream.namespace": "prod",
			"@timestamp": "2026-11-22T08:00:05.000000000Z",
		} {
			p := strings.Split(path, ".")
			if path == "@timestamp" && c.ev.Time != 5*time.Second {
				continue
			}
			if got := field(m, p...); got != want {
				t.Errorf("%s: %s = %#v, want %#v", c.stream, path, got, want)
			}
		}
		if got := field(m, "event", "type").([]any)[0]; got != c.typ {
			t.Errorf("event.type %v, want %s", got, c.typ)
		}
		if got := field(m, "cloud_defend", "hook_point").([]any)[0]; got != c.hook {
			t.Errorf("hook_point %v, want %s", got, c.hook)
		}
		if _, has := m["message"]; has != c.hasMessage {
			t.Errorf("message present %v", has)
		}
		if c.filePath != "" && (field(m, "file", "path") != c.filePath || field(m, "file", "name") != c.nm) {
			t.Errorf("file %v", m["file"])
		}
		id, _ := base64.StdEncoding.DecodeString(field(m, "process", "entity_id").(string))
		if string(id) != "agent-1-42-3000000000" {
			t.Errorf("entity id %q", id)
		}
	}
	// Telemetry on its own makes no document.
	if _, ok, _ := e.Encode(&event.Event{Kind: event.Exec, Process: proc}, nil, Meta{}); ok {
		t.Error("an exec telemetry event made a document")
	}
}

// TestLogAndAlert: an event that one response logs and another alerts on is
// on both streams, as two documents.
func TestLogAndAlert(t *testing.T) {
	ev := event.Event{Kind: event.ProcessDecision, Op: policy.OpExec, Actions: policy.ActionLog | policy.ActionAlert, Path: "/bin/cat"}
	var docs []Doc
	if err := testEncoder().EncodeAll(&ev, nil, Meta{}, func(d Doc) { d.Body = slices.Clone(d.Body); docs = append(docs, d) }); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Stream != "logs-cloud_defend.alerts-default" || docs[1].Stream != "logs-cloud_defend.process-default" ||
		field(decode(t, docs[1]), "event", "kind") != "event" || docs[0].ID == docs[1].ID {
		t.Fatalf("documents %+v", docs)
	}
	ev.Actions = policy.ActionAlert
	docs = nil
	if err := testEncoder().EncodeAll(&ev, nil, Meta{}, func(d Doc) { d.Body = slices.Clone(d.Body); docs = append(docs, d) }); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("alert only: %d documents", len(docs))
	}
}

func TestEventIDsUnique(t *testing.T) {
	a, b := testEncoder(), testEncoder()
	seen := map[string]bool{}
	ev := event.Event{Kind: event.FileDecision, Op: policy.OpModifyFile, Actions: policy.ActionLog, Path: "/x"}
	for _, e := range []*Encoder{a, b, a, b} {
		d, _, _ := e.Encode(&ev, nil, Meta{})
		if seen[d.ID] {
			t.Fatalf("duplicate event id %s", d.ID)
		}
		seen[d.ID] = true
	}
}

// sessionContext is a shell exec'd into a container (kubectl exec), running
// a command: the shape of a typical container event.
func sessionContext() (*event.Event, *enrich.Context) {
	priv := false
	entry := proctree.Process{PID: 70, PPID: 50, SID: 70, PGID: 70, Start: 2 * time.Second, EntityID: proctree.EntityID("agent-1", 70, 2*time.Second),
		Executable: "/bin/sh", Name: "sh", Args: []string{"sh"}, Interactive: true, TTYMajor: 136, TTYMinor: 3, EntryMetaType: proctree.EntryContainer}
	shim := proctree.Process{PID: 50, PPID: 1, Start: time.Second, EntityID: proctree.EntityID("agent-1", 50, time.Second),
		Executable: "/usr/bin/containerd-shim-runc-v2", Name: "containerd-shim-runc-v2", Args: []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io"}}
	self := proctree.Process{PID: 71, PPID: 70, SID: 70, PGID: 71, Start: 3 * time.Second, EntityID: proctree.EntityID("agent-1", 71, 3*time.Second),
		Executable: "/bin/cat", Name: "cat", Args: []string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"},
		WorkingDirectory: "/", Interactive: true, TTYMajor: 136, TTYMinor: 3, Previous: []proctree.Exec{{Executable: "/bin/sh", Args: []string{"sh"}}}}
	parent := entry
	v := &proctree.View{Process: self, Parent: &parent,
		GroupLeader:   &proctree.Leader{Process: self, SameAsProcess: true},
		SessionLeader: &proctree.Leader{Process: entry},
		EntryLeader:   &proctree.Leader{Process: entry}}
	_ = shim
	ev := &event.Event{Kind: event.ProcessDecision, Time: 6 * time.Second, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/cat",
		Process: event.Process{PID: 71, TID: 71, PPID: 70, Start: 3 * time.Second, Comm: "sh", TTYMajor: 136, TTYMinor: 3}}
	ctx := &enrich.Context{Process: v,
		Container: &enrich.Container{ID: "3f1c2a9b", Runtime: "containerd", ImageName: "nginx", ImageTag: "1.27", Privileged: &priv},
		Pod: &enrich.Pod{ClusterID: "c-uid", ClusterName: "prod", Namespace: "web", Name: "nginx-7d9", IP: "10.0.0.7", ParentType: "ReplicaSet",
			Labels: []string{"app:nginx"}, Annotations: []string{"team:web"}}}
	return ev, ctx
}

// TestEncodeContext checks the fields consumers join and filter on, with the
// JSON types they expect: Session View's leaders and the rules' container and
// orchestrator fields.
func TestEncodeContext(t *testing.T) {
	ev, ctx := sessionContext()
	d, ok, err := testEncoder().Encode(ev, ctx, Meta{Namespace: "default"})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	m := decode(t, d)
	for path, want := range map[string]any{
		"process.executable": "/bin/cat", "process.name": "cat", "process.working_directory": "/",
		"process.command_line": "cat /var/run/secrets/kubernetes.io/serviceaccount/token",
		"process.args_count":   float64(2), "process.interactive": true,
		"process.tty.char_device.major": float64(136),
		"process.parent.pid":            float64(70), "process.parent.interactive": true, "process.parent.executable": "/bin/sh",
		"process.parent.entity_id":               ctx.Process.Parent.EntityID,
		"process.group_leader.same_as_process":   true,
		"process.session_leader.same_as_process": false,
		"process.entry_leader.same_as_process":   false,
		"process.entry_leader.entry_meta.type":   "container",
		"process.entry_leader.entity_id":         ctx.Process.EntryLeader.EntityID,
		"process.entry_leader.start":             "2026-11-22T08:00:02.000000000Z",
		"process.start":                          "2026-11-22T08:00:03.000000000Z",
		"container.id":                           "3f1c2a9b",
		"container.image.name":                   "nginx",
		"container.image.tag":                    "1.27",
		"container.security_context.privileged":  false,
		"orchestrator.namespace":                 "web",
		"orchestrator.resource.name":             "nginx-7d9",
		"orchestrator.resource.type":             "pod",
		"orchestrator.resource.parent.type":      "ReplicaSet",
		"orchestrator.cluster.id":                "c-uid",
		"user.id":                                "0",
		"process.user.id":                        "0",
	} {
		if got := field(m, strings.Split(path, ".")...); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	prev := field(m, "process", "previous").([]any)
	if len(prev) != 1 || prev[0].(map[string]any)["executable"] != "/bin/sh" {
		t.Errorf("previous %v", prev)
	}
	if l := field(m, "orchestrator", "resource", "label").([]any); len(l) != 1 || l[0] != "app:nginx" {
		t.Errorf("labels %v", l)
	}

	// A blocked exec never reached the table: the document names the refused
	// executable, not the image before it.
	ev.Blocked, ev.Path = true, "/tmp/evil"
	d, _, _ = testEncoder().Encode(ev, ctx, Meta{})
	m = decode(t, d)
	if field(m, "process", "executable") != "/tmp/evil" || field(m, "process", "args") != nil || field(m, "process", "previous") != nil {
		t.Errorf("blocked exec: executable %v args %v previous %v", field(m, "process", "executable"), field(m, "process", "args"), field(m, "process", "previous"))
	}
}

// FuzzAppendString checks the hand-written string encoder against
// encoding/json: whatever the bytes, the result parses back to what
// encoding/json makes of them.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quo\"te", "back\\slash", "ctl\x00\x1f\x7f", "nl\n\r\t", "bad\xff\xfeutf8", "é中\u2028\u2029", "<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, b, err)
		}
		ref, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%q: got %q, encoding/json %q", s, got, want)
		}
	})
}

// BenchmarkEncode encodes a process event of a container session with its
// full context (parent, three leaders, previous image, container, pod).
func BenchmarkEncode(b *testing.B) {
	e := testEncoder()
	ev, ctx := sessionContext()
	m := Meta{Namespace: "default", PackagePolicyID: "pp", Revision: 3}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		d, _, err := e.Encode(ev, ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		n = len(d.Body)
	}
	b.ReportMetric(float64(n), "bytes/doc")
}

func TestSetCloud(t *testing.T) {
	e := testEncoder()
	ev := event.Event{Kind: event.FileDecision, Op: policy.OpModifyFile, Actions: policy.ActionLog, Path: "/x"}
	d, _, _ := e.Encode(&ev, nil, Meta{})
	if _, has := decode(t, d)["cloud"]; has {
		t.Error("cloud.* before the metadata service answered")
	}
	e.SetCloud(&enrich.Cloud{Provider: "aws", Region: "eu-west-1", AccountID: "123", InstanceID: "i-1"})
	d, _, _ = e.Encode(&ev, nil, Meta{})
	m := decode(t, d)
	if field(m, "cloud", "provider") != "aws" || field(m, "cloud", "account", "id") != "123" || field(m, "cloud", "instance", "id") != "i-1" || field(m, "host", "os", "type") != "linux" {
		t.Errorf("cloud %v host %v", m["cloud"], m["host"])
	}
}

func TestHeartbeatAndMetrics(t *testing.T) {
	e := testEncoder()
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	m := Meta{Namespace: "prod", PackagePolicyID: "pp", Revision: 4}
	hb := e.Heartbeat(m, true, now)
	if hb.Stream != "metrics-cloud_defend.heartbeat-prod" || hb.ID == "" {
		t.Fatalf("heartbeat %s %q", hb.Stream, hb.ID)
	}
	doc := decode(t, hb)
	if field(doc, "cloud_defend", "block_action_enabled") != true || field(doc, "event", "kind") != "metric" ||
		field(doc, "event", "id") != hb.ID || field(doc, "data_stream", "type") != "metrics" || field(doc, "host", "os", "type") != "linux" {
		t.Errorf("heartbeat %s", hb.Body)
	}
	mt := e.Metrics(m, Counters{Events: 10, RingDrops: 2, Dropped: 1, ProcessesTracked: 5}, now)
	doc = decode(t, mt)
	if mt.Stream != "metrics-cloud_defend.metrics-prod" || field(doc, "cloud_defend", "metrics", "ring_drops") != float64(2) ||
		field(doc, "cloud_defend", "metrics", "processes_tracked") != float64(5) || field(doc, "@timestamp") != "2026-11-22T09:00:00.000000000Z" {
		t.Errorf("metrics %s", mt.Body)
	}
}

// TestTruncatedPath: when the kernel cut the executable's path or the working
// directory, the document says so; otherwise the field is absent.
func TestTruncatedPath(t *testing.T) {
	e := testEncoder()
	long := "/" + strings.Repeat("d", 4095)
	p := proctree.Process{PID: 42, Start: time.Second, EntityID: "e", Executable: long, Name: "x",
		WorkingDirectory: long, PathTruncated: true}
	ev := event.Event{Kind: event.ProcessDecision, Time: 2 * time.Second, Op: policy.OpExec, Actions: policy.ActionLog,
		Path: long, Process: event.Process{PID: 42, Start: time.Second}}
	d, _, err := e.Encode(&ev, &enrich.Context{Process: &proctree.View{Process: p}}, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, d)
	if field(m, "cloud_defend", "path_truncated") != true || field(m, "process", "executable") != long {
		t.Errorf("path_truncated %v, executable %d bytes", field(m, "cloud_defend", "path_truncated"), len(field(m, "process", "executable").(string)))
	}
	p.PathTruncated = false
	d, _, _ = e.Encode(&ev, &enrich.Context{Process: &proctree.View{Process: p}}, Meta{})
	m = decode(t, d)
	if field(m, "cloud_defend", "path_truncated") != nil {
		t.Errorf("whole paths: path_truncated %v", field(m, "cloud_defend", "path_truncated"))
	}
}

// TestTruncatedArgs: when the kernel cut argv, the document says so and
// process.args_count is the true count, not the number of args kept.
func TestTruncatedArgs(t *testing.T) {
	e := testEncoder()
	p := proctree.Process{PID: 42, Start: time.Second, EntityID: "e", Executable: "/usr/bin/curl", Name: "curl",
		Args: []string{"curl", "-H", "Authorization: Bearer eyJ"}, ArgsTruncated: true, ArgsCount: 5}
	ev := event.Event{Kind: event.ProcessDecision, Time: 2 * time.Second, Op: policy.OpExec, Actions: policy.ActionLog,
		Path: "/usr/bin/curl", Process: event.Process{PID: 42, Start: time.Second}}
	d, _, err := e.Encode(&ev, &enrich.Context{Process: &proctree.View{Process: p}}, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, d)
	if field(m, "process", "args_count") != float64(5) || field(m, "cloud_defend", "args_truncated") != true {
		t.Errorf("args_count %v, args_truncated %v", field(m, "process", "args_count"), field(m, "cloud_defend", "args_truncated"))
	}
	p.ArgsTruncated, p.ArgsCount = false, 0
	d, _, _ = e.Encode(&ev, &enrich.Context{Process: &proctree.View{Process: p}}, Meta{})
	m = decode(t, d)
	if field(m, "process", "args_count") != float64(3) || field(m, "cloud_defend", "args_truncated") != nil {
		t.Errorf("whole argv: args_count %v, args_truncated %v", field(m, "process", "args_count"), field(m, "cloud_defend", "args_truncated"))
	}
}

// TestEncodeNetwork checks every field of the network part of the documents
// for a logged connect (IPv4), accept (IPv6, its mapped peer unmapped
// too), bind and a blocked connect alert: the names and values Elastic
// Defend's network events use, and that an end the kernel did not report is
// left out.
func TestEncodeNetwork(t *testing.T) {
	proc := event.Process{PID: 42, PPID: 7, Start: 3 * time.Second, Comm: "curl"}
	ap := netip.MustParseAddrPort
	cases := []struct {
		name   string
		ev     event.Event
		stream string
		want   map[string]any
		absent []string
	}{
		{"connect v4", event.Event{Kind: event.NetworkDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpConnect, Hook: event.HookSocketConnect,
			Actions: policy.ActionLog, Protocol: event.ProtocolTCP, Source: ap("10.0.0.7:40000"), Destination: ap("10.0.0.5:443"), Direction: event.DirectionEgress},
			"logs-cloud_defend.network-prod", map[string]any{
				"event.kind": "event", "event.category": []any{"network"}, "event.type": []any{"start"}, "event.action": "connection_attempted",
				"event.dataset": "cloud_defend.network", "event.outcome": "success", "data_stream.dataset": "cloud_defend.network",
				"network.transport": "tcp", "network.type": "ipv4", "network.direction": "egress",
				"source.ip": "10.0.0.7", "source.address": "10.0.0.7", "source.port": float64(40000),
				"destination.ip": "10.0.0.5", "destination.address": "10.0.0.5", "destination.port": float64(443),
				"cloud_defend.operation": "connect", "cloud_defend.hook_point": []any{"lsm__socket_connect"}, "cloud_defend.blocked": false,
				"cloud_defend.detected_in_user_space": false, "cloud_defend.matched_selectors": []any{"binDrift"},
				"process.pid": float64(42), "process.name": "curl", "user.id": "0",
			}, []string{"message", "file"}},
		{"accept v6", event.Event{Kind: event.NetworkDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpAccept, Hook: event.HookSysAccept, UserSpace: true,
			Actions: policy.ActionLog, Protocol: event.ProtocolTCP, Source: ap("[::1]:5000"), Destination: ap("[::1]:8080"), Direction: event.DirectionIngress},
			"logs-cloud_defend.network-prod", map[string]any{
				"event.category": []any{"network"}, "event.type": []any{"start"}, "event.action": "connection_accepted",
				"network.transport": "tcp", "network.type": "ipv6", "network.direction": "ingress",
				"source.ip": "::1", "source.port": float64(5000), "destination.ip": "::1", "destination.port": float64(8080),
				"cloud_defend.operation": "accept", "cloud_defend.hook_point": []any{"tracepoint__sys_exit_accept4"},
				"cloud_defend.detected_in_user_space": true,
			}, []string{"message"}},
		{"accept mapped", event.Event{Kind: event.NetworkDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpAccept, Hook: event.HookSocketAccept,
			Actions: policy.ActionLog, Protocol: event.ProtocolTCP, Source: ap("[::ffff:192.0.2.1]:5000"), Destination: ap("[::ffff:10.0.0.7]:8080"), Direction: event.DirectionIngress},
			"logs-cloud_defend.network-prod", map[string]any{
				"network.type": "ipv4", "source.ip": "192.0.2.1", "destination.ip": "10.0.0.7",
			}, nil},
		{"bind", event.Event{Kind: event.NetworkDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpBind, Hook: event.HookSocketBind,
			Actions: policy.ActionLog, Protocol: event.ProtocolUDP, Source: ap("0.0.0.0:8080")},
			"logs-cloud_defend.network-prod", map[string]any{
				"event.category": []any{"network"}, "event.type": []any{"info"}, "event.action": "bind",
				"network.transport": "udp", "network.type": "ipv4", "source.ip": "0.0.0.0", "source.port": float64(8080),
				"cloud_defend.operation": "bind", "cloud_defend.hook_point": []any{"lsm__socket_bind"},
			}, []string{"destination", "network.direction", "message"}},
		{"blocked connect", event.Event{Kind: event.NetworkDecision, Time: 5 * time.Second, Process: proc, Op: policy.OpConnect, Hook: event.HookSocketConnect,
			Actions: policy.ActionAlert | policy.ActionBlock, Blocked: true, Protocol: event.ProtocolTCP, Destination: ap("203.0.113.9:4444"), Direction: event.DirectionEgress},
			"logs-cloud_defend.alerts-prod", map[string]any{
				"event.kind": "alert", "event.category": []any{"network"}, "event.type": []any{"denied"}, "event.action": "connection_attempted",
				"event.dataset": "cloud_defend.alerts", "event.outcome": "failure", "network.transport": "tcp", "network.type": "ipv4",
				"network.direction": "egress", "destination.ip": "203.0.113.9", "destination.port": float64(4444),
				"cloud_defend.blocked": true, "cloud_defend.operation": "connect",
				"message": "cloud-defend blocked: connect 203.0.113.9:4444/tcp by curl (pid 42), selectors binDrift",
			}, []string{"source"}},
	}
	e := testEncoder()
	for _, c := range cases {
		d, ok, err := e.Encode(&c.ev, nil, Meta{Namespace: "prod"})
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", c.name, ok, err)
		}
		if d.Stream != c.stream {
			t.Errorf("%s: stream %s, want %s", c.name, d.Stream, c.stream)
		}
		m := decode(t, d)
		for path, want := range c.want {
			if got := field(m, strings.Split(path, ".")...); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s = %#v, want %#v", c.name, path, got, want)
			}
		}
		for _, path := range c.absent {
			if got := field(m, strings.Split(path, ".")...); got != nil {
				t.Errorf("%s: %s = %#v, want none", c.name, path, got)
			}
		}
	}
}

// TestNetworkMessages: an alert's message says the operation as the console
// shows it, for each operation.
func TestNetworkMessages(t *testing.T) {
	ap := netip.MustParseAddrPort
	proc := event.Process{PID: 9, Comm: "nc\"x"}
	for _, c := range []struct {
		ev   event.Event
		want string
	}{
		{event.Event{Op: policy.OpConnect, Protocol: event.ProtocolUDP, Destination: ap("10.96.0.10:53")}, "cloud-defend alert: connect 10.96.0.10:53/udp by nc\"x (pid 9), selectors binDrift"},
		{event.Event{Op: policy.OpAccept, Protocol: event.ProtocolTCP, Source: ap("[2001:db8::1]:5000"), Destination: ap("[2001:db8::2]:22")}, "cloud-defend alert: accept from [2001:db8::1]:5000/tcp by nc\"x (pid 9), selectors binDrift"},
		{event.Event{Op: policy.OpBind, Protocol: event.ProtocolTCP, Source: ap("0.0.0.0:8080"), Blocked: true}, "cloud-defend blocked: bind 0.0.0.0:8080/tcp by nc\"x (pid 9), selectors binDrift"},
	} {
		c.ev.Kind, c.ev.Process, c.ev.Actions = event.NetworkDecision, proc, policy.ActionAlert
		d, _, err := testEncoder().Encode(&c.ev, nil, Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, d)["message"]; got != c.want {
			t.Errorf("message %q, want %q", got, c.want)
		}
	}
}

// TestNetworkLogAndAlert: a connect that one response logs and another
// alerts on is a network document and an alert.
func TestNetworkLogAndAlert(t *testing.T) {
	ev := event.Event{Kind: event.NetworkDecision, Op: policy.OpConnect, Hook: event.HookSocketConnect, Actions: policy.ActionLog | policy.ActionAlert,
		Protocol: event.ProtocolTCP, Destination: netip.MustParseAddrPort("10.0.0.5:443"), Direction: event.DirectionEgress}
	var streams []string
	if err := testEncoder().EncodeAll(&ev, nil, Meta{}, func(d Doc) { streams = append(streams, d.Stream) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(streams, []string{"logs-cloud_defend.alerts-default", "logs-cloud_defend.network-default"}) {
		t.Errorf("streams %v", streams)
	}
}

// TestEncodeNetworkAllocs: the network fields cost no allocation beyond
// what every document costs: a logged connect allocates exactly as a logged
// file open does (addresses are appended, never formatted), a network alert
// no more than a file alert.
func TestEncodeNetworkAllocs(t *testing.T) {
	e := testEncoder()
	ev := event.Event{Kind: event.NetworkDecision, Op: policy.OpConnect, Hook: event.HookSocketConnect, Actions: policy.ActionLog | policy.ActionAlert,
		Protocol: event.ProtocolTCP, Source: netip.MustParseAddrPort("[2001:db8::7]:40000"), Destination: netip.MustParseAddrPort("[2001:db8::5]:443"),
		Direction: event.DirectionEgress}
	file := event.Event{Kind: event.FileDecision, Op: policy.OpModifyFile, Hook: event.HookFileOpen, Actions: policy.ActionLog | policy.ActionAlert, Path: "/etc/hosts"}
	m := Meta{Namespace: "default"}
	emit := func(Doc) {}
	for range 3 { // grow the buffer
		_ = e.EncodeAll(&ev, nil, m, emit)
		_ = e.EncodeAll(&file, nil, m, emit)
	}
	net := testing.AllocsPerRun(100, func() { _ = e.EncodeAll(&ev, nil, m, emit) })
	fileAllocs := testing.AllocsPerRun(100, func() { _ = e.EncodeAll(&file, nil, m, emit) })
	ev.Actions, file.Actions = policy.ActionLog, policy.ActionLog
	netLog := testing.AllocsPerRun(100, func() { _ = e.EncodeAll(&ev, nil, m, emit) })
	fileLog := testing.AllocsPerRun(100, func() { _ = e.EncodeAll(&file, nil, m, emit) })
	if netLog != fileLog {
		t.Errorf("a logged connect costs %v allocations, a logged file open %v", netLog, fileLog)
	}
	// The file alert's message is formatted with fmt; the network one is
	// appended in place, so it may only cost less.
	if net > fileAllocs {
		t.Errorf("a network alert and log cost %v allocations, a file one %v", net, fileAllocs)
	}
}
