package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/output/estest"
)

// TestRunElasticsearch runs standalone mode into the test Elasticsearch: while
// it refuses writes, alerts are spooled; the daemon is killed with SIGKILL;
// restarted against a healthy Elasticsearch, it replays the spool, so every
// alert arrives (duplicates counted, none lost), with its process context, next
// to heartbeat and metrics documents.
func TestRunElasticsearch(t *testing.T) {
	needRoot(t, "loads BPF programs")
	dir := t.TempDir()
	bin := daemonBinary(t)
	target, _ := filepath.EvalSymlinks("/bin/true")
	busybox, _ := filepath.EvalSymlinks("/bin/busybox")
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("process:\n  selectors:\n    - name: trueRuns\n      operation: [exec]\n      processExecutable: ["+target+"]\n  responses:\n    - match: [trueRuns]\n      actions: [alert]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	es, err := estest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	es.SetAPIKey("kid:ksecret")
	es.SetFault(estest.Refuse)
	data := filepath.Join(dir, "data")

	start := func() (*exec.Cmd, func(string)) {
		cmd := exec.Command(bin, "run", "--policy", pol, "--output", "elasticsearch", "--es-url", es.URL(),
			"--es-api-key", "kid:ksecret", "--data-path", data, "--namespace", "test",
			"--heartbeat-period", "1s", "--metrics-period", "1s")
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		lines := make(chan string, 1000)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
			}
			close(lines)
		}()
		return cmd, func(want string) {
			t.Helper()
			timeout := time.After(30 * time.Second)
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

	cmd, expect := start()
	expect("blocking is")
	const n = 20
	ppids := map[float64]bool{}
	for range n {
		ctr := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/true")
		if out, err := ctr.CombinedOutput(); err != nil {
			t.Fatalf("container: %v %s", err, out)
		}
		ppids[float64(ctr.Process.Pid)] = true
	}
	expect("output degraded")
	time.Sleep(2 * time.Second) // the last alerts reach the spool
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := len(es.Docs("logs-cloud_defend.alerts-test")); got != 0 {
		t.Fatalf("%d alerts stored while Elasticsearch refused writes", got)
	}

	es.SetFault(estest.None)
	cmd, expect = start()
	var alerts []map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		alerts = alerts[:0]
		for _, d := range es.Docs("logs-cloud_defend.alerts-test") {
			if ppids[field(d, "process.parent.pid").(float64)] {
				alerts = append(alerts, d)
			}
		}
		if len(alerts) >= n && len(es.Docs("metrics-cloud_defend.heartbeat-test")) > 0 && len(es.Docs("metrics-cloud_defend.metrics-test")) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(alerts) < n {
		for _, d := range es.Docs("logs-cloud_defend.alerts-test") {
			t.Logf("alert: pid %v parent %v exe %v", field(d, "process.pid"), field(d, "process.parent.pid"), field(d, "process.executable"))
		}
		t.Fatalf("%d of %d alerts arrived after the restart (parents %v); streams %v", len(alerts), n, ppids, es.Streams())
	}
	dups := 0
	for _, c := range es.EventIDs() {
		dups += c - 1
	}
	t.Logf("replayed %d alerts after SIGKILL, %d duplicates by event.id", len(alerts), dups)
	bad := 0
	for _, a := range alerts {
		if field(a, "process.parent.executable") != busybox {
			bad++
			t.Logf("alert with parent %v (pid %v, start %v) for pid %v", field(a, "process.parent.executable"), field(a, "process.parent.pid"), field(a, "process.parent.start"), field(a, "process.pid"))
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d alerts name the wrong parent image", bad, len(alerts))
	}
	a := alerts[0]
	for path, want := range map[string]any{
		"event.kind": "alert", "process.executable": target, "process.name": filepath.Base(target),
		"process.parent.executable": busybox, "process.entry_leader.entry_meta.type": "container",
		"cloud_defend.detected_in_user_space": true, "data_stream.namespace": "test", "host.os.type": "linux",
	} {
		if got := field(a, path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if args := field(a, "process.args"); fmt.Sprint(args) != "[/bin/true]" {
		t.Errorf("process.args %v", args)
	}
	hbs, mts := es.Docs("metrics-cloud_defend.heartbeat-test"), es.Docs("metrics-cloud_defend.metrics-test")
	if len(hbs) == 0 || len(mts) == 0 {
		t.Fatalf("%d heartbeat and %d metrics documents 30 s after the restart (periods 1s); streams %v", len(hbs), len(mts), es.Streams())
	}
	hb := hbs[0]
	if field(hb, "cloud_defend.block_action_enabled") != false || field(hb, "event.kind") != "metric" {
		t.Errorf("heartbeat %v (this host cannot block)", hb)
	}
	mt := mts[0]
	if ev, _ := field(mt, "cloud_defend.metrics.events").(float64); ev == 0 {
		t.Errorf("metrics %v", mt)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	expect("terminated: stopping")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// field walks a dotted path through a decoded document.
func field(doc map[string]any, path string) any {
	var v any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
