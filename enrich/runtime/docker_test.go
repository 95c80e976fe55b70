package runtime

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// engineAPI is a stand-in for the Docker Engine API on a unix socket, strict
// about the subset DockerAPI calls (GET /containers/{id}/json, optionally
// version-prefixed), answering as dockerd and podman's compat service do, and
// slowed down or failing on purpose for the first answers.
type engineAPI struct {
	mu         sync.Mutex
	containers map[string]string // id → inspect JSON
	requests   int
	// slow and fail are how many of the first requests hang (until the
	// client gives up) or fail with a 500.
	slow, fail int
	bad        []string // requests outside the subset
}

var inspectPath = regexp.MustCompile(`^(/v1\.[0-9]+)?/containers/([^/]+)/json$`)

// ServeHTTP leaves its writes of a response unchecked: one that fails shows
// in the client under test, which then gets no or a torn answer.
func (a *engineAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests++
	n := a.requests
	a.mu.Unlock()
	m := inspectPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodGet || m == nil || r.URL.RawQuery != "" {
		a.mu.Lock()
		a.bad = append(a.bad, r.Method+" "+r.URL.String())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"page not found"}` + "\n"))
		return
	}
	switch {
	case n <= a.slow:
		<-r.Context().Done() // the client gave up
		return
	case n <= a.slow+a.fail:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"message":"database is locked"}` + "\n"))
		return
	}
	a.mu.Lock()
	body, ok := a.containers[m[2]]
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Api-Version", "1.41")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"No such container: ` + m[2] + `"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(body))
}

func (a *engineAPI) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

func serveEngineAPI(t *testing.T, a *engineAPI) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.bad) > 0 {
			t.Errorf("requests outside the Docker Engine API subset: %v", a.bad)
		}
	})
	return sock
}

const inspectNginx = `{"Id":"c1","Config":{"Image":"docker.io/library/nginx:1.27","Labels":{}},"HostConfig":{"Privileged":true},"State":{"Running":true}}`

func TestDockerAPI(t *testing.T) {
	api := &engineAPI{containers: map[string]string{"c1": inspectNginx}}
	d := NewDockerAPI(serveEngineAPI(t, api))
	m, err := d.Container(context.Background(), "c1")
	if err != nil || m.ImageName != "docker.io/library/nginx" || m.ImageTag != "1.27" || m.Privileged == nil || !*m.Privileged {
		t.Fatalf("Container(c1) = %+v, %v", m, err)
	}
	if _, err := d.Container(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown container: %v, want ErrNotFound", err)
	}
	api.fail = api.count() + 1
	if _, err := d.Container(context.Background(), "c1"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("a 500 answer: %v, want an error other than not found", err)
	}
}

// TestCacheRetriesSlowRuntime: a runtime API that hangs on its first answers,
// then fails, then answers. The first lookup gives up after Timeout without
// holding the event path longer; later lookups return Pending at once; the
// background retries find the answer, which is then final.
func TestCacheRetriesSlowRuntime(t *testing.T) {
	api := &engineAPI{containers: map[string]string{"c1": inspectNginx}, slow: 2, fail: 2}
	c := NewCache(NewDockerAPI(serveEngineAPI(t, api)))
	c.Timeout, c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, 10*time.Millisecond, 40*time.Millisecond
	defer c.Close()
	start := time.Now()
	if _, st := c.Lookup("c1", nil); st != Pending {
		t.Fatalf("first lookup against a hanging runtime: %v, want Pending", st)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("first lookup took %v, Timeout is 50ms", d)
	}
	start = time.Now()
	if _, st := c.Lookup("c1", nil); st != Pending || time.Since(start) > 10*time.Millisecond {
		t.Errorf("second lookup: %v after %v, want Pending at once", st, time.Since(start))
	}
	var m Meta
	var st State
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m, st = c.Lookup("c1", nil); st == Found {
			break
		}
	}
	if st != Found || m.ImageName != "docker.io/library/nginx" || m.ImageTag != "1.27" || m.Runtime != "docker" || !*m.Privileged {
		n, err := c.Tries("c1")
		t.Fatalf("after retries: %+v %v (%d tries, last error %v)", m, st, n, err)
	}
	if n, _ := c.Tries("c1"); n != 5 {
		t.Errorf("%d tries, want 5 (2 hung, 2 failed, 1 answered)", n)
	}
	asked := api.count()
	time.Sleep(100 * time.Millisecond)
	c.Lookup("c1", nil)
	if api.count() != asked {
		t.Errorf("asked again after a final answer")
	}
}

// TestCacheStopsWhenGone: a container the runtime never knows is asked about
// while it is alive, less often as time goes (backoff), and no more once it is
// gone or forgotten.
func TestCacheStopsWhenGone(t *testing.T) {
	api := &engineAPI{containers: map[string]string{}}
	c := NewCache(NewDockerAPI(serveEngineAPI(t, api)))
	c.Timeout, c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, 5*time.Millisecond, 20*time.Millisecond
	defer c.Close()
	var mu sync.Mutex
	alive := true
	isAlive := func() bool { mu.Lock(); defer mu.Unlock(); return alive }
	if _, st := c.Lookup("ghost", isAlive); st != Pending {
		t.Fatalf("lookup of an unknown live container: %v, want Pending", st)
	}
	time.Sleep(150 * time.Millisecond)
	n := api.count()
	// 5, 10, 20, 20, ... ms: about 8 in 150 ms; without backoff it would be 30.
	if n < 3 || n > 15 {
		t.Errorf("%d questions in 150ms with backoff 5ms..20ms", n)
	}
	mu.Lock()
	alive = false
	mu.Unlock()
	time.Sleep(60 * time.Millisecond)
	if _, st := c.Lookup("ghost", isAlive); st != Unknown {
		t.Errorf("gone container: %v, want Unknown", st)
	}
	n = api.count()
	time.Sleep(60 * time.Millisecond)
	if api.count() != n {
		t.Errorf("still asking about a gone container")
	}

	c.Lookup("forgotten", nil)
	c.Forget("forgotten")
	time.Sleep(40 * time.Millisecond)
	n = api.count()
	time.Sleep(60 * time.Millisecond)
	if api.count() != n {
		t.Errorf("still asking about a forgotten container")
	}
}
