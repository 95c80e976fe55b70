package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/mountinfo"
	"github.com/cloud-defend/cloud-defend/output/estest"
)

// TestContainerDocuments runs real podman containers (runc underneath) from an
// image built here from busybox, under the real binary with a policy that logs
// every exec, and checks the documents Elasticsearch receives: container id and
// image (asked of podman's Docker-compatible API), user, args, parent chain and
// entry leaders for the container's init and for a `podman exec`.
//
// podman's API is reached through a proxy that holds its first answers longer
// than the daemon waits (as a loaded node did, where one run shipped a
// container's documents without image or privilege): the daemon must keep
// asking until it has them.
//
// The same documents, byte for byte, go to a file with --output file=PATH
// (the subtest "file"): a node without Elasticsearch gets the same product.
func TestContainerDocuments(t *testing.T) {
	const pol = "process:\n  selectors:\n    - name: allExecs\n      operation: [exec]\n  responses:\n    - match: [allExecs]\n      actions: [log]\n"
	t.Run("elasticsearch", func(t *testing.T) { containerDocuments(t, startPodmanSlowAPI(t, 2, pol)) })
	t.Run("file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "events.ndjson")
		containerDocuments(t, startPodmanSlowAPI(t, 2, pol, "--output", "file="+out))
	})
}

