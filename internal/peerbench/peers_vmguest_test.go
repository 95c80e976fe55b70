//go:build vmguest

package peerbench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/fileloop"
)

func TestMain(m *testing.M) {
	if os.Getenv("PEERBENCH_HELPER") == "fileloop" {
		os.Exit(fileLoop(os.Getenv("LOOP_KIND"), os.Getenv("LOOP_N")))
	}
	os.Exit(m.Run())
}

// exitZero is the smallest program: exit(0).
var exitZero = []byte{0x31, 0xff, 0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05}

func elf(code []byte) []byte {
	const base, hdrs = 0x400000, 64 + 56
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) } // a bytes.Buffer does not fail
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(2))
	w(uint16(62))
	w(uint32(1))
	w(uint64(base + hdrs))
	w(uint64(64))
	w(uint64(0))
	w(uint32(0))
	w(uint16(64))
	w(uint16(56))
	w(uint16(1))
	w([3]uint16{64, 0, 0})
	w(uint32(1))
	w(uint32(5))
	w(uint64(0))
	w(uint64(base))
	w(uint64(base))
	w(uint64(hdrs + len(code)))
	w(uint64(hdrs + len(code)))
	w(uint64(0x1000))
	b.Write(code)
	return b.Bytes()
}

// The loops' files live under /etc, which every agent watches for writes (as
// auditd's -w /etc -p wa): the write loops are the events each agent is there
// to report.
const benchDir = "/etc/peerbench"

var loops = []string{"Exec", "Fork", "File/open-ro", "File/open-wr", "File/create-unlink", "File/chmod", "File/rename"}

// BenchmarkVMPeers runs, for each agent in turn (none first), the process and
// file loops with the agent running, then a load phase of paced container execs
// (about 5,000 process events/s of guest time: fork, exec, exit) measuring the
// agent's CPU time, memory and losses. Every time is the guest's clock (an
// instruction count under -icount), the same for every column: the loop's wall
// time, which includes whatever the agent's threads and the kernel's audit
// machinery run meanwhile on the one CPU.
func BenchmarkVMPeers(b *testing.B) {
	if os.Getenv("CLOUD_DEFEND_VM") != "1" {
		b.Fatal("runs in the VM: go run mage.go benchPeers")
	}
	var cfg Config
	data, err := os.ReadFile(ConfigPath)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		b.Fatal(err)
	}
	for peer, why := range cfg.Skipped {
		b.Logf("PEER-SKIPPED %s: %s", peer, why)
	}
	setupGuest(b, len(cfg.Agents))
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for i, name := range cfg.Agents {
		b.Run(name, func(b *testing.B) {
			execRuns := 0
			a, err := startAgent(name, i)
			if err != nil {
				b.Logf("PEER-FAILED %s: %v", name, err)
				b.Skip()
			}
			defer a.stop()
			for _, loop := range loops {
				b.Run(loop, func(b *testing.B) {
					if kind, ok := strings.CutPrefix(loop, "File/"); ok {
						before := a.settled(fileOps)
						runFileLoop(b, self, kind)
						defer func() {
							if a.fileOp == nil {
								return
							}
							// After the drain: what the agent reported of the loop's operations.
							b.ReportMetric(float64(a.settled(fileOps)-before)/float64(b.N*FileScale), "reports/fileop")
						}()
					} else {
						body := "( : )"
						if loop == "Exec" {
							body = execMarker(i)
							execRuns += b.N
						}
						runShellLoop(b, body)
					}
					// The agent's work left when the loop ends (events queued in the
					// kernel or in its own buffers): not in the loop's time, so
					// reported beside it, and waited out before the next loop.
					b.StopTimer()
					b.ReportMetric(float64(a.quiesce().Nanoseconds())/float64(b.N), "drain-ns/op")
				})
			}
			if name == "none" {
				return
			}
			// Every run of the Exec loop (b.N=1 first, then -test.count runs of
			// b.N) should be in the agent's output by now: it drained after each.
			if n := a.count(execMarker(i)); n != execRuns {
				fmt.Printf("PEER-NOTE %s: %d of the Exec loop's %d marker execs in its output\n", name, n, execRuns)
			}
			loadPhase(b, a, i, cfg.Load)
		})
	}
}

