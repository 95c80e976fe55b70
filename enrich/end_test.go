package enrich_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// docsOf runs events through an enricher and the real encoder and returns the
// documents as JSON maps, with their streams.
func docsOf(t *testing.T, evs []event.Event) []map[string]any {
	t.Helper()
	tab := proctree.New(proctree.Config{AgentID: "a", HostPIDNamespace: 1, ProcRoot: t.TempDir()})
	e := enrich.New(tab, nil)
	enc := ecs.NewEncoder(ecs.Agent{ID: "a", Version: "t"}, host.Host{}, nil, time.Unix(0, 0),
		func(ev *event.Event) ([]string, error) {
			if ev.Matched == 0 {
				return nil, nil
			}
			return []string{"allProcesses"}, nil
		})
	var out []map[string]any
	emit := func(ev *event.Event, ctx *enrich.Context) {
		err := enc.EncodeAll(ev, ctx, ecs.Meta{Namespace: "t"}, func(d ecs.Doc) {
			var m map[string]any
			if err := json.Unmarshal(d.Body, &m); err != nil {
				t.Fatal(err)
			}
			m["_stream"] = d.Stream
			out = append(out, m)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range evs {
		e.Handle(&evs[i], emit)
	}
	e.Flush(emit)
	return out
}

func get(m map[string]any, path string) any {
	var v any = m
	for _, p := range strings.Split(path, ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[p]
	}
	return v
}

// TestForkAndEndDocuments: a fork decided in the forking task is documented
// as the child's fork (the kernel decides before the child exists); a process
// whose fork or exec was logged gets an end document with the same entity id
// and leaders, its end time and its exit code (a status, or 128+signal); one
// that was never logged gets none.
func TestForkAndEndDocuments(t *testing.T) {
	ms := func(n int) time.Duration { return 10*time.Second + time.Duration(n)*time.Millisecond }
	sh := event.Process{PID: 100, TID: 100, PPID: 1, PGID: 100, SID: 100, Start: time.Second, UID: 5, EUID: 5}
	child := event.Process{PID: 101, TID: 101, PPID: 100, PGID: 100, SID: 100, Start: ms(1), UID: 5, EUID: 5}
	other := event.Process{PID: 102, TID: 102, PPID: 100, PGID: 100, SID: 100, Start: ms(5), UID: 5, EUID: 5}
	evs := []event.Event{
		{Kind: event.Exec, Time: ms(0), Process: sh, Executable: "/bin/sh", Args: []string{"sh", "-c", "x"}},
		{Kind: event.ProcessDecision, Time: ms(1), Process: sh, Op: policy.OpFork, Actions: policy.ActionLog, Matched: 1, Path: "/bin/sh"},
		{Kind: event.Fork, Time: ms(1), Process: child, ParentTID: 100},
		{Kind: event.ProcessDecision, Time: ms(2), Process: child, Op: policy.OpExec, Actions: policy.ActionLog, Matched: 1, Path: "/bin/curl"},
		{Kind: event.Exec, Time: ms(2), Process: child, Executable: "/bin/curl", Args: []string{"curl", "-k", "https://x"}},
		{Kind: event.Fork, Time: ms(5), Process: other, ParentTID: 100}, // not logged
		{Kind: event.Exit, Time: ms(6), Process: other, ExitCode: 0},
		{Kind: event.Exit, Time: ms(7), Process: child, ExitCode: 9}, // killed by SIGKILL
		{Kind: event.Exit, Time: ms(8), Process: sh, ExitCode: 3 << 8},
	}
	docs := docsOf(t, evs)
	var got []string
	for _, d := range docs {
		got = append(got, get(d, "event.action").(string)+":"+get(d, "process.name").(string))
	}
	if want := "fork:sh exec:curl end:curl"; strings.Join(got, " ") != want {
		t.Fatalf("documents %q, want %q", strings.Join(got, " "), want)
	}
	fork, exec, end := docs[0], docs[1], docs[2]
	if get(fork, "process.pid") != float64(101) || get(fork, "process.parent.pid") != float64(100) ||
		get(fork, "process.parent.entity_id") != get(exec, "process.parent.entity_id") {
		t.Errorf("fork document is not the child's: pid %v parent %v", get(fork, "process.pid"), get(fork, "process.parent.pid"))
	}
	if get(fork, "@timestamp") != "1970-01-01T00:00:10.001000000Z" || get(fork, "cloud_defend.hook_point").([]any)[0] != "lsm__task_alloc" {
		t.Errorf("fork document: @timestamp %v hook %v", get(fork, "@timestamp"), get(fork, "cloud_defend.hook_point"))
	}
	for _, f := range []string{"process.entity_id", "process.parent.entity_id", "process.session_leader.entity_id",
		"process.group_leader.entity_id", "process.start", "process.executable"} {
		if get(end, f) == nil || get(end, f) != get(exec, f) {
			t.Errorf("end %s = %v, exec's %v", f, get(end, f), get(exec, f))
		}
	}
	for f, want := range map[string]any{
		"event.type": []any{"end"}, "event.kind": "event", "_stream": "logs-cloud_defend.process-t",
		"process.end": "1970-01-01T00:00:10.007000000Z", "process.exit_code": float64(137),
		"cloud_defend.hook_point": []any{"tracepoint__sched_process_exit"}, "cloud_defend.matched_selectors": []any{"allProcesses"},
		"process.command_line": "curl -k https://x",
	} {
		if b1, _ := json.Marshal(get(end, f)); string(b1) != func() string { b, _ := json.Marshal(want); return string(b) }() {
			t.Errorf("end %s = %s, want %v", f, b1, want)
		}
	}
	if get(exec, "process.end") != nil {
		t.Errorf("the exec document of a running process has an end: %v", get(exec, "process.end"))
	}

	// The shell's own fork was not logged, nor its exec: no end for it. Once
	// its exec is, its end reports exit status 3.
	evs = append(evs[:1], event.Event{Kind: event.ProcessDecision, Time: ms(0), Process: sh, Op: policy.OpExec, Actions: policy.ActionLog, Matched: 1, Path: "/bin/sh", UserSpace: true},
		event.Event{Kind: event.Exit, Time: ms(8), Process: sh, ExitCode: 3 << 8})
	docs = docsOf(t, evs)
	if len(docs) != 2 || get(docs[1], "event.action") != "end" || get(docs[1], "process.exit_code") != float64(3) {
		t.Fatalf("exec then exit 3: %v", docs)
	}
}
