package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunDaemon drives standalone mode as a user would: start it on a policy file,
// run a container exec the policy selects, reload a broken then a good policy with
// SIGHUP, and stop it with SIGTERM.
func TestRunDaemon(t *testing.T) {
	needRoot(t, "loads BPF programs")
	dir := t.TempDir()
	bin := daemonBinary(t)
	target, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	write := func(body string) {
		if err := os.WriteFile(pol, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("process:\n  selectors:\n    - name: trueRuns\n      operation: [exec]\n      processExecutable: [" + target + "]\n  responses:\n    - match: [trueRuns]\n      actions: [alert]\n")
	events := filepath.Join(dir, "events.ndjson")
	cmd := exec.Command(bin, "run", "--policy", pol, "--output", "file="+events)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stderr closed before %q", want)
				}
				t.Log(l)
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q on stderr", want)
			}
		}
	}
	expect("policy " + pol + ": process: 1 selectors, 1 responses")
	expect("blocking is")

	// A container exec the policy selects is reported with the selector's name.
	ctr := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/true")
	if out, err := ctr.CombinedOutput(); err != nil {
		t.Fatalf("container: %v %s", err, out)
	}
	// It arrives as the ECS documents Elasticsearch would get, one a line.
	var alert map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for alert == nil && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		data, _ := os.ReadFile(events)
		for _, line := range bytes.Split(data, []byte("\n")) {
			var doc struct {
				Event   struct{ Kind, Action string }
				Process struct {
					Executable string
					Parent     struct{ PID float64 }
				}
			}
			if json.Unmarshal(line, &doc) != nil || doc.Event.Kind != "alert" || doc.Process.Parent.PID != float64(ctr.Process.Pid) {
				continue
			}
			if err := json.Unmarshal(line, &alert); err != nil {
				t.Fatal(err)
			}
		}
	}
	if alert == nil {
		t.Fatal("no alert for the container's exec in the output")
	}
	cd, _ := alert["cloud_defend"].(map[string]any)
	proc, _ := alert["process"].(map[string]any)
	ds, _ := alert["data_stream"].(map[string]any)
	if sel, _ := json.Marshal(cd["matched_selectors"]); string(sel) != `["trueRuns"]` || proc["executable"] != target || ds["dataset"] != "cloud_defend.alerts" {
		t.Errorf("alert %v", alert)
	}

	write("process:\n  selectors:\n    - name: bad\n      operation: [exec]\n      processExecutable: [relative/path]\n  responses:\n    - match: [bad]\n      actions: [alert]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	expect("policy reload failed; the running policy (generation 0) stays in force")
	expect(pol + `:5:27: process selector "bad": processExecutable: "relative/path" must be an absolute path`)

	write("process:\n  selectors:\n    - name: all\n      operation: [fork, exec]\n  responses:\n    - match: [all]\n      actions: [log]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	expect("policy reloaded: generation 1")

	cmd.Process.Signal(syscall.SIGTERM)
	expect("terminated: stopping")
	// Drain the rest, so the daemon never blocks on a full pipe; the copy
	// ends when Wait closes the pipe, and how it ends does not matter.
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