func execMarker(i int) string  { return fmt.Sprintf("/usr/bin/bench-exe-%d", i) }
func loadMarker(i int) string  { return fmt.Sprintf("/usr/bin/load-mark-%d", i) }
func readyMarker(i int) string { return fmt.Sprintf("/usr/bin/ready-mark-%d", i) }

// setupGuest writes what the agents expect of a Debian system (users and groups
// by name), the loops' files and the marker programs, before any agent watches.
func setupGuest(b *testing.B, agents int) {
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		b.Fatal(err)
	}
	for p, s := range map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"/etc/group":  "root:x:0:\nadm:x:4:\nnogroup:x:65534:\n",
	} {
		if _, err := os.Stat(p); err != nil {
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, d := range []string{benchDir, "/usr/bin", "/var/log/audit", "/var/log/peers", "/run/cloud-defend"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	// Tetragon's metrics are read over loopback.
	if out, err := exec.Command("/bin/busybox", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		b.Logf("ip link set lo up: %v: %s", err, out)
	}
	for _, p := range []string{"passwd", "data", "a"} {
		if err := os.WriteFile(filepath.Join(benchDir, p), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	prog := elf(exitZero)
	for i := range agents {
		for _, p := range []string{execMarker(i), loadMarker(i), readyMarker(i)} {
			if err := os.WriteFile(p, prog, 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func inContainer(args ...string) *exec.Cmd {
	return exec.Command("/bin/busybox", append([]string{"unshare", "-p", "-m", "-f", "--"}, args...)...)
}

func runShellLoop(b *testing.B, body string) {
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done", b.N, body)
	cmd := inContainer("/bin/busybox", "sh", "-c", script)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "loop-ns/op")
}

func runFileLoop(b *testing.B, self, kind string) {
	os.Remove(benchDir + "/b")
	os.Remove(benchDir + "/new")
	if err := os.WriteFile(benchDir+"/a", []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	ops := b.N * FileScale
	cmd := inContainer(self)
	cmd.Env = append(os.Environ(), "PEERBENCH_HELPER=fileloop", "LOOP_KIND="+kind, "LOOP_N="+strconv.Itoa(ops))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("file loop printed %q", out)
	}
	// Per FileScale operations, as a process loop's iteration: the ratios use it.
	b.ReportMetric(ns/float64(b.N), "loop-ns/op")
}

// fileLoop is ebpf's file benchmark loop (internal/fileloop) on the files under
// benchDir.
func fileLoop(kind, count string) int {
	return fileloop.Run(kind, count, fileloop.Paths{Read: benchDir + "/passwd", Write: benchDir + "/data", New: benchDir + "/new",
		A: benchDir + "/a", B: benchDir + "/b"})
}

// loadPhase runs execs of the agent's load marker in a container as fast as the
// guest can (fork, exec and exit of each: about 2,000-2,500 process events/s of
// guest time under TCG, short of the 5,000/s BenchmarkDaemonCPU paces on a real
// host, so the CPU share at 5,000/s is extrapolated from the cost per event, as
// there), and reports the agent's CPU time (all its threads, user and kernel, from
// schedstat) per process event, the kernel threads working for it (auditd's
// kauditd), its resident memory, its own loss counter and the marker execs missing
// from its output.
func loadPhase(b *testing.B, a *agent, i, n int) {
	a.quiesce()
	lost0, _ := a.lost()
	cpu0 := a.cpu()
	kt0 := a.kthreadCPU()
	batches := (n + 16) / 17
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do for j in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17; do %s; done; i=$((i+1)); done", batches, loadMarker(i))
	start := time.Now()
	if out, err := inContainer("/bin/busybox", "sh", "-c", script).CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	elapsed := time.Since(start)
	execs := batches * 17
	want := execs
	// Wait for the agent to write what it saw (its output lags the kernel).
	got := 0
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if got = a.count(loadMarker(i)); got >= want {
			break
		}
	}
	a.quiesce() // what the agent does for these execs after the loop counts too
	cpu := a.cpu() - cpu0
	kt := a.kthreadCPU() - kt0
	lost1, lostWhat := a.lost()
	events := float64(3 * execs) // fork, exec, exit of each marker process
	// One line a run, parsed by mage's peer table (a parent benchmark reports no metrics).
	fmt.Printf("PEER-LOAD %s agent-ns/event=%.0f %%core@5k-events/s=%.2f kthread-ns/event=%.0f events/s=%.0f MiB-rss=%.1f MiB-anon=%.1f lost=%d missing-execs=%d execs=%d\n",
		a.name, float64(cpu)/events, float64(cpu)/events*5000/1e9*100, float64(kt)/events, events/elapsed.Seconds(), float64(a.memKB("VmRSS:"))/1024, float64(a.memKB("RssAnon:"))/1024,
		lostDelta(lost0, lost1), want-got, want)
	b.Logf("PEER-LOAD %s: %d of %d marker execs in its output; its loss counter (%s) rose by %d", a.name, got, want, lostWhat, lost1-lost0)
}

// lostDelta is the rise of a loss counter, -1 when it cannot be read.
func lostDelta(before, after int64) int64 {
	if before < 0 || after < 0 {
		return -1
	}
	return after - before
}

// agent is one running agent.
type agent struct {
	name     string
	procs    []*exec.Cmd
	out      string   // its event output file
	markers  []string // the markers count looks for
	seen     map[string]int
	offset   int64
	kthreads []string // names of kernel threads working for it
	warned   bool
	match    func(line, marker string) bool // does this output line report an exec of marker?
	fileOp   func(line string) bool         // does it report an operation on a file under benchDir (one line per operation)?
	// lastMetrics is the newest of our metrics documents count has read.
	lastMetrics string
	lostf       func() (int64, string) // its own loss counter and what it is
	stopf       func()
}

func (a *agent) stop() {
	if a.stopf != nil {
		a.stopf()
	}
	// The guest's files are in its memory: the next agents need it.
	defer func() {
		if a.out != "" {
			os.Remove(a.out)
		}
	}()
	for _, p := range a.procs {
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}

// fileOps is count's key for the reports of operations on the loops' files.
const fileOps = "\x00file-ops"

// count is how many of the agent's output lines so far report an exec of marker
// (or, for fileOps, an operation on a file under benchDir).
// Each agent writes one file, never rotated (rotation would take lines away from
// the count), read once: from where the last count stopped, every whole line
// checked against every marker.
func (a *agent) count(marker string) int {
	if a.out == "" {
		return 0
	}
	if a.seen == nil {
		a.seen = map[string]int{}
	}
	f, err := os.Open(a.out)
	if err != nil {
		return a.seen[marker]
	}
	defer f.Close()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return a.seen[marker]
	}
	data, _ := io.ReadAll(f)
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return a.seen[marker]
	}
	a.offset += int64(end + 1)
	for _, line := range strings.Split(string(data[:end]), "\n") {
		if a.fileOp != nil && a.fileOp(line) {
			a.seen[fileOps]++
		}
		if strings.Contains(line, `"dataset":"cloud_defend.metrics"`) {
			a.lastMetrics = line
		}
		for _, m := range a.markers {
			if strings.Contains(line, m) && a.match(line, m) {
				a.seen[m]++
			}
		}
	}
	return a.seen[marker]
}

// quiesce waits until the agent's threads (and its kernel threads) use less than
// 5% of the CPU over 20 ms (at most 60 s), and returns how long it was busy before that.
func (a *agent) quiesce() time.Duration {
	if len(a.procs) == 0 {
		return 0
	}
	start := time.Now()
	for deadline := start.Add(60 * time.Second); time.Now().Before(deadline); {
		t0, c0 := time.Now(), a.cpu()+a.kthreadCPU()
		time.Sleep(20 * time.Millisecond)
		if c := a.cpu() + a.kthreadCPU() - c0; float64(c) < 0.05*float64(time.Since(t0)) {
			return t0.Sub(start)
		}
	}
	return time.Since(start)
}

// settled is count once it has stopped growing for two seconds (its output is
// written behind its work; at most 20 s).
func (a *agent) settled(marker string) int {
	n := a.count(marker)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		m := a.count(marker)
		if m == n {
			break
		}
		n = m
	}
	return n
}

func (a *agent) lost() (int64, string) {
	if a.lostf == nil {
		return 0, "none"
	}
	return a.lostf()
}

func (a *agent) cpu() int64 {
	var pids []int
	for _, p := range a.procs {
		pids = append(pids, p.Process.Pid)
	}
	return schedNanos(pids)
}

// kthreadCPU is the CPU time of the kernel threads working for the agent.
func (a *agent) kthreadCPU() int64 {
	var pids []int
	for _, name := range a.kthreads {
		ds, _ := filepath.Glob("/proc/[0-9]*/comm")
		for _, d := range ds {
			if b, _ := os.ReadFile(d); strings.TrimSpace(string(b)) == name {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) == 0 && len(a.kthreads) > 0 && !a.warned {
		a.warned = true
		fmt.Printf("PEER-NOTE %s: no kernel thread named %v found\n", a.name, a.kthreads)
	}
	return schedNanos(pids)
}

// schedNanos is the CPU time of processes, all threads, from schedstat (ns).
func schedNanos(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
		for _, t := range tasks {
			data, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(data)); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				sum += v
			}
		}
	}
	return sum
}

// memKB sums a memory line of the agent's processes' /proc status (kB): VmRSS,
// everything resident in its address space, the pages of its binary and of the
// BPF maps it mapped (ring buffers) included; RssAnon, the memory it allocated
// itself (heap, stacks).
func (a *agent) memKB(field string) int64 {
	var sum int64
	for _, p := range a.procs {
		data, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Process.Pid) + "/status")
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, field); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += kb
			}
		}
	}
	return sum
}

