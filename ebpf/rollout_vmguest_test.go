//go:build vmguest

package ebpf

import (
	"bytes"
	"fmt"
	"os"
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
	"github.com/cloud-defend/cloud-defend/rollout"
)

// The container of TestVMReplayAndLearn, as a runtime would name it. The VM
// has no container runtime to ask: the test gives the kernel engine its
// image (as the Kubernetes watch does on a node) and the documents the
// runtime's answer.
var replayImage = policy.Operation{ContainerImageName: "app", ContainerImageFullName: "registry.local/team/app", ContainerImageTag: "1.0"}

// recorder turns the engine's events into the documents the daemon writes
// (enrich → ecs, one NDJSON line each), for the container in cgroup cgid.
type recorder struct {
	e    *Engine
	cgid uint64
	enr  *enrich.Enricher
	enc  *ecs.Encoder
	buf  bytes.Buffer
	// blocked are the kernel's refusals in the container: "op path".
	blocked []string
}

func newRecorder(e *Engine, cgid uint64) *recorder {
	tab := proctree.New(proctree.Config{AgentID: "vm", ProcRoot: "/proc"})
	return &recorder{e: e, cgid: cgid, enr: enrich.New(tab, nil),
		enc: ecs.NewEncoder(ecs.Agent{ID: "vm", Version: "test"}, host.Host{}, nil, host.BootTime(), e.SelectorNames)}
}

func (r *recorder) emit(ev *event.Event, ctx *enrich.Context) {
	if ev.Process.CgroupID != r.cgid {
		return
	}
	if ctx == nil {
		ctx = &enrich.Context{}
	}
	ctx.Container = &enrich.Container{ID: "replay", Runtime: "test", ImageName: replayImage.ContainerImageFullName, ImageTag: replayImage.ContainerImageTag}
	if ev.Blocked {
		r.blocked = append(r.blocked, ev.Op.String()+" "+ev.Path)
	}
	if err := r.enc.EncodeAll(ev, ctx, ecs.Meta{Namespace: "vm"}, func(d ecs.Doc) {
		r.buf.Write(d.Body)
		r.buf.WriteByte('\n')
	}); err != nil {
		panic(err)
	}
}

// run runs script in the container and records until its sentinel exec has
// been read, then flushes what waits for context. The kernel's refusals are
// in r.blocked (the script goes on past them; its exit is the sentinel's).
func (r *recorder) run(t *testing.T, ch <-chan event.Event, w workload, script string) {
	t.Helper()
	shIn(t, w, script+"; /usr/bin/replay-sentinel")
	waitFor(t, ch, "the sentinel's exec", func(ev *event.Event) bool {
		r.enr.Handle(ev, r.emit)
		return ev.Kind == event.Exec && ev.Executable == "/usr/bin/replay-sentinel" && ev.Process.CgroupID == r.cgid
	})
	deadline := time.After(300 * time.Millisecond) // the sentinel's exit and end
	for done := false; !done; {
		select {
		case ev := <-ch:
			r.enr.Handle(&ev, r.emit)
		case <-deadline:
			done = true
		}
	}
	r.enr.Flush(r.emit)
}

