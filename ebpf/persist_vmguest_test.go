//go:build vmguest

package ebpf

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// persistPolicy blocks an exec of exe and any write below /locked.
func persistPolicy(exe string) string {
	return fmt.Sprintf(`process:
  selectors:
    - name: blockedExec
      operation: [exec]
      processExecutable: [%s]
  responses:
    - match: [blockedExec]
      actions: [alert, block]
file:
  selectors:
    - name: lockedWrites
      operation: [createFile, modifyFile]
      targetFilePath: [/locked/**]
  responses:
    - match: [lockedWrites]
      actions: [alert, block]
`, exe)
}

// daemonLine is what the persistd helper prints, one JSON object a line.
type daemonLine struct {
	Ready    bool      `json:"ready,omitempty"`
	Swapped  bool      `json:"swapped,omitempty"`
	Adoption *Adoption `json:"adoption,omitempty"`
	Gen      uint32    `json:"gen"`
	Kind     string    `json:"kind,omitempty"`
	Names    []string  `json:"names,omitempty"`
	Path     string    `json:"path,omitempty"`
	PPID     uint32    `json:"ppid,omitempty"`
	Blocked  bool      `json:"blocked,omitempty"`
	Err      string    `json:"err,omitempty"`
}

// persistDaemon is the test binary as a daemon (CLOUD_DEFEND_HELPER=persistd):
// it opens the engine pinned at PERSIST_PIN, swaps in PERSIST_POLICY, prints
// its adoption and "ready", then every decision it reads with its selector
// names. SIGHUP swaps the policy file in again; SIGTERM stops it normally.
func persistDaemon() int {
	out := json.NewEncoder(os.Stdout)
	var mu sync.Mutex
	say := func(l daemonLine) {
		mu.Lock()
		_ = out.Encode(l) // stdout is the test reading it; it is gone only when it stopped listening
		mu.Unlock()
	}
	e, err := Open(Options{PinPath: os.Getenv("PERSIST_PIN"), StateDir: os.Getenv("PERSIST_STATE"),
		ReplacePinnedMaps: os.Getenv("PERSIST_UPGRADE") == "1", FlushInterval: 5 * time.Millisecond})
	if err != nil {
		say(daemonLine{Err: err.Error()})
		return 1
	}
	a := e.Adoption()
	say(daemonLine{Adoption: &a})
	swap := func() error {
		src, err := os.ReadFile(os.Getenv("PERSIST_POLICY"))
		if err != nil {
			return err
		}
		p, _, err := policy.Parse("persist.yaml", src)
		if err != nil {
			return err
		}
		return e.Swap(p)
	}
	if err := swap(); err != nil {
		say(daemonLine{Err: err.Error()})
		return 1
	}
	go func() {
		for {
			ev, err := e.Read()
			if err != nil {
				return
			}
			if ev.Kind != event.ProcessDecision && ev.Kind != event.FileDecision {
				continue
			}
			l := daemonLine{Gen: ev.Generation, Kind: ev.Kind.String(), Path: ev.Path, PPID: ev.Process.PPID, Blocked: ev.Blocked}
			if l.Names, err = e.SelectorNames(&ev); err != nil {
				l.Err = err.Error()
			}
			say(l)
		}
	}()
	say(daemonLine{Ready: true, Gen: e.Generation()})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	for sig := range sigs {
		if sig == syscall.SIGTERM {
			e.Close()
			return 0
		}
		l := daemonLine{Swapped: true}
		if err := swap(); err != nil {
			l.Err = err.Error()
		}
		l.Gen = e.Generation()
		say(l)
	}
	return 0
}

// daemon is a running persistd helper.
type daemon struct {
	cmd   *exec.Cmd
	lines chan daemonLine
	done  chan struct{}
}

func startDaemon(t *testing.T, env ...string) *daemon {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), "CLOUD_DEFEND_HELPER=persistd"), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, lines: make(chan daemonLine, 1<<14), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l daemonLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				d.lines <- l
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.done
	})
	return d
}

