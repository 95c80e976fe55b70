package rollout

import (
	"cmp"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/cloud-defend/cloud-defend/policy"
)

// DefaultMaxValues is how many paths the learner puts in one selector before
// it widens them. Kibana sets no such limit; ours keeps a learned selector
// reviewable and the kernel's path tables small.
const DefaultMaxValues = 32

// LearnOptions say how to learn.
type LearnOptions struct {
	// PodLabel groups by the value of this pod label (and the pod's
	// namespace) instead of by container image.
	PodLabel string
	// Block makes the learned responses block what they alert on.
	Block bool
	// MaxValues bounds each selector's path list (DefaultMaxValues when 0).
	MaxValues int
	// Source says what was learned from, for the policy's header comment.
	Source string
}

// Learned is a generated policy.
type Learned struct {
	YAML     []byte
	Groups   int
	Widened  []Widening
	Warnings []policy.Diagnostic
	// Uncovered counts operations the policy cannot scope: outside a container,
	// or in one whose image (or pod label) the recording does not name.
	Uncovered int
	// Network counts the network operations of the recording: nothing is
	// learned from them (the policy has no network section), so they are
	// neither grouped nor uncovered.
	Network int
}

type group struct {
	key      string
	slug     string
	comment  string
	scope    [][2]string // condition name, value (one value each)
	execs    map[string]int
	dirs     map[string]int
	ops      int
	memfdExe []string
}

// maxGroups is the most groups one section can hold: two selectors each and
// one shared response within policy.MaxRules.
const maxGroups = (policy.MaxRules - 1) / 2

// Learn generates a policy that allows each group what the recording shows it
// doing: the executables it ran, and writes in the directories it wrote in.
// Everything else a group execs or writes is alerted (and blocked with
// opts.Block). Fork is not policed: a fork runs nothing new.
func Learn(rd *Reader, opts LearnOptions) (*Learned, error) {
	if opts.MaxValues <= 0 {
		opts.MaxValues = DefaultMaxValues
	}
	groups := map[string]*group{}
	l := &Learned{}
	for i := range rd.Records {
		rec := &rd.Records[i]
		if rec.Op.Op.Type() == policy.Network {
			l.Network++
			continue
		}
		g, ok, err := groupOf(groups, rec, opts)
		if err != nil {
			return nil, err
		}
		if !ok {
			l.Uncovered++
			continue
		}
		g.ops++
		switch op := &rec.Op; op.Op {
		case policy.OpExec:
			g.execs[op.ProcessExecutable]++
			if op.ExecutableIsMemfd && g.execs[op.ProcessExecutable] == 1 {
				g.memfdExe = append(g.memfdExe, op.ProcessExecutable)
			}
		case policy.OpFork:
		default:
			if op.TargetPath != "" && op.TargetPath != "/" {
				g.dirs[parent(op.TargetPath)]++
			}
		}
	}
	var list []*group
	for _, g := range groups {
		list = append(list, g)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("nothing to learn: none of the %d operations is in a container whose %s the recording names", len(rd.Records), what(opts))
	}
	slices.SortFunc(list, func(a, b *group) int { return cmp.Compare(a.key, b.key) })
	names := map[string]bool{}
	for _, g := range list {
		g.slug = uniqueSlug(g.slug, names)
	}
	var execGroups, fileGroups []*group
	for _, g := range list {
		if len(g.execs) > 0 {
			execGroups = append(execGroups, g)
		}
		if len(g.dirs) > 0 {
			fileGroups = append(fileGroups, g)
		}
	}
	if n := max(len(execGroups), len(fileGroups)); n > maxGroups {
		return nil, fmt.Errorf("%d groups (%s) need %d selectors and a response in one section; a policy holds %d per section: learn from fewer workloads or group by a pod label", n, what(opts), 2*n, policy.MaxRules)
	}
	l.Groups = len(list)

	var b strings.Builder
	actions := "[alert]"
	verb := "alerted"
	if opts.Block {
		actions, verb = "[alert, block]", "alerted and blocked"
	}
	fmt.Fprintf(&b, "# Learned by `cloud-defend policy learn` from %s: %d operations; groups by %s: %d.\n", cmp.Or(opts.Source, "a recording"), len(rd.Records), what(opts), len(list))
	fmt.Fprintf(&b, "# Each group may run the executables and write in the directories it was seen using;\n")
	fmt.Fprintf(&b, "# any other exec or file write in it is %s. Forks are not policed.\n", verb)
	fmt.Fprintf(&b, "# Check it with `cloud-defend policy test` against recordings before enforcing it.\n")
	if l.Network > 0 {
		fmt.Fprintf(&b, "# %d recorded network operations are not learned: this policy has no network section.\n", l.Network)
	}
	if l.Uncovered > 0 {
		fmt.Fprintf(&b, "# %d recorded operations are outside any group (no container, or no %s in the recording) and this policy does not cover them.\n", l.Uncovered, what(opts))
	}
	if opts.MaxValues != DefaultMaxValues {
		fmt.Fprintf(&b, "# Path lists are widened past %d values.\n", opts.MaxValues)
	}

	if len(execGroups) > 0 {
		b.WriteString("process:\n  selectors:\n")
		for _, g := range execGroups {
			fmt.Fprintf(&b, "    # %s: %d execs of %d executables\n", g.comment, sum(g.execs), len(g.execs))
			writeSelector(&b, g.slug+"-execs", "[exec]", g.scope)
			sel := g.slug + "-allowed-execs"
			writeSelector(&b, sel, "[exec]", g.scope)
			for _, m := range g.memfdExe {
				fmt.Fprintf(&b, "      # %s is a fileless (memfd) exec; it was recorded, so it is allowed: review it\n", commentSafe(m))
			}
			var es []entry
			for _, e := range sortedKeys(g.execs) {
				es = append(es, entry{kind: policy.PathExact, path: e})
			}
			l.Widened = append(l.Widened, writePaths(&b, sel, "processExecutable", es, opts.MaxValues)...)
		}
		b.WriteString("  responses:\n")
		writeResponse(&b, execGroups, "-execs", "-allowed-execs", actions)
	}
	if len(fileGroups) > 0 {
		b.WriteString("file:\n  selectors:\n")
		for _, g := range fileGroups {
			fmt.Fprintf(&b, "    # %s: %d writes in %d directories\n", g.comment, sum(g.dirs), len(g.dirs))
			writeSelector(&b, g.slug+"-writes", "[createExecutable, modifyExecutable, createFile, modifyFile, deleteFile]", g.scope)
			sel := g.slug + "-allowed-dirs"
			writeSelector(&b, sel, "", g.scope)
			var es []entry
			for _, d := range sortedKeys(g.dirs) {
				es = append(es, entry{kind: policy.PathChildren, dir: strings.TrimSuffix(d, "/")})
			}
			l.Widened = append(l.Widened, writePaths(&b, sel, "targetFilePath", es, opts.MaxValues)...)
		}
		b.WriteString("  responses:\n")
		writeResponse(&b, fileGroups, "-writes", "-allowed-dirs", actions)
	}
	l.YAML = []byte(b.String())
	_, warnings, err := policy.Parse("learned", l.YAML)
	if err != nil {
		return nil, fmt.Errorf("the learned policy does not parse (a bug in policy learn):\n%v\n%s", err, l.YAML)
	}
	l.Warnings = warnings
	return l, nil
}

