package rollout

import (
	"slices"
	"strings"

	"github.com/cloud-defend/cloud-defend/policy"
)

// A path list entry: an exact path, a directory's direct children (dir/*) or
// everything below a directory (dir/**). dir is "" for the root.
type entry struct {
	dir  string
	kind policy.PathKind
	path string // the exact path, for PathExact
}

func (e entry) String() string {
	switch e.kind {
	case policy.PathChildren:
		return e.dir + "/*"
	case policy.PathDescendants:
		return e.dir + "/**"
	}
	return e.path
}

// covers reports whether the pattern e matches everything o does.
func (e entry) covers(o entry) bool {
	switch e.kind {
	case policy.PathExact:
		return o.kind == policy.PathExact && o.path == e.path
	case policy.PathChildren:
		return (o.kind == policy.PathExact && parent(o.path) == e.dir) || (o.kind == policy.PathChildren && o.dir == e.dir)
	}
	under := func(p string) bool { return strings.HasPrefix(p, e.dir+"/") }
	if o.kind == policy.PathExact {
		return under(o.path)
	}
	return o.dir == e.dir || under(o.dir)
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return ""
	}
	return p[:i]
}

func depth(dir string) int { return strings.Count(dir, "/") }

// Widening is one pattern the learner wrote in place of what it saw.
type Widening struct {
	Selector string   `json:"selector"`
	Pattern  string   `json:"pattern"`
	Replaced []string `json:"replaced"`
	Why      string   `json:"why"`
}

// writable makes a path a valid policy path: at most MaxPathBytes, no * in a
// name. A path that is not becomes the narrowest pattern that is, and that
// covers it.
func writable(e entry) (entry, bool) {
	ok := func(x entry) bool {
		s := x.String()
		return len(s) <= policy.MaxPathBytes && !strings.Contains(strings.TrimSuffix(strings.TrimSuffix(s, "/**"), "/*"), "*")
	}
	if ok(e) {
		return e, true
	}
	d := e.dir
	if e.kind == policy.PathExact {
		if c := (entry{dir: parent(e.path), kind: policy.PathChildren}); ok(c) {
			return c, false
		}
		d = parent(e.path)
	}
	for {
		d = parent(d)
		if c := (entry{dir: d, kind: policy.PathDescendants}); ok(c) {
			return c, false
		}
	}
}

// widen reduces paths to at most max entries by replacing sets of them with the
// narrowest pattern covering two or more: direct children of the deepest
// directory first (dir/*), then everything below it (dir/**). It returns the
// entries, sorted, and what each new pattern replaced.
func widen(paths []entry, max int) ([]entry, map[string][]string) {
	replaced := map[string][]string{}
	list := slices.Clone(paths)
	for len(list) > max {
		best, bestN := entry{}, 0
		seen := map[entry]bool{}
		// consider keeps the narrowest candidate that covers two or more:
		// the deepest directory, and there dir/* before dir/**.
		consider := func(c entry) {
			if seen[c] {
				return
			}
			seen[c] = true
			n := countCovered(c, list)
			if n < 2 {
				return
			}
			if bestN == 0 || depth(c.dir) > depth(best.dir) ||
				(depth(c.dir) == depth(best.dir) && c.kind == policy.PathChildren && best.kind == policy.PathDescendants) {
				best, bestN = c, n
			}
		}
		for _, e := range list {
			d := e.dir
			if e.kind == policy.PathExact {
				d = parent(e.path)
				consider(entry{dir: d, kind: policy.PathChildren})
			}
			consider(entry{dir: d, kind: policy.PathDescendants})
			for a := d; a != ""; {
				a = parent(a)
				consider(entry{dir: a, kind: policy.PathDescendants})
			}
		}
		if bestN < 2 {
			break // cannot happen: /** covers any two entries
		}
		var keep []entry
		var gone []string
		for _, e := range list {
			if best.covers(e) {
				if r, ok := replaced[e.String()]; ok {
					gone = append(gone, r...)
					delete(replaced, e.String())
				} else {
					gone = append(gone, e.String())
				}
				continue
			}
			keep = append(keep, e)
		}
		slices.Sort(gone)
		replaced[best.String()] = gone
		list = append(keep, best)
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.String(), b.String()) })
	return list, replaced
}

func countCovered(c entry, list []entry) int {
	n := 0
	for _, e := range list {
		if c.covers(e) {
			n++
		}
	}
	return n
}
