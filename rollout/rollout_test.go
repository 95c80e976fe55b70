package rollout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
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

// act is one synthetic operation in a container.
type act struct {
	op          policy.Op
	exe, target string // the acting executable; a file op's target
	image, tag  string
	interactive bool
	hook        event.HookPoint
	pod         *enrich.Pod
	// A network operation's transport and ends.
	protocol string
	src, dst netip.AddrPort
}

// recorder encodes operations with the real ECS encoder, deciding them with a
// recording policy the way the kernel does: the documents are what the
// Elasticsearch output would have shipped.
type recorder struct {
	t   *testing.T
	p   *policy.Policy
	enc *ecs.Encoder
	buf bytes.Buffer
	n   int // documents
	pid uint32
}

func newRecorder(t *testing.T, recording string) *recorder {
	t.Helper()
	p, _, err := policy.Parse("recording", []byte(recording))
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, p: p, pid: 100}
	names := func(ev *event.Event) ([]string, error) {
		typ := policy.Process
		switch ev.Kind {
		case event.FileDecision:
			typ = policy.File
		case event.NetworkDecision:
			typ = policy.Network
		}
		return r.p.MatchedSelectors(policy.Decision{Type: typ, Matched: ev.Matched}), nil
	}
	r.enc = ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "test"}, host.Host{Hostname: "node-1", Name: "node-1"}, nil,
		time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), names)
	return r
}

func (r *recorder) record(a act) policy.Decision {
	r.t.Helper()
	r.pid++
	op := policy.Operation{Op: a.op, ProcessExecutable: a.exe, ProcessName: comm(basename(a.exe)), SessionLeaderInteractive: a.interactive,
		TargetPath: a.target, Protocol: a.protocol, SourceAddress: a.src.Addr(), SourcePort: a.src.Port(),
		DestinationAddress: a.dst.Addr(), DestinationPort: a.dst.Port()}
	if a.image != "" {
		setImage(&op, a.image, a.tag)
	}
	if a.pod != nil {
		op.KubernetesNamespace, op.KubernetesPodName = a.pod.Namespace, a.pod.Name
		op.KubernetesPodLabels = map[string]string{}
		for _, l := range a.pod.Labels {
			k, v, _ := strings.Cut(l, ":")
			op.KubernetesPodLabels[k] = v
		}
	}
	d := r.p.Evaluate(&op)
	proc := event.Process{PID: r.pid, PPID: 1, Start: time.Duration(r.pid) * time.Millisecond, Comm: op.ProcessName}
	if a.interactive {
		proc.TTYMajor = 136
	}
	ev := event.Event{Kind: event.ProcessDecision, Time: time.Duration(r.pid) * time.Second, Process: proc, Op: a.op,
		Matched: d.Matched, Actions: d.Actions, Blocked: d.Actions.Has(policy.ActionBlock), Interactive: a.interactive}
	pv := proctree.Process{PID: r.pid, PPID: 1, Start: proc.Start, Executable: a.exe, Name: basename(a.exe),
		Interactive: a.interactive, TTYMajor: proc.TTYMajor, EntityID: fmt.Sprintf("ent-%d", r.pid)}
	leader := &proctree.Leader{Process: pv, SameAsProcess: true}
	view := &proctree.View{Process: pv, SessionLeader: leader, EntryLeader: leader, GroupLeader: leader}
	switch a.op.Type() {
	case policy.File:
		ev.Kind, ev.Path, ev.Hook = event.FileDecision, a.target, a.hook
	case policy.Network:
		ev.Kind, ev.Hook, ev.Source, ev.Destination = event.NetworkDecision, a.hook, a.src, a.dst
		ev.Protocol = map[string]event.Protocol{"tcp": event.ProtocolTCP, "udp": event.ProtocolUDP}[a.protocol]
		ev.Direction = map[policy.Op]event.Direction{policy.OpConnect: event.DirectionEgress, policy.OpAccept: event.DirectionIngress}[a.op]
	default:
		ev.Path = a.exe
	}
	ctx := &enrich.Context{Process: view}
	if a.image != "" {
		ctx.Container = &enrich.Container{ID: fmt.Sprintf("c%063d", len(a.image)), ImageName: a.image, ImageTag: a.tag}
	}
	ctx.Pod = a.pod
	if err := r.enc.EncodeAll(&ev, ctx, ecs.Meta{Namespace: "default"}, func(doc ecs.Doc) {
		r.buf.Write(doc.Body)
		r.buf.WriteByte('\n')
		r.n++
	}); err != nil {
		r.t.Fatal(err)
	}
	return d
}

