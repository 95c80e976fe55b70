package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAlertFloodAndLearn runs the real binary over a real container that
// execs a selected binary in a tight loop. On this host (no BPF LSM) the
// exec decisions are detections made in user space, not refusals; the
// throttle treats both alike. Every decision is also logged, and log
// documents are never throttled, so the process stream counts the
// decisions: Elasticsearch must hold at most burst + rate × duration alerts,
// plus summaries whose suppressed counts and the delivered alerts add up to
// exactly that count.
//
// The same documents are then a recording: policy learn writes an allowlist
// for the image, policy test replays the recording against it (nothing
// blocked), and a binary the workload never ran (a copy of busybox in /tmp)
// is reported as blocked.
func TestAlertFloodAndLearn(t *testing.T) {
	const burst, rate, loops = 10, 2, 600
	h := startPodman(t, `process:
  selectors:
    - name: allExecs
      operation: [exec]
    - name: busybox
      operation: [exec]
      processExecutable: [/bin/busybox]
  responses:
    - match: [allExecs]
      actions: [log]
    - match: [busybox]
      actions: [alert]
`, "--alert-burst", "10", "--alert-rate", "2")
	// Let the init's execs be recorded first, so the flood is what counts.
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	h.podman("exec", "cdt", "/bin/sh", "-c", "i=0; while [ $i -lt 600 ]; do /bin/echo x >/dev/null; i=$((i+1)); done")
	flood := time.Since(start)
	// A binary the image does not have, run once: kept out of the recording
	// learned from, it is what the learned policy must refuse.
	h.podman("exec", "cdt", "/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /tmp/true && /tmp/true")
	byExe := func(exe string) (docs []map[string]any) {
		for _, d := range h.es.Docs("logs-cloud_defend.process-ctr") {
			if field(d, "process.executable") == exe {
				docs = append(docs, d)
			}
		}
		return docs
	}
	// Exec decisions only: a logged process also has its end document.
	execs := func(exe string) (n int) {
		for _, d := range byExe(exe) {
			if field(d, "event.action") == "exec" {
				n++
			}
		}
		return n
	}
	// Wait for every decision's log document.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && (execs("/bin/busybox") < loops || execs("/tmp/true") == 0) {
		time.Sleep(200 * time.Millisecond)
	}
	h.daemon.Process.Signal(syscall.SIGTERM) // closes the open windows into summaries
	if err := h.daemon.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	end := time.Now()

	decisions := execs("/bin/busybox")
	var delivered, summaries int
	var suppressed float64
	// The bucket fills when the first alert comes: the bound runs from there.
	first := end
	for _, d := range h.es.Docs("logs-cloud_defend.alerts-ctr") {
		if ts, err := time.Parse(time.RFC3339Nano, field(d, "@timestamp").(string)); err == nil && ts.Before(first) {
			first = ts
		}
		if n, ok := field(d, "cloud_defend.throttle.suppressed").(float64); ok {
			summaries++
			suppressed += n
			if field(d, "event.action") != "alerts_suppressed" || field(d, "container.id") != h.id || !strings.Contains(field(d, "message").(string), "alerts suppressed") {
				t.Errorf("summary: %v", d)
			}
			continue
		}
		delivered++
	}
	t.Logf("flood of %d execs in %v: %d decisions logged, %d alerts delivered, %d summaries counting %v suppressed", loops, flood, decisions, delivered, summaries, suppressed)
	if decisions < loops {
		t.Fatalf("%d decisions logged, want at least the %d execs of the loop", decisions, loops)
	}
	elapsed := end.Sub(first)
	if max := burst + int(rate*elapsed.Seconds()) + 1; delivered > max {
		t.Errorf("%d alerts delivered in %v, more than burst %d + %d/s", delivered, elapsed, burst, rate)
	}
	if delivered+int(suppressed) != decisions || summaries == 0 {
		t.Errorf("delivered %d + suppressed %v != %d decisions (%d summaries)", delivered, suppressed, decisions, summaries)
	}

	// The process documents as an NDJSON recording (an Elasticsearch export).
	dir := t.TempDir()
	var rec bytes.Buffer
	for _, d := range byExe("/bin/busybox") {
		b, _ := json.Marshal(map[string]any{"_index": "logs-cloud_defend.process-ctr", "_source": d})
		rec.Write(append(b, '\n'))
	}
	recording, learned := filepath.Join(dir, "rec.ndjson"), filepath.Join(dir, "learned.yaml")
	if err := os.WriteFile(recording, rec.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := daemonBinary(t)
	if out, err := runBinary(bin, "policy", "learn", "--block", "--events", recording, "--out", learned); err != nil {
		t.Fatalf("learn: %v\n%s", err, out)
	}
	pol, _ := os.ReadFile(learned)
	if !strings.Contains(string(pol), `containerImageFullName: ["localhost/cdtest/busybox"]`) || !strings.Contains(string(pol), `"/bin/busybox"`) {
		t.Errorf("learned policy:\n%s", pol)
	}
	if out, err := runBinary(bin, "policy", "test", learned, "--events", recording); err != nil {
		t.Errorf("the learned policy blocks its recording: %v\n%s\n%s", err, out, pol)
	}
	newDocs := byExe("/tmp/true")
	if len(newDocs) == 0 {
		t.Fatal("no document of the exec of /tmp/true")
	}
	b, _ := json.Marshal(newDocs[0])
	newRec := filepath.Join(dir, "new.ndjson")
	if err := os.WriteFile(newRec, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runBinary(bin, "policy", "test", learned, "--events", newRec, "--show", "blocked")
	if code := exitCode(err); code != exitInvalid || !strings.Contains(out, "exec /tmp/true by /tmp/true in localhost/cdtest/busybox:1.0") {
		t.Errorf("a new binary: exit %d, want %d\n%s", code, exitInvalid, out)
	}
}

func runBinary(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
