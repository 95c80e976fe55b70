//go:build vmguest

package ebpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

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
		p = mustParse(b, sel64Policy()+fileSel64Policy(cfg == "sel64-log"))
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
			e.reader.SetDeadline(time.Now().Add(e.flushInterval))
			if err := e.reader.ReadInto(&rec); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				if !errors.Is(err, ErrClosed) {
					b.Error(err)
				}
				return
			}
		}
	}()
	progs := map[string]*ebpf.Program{}
	for n, p := range e.coll.Programs {
		if strings.HasPrefix(n, "on_") || strings.HasPrefix(n, "enforce_") {
			progs[n] = p
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
	coll, spec := loadOnly(b, func(name string) bool { return strings.HasPrefix(name, "empty_") })
	var links []link.Link
	for name, p := range coll.Programs {
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
	return coll.Programs, func() {
		for _, l := range links {
			l.Close()
		}
		coll.Close()
	}
}

// sel64Policy has 63 selectors of every process condition kind, all considered on
// every exec, with one response naming them all.
func sel64Policy() string {
	var b strings.Builder
	b.WriteString("process:\n  selectors:\n")
	names := make([]string, 63)
	for i := range names {
		names[i] = "s" + strconv.Itoa(i)
		fmt.Fprintf(&b, "    - name: %s\n      operation: [fork, exec]\n", names[i])
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
	// log, as the default policy: the comparison isolates the cost of 63 selectors
	// from that of waking the reader for alerts.
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	return b.String()
}

// fileLoop is the file benchmarks' workload, run in a container by the test binary
// itself: n iterations of one file operation pattern, raw system calls on paths
// prepared beforehand, with the garbage collector off, so the loop's own cost is
// the same under every configuration and only the kernel's differs.
func fileLoop(kind, count string) int {
	n, err := strconv.Atoi(count)
	if err != nil {
		return 2
	}
	debug.SetGCPercent(-1)
	const dir = "/srv/bench"
	cstr := func(s string) uintptr {
		p, err := unix.BytePtrFromString(s)
		if err != nil {
			panic(err)
		}
		return uintptr(unsafe.Pointer(p))
	}
	passwd, other, data, created, a, b := cstr(dir+"/etc/passwd"), cstr(dir+"/other"), cstr(dir+"/data"), cstr(dir+"/new"), cstr(dir+"/a"), cstr(dir+"/b")
	sys := func(trap, a1, a2, a3 uintptr) (uintptr, syscall.Errno) {
		r, _, errno := unix.RawSyscall(trap, a1, a2, a3)
		return r, errno
	}
	cwd := unix.AT_FDCWD
	at := uintptr(cwd)
	var op func(i int) syscall.Errno
	switch kind {
	case "open-ro-match", "open-ro-other", "open-wr":
		path, flags := passwd, uintptr(unix.O_RDONLY)
		if kind == "open-ro-other" {
			path = other
		} else if kind == "open-wr" {
			path, flags = data, unix.O_WRONLY
		}
		op = func(int) syscall.Errno {
			fd, errno := sys(unix.SYS_OPENAT, at, path, flags)
			if errno == 0 {
				_, errno = sys(unix.SYS_CLOSE, fd, 0, 0)
			}
			return errno
		}
	case "create-unlink":
		op = func(int) syscall.Errno {
			fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, at, created, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644, 0, 0)
			if errno == 0 {
				sys(unix.SYS_CLOSE, fd, 0, 0)
				_, errno = sys(unix.SYS_UNLINKAT, at, created, 0)
			}
			return errno
		}
	case "chmod":
		op = func(i int) syscall.Errno {
			_, errno := sys(unix.SYS_FCHMODAT, at, data, uintptr(0o600+i%2*0o40))
			return errno
		}
	case "rename":
		op = func(i int) syscall.Errno {
			from, to := a, b
			if i%2 == 1 {
				from, to = to, from
			}
			_, _, errno := unix.RawSyscall6(unix.SYS_RENAMEAT, at, from, at, to, 0, 0)
			return errno
		}
	default:
		return 2
	}
	start := time.Now()
	for i := range n {
		if errno := op(i); errno != 0 {
			fmt.Fprintf(os.Stderr, "%s: %v\n", kind, errno)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds()) // the loop alone, without process start-up
	return 0
}

const fileLoopScale = 200

// BenchmarkVMFile runs each file loop under none, empty, default, sel64 (63 file
// selectors + 1 response, every operation evaluated against them with its path,
// none firing) and sel64-log (the same, with one selector naming the loop's files:
// every operation is reported, an event each): read-only opens of a path the policy
// names and of one it does not, write opens, create+unlink, chmod and rename.
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
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	for _, kind := range []string{"open-ro-match", "open-ro-other", "open-wr", "create-unlink", "chmod", "rename"} {
		b.Run(kind, func(b *testing.B) {
			for _, cfg := range []string{"none", "empty", "default", "sel64", "sel64-log"} {
				b.Run(cfg, func(b *testing.B) {
					progs, stop := benchSetup(b, cfg)
					defer stop()
					os.Remove("/srv/bench/b")
					os.WriteFile("/srv/bench/a", []byte("x"), 0o644)
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
						if n := st[1] - before[name][1]; n > 0 && (strings.Contains(name, "file") || strings.Contains(name, "path")) {
							b.ReportMetric(float64(st[0]-before[name][0])/float64(n), "ns/run:"+name)
						}
					}
				})
			}
		})
	}
}

// fileSel64Policy has 63 file selectors with path patterns of every kind and one
// logging response. With logged, a third of them name the benchmark's directory
// (/srv/**), so every operation of the loops fires the response; without, they
// name /srv/archive/**, which the loops never touch.
func fileSel64Policy(logged bool) string {
	srv := "/srv/archive/**"
	if logged {
		srv = "/srv/**"
	}
	var b strings.Builder
	b.WriteString("file:\n  selectors:\n")
	names := make([]string, 63)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
		fmt.Fprintf(&b, "    - name: %s\n", names[i])
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "      targetFilePath: [/etc/app%d.conf, /srv/bench/etc/*, /var/lib/app%d/**]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      operation: [createFile, modifyFile, deleteFile]\n      targetFilePath: [%s, /opt/app%d/*]\n      ignoreVolumeMounts: true\n", srv, i)
		case 2:
			fmt.Fprintf(&b, "      operation: [createExecutable, modifyExecutable]\n      targetFilePath: [/usr/bin/**]\n      containerImageName: [image%d]\n", i)
		}
	}
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	return b.String()
}