func basename(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func read(t *testing.T, name string, data []byte) *Reader {
	t.Helper()
	var rd Reader
	if err := rd.Read(name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return &rd
}

func mustParse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, warnings, err := policy.Parse("test", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %v", w)
	}
	return p
}

const logAll = `process:
  selectors:
    - name: allExecs
      operation: [exec]
  responses:
    - match: [allExecs]
      actions: [log]
file:
  selectors:
    - name: allWrites
      operation: [createExecutable, modifyExecutable, createFile, modifyFile, deleteFile]
  responses:
    - match: [allWrites]
      actions: [log]
`

// A workload: nginx runs its binaries and writes its cache and logs; a
// debugging shell is interactive.
func workload(r *recorder) {
	img := "docker.io/library/nginx"
	for _, exe := range []string{"/usr/sbin/nginx", "/bin/sh", "/usr/bin/id", "/usr/sbin/nginx"} {
		r.record(act{op: policy.OpExec, exe: exe, image: img, tag: "1.27"})
	}
	r.record(act{op: policy.OpExec, exe: "/bin/bash", image: img, tag: "1.27", interactive: true})
	r.record(act{op: policy.OpCreateFile, exe: "/usr/sbin/nginx", target: "/var/cache/nginx/a", image: img, tag: "1.27", hook: 2})
	r.record(act{op: policy.OpModifyFile, exe: "/usr/sbin/nginx", target: "/var/log/nginx/access.log", image: img, tag: "1.27", hook: 1})
	r.record(act{op: policy.OpDeleteFile, exe: "/usr/sbin/nginx", target: "/var/cache/nginx/b", image: img, tag: "1.28", hook: 3})
	r.record(act{op: policy.OpExec, exe: "/usr/local/bin/redis-server", image: "redis"})
	r.record(act{op: policy.OpCreateFile, exe: "/usr/local/bin/redis-server", target: "/data/dump.rdb", image: "redis", hook: 6})
	// In a container the recording could not name (no cgroup2, no runtime
	// socket): no image, so no learned group covers it.
	r.record(act{op: policy.OpExec, exe: "/sbin/cron"})
}

// TestReplayReproducesDecisions records with the real encoder under a policy
// whose selectors use every field the documents carry, and checks that
// replaying the recording with the same policy gives back, document by
// document, the selectors the (simulated) kernel matched and whether it
// blocked.
func TestReplayReproducesDecisions(t *testing.T) {
	const pol = `process:
  selectors:
    - name: nginxExecs
      operation: [exec]
      containerImageName: [nginx]
    - name: fullName
      containerImageFullName: [docker.io/library/nginx]
      containerImageTag: ["1.27"]
    - name: shells
      operation: [exec]
      processName: [sh, bash]
    - name: interactive
      operation: [exec]
      sessionLeaderInteractive: true
    - name: appPods
      kubernetesPodLabel: ["app:web*"]
      kubernetesNamespace: [prod]
  responses:
    - match: [nginxExecs, fullName, appPods]
      actions: [log]
    - match: [shells]
      exclude: [interactive]
      actions: [alert, block]
    - match: [interactive]
      actions: [alert]
file:
  selectors:
    - name: cache
      targetFilePath: [/var/cache/nginx/*]
    - name: logs
      operation: [modifyFile]
      targetFilePath: [/var/log/**]
    - name: deletes
      operation: [deleteFile]
      targetFilePath: [/srv/**]
  responses:
    - match: [cache, logs]
      actions: [log]
    - match: [deletes]
      actions: [alert, block]
`
	r := newRecorder(t, pol)
	workload(r)
	pod := &enrich.Pod{Namespace: "prod", Name: "web-1", Labels: []string{"app:web-frontend", "tier:1"}}
	r.record(act{op: policy.OpExec, exe: "/bin/sh", image: "docker.io/acme/web", tag: "2", pod: pod})
	r.record(act{op: policy.OpDeleteFile, exe: "/bin/rm", target: "/srv/x", image: "docker.io/acme/web", pod: pod, hook: 3})

	rd := read(t, "rec.ndjson", r.buf.Bytes())
	if len(rd.Problems) > 0 {
		t.Fatalf("problems: %v", rd.Problems)
	}
	p := mustParse(t, pol)
	checked := 0
	for i := range rd.Records {
		rec := &rd.Records[i]
		d, _ := Decide(p, rec)
		got := p.MatchedSelectors(d)
		if !slices.Equal(got, rec.RecordedSelectors) {
			t.Errorf("%s:%d %s %s: replay matched %v, the recording %v", rec.File, rec.Line, rec.Op.Op, target(rec), got, rec.RecordedSelectors)
		}
		if d.Actions.Has(policy.ActionBlock) != rec.RecordedBlocked {
			t.Errorf("%s:%d: replay blocks %t, the recording %t", rec.File, rec.Line, d.Actions.Has(policy.ActionBlock), rec.RecordedBlocked)
		}
		checked++
	}
	// The recording policy does not make a document of every operation (cron
	// and the redis write match nothing); each one it made is replayed once,
	// though an alert that is also logged is two documents.
	if checked < 10 || rd.Duplicates == 0 {
		t.Errorf("replayed %d records, %d duplicates dropped, from %d documents", checked, rd.Duplicates, r.n)
	}
}

func TestReadFormats(t *testing.T) {
	r := newRecorder(t, logAll)
	workload(r)
	docs := bytes.Split(bytes.TrimSpace(r.buf.Bytes()), []byte("\n"))
	var hits, export bytes.Buffer
	var arr []json.RawMessage
	for _, d := range docs {
		fmt.Fprintf(&hits, `{"_index":".ds-logs-x","_id":"1","_source":%s}`+"\n", d)
		arr = append(arr, json.RawMessage(fmt.Sprintf(`{"_index":".ds-logs-x","_source":%s}`, d)))
	}
	resp, _ := json.MarshalIndent(map[string]any{"took": 1, "hits": map[string]any{"total": map[string]any{"value": len(arr)}, "hits": arr}}, "", "  ")
	export.Write(resp)
	bad := `
not json
{"hello":1}
{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":["file"],"action":"creation","type":["creation"]}}
{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":["file"],"action":"creation","type":["creation"]},"file":{"path":"/x"}}
`
	ecsRD := read(t, "docs.ndjson", r.buf.Bytes())
	want := len(ecsRD.Records)
	if want != 11 || len(ecsRD.Problems) != 0 {
		t.Fatalf("ECS: %d records (want 11), problems %v", want, ecsRD.Problems)
	}
	for name, data := range map[string][]byte{"hits.ndjson": hits.Bytes(), "export.json": export.Bytes()} {
		rd := read(t, name, data)
		if len(rd.Records) != want || len(rd.Problems) != 0 {
			t.Errorf("%s: %d records, want %d; problems %v", name, len(rd.Records), want, rd.Problems)
		}
		for i := range rd.Records {
			if fmt.Sprint(rd.Records[i].Op) != fmt.Sprint(ecsRD.Records[i].Op) {
				t.Errorf("%s: record %d is %+v, as NDJSON %+v", name, i, rd.Records[i].Op, ecsRD.Records[i].Op)
			}
		}
	}
	rd := read(t, "bad.ndjson", []byte(bad))
	if len(rd.Records) != 1 {
		t.Errorf("bad: %d records, want the one ECS file document with a path: %+v", len(rd.Records), rd.Records)
	}
	var got []string
	for _, p := range rd.Problems {
		got = append(got, p.String())
	}
	wantProblems := []string{
		"bad.ndjson:2: not a JSON object: invalid character 'o' in literal null (expecting 'u')",
		"bad.ndjson:3: not an ECS document (no @timestamp)",
		"bad.ndjson:4: file document without file.path",
	}
	if !slices.Equal(got, wantProblems) {
		t.Errorf("problems:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantProblems, "\n"))
	}
	// An ECS "creation" may be createFile or createExecutable.
	if c := rd.Records[0].Candidates; !slices.Equal(c, []policy.Op{policy.OpCreateFile, policy.OpCreateExecutable}) {
		t.Errorf("candidates of an ECS creation: %v", c)
	}
}

func TestReplayReport(t *testing.T) {
	r := newRecorder(t, logAll)
	workload(r)
	for range 3 {
		r.record(act{op: policy.OpExec, exe: "/usr/bin/curl", image: "docker.io/library/nginx", tag: "1.27"})
	}
	r.record(act{op: policy.OpCreateFile, exe: "/usr/bin/curl", target: "/usr/bin/payload", image: "docker.io/library/nginx", hook: 2})
	// Without cloud_defend.operation (documents of Elastic's own agent, or
	// recorded before it), a "creation" is createFile or createExecutable.
	rd := read(t, "rec.ndjson", operationRe.ReplaceAll(r.buf.Bytes(), nil))
	p := mustParse(t, `process:
  selectors:
    - name: tools
      operation: [exec]
      processExecutable: [/usr/bin/*]
    - name: id
      processExecutable: [/usr/bin/id]
    - name: nginx
      containerImageName: [nginx]
  responses:
    - match: [tools]
      exclude: [id]
      actions: [alert, block]
    - match: [nginx]
      actions: [log]
file:
  selectors:
    - name: binWrites
      operation: [createExecutable]
      targetFilePath: [/usr/bin/**]
  responses:
    - match: [binWrites]
      actions: [alert, block]
`)
	rep := Replay(p, rd)
	if !rep.WouldBlock() || rep.Totals.Block != 4 {
		t.Fatalf("totals %+v", rep.Totals)
	}
	tools := rep.Responses[0]
	if tools.Operations != 3 || tools.Block != 3 || tools.Alert != 3 || tools.Processes[0] != (Top{"/usr/bin/curl", 3}) {
		t.Errorf("tools response: %+v", tools)
	}
	nginx := rep.Responses[1]
	if nginx.Operations != 8 || nginx.Log != 8 || nginx.Images[0].Value != "docker.io/library/nginx:1.27" {
		t.Errorf("nginx response: %+v", nginx)
	}
	// The payload is a "creation": createFile would not be blocked,
	// createExecutable would; it counts as a block, marked ambiguous.
	bin := rep.Responses[2]
	if bin.Block != 1 || bin.Ambiguous != 1 || rep.Totals.Ambiguous != 1 || len(rep.Notes) != 1 {
		t.Errorf("binWrites: %+v, notes %v", bin, rep.Notes)
	}
	if len(rep.Blocked) != 4 || rep.Blocked[3].Path != "/usr/bin/payload" || !rep.Blocked[3].Ambiguous {
		t.Errorf("blocked: %+v", rep.Blocked)
	}
	var text bytes.Buffer
	rep.WriteText(&text, true)
	for _, want := range []string{"would log 8, alert 4, block 4", "processes: /usr/bin/curl (3)", "rec.ndjson:", `"/usr/bin/payload"`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back["totals"].(map[string]any)["block"] != float64(4) || len(back["blocked"].([]any)) != 4 {
		t.Errorf("json: %s", js)
	}

	// With it, the payload is exactly the createFile it was: not blocked.
	exact := Replay(p, read(t, "rec.ndjson", r.buf.Bytes()))
	if exact.Totals.Block != 3 || exact.Totals.Ambiguous != 0 {
		t.Errorf("with cloud_defend.operation: totals %+v", exact.Totals)
	}
}

var operationRe = regexp.MustCompile(`"operation":"[A-Za-z]+",?`)

// TestLearn learns from a recording, then replays it with the learned policy:
// nothing it saw is blocked, and a new binary or a write elsewhere is.
func TestLearn(t *testing.T) {
	r := newRecorder(t, logAll)
	workload(r)
	rd := read(t, "rec.ndjson", r.buf.Bytes())
	l, err := Learn(rd, LearnOptions{Block: true, Source: "rec.ndjson"})
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(l.YAML))
	if l.Groups != 2 || l.Uncovered != 1 || len(l.Widened) != 0 {
		t.Errorf("groups %d, uncovered %d, widened %v", l.Groups, l.Uncovered, l.Widened)
	}
	if rep := Replay(p, rd); rep.WouldBlock() {
		var b bytes.Buffer
		rep.WriteText(&b, true)
		t.Fatalf("the learned policy blocks its own recording:\n%s\n%s", l.YAML, b.String())
	}
	// New activity: a new binary in nginx, a write outside its directories,
	// and what one image did, done by the other.
	r2 := newRecorder(t, logAll)
	r2.record(act{op: policy.OpExec, exe: "/tmp/xmrig", image: "docker.io/library/nginx", tag: "1.27"})
	r2.record(act{op: policy.OpCreateFile, exe: "/bin/sh", target: "/etc/cron.d/x", image: "docker.io/library/nginx", hook: 2})
	r2.record(act{op: policy.OpExec, exe: "/usr/sbin/nginx", image: "redis"})
	r2.record(act{op: policy.OpModifyFile, exe: "/usr/sbin/nginx", target: "/var/cache/nginx/c", image: "docker.io/library/nginx", hook: 1})
	r2.record(act{op: policy.OpExec, exe: "/usr/bin/id", image: "docker.io/library/nginx", tag: "1.29"})
	rep := Replay(p, read(t, "new.ndjson", r2.buf.Bytes()))
	var paths []string
	for _, b := range rep.Blocked {
		paths = append(paths, b.Path)
	}
	if !slices.Equal(paths, []string{"/tmp/xmrig", "/etc/cron.d/x", "/usr/sbin/nginx"}) {
		t.Errorf("blocked %v; policy:\n%s", paths, l.YAML)
	}
	for _, want := range []string{`containerImageFullName: ["docker.io/library/nginx"]`, `containerImageName: ["redis"]`, `"/var/cache/nginx/*"`, "actions: [alert, block]"} {
		if !strings.Contains(string(l.YAML), want) {
			t.Errorf("policy lacks %s:\n%s", want, l.YAML)
		}
	}

	// Without --block: alerts only.
	l2, err := Learn(rd, LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p2 := mustParse(t, string(l2.YAML)); p2.Blocks(policy.Process) || p2.Blocks(policy.File) {
		t.Error("learned without Block, the policy blocks")
	}
}

// TestLearnWidens: past MaxValues, paths are merged into dir/* and then
// dir/**, each merge says what it replaced, and the recording still passes.
func TestLearnWidens(t *testing.T) {
	r := newRecorder(t, logAll)
	img := "docker.io/acme/app"
	for i := range 6 {
		r.record(act{op: policy.OpExec, exe: fmt.Sprintf("/usr/bin/tool%d", i), image: img})
		r.record(act{op: policy.OpCreateFile, exe: "/bin/app", target: fmt.Sprintf("/srv/data/d%d/f", i), image: img, hook: 2})
	}
	r.record(act{op: policy.OpExec, exe: "/bin/app", image: img})
	r.record(act{op: policy.OpExec, exe: "/opt/app/" + strings.Repeat("x", 250), image: img})
	rd := read(t, "rec.ndjson", r.buf.Bytes())
	l, err := Learn(rd, LearnOptions{Block: true, MaxValues: 3})
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(l.YAML))
	if rep := Replay(p, rd); rep.WouldBlock() {
		t.Fatalf("learned policy blocks its recording:\n%s", l.YAML)
	}
	y := string(l.YAML)
	for _, want := range []string{`"/usr/bin/*"`, `"/srv/data/**"`, `"/opt/app/*"`, "# widened to stay within 3 values: replaces /usr/bin/tool0, /usr/bin/tool1"} {
		if !strings.Contains(y, want) {
			t.Errorf("policy lacks %s:\n%s", want, y)
		}
	}
	if len(l.Widened) != 3 {
		t.Errorf("widened: %+v", l.Widened)
	}
	// Still not everything: a binary elsewhere is blocked.
	r2 := newRecorder(t, logAll)
	r2.record(act{op: policy.OpExec, exe: "/tmp/x", image: img})
	if !Replay(p, read(t, "new", r2.buf.Bytes())).WouldBlock() {
		t.Error("/tmp/x not blocked")
	}
}

func TestLearnByPodLabel(t *testing.T) {
	r := newRecorder(t, logAll)
	web := &enrich.Pod{Namespace: "prod", Name: "web-1", Labels: []string{"app:web", "pod-template-hash:abc"}}
	db := &enrich.Pod{Namespace: "prod", Name: "db-0", Labels: []string{"app:db"}}
	r.record(act{op: policy.OpExec, exe: "/bin/web", image: "docker.io/acme/web", pod: web})
	r.record(act{op: policy.OpExec, exe: "/bin/db", image: "docker.io/acme/db", pod: db})
	rd := read(t, "rec", r.buf.Bytes())
	l, err := Learn(rd, LearnOptions{PodLabel: "app", Block: true})
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(l.YAML))
	if Replay(p, rd).WouldBlock() || !strings.Contains(string(l.YAML), `kubernetesPodLabel: ["app:web"]`) {
		t.Errorf("policy:\n%s", l.YAML)
	}
	r2 := newRecorder(t, logAll)
	r2.record(act{op: policy.OpExec, exe: "/bin/db", image: "docker.io/acme/web", pod: web})
	if !Replay(p, read(t, "new", r2.buf.Bytes())).WouldBlock() {
		t.Error("db's binary in a web pod not blocked")
	}
}

func TestWiden(t *testing.T) {
	ex := func(ps ...string) []entry {
		var out []entry
		for _, p := range ps {
			out = append(out, entry{kind: policy.PathExact, path: p})
		}
		return out
	}
	cases := []struct {
		in   []entry
		max  int
		want string
	}{
		{ex("/a/b/c", "/a/b/d", "/a/e"), 2, "/a/b/*,/a/e"},
		{ex("/a/b/c", "/a/b/d", "/a/e"), 1, "/a/**"},
		{ex("/a/b/c", "/x/y"), 1, "/**"},
		{ex("/a", "/b", "/c/d"), 2, "/*,/c/d"},
		{[]entry{{dir: "/a/b", kind: policy.PathChildren}, {dir: "/a/c", kind: policy.PathChildren}, {dir: "/z", kind: policy.PathChildren}}, 2, "/a/**,/z/*"},
		{[]entry{{dir: "/a", kind: policy.PathChildren}, {dir: "/a/c", kind: policy.PathChildren}}, 1, "/a/**"},
	}
	for _, c := range cases {
		got, replaced := widen(c.in, c.max)
		var s []string
		for _, e := range got {
			s = append(s, e.String())
			for _, o := range c.in {
				covered := false
				for _, g := range got {
					covered = covered || g.covers(o)
				}
				if !covered {
					t.Errorf("%v: %s not covered by %v", c.in, o, got)
				}
			}
		}
		if strings.Join(s, ",") != c.want {
			t.Errorf("widen(%v, %d) = %v, want %s (replaced %v)", c.in, c.max, s, c.want, replaced)
		}
	}
}

func TestRecordingPolicy(t *testing.T) {
	p := RecordingPolicy()
	if p.Blocks(policy.Process) || p.Blocks(policy.File) {
		t.Fatal("the recording policy blocks")
	}
	for _, op := range []policy.Op{policy.OpFork, policy.OpExec, policy.OpCreateFile, policy.OpCreateExecutable, policy.OpModifyFile, policy.OpModifyExecutable, policy.OpDeleteFile} {
		o := policy.Operation{Op: op, ProcessExecutable: "/bin/x", TargetPath: "/x"}
		if d := p.Evaluate(&o); d.Actions&policy.ActionLog == 0 {
			t.Errorf("%v is not logged", op)
		}
	}
}

// TestReplayNetwork records connects, accepts and binds with the real
// encoder under a policy with a network section and replays them: each
// document reads back as the operation it was (protocol, ends, op), with
// the selectors the recording matched and its block; an Elastic Defend
// network event reads as well.
func TestReplayNetwork(t *testing.T) {
	const pol = `network:
  selectors:
    - name: anyNet
      operation: [connect, accept, bind]
    - name: metadata
      operation: [connect]
      destinationAddress: [169.254.169.254]
      destinationPort: [80]
      protocol: [tcp]
    - name: dns
      operation: [connect]
      destinationPort: [53]
      protocol: [udp]
    - name: peers
      operation: [accept]
      sourceAddress: ["2001:db8::/32"]
    - name: privileged
      operation: [bind]
      sourcePort: [1-1023]
  responses:
    - match: [anyNet]
      actions: [log]
    - match: [metadata]
      actions: [alert, block]
    - match: [peers, privileged]
      actions: [alert]
    - match: [dns]
      actions: [log]
`
	ap := netip.MustParseAddrPort
	r := newRecorder(t, pol)
	img := "docker.io/library/nginx"
	r.record(act{op: policy.OpConnect, exe: "/usr/bin/curl", image: img, protocol: "tcp", src: ap("10.0.0.7:40000"), dst: ap("169.254.169.254:80"), hook: event.HookSocketConnect})
	r.record(act{op: policy.OpConnect, exe: "/usr/bin/curl", image: img, protocol: "udp", dst: ap("10.96.0.10:53"), hook: event.HookSocketSendmsg})
	r.record(act{op: policy.OpAccept, exe: "/usr/sbin/nginx", image: img, protocol: "tcp", src: ap("[2001:db8::1]:5000"), dst: ap("[2001:db8::2]:443"), hook: event.HookSocketAccept})
	r.record(act{op: policy.OpBind, exe: "/usr/sbin/nginx", image: img, protocol: "tcp", src: ap("0.0.0.0:80"), hook: event.HookSocketBind})
	r.record(act{op: policy.OpExec, exe: "/usr/sbin/nginx", image: img}) // not logged: no process section

	rd := read(t, "rec.ndjson", r.buf.Bytes())
	if len(rd.Problems) > 0 {
		t.Fatalf("problems: %v", rd.Problems)
	}
	p := mustParse(t, pol)
	want := []struct {
		op           policy.Op
		target       string
		selectors    []string
		blocked      bool
		src, dst     netip.Addr
		sport, dport uint16
	}{
		{policy.OpConnect, "169.254.169.254:80/tcp", []string{"anyNet", "metadata"}, true, netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("169.254.169.254"), 40000, 80},
		{policy.OpConnect, "10.96.0.10:53/udp", []string{"anyNet", "dns"}, false, netip.Addr{}, netip.MustParseAddr("10.96.0.10"), 0, 53},
		{policy.OpAccept, "from [2001:db8::1]:5000/tcp", []string{"anyNet", "peers"}, false, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 5000, 443},
		{policy.OpBind, "0.0.0.0:80/tcp", []string{"anyNet", "privileged"}, false, netip.MustParseAddr("0.0.0.0"), netip.Addr{}, 80, 0},
	}
	if len(rd.Records) != len(want) || rd.Duplicates != 3 {
		t.Fatalf("%d records (%d duplicates), want %d (3): %+v", len(rd.Records), rd.Duplicates, len(want), rd.Records)
	}
	for i, w := range want {
		rec := &rd.Records[i]
		o := rec.Op
		if o.Op != w.op || target(rec) != w.target || o.SourceAddress != w.src || o.DestinationAddress != w.dst ||
			o.SourcePort != w.sport || o.DestinationPort != w.dport || o.ContainerImageName != "nginx" || len(rec.Candidates) != 0 {
			t.Errorf("record %d: %s %s %+v, want %s %s", i, o.Op, target(rec), o, w.op, w.target)
		}
		d, _ := Decide(p, rec)
		if got := p.MatchedSelectors(d); !slices.Equal(got, w.selectors) || !slices.Equal(rec.RecordedSelectors, w.selectors) {
			t.Errorf("record %d: replay matched %v, recorded %v, want %v", i, got, rec.RecordedSelectors, w.selectors)
		}
		if d.Actions.Has(policy.ActionBlock) != w.blocked || rec.RecordedBlocked != w.blocked {
			t.Errorf("record %d: replay blocks %t, recorded %t, want %t", i, d.Actions.Has(policy.ActionBlock), rec.RecordedBlocked, w.blocked)
		}
	}
	rep := Replay(p, rd)
	if rep.Operations["network"] != 4 || rep.Totals.Block != 1 || len(rep.Blocked) != 1 || rep.Blocked[0].Path != "169.254.169.254:80/tcp" {
		t.Errorf("report: operations %v, totals %+v, blocked %+v", rep.Operations, rep.Totals, rep.Blocked)
	}
	var text bytes.Buffer
	rep.WriteText(&text, true)
	if !strings.Contains(text.String(), "against 0 process, 0 file and 4 network operations") || !strings.Contains(text.String(), "network         1        1        1        1  metadata") {
		t.Errorf("report text:\n%s", text.String())
	}

	// Learning leaves network alone, and says so.
	l, err := Learn(read(t, "rec.ndjson", append(r.buf.Bytes(), execDoc(t)...)), LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Network != 4 || !strings.Contains(string(l.YAML), "4 recorded network operations are not learned") || strings.Contains(string(l.YAML), "network:") {
		t.Errorf("learned (network %d):\n%s", l.Network, l.YAML)
	}

	// Elastic Defend's network events read too; their other actions are not operations.
	endpoint := `{"@timestamp":"2026-01-02T03:00:00Z","event":{"category":["network"],"type":["start"],"action":"connection_attempted"},` +
		`"network":{"transport":"tcp","type":"ipv4","direction":"egress"},"source":{"ip":"10.0.0.7","port":40001},"destination":{"ip":"169.254.169.254","port":80},` +
		`"process":{"executable":"/usr/bin/curl","name":"curl","entity_id":"e1"}}
{"@timestamp":"2026-01-02T03:00:01Z","event":{"category":["network"],"type":["end"],"action":"disconnect_received"},"network":{"transport":"tcp"},"destination":{"ip":"169.254.169.254","port":80}}
{"@timestamp":"2026-01-02T03:00:02Z","event":{"category":["network"],"type":["start"],"action":"connection_attempted"},"network":{"transport":"icmp"},"destination":{"ip":"10.0.0.1"}}
`
	rd = read(t, "endpoint.ndjson", []byte(endpoint))
	if len(rd.Records) != 1 || rd.Records[0].Op.Op != policy.OpConnect || rd.Records[0].Op.DestinationPort != 80 || rd.Ignored["ecs network disconnect_received"] != 1 ||
		len(rd.Problems) != 1 || !strings.Contains(rd.Problems[0].Reason, `"icmp"`) {
		t.Errorf("endpoint documents: records %+v, ignored %v, problems %v", rd.Records, rd.Ignored, rd.Problems)
	}
	if d, _ := Decide(p, &rd.Records[0]); !d.Actions.Has(policy.ActionBlock) {
		t.Errorf("the endpoint's connect to the metadata service: %+v", d)
	}
}

// execDoc is one logged exec in an nginx container, something Learn can
// learn from beside the network documents.
func execDoc(t *testing.T) []byte {
	r := newRecorder(t, logAll)
	r.record(act{op: policy.OpExec, exe: "/usr/sbin/nginx", image: "docker.io/library/nginx"})
	return r.buf.Bytes()
}
