package runtime

import (
	"context"
	"errors"
	"testing"
)

func TestSplitImage(t *testing.T) {
	for ref, want := range map[string][2]string{
		"nginx":                            {"nginx", ""},
		"nginx:1.27":                       {"nginx", "1.27"},
		"docker.io/library/nginx:1.27":     {"docker.io/library/nginx", "1.27"},
		"registry:5000/team/app":           {"registry:5000/team/app", ""},
		"registry:5000/team/app:v2":        {"registry:5000/team/app", "v2"},
		"app@sha256:0123abcd":              {"app", ""},
		"quay.io/x/app:v1@sha256:0123abcd": {"quay.io/x/app", "v1"},
		"localhost/cdtest/busybox:1.0":     {"localhost/cdtest/busybox", "1.0"},
	} {
		if n, tag := SplitImage(ref); n != want[0] || tag != want[1] {
			t.Errorf("SplitImage(%q) = %q, %q; want %q, %q", ref, n, tag, want[0], want[1])
		}
	}
}

func TestPrivilegedFromVerboseInfo(t *testing.T) {
	for info, want := range map[string][2]bool{
		`{"sandboxID":"s","config":{"metadata":{"name":"c"},"linux":{"security_context":{"privileged":true}}}}`: {true, true},
		`{"config":{"linux":{"security_context":{}}}}`:                                                          {false, false},
		`{"privileged":false,"pid":42}`:                                                                         {false, true},
		`not json`:                                                                                              {false, false},
		``:                                                                                                      {false, false},
	} {
		if p, ok := privileged(info); p != want[0] || ok != want[1] {
			t.Errorf("privileged(%s) = %v, %v; want %v, %v", info, p, ok, want[0], want[1])
		}
	}
}

// countingSource knows one container and counts questions.
type countingSource struct {
	known string
	asked int
	fail  error
}

func (s *countingSource) Name() string { return "test" }
func (s *countingSource) Container(_ context.Context, id string) (Meta, error) {
	s.asked++
	if s.fail != nil {
		return Meta{}, s.fail
	}
	if id != s.known {
		return Meta{}, ErrNotFound
	}
	return Meta{ImageName: "img", ImageTag: "t"}, nil
}

func TestCache(t *testing.T) {
	down := &countingSource{fail: errors.New("connection refused")}
	src := &countingSource{known: "abc"}
	c := NewCache(down, src)
	defer c.Close()
	for range 3 {
		if m, st := c.Lookup("abc", nil); st != Found || m.ImageName != "img" || m.Runtime != "test" {
			t.Fatalf("Lookup(abc) = %+v, %v", m, st)
		}
	}
	if src.asked != 1 {
		t.Errorf("asked %d times for a known container, want once", src.asked)
	}
	var nilCache *Cache
	if _, st := nilCache.Lookup("abc", nil); st != Unknown {
		t.Error("a nil cache found something")
	}
}

func TestPolicyImage(t *testing.T) {
	for ref, want := range map[string][3]string{
		"docker.io/library/nginx:1.25":          {"nginx", "1.25", "docker.io/library/nginx"},
		"registry.local:5000/team/app@sha256:0": {"app", "", "registry.local:5000/team/app"},
		"redis":                                 {"redis", "", "redis"},
		"localhost/cloud-defend/busybox:1":      {"busybox", "1", "localhost/cloud-defend/busybox"},
	} {
		name, tag, full := PolicyImage(ref)
		if [3]string{name, tag, full} != want {
			t.Errorf("%s: %q %q %q, want %q", ref, name, tag, full, want)
		}
	}
}
