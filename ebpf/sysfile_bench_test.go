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
// round by round so they compare as ratios (medians): none (no programs),
// telemetry (the engine without the file syscall programs, default policy),
// default (with them, default policy: the kernel drops the loops' plain-file
// writes, which no selector covers) and logall (default policy plus a
// selector logging every file operation under the loop's directory: every
// write reaches user space and becomes a document). x: are wall-time ratios;
// xcpu: ratios of the loop's CPU time (its own and its children's, user and
// system), which other work on a shared node stretches far less; bpfns/run:
// the openat exit program's own time per run.
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
	cfgs := []string{"none", "telemetry", "default", "logall"}
	results := map[string]map[string][]float64{}
	cpus := map[string]map[string][]float64{}
	for _, cfg := range cfgs {
		results[cfg] = map[string][]float64{}
		cpus[cfg] = map[string][]float64{}
	}
	// The programs' own time per loop iteration (kernel.bpf_stats_enabled),
	// steadier than wall time on a shared machine.
	if err := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0); err != nil {
		b.Fatal(err)
	}
	progNs := map[string]map[string][]float64{}
	openNs := map[string][]float64{} // ns per run of the openat exit program, in the read loop
	for _, cfg := range cfgs {
		progNs[cfg] = map[string][]float64{}
	}
	b.ResetTimer()
	for range b.N {
		for r := 0; r < rounds; r++ {
			for _, cfg := range cfgs {
				var stop func()
				var e *Engine
				if cfg != "none" {
					e, stop = startWatching(b, work, cfg)
				}
				for loop, n := range loops {
					before := progTime(e)
					openBefore := openatStats(e)
					wall, cpu := run(loop, n)
					results[cfg][loop] = append(results[cfg][loop], wall)
					cpus[cfg][loop] = append(cpus[cfg][loop], cpu)
					progNs[cfg][loop] = append(progNs[cfg][loop], float64(progTime(e)-before)/float64(n))
					if after := openatStats(e); loop == "read" && after.RunCount > openBefore.RunCount {
						openNs[cfg] = append(openNs[cfg], float64(after.Runtime-openBefore.Runtime)/float64(after.RunCount-openBefore.RunCount))
					}
				}
				if stop != nil {
					stop()
				}
			}
		}
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
		for _, cfg := range cfgs[1:] {
			b.ReportMetric(median(results[cfg][loop])/none, "x:"+loop+"-"+cfg)
			b.ReportMetric(median(cpus[cfg][loop])/noneCPU, "xcpu:"+loop+"-"+cfg)
			b.ReportMetric(median(progNs[cfg][loop]), "bpfns/op:"+loop+"-"+cfg)
		}
	}
	for _, cfg := range cfgs[2:] {
		if len(openNs[cfg]) > 0 {
			b.ReportMetric(median(openNs[cfg]), "bpfns/run:openat-"+cfg)
		}
	}
}

// startWatching opens the engine without BPF LSM in configuration cfg and
// drains its events.
func startWatching(b *testing.B, dir, cfg string) (*Engine, func()) {
	e, err := Open(Options{DisableLSM: true, DisableFileSyscalls: cfg == "telemetry"})
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
	if err := e.Swap(p); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := e.Read(); errors.Is(err, ErrClosed) {
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	return e, func() { e.Close(); <-done }
}

// openatStats are the run statistics of the openat exit program (zero
// without it).
func openatStats(e *Engine) ebpf.ProgramStats {
	if e == nil {
		return ebpf.ProgramStats{}
	}
	for _, p := range e.programs() {
		if p.name == "watch_openat_exit" {
			if st, err := p.prog.Stats(); err == nil {
				return *st
			}
		}
	}
	return ebpf.ProgramStats{}
}

// progTime is the time all of the engine's programs have run, in ns (on
// every task: other work on the node counts too, a little).
func progTime(e *Engine) uint64 {
	if e == nil {
		return 0
	}
	var total uint64
	for _, p := range e.programs() {
		if st, err := p.prog.Stats(); err == nil {
			total += uint64(st.Runtime)
		}
	}
	return total
}
