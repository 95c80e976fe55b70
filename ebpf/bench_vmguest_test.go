//go:build vmguest

package ebpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/internal/fileloop"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Each VM benchmark runs a loop of b.N forks+execs (or forks) inside a container
// under four configurations, so they compare as ratios within one VM run:
// none (no programs), empty (empty programs on the same hooks), default (the
// default policy), sel64 (63 selectors + 1 response, the most a type holds).
func BenchmarkVMExec(b *testing.B) { benchLoop(b, "/usr/bin/bench-exe") }
func BenchmarkVMFork(b *testing.B) { benchLoop(b, "( : )") }

func benchLoop(b *testing.B, body string) {
	needVM(b)
	installExecutables(b, exitZero, "/usr/bin/bench-exe")
	if err := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	for _, cfg := range []string{"none", "empty", "default", "sel64"} {
		b.Run(cfg, func(b *testing.B) {
			progs, stop := benchSetup(b, cfg)
			defer stop()
			before := runStats(progs)
			script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done", b.N, body)
			cmd := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/busybox", "sh", "-c", script)
			b.ResetTimer()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			b.StopTimer()
			for name, st := range runStats(progs) {
				if n := st[1] - before[name][1]; n > 0 {
					b.ReportMetric(float64(st[0]-before[name][0])/float64(n), "ns/run:"+name)
				}
			}
		})
	}
}

// runStats reads bpf_stats' run time and count of each program.
func runStats(progs map[string]*ebpf.Program) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for name, p := range progs {
		st, err := p.Stats()
		if err != nil {
			continue
		}
		out[name] = [2]uint64{uint64(st.Runtime), st.RunCount}
	}
	return out
}

func benchSetup(b *testing.B, cfg string) (map[string]*ebpf.Program, func()) {
	switch cfg {
	case "none":
		return nil, func() {}
	case "empty":
		return emptyPrograms(b)
	}
	e, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	p := policy.Default()
	switch cfg {
	case "sel64", "sel64-log":
		// Both sections full: process loops meet 63 process selectors, file loops 63 file selectors.
		p = mustParse(b, sel64Policy()+fileSel64Policy(cfg == "sel64-log")+netSel64Policy())
	}
	if err := e.Swap(p); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		// Drain raw records: the kernel's cost of producing and delivering events is
		// measured here; decoding them is BenchmarkDecodeExecEvent's.
		defer close(done)
		var rec ringbuf.Record
		for {
			e.ring.SetDeadline(time.Now().Add(e.flushInterval))
			if err := e.ring.ReadInto(&rec); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				if !errors.Is(err, ErrClosed) {
					b.Error(err)
				}
				return
			}
		}
	}()
	progs := map[string]*ebpf.Program{}
	for _, set := range []any{&e.telemetry, e.enforcement, e.acl, e.network, e.accept} {
		for _, p := range programsOf(set) {
			progs[p.name] = p.prog
		}
	}
	return progs, func() {
		if s, err := e.Stats(); err == nil && s.RingbufDrops > 0 {
			b.Errorf("%d events dropped", s.RingbufDrops)
		}
		e.Close()
		<-done
	}
}

func emptyPrograms(b *testing.B) (map[string]*ebpf.Program, func()) {
	var empty emptyHooks
	spec, closeBench := loadBench(b, &empty, nil)
	var links []link.Link
	progs := map[string]*ebpf.Program{}
	for _, np := range programsOf(&empty) {
		name, p := np.name, np.prog
		progs[name] = p
		var l link.Link
		var err error
		if spec.Programs[name].Type == ebpf.LSM {
			l, err = link.AttachLSM(link.LSMOptions{Program: p})
		} else {
			l, err = link.AttachTracing(link.TracingOptions{Program: p})
		}
		if err != nil {
			b.Fatalf("attach %s: %v", name, err)
		}
		links = append(links, l)
	}
	return progs, func() {
		for _, l := range links {
			l.Close()
		}
		closeBench()
	}
}

// fileLoop is the file benchmarks' workload (internal/fileloop), run in a
// container by the test binary itself on the files under /srv/bench:
// open-ro-match opens a path the policies name, open-ro-other one they do not.
func fileLoop(kind, count string) int {
	const dir = "/srv/bench"
	p := fileloop.Paths{Read: dir + "/etc/passwd", Write: dir + "/data", New: dir + "/new", A: dir + "/a", B: dir + "/b"}
	switch kind {
	case "open-ro-match":
		kind = "open-ro"
	case "open-ro-other":
		kind, p.Read = "open-ro", dir+"/other"
	}
	return fileloop.Run(kind, count, p)
}

const fileLoopScale = 200