func (r *recorder) read(t *testing.T, name string) *rollout.Reader {
	t.Helper()
	var rd rollout.Reader
	if err := rd.Read(name, bytes.NewReader(r.buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if len(rd.Problems) > 0 {
		t.Fatalf("%s: %v", name, rd.Problems)
	}
	return &rd
}

// TestVMReplayAndLearn holds policy test and policy learn to the kernel. A
// container's activity under a blocking policy is recorded as the daemon
// records it, and replaying the documents through the policy gives back
// exactly the kernel's refusals. An allowlist learned from a benign run, put in
// force, then lets that run through untouched, while the kernel refuses a
// binary and a write the workload never made.
func TestVMReplayAndLearn(t *testing.T) {
	needVM(t)
	installExecutables(t, exitZero, "/usr/bin/app-main", "/usr/bin/app-helper", "/usr/bin/replay-sentinel", "/usr/bin/app-new", "/opt/evil")
	for _, d := range []string{"/srv/app/data", "/srv/other", "/etc/app"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e, ch := openEngine(t, Options{})
	cg, cgid := newCgroup(t, "cd-replay")
	if err := e.SetContainer(cgid, replayImage); err != nil {
		t.Fatal(err)
	}
	w := workload{container: true, cgroup: cg}

	// Replay: the kernel's decisions come back.
	p := mustParse(t, `process:
  selectors:
    - name: everyProcess
      operation: [fork, exec]
    - name: evil
      operation: [exec]
      processExecutable: [/opt/evil]
  responses:
    - match: [everyProcess]
      actions: [log]
    - match: [evil]
      actions: [alert, block]
file:
  selectors:
    - name: everyFileChange
      operation: [createFile, createExecutable, modifyFile, modifyExecutable, deleteFile]
    - name: binDrift
      operation: [createExecutable, modifyExecutable]
      targetFilePath: [/usr/bin/**]
    - name: appConfig
      operation: [createFile, modifyFile]
      targetFilePath: [/etc/app/*]
  responses:
    - match: [everyFileChange]
      actions: [log]
    - match: [binDrift, appConfig]
      actions: [alert, block]
`)
	if err := e.Swap(p); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(e, cgid)
	rec.run(t, ch, w, "/usr/bin/app-main; echo x > /srv/app/data/f1; /opt/evil; cp /usr/bin/app-main /usr/bin/dropped; chmod +x /srv/app/data/f1; echo y > /etc/app/conf; rm -f /srv/app/data/f1")
	if len(rec.blocked) < 3 {
		t.Fatalf("the kernel refused %v; want the evil exec, the dropped binary and the config write at least", rec.blocked)
	}
	rep := rollout.Replay(p, rec.read(t, "vm-run.ndjson"))
	var replayed []string
	for _, b := range rep.Blocked {
		if b.Ambiguous {
			t.Errorf("replay of our own documents is ambiguous about %s %s", b.Operation, b.Path)
		}
		replayed = append(replayed, b.Operation+" "+b.Path)
	}
	slices.Sort(replayed)
	kernel := slices.Sorted(slices.Values(rec.blocked))
	if !slices.Equal(replayed, kernel) || rep.Totals.Block != len(kernel) {
		t.Errorf("replay blocks %v (%d), the kernel blocked %v", replayed, rep.Totals.Block, kernel)
	}
	t.Logf("kernel refusals %v; replay %+v", kernel, rep.Totals)

	// Learn from a benign run, then enforce what was learned.
	if err := e.Swap(rollout.RecordingPolicy()); err != nil {
		t.Fatal(err)
	}
	benign := "/usr/bin/app-main; /usr/bin/app-helper; echo x > /srv/app/data/f2; echo y >> /srv/app/data/f2"
	rec = newRecorder(e, cgid)
	if rec.run(t, ch, w, benign); len(rec.blocked) > 0 {
		t.Fatalf("the recording policy blocked %v", rec.blocked)
	}
	l, err := rollout.Learn(rec.read(t, "benign.ndjson"), rollout.LearnOptions{Block: true, Source: "a VM run"})
	if err != nil {
		t.Fatal(err)
	}
	learned, warnings, err := policy.Parse("learned.yaml", l.YAML)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("the learned policy: %v %v\n%s", err, warnings, l.YAML)
	}
	if err := e.Swap(learned); err != nil {
		t.Fatal(err)
	}
	rec = newRecorder(e, cgid)
	if rec.run(t, ch, w, benign); len(rec.blocked) > 0 {
		t.Errorf("the learned policy blocks the run it was learned from: %v\n%s", rec.blocked, l.YAML)
	}
	for _, step := range []struct{ script, want string }{
		{"/usr/bin/app-new", "exec /usr/bin/app-new"},
		{"echo z > /srv/other/f", "createFile /srv/other/f"},
	} {
		rec = newRecorder(e, cgid)
		if rec.run(t, ch, w, step.script); !slices.Contains(rec.blocked, step.want) {
			t.Errorf("%s under the learned policy: the kernel refused %v, want %q\n%s", step.script, rec.blocked, step.want, l.YAML)
		}
	}
	if t.Failed() {
		fmt.Println(strings.TrimSpace(string(l.YAML)))
	}
}
