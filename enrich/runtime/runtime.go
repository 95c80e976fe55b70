// Package runtime asks container runtimes what the cgroup path cannot say
// about a container: its image and whether it is privileged. Sources are CRI
// (containerd, CRI-O) and the Docker Engine API (Docker, and podman's
// compatible service); Cache puts them behind one lookup by container id.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Meta is what a runtime says about a container.
type Meta struct {
	ImageName  string // repository, without tag or digest: "docker.io/library/nginx"
	ImageTag   string // "1.27"; empty for a digest-only reference
	Privileged *bool  // nil when the runtime does not say
	Runtime    string // which source answered: "cri", "docker"
}

// ErrNotFound says the runtime does not know the container.
var ErrNotFound = errors.New("container not found")

// Source is one runtime's API.
type Source interface {
	Container(ctx context.Context, id string) (Meta, error)
	Name() string
}

// SplitImage splits an image reference into name and tag. A digest
// ("name@sha256:…") is dropped; a port in the registry ("host:5000/x") is not
// a tag.
func SplitImage(ref string) (name, tag string) {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, ""
}

// PolicyImage names an image reference's parts as the policy language's conditions
// do: containerImageFullName is the repository without tag or digest
// ("docker.io/library/nginx"), containerImageName its last path segment
// ("nginx"), containerImageTag the tag.
func PolicyImage(ref string) (name, tag, fullName string) {
	fullName, tag = SplitImage(ref)
	name = fullName[strings.LastIndexByte(fullName, '/')+1:]
	return name, tag, fullName
}

// Cache answers lookups from the first source that knows the container, and
// remembers the answer.
//
// A lookup runs on the event path, so its first question is bounded by
// Timeout. Until this cache retried, a question that timed out (a runtime API
// slow to answer on a loaded node: podman's service took longer than 250 ms
// there) was remembered as a miss for 10 s, and the container's documents in
// that window, often all of a short-lived container's, carried no image or
// privilege, and image-scoped selectors never applied to it. Now a first
// question that fails is asked again in the background with exponential
// backoff (MinBackoff, doubling up to MaxBackoff) until a source answers or
// the container is gone: its alive function says so, or Forget is called.
// Lookups meanwhile return Pending at once, without waiting on the runtime.
type Cache struct {
	Sources    []Source
	Timeout    time.Duration // for each source's answer to one question
	MinBackoff time.Duration
	MaxBackoff time.Duration
	MaxEntries int

	mu      sync.Mutex
	entries map[string]*entry
	done    chan struct{} // closed by Close: retries stop
	closed  bool
	wg      sync.WaitGroup
}

// State is what a lookup knows.
type State int

const (
	// Unknown: no source is configured, or the container is gone before any
	// source answered.
	Unknown State = iota
	// Pending: no source has answered yet; the cache keeps asking.
	Pending
	// Found: a source answered; Meta is final.
	Found
)

type entry struct {
	meta    Meta
	state   State
	tries   int
	lastErr error
}

// NewCache returns a cache over sources with production defaults.
func NewCache(sources ...Source) *Cache {
	return &Cache{Sources: sources, Timeout: 250 * time.Millisecond, MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 10 * time.Second, MaxEntries: 1 << 14, entries: map[string]*entry{}, done: make(chan struct{})}
}

// Lookup returns what the runtimes say about container id. alive tells the
// background retries whether the container still exists (nil: until Forget).
// Only the first lookup of an id waits for the runtime (at most Timeout per
// source); later ones return the cached state.
func (c *Cache) Lookup(id string, alive func() bool) (Meta, State) {
	if c == nil || len(c.Sources) == 0 || id == "" {
		return Meta{}, Unknown
	}
	c.mu.Lock()
	if e, ok := c.entries[id]; ok {
		m, st := e.meta, e.state
		c.mu.Unlock()
		return m, st
	}
	if len(c.entries) >= c.MaxEntries {
		// Only answers are dropped: a retry in flight finds its entry gone
		// and stops, and the next lookup starts over.
		clear(c.entries)
	}
	e := &entry{state: Pending}
	c.entries[id] = e
	c.mu.Unlock()

	m, err := c.ask(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[id] != e {
		return Meta{}, Unknown // forgotten meanwhile
	}
	e.tries = 1
	if err == nil {
		e.meta, e.state = m, Found
		return m, Found
	}
	e.lastErr = err
	if c.closed {
		e.state = Unknown
		return Meta{}, Unknown
	}
	c.wg.Add(1)
	go c.retry(id, e, alive)
	return Meta{}, Pending
}

// ask puts one question to every source in turn, each bounded by Timeout (a
// slow first source must not use up the second one's time).
func (c *Cache) ask(id string) (Meta, error) {
	var errs []error
	for _, s := range c.Sources {
		ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
		m, err := s.Container(ctx, id)
		cancel()
		if err == nil {
			m.Runtime = s.Name()
			return m, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
	}
	return Meta{}, errors.Join(errs...)
}

// retry asks again after each backoff until a source answers, the container
// is gone or forgotten, or the cache is closed.
func (c *Cache) retry(id string, e *entry, alive func() bool) {
	defer c.wg.Done()
	wait := c.MinBackoff
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		current := c.entries[id] == e
		c.mu.Unlock()
		if !current {
			return
		}
		if alive != nil && !alive() {
			c.mu.Lock()
			e.state = Unknown
			c.mu.Unlock()
			return
		}
		m, err := c.ask(id)
		c.mu.Lock()
		e.tries++
		if err == nil {
			e.meta, e.state = m, Found
			c.mu.Unlock()
			return
		}
		e.lastErr = err
		c.mu.Unlock()
		wait = min(2*wait, c.MaxBackoff)
		t.Reset(wait)
	}
}

// Tries says how many times id was asked and the last error (for tests and
// diagnostics).
func (c *Cache) Tries(id string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		return e.tries, e.lastErr
	}
	return 0, nil
}

// Forget drops a container (it was removed); a retry for it stops.
func (c *Cache) Forget(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

// Close stops the retries and waits for them.
func (c *Cache) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	c.mu.Unlock()
	c.wg.Wait()
}