// BenchmarkVMFile runs each file loop under none, empty, default, sel64 (63 file
// selectors + 1 response, every operation evaluated against them with its path,
// none firing) and sel64-log (the same, with one selector naming the loop's files:
// every operation is reported, an event each): read-only opens of a path the policy
// names and of one it does not, write opens, create+unlink, chmod, rename, shared
// writable mappings of an open file, and setxattr.
func BenchmarkVMFile(b *testing.B) {
	needVM(b)
	if err := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []string{"/srv/bench/etc/passwd", "/srv/bench/other", "/srv/bench/data", "/srv/bench/a"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"open-ro-match", "open-ro-other", "open-wr", "create-unlink", "chmod", "rename", "mmap-shared", "setxattr"} {
		b.Run(kind, func(b *testing.B) {
			for _, cfg := range []string{"none", "empty", "default", "sel64", "sel64-log"} {
				b.Run(cfg, func(b *testing.B) {
					progs, stop := benchSetup(b, cfg)
					defer stop()
					os.Remove("/srv/bench/b")
					if err := os.WriteFile("/srv/bench/a", []byte("x"), 0o644); err != nil {
						b.Fatal(err)
					}
					cmd := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", self)
					// A file operation is ~100x cheaper than a fork+exec: each b.N iteration runs
					// fileLoopScale of them, so one -test.benchtime suits every VM loop.
					ops := b.N * fileLoopScale
					cmd.Env = append(os.Environ(), "CLOUD_DEFEND_HELPER=fileloop", "LOOP_KIND="+kind, "LOOP_N="+strconv.Itoa(ops))
					before := runStats(progs)
					b.ResetTimer()
					out, err := cmd.Output()
					if err != nil {
						b.Fatalf("%v: %s", err, out)
					}
					b.StopTimer()
					// ns/op includes starting the helper in a container; loop-ns/op is the
					// loop alone, which the ratios use.
					if ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil {
						b.ReportMetric(ns/float64(ops), "loop-ns/op")
					}
					for name, st := range runStats(progs) {
						if n := st[1] - before[name][1]; n > 0 && (strings.Contains(name, "file") || strings.Contains(name, "path") || strings.Contains(name, "inode")) {
							b.ReportMetric(float64(st[0]-before[name][0])/float64(n), "ns/run:"+name)
						}
					}
				})
			}
		})
	}
}

// BenchmarkVMSwap is BenchmarkSwap in the VM.
func BenchmarkVMSwap(b *testing.B) {
	needVM(b)
	benchSwap(b)
}

// BenchmarkVMPolicyLatency measures how long a policy push takes to be enforced:
// while a container execs a program in a loop, each iteration swaps in a new
// generation of a 64-selector policy that alerts on those execs and waits for
// the first decision the kernel makes under it to reach the reader. Reported:
// the median, p99 and worst time from the start of Swap to that decision, and
// Swap alone (compile, map writes, the generation flip).
func BenchmarkVMPolicyLatency(b *testing.B) {
	needVM(b)
	installExecutables(b, exitZero, "/usr/bin/tick")
	e, ch := openEngine(b, Options{})
	ps := swapPolicies(b)
	loop := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/busybox", "sh", "-c", "while :; do /usr/bin/tick; done")
	loop.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := loop.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		syscall.Kill(-loop.Process.Pid, syscall.SIGKILL)
		loop.Wait()
	}()
	var total, swap []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		if err := e.Swap(ps[i%2]); err != nil {
			b.Fatal(err)
		}
		swap = append(swap, time.Since(start))
		gen := e.Generation()
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case ev := <-ch:
				if ev.Kind == event.ProcessDecision && ev.Generation == gen {
					break wait
				}
			case <-deadline:
				b.Fatalf("no decision under generation %d", gen)
			}
		}
		total = append(total, time.Since(start))
		i++
	}
	slices.Sort(total)
	slices.Sort(swap)
	q := func(d []time.Duration, f float64) float64 { return float64(d[min(len(d)-1, int(f*float64(len(d))))]) }
	b.ReportMetric(q(total, 0.5), "p50-ns/enforced")
	b.ReportMetric(q(total, 0.99), "p99-ns/enforced")
	b.ReportMetric(float64(total[len(total)-1]), "max-ns/enforced")
	b.ReportMetric(q(swap, 0.5), "p50-ns/swap")
}

// netLoopScale: network loop iterations per b.N (a connect is far cheaper than a
// fork+exec, so one -test.benchtime suits every VM loop).
const netLoopScale = 50

// BenchmarkVMNetwork runs, in a container with its own network namespace, a
// TCP loop (connect to a loopback listener, accept, close both: socket_connect
// and the accept hook each once per iteration) and a UDP loop (connect a UDP
// socket, close it) under none, empty (empty programs on the same hooks),
// default (the default policy: no network selectors) and sel64 (64 network
// selectors that never match the loops' connections, one response).
func BenchmarkVMNetwork(b *testing.B) {
	needVM(b)
	if err := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"tcp", "udp"} {
		b.Run(kind, func(b *testing.B) {
			for _, cfg := range []string{"none", "empty", "default", "sel64"} {
				b.Run(cfg, func(b *testing.B) {
					progs, stop := benchSetup(b, cfg)
					defer stop()
					n := b.N * netLoopScale
					steps := []string{"lo", "listen:tcp:127.0.0.1:9050", fmt.Sprintf("%sloop:%d:127.0.0.1:9050", kind, n)}
					before := runStats(progs)
					b.ResetTimer()
					start := time.Now()
					out, code := runNetOps(b, steps...)
					elapsed := time.Since(start)
					b.StopTimer()
					if code != 0 {
						b.Fatalf("helper: %d %s", code, out)
					}
					b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "loop-ns/op")
					for name, st := range runStats(progs) {
						if k := st[1] - before[name][1]; k > 0 && (strings.Contains(name, "socket") || strings.Contains(name, "accept")) {
							b.ReportMetric(float64(st[0]-before[name][0])/float64(k), "ns/run:"+name)
						}
					}
				})
			}
		})
	}
}
