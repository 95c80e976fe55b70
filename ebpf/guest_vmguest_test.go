//go:build vmguest

// The tests and benchmarks that run inside the VM (see TestInVM): built only into
// the guest's test binary, so the host never lists them as skipped.

package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// inVM is set by the VM harness's /init: the kernel there runs BPF LSM.
var inVM = os.Getenv("CLOUD_DEFEND_VM") == "1"

// needVM stops a guest test run anywhere but in the VM, where its kernel and
// filesystem changes belong.
func needVM(t testing.TB) {
	t.Helper()
	if !inVM {
		t.Fatal("the vmguest tests run in the VM: go test -run TestInVM ./ebpf")
	}
}

// Tests exec tiny static x86-64 programs written here, so every allowed exec
// succeeds the same way: exitZero exits 0; forker forks, then exits 0, or 77 when
// fork failed.
var (
	exitZero = []byte{0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05} // xor edi,edi; mov eax,60; syscall
	forker   = []byte{
		0xb8, 57, 0, 0, 0, 0x0f, 0x05, // mov eax,57 (fork); syscall
		0x48, 0x85, 0xc0, 0x78, 0x09, // test rax,rax; js fail
		0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05, // exit(0)
		0xbf, 77, 0, 0, 0, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05, // fail: exit(77)
	}
)

// elf wraps machine code into the smallest static ELF executable.
func elf(code []byte) []byte {
	const base, hdrs = 0x400000, 64 + 56
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) } // fixed-size values into a bytes.Buffer: no error
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(2))                // ET_EXEC
	w(uint16(62))               // EM_X86_64
	w(uint32(1))                // EV_CURRENT
	w(uint64(base + hdrs))      // entry
	w(uint64(64))               // phoff
	w(uint64(0))                // shoff
	w(uint32(0))                // flags
	w(uint16(64))               // ehsize
	w(uint16(56))               // phentsize
	w(uint16(1))                // phnum
	w([3]uint16{64, 0, 0})      // shentsize, shnum, shstrndx
	w(uint32(1))                // PT_LOAD
	w(uint32(5))                // R+X
	w(uint64(0))                // offset
	w(uint64(base))             // vaddr
	w(uint64(base))             // paddr
	w(uint64(hdrs + len(code))) // filesz
	w(uint64(hdrs + len(code))) // memsz
	w(uint64(0x1000))           // align
	b.Write(code)
	return b.Bytes()
}