func startAgent(name string, i int) (*agent, error) {
	var a *agent
	var err error
	switch {
	case name == "none":
		return &agent{name: name}, nil
	case strings.HasPrefix(name, "ours-"):
		a, err = startOurs(name, i)
	case name == "auditd":
		a, err = startAuditd(name)
	case name == "tetragon":
		a, err = startTetragon(name)
	case name == "sysdig":
		a, err = startSysdig(name)
	default:
		return nil, fmt.Errorf("unknown agent")
	}
	if err != nil {
		if a != nil {
			a.stop()
		}
		return nil, err
	}
	a.markers = []string{execMarker(i), loadMarker(i), readyMarker(i)}
	// Ready when an exec in a container reaches its output.
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if err := inContainer(readyMarker(i)).Run(); err != nil {
			a.stop()
			return nil, fmt.Errorf("ready marker: %w", err)
		}
		if a.count(readyMarker(i)) > 0 {
			return a, nil
		}
		for _, p := range a.procs {
			if p.ProcessState != nil || syscall.Kill(p.Process.Pid, 0) != nil {
				a.stop()
				return nil, fmt.Errorf("%s exited while starting; its log: %s", p.Path, tail(a.name))
			}
		}
		if time.Now().After(deadline) {
			a.stop()
			head, _ := os.ReadFile(a.out)
			if len(head) > 1000 {
				head = head[:1000]
			}
			return nil, fmt.Errorf("no exec in its output after 120 s; its output begins %q; its log: %s", head, tail(a.name))
		}
	}
}

