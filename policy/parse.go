package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Value limits, in UTF-8 bytes, as Kibana enforces them.
const (
	MaxValueBytes       = 511
	MaxPathBytes        = 255
	MaxProcessNameBytes = 15 // the kernel's comm
	MaxNameLength       = 128
)

// ParseFile reads and parses a policy file. An I/O failure is returned as is; an
// invalid policy as Errors.
func ParseFile(path string) (*Policy, []Diagnostic, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(path, data)
}

// Parse parses and validates a policy. name appears in diagnostics (a file name, or a
// unit id for policies from the agent). It returns the compiled policy and its
// warnings, or, when any rule is broken, a nil policy, the warnings, and Errors
// holding every error found.
//
// The document is a policy (process:, file:, network:, optional version:), or a stream config
// that nests one under security-policy: as standalone elastic-agent.yml does; then
// the stream's other keys are not the policy's and are left alone.
func Parse(name string, data []byte) (*Policy, []Diagnostic, error) {
	return parse(name, data, OriginFile)
}

// ParseConfig is Parse for a policy that is a re-rendering of structured
// config (an agent unit's), not text a user wrote: its diagnostics name places
// by path (file.selectors[name=a].targetFilePath), and their messages cite
// other places by path too, never by a line of the rendering.
func ParseConfig(name string, data []byte) (*Policy, []Diagnostic, error) {
	return parse(name, data, OriginConfig)
}

func parse(name string, data []byte, origin Origin) (*Policy, []Diagnostic, error) {
	p := &parser{file: name, origin: origin, paths: map[*yaml.Node]string{}, keyPaths: map[*yaml.Node]string{}}
	pol := p.parse(data)
	var errs Errors
	var warns []Diagnostic
	sortDiagnostics(p.diags)
	for _, d := range p.diags {
		if d.Severity == SeverityError {
			errs = append(errs, d)
		} else {
			warns = append(warns, d)
		}
	}
	if len(errs) > 0 {
		return nil, warns, errs
	}
	pol.name = name
	pol.source = slices.Clone(data)
	pol.warnings = warns
	return pol, warns, nil
}

// where says what a diagnostic is about.
type where struct {
	typ      string
	selector string
	response int
	// lacks: the diagnostic is about a field missing under the node (a key),
	// so its path is the field's, not the key's.
	lacks bool
}

type parser struct {
	file     string
	origin   Origin
	diags    []Diagnostic
	paths    map[*yaml.Node]string // every value node's path
	keyPaths map[*yaml.Node]string // every key node's: its entry's
	// selNodes are each type's selectors by name, for diagnostics about a
	// selector raised while checking a response.
	selNodes [numTypes]map[string]*yaml.Node
}

func (p *parser) add(sev Severity, n *yaml.Node, w where, field, format string, args ...any) {
	p.diags = append(p.diags, p.diag(sev, n, w, field, format, args...))
}

// diag makes the diagnostic add records.
func (p *parser) diag(sev Severity, n *yaml.Node, w where, field, format string, args ...any) Diagnostic {
	d := Diagnostic{
		Severity: sev, File: p.file, Type: w.typ, Selector: w.selector, Response: w.response,
		Field: field, Message: fmt.Sprintf(format, args...), Origin: p.origin,
	}
	if n != nil && n.Line > 0 {
		d.Line, d.Column = n.Line, n.Column
	} else {
		d.Line, d.Column = 1, 1 // the document as a whole
	}
	if kp, ok := p.keyPaths[n]; ok && !w.lacks {
		d.Path = kp // a key: its entry, whatever name field gives it
	} else if ok {
		d.Path = joinPath(kp, field)
	} else {
		d.Path = p.paths[n]
		// A diagnostic about a field the node holds (or lacks): "required" on
		// a mapping, "mixes operations" on a selector.
		if field != "" && lastKey(d.Path) != joinPath("", field) {
			d.Path = joinPath(d.Path, field)
		}
	}
	return d
}