// next returns the next line that ok accepts, failing on a daemon error.
func (d *daemon) next(t *testing.T, what string, ok func(*daemonLine) bool) daemonLine {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l := <-d.lines:
			if l.Err != "" && l.Kind == "" {
				t.Fatalf("daemon: %s", l.Err)
			}
			if ok(&l) {
				return l
			}
		case <-d.done:
			t.Fatalf("daemon exited waiting for %s", what)
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (d *daemon) ready(t *testing.T) (Adoption, uint32) {
	t.Helper()
	a := d.next(t, "adoption", func(l *daemonLine) bool { return l.Adoption != nil })
	r := d.next(t, "ready", func(l *daemonLine) bool { return l.Ready })
	return *a.Adoption, r.Gen
}

func (d *daemon) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		t.Fatalf("daemon did not stop on %v", sig)
	}
}

// refusals execs a blocked program in a container over and over until stop is
// closed, counting the execs and those that ran.
func refusals(t *testing.T, exe string, stop <-chan struct{}) (wait func() (n, ran int64)) {
	var total, ran atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			blocked, _, _ := execIn(t, workload{container: true}, exe)
			total.Add(1)
			if !blocked {
				ran.Add(1)
			}
		}
	}()
	return func() (int64, int64) {
		<-done
		return total.Load(), ran.Load()
	}
}

