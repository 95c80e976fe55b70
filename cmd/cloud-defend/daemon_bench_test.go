package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/output/estest"
)

// BenchmarkDaemonCPU runs the real binary (standalone, every container exec
// logged and shipped to the test Elasticsearch) and starts one container exec
// per iteration; it reports the daemon's own CPU time per event (user+system,
// from /proc) and what that is at 5k events/s, and its resident memory. The
// exec itself runs in the benchmark, not in the daemon, so only our cost is
// counted.
func BenchmarkDaemonCPU(b *testing.B) {
	needRoot(b, "loads BPF programs")
	dir := b.TempDir()
	bin := daemonBinary(b)
	es, err := estest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("process:\n  selectors:\n    - name: all\n      operation: [exec]\n  responses:\n    - match: [all]\n      actions: [log]\n"), 0o644)
	cmd := exec.Command(bin, "run", "--policy", pol, "--output", "elasticsearch", "--es-url", es.URL(), "--data-path", filepath.Join(dir, "data"), "--metrics-period", "1s", "--heartbeat-period", "1h")
	cmd.Env = append(os.Environ(), "CLOUD_DEFEND_CPUPROFILE="+os.Getenv("BENCH_CPUPROFILE"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	time.Sleep(3 * time.Second) // loaded and scanned
	// Each iteration: unshare forks a child in a new pid namespace that execs
	// /bin/true: fork, exec and exit events, and one logged exec decision.
	run := func() {
		if err := exec.Command("/bin/busybox", "unshare", "-p", "-f", "--", "/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
	run()
	time.Sleep(1500 * time.Millisecond)
	eventsBefore := lastEvents(es)
	before := cpuTicks(cmd.Process.Pid)
	start := time.Now()
	for b.Loop() {
		run()
	}
	elapsed := time.Since(start)
	ticks := cpuTicks(cmd.Process.Pid) - before
	time.Sleep(1500 * time.Millisecond) // a metrics document after the loop
	// Everything on the host makes events (a build running beside the
	// benchmark too), so the cost is per event the daemon read, as its own
	// metrics count them.
	events := lastEvents(es) - eventsBefore
	if events <= 0 {
		b.Fatalf("no events counted (%d)", events)
	}
	perEvent := time.Duration(ticks) * 10 * time.Millisecond / time.Duration(events)
	b.ReportMetric(float64(perEvent.Nanoseconds())/1000, "daemon-µs/event")
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(perEvent)*5000/float64(time.Second)*100, "%core@5k-events/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "execs/s")
	b.ReportMetric(float64(procStatusKB(cmd.Process.Pid, "VmRSS"))/1024, "MiB-rss")
}

// cpuTicks is a process's user+system time in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// lastEvents is the event counter of the newest metrics document.
func lastEvents(es *estest.Server) int64 {
	docs := es.Docs("metrics-cloud_defend.metrics-default")
	if len(docs) == 0 {
		return 0
	}
	v, _ := field(docs[len(docs)-1], "cloud_defend.metrics.events").(float64)
	return int64(v)
}