// index records the path of n and everything under it. Items of a selectors
// list are named by their name when it is a valid one not used before in the
// list, so the path survives reordering; everything else by its index.
func (p *parser) index(n *yaml.Node, path string) {
	if n == nil {
		return
	}
	if _, seen := p.paths[n]; seen {
		return // an alias: its first place names it
	}
	p.paths[n] = path
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			p.index(c, path)
		}
	case yaml.AliasNode:
		p.index(n.Alias, path)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			kp := joinPath(path, k.Value)
			if _, seen := p.keyPaths[k]; !seen {
				p.keyPaths[k] = kp
			}
			p.index(n.Content[i+1], kp)
		}
	case yaml.SequenceNode:
		named := lastKey(path) == "selectors"
		used := map[string]bool{}
		for i, c := range n.Content {
			seg := fmt.Sprintf("[%d]", i)
			if nm := selectorName(deref(c)); named && nameRe.MatchString(nm) && len(nm) <= MaxNameLength && !used[nm] {
				used[nm] = true
				seg = "[name=" + nm + "]"
			}
			p.index(c, path+seg)
		}
	}
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func joinPath(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// lastKey is the last mapping key of a path, without its indexes, as
// joinPath writes it (["x.y"] for a key that is not plain).
func lastKey(path string) string {
	for strings.HasSuffix(path, "]") {
		i := strings.LastIndexByte(path, '[')
		if i < 0 || strings.HasPrefix(path[i:], `["`) {
			break
		}
		path = path[:i]
	}
	if strings.HasSuffix(path, `"]`) {
		if i := strings.LastIndex(path, `["`); i >= 0 {
			return path[i:]
		}
	}
	return path[strings.LastIndexByte(path, '.')+1:]
}

// lineOf cites another place in a message: its line in a file, its path in
// config (where lines are the rendering's).
func (p *parser) lineOf(n *yaml.Node) string {
	if p.origin == OriginConfig {
		return p.pathOf(n)
	}
	return fmt.Sprintf("line %d", n.Line)
}

func (p *parser) pathOf(n *yaml.Node) string {
	if kp, ok := p.keyPaths[n]; ok {
		return kp
	}
	return p.paths[n]
}

// lineColOf is lineOf with the column.
func (p *parser) lineColOf(n *yaml.Node) string {
	if p.origin == OriginConfig {
		return p.pathOf(n)
	}
	return fmt.Sprintf("line %d, column %d", n.Line, n.Column)
}

func (p *parser) errorf(n *yaml.Node, w where, field, format string, args ...any) {
	p.add(SeverityError, n, w, field, format, args...)
}

func (p *parser) warnf(n *yaml.Node, w where, field, format string, args ...any) {
	p.add(SeverityWarning, n, w, field, format, args...)
}

// syntaxError turns a yaml.v3 error into diagnostics, each located by
// locateYAMLError (yaml.v3 itself reports a line only, not always the right
// one).
func (p *parser) syntaxError(data []byte, err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		line, col, msg := locateYAMLError(data, m)
		p.diags = append(p.diags, Diagnostic{Severity: SeverityError, File: p.file, Line: line, Column: col, Message: msg, Origin: p.origin})
	}
}

// pair is one key of a mapping, with aliases resolved.
type pair struct {
	key  string
	k, v *yaml.Node
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 32; i++ {
		n = n.Alias
	}
	return n
}

// pairs lists a mapping's keys, reporting duplicate, non-scalar and merge keys.
func (p *parser) pairs(n *yaml.Node, w where) []pair {
	var out []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k == nil || k.Kind != yaml.ScalarNode {
			p.errorf(n.Content[i], w, "", "keys must be plain strings")
			continue
		}
		if k.Tag == "!!merge" {
			p.errorf(k, w, "", "YAML merge keys (<<) are not supported in policies")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, w, k.Value, "duplicate key; first given at %s", p.lineOf(first))
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k.Value, k, v})
	}
	return out
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

type rawSection struct {
	key       *yaml.Node // the section's key, for section-wide diagnostics
	selectors []*yaml.Node
	responses []*yaml.Node
}