// TestVMPersist: the last policy outlives its daemon. kill -9 leaves a blocked
// exec and a blocked write refused for 30 s while the rest runs; a restarted
// daemon adopts the pinned state (its first swap is the next generation) and
// reads, with their selector names, the decisions made while none ran; a swap
// takes effect; an upgrade that replaces the maps hands over with no window
// (blocked execs loop throughout both handovers, and none runs); RemovePinned
// lifts it all.
func TestVMPersist(t *testing.T) {
	needVM(t)
	pin, err := os.MkdirTemp("/sys/fs/bpf", "persist")
	if err != nil {
		t.Fatal(err)
	}
	pin = filepath.Join(pin, "cloud-defend")
	state := t.TempDir()
	t.Cleanup(func() {
		if _, _, err := RemovePinned(pin, state); err != nil {
			t.Error(err)
		}
		_ = os.Remove(filepath.Dir(pin)) // may hold other pins
	})
	installExecutables(t, exitZero, "/usr/bin/tool-a", "/usr/bin/tool-b")
	if err := os.MkdirAll("/locked", 0o755); err != nil {
		t.Fatal(err)
	}
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(persistPolicy("/usr/bin/tool-a")), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PERSIST_PIN=" + pin, "PERSIST_STATE=" + state, "PERSIST_POLICY=" + polFile}
	ctr := workload{container: true}
	check := func(t *testing.T, when, blockedExe, allowedExe string) (execParent, writeParent int) {
		t.Helper()
		blocked, execParent, _ := execIn(t, ctr, blockedExe)
		if !blocked {
			t.Fatalf("%s: %s ran", when, blockedExe)
		}
		if blocked, _, _ := execIn(t, ctr, allowedExe); blocked {
			t.Fatalf("%s: %s was refused", when, allowedExe)
		}
		blocked, writeParent = shIn(t, ctr, "echo x > /locked/f")
		if !blocked {
			t.Fatalf("%s: a write below /locked went through", when)
		}
		if blocked, _ := shIn(t, ctr, "echo x > /tmp/persist-ok"); blocked {
			t.Fatalf("%s: a write to /tmp was refused", when)
		}
		return execParent, writeParent
	}

	d1 := startDaemon(t, env...)
	if a, gen := d1.ready(t); a.Adopted || gen != 0 {
		t.Fatalf("first daemon: adoption %+v, generation %d", a, gen)
	}
	check(t, "daemon running", "/usr/bin/tool-a", "/usr/bin/tool-b")
	d1.stop(t, syscall.SIGKILL)

	// 30 s without a daemon, sampled every second.
	var execParents, writeParents []int
	start := time.Now()
	for time.Since(start) < 30*time.Second {
		ep, wp := check(t, fmt.Sprintf("%.0f s after kill -9", time.Since(start).Seconds()), "/usr/bin/tool-a", "/usr/bin/tool-b")
		execParents, writeParents = append(execParents, ep), append(writeParents, wp)
		time.Sleep(time.Second)
	}
	t.Logf("no daemon for %v: %d samples, each a refused exec and write and an allowed exec and write", time.Since(start).Round(time.Second), len(execParents))

	// Restart while blocked execs keep coming.
	stop := make(chan struct{})
	wait := refusals(t, "/usr/bin/tool-a", stop)
	d2 := startDaemon(t, env...)
	a, gen := d2.ready(t)
	if !a.Adopted || a.FreshMaps || a.Generation != 0 || !a.Enforcing || a.Policy != "persist.yaml" || a.OldLinks == 0 {
		t.Fatalf("restart: adoption %+v", a)
	}
	if gen != 1 {
		t.Fatalf("restart: the first swap made generation %d, want 1", gen)
	}
	time.Sleep(time.Second) // execs under the new programs alone
	close(stop)
	if n, ran := wait(); ran != 0 || n == 0 {
		t.Fatalf("restart handover: %d of %d blocked execs ran", ran, n)
	}
	// The decisions made while no daemon ran, read from the pinned ring.
	want := map[string]bool{}
	for _, p := range execParents {
		want[fmt.Sprintf("%s %d", event.ProcessDecision, p)] = true
	}
	for _, p := range writeParents {
		want[fmt.Sprintf("%s %d", event.FileDecision, p)] = true
	}
	for len(want) > 0 {
		l := d2.next(t, fmt.Sprintf("%d decisions made while no daemon ran", len(want)), func(l *daemonLine) bool {
			return want[fmt.Sprintf("%s %d", l.Kind, l.PPID)]
		})
		wantNames := "blockedExec"
		if l.Kind == event.FileDecision.String() {
			wantNames = "lockedWrites"
		}
		if l.Gen != 0 || !l.Blocked || strings.Join(l.Names, ",") != wantNames || l.Err != "" {
			t.Fatalf("decision made while no daemon ran: %+v", l)
		}
		delete(want, fmt.Sprintf("%s %d", l.Kind, l.PPID))
	}

	// A swap takes effect.
	if err := os.WriteFile(polFile, []byte(persistPolicy("/usr/bin/tool-b")), 0o644); err != nil {
		t.Fatal(err)
	}
	d2.cmd.Process.Signal(syscall.SIGHUP)
	if l := d2.next(t, "swap", func(l *daemonLine) bool { return l.Swapped }); l.Gen != 2 || l.Err != "" {
		t.Fatalf("swap: %+v", l)
	}
	check(t, "after the swap", "/usr/bin/tool-b", "/usr/bin/tool-a")

	// Upgrade: stop normally, and start a build whose maps do not fit.
	stop = make(chan struct{})
	wait = refusals(t, "/usr/bin/tool-b", stop)
	d2.stop(t, syscall.SIGTERM)
	d3 := startDaemon(t, append(env, "PERSIST_UPGRADE=1")...)
	a, gen = d3.ready(t)
	if !a.Adopted || !a.FreshMaps || a.Generation != 2 || a.Policy != "persist.yaml" || a.OldLinks == 0 || gen != 3 {
		t.Fatalf("upgrade: adoption %+v, generation %d", a, gen)
	}
	time.Sleep(time.Second)
	close(stop)
	n, ran := wait()
	if ran != 0 || n == 0 {
		t.Fatalf("upgrade handover: %d of %d blocked execs ran", ran, n)
	}
	t.Logf("upgrade: %d unread records counted as dropped (%s); %d blocked execs across the handovers, none ran", a.Unread, a.Reason, n)
	check(t, "after the upgrade", "/usr/bin/tool-b", "/usr/bin/tool-a")
	d3.stop(t, syscall.SIGTERM)
	check(t, "upgraded daemon stopped", "/usr/bin/tool-b", "/usr/bin/tool-a")

	// Remove.
	if _, _, err := RemovePinned(pin, state); err != nil {
		t.Fatal(err)
	}
	if blocked, _, _ := execIn(t, ctr, "/usr/bin/tool-b"); blocked {
		t.Fatal("exec refused after RemovePinned")
	}
	if blocked, _ := shIn(t, ctr, "echo x > /locked/f"); blocked {
		t.Fatal("write refused after RemovePinned")
	}
	if left, err := os.ReadDir(filepath.Dir(pin)); err != nil || len(left) != 0 {
		t.Fatalf("bpffs after RemovePinned: %v %v", left, err)
	}
}
