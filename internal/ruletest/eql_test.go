package ruletest

import (
	"path/filepath"
	"testing"
)

func doc(ts string, kv map[string]any) Doc {
	d := Doc{"@timestamp": ts}
	for k, v := range kv {
		m := d
		parts := splitDots(k)
		for _, p := range parts[:len(parts)-1] {
			if _, ok := m[p].(map[string]any); !ok {
				m[p] = map[string]any{}
			}
			m = m[p].(map[string]any)
		}
		m[parts[len(parts)-1]] = v
	}
	return d
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestEventQuery(t *testing.T) {
	q, err := ParseEQL(`process where event.type == "start" and process.name in ("sh", "busybox") and
		/* comment */ process.args like~ "*-*D*" and not process.args in ("which") and container.id like "?*"`)
	if err != nil {
		t.Fatal(err)
	}
	hit := doc("2026-01-01T00:00:00Z", map[string]any{"event.category": []any{"process"}, "event.type": []any{"start"},
		"process.name": "busybox", "process.args": []any{"base64", "-d"}, "container.id": "abc"})
	if _, ok := q.Match([]Doc{hit}); !ok {
		t.Error("no match")
	}
	for _, change := range []map[string]any{
		{"container.id": ""}, {"process.name": "bash"}, {"process.args": []any{"which", "-d"}}, {"event.category": []any{"file"}},
	} {
		d := doc("2026-01-01T00:00:00Z", map[string]any{"event.category": []any{"process"}, "event.type": []any{"start"},
			"process.name": "busybox", "process.args": []any{"base64", "-d"}, "container.id": "abc"})
		for k, v := range change {
			parts := splitDots(k)
			d[parts[0]].(map[string]any)[parts[1]] = v
		}
		if _, ok := q.Match([]Doc{d}); ok {
			t.Errorf("matched with %v", change)
		}
	}
}

func TestSequence(t *testing.T) {
	q, err := ParseEQL(`sequence by process.parent.entity_id with maxspan=3s
		[process where process.name == "a"] [process where process.name == "b"]`)
	if err != nil {
		t.Fatal(err)
	}
	a := doc("2026-01-01T00:00:00Z", map[string]any{"event.category": []any{"process"}, "process.name": "a", "process.parent.entity_id": "p"})
	b := doc("2026-01-01T00:00:01Z", map[string]any{"event.category": []any{"process"}, "process.name": "b", "process.parent.entity_id": "p"})
	late := doc("2026-01-01T00:00:05Z", map[string]any{"event.category": []any{"process"}, "process.name": "b", "process.parent.entity_id": "p"})
	other := doc("2026-01-01T00:00:01Z", map[string]any{"event.category": []any{"process"}, "process.name": "b", "process.parent.entity_id": "q"})
	if _, ok := q.Match([]Doc{b, a}); !ok {
		t.Error("in-order pair within maxspan not matched")
	}
	for _, docs := range [][]Doc{{a, late}, {a, other}, {b}} {
		if _, ok := q.Match(docs); ok {
			t.Errorf("matched %v", docs)
		}
	}
}

// TestParsesContractRules: every rule of the current D4C ruleset that this
// subset claims to read parses; the ones it cannot are named, not hidden.
func TestParsesContractRules(t *testing.T) {
	dir := ContractDir(t, "integrations_cloud_defend")
	files, _ := filepath.Glob(filepath.Join(dir, "*.toml"))
	if len(files) == 0 {
		t.Fatalf("no rules in %s", dir)
	}
	parsed := 0
	for _, f := range files {
		r, err := Load(f)
		if err != nil {
			t.Logf("not readable by this subset: %v", err)
			continue
		}
		if len(r.Index) == 0 || !r.Reads("logs-cloud_defend.process-default") && !r.Reads("logs-cloud_defend.file-default") && !r.Reads("logs-cloud_defend.alerts-default") {
			t.Errorf("%s: index patterns %q read none of our streams", f, r.Index)
		}
		parsed++
	}
	t.Logf("%d of %d rules parsed", parsed, len(files))
	if parsed < len(files)*3/4 {
		t.Errorf("only %d of %d rules parse", parsed, len(files))
	}
}

// TestCrossSourceSequence: the execution_d4c_k8s_mda_* rules join our process
// documents by orchestrator.resource.name with Kubernetes audit documents by
// a backticked field whose last key holds dots and a slash, as the audit
// integration stores user.extra.
func TestCrossSourceSequence(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(ContractDir(t, "cross-platform"), "execution_d4c_k8s_mda_*.toml"))
	if len(files) != 4 {
		t.Fatalf("%d execution_d4c_k8s_mda_* rules, want 4", len(files))
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	q, err := ParseEQL("sequence with maxspan=1s\n" +
		`[process where event.action == "exec"] by orchestrator.resource.name
		 [any where data_stream.dataset == "kubernetes.audit_logs"] by ` + "`kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name`")
	if err != nil {
		t.Fatal(err)
	}
	exec := doc("2026-01-01T00:00:00Z", map[string]any{"event.category": []any{"process"}, "event.action": "exec", "orchestrator.resource.name": "web"})
	audit := func(ts, pod string) Doc {
		return Doc{"@timestamp": ts, "data_stream": map[string]any{"dataset": "kubernetes.audit_logs"},
			"kubernetes": map[string]any{"audit": map[string]any{"user": map[string]any{"extra": map[string]any{
				"authentication.kubernetes.io/pod-name": []any{pod}}}}}}
	}
	if _, ok := q.Match([]Doc{exec, audit("2026-01-01T00:00:00.5Z", "web")}); !ok {
		t.Error("exec then the pod's API request not matched")
	}
	for _, a := range []Doc{audit("2026-01-01T00:00:00.5Z", "db"), audit("2026-01-01T00:00:02Z", "web")} {
		if _, ok := q.Match([]Doc{exec, a}); ok {
			t.Errorf("matched %v", a)
		}
	}
}