func (p *parser) parse(data []byte) *Policy {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, where{}, "", "policy is empty: it needs a process, file or network section")
		} else {
			p.syntaxError(data, err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			p.syntaxError(data, err)
		} else {
			at := &extra
			if len(extra.Content) > 0 {
				at = extra.Content[0]
			}
			p.errorf(at, where{}, "", "a policy is one YAML document; found another after ---")
		}
		return nil
	}
	p.index(&doc, "")
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if isNull(root) {
		p.errorf(root, where{}, "", "policy is empty: it needs a process, file or network section")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root, where{}, "", "a policy is a mapping with process, file and/or network sections")
		return nil
	}

	top := p.pairs(root, where{})
	for _, kv := range top {
		if kv.key != "security-policy" {
			continue
		}
		for _, other := range top {
			switch other.key {
			case "process", "file", "network", "selectors", "responses":
				p.errorf(other.k, where{}, other.key, "given both here and under security-policy (%s); use one", p.lineOf(kv.k))
			}
		}
		if kv.v.Kind != yaml.MappingNode {
			p.errorf(kv.v, where{}, "security-policy", "must be a mapping with process, file and/or network sections")
			return nil
		}
		top = p.pairs(kv.v, where{})
		root = kv.v
		break
	}

	pol := &Policy{}
	var raw [numTypes]rawSection
	var legacySelectors, legacyResponses []*yaml.Node
	for _, kv := range top {
		switch kv.key {
		case "version":
			if kv.v.Kind != yaml.ScalarNode || isNull(kv.v) {
				p.errorf(kv.v, where{}, "version", "must be a string")
			} else {
				pol.version = kv.v.Value
			}
		case "process", "file", "network":
			t := Process
			switch kv.key {
			case "file":
				t = File
			case "network":
				t = Network
			}
			p.section(t, kv.k, kv.v, &raw[t])
		case "selectors", "responses":
			p.warnf(kv.k, where{}, kv.key, "top-level %s are from the first policy version and deprecated: move them under file: or process: (each one's type is inferred from its operations here)", kv.key)
			items := p.sequence(kv.v, where{}, kv.key, kv.key[:len(kv.key)-1])
			if kv.key == "selectors" {
				legacySelectors = items
			} else {
				legacyResponses = items
			}
		default:
			p.unknownKey(kv.k, where{}, []string{"process", "file", "network", "version"})
		}
	}

	p.placeLegacy(&raw, root, legacySelectors, legacyResponses)

	if raw[Process].key == nil && raw[File].key == nil && raw[Network].key == nil {
		if len(p.diags) == 0 || !p.hasErrors() {
			p.errorf(root, where{}, "", "a policy needs a process, file or network section")
		}
		return nil
	}
	for t := Type(0); t < numTypes; t++ {
		if raw[t].key != nil {
			pol.sections[t] = p.compileSection(t, &raw[t], &raw)
		}
	}
	if k := raw[Network].key; k != nil {
		pol.editorWarnings = append(pol.editorWarnings, p.diag(SeverityWarning, k, where{typ: Network.String()}, "",
			"the network section is a cloud-defend extension that Kibana's Defend for Containers policy editor does not know: Fleet passes the YAML through untouched, but the editor may not show it"))
	}
	return pol
}

func (p *parser) hasErrors() bool {
	for _, d := range p.diags {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}

// sequence returns a list's items, reporting anything else. what names one item.
func (p *parser) sequence(n *yaml.Node, w where, field, what string) []*yaml.Node {
	if isNull(n) || (n.Kind == yaml.SequenceNode && len(n.Content) == 0) {
		p.errorf(n, w, field, "needs at least one %s", what)
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, w, field, "must be a list of %ss", what)
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		out = append(out, deref(c))
	}
	return out
}

