package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startRun starts `cloud-defend run` and returns a function that waits for a line
// on its stderr.
func startRun(t *testing.T, args ...string) (*exec.Cmd, func(string)) {
	t.Helper()
	cmd := exec.Command(daemonBinary(t), append([]string{"run"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, func(want string) {
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
}

// TestPinnedRun: the real binary on this host (telemetry only) pins its programs;
// after kill -9 doctor shows the pinned generation and policy, events keep going
// into the pinned ring, and the next start adopts it and writes them out; unpin
// removes it all.
func TestPinnedRun(t *testing.T) {
	needRoot(t, "loads BPF programs and mounts bpffs")
	dir := t.TempDir()
	bpffs := filepath.Join(dir, "bpffs")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	defer syscall.Unmount(bpffs, syscall.MNT_DETACH)
	pin, state := filepath.Join(bpffs, "cloud-defend"), filepath.Join(dir, "state")
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("process:\n  selectors:\n    - name: s\n      operation: [exec]\n  responses:\n    - match: [s]\n      actions: [log]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doctor := func(want string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		run([]string{"doctor", "--pin-path", pin, "--state-dir", state}, strings.NewReader(""), &stdout, &stderr)
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("doctor output lacks %q:\n%s%s", want, stdout.String(), stderr.String())
		}
	}
	args := []string{"--policy", pol, "--pin-path", pin, "--state-dir", state}

	cmd, expect := startRun(t, append(args, "--output", "file="+filepath.Join(dir, "1.ndjson"))...)
	expect("blocking is")
	cmd.Process.Kill()
	cmd.Wait()
	doctor(fmt.Sprintf("[OK  ] pinned enforcement at %s: generation 0 (policy %s since ", pin, pol))
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	// A container's exec, decided by the pinned programs while no daemon runs.
	if err := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/sh", "-c", "exit 0", marker).Run(); err != nil {
		t.Fatal(err)
	}

	events := filepath.Join(dir, "2.ndjson")
	cmd, expect = startRun(t, append(args, "--output", "file="+events)...)
	expect(fmt.Sprintf("adopted the pinned enforcement at %s: generation 0, policy %s;", pin, pol))
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(events)
		if bytes.Contains(data, []byte(marker)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exec made while no daemon ran is not in the restarted daemon's output")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	expect("terminated: stopping")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	doctor(fmt.Sprintf("pinned enforcement at %s: generation 1 (policy %s", pin, pol))

	var stdout, stderr bytes.Buffer
	if code := run([]string{"unpin", "--pin-path", pin, "--state-dir", state}, strings.NewReader(""), &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "removed the pinned enforcement at "+pin+" (generation 1)") {
		t.Fatalf("unpin: exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	doctor("[INFO] no pinned enforcement at " + pin)
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Fatalf("pin path after unpin: %v", err)
	}
}