func logFile(name string) string { return "/var/log/peers/" + name + ".log" }

func tail(name string) string {
	data, _ := os.ReadFile(logFile(name))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

func spawn(name string, args ...string) (*exec.Cmd, error) { return spawnTo(name, "", args...) }

// spawnTo starts an agent with its stderr (and its stdout, unless stdout names a
// file for it) in its log.
func spawnTo(name, stdout string, args ...string) (*exec.Cmd, error) {
	f, err := os.OpenFile(logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	out := f
	if stdout != "" {
		if out, err = os.Create(stdout); err != nil {
			f.Close()
			return nil, err
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, f
	if err := cmd.Start(); err != nil {
		f.Close()
		out.Close()
		return nil, err
	}
	go func() { cmd.Wait(); f.Close(); out.Close() }()
	return cmd, nil
}

// sysdig: Debian's 0.29 with its scap kernel module (loaded at boot), events
// printed to a file (unbuffered: a line as each event is seen), filtered to the job: every execve, opens for writing and
// unlink, rename and chmod of paths under /etc/ and /usr/bin/. It cannot block.
// Its driver's drop count is printed only when it exits (-v), so the load
// phase's loss column is n/a and the count is noted when it stops.
func startSysdig(name string) (*agent, error) {
	out := "/var/log/peers/sysdig.txt"
	filter := "evt.dir=< and (evt.type=execve or (evt.is_open_write=true and (fd.name startswith /etc/ or fd.name startswith /usr/bin/))" +
		" or (evt.type in (unlinkat,unlink,renameat,renameat2,rename,fchmodat,chmod,fchmod) and (evt.args contains /etc/ or evt.args contains /usr/bin/)))"
	cmd, err := spawnTo(name, out, "/usr/bin/sysdig", "-v", "--unbuffered", "-p", "%evt.num %evt.type %proc.pid %proc.exe %fd.name %evt.args", filter)
	if err != nil {
		return nil, err
	}
	a := &agent{name: name, procs: []*exec.Cmd{cmd}, out: out}
	a.match = func(line, marker string) bool {
		f := strings.Fields(line)
		return len(f) >= 4 && f[1] == "execve" && f[3] == marker
	}
	a.lostf = func() (int64, string) { return -1, "printed only at exit" }
	a.stopf = func() {
		cmd.Process.Signal(syscall.SIGINT)
		time.Sleep(2 * time.Second)
		for _, line := range strings.Split(tail(name), "\n") {
			if strings.Contains(line, "Drops") || strings.Contains(line, "Driver Events") {
				fmt.Printf("PEER-NOTE sysdig at exit: %s\n", strings.TrimSpace(line))
			}
		}
	}
	return a, nil
}

// The policies ours runs: the embedded default (log every fork and exec, alert
// on executable changes); sel64 (63 process and 63 file selectors, none naming
// the loops' files, one logging response, as ebpf's BenchmarkVM*/sel64); job
// (auditd's job: log every exec, log every file change under /etc and /usr/bin).
func oursPolicy(name string) string {
	switch name {
	case "ours-sel64":
		return sel64Policy()
	case "ours-job":
		return "process:\n  selectors:\n    - name: execs\n      operation: [exec]\n  responses:\n    - match: [execs]\n      actions: [log]\n" +
			"file:\n  selectors:\n    - name: watched\n      operation: [createFile, modifyFile, deleteFile, createExecutable, modifyExecutable]\n      targetFilePath: [/etc/**, /usr/bin/**]\n  responses:\n    - match: [watched]\n      actions: [log]\n"
	}
	return ""
}

func sel64Policy() string {
	var b strings.Builder
	b.WriteString("process:\n  selectors:\n")
	var names []string
	for i := range 63 {
		n := "s" + strconv.Itoa(i)
		names = append(names, n)
		fmt.Fprintf(&b, "    - name: %s\n      operation: [fork, exec]\n", n)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "      processExecutable: [/usr/bin/tool%d, /opt/app%d/**, /usr/bin/*]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      processExecutable: [/usr/**]\n      containerImageName: [image%d]\n", i)
		case 2:
			fmt.Fprintf(&b, "      processName: [proc%d, bench-exe]\n", i)
		case 3:
			fmt.Fprintf(&b, "      processName: [sh%d]\n      sessionLeaderInteractive: false\n", i)
		}
	}
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	b.WriteString("file:\n  selectors:\n")
	names = names[:0]
	for i := range 63 {
		n := "f" + strconv.Itoa(i)
		names = append(names, n)
		fmt.Fprintf(&b, "    - name: %s\n", n)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "      targetFilePath: [/etc/app%d.conf, /srv/bench/etc/*, /var/lib/app%d/**]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      operation: [createFile, modifyFile, deleteFile]\n      targetFilePath: [/srv/archive/**, /opt/app%d/*]\n      ignoreVolumeMounts: true\n", i)
		case 2:
			fmt.Fprintf(&b, "      operation: [createExecutable, modifyExecutable]\n      targetFilePath: [/usr/bin/**]\n      containerImageName: [image%d]\n", i)
		}
	}
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	return b.String()
}

