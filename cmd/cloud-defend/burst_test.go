package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFileOutputBurst: a container writes a file 20,000 times as fast as a
// shell can (each `: > f` an open for writing the policy logs), far faster
// than the file output writes ~3 KB documents. The output's queue fills; the
// pipeline waits for it instead of dropping, so the burst backs up into the
// kernel's ring and every operation is a document: none dropped by the
// output, none lost in the ring.
func TestFileOutputBurst(t *testing.T) {
	needRoot(t, "loads BPF programs")
	const n = 20000
	dir := t.TempDir()
	target := filepath.Join(dir, "burst", "f")
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("file:\n  selectors:\n    - name: writes\n      operation: [createFile, modifyFile]\n      targetFilePath: ["+filepath.Dir(target)+"/**]\n  responses:\n    - match: [writes]\n      actions: [log]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "events.ndjson")
	_, expect := startRun(t, "--policy", pol, "--output", "file="+events, "--file-rotate-every-kb", "4194304",
		"--pin-path", "", "--state-dir", filepath.Join(dir, "state"), "--data-path", filepath.Join(dir, "data"), "--metrics-period", "1s")
	expect("file selectors are evaluated")
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do : > %s; i=$((i+1)); done", n, target)
	start := time.Now()
	if out, err := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/busybox", "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("burst: %v %s", err, out)
	}
	t.Logf("%d opens for writing in %v", n, time.Since(start))

	// count reads the output: the burst's documents, and the newest metrics.
	type metrics struct {
		RingDrops     int64 `json:"ring_drops"`
		DocsPublished int64 `json:"docs_published"`
		DocsDropped   int64 `json:"docs_dropped"`
	}
	count := func() (docs, periodic int, m metrics) {
		f, err := os.Open(events)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case bytes.Contains(line, []byte(`"dataset":"cloud_defend.file"`)) && bytes.Contains(line, []byte(`"path":"`+target+`"`)):
				docs++
			case bytes.Contains(line, []byte(`"dataset":"cloud_defend.metrics"`)):
				var d struct {
					CloudDefend struct{ Metrics metrics } `json:"cloud_defend"`
				}
				if err := json.Unmarshal(line, &d); err != nil {
					t.Fatalf("metrics document: %v", err)
				}
				m = d.CloudDefend.Metrics
				periodic++
			}
		}
		return docs, periodic, m
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if docs, _, _ := count(); docs >= n {
			break
		}
	}
	// One more metrics document after the last of the burst's.
	time.Sleep(1500 * time.Millisecond)
	docs, periodic, m := count()
	t.Logf("%d documents of the burst's %d operations; the last of %d metrics documents: %+v", docs, n, periodic, m)
	if periodic == 0 || m.DocsPublished < n {
		t.Fatalf("no metrics document counting the burst's documents")
	}
	if m.DocsDropped != 0 || m.RingDrops != 0 || docs != n {
		t.Errorf("%d of %d operations reported; the output dropped %d documents, the ring %d events: want every one reported, none dropped",
			docs, n, m.DocsDropped, m.RingDrops)
	}
}
