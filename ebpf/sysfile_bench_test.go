package ebpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/policy"
)

// sysfileLoop is a workload for BenchmarkFileSyscalls: one loop of syscalls, timed
// inside, printing ns per iteration.
const sysfileLoop = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	dir := os.Args[3]
	target := dir + "/w"
	os.WriteFile(target, []byte("x"), 0o644)
	cpu := func() int64 { // CPU time of the loop and its children: what the load of others on the node does not stretch
		var self, kids syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
		return self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano()
	}
	start := time.Now()
	startCPU := cpu()
	for i := 0; i < n; i++ {
		switch os.Args[1] {
		case "read":
			fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
			if err != nil {
				panic(err)
			}
			syscall.Close(fd)
		case "write":
			fd, err := syscall.Open(target, syscall.O_WRONLY|syscall.O_TRUNC, 0)
			if err != nil {
				panic(err)
			}
			syscall.Close(fd)
		case "create":
			p := dir + "/c" + strconv.Itoa(i)
			fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, 0o644)
			if err != nil {
				panic(err)
			}
			syscall.Close(fd)
			syscall.Unlink(p)
		case "exec":
			if err := exec.Command("/bin/true").Run(); err != nil {
				panic(err)
			}
		}
	}
	fmt.Println(time.Since(start).Nanoseconds()/int64(n), (cpu()-startCPU)/int64(n))
}
`

// BenchmarkFileSyscalls measures what watching file syscalls without BPF LSM
// costs a workload (a loop in a new pid namespace): read-only opens, write
// opens, create+unlink and fork+exec, in one run, configurations alternating
// round by round (each round in another order, so none always follows
// another's teardown) so they compare as ratios of medians: none (no
// programs), telemetry (the engine without the file syscall programs, default
// policy), empty (telemetry plus an empty program on every syscall tracepoint
// the file syscall programs use: the floor of watching a syscall at all here),
// default (the file syscall programs, default policy: the kernel drops the
// loops' plain-file writes, which no selector covers) and logall (default
// policy plus a selector logging every file operation under the loop's
// directory: every write reaches user space and becomes a document).
//
// x: wall-time ratios to none; xcpu: ratios of the loop's CPU time (its own
// and its children's, user and system), which other work on a shared node
// stretches far less; xempty: CPU-time ratios to empty (what our programs add
// over the empty hook). bpfns/op and bpfns/run (the openat exit program's own
// time per run) come from a pass of their own with kernel.bpf_stats_enabled,
// which adds two clock reads to every program run and so stays off while the
// loops are timed.
func BenchmarkFileSyscalls(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "loop.go")
	if err := os.WriteFile(src, []byte(sysfileLoop), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "loop")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build loop: %v %s", err, out)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		b.Fatal(err)
	}
	// run returns a loop's wall and CPU time per iteration.
	run := func(loop string, n int) (wall, cpu float64) {
		out, err := exec.Command("/bin/busybox", "unshare", "-p", "-f", "--", bin, loop, strconv.Itoa(n), work).Output()
		if err != nil {
			b.Fatalf("%s loop: %v", loop, err)
		}
		f := strings.Fields(string(out))
		if len(f) != 2 {
			b.Fatalf("%s loop printed %q", loop, out)
		}
		wall, _ = strconv.ParseFloat(f[0], 64)
		cpu, _ = strconv.ParseFloat(f[1], 64)
		return wall, cpu
	}
	loops := map[string]int{"read": 100000, "write": 50000, "create": 25000, "exec": 300}
	rounds := 5
	cfgs := []string{"none", "telemetry", "empty", "default", "logall"}
	results := map[string]map[string][]float64{}
	cpus := map[string]map[string][]float64{}
	progNs := map[string]map[string][]float64{}
	openNs := map[string][]float64{} // ns per run of the openat exit program, in the read loop
	for _, cfg := range cfgs {
		results[cfg] = map[string][]float64{}
		cpus[cfg] = map[string][]float64{}
		progNs[cfg] = map[string][]float64{}
	}
	setStats(b, false)
	b.Cleanup(func() { setStats(b, false) })
	b.ResetTimer()
	for range b.N {
		for r := 0; r < rounds; r++ {
			for i := range cfgs {
				cfg := cfgs[(i+r)%len(cfgs)]
				w := startWatching(b, work, cfg)
				for loop, n := range loops {
					wall, cpu := run(loop, n)
					results[cfg][loop] = append(results[cfg][loop], wall)
					cpus[cfg][loop] = append(cpus[cfg][loop], cpu)
				}
				w.stop()
			}
		}
		setStats(b, true)
		for _, cfg := range cfgs[1:] {
			w := startWatching(b, work, cfg)
			for loop, n := range loops {
				before, openBefore := w.progTime(), w.openatStats()
				run(loop, n)
				progNs[cfg][loop] = append(progNs[cfg][loop], float64(w.progTime()-before)/float64(n))
				if after := w.openatStats(); loop == "read" && after.RunCount > openBefore.RunCount {
					openNs[cfg] = append(openNs[cfg], float64(after.Runtime-openBefore.Runtime)/float64(after.RunCount-openBefore.RunCount))
				}
			}
			w.stop()
		}
		setStats(b, false)
	}
	b.StopTimer()
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	for _, loop := range []string{"read", "write", "create", "exec"} {
		none := median(results["none"][loop])
		b.ReportMetric(none, "ns/op:"+loop+"-none")
		noneCPU := median(cpus["none"][loop])
		b.ReportMetric(noneCPU, "cpuns/op:"+loop+"-none")
		emptyCPU := median(cpus["empty"][loop])
		for _, cfg := range cfgs[1:] {
			b.ReportMetric(median(results[cfg][loop])/none, "x:"+loop+"-"+cfg)
			b.ReportMetric(median(cpus[cfg][loop])/noneCPU, "xcpu:"+loop+"-"+cfg)
			b.ReportMetric(median(progNs[cfg][loop]), "bpfns/op:"+loop+"-"+cfg)
		}
		for _, cfg := range []string{"default", "logall"} {
			b.ReportMetric(median(cpus[cfg][loop])/emptyCPU, "xempty:"+loop+"-"+cfg)
		}
	}
	for _, cfg := range cfgs[2:] {
		if len(openNs[cfg]) > 0 {
			b.ReportMetric(median(openNs[cfg]), "bpfns/run:openat-"+cfg)
		}
	}
}

// setStats turns kernel.bpf_stats_enabled on or off.
func setStats(tb testing.TB, on bool) {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte(v), 0); err != nil {
		tb.Fatal(err)
	}
}

// watching is one configuration of BenchmarkFileSyscalls in place.
type watching struct {
	e          *Engine       // nil: none
	empty      *ebpf.Program // the empty syscall program (empty)
	links      []link.Link   // its attachments
	drain      chan struct{} // closed when the engine's reader is done
	closeBench func()
}

// startWatching puts configuration cfg in place: the engine without BPF LSM
// (none: nothing), its events drained, and for empty the empty syscall
// program on the file syscall programs' tracepoints.
func startWatching(b *testing.B, dir, cfg string) *watching {
	w := &watching{}
	if cfg == "none" {
		return w
	}
	var err error
	w.e, err = Open(Options{DisableLSM: true, DisableFileSyscalls: cfg == "telemetry" || cfg == "empty"})
	if err != nil {
		b.Fatal(err)
	}
	src := fmt.Sprintf(`process:
  selectors:
    - name: allProcesses
      operation: [fork, exec]
  responses:
    - match: [allProcesses]
      actions: [log]
