package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two exec documents of an nginx container as the Elasticsearch output ships
// them (trimmed to the fields replay reads), one line that is not JSON.
const recording = `{"@timestamp":"2026-01-02T03:00:01.000000001Z","event":{"id":"a1","kind":"event","category":["process"],"type":["start"],"action":"exec"},"process":{"entity_id":"e1","executable":"/usr/sbin/nginx","name":"nginx","interactive":false},"container":{"id":"c1","image":{"name":"docker.io/library/nginx","tag":"1.27"}},"cloud_defend":{"matched_selectors":["allExecs"],"blocked":false}}
{"@timestamp":"2026-01-02T03:00:02.000000001Z","event":{"id":"a2","kind":"event","category":["file"],"type":["creation"],"action":"creation"},"process":{"entity_id":"e1","executable":"/usr/sbin/nginx","name":"nginx"},"file":{"path":"/var/cache/nginx/x"},"container":{"id":"c1","image":{"name":"docker.io/library/nginx","tag":"1.27"}},"cloud_defend":{"hook_point":["lsm__path_mknod"]}}
{"@timestamp":"2026-01-02T03:00:03.000000001Z","event":{"id":"a3","kind":"alert","category":["process"],"type":["start"],"action":"exec"},"process":{"entity_id":"e2","executable":"/tmp/miner","name":"miner","interactive":false},"container":{"id":"c1","image":{"name":"docker.io/library/nginx","tag":"1.27"}}}
`

const blockTmp = `process:
  selectors:
    - name: tmpExecs
      operation: [exec]
      processExecutable: [/tmp/**]
  responses:
    - match: [tmpExecs]
      actions: [alert, block]
`