func what(o LearnOptions) string {
	if o.PodLabel != "" {
		return "pod label " + o.PodLabel
	}
	return "container image"
}

// groupOf finds (or starts) the group of a record's workload.
func groupOf(groups map[string]*group, rec *Record, o LearnOptions) (*group, bool, error) {
	op := &rec.Op
	var key string
	if o.PodLabel != "" {
		v, ok := op.KubernetesPodLabels[o.PodLabel]
		if !ok {
			return nil, false, nil
		}
		key = op.KubernetesNamespace + "/" + o.PodLabel + ":" + v
	} else {
		if op.ContainerImageFullName == "" {
			return nil, false, nil
		}
		key = op.ContainerImageFullName
	}
	if g := groups[key]; g != nil {
		return g, true, nil
	}
	g := &group{key: key, execs: map[string]int{}, dirs: map[string]int{}}
	if o.PodLabel != "" {
		v := op.KubernetesPodLabels[o.PodLabel]
		label := o.PodLabel + ":" + v
		if !validCondition("kubernetesPodLabel", label) {
			return nil, false, fmt.Errorf("%s:%d: pod label %q cannot be written as a kubernetesPodLabel condition", rec.File, rec.Line, label)
		}
		g.slug, g.comment = v, "pods labelled "+label
		if op.KubernetesNamespace != "" {
			// Namespace and label are separate conditions, so both must hold.
			g.scope = append(g.scope, [2]string{"kubernetesNamespace", op.KubernetesNamespace})
			g.slug, g.comment = op.KubernetesNamespace+"-"+v, g.comment+" in namespace "+op.KubernetesNamespace
		}
		g.scope = append(g.scope, [2]string{"kubernetesPodLabel", label})
	} else {
		name := op.ContainerImageFullName
		// The tag is left out: a new tag of the same image is the same workload.
		g.slug, g.comment = path.Base(name), "image "+name
		switch {
		case validCondition("containerImageFullName", name):
			g.scope = [][2]string{{"containerImageFullName", name}}
		case validCondition("containerImageName", name):
			g.scope = [][2]string{{"containerImageName", name}}
		default:
			return nil, false, fmt.Errorf("%s:%d: image %q is neither a containerImageName nor a containerImageFullName value a policy accepts", rec.File, rec.Line, name)
		}
	}
	groups[key] = g
	return g, true, nil
}

