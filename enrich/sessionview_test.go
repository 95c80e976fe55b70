package enrich_test

import (
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// TestSessionViewReplay runs a process tree in a new pid namespace (a
// workload: out of the node's own scope) under the real kernel's tracepoints
// and the default policy (log every fork and exec), documents it with the
// real enricher and encoder, and replays the documents as Kibana's Session
// View reads them (EVENTS.md): fetched by process.entry_leader.entity_id with
// event.action fork, exec or end and event.kind event, grouped by
// process.entity_id, linked by process.parent.entity_id. The tree it draws
// must be the kernel's, as the process table has it: every process, its
// parent, its last argv, its exit code.
func TestSessionViewReplay(t *testing.T) {
	eng, err := ebpf.Open(ebpf.Options{DisableLSM: true, FlushInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatalf("open engine (needs root and BPF tracepoints): %v", err)
	}
	if err := eng.Swap(policy.Default()); err != nil {
		t.Fatal(err)
	}
	tab := proctree.New(proctree.Config{AgentID: "agent-1"})
	e := enrich.New(tab, nil)
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "t"}, host.Host{}, nil, host.BootTime(), eng.SelectorNames)
	var mu sync.Mutex
	var docs []map[string]any
	emit := func(ev *event.Event, ctx *enrich.Context) {
		err := enc.EncodeAll(ev, ctx, ecs.Meta{}, func(d ecs.Doc) {
			var m map[string]any
			if err := json.Unmarshal(d.Body, &m); err != nil {
				t.Error(err)
			}
			m["_stream"] = d.Stream
			mu.Lock()
			docs = append(docs, m)
			mu.Unlock()
		})
		if err != nil {
			t.Error(err)
		}
	}
	done := make(chan struct{})
	scanned := make(chan error, 1)
	go func() {
		defer close(done)
		scanned <- tab.Scan()
		for {
			ev, err := eng.Read()
			if errors.Is(err, ebpf.ErrClosed) {
				e.Flush(emit)
				return
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			e.Handle(&ev, emit)
		}
	}()
	t.Cleanup(func() { eng.Close(); <-done })
	if err := <-scanned; err != nil {
		t.Fatal(err)
	}

	// pid 1 of the namespace is sh; it runs a background sleep, a subshell
	// (a fork without exec) that runs true and exits 4, a shell that exits
	// 3, and one that kills itself with SIGKILL (exit code 137).
	script := "/bin/sleep 0.05 & ( /bin/true; exit 4 ); /bin/sh -c 'exit 3'; /bin/sh -c 'kill -9 $$'; wait; exit 0"
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-f", "--", "/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unshare: %v %s", err, out)
	}
	unsharePID := uint32(cmd.Process.Pid)

	// The table (the kernel's view): every descendant of unshare, once all
	// have ended.
	var tree map[string]proctree.View
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		tree = descendants(tab, unsharePID)
		mu.Unlock()
		if len(tree) >= 6 && allEnded(tree) || time.Now().After(deadline) {
			break
		}
	}
	if len(tree) < 6 {
		t.Fatalf("the table has %d processes under unshare, want at least 6 (sh, sleep, 2 subshells, true, sh -c)", len(tree))
	}
	time.Sleep(50 * time.Millisecond) // the last end documents
	mu.Lock()
	defer mu.Unlock()

	// Session View: the session of the namespace's init.
	var root proctree.View
	for _, v := range tree {
		if v.Parent != nil && v.Parent.PID == unsharePID {
			root = v
		}
	}
	entry := root.Process.EntityID
	if root.EntryLeader != nil {
		entry = root.EntryLeader.EntityID
	}
	type node struct {
		parent, start, args string
		exit                any
		actions             []string
	}
	drawn := map[string]*node{}
	for _, d := range docs {
		if get(d, "event.kind") != "event" || get(d, "process.entry_leader.entity_id") != entry {
			continue
		}
		a, _ := get(d, "event.action").(string)
		if a != "fork" && a != "exec" && a != "end" {
			continue
		}
		id := get(d, "process.entity_id").(string)
		n := drawn[id]
		if n == nil {
			n = &node{}
			drawn[id] = n
		}
		n.actions = append(n.actions, a)
		n.parent, _ = get(d, "process.parent.entity_id").(string)
		n.start, _ = get(d, "process.start").(string)
		if a != "end" || n.args == "" {
			b, _ := json.Marshal(get(d, "process.args"))
			n.args = string(b)
		}
		if a == "end" {
			n.exit = get(d, "process.exit_code")
			if d["_stream"] != "logs-cloud_defend.process-default" {
				t.Errorf("end document on %v", d["_stream"])
			}
		}
	}
	t.Logf("%d processes in the kernel's tree, %d documents, %d processes drawn", len(tree), len(docs), len(drawn))
	defer func() {
		if t.Failed() {
			for _, d := range docs {
				t.Logf("doc %v %v pid %v parent %v entry leader %v exit %v", get(d, "event.action"), get(d, "process.args"), get(d, "process.pid"), get(d, "process.parent.pid"), get(d, "process.entry_leader.pid"), get(d, "process.exit_code"))
			}
		}
	}()
	var ids []string
	for id := range tree {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		v := tree[id]
		n := drawn[id]
		name := v.Process.Name + " " + strings.Join(v.Process.Args, " ")
		if n == nil {
			t.Errorf("%s (pid %d): not drawn (no fork, exec or end document in the session)", name, v.Process.PID)
			continue
		}
		if id == root.Process.EntityID {
			// The session's root: its fork by unshare, out of scope, is not documented.
		} else if v.Parent == nil || n.parent != v.Parent.EntityID {
			t.Errorf("%s: drawn under %s, the kernel's parent is %+v", name, n.parent, v.Parent)
		}
		b, _ := json.Marshal(v.Process.Args)
		if n.args != string(b) {
			t.Errorf("%s: drawn with args %s", name, n.args)
		}
		if !v.Process.ExitKnown || n.exit != float64(v.Process.Exit.Code) {
			t.Errorf("%s: drawn exit code %v, the kernel's %+v (known %v)", name, n.exit, v.Process.Exit, v.Process.ExitKnown)
		}
		if n.actions[len(n.actions)-1] != "end" || slices.Index(n.actions, "end") != len(n.actions)-1 {
			t.Errorf("%s: documents %v, want one end, last", name, n.actions)
		}
	}
	for id := range drawn {
		if _, ok := tree[id]; !ok {
			t.Errorf("drawn process %s is not in the kernel's tree", id)
		}
	}
	codes := map[int32]bool{}
	for _, v := range tree {
		codes[v.Process.Exit.Code] = true
	}
	if !codes[3] || !codes[4] || !codes[137] {
		t.Errorf("exit codes %v, want 3, 4 and 137 among them", codes)
	}
}

// descendants returns the processes below pid in the table, by entity id.
func descendants(tab *proctree.Table, pid uint32) map[string]proctree.View {
	out := map[string]proctree.View{}
	frontier := []uint32{pid}
	for len(frontier) > 0 {
		p := frontier[0]
		frontier = frontier[1:]
		for _, v := range tab.Children(p) {
			if _, seen := out[v.Process.EntityID]; !seen {
				out[v.Process.EntityID] = v
				frontier = append(frontier, v.Process.PID)
			}
		}
	}
	return out
}

func allEnded(tree map[string]proctree.View) bool {
	for _, v := range tree {
		if !v.Process.Exited {
			return false
		}
	}
	return true
}