func TestPolicyTestCLI(t *testing.T) {
	dir := writeFiles(t, map[string]string{"rec.ndjson": recording, "block.yaml": blockTmp, "bad.ndjson": recording + "not json\n",
		"invalid.yaml": "process: {}\n"})
	rec, pol := filepath.Join(dir, "rec.ndjson"), filepath.Join(dir, "block.yaml")

	code, out, errs := runCLI("", "policy", "test", pol, "--events", rec, "--show", "blocked")
	if code != exitInvalid || !strings.Contains(out, "would log 0, alert 1, block 1") || !strings.Contains(out, rec+":3: exec /tmp/miner") || errs != "" {
		t.Errorf("would block: code %d\n%s\nstderr %s", code, out, errs)
	}
	// Nothing matches the first two: exit 0.
	code, out, _ = runCLI(recording[:strings.Index(recording, "\n{\"@timestamp\":\"2026-01-02T03:00:03")+1], "policy", "test", pol, "--events", "-")
	if code != exitOK || !strings.Contains(out, "block 0") {
		t.Errorf("nothing blocked: code %d\n%s", code, out)
	}
	code, out, _ = runCLI("", "policy", "test", "--format", "json", "--events", rec, pol)
	var rep struct {
		Totals  struct{ Block int }
		Blocked []struct {
			Line     int
			Document map[string]any
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitInvalid || rep.Totals.Block != 1 || rep.Blocked[0].Line != 3 || rep.Blocked[0].Document["@timestamp"] == nil {
		t.Errorf("json: code %d err %v %+v\n%s", code, err, rep, out)
	}
	// An unusable line is named, and without --skip-invalid fails the run.
	code, _, errs = runCLI("", "policy", "test", pol, "--events", filepath.Join(dir, "bad.ndjson"))
	if code != exitUsage || !strings.Contains(errs, "bad.ndjson:4: not a JSON object") {
		t.Errorf("bad line: code %d stderr %s", code, errs)
	}
	if code, _, _ = runCLI("", "policy", "test", pol, "--skip-invalid", "--events", filepath.Join(dir, "bad.ndjson")); code != exitInvalid {
		t.Errorf("--skip-invalid: code %d", code)
	}
	for _, args := range [][]string{
		{"policy", "test"}, {"policy", "test", pol}, {"policy", "test", pol, "--events", filepath.Join(dir, "none")},
		{"policy", "test", filepath.Join(dir, "invalid.yaml"), "--events", rec}, {"policy", "test", pol, "--events", rec, "--show", "all"},
		{"policy", "learn"}, {"policy", "learn", "--events", rec, "--by", "pod-labels=a,b"}, {"policy", "learn", "--events", rec, "--by", "node"},
	} {
		if code, _, _ := runCLI("", args...); code != exitUsage {
			t.Errorf("%v: code %d, want %d", args, code, exitUsage)
		}
	}
}

func TestPolicyLearnCLI(t *testing.T) {
	dir := writeFiles(t, map[string]string{"rec.ndjson": recording})
	rec, learned := filepath.Join(dir, "rec.ndjson"), filepath.Join(dir, "learned.yaml")
	if code, _, errs := runCLI("", "policy", "learn", "--block", "--events", rec, "--out", learned); code != exitOK {
		t.Fatalf("learn: code %d\n%s", code, errs)
	}
	if code, out, errs := runCLI("", "policy", "validate", learned); code != exitOK || errs != "" {
		t.Errorf("validate: code %d %s %s", code, out, errs)
	}
	if code, out, _ := runCLI("", "policy", "test", learned, "--events", rec); code != exitOK {
		b, _ := os.ReadFile(learned)
		t.Errorf("the learned policy blocks its recording: code %d\n%s\n%s", code, out, b)
	}
}

// TestLearnLive learns a policy from a podman container's activity, live
// (`policy learn --duration`), and replays the recording it kept through the
// learned policy: nothing it saw would be blocked, and a binary it never ran
// would be.
func TestLearnLive(t *testing.T) {
	env := newPodmanEnv(t)
	dir := t.TempDir()
	learned, recording := filepath.Join(dir, "learned.yaml"), filepath.Join(dir, "rec.ndjson")
	cmd := exec.Command(daemonBinary(t), "policy", "learn", "--duration", "12s", "--record", recording, "--block", "--out", learned)
	cmd.Env = append(os.Environ(), "DOCKER_SOCKET="+env.sock, "CRI_SOCKET="+filepath.Join(dir, "no-cri.sock"))
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var logged strings.Builder
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			logged.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "policy live recording: ") {
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-done:
		t.Fatalf("the recording did not start:\n%s", logged.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the recording did not start in 30s")
	}
	env.podman(append(append([]string{"run", "--rm", "--name", "cdl"}, podmanUlimits...),
		"localhost/cdtest/busybox:1.0", "/bin/sh", "-c", "cat /etc/motd; echo x > /tmp/seen; sleep 1")...)
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("policy learn --duration: %v\n%s", err, logged.String())
	}
	t.Logf("%s", logged.String())
	pol, err := os.ReadFile(learned)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"localhost/cdtest/busybox", "/bin/busybox", "/tmp"} {
		if !strings.Contains(string(pol), want) {
			t.Errorf("the learned policy lacks %q:\n%s", want, pol)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"policy", "test", learned, "--events", recording}, strings.NewReader(""), &out, &errOut); code != exitOK {
		t.Errorf("replaying the recording through what was learned from it: exit %d (want 0: nothing blocked)\n%s%s", code, out.String(), errOut.String())
	}
	// A binary it never ran, in the same image, would be blocked.
	data, err := os.ReadFile(recording)
	if err != nil {
		t.Fatal(err)
	}
	var other []byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(line, []byte(`"action":"exec"`)) && bytes.Contains(line, []byte("cdtest/busybox")) {
			other = bytes.ReplaceAll(line, []byte(`"executable":"/bin/busybox"`), []byte(`"executable":"/tmp/payload"`))
			break
		}
	}
	if other == nil {
		t.Fatalf("no exec of the container in the recording:\n%s", data)
	}
	probe := filepath.Join(dir, "probe.ndjson")
	if err := os.WriteFile(probe, other, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"policy", "test", learned, "--events", probe}, strings.NewReader(""), &out, &errOut); code != exitInvalid {
		t.Errorf("an exec of /tmp/payload: exit %d (want 1: blocked)\n%s%s", code, out.String(), errOut.String())
	}
}
