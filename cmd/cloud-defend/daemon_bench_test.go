package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/output/estest"
)

// BenchmarkDaemonCPU runs the real binary, built as `mage build` builds it
// (standalone, shipping to the test Elasticsearch), and starts container execs
// at a steady pace (BENCH_EXECS_PER_SEC, default 800: with their forks and
// exits, and the host's own activity, about 5,000 kernel events/s), under a
// policy logging every container exec (one document per exec) and under the
// default policy (every fork and exec: two). It reports the daemon's own CPU time (all its threads,
// from schedstat, in ns) per kernel event it read and as a share of one core at
// the rate reached, the documents it shipped, and its memory: resident in all,
// and of that the anonymous (heap, stacks), the binary's file pages, and the
// ring buffer (its data pages are mapped twice, so counted twice). The execs
// run in the benchmark, not in the daemon, so only our cost is counted. An
// iteration is one 10-second window (BENCH_WINDOW); the default -benchtime
// runs one.
func BenchmarkDaemonCPU(b *testing.B) {
	b.Run("exec-logged", func(b *testing.B) {
		daemonCPU(b, "process:\n  selectors:\n    - name: all\n      operation: [exec]\n  responses:\n    - match: [all]\n      actions: [log]\n")
	})
	b.Run("default-policy", func(b *testing.B) { daemonCPU(b, "") })
}

// daemonCPU runs the benchmark with a policy ("" for the embedded default).
func daemonCPU(b *testing.B, policy string) {
	needRoot(b, "loads BPF programs")
	dir := b.TempDir()
	bin := daemonBinary(b)
	es, err := estest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	args := []string{"run"}
	if policy != "" {
		pol := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(pol, []byte(policy), 0o644); err != nil {
			b.Fatal(err)
		}
		args = append(args, "--policy", pol)
	}
	cmd := exec.Command(bin, append(args, "--output", "elasticsearch", "--es-url", es.URL(), "--data-path", filepath.Join(dir, "data"), "--metrics-period", "1s", "--heartbeat-period", "1h")...)
	cmd.Env = append(os.Environ(), "CLOUD_DEFEND_CPUPROFILE="+os.Getenv("BENCH_CPUPROFILE"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	time.Sleep(3 * time.Second) // loaded and scanned
	// One run: unshare forks a child in a new pid namespace that execs
	// /bin/true: fork, exec and exit events, and one logged exec decision.
	run := func() {
		if err := exec.Command("/bin/busybox", "unshare", "-p", "-f", "--", "/bin/true").Run(); err != nil {
			b.Error(err)
		}
	}
	run()
	time.Sleep(1500 * time.Millisecond)
	rate := 800.0
	if v, err := strconv.ParseFloat(os.Getenv("BENCH_EXECS_PER_SEC"), 64); err == nil && v > 0 {
		rate = v
	}
	window := 10 * time.Second
	if v, err := time.ParseDuration(os.Getenv("BENCH_WINDOW")); err == nil && v > 0 {
		window = v
	}
	// Each iteration is one window of paced execs: long enough that the
	// metrics documents (one a second) pin down how many events the daemon
	// read in it.
	type span struct{ start, end time.Time }
	var spans []span
	var cpu int64
	for b.Loop() {
		before := cpuNanos(cmd.Process.Pid)
		start := time.Now()
		// A few at a time: one after the other, a 2-core machine starts
		// only about 650 a second.
		var wg sync.WaitGroup
		slots := make(chan struct{}, 4)
		for i := 0; time.Since(start) < window; i++ {
			// Paced: exec i starts no earlier than i/rate seconds in.
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
			slots <- struct{}{}
			wg.Go(func() { run(); <-slots })
		}
		wg.Wait()
		spans = append(spans, span{start, time.Now()})
		cpu += cpuNanos(cmd.Process.Pid) - before
	}
	rss := memory(cmd.Process.Pid)
	// Everything on the host makes events (a build running beside the
	// benchmark too), so the cost is per event the daemon read, as its own
	// metrics count them: the counter at each window's ends, interpolated
	// between the metrics documents either side.
	last := spans[len(spans)-1].end
	var events, docs float64
	var elapsed time.Duration
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, ok := counterAt(es, "cloud_defend.metrics.events", last); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no metrics document after the last window")
		}
	}
	for _, sp := range spans {
		e0, ok0 := counterAt(es, "cloud_defend.metrics.events", sp.start)
		e1, ok1 := counterAt(es, "cloud_defend.metrics.events", sp.end)
		if !ok0 || !ok1 {
			b.Fatalf("no metrics documents around the window %v–%v", sp.start, sp.end)
		}
		events += e1 - e0
		docs += float64(docsIn(es, "logs-cloud_defend.process-default", sp.start, sp.end))
		elapsed += sp.end.Sub(sp.start)
	}
	if events <= 0 {
		b.Fatalf("no events counted (%v)", events)
	}
	perEvent := float64(cpu) / events
	b.ReportMetric(perEvent/1000, "daemon-µs/event")
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(docs/elapsed.Seconds(), "docs/s")
	b.ReportMetric(float64(cpu)/float64(elapsed)*100, "%core")
	b.ReportMetric(perEvent*5000/1e9*100, "%core@5k-events/s")
	b.ReportMetric(float64(rss["VmRSS"])/1024, "MiB-rss")
	b.ReportMetric(float64(rss["RssAnon"])/1024, "MiB-anon")
	b.ReportMetric(float64(rss["binary"])/1024, "MiB-binary")
	b.ReportMetric(float64(rss["ring"])/1024, "MiB-ring")
}

