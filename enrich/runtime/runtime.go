// Package runtime asks container runtimes what the cgroup path cannot say
// about a container: its image and whether it is privileged. Sources are CRI
// (containerd, CRI-O) and the Docker Engine API (Docker, and podman's
// compatible service); Cache puts them behind one lookup by container id.
package runtime

import (
	"context"
	"errors"
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
// remembers the answer. Lookups are bounded by Timeout: they run on the event
// path, once per container. A container no source knows is asked again after
// RetryAfter (it may not have been registered yet when its first process ran).
type Cache struct {
	Sources    []Source
	Timeout    time.Duration
	RetryAfter time.Duration
	MaxEntries int

	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	meta   Meta
	found  bool
	expiry time.Time // for misses
}

// NewCache returns a cache over sources with production defaults.
func NewCache(sources ...Source) *Cache {
	return &Cache{Sources: sources, Timeout: 250 * time.Millisecond, RetryAfter: 10 * time.Second, MaxEntries: 1 << 14, entries: map[string]entry{}}
}

// Lookup returns what the runtimes say about container id.
func (c *Cache) Lookup(id string) (Meta, bool) {
	if c == nil || len(c.Sources) == 0 || id == "" {
		return Meta{}, false
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && (e.found || now.Before(e.expiry)) {
		return e.meta, e.found
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	e = entry{expiry: now.Add(c.RetryAfter)}
	for _, s := range c.Sources {
		m, err := s.Container(ctx, id)
		if err == nil {
			m.Runtime = s.Name()
			e = entry{meta: m, found: true}
			break
		}
	}
	c.mu.Lock()
	if len(c.entries) >= c.MaxEntries {
		clear(c.entries)
	}
	c.entries[id] = e
	c.mu.Unlock()
	return e.meta, e.found
}

// Forget drops a container (it was removed).
func (c *Cache) Forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