// validCondition asks the parser whether a value is valid for a condition, so
// the learner and the policy language cannot disagree.
func validCondition(cond, v string) bool {
	doc := fmt.Sprintf("process:\n  selectors:\n    - name: x\n      %s: [%s]\n  responses:\n    - match: [x]\n      actions: [log]\n", cond, quote(v))
	_, _, err := policy.Parse("check", []byte(doc))
	return err == nil
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
	return string(b)
}

// uniqueSlug makes a selector name stem: lowercase letters, digits, - and _,
// short enough for the longest suffix, unique in the policy.
func uniqueSlug(s string, used map[string]bool) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	slug := strings.Trim(b.String(), "-_")
	if slug == "" {
		slug = "workload"
	}
	const room = policy.MaxNameLength - len("-allowed-execs") - 4
	slug = slug[:min(len(slug), room)]
	out := slug
	for i := 2; used[out]; i++ {
		out = fmt.Sprintf("%s-%d", slug, i)
	}
	used[out] = true
	return out
}

func writeSelector(b *strings.Builder, name, ops string, scope [][2]string) {
	fmt.Fprintf(b, "    - name: %s\n", name)
	if ops != "" {
		fmt.Fprintf(b, "      operation: %s\n", ops)
	}
	for _, c := range scope {
		fmt.Fprintf(b, "      %s: [%s]\n", c[0], quote(c[1]))
	}
}

// writePaths writes a path list, widened to max entries, with a comment on
// each entry that stands for more than was seen.
func writePaths(b *strings.Builder, sel, key string, es []entry, max int) []Widening {
	var out []Widening
	invalid := map[string][]string{}
	for i, e := range es {
		if w, exact := writable(e); !exact {
			out = append(out, Widening{Selector: sel, Pattern: w.String(), Replaced: []string{e.String()},
				Why: fmt.Sprintf("not a valid policy path (longer than %d bytes, or a * in a name)", policy.MaxPathBytes)})
			invalid[w.String()] = append(invalid[w.String()], e.String())
			es[i] = w
		}
	}
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.String(), b.String()) })
	es = slices.Compact(es)
	list, replaced := widen(es, max)
	fmt.Fprintf(b, "      %s:\n", key)
	for _, e := range list {
		if r, ok := replaced[e.String()]; ok {
			w := Widening{Selector: sel, Pattern: e.String(), Replaced: r, Why: fmt.Sprintf("more than %d values", max)}
			out = append(out, w)
			shown := r
			if len(shown) > 8 {
				shown = shown[:8]
			}
			more := ""
			if len(r) > len(shown) {
				more = fmt.Sprintf(" and %d more", len(r)-len(shown))
			}
			fmt.Fprintf(b, "        # widened to stay within %d values: replaces %s%s\n", max, commentSafe(strings.Join(shown, ", ")), more)
		}
		if r, ok := invalid[e.String()]; ok {
			fmt.Fprintf(b, "        # widened: %d seen paths are not valid policy paths (over %d bytes, or a * in a name), e.g. %.80s...\n", len(r), policy.MaxPathBytes, commentSafe(r[0]))
		}
		fmt.Fprintf(b, "        - %s\n", quote(e.String()))
	}
	return out
}

func writeResponse(b *strings.Builder, gs []*group, match, exclude, actions string) {
	var m, x []string
	for _, g := range gs {
		m = append(m, g.slug+match)
		x = append(x, g.slug+exclude)
	}
	// One response for all groups: each allow selector is scoped to its
	// group, so excluding it cannot excuse another group's operation.
	fmt.Fprintf(b, "    - match: [%s]\n      exclude: [%s]\n      actions: %s\n", strings.Join(m, ", "), strings.Join(x, ", "), actions)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// commentSafe keeps a recorded path from ending a YAML comment early: a
// newline in a file name would start a line of policy.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return '?'
		}
		return r
	}, s)
}