// cpuNanos is a process's CPU time, all threads, from schedstat (ns; /proc/pid/stat
// counts 10 ms ticks).
func cpuNanos(pid int) int64 {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}

// memory is a process's resident memory in KiB: VmRSS and RssAnon from status,
// and from smaps what the binary's mapping and the BPF maps (the ring) hold.
func memory(pid int) map[string]int64 {
	m := map[string]int64{"VmRSS": procStatusKB(pid, "VmRSS"), "RssAnon": procStatusKB(pid, "RssAnon")}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	name := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = ""
			if len(f) >= 6 {
				name = f[5]
			}
		case len(f) >= 2 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			switch {
			case name == exe:
				m["binary"] += kb
			case name == "anon_inode:bpf-map":
				m["ring"] += kb
			}
		}
	}
	return m
}

// counterAt is a metrics counter (cumulative) at time t, interpolated between
// the metrics documents either side of t; false until one after t arrived.
func counterAt(es *estest.Server, name string, t time.Time) (float64, bool) {
	type point struct {
		t time.Time
		v float64
	}
	var ps []point
	for _, d := range es.Docs("metrics-cloud_defend.metrics-default") {
		ts, err := stamp(d)
		v, ok := field(d, name).(float64)
		if err == nil && ok {
			ps = append(ps, point{ts, v})
		}
	}
	slices.SortFunc(ps, func(a, b point) int { return a.t.Compare(b.t) })
	for i := 1; i < len(ps); i++ {
		if !ps[i].t.Before(t) {
			if ps[i-1].t.After(t) {
				return 0, false // t is before the first document
			}
			a, b := ps[i-1], ps[i]
			return a.v + (b.v-a.v)*float64(t.Sub(a.t))/float64(b.t.Sub(a.t)), true
		}
	}
	return 0, false
}

// docsIn counts a data stream's documents stamped within [from, to).
func docsIn(es *estest.Server, stream string, from, to time.Time) int {
	n := 0
	for _, d := range es.Docs(stream) {
		ts, err := stamp(d)
		if err == nil && !ts.Before(from) && ts.Before(to) {
			n++
		}
	}
	return n
}

// stamp is a document's @timestamp.
func stamp(d map[string]any) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, fmt.Sprint(d["@timestamp"]))
}
