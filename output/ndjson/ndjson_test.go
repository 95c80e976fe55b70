package ndjson

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type testLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *testLog) add(level, f string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(f, a...))
	l.mu.Unlock()
}
func (l *testLog) Infof(f string, a ...any)  { l.add("info", f, a...) }
func (l *testLog) Warnf(f string, a ...any)  { l.add("warn", f, a...) }
func (l *testLog) Errorf(f string, a ...any) { l.add("error", f, a...) }

// doc is document i, size bytes long (at least ~60).
func doc(i, size int) []byte {
	b := fmt.Appendf(nil, `{"@timestamp":"2026-11-22T10:00:00.%09dZ","event":{"id":"ev-%06d"},"pad":"`, i, i)
	b = append(b, strings.Repeat("x", max(0, size-len(b)-2))...)
	return append(b, `"}`...)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("%s does not end in a newline", path)
	}
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func closeNow(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRotation: files never pass the limit, are whole lines, newest first,
// and the oldest past number_of_files are deleted.
func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud-defend.ndjson")
	w, err := Open(Config{Path: path, RotateEveryKB: 1, NumberOfFiles: 3}, &testLog{})
	if err != nil {
		t.Fatal(err)
	}
	// 300-byte lines (299 + newline): three fit in 1024 bytes, a fourth not.
	const n = 20
	for i := range n {
		if err := w.Publish("s", "id", doc(i, 299)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 3 {
			w.Flush() // batches that straddle rotations
		}
	}
	closeNow(t, w)
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.3 exists beyond number_of_files 3 (%v)", path, err)
	}
	// Newest last: .2, .1, the file itself.
	var got []string
	for _, p := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1024 {
			t.Errorf("%s is %d bytes, past 1024", p, fi.Size())
		}
		lines := readLines(t, p)
		for _, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Errorf("%s: a split line %q", p, l)
			}
		}
		if p != path && len(lines) != 3 {
			t.Errorf("%s has %d lines, want 3", p, len(lines))
		}
		got = append(got, lines...)
	}
	// 20 lines at 3 per file: 7 files, of which the last 3 are kept
	// (lines 12..19: 3 + 3 + 2).
	if len(got) != 8 {
		t.Fatalf("%d lines kept, want 8", len(got))
	}
	for k, l := range got {
		if want := string(doc(12+k, 299)); l != want {
			t.Errorf("line %d: %.40s, want %.40s", k, l, want)
		}
	}
	st := w.Stats()
	if st.Rotations != 6 || st.Written != n || st.Dropped != 0 || st.Published != n || st.Bytes != n*300 {
		t.Errorf("stats %+v", st)
	}
}

