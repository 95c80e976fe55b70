package ecs

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
)

func testEncoder() *Encoder {
	boot := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	return NewEncoder(Agent{ID: "agent-1", Version: "0.1.0"}, LocalHost("/proc", "/etc"), boot,
		func(*ebpf.Event) ([]string, error) { return []string{"binDrift"}, nil })
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
	proc := ebpf.Process{PID: 42, PPID: 7, EUID: 0, EGID: 0, Start: 3 * time.Second, Comm: "cp"}
	cases := []struct {
		ev                     ebpf.Event
		stream, kind, action   string
		typ                    string
		blocked, hasMessage    bool
		hook                   string
		category, filePath, nm string
	}{
		{ebpf.Event{Kind: ebpf.EventFile, Time: 5 * time.Second, Process: proc, Op: policy.OpCreateExecutable, Hook: 2,
			Actions: policy.ActionAlert | policy.ActionBlock, Blocked: true, Path: "/usr/bin/x.sh"},
			"logs-cloud_defend.alerts-prod", "alert", "creation", "denied", true, true, "lsm__path_mknod", "file", "/usr/bin/x.sh", "x.sh"},
		{ebpf.Event{Kind: ebpf.EventFile, Time: 5 * time.Second, Process: proc, Op: policy.OpModifyFile, Hook: 1,
			Actions: policy.ActionLog, Path: "/etc/hosts"},
			"logs-cloud_defend.file-prod", "event", "open", "change", false, false, "lsm__file_open", "file", "/etc/hosts", "hosts"},
		{ebpf.Event{Kind: ebpf.EventDecision, Time: 6 * time.Second, Process: proc, Op: policy.OpExec,
			Actions: policy.ActionLog, Path: "/bin/sh", Layer: ebpf.LayerAdded},
			"logs-cloud_defend.process-prod", "event", "exec", "start", false, false, "lsm__bprm_check_security", "process", "", ""},
	}
	for _, c := range cases {
		d, ok, err := e.Encode(&c.ev, Meta{Namespace: "prod", PackagePolicyID: "pp", Revision: 3})
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
	if _, ok, _ := e.Encode(&ebpf.Event{Kind: ebpf.EventExec, Process: proc}, Meta{}); ok {
		t.Error("an exec telemetry event made a document")
	}
}

func TestEventIDsUnique(t *testing.T) {
	a, b := testEncoder(), testEncoder()
	seen := map[string]bool{}
	ev := ebpf.Event{Kind: ebpf.EventFile, Op: policy.OpModifyFile, Actions: policy.ActionLog, Path: "/x"}
	for _, e := range []*Encoder{a, b, a, b} {
		d, _, _ := e.Encode(&ev, Meta{})
		if seen[d.ID] {
			t.Fatalf("duplicate event id %s", d.ID)
		}
		seen[d.ID] = true
	}
}

func TestLocalHost(t *testing.T) {
	h := LocalHost("/proc", "/etc")
	name, _ := os.Hostname()
	if h.Hostname != name || h.BootID == "" || h.OS.Kernel == "" || h.PIDNamespace == 0 || h.Architecture == "" {
		t.Errorf("host %+v", h)
	}
}

func BenchmarkEncode(b *testing.B) {
	e := testEncoder()
	ev := ebpf.Event{Kind: ebpf.EventDecision, Time: 6 * time.Second, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/sh",
		Process: ebpf.Process{PID: 42, PPID: 7, Start: 3 * time.Second, Comm: "sh"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.Encode(&ev, Meta{Namespace: "default"}); err != nil {
			b.Fatal(err)
		}
	}
}