file:
  selectors:
    - name: executableChanges
      operation: [createExecutable, modifyExecutable]
    - name: loopFiles
      operation: [createFile, modifyFile, deleteFile]
      targetFilePath: [%s/**]
  responses:
    - match: [executableChanges]
      actions: [alert]
    - match: [loopFiles]
      actions: [log]
`, dir)
	if cfg != "logall" {
		src = string(policy.DefaultYAML)
	}
	p, _, err := policy.Parse("p.yaml", []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	if err := w.e.Swap(p); err != nil {
		b.Fatal(err)
	}
	if cfg == "empty" {
		w.attachEmpty(b)
	}
	w.drain = make(chan struct{})
	go func() {
		defer close(w.drain)
		for {
			if _, err := w.e.Read(); errors.Is(err, ErrClosed) {
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	return w
}

// attachEmpty attaches the benchmark object's empty syscall program to every
// tracepoint a file syscall program of the production object attaches to.
func (w *watching) attachEmpty(b *testing.B) {
	var set struct {
		EmptySyscall *ebpf.Program `ebpf:"empty_syscall"`
	}
	_, closeBench := loadBench(b, &set, nil)
	w.closeBench = closeBench
	w.empty = set.EmptySyscall
	prod, err := bpfobj.LoadProbe()
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range programNames((*fileSyscallPrograms)(nil)) {
		l, st := attachTracepoint(prod.Programs[name], w.empty)
		if l == nil {
			b.Fatalf("attach the empty program at %s: %s", prod.Programs[name].SectionName, st.Reason)
		}
		w.links = append(w.links, l)
	}
}

func (w *watching) stop() {
	for _, l := range w.links {
		l.Close()
	}
	if w.closeBench != nil {
		w.closeBench()
	}
	if w.e != nil {
		w.e.Close()
		<-w.drain
	}
}

// programs are the configuration's programs.
func (w *watching) programs() []*ebpf.Program {
	var out []*ebpf.Program
	if w.e != nil {
		for _, p := range w.e.programs() {
			out = append(out, p.prog)
		}
	}
	if w.empty != nil {
		out = append(out, w.empty)
	}
	return out
}

// openatStats are the run statistics of the program on openat's exit (the
// file syscall program or the empty one; zero without either).
func (w *watching) openatStats() ebpf.ProgramStats {
	var p *ebpf.Program
	if w.e != nil {
		for _, np := range w.e.programs() {
			if np.name == "watch_openat_exit" {
				p = np.prog
			}
		}
	}
	if w.empty != nil {
		p = w.empty // runs on every watched syscall: in the read loop, openat's exit is the one
	}
	if p != nil {
		if st, err := p.Stats(); err == nil {
			return *st
		}
	}
	return ebpf.ProgramStats{}
}

// progTime is the time all of the configuration's programs have run, in ns
// (on every task: other work on the node counts too, a little).
func (w *watching) progTime() uint64 {
	var total uint64
	for _, p := range w.programs() {
		if st, err := p.Stats(); err == nil {
			total += uint64(st.Runtime)
		}
	}
	return total
}