func installExecutables(t testing.TB, code []byte, paths ...string) {
	t.Helper()
	elf := elf(code)
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Remove(p) // WriteFile keeps an existing file's mode
		if err := os.WriteFile(p, elf, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// imageCgroups makes a cgroup per generated image, with its metadata in the engine,
// and one without metadata (key ""), so workloads can run "in" any image.
func imageCgroups(t *testing.T, e *Engine, prefix string) map[string]*os.File {
	t.Helper()
	cgroups := map[string]*os.File{}
	for _, img := range append(slices.Clone(genImgs), "") {
		f, id := newCgroup(t, prefix+img)
		cgroups[img] = f
		if img != "" {
			if err := e.SetContainer(id, policy.Operation{ContainerImageName: img}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return cgroups
}

// workload is where an exec runs.
type workload struct {
	container   bool     // a new pid and mount namespace
	cgroup      *os.File // the cgroup to run in, or nil
	interactive bool     // a session with a controlling terminal
}

// newCgroup creates a cgroup v2 directory and returns it open and its id.
func newCgroup(t *testing.T, name string) (*os.File, uint64) {
	t.Helper()
	dir := "/sys/fs/cgroup/" + name
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, st.Ino
}

// execIn runs path in the workload and reports whether the kernel refused the exec
// with EPERM, the parent of the workload's process (for decisionsOf), and the
// program's exit code. In a container, busybox unshare starts on the host and its
// forked child execs path inside the new namespaces, so only that exec is the
// workload's.
func execIn(t *testing.T, w workload, path string) (blocked bool, parent, code int) {
	t.Helper()
	var cmd *exec.Cmd
	if w.container {
		cmd = exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", path)
	} else {
		cmd = exec.Command(path)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	attr := &syscall.SysProcAttr{}
	if w.cgroup != nil {
		attr.UseCgroupFD = true
		attr.CgroupFD = int(w.cgroup.Fd())
	}
	if w.interactive {
		pty, tty := openPTY(t)
		defer pty.Close()
		defer tty.Close()
		cmd.Stdin = tty
		attr.Setsid, attr.Setctty, attr.Ctty = true, true, 0
	}
	cmd.SysProcAttr = attr
	err := cmd.Run()
	var ee *exec.ExitError
	errors.As(err, &ee)
	switch {
	case err == nil:
		return false, cmd.Process.Pid, 0
	case ee != nil && w.container && strings.Contains(stderr.String(), "Operation not permitted"):
		return true, cmd.Process.Pid, ee.ExitCode()
	case errors.Is(err, syscall.EPERM):
		return true, 0, -1
	case ee != nil && stderr.Len() == 0:
		return false, cmd.Process.Pid, ee.ExitCode()
	}
	t.Fatalf("exec %s: %v: %s", path, err, stderr.String())
	return false, 0, 0
}

func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(pty.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(pty.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return pty, tty
}

// decisionsOf drains events until parent's exit and returns the decisions of the
// given kind (EventDecision by default) made for its children (the workload).
func decisionsOf(t *testing.T, ch <-chan event.Event, parent int, kind ...event.Kind) []event.Event {
	t.Helper()
	want := event.ProcessDecision
	if len(kind) > 0 {
		want = kind[0]
	}
	var out []event.Event
	waitFor(t, ch, "exit", func(ev *event.Event) bool {
		if ev.Kind == want && (ev.Process.PPID == uint32(parent) || ev.Process.PID == uint32(parent)) {
			out = append(out, *ev)
		}
		return ev.Kind == event.Exit && ev.Process.PID == uint32(parent)
	})
	return out
}

const scenarioPolicy = `process:
  selectors:
    - name: binDir
      operation: [exec]
      processExecutable: [/usr/bin/*]
    - name: deep
      processExecutable: [/opt/**]
    - name: byName
      processName: [nc]
    - name: interactiveShell
      operation: [exec]
      processExecutable: [/tmp/shell]
      sessionLeaderInteractive: true
    - name: nginx
      containerImageName: [nginx]
    - name: logTmp
      processExecutable: [/tmp/logged]
  responses:
    - match: [binDir, deep, byName, interactiveShell]
      exclude: [nginx]
      actions: [alert, block]
    - match: [logTmp]
      actions: [log]
`

func TestVMExecEnforcement(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if !e.LSM().Available || !e.Enforcing() {
		t.Fatalf("BPF LSM unavailable in the VM: %s", e.LSM().Reason)
	}
	p := mustParse(t, scenarioPolicy)
	if err := e.Swap(p); err != nil {
		t.Fatal(err)
	}
	installExecutables(t, exitZero, "/usr/bin/tool", "/usr/bin/sub/tool", "/opt/a/b/c", "/opt2/c", "/tmp/nc", "/tmp/ncat", "/tmp/shell", "/tmp/logged")
	plain, _ := newCgroup(t, "plain")
	nginx, nginxID := newCgroup(t, "nginx")
	if err := e.SetContainer(nginxID, policy.Operation{ContainerImageName: "nginx"}); err != nil {
		t.Fatal(err)
	}
	ctr := workload{container: true, cgroup: plain}
	cases := []struct {
		name    string
		w       workload
		path    string
		blocked bool
		actions policy.Actions
		matched []string
	}{
		{"direct child of /usr/bin", ctr, "/usr/bin/tool", true, policy.ActionAlert | policy.ActionBlock, []string{"binDir"}},
		{"grandchild of /usr/bin", ctr, "/usr/bin/sub/tool", false, 0, nil},
		{"below /opt", ctr, "/opt/a/b/c", true, policy.ActionAlert | policy.ActionBlock, []string{"deep"}},
		{"near-miss /opt2", ctr, "/opt2/c", false, 0, nil},
		{"process name", ctr, "/tmp/nc", true, policy.ActionAlert | policy.ActionBlock, []string{"byName"}},
		{"other name", ctr, "/tmp/ncat", false, 0, nil},
		{"shell without a terminal", ctr, "/tmp/shell", false, 0, nil},
		{"shell with a terminal", workload{container: true, cgroup: plain, interactive: true}, "/tmp/shell", true, policy.ActionAlert | policy.ActionBlock, []string{"interactiveShell"}},
		{"log only", ctr, "/tmp/logged", false, policy.ActionLog, []string{"logTmp"}},
		{"excluded image", workload{container: true, cgroup: nginx}, "/usr/bin/tool", false, 0, []string{"binDir", "nginx"}},
		{"host process", workload{}, "/usr/bin/tool", false, 0, nil},
		{"host process, /opt", workload{cgroup: plain}, "/opt/a/b/c", false, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked, parent, _ := execIn(t, c.w, c.path)
			if blocked != c.blocked {
				t.Fatalf("blocked = %v, want %v", blocked, c.blocked)
			}
			if parent == 0 {
				return
			}
			ds := decisionsOf(t, ch, parent)
			if c.actions == 0 {
				if len(ds) != 0 {
					t.Fatalf("unexpected decisions %+v", ds)
				}
				return
			}
			if len(ds) != 1 {
				t.Fatalf("%d decisions, want 1: %+v", len(ds), ds)
			}
			d := ds[0]
			names, err := e.SelectorNames(&d)
			if err != nil {
				t.Fatal(err)
			}
			if d.Actions != c.actions || d.Blocked != c.blocked || d.Path != c.path || !slices.Equal(names, c.matched) {
				t.Errorf("decision: actions %v blocked %v path %q selectors %v; want %v %v %q %v",
					d.Actions, d.Blocked, d.Path, names, c.actions, c.blocked, c.path, c.matched)
			}
			if d.Process.PIDNamespace == 0 || d.Interactive != c.w.interactive {
				t.Errorf("decision context: pidns %d interactive %v", d.Process.PIDNamespace, d.Interactive)
			}
		})
	}
	// Once the container's metadata is gone, the exclude no longer applies: fail closed.
	if err := e.RemoveContainer(nginxID); err != nil {
		t.Fatal(err)
	}
	if blocked, _, _ := execIn(t, workload{container: true, cgroup: nginx}, "/usr/bin/tool"); !blocked {
		t.Error("exec allowed after the container's metadata was removed")
	}
	s, err := e.Stats()
	if err != nil || s.Blocks == 0 || s.RingbufDrops != 0 || s.PathErrors != 0 {
		t.Errorf("stats %+v %v", s, err)
	}
}

func TestVMDryRun(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{DryRun: true})
	if e.Enforcing() {
		t.Fatal("dry run enforces")
	}
	if err := e.Swap(mustParse(t, scenarioPolicy)); err != nil {
		t.Fatal(err)
	}
	installExecutables(t, exitZero, "/usr/bin/tool")
	blocked, parent, _ := execIn(t, workload{container: true}, "/usr/bin/tool")
	if blocked {
		t.Fatal("dry run blocked")
	}
	ds := decisionsOf(t, ch, parent)
	if len(ds) != 1 || ds[0].Blocked || !ds[0].Actions.Has(policy.ActionBlock) {
		t.Fatalf("dry-run decisions %+v", ds)
	}
}

// TestVMDifferential checks the kernel's decisions against policy.Evaluate on
// random policies and execs in containers with and without image metadata.
func TestVMDifferential(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	installExecutables(t, forker, genFiles...)
	cgroups := imageCgroups(t, e, "img-")
	cases := 0
	for range 60 {
		src := genPolicy(r, 16)
		p := mustParse(t, src)
		if err := e.Swap(p); err != nil {
			t.Fatal(err)
		}
		for range 15 {
			// Every exec'd program forks: each case checks an exec and, unless the
			// exec was blocked, the fork that follows it.
			op := genOp(r)
			op.ExecutableIsMemfd = false
			op.ExecutableLayer = "" // these workloads run on the VM's rootfs, not an overlay
			execOp, forkOp := op, op
			execOp.Op, forkOp.Op = policy.OpExec, policy.OpFork
			wantExec := p.Evaluate(&execOp)
			execBlocked := wantExec.Actions.Has(policy.ActionBlock)
			var wantFork policy.Decision
			if !execBlocked {
				wantFork = p.Evaluate(&forkOp)
			}
			w := workload{container: true, cgroup: cgroups[op.ContainerImageName], interactive: op.SessionLeaderInteractive}
			blocked, parent, code := execIn(t, w, op.ProcessExecutable)
			ds := decisionsOf(t, ch, parent)
			cases++
			fail := func(format string, args ...any) {
				t.Fatalf("seed %d, case %d: %+v\n%s\nevaluator: exec matched %b actions %v; fork matched %b actions %v\npolicy:\n%s",
					seed, cases, op, fmt.Sprintf(format, args...), wantExec.Matched, wantExec.Actions, wantFork.Matched, wantFork.Actions, src)
			}
			if blocked != execBlocked {
				fail("kernel blocked the exec: %v", blocked)
			}
			if forkBlocked := code == 77; !blocked && forkBlocked != wantFork.Actions.Has(policy.ActionBlock) {
				fail("kernel blocked the fork: %v (exit %d)", forkBlocked, code)
			}
			for _, c := range []struct {
				op   policy.Op
				want policy.Decision
			}{{policy.OpExec, wantExec}, {policy.OpFork, wantFork}} {
				var got []event.Event
				for _, d := range ds {
					if d.Op == c.op {
						got = append(got, d)
					}
				}
				switch {
				case c.want.Actions == 0 && len(got) != 0:
					fail("kernel decided a %v: %+v", c.op, got)
				case c.want.Actions != 0 && len(got) != 1:
					fail("kernel made %d %v decisions", len(got), c.op)
				case c.want.Actions != 0 && (got[0].Matched != c.want.Matched || got[0].Actions != c.want.Actions || got[0].Generation != e.Generation()):
					fail("kernel %v: matched %b actions %v generation %d", c.op, got[0].Matched, got[0].Actions, got[0].Generation)
				}
			}
		}
	}
	t.Logf("%d cases agree (seed %d)", cases, seed)
}

// TestVMHotSwap execs continuously while another goroutine flips between a blocking
// and a logging policy: every exec's outcome must be the one its deciding
// generation prescribes.
func TestVMHotSwap(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	const base = "process:\n  selectors:\n    - name: binDir\n      processExecutable: [/usr/bin/*]\n  responses:\n    - match: [binDir]\n      actions: [%s]\n"
	blocking := mustParse(t, fmt.Sprintf(base, "alert, block"))
	logging := mustParse(t, fmt.Sprintf(base, "log"))
	if err := e.Swap(logging); err != nil {
		t.Fatal(err)
	}
	installExecutables(t, exitZero, "/usr/bin/tool")
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := blocking
			if n%2 == 1 {
				p = logging
			}
			if err := e.Swap(p); err != nil {
				t.Error(err)
				return
			}
			n++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	ctr := workload{container: true}
	gens := map[uint32]bool{}
	var nblocked int
	for i := range 300 {
		blocked, parent, _ := execIn(t, ctr, "/usr/bin/tool")
		ds := decisionsOf(t, ch, parent)
		if len(ds) != 1 {
			t.Fatalf("exec %d: %d decisions", i, len(ds))
		}
		d := ds[0]
		p := e.PolicyOf(d.Generation)
		if p == nil {
			t.Fatalf("exec %d: generation %d forgotten", i, d.Generation)
		}
		want := p.Blocks(policy.Process)
		if blocked != want || d.Blocked != want || d.Actions != p.Responses(policy.Process)[0].Actions {
			t.Fatalf("exec %d under generation %d: blocked %v (event %v, actions %v), policy blocks %v", i, d.Generation, blocked, d.Blocked, d.Actions, want)
		}
		gens[d.Generation] = true
		if blocked {
			nblocked++
		}
	}
	close(stop)
	n := <-swapped
	t.Logf("%d swaps; 300 execs decided under %d generations, %d blocked", n, len(gens), nblocked)
	if len(gens) < 10 || nblocked == 0 || nblocked == 300 {
		t.Fatalf("the swaps did not interleave with the execs: %d generations, %d blocked", len(gens), nblocked)
	}
}

func TestVMForkEnforcement(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, `process:
  selectors:
    - name: forkers
      operation: [fork]
      processExecutable: [/usr/bin/forker]
  responses:
    - match: [forkers]
      actions: [alert, block]
`)); err != nil {
		t.Fatal(err)
	}
	installExecutables(t, forker, "/usr/bin/forker", "/tmp/forker")
	for _, c := range []struct {
		name       string
		w          workload
		path       string
		forkFailed bool
	}{
		{"selected executable", workload{container: true}, "/usr/bin/forker", true},
		{"other executable", workload{container: true}, "/tmp/forker", false},
		{"host process", workload{}, "/usr/bin/forker", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			blocked, parent, code := execIn(t, c.w, c.path)
			if blocked || (code == 77) != c.forkFailed || (code != 0 && code != 77) {
				t.Fatalf("exec blocked %v, exit %d; want fork failed %v", blocked, code, c.forkFailed)
			}
			ds := decisionsOf(t, ch, parent)
			if !c.forkFailed {
				if len(ds) != 0 {
					t.Fatalf("decisions %+v", ds)
				}
				return
			}
			if len(ds) != 1 || ds[0].Op != policy.OpFork || !ds[0].Blocked || ds[0].Path != c.path || ds[0].Process.Comm != "forker" {
				t.Fatalf("decisions %+v", ds)
			}
		})
	}
}

// TestMain turns the test binary into a helper process when TestVMMemfdExec starts
// it with CLOUD_DEFEND_HELPER=memfd: it execs a program from a memfd and exits 77
// when the kernel refuses with EPERM.
func TestMain(m *testing.M) {
	testHelper()
	switch os.Getenv("CLOUD_DEFEND_HELPER") {
	case "attack":
		os.Exit(attackMain(os.Args[1:]))
	case "memfd":
		os.Exit(execFromMemfd())
	case "persistd":
		os.Exit(persistDaemon())
	case "fileloop":
		os.Exit(fileLoop(os.Getenv("LOOP_KIND"), os.Getenv("LOOP_N")))
	case "deepcreate":
		// Down a tree deeper than PATH_MAX by relative chdirs, then create a file.
		if err := os.Chdir(os.Getenv("DEEP_BASE")); err != nil {
			os.Exit(78)
		}
		for range deepLevels {
			if err := os.Chdir(deepComponent); err != nil {
				os.Exit(78)
			}
		}
		if err := os.WriteFile("new", []byte("x\n"), 0o644); errors.Is(err, syscall.EPERM) {
			fmt.Fprintln(os.Stderr, "new: Operation not permitted") // as busybox says it
			os.Exit(1)
		} else if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "truncate":
		// truncate(2) by path: the only way to reach path_truncate without a write open.
		if err := syscall.Truncate(os.Getenv("TRUNCATE_PATH"), 0); errors.Is(err, syscall.EPERM) {
			os.Exit(77)
		} else if err != nil {
			os.Exit(78)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A tree deeper and longer than PATH_MAX: deepLevels components of deepComponent.
const deepLevels = 220

var deepComponent = strings.Repeat("q", 20)

// mkdirDeep makes that tree below base, by descriptors (paths that long are refused).
func mkdirDeep(t *testing.T, base string) string {
	t.Helper()
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(base, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range deepLevels {
		if err := unix.Mkdirat(fd, deepComponent, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, deepComponent, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	return base + strings.Repeat("/"+deepComponent, deepLevels)
}

func execFromMemfd() int {
	fd, err := unix.MemfdCreate("payload", 0)
	if err != nil {
		return 78
	}
	if _, err := unix.Write(fd, elf(exitZero)); err != nil {
		return 78
	}
	err = syscall.Exec(fmt.Sprintf("/proc/self/fd/%d", fd), []string{"payload"}, nil)
	if errors.Is(err, syscall.EPERM) {
		return 77
	}
	return 78
}

func TestVMMemfdExec(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, `process:
  selectors:
    - name: fileless
      operation: [execMemFd]
  responses:
    - match: [fileless]
      actions: [alert, block]
`)); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv("CLOUD_DEFEND_HELPER", "memfd")
	defer os.Unsetenv("CLOUD_DEFEND_HELPER")
	// The helper's own exec is an ordinary one: execMemFd lets it through.
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", self)
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 77 {
		t.Fatalf("memfd exec was not refused with EPERM: %v", err)
	}
	ds := decisionsOf(t, ch, cmd.Process.Pid)
	if len(ds) != 1 {
		t.Fatalf("decisions %+v", ds)
	}
	d := ds[0]
	if !d.Memfd || !d.Blocked || d.Op != policy.OpExec || !strings.HasPrefix(d.Path, "/memfd:payload") {
		t.Fatalf("decision %+v", d)
	}
	t.Logf("fileless exec refused: %s", d.Path)
}

// TestVMExecutableLayer checks the drift signal on the guest's overlayfs, a module
// there (its BTF comes from the module, not the kernel image): on exec events and on
// the decision for an exec in a container.
func TestVMExecutableLayer(t *testing.T) {
	needVM(t)
	merged := overlayRoot(t, elf(exitZero))
	e, ch := openEngine(t, Options{})
	checkLayers(t, ch, merged)
	if err := e.Swap(mustParse(t, fmt.Sprintf(`process:
  selectors:
    - name: rootfs
      operation: [exec]
      processExecutable: [%s/bin/*]
  responses:
    - match: [rootfs]
      actions: [alert]
`, merged))); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]event.Layer{"image": event.LayerImage, "changed": event.LayerModified, "added": event.LayerAdded} {
		_, parent, _ := execIn(t, workload{container: true}, filepath.Join(merged, "bin", path))
		ds := decisionsOf(t, ch, parent)
		if len(ds) != 1 || ds[0].Layer != want {
			t.Fatalf("exec of %s in a container: decisions %+v, want one with layer %q", path, ds, want)
		}
	}
}

// TestVMBlockDrift: executableLayer blocks running what was added or changed
// after the container started, and nothing from the image.
func TestVMBlockDrift(t *testing.T) {
	needVM(t)
	merged := overlayRoot(t, elf(exitZero))
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, `process:
  selectors:
    - name: drift
      operation: [exec]
      executableLayer: [added, modified]
  responses:
    - match: [drift]
      actions: [alert, block]
`)); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]event.Layer{"image": event.LayerImage, "changed": event.LayerModified, "added": event.LayerAdded} {
		blocked, parent, _ := execIn(t, workload{container: true}, filepath.Join(merged, "bin", path))
		ds := decisionsOf(t, ch, parent)
		if want == event.LayerImage {
			if blocked || len(ds) != 0 {
				t.Errorf("exec of an image binary: blocked %v, decisions %+v", blocked, ds)
			}
			continue
		}
		if !blocked || len(ds) != 1 || !ds[0].Blocked || ds[0].Layer != want {
			t.Errorf("exec of the %s binary: blocked %v, decisions %+v; want blocked with layer %v", path, blocked, ds, want)
		}
	}
	// On the host nothing is in scope.
	if blocked, _, _ := execIn(t, workload{}, filepath.Join(merged, "bin", "added")); blocked {
		t.Error("a host exec of the added binary was blocked")
	}
}
