package policy

import "strings"

// PathKind is how a path condition matches.
type PathKind uint8

const (
	// PathExact matches exactly one path: /usr/bin/echo.
	PathExact PathKind = iota
	// PathChildren is a trailing /*: direct children of Dir only.
	PathChildren
	// PathDescendants is a trailing /**: anything below Dir, at any depth.
	PathDescendants
)

// PathPattern is a compiled targetFilePath or processExecutable value.
type PathPattern struct {
	Kind PathKind
	// Path is the exact path for PathExact and the directory ("" for the root)
	// for the wildcard kinds.
	Path string
	dir  string // Path + "/", precomputed so matching never allocates
}

func newPathPattern(v string) PathPattern {
	switch {
	case strings.HasSuffix(v, "/**"):
		p := strings.TrimSuffix(v, "/**")
		return PathPattern{Kind: PathDescendants, Path: p, dir: p + "/"}
	case strings.HasSuffix(v, "/*"):
		p := strings.TrimSuffix(v, "/*")
		return PathPattern{Kind: PathChildren, Path: p, dir: p + "/"}
	}
	return PathPattern{Kind: PathExact, Path: v}
}

func (p PathPattern) String() string {
	switch p.Kind {
	case PathChildren:
		return p.Path + "/*"
	case PathDescendants:
		return p.Path + "/**"
	}
	return p.Path
}

// Match reports whether the resolved absolute path matches. The directory itself is
// not its own child or descendant: /usr/bin/** does not match /usr/bin.
//
// A path ending in "/" names a directory tree that an operation moves as a whole
// (a directory renamed into or out of place): it matches as the path of a
// nameless file inside the directory, and also every pattern at or below the
// directory, whose paths the move brings into (or takes out of) being.
func (p PathPattern) Match(path string) bool {
	if len(path) > 1 && path[len(path)-1] == '/' {
		if p.Kind == PathExact {
			// The directory itself, or a file below it.
			if p.Path == path[:len(path)-1] || strings.HasPrefix(p.Path, path) {
				return true
			}
		} else if strings.HasPrefix(p.dir, path) {
			return true
		}
	}
	switch p.Kind {
	case PathExact:
		return path == p.Path
	case PathChildren:
		rest, ok := strings.CutPrefix(path, p.dir)
		return ok && rest != "" && strings.IndexByte(rest, '/') < 0
	case PathDescendants:
		rest, ok := strings.CutPrefix(path, p.dir)
		return ok && rest != ""
	}
	return false
}

// NamePattern is a kubernetesPodName value or a pod label value: exact, or a prefix
// when written with a trailing *.
type NamePattern struct {
	Value  string
	Prefix bool
}

func newNamePattern(v string) NamePattern {
	if p, ok := strings.CutSuffix(v, "*"); ok {
		return NamePattern{Value: p, Prefix: true}
	}
	return NamePattern{Value: v}
}

func (n NamePattern) String() string {
	if n.Prefix {
		return n.Value + "*"
	}
	return n.Value
}

func (n NamePattern) Match(s string) bool {
	if n.Prefix {
		return strings.HasPrefix(s, n.Value)
	}
	return s == n.Value
}

// LabelPattern is a kubernetesPodLabel value, key:value.
type LabelPattern struct {
	Key   string
	Value NamePattern
}

func newLabelPattern(v string) LabelPattern {
	k, val, _ := strings.Cut(v, ":")
	return LabelPattern{Key: k, Value: newNamePattern(val)}
}

func (l LabelPattern) String() string { return l.Key + ":" + l.Value.String() }

// Match reports whether the pod has the label with a matching value. "key:" matches
// only an empty value; "key:*" matches any value, empty included.
func (l LabelPattern) Match(labels map[string]string) bool {
	v, ok := labels[l.Key]
	return ok && l.Value.Match(v)
}