// TestLongLine: a line longer than the limit is written whole, in a file of
// its own.
func TestLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	w, err := Open(Config{Path: path, RotateEveryKB: 1}, &testLog{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish("s", "1", doc(1, 100)); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish("s", "2", doc(2, 3000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish("s", "3", doc(3, 100)); err != nil {
		t.Fatal(err)
	}
	closeNow(t, w)
	for p, want := range map[string]string{path + ".2": string(doc(1, 100)), path + ".1": string(doc(2, 3000)), path: string(doc(3, 100))} {
		if l := readLines(t, p); len(l) != 1 || l[0] != want {
			t.Errorf("%s: %d lines", p, len(l))
		}
	}
}

// TestAppendOnRestart: a second run appends to the file the first left; a
// torn last line (a crash mid-write) is closed with a newline first.
func TestAppendOnRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	for run := range 2 {
		w, err := Open(Config{Path: path}, &testLog{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := w.Publish("s", "id", doc(run*3+i, 200)); err != nil {
				t.Fatal(err)
			}
		}
		closeNow(t, w)
	}
	if l := readLines(t, path); len(l) != 6 || l[5] != string(doc(5, 200)) {
		t.Fatalf("%d lines after two runs", len(l))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"torn":`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := Open(Config{Path: path}, &testLog{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish("s", "id", doc(6, 200)); err != nil {
		t.Fatal(err)
	}
	closeNow(t, w)
	l := readLines(t, path)
	if len(l) != 8 || l[6] != `{"torn":` || l[7] != string(doc(6, 200)) {
		t.Errorf("after a torn line: %q", l[5:])
	}
	if _, err := os.Stat(path + ".1"); err == nil {
		t.Error("rotated at start")
	}
}

func TestPermissions(t *testing.T) {
	dir := t.TempDir()
	for perm, want := range map[os.FileMode]os.FileMode{0: 0o600, 0o640: 0o640} {
		path := filepath.Join(dir, fmt.Sprint(perm))
		w, err := Open(Config{Path: path, Permissions: perm, RotateEveryKB: 1}, &testLog{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if err := w.Publish("s", "id", doc(i, 400)); err != nil {
				t.Fatal(err)
			}
		}
		closeNow(t, w)
		for _, p := range []string{path, path + ".1"} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode().Perm(), want, err)
			}
		}
	}
}

// stalled is a writer that blocks until released, as a terminal scrolled
// back or a full pipe does.
type stalled struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (s *stalled) Write(p []byte) (int, error) {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// TestStalledWriter: with the writer stuck, Publish waits for room once, for
// docq.Stall, then returns at once; what does not fit the queue is dropped,
// counted and reported; once the writer moves again, Close writes what was
// queued.
func TestStalledWriter(t *testing.T) {
	s := &stalled{release: make(chan struct{})}
	w := New(s, "", Config{QueueBytes: 64 << 10}, &testLog{})
	const n = 10000
	done := make(chan time.Duration)
	go func() {
		var worst time.Duration
		for i := range n {
			start := time.Now()
			if err := w.Publish("s", "id", doc(i, 1000)); err != nil {
				t.Error(err)
			}
			if i%50 == 0 {
				w.Flush()
			}
			worst = max(worst, time.Since(start))
		}
		done <- worst
	}()
	select {
	case worst := <-done:
		t.Logf("slowest Publish with the writer stalled: %v", worst)
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a stalled writer")
	}
	st := w.Stats()
	if st.Published != n || st.DroppedFull < n-70 || st.Written != 0 || st.Published != st.Written+st.Dropped+st.Pending {
		t.Errorf("stats while stalled %+v", st)
	}
	if d, msg := w.Health(); !d || !strings.Contains(msg, "could not keep up") || !strings.Contains(msg, "stdout") {
		t.Errorf("health while dropping: %v %q", d, msg)
	} else {
		t.Logf("health: %s", msg)
	}
	close(s.release)
	closeNow(t, w)
	st = w.Stats()
	if st.Pending != 0 || st.Written+st.Dropped != n || st.Written == 0 {
		t.Errorf("stats after close %+v", st)
	}
	if lines := strings.Count(s.buf.String(), "\n"); int64(lines) != st.Written {
		t.Errorf("%d lines written, stats say %d", lines, st.Written)
	}
}

// TestCloseDeadline: a writer stuck past Close's deadline costs the queued
// documents, counted, and Close returns.
func TestCloseDeadline(t *testing.T) {
	s := &stalled{release: make(chan struct{})}
	defer close(s.release)
	w := New(s, "pipe", Config{}, &testLog{})
	for i := range 100 {
		if err := w.Publish("s", "id", doc(i, 500)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			w.Flush()
			time.Sleep(20 * time.Millisecond) // the writer takes it and is stuck
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close: %v", err)
	}
	if st := w.Stats(); st.DroppedFull < 99 {
		t.Errorf("stats %+v", st)
	}
	if err := w.Publish("s", "id", doc(0, 100)); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
}

// failing fails every write while fail is set.
type failing struct {
	mu   sync.Mutex
	fail bool
	buf  bytes.Buffer
}

func (f *failing) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return 0, syscall.ENOSPC
	}
	return f.buf.Write(p)
}

// TestWriteErrors: documents a write fails for are counted as dropped and
// the error is reported; the next write that works clears it.
func TestWriteErrors(t *testing.T) {
	f := &failing{fail: true}
	w := New(f, "", Config{}, &testLog{})
	for i := range 10 {
		if err := w.Publish("s", "id", doc(i, 200)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	waitFor(t, "the failed write", func() bool { return w.Stats().DroppedError == 10 })
	d, msg := w.Health()
	if !d || !strings.Contains(msg, "10 lost to write errors") || !strings.Contains(msg, "no space left on device") {
		t.Errorf("health %v %q", d, msg)
	}
	t.Logf("health: %s", msg)
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	if err := w.Publish("s", "id", doc(10, 200)); err != nil {
		t.Fatal(err)
	}
	closeNow(t, w)
	st := w.Stats()
	if st.Written != 1 || st.DroppedError != 10 || st.LastError == "" {
		t.Errorf("stats %+v", st)
	}
	if d, msg := w.Health(); !d || strings.Contains(msg, "write error on") {
		t.Errorf("after recovery the drops are still reported, the error not: %v %q", d, msg)
	}
}

// TestDiskFull: a file on a full disk (/dev/full) counts its documents as
// dropped, logs the error once and keeps trying.
func TestDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no /dev/full: the disk-full path cannot be tested: %v", err)
		}
		t.Skipf("no /dev/full (the kernel's always-full device): %v", err)
	}
	log := &testLog{}
	w, err := Open(Config{Path: "/dev/full"}, log)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for i := range 5 {
			if err := w.Publish("s", "id", doc(round*5+i, 200)); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		waitFor(t, "drops", func() bool { return w.Stats().DroppedError == int64(round+1)*5 })
	}
	if d, msg := w.Health(); !d || !strings.Contains(msg, "file output at /dev/full") {
		t.Errorf("health %v %q", d, msg)
	}
	closeNow(t, w)
	errs := 0
	for _, l := range log.lines {
		if strings.HasPrefix(l, "error") {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("logged %d errors, want 1: %q", errs, log.lines)
	}
}

// TestCloseDrains: Close writes everything queued, also without a Flush.
func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	w, err := Open(Config{Path: path, FlushInterval: time.Hour}, &testLog{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := w.Publish("s", "id", doc(i, 500)); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, w)
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	i := 0
	for sc.Scan() {
		if sc.Text() != string(doc(i, 500)) {
			t.Fatalf("line %d differs", i)
		}
		i++
	}
	if i != 1000 || w.Stats().Written != 1000 {
		t.Errorf("%d lines, stats %+v", i, w.Stats())
	}
}

// TestPublishCopies: the caller's buffer is reused after Publish returns, as
// the encoder's is.
func TestPublishCopies(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, "", Config{}, &testLog{})
	buf := []byte(`{"a":1}`)
	if err := w.Publish("s", "id", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, `{"b":2}`)
	closeNow(t, w)
	if out.String() != "{\"a\":1}\n" {
		t.Errorf("wrote %q", out.String())
	}
}

var _ io.Writer = (*stalled)(nil)

// TestTornWrite: a write the file takes only part of keeps the whole lines
// it did take, counted as written, and cuts the torn one after them off.
// The file size limit (RLIMIT_FSIZE, whose SIGXFSZ Go ignores) makes the
// kernel take part of a write, then fail it with EFBIG.
func TestTornWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	w, err := Open(Config{Path: path, FlushInterval: time.Hour}, &testLog{})
	if err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	line := len(doc(0, 200)) + 1
	limit := syscall.Rlimit{Cur: uint64(line + line/2), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot limit the file size (RLIMIT_FSIZE): a torn write cannot be made: %v", err)
		}
		t.Skipf("cannot limit the file size (RLIMIT_FSIZE): %v", err)
	}
	restore := func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
	}
	defer restore()
	for i := range 3 {
		if err := w.Publish("s", "id", doc(i, 200)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the write", func() bool { return w.Stats().Pending == 0 })
	restore()
	if st := w.Stats(); st.Written != 1 || st.DroppedError != 2 || st.Bytes != int64(line) {
		t.Errorf("stats %+v", st)
	}
	if l := readLines(t, path); len(l) != 1 || l[0] != string(doc(0, 200)) {
		t.Errorf("file %q", l)
	}
	closeNow(t, w)
}