func containerDocuments(t *testing.T, h *podmanHarness) {
	podman, id := h.podman, h.id
	if got := podman("exec", "cdt", "/bin/cat", "/etc/motd"); got != "hello" {
		t.Fatalf("podman exec cat: %q", got)
	}

	find := func(what string, ok func(map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for _, d := range h.docs("logs-cloud_defend.process-ctr") {
				if ok(d) {
					return d
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("no document for %s; %d process documents", what, len(h.docs("logs-cloud_defend.process-ctr")))
		return nil
	}
	args := func(d map[string]any) string {
		a, _ := field(d, "process.args").([]any)
		var s []string
		for _, x := range a {
			s = append(s, x.(string))
		}
		return strings.Join(s, " ")
	}
	cat := find("podman exec cat", func(d map[string]any) bool { return args(d) == "/bin/cat /etc/motd" })
	sleep := find("the init's second sleep", func(d map[string]any) bool { return args(d) == "sleep 60" })
	common := map[string]any{
		"container.id": id, "container.image.name": "localhost/cdtest/busybox", "container.image.tag": "1.0",
		"container.security_context.privileged": false, "user.id": "1234", "process.user.id": "1234",
		"process.entry_leader.entry_meta.type": "container", "event.action": "exec", "event.kind": "event",
	}
	for name, d := range map[string]map[string]any{"cat": cat, "sleep": sleep} {
		for path, want := range common {
			if got := field(d, path); got != want {
				t.Errorf("%s: %s = %#v, want %#v", name, path, got, want)
			}
		}
	}
	// The exec'd process entered the container itself: it is its own entry
	// leader; its parent is on the host (runc, started by conmon).
	if field(cat, "process.entry_leader.same_as_process") != true || field(cat, "process.command_line") != "/bin/cat /etc/motd" {
		t.Errorf("cat: entry leader same_as_process %v, command_line %v", field(cat, "process.entry_leader.same_as_process"), field(cat, "process.command_line"))
	}
	// The init's child: the entry leader is the container's init (sh), which
	// is also its parent.
	if field(sleep, "process.parent.args") == nil || field(sleep, "process.parent.args").([]any)[0] != "/bin/sh" || field(sleep, "process.entry_leader.entity_id") != field(sleep, "process.parent.entity_id") ||
		field(sleep, "process.entry_leader.same_as_process") != false {
		t.Errorf("sleep: parent %v (%v), entry leader %v", field(sleep, "process.parent.name"), field(sleep, "process.parent.entity_id"), field(sleep, "process.entry_leader"))
	}
	if field(sleep, "process.parent.args") == nil || field(sleep, "process.entry_leader.start") == nil {
		t.Errorf("sleep: parent args %v entry leader start %v", field(sleep, "process.parent.args"), field(sleep, "process.entry_leader.start"))
	}
	h.daemon.Process.Signal(syscall.SIGTERM)
	if err := h.daemon.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// podmanHarness is the real binary logging into the test Elasticsearch (or,
// given --output, there) while a podman container ("cdt", user 1234, from an
// image built here from busybox) runs `sh -c "sleep 1; sleep 60; exit 0"`.
type podmanHarness struct {
	es *estest.Server
	// docs are the documents of a data stream the output holds so far.
	docs   func(stream string) []map[string]any
	podman func(args ...string) string
	id     string // the container's id
	daemon *exec.Cmd
}

func startPodman(t *testing.T, policy string, daemonArgs ...string) *podmanHarness {
	t.Helper()
	return startPodmanSlowAPI(t, 0, policy, daemonArgs...)
}

// podmanEnv is podman with its own storage and an image built from busybox
// (localhost/cdtest/busybox:1.0), its Docker-compatible API serving at sock.
type podmanEnv struct {
	dir    string
	store  []string
	podman func(args ...string) string
	sock   string
}

// podmanUlimits are what the containers run with: this machine's limits are
// below podman's defaults, which runc then cannot set.
var podmanUlimits = []string{"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "--network", "none"}

func newPodmanEnv(t *testing.T) *podmanEnv {
	t.Helper()
	needRoot(t, "runs containers and loads BPF programs")
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("podman is not installed (.ci/run installs it)")
		}
		t.Skip("needs podman")
	}
	// podman refuses a runroot path longer than 50 bytes: t.TempDir's names
	// the test, and subtests make it longer.
	dir, err := os.MkdirTemp("", "cdt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // best effort: what podman left mounted is reported by unmountUnder
	t.Cleanup(func() { unmountUnder(t, dir) })  // podman's storage mounts, after the containers are gone
	// podman with its own storage, so the test leaves nothing behind.
	store := []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--cgroup-manager", "cgroupfs"}
	podman := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("podman", append(slices.Clone(store), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "var/run/secrets/kubernetes.io/serviceaccount"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("needs busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "cat", "id", "base64", "chmod", "nsenter", "touch", "echo", "true"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "motd"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "var/run/secrets/kubernetes.io/serviceaccount/token"), []byte("eyJhbGciOi.test.token\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	podman("import", tarball, "localhost/cdtest/busybox:1.0")

	sock := filepath.Join(dir, "podman.sock")
	svc := exec.Command("podman", append(slices.Clone(store), "system", "service", "--time", "0", "unix://"+sock)...)
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Process.Kill(); svc.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &podmanEnv{dir: dir, store: store, podman: podman, sock: sock}
}

// startPodmanSlowAPI is startPodman with the first slow answers of podman's
// API held for a second, four times the daemon's timeout.
func startPodmanSlowAPI(t *testing.T, slow int, policy string, daemonArgs ...string) *podmanHarness {
	t.Helper()
	env := newPodmanEnv(t)
	dir, store, podman, sock := env.dir, env.store, env.podman, env.sock
	bin := daemonBinary(t)

	es, err := estest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Close)
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--policy", pol, "--data-path", filepath.Join(dir, "data"), "--namespace", "ctr")
	docs := func(stream string) []map[string]any { return es.Docs(stream) }
	if i := slices.Index(daemonArgs, "--output"); i >= 0 && i+1 < len(daemonArgs) {
		if path, ok := strings.CutPrefix(daemonArgs[i+1], "file="); ok {
			docs = func(stream string) []map[string]any { return fileDocs(t, path, stream) }
		}
	} else {
		cmd.Args = append(cmd.Args, "--output", "elasticsearch", "--es-url", es.URL())
	}
	cmd.Args = append(cmd.Args, daemonArgs...)
	if slow > 0 {
		sock = slowProxy(t, sock, slow, time.Second)
	}
	cmd.Env = append(os.Environ(), "DOCKER_SOCKET="+sock, "CRI_SOCKET="+filepath.Join(dir, "no-cri.sock"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			if strings.Contains(sc.Text(), "blocking is") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not start")
	}

	id := podman(append(append([]string{"run", "-d", "--name", "cdt", "--user", "1234:1234"}, podmanUlimits...),
		"localhost/cdtest/busybox:1.0", "/bin/sh", "-c", "sleep 1; sleep 60; exit 0")...)
	t.Cleanup(func() {
		// A container left running keeps its processes and mounts in dir,
		// which then cannot be removed.
		if out, err := exec.Command("podman", append(slices.Clone(store), "rm", "-f", "-i", "-t", "0", "cdt")...).CombinedOutput(); err != nil {
			t.Errorf("podman rm cdt: %v\n%s", err, out)
		}
	})
	return &podmanHarness{es: es, docs: docs, podman: podman, id: id, daemon: cmd}
}

// fileDocs reads the documents of a data stream from an NDJSON output file:
// each line one document, routed by its data_stream fields as Filebeat,
// Vector or Fluent Bit would.
func fileDocs(t *testing.T, path, stream string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("%s: a line that is not one JSON document: %v: %q", path, err, line)
		}
		ds, _ := d["data_stream"].(map[string]any)
		if fmt.Sprintf("%v-%v-%v", ds["type"], ds["dataset"], ds["namespace"]) == stream {
			out = append(out, d)
		}
	}
	return out
}

// slowProxy serves the HTTP API at unix socket upstream on a new socket,
// holding each of the first n answers for delay before forwarding it. It fails
// the test if the daemon never got past them.
func slowProxy(t *testing.T, upstream string, n int, delay time.Duration) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "slow.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse("http://podman")
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", upstream)
	}}
	var mu sync.Mutex
	var requests int
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		held := requests <= n
		mu.Unlock()
		if held {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		if requests <= n {
			t.Errorf("the daemon asked podman's API %d times; the first %d were held: it gave up", requests, n)
		}
		t.Logf("podman API: %d requests, the first %d held %v", requests, n, delay)
	})
	return sock
}

// unmountUnder ends the processes still working in dir (podman's cleanup
// helpers, started by conmon when a container exits, outlive `podman rm` and
// mount the storage again), then detaches every mount below dir, innermost
// first, until none is left.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	for range 40 {
		var left []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), dir) {
				syscall.Kill(pid, syscall.SIGKILL)
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := mountinfo.UnmountUnder(dir); err != nil {
		t.Errorf("podman's storage under %s: %v", dir, err)
	}
}