func (p *parser) section(t Type, k, v *yaml.Node, raw *rawSection) {
	w := where{typ: t.String()}
	raw.key = k
	if v.Kind != yaml.MappingNode {
		p.errorf(v, w, "", "must be a mapping with selectors and responses")
		return
	}
	var sawSel, sawResp bool
	for _, kv := range p.pairs(v, w) {
		switch kv.key {
		case "selectors":
			sawSel = true
			raw.selectors = append(raw.selectors, p.sequence(kv.v, w, "selectors", "selector")...)
		case "responses":
			sawResp = true
			raw.responses = append(raw.responses, p.sequence(kv.v, w, "responses", "response")...)
		default:
			p.unknownKey(kv.k, w, []string{"selectors", "responses"})
		}
	}
	lacks := where{typ: w.typ, lacks: true}
	if !sawSel {
		p.errorf(k, lacks, "selectors", "required: a %s section needs at least one selector", t)
	}
	if !sawResp {
		p.errorf(k, lacks, "responses", "required: a %s section needs at least one response", t)
	}
}

// placeLegacy files first-version top-level selectors and responses into sections.
func (p *parser) placeLegacy(raw *[numTypes]rawSection, root *yaml.Node, sels, resps []*yaml.Node) {
	if len(sels) == 0 && len(resps) == 0 {
		return
	}
	names := map[string]Type{}
	for _, s := range sels {
		t := p.legacyType(s)
		if raw[t].key == nil {
			raw[t].key = root
		}
		raw[t].selectors = append(raw[t].selectors, s)
		if s.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(s.Content); i += 2 {
				if k, v := deref(s.Content[i]), deref(s.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode {
					if _, dup := names[v.Value]; !dup {
						names[v.Value] = t
					}
				}
			}
		}
	}
	for i, r := range resps {
		t, ok := legacyResponseType(r, names)
		if !ok {
			p.errorf(r, where{response: i + 1}, "match", "cannot tell whether this top-level response is for files or processes: its match names no top-level selector")
			continue
		}
		if raw[t].key == nil {
			raw[t].key = root
		}
		raw[t].responses = append(raw[t].responses, r)
	}
	for t := range raw {
		if raw[t].key == root && (len(raw[t].selectors) == 0 || len(raw[t].responses) == 0) {
			p.errorf(root, where{typ: Type(t).String()}, "", "top-level selectors and responses gave this type selectors without responses or responses without selectors")
		}
	}
}

// legacyType infers a first-version selector's type: process when it names only
// process operations or process-only conditions, file otherwise (the first version
// was file-only).
func (p *parser) legacyType(n *yaml.Node) Type {
	if n.Kind != yaml.MappingNode {
		return File
	}
	var procOps, fileOps, procConds int
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		switch k.Value {
		case "operation":
			if v.Kind != yaml.SequenceNode {
				continue
			}
			for _, c := range v.Content {
				if op, ok := ParseOp(deref(c).Value); ok {
					switch op.Type() {
					case Process:
						procOps++
					case File:
						fileOps++
					}
				}
			}
		case "processExecutable", "processName", "sessionLeaderInteractive", "executableLayer":
			procConds++
		}
	}
	if procOps > 0 && fileOps > 0 {
		p.errorf(n, where{}, "operation", "mixes file and process operations; split it into a file selector and a process selector")
	}
	if procOps > 0 || (fileOps == 0 && procConds > 0) {
		return Process
	}
	return File
}

func legacyResponseType(n *yaml.Node, names map[string]Type) (Type, bool) {
	if n.Kind != yaml.MappingNode {
		return 0, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Value != "match" || v.Kind != yaml.SequenceNode {
			continue
		}
		for _, c := range v.Content {
			if t, ok := names[deref(c).Value]; ok {
				return t, true
			}
		}
	}
	return 0, false
}

// unknownKey reports a key that is not one of known: a warning in the D4C
// sections, whose upstream schema allows unknown keys, and an error in the
// network section (and at its top), which has no upstream to be lenient for.
func (p *parser) unknownKey(k *yaml.Node, w where, known []string) {
	if w.typ == Network.String() {
		msg := "unknown key"
		if s := suggest(k.Value, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		p.errorf(k, w, k.Value, "%s; network sections allow here: %s", msg, strings.Join(known, ", "))
		return
	}
	msg := "unknown key, ignored"
	if s := suggest(k.Value, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else {
		msg += "; known keys here: " + strings.Join(known, ", ")
	}
	p.warnf(k, w, k.Value, "%s", msg)
}

// suggest returns the known key closest to a misspelt one, if it is close.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(s, k) {
			return k
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