// metricRe finds our metrics document's counters: events read, kernel events
// the ring had no room for, documents published and dropped by the output.
var metricRe = regexp.MustCompile(`"(events|ring_drops|docs_published|docs_dropped)":(\d+)`)

func startOurs(name string, i int) (*agent, error) {
	dir := "/run/cloud-defend/" + name
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := "/var/log/peers/" + name + ".ndjson"
	// One file, never rotated (4 GiB), so every document stays countable.
	args := []string{"/peers/cloud-defend", "run", "--output", "file=" + out, "--file-rotate-every-kb", "4194304", "--pin-path", "", "--state-dir", dir,
		"--data-path", dir + "/data", "--metrics-period", "1s", "--heartbeat-period", "1h"}
	if p := oursPolicy(name); p != "" {
		if err := os.WriteFile(dir+"/policy.yaml", []byte(p), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--policy", dir+"/policy.yaml")
	}
	cmd, err := spawn(name, args...)
	if err != nil {
		return nil, err
	}
	a := &agent{name: name, procs: []*exec.Cmd{cmd}, out: out}
	a.match = func(line, marker string) bool {
		return strings.Contains(line, `"executable":"`+marker+`"`) && strings.Contains(line, `"action":"exec"`)
	}
	a.fileOp = func(line string) bool {
		return strings.Contains(line, `"dataset":"cloud_defend.file"`) && strings.Contains(line, `"`+benchDir+"/")
	}
	const what = "cloud_defend.metrics.ring_drops + docs_dropped"
	a.lostf = func() (int64, string) {
		// The newest metrics document (written every second) that count has read.
		a.count("")
		if a.lastMetrics == "" {
			return -1, what + " (no metrics document yet)"
		}
		c := map[string]int64{}
		for _, m := range metricRe.FindAllStringSubmatch(a.lastMetrics, -1) {
			c[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
		}
		ring, ok1 := c["ring_drops"]
		docs, ok2 := c["docs_dropped"]
		if !ok1 || !ok2 {
			return -1, what + " (not in the metrics document)"
		}
		return ring + docs, what
	}
	a.stopf = func() {
		a.count("")
		var kv []string
		for _, m := range metricRe.FindAllStringSubmatch(a.lastMetrics, -1) {
			kv = append(kv, m[1]+"="+m[2])
		}
		fmt.Printf("PEER-NOTE %s at exit, its last metrics document: %s\n", name, strings.Join(kv, " "))
	}
	_ = i
	return a, nil
}

// auditd: Debian's configuration (/etc/audit, copied from the host) and the
// issue's rules: every execve logged, writes and attribute changes under /etc and
// /usr/bin watched. Debian's default backlog (-b 8192); when the backlog is full
// the kernel makes the writing task wait (backlog_wait_time 60 s) before it counts
// a record lost.
func startAuditd(name string) (*agent, error) {
	out := "/var/log/audit/audit.log"
	os.Remove(out)
	// Debian's configuration but one log, never rotated (8 MB and 5 logs would
	// rotate the loops' records away before they are counted).
	conf, err := os.ReadFile("/etc/audit/auditd.conf")
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(conf), "\n") {
		if k, _, _ := strings.Cut(l, "="); strings.TrimSpace(k) == "max_log_file_action" {
			l = "max_log_file_action = ignore"
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile("/etc/audit/auditd.conf", []byte(strings.Join(lines, "\n")), 0o640); err != nil {
		return nil, err
	}
	cmd, err := spawn(name, "/sbin/auditd", "-n", "-c", "/etc/audit")
	if err != nil {
		return nil, err
	}
	a := &agent{name: name, procs: []*exec.Cmd{cmd}, out: out, kthreads: []string{"kauditd"}}
	// auditd enables auditing once it has registered; rules go in after.
	time.Sleep(2 * time.Second)
	for _, rule := range [][]string{{"-D"}, {"-b", "8192"}, {"-a", "always,exit", "-F", "arch=b64", "-S", "execve"}, {"-w", "/etc", "-p", "wa", "-k", "peerbench"}, {"-w", "/usr/bin", "-p", "wa", "-k", "peerbench"}, {"-e", "1"}} {
		if o, err := exec.Command("/sbin/auditctl", rule...).CombinedOutput(); err != nil {
			return a, fmt.Errorf("auditctl %s: %v: %s", strings.Join(rule, " "), err, o)
		}
	}
	a.match = func(line, marker string) bool {
		return strings.HasPrefix(line, "type=SYSCALL") && strings.Contains(line, " syscall=59 ") && strings.Contains(line, `exe="`+marker+`"`)
	}
	// A watch's event is a SYSCALL record with the watch's key (its PATH
	// records follow); only the loops write under /etc.
	a.fileOp = func(line string) bool {
		return strings.HasPrefix(line, "type=SYSCALL") && strings.Contains(line, ` key="peerbench"`)
	}
	a.lostf = func() (int64, string) {
		o, _ := exec.Command("/sbin/auditctl", "-s").Output()
		for _, line := range strings.Split(string(o), "\n") {
			if v, ok := strings.CutPrefix(line, "lost "); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n, "auditctl -s: lost"
			}
		}
		return 0, "auditctl -s: lost (not found)"
	}
	a.stopf = func() {
		// Rules out and auditing off, so the next agent's loops run without them.
		for _, args := range [][]string{{"-D"}, {"-e", "0"}} {
			if out, err := exec.Command("/sbin/auditctl", args...).CombinedOutput(); err != nil {
				fmt.Printf("PEER-NOTE auditd: auditctl %s: %v: %s\n", strings.Join(args, " "), err, out)
			}
		}
	}
	return a, nil
}

// tetragon: its BPF objects under /opt/tetragon/lib, JSON export to a file, no
// Kubernetes, a TracingPolicy (/peers/tetragon/policy.yaml) doing the job: exec
// events from its base sensor, file writes under /etc and /usr/bin reported, and
// writes to /usr/bin by a process named bench-deny killed (Sigkill), which the
// loops never run.
func startTetragon(name string) (*agent, error) {
	out := "/var/log/peers/tetragon.json"
	os.Remove(out)
	cmd, err := spawn(name, "/opt/tetragon/bin/tetragon", "--bpf-lib", "/opt/tetragon/lib/", "--export-filename", out,
		"--enable-k8s-api=false", "--server-address", "", "--health-server-address", "", "--metrics-server", "127.0.0.1:2112",
		"--tracing-policy", "/peers/tetragon/policy.yaml", "--export-file-max-size-mb", "1000", "--export-rate-limit", "-1")
	if err != nil {
		return nil, err
	}
	a := &agent{name: name, procs: []*exec.Cmd{cmd}, out: out}
	a.match = func(line, marker string) bool {
		return strings.HasPrefix(line, `{"process_exec"`) && strings.Contains(line, `"binary":"`+marker+`"`)
	}
	a.fileOp = func(line string) bool {
		return strings.HasPrefix(line, `{"process_kprobe"`) && strings.Contains(line, `"`+benchDir) // a path hook's path is the directory
	}
	a.lostf = func() (int64, string) {
		lines, err := tetragonMetrics()
		if err != nil {
			return 0, "metrics unreadable"
		}
		var sum int64
		for _, line := range lines {
			if tetragonLossMetric(line) {
				if f := strings.Fields(line); len(f) >= 2 {
					v, _ := strconv.ParseFloat(f[len(f)-1], 64)
					sum += int64(v)
				}
			}
		}
		return sum, "tetragon ring buffer, queue, BPF-side and export losses"
	}
	a.stopf = func() {
		// Its other counters of events it did not send (errors, the event
		// cache that holds a kprobe event until its process is known, missed
		// probes): the reason when its reports fall short of the loops'.
		lines, err := tetragonMetrics()
		if err != nil {
			return
		}
		for _, line := range lines {
			if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") && f[1] != "0" &&
				(strings.Contains(f[0], "error") || strings.Contains(f[0], "event_cache") || strings.Contains(f[0], "missed")) {
				fmt.Printf("PEER-NOTE tetragon at exit: %s\n", line)
			}
		}
	}
	return a, nil
}

// tetragonMetrics is Tetragon's metrics page (over loopback), a line each.
func tetragonMetrics() ([]string, error) {
	o, err := exec.Command("/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:2112/metrics").Output()
	return strings.Split(string(o), "\n"), err
}

// tetragonLossMetric: does a metrics line count events Tetragon lost (its ring
// buffer overrun, its user-space queue full, events its BPF programs could not
// send, notifications overflowed, exports dropped by the rate limit)?
func tetragonLossMetric(line string) bool {
	for _, m := range []string{"tetragon_ringbuf_events_lost_total", "tetragon_ringbuf_queue_events_lost_total",
		"tetragon_bpf_missed_events_total", "tetragon_notify_overflowed_events_total", "tetragon_export_ratelimit_events_dropped_total"} {
		if strings.HasPrefix(line, m+" ") || strings.HasPrefix(line, m+"{") {
			return true
		}
	}
	return false
}
