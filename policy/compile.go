package policy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

var (
	nameRe      = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_\-]*$`)
	imageNameRe = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)
	// A registry host (DNS name or [IPv6]), an optional port, then one or more
	// lowercase path components; no tag or digest.
	imageFullNameRe = regexp.MustCompile(`^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+$`)
	podLabelRe      = regexp.MustCompile(`^([a-zA-Z0-9.-]+/)?[a-zA-Z0-9.-]+:[a-zA-Z0-9._-]*\*?$`)
	pathRe          = regexp.MustCompile(`^(?:/[^/*]+)*(?:/\*|/\*\*)?$`)
)

// condition describes one selector condition key.
type condition struct {
	types   [numTypes]bool
	boolean bool
	// check returns what is wrong with one value, or "".
	check func(v string) string
	// literalStar: a * in a value is matched literally; warn, since authors mean a wildcard.
	literalStar bool
}

var (
	every        = [numTypes]bool{Process: true, File: true, Network: true}
	processTypes = [numTypes]bool{Process: true, Network: true}
	network      = [numTypes]bool{Network: true}
)

var conditions = map[string]condition{
	"operation":              {types: every},
	"containerImageName":     {types: every, check: checkImageName},
	"containerImageTag":      {types: every, literalStar: true},
	"containerImageFullName": {types: every, check: checkImageFullName},
	"kubernetesClusterId":    {types: every, literalStar: true},
	"kubernetesClusterName":  {types: every, literalStar: true},
	"kubernetesNamespace":    {types: every, literalStar: true},
	"kubernetesPodName":      {types: every, check: checkTrailingStar},
	"kubernetesPodLabel":     {types: every, check: checkPodLabel},
	// First-version conditions are not offered in the network section, which
	// the first version never had.
	"orchestratorType":   {types: [numTypes]bool{Process: true, File: true}, check: checkOrchestratorType},
	"targetFilePath":     {types: [numTypes]bool{File: true}, check: checkPath},
	"ignoreVolumeMounts": {types: [numTypes]bool{File: true}, boolean: true},
	"ignoreVolumeFiles":  {types: [numTypes]bool{File: true}, boolean: true},
	// The process conditions are about the process doing the operation: in
	// network selectors too.
	"processExecutable":        {types: processTypes, check: checkPath},
	"processName":              {types: processTypes, check: checkProcessName, literalStar: true},
	"sessionLeaderInteractive": {types: processTypes, boolean: true},
	// A cloud-defend extension (not in Kibana's editor): where the executable
	// lives on a container's overlay root filesystem. The drift signal.
	"executableLayer": {types: [numTypes]bool{Process: true}, check: checkLayer},
	// The network section's own (a cloud-defend extension).
	"destinationAddress": {types: network, check: checkPrefix},
	"sourceAddress":      {types: network, check: checkPrefix},
	"destinationPort":    {types: network, check: checkPortRange},
	"sourcePort":         {types: network, check: checkPortRange},
	"protocol":           {types: network, check: checkProtocol},
}

// Layers are the executableLayer values: where an executable lives on an
// overlay (a container's root filesystem), as exec events name it.
var Layers = []string{"image", "modified", "added", "unknown"}

func checkLayer(v string) string {
	if !slices.Contains(Layers, v) {
		return "is not a layer; allowed: image (only in the image's layers), modified (copied up and changed since the container started), added (created since it started), unknown"
	}
	return ""
}

// legacyConditions maps first-version condition names to today's.
var legacyConditions = map[string]string{
	"orchestratorNamespace":     "kubernetesNamespace",
	"orchestratorResourceLabel": "kubernetesPodLabel",
	"orchestratorResourceName":  "kubernetesPodName",
	"orchestratorClusterId":     "kubernetesClusterId",
	"orchestratorClusterName":   "kubernetesClusterName",
}

// conditionNames lists the conditions of type t, sorted, for messages.
func conditionNames(t Type) []string {
	var out []string
	for k, c := range conditions {
		if c.types[t] && k != "orchestratorType" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func checkImageName(v string) string {
	if !imageNameRe.MatchString(v) {
		return "must be an image name without registry or tag, lowercase letters and digits separated by single '.', '_' or '-' (e.g. nginx); use containerImageFullName for registry/path"
	}
	return ""
}

func checkImageFullName(v string) string {
	if imageFullNameRe.MatchString(v) {
		return ""
	}
	last := v[strings.LastIndexByte(v, '/')+1:]
	switch {
	case strings.Contains(v, "@"):
		return "must not include a digest; give the image's registry and path (e.g. docker.io/nginx)"
	case strings.Contains(last, ":") && strings.Contains(v, "/"):
		return "must not include a tag; put the tag in containerImageTag (e.g. docker.io/nginx with containerImageTag: [latest])"
	case !strings.Contains(v, "/"):
		return "must start with a registry host (DNS name or [IPv6], optional :port) followed by the image path, e.g. docker.io/nginx; a bare name belongs in containerImageName"
	}
	return "must be a registry host (DNS name or [IPv6], optional :port) followed by one or more lowercase path components, e.g. docker.io/library/nginx or [::1]:5000/team/app"
}

func checkTrailingStar(v string) string {
	if i := strings.IndexByte(v, '*'); i >= 0 && i != len(v)-1 {
		return "* is allowed only at the end (e.g. nginx-pod-*)"
	}
	return ""
}

func checkPodLabel(v string) string {
	if podLabelRe.MatchString(v) {
		return ""
	}
	if !strings.Contains(v, ":") {
		return "must be key:value (e.g. app:nginx or example.com/tier:front*); key: alone matches an empty value"
	}
	k, val, _ := strings.Cut(v, ":")
	if i := strings.IndexByte(val, '*'); strings.Contains(k, "*") || (i >= 0 && i != len(val)-1) {
		return "* is allowed only at the end of the value (e.g. app:web-*)"
	}
	return "must be key:value where the key is [prefix/]name of letters, digits, '.' and '-', and the value has letters, digits, '.', '_' and '-' with an optional trailing *"
}

func checkOrchestratorType(v string) string {
	if v != "kubernetes" {
		return "the only supported orchestrator is kubernetes"
	}
	return ""
}

func checkPath(v string) string {
	if len(v) > MaxPathBytes {
		return fmt.Sprintf("is %d bytes; paths are at most %d bytes", len(v), MaxPathBytes)
	}
	if pathRe.MatchString(v) {
		return ""
	}
	switch {
	case !strings.HasPrefix(v, "/"):
		return "must be an absolute path (start with /)"
	case v == "/":
		return "the root itself is not a file; use /* for its direct children or /** for everything"
	case strings.HasSuffix(v, "/"):
		return "must not end with /; use /* for direct children or /** for everything below"
	case strings.Contains(v, "//"):
		return "must not contain empty components (//)"
	}
	return "* is allowed only as a final /* (direct children) or /** (any depth), e.g. /usr/bin/* or /etc/**"
}

func checkProcessName(v string) string {
	if len(v) > MaxProcessNameBytes {
		return fmt.Sprintf("is %d bytes; the kernel keeps only %d bytes of a process name (comm), so this can never match", len(v), MaxProcessNameBytes)
	}
	return ""
}

// strval is a list value with its node.
type strval struct {
	s string
	n *yaml.Node
}

// stringList returns a condition's values, reporting shape problems.
func (p *parser) stringList(v *yaml.Node, w where, field string) []strval {
	if v.Kind == yaml.ScalarNode && !isNull(v) {
		p.errorf(v, w, field, "must be a list, e.g. %s: [%s]", field, v.Value)
		return nil
	}
	items := p.sequence(v, w, field, "value")
	var out []strval
	seen := map[string]bool{}
	for _, c := range items {
		switch {
		case c.Kind != yaml.ScalarNode:
			p.errorf(c, w, field, "list items must be strings")
		case isNull(c) || c.Value == "":
			p.errorf(c, w, field, "empty value; every value must be a non-empty string")
		case len(c.Value) > MaxValueBytes:
			p.errorf(c, w, field, "value is %d bytes; at most %d bytes are allowed", len(c.Value), MaxValueBytes)
		case !utf8.ValidString(c.Value):
			p.errorf(c, w, field, "value is not valid UTF-8")
		case seen[c.Value]:
			p.warnf(c, w, field, "%q is listed twice", c.Value)
		default:
			seen[c.Value] = true
			out = append(out, strval{c.Value, c})
		}
	}
	return out
}

func (p *parser) boolean(v *yaml.Node, w where, field string) (bool, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		p.errorf(v, w, field, "must be true or false")
		return false, false
	}
	return v.Value == "true", true
}

func (p *parser) compileSection(t Type, raw *rawSection, all *[numTypes]rawSection) section {
	var sec section
	wt := where{typ: t.String()}
	if n := len(raw.selectors) + len(raw.responses); n > MaxRules {
		p.errorf(raw.key, wt, "", "has %d selectors and %d responses; at most %d in all are allowed per type", len(raw.selectors), len(raw.responses), MaxRules)
	}
	index := map[string]int{}
	for i, n := range raw.selectors {
		// A selector with errors still takes its name, so responses naming it do not
		// add errors of their own; the policy is rejected either way.
		s := p.selector(t, n, i+1)
		if s.Name == "" {
			continue
		}
		if _, dup := index[s.Name]; dup {
			p.errorf(n, where{typ: t.String(), selector: s.Name}, "name", "duplicate %s selector name; first defined at %s", t, p.lineColOf(p.selNodes[t][s.Name]))
			continue
		}
		if p.selNodes[t] == nil {
			p.selNodes[t] = map[string]*yaml.Node{}
		}
		p.selNodes[t][s.Name] = n
		index[s.Name] = len(sec.selectors)
		sec.selectors = append(sec.selectors, s)
	}
	otherNames := map[string]Type{}
	for o := range all {
		if Type(o) == t {
			continue
		}
		for _, n := range all[o].selectors {
			if name := selectorName(n); name != "" {
				if _, seen := otherNames[name]; !seen {
					otherNames[name] = Type(o)
				}
			}
		}
	}
	for i, n := range raw.responses {
		if r, ok := p.response(t, n, i+1, sec.selectors, index, otherNames); ok {
			sec.responses = append(sec.responses, r)
		}
	}
	return sec
}

// conditionValue finds the node of one value of a selector's condition, or nil.
func conditionValue(sel *yaml.Node, key, value string) *yaml.Node {
	if sel == nil || sel.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(sel.Content); i += 2 {
		if k, v := deref(sel.Content[i]), deref(sel.Content[i+1]); k.Value == key && v.Kind == yaml.SequenceNode {
			for _, c := range v.Content {
				if c = deref(c); c.Value == value {
					return c
				}
			}
		}
	}
	return nil
}

func selectorName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := deref(n.Content[i]), deref(n.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode {
			return v.Value
		}
	}
	return ""
}

func (p *parser) selector(t Type, n *yaml.Node, idx int) Selector {
	s := Selector{Type: t, Pos: Position{n.Line, n.Column}}
	w := where{typ: t.String(), selector: fmt.Sprintf("#%d", idx)}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, w, "", "must be a mapping with a name and at least one condition")
		return s
	}
	if nm := selectorName(n); nameRe.MatchString(nm) && len(nm) <= MaxNameLength {
		w.selector = nm
	}
	pairs := p.pairs(n, w)
	sawName := false
	for _, kv := range pairs {
		if kv.key != "name" {
			continue
		}
		sawName = true
		switch {
		case kv.v.Kind != yaml.ScalarNode || isNull(kv.v) || kv.v.Value == "":
			p.errorf(kv.v, w, "name", "must be a non-empty string")
		case len(kv.v.Value) > MaxNameLength:
			p.errorf(kv.v, w, "name", "is %d characters; at most %d are allowed", len(kv.v.Value), MaxNameLength)
		case !nameRe.MatchString(kv.v.Value):
			p.errorf(kv.v, w, "name", "%q is not a valid name: use letters, digits, '_' and '-', starting with a letter or digit", kv.v.Value)
		default:
			s.Name = kv.v.Value
			w.selector = s.Name
		}
	}
	if !sawName {
		p.errorf(n, w, "name", "required: every selector needs a name")
	}

	given := map[string]*yaml.Node{}
	for _, kv := range pairs {
		key := kv.key
		if key == "name" {
			continue
		}
		if nk, ok := legacyConditions[key]; ok {
			if t == Network {
				p.errorf(kv.k, w, key, "is a first-version condition name, not valid in network selectors; use %s", nk)
				continue
			}
			p.warnf(kv.k, w, key, "deprecated first-version condition; use %s", nk)
			key = nk
		}
		if key == "orchestratorType" && t == Network {
			p.errorf(kv.k, w, key, "is a first-version condition, not valid in network selectors; kubernetesPodName: [\"*\"] matches workloads in a Kubernetes pod")
			continue
		}
		if key == "orchestratorType" {
			p.warnf(kv.k, w, key, "deprecated first-version condition with no replacement; kept as: the workload runs in a Kubernetes pod")
		}
		c, known := conditions[key]
		if !known {
			known := append(conditionNames(t), "name")
			p.unknownKey(kv.k, w, known)
			continue
		}
		if !c.types[t] {
			if t == Network {
				p.errorf(kv.k, w, key, "is a %s selector condition, not a network one; network selectors allow: %s", ownerOf(c), strings.Join(conditionNames(t), ", "))
				continue
			}
			p.warnf(kv.k, w, key, "is not a %s selector condition and is ignored, which makes this selector match more than it says; %s selectors allow: %s", t, t, strings.Join(conditionNames(t), ", "))
			continue
		}
		if first, dup := given[key]; dup {
			p.errorf(kv.k, w, key, "given twice in one selector (also at %s, under its old or new name)", p.lineOf(first))
			continue
		}
		given[key] = kv.k
		if c.boolean {
			b, ok := p.boolean(kv.v, w, key)
			if !ok {
				continue
			}
			switch key {
			case "ignoreVolumeMounts":
				s.IgnoreVolumeMounts = b
			case "ignoreVolumeFiles":
				s.IgnoreVolumeFiles = b
			case "sessionLeaderInteractive":
				s.SessionLeaderInteractive = False
				if b {
					s.SessionLeaderInteractive = True
				}
			}
			continue
		}
		for _, v := range p.stringList(kv.v, w, key) {
			if key == "operation" {
				p.operation(t, &s, v, w)
				continue
			}
			if c.check != nil {
				if msg := c.check(v.s); msg != "" {
					p.errorf(v.n, w, key, "%q %s", v.s, msg)
					continue
				}
			}
			if c.literalStar && strings.Contains(v.s, "*") {
				p.warnf(v.n, w, key, "%q: * is matched literally here; wildcards work only in kubernetesPodName, kubernetesPodLabel values, targetFilePath and processExecutable", v.s)
			}
			s.add(key, v.s)
			if key == "targetFilePath" || key == "processExecutable" {
				if hasDotComponent(v.s) {
					p.warnf(v.n, w, key, "%q has a . or .. component; operations are matched against resolved paths, so this value never matches", v.s)
				}
			}
		}
	}

	if len(given) == 0 && sawName {
		p.errorf(n, w, "", "no conditions: a selector needs at least one condition besides name (%s selectors allow: %s)", t, strings.Join(conditionNames(t), ", "))
	}
	if a, b := given["containerImageFullName"], given["containerImageName"]; a != nil && b != nil {
		later := a
		if b.Line > a.Line || (b.Line == a.Line && b.Column > a.Column) {
			later = b
		}
		p.errorf(later, w, later.Value, "containerImageFullName and containerImageName cannot be combined in one selector; use one (containerImageFullName already names the image)")
	}
	if s.IgnoreVolumeMounts && s.IgnoreVolumeFiles {
		p.errorf(given["ignoreVolumeFiles"], w, "ignoreVolumeFiles", "cannot be combined with ignoreVolumeMounts, which already ignores file mounts (they are volume mounts too)")
	}
	if given["processExecutable"] != nil && given["processName"] != nil {
		p.warnf(given["processName"], w, "processName", "combined with processExecutable in one selector (Kibana forbids this): both must match, so a name that differs from the executable's basename never matches")
	}
	if t == Network {
		p.networkNeverMatches(&s, w, given)
	}
	return s
}

// ownerOf names the section a condition belongs to, for messages.
func ownerOf(c condition) Type {
	for t := Type(0); t < numTypes; t++ {
		if c.types[t] {
			return t
		}
	}
	return Process
}

// networkNeverMatches warns about network selectors whose conditions no operation
// can meet: an accept is TCP, and a bind has no destination.
func (p *parser) networkNeverMatches(s *Selector, w where, given map[string]*yaml.Node) {
	ops := s.Covers()
	if ops == OpSet(0).With(OpAccept) && len(s.Protocol) > 0 && !slices.Contains(s.Protocol, ProtocolTCP) {
		p.warnf(given["protocol"], w, "protocol", "accept is TCP only, so with protocol %s this selector never matches", strings.Join(s.Protocol, ", "))
	}
	if ops == OpSet(0).With(OpBind) {
		for _, key := range []string{"destinationAddress", "destinationPort"} {
			if given[key] != nil {
				p.warnf(given[key], w, key, "a bind has no destination (its address is the source), so with %s this selector never matches; use source%s", key, strings.TrimPrefix(key, "destination"))
			}
		}
	}
}

func (p *parser) errorCount() int {
	n := 0
	for _, d := range p.diags {
		if d.Severity == SeverityError {
			n++
		}
	}
	return n
}

func (p *parser) operation(t Type, s *Selector, v strval, w where) {
	op, ok := ParseOp(v.s)
	if !ok || op.Type() != t {
		allowed := allOps[t].String()
		if ok {
			p.errorf(v.n, w, "operation", "%q is a %s operation; %s selectors allow: %s", v.s, op.Type(), t, allowed)
		} else if s := suggest(v.s, strings.Split(allowed, ", ")); s != "" {
			p.errorf(v.n, w, "operation", "unknown operation %q (did you mean %q?); %s selectors allow: %s", v.s, s, t, allowed)
		} else {
			p.errorf(v.n, w, "operation", "unknown operation %q; %s selectors allow: %s", v.s, t, allowed)
		}
		return
	}
	if op == OpExecMemfd {
		p.warnf(v.n, w, "operation", "execMemFd is a deprecated first-version operation; use exec (kept as: exec of a memfd, i.e. fileless execution)")
	}
	s.Operations = s.Operations.With(op)
}

func (s *Selector) add(key, v string) {
	switch key {
	case "containerImageName":
		s.ContainerImageName = append(s.ContainerImageName, v)
	case "containerImageTag":
		s.ContainerImageTag = append(s.ContainerImageTag, v)
	case "containerImageFullName":
		s.ContainerImageFullName = append(s.ContainerImageFullName, v)
	case "kubernetesClusterId":
		s.KubernetesClusterID = append(s.KubernetesClusterID, v)
	case "kubernetesClusterName":
		s.KubernetesClusterName = append(s.KubernetesClusterName, v)
	case "kubernetesNamespace":
		s.KubernetesNamespace = append(s.KubernetesNamespace, v)
	case "kubernetesPodName":
		s.KubernetesPodName = append(s.KubernetesPodName, newNamePattern(v))
	case "kubernetesPodLabel":
		s.KubernetesPodLabel = append(s.KubernetesPodLabel, newLabelPattern(v))
	case "orchestratorType":
		s.OrchestratorType = append(s.OrchestratorType, v)
	case "targetFilePath":
		s.TargetFilePath = append(s.TargetFilePath, newPathPattern(v))
	case "processExecutable":
		s.ProcessExecutable = append(s.ProcessExecutable, newPathPattern(v))
	case "processName":
		s.ProcessName = append(s.ProcessName, v)
	case "executableLayer":
		s.ExecutableLayer = append(s.ExecutableLayer, v)
	case "destinationAddress":
		pfx, _ := parsePrefix(v)
		s.DestinationAddress = append(s.DestinationAddress, pfx)
	case "sourceAddress":
		pfx, _ := parsePrefix(v)
		s.SourceAddress = append(s.SourceAddress, pfx)
	case "destinationPort":
		r, _ := parsePortRange(v)
		s.DestinationPort = append(s.DestinationPort, r)
	case "sourcePort":
		r, _ := parsePortRange(v)
		s.SourcePort = append(s.SourcePort, r)
	case "protocol":
		s.Protocol = append(s.Protocol, v)
	default:
		panic("policy: condition without a field: " + key)
	}
}

func hasDotComponent(path string) bool {
	for _, c := range strings.Split(path, "/") {
		if c == "." || c == ".." {
			return true
		}
	}
	return false
}

// onlyOperations reports whether the selector constrains nothing but the operation:
// it matches that operation in every container.
func (s *Selector) onlyOperations() bool {
	return !s.ContainerScoped() && len(s.TargetFilePath)+len(s.ProcessExecutable)+len(s.ProcessName)+len(s.ExecutableLayer)+
		len(s.DestinationAddress)+len(s.SourceAddress)+len(s.DestinationPort)+len(s.SourcePort)+len(s.Protocol) == 0 &&
		!s.IgnoreVolumeMounts && !s.IgnoreVolumeFiles && s.SessionLeaderInteractive == Unset
}

func (p *parser) response(t Type, n *yaml.Node, idx int, sels []Selector, index map[string]int, otherNames map[string]Type) (Response, bool) {
	r := Response{Type: t, Pos: Position{n.Line, n.Column}}
	w := where{typ: t.String(), response: idx}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, w, "", "must be a mapping with match and actions")
		return r, false
	}
	errsBefore := p.errorCount()
	var matchVals, excludeVals []strval
	var actionsNode *yaml.Node
	sawMatch, sawActions := false, false
	for _, kv := range p.pairs(n, w) {
		switch kv.key {
		case "match":
			sawMatch = true
			matchVals = p.refs(t, kv.v, w, "match", index, otherNames, sels)
		case "exclude":
			excludeVals = p.refs(t, kv.v, w, "exclude", index, otherNames, sels)
		case "actions":
			sawActions = true
			actionsNode = kv.v
			for _, v := range p.stringList(kv.v, w, "actions") {
				a, ok := parseAction(v.s)
				if !ok {
					p.errorf(v.n, w, "actions", "unknown action %q; allowed: log, alert, block", v.s)
					continue
				}
				r.Actions |= a
			}
		default:
			p.unknownKey(kv.k, w, []string{"match", "exclude", "actions"})
		}
	}
	if !sawMatch {
		p.errorf(n, w, "match", "required: name at least one %s selector", t)
	}
	if !sawActions {
		p.errorf(n, w, "actions", "required: at least one of log, alert, block")
	}
	if r.Actions.Has(ActionBlock) && !r.Actions.Has(ActionAlert) {
		p.errorf(actionsNode, w, "actions", "block requires alert in the same response, so every blocked operation is reported")
	}
	for _, v := range matchVals {
		r.Match = append(r.Match, v.s)
		r.MatchMask |= 1 << index[v.s]
	}
	for _, v := range excludeVals {
		r.Exclude = append(r.Exclude, v.s)
		r.ExcludeMask |= 1 << index[v.s]
		if r.MatchMask&(1<<index[v.s]) != 0 {
			p.warnf(v.n, w, "exclude", "%q is in both match and exclude, so it never makes this response fire", v.s)
		}
	}
	if r.Actions.Has(ActionBlock) && p.errorCount() == errsBefore {
		p.checkBlock(t, &r, w, matchVals, sels, index)
	}
	return r, p.errorCount() == errsBefore
}

// refs resolves selector names of a match or exclude list.
func (p *parser) refs(t Type, v *yaml.Node, w where, field string, index map[string]int, otherNames map[string]Type, sels []Selector) []strval {
	var out []strval
	for _, ref := range p.stringList(v, w, field) {
		if _, ok := index[ref.s]; ok {
			out = append(out, ref)
			continue
		}
		if o, ok := otherNames[ref.s]; ok {
			p.errorf(ref.n, w, field, "%q is a %s selector; a %s response can name only %s selectors", ref.s, o, t, t)
			continue
		}
		names := make([]string, 0, len(sels))
		for _, s := range sels {
			names = append(names, s.Name)
		}
		if len(names) == 0 {
			p.errorf(ref.n, w, field, "unknown selector %q (this section has no valid selectors)", ref.s)
		} else {
			p.errorf(ref.n, w, field, "unknown selector %q; %s selectors are: %s", ref.s, t, strings.Join(names, ", "))
		}
	}
	return out
}

// checkBlock applies the guard rails for blocking responses.
func (p *parser) checkBlock(t Type, r *Response, w where, matchVals []strval, sels []Selector, index map[string]int) {
	if t == File {
		excludeHasPath := false
		for _, name := range r.Exclude {
			if len(sels[index[name]].TargetFilePath) > 0 {
				excludeHasPath = true
			}
		}
		for _, v := range matchVals {
			s := &sels[index[v.s]]
			writes := s.Covers() & writeOps
			if writes == 0 {
				continue
			}
			if len(s.TargetFilePath) == 0 && !excludeHasPath {
				p.errorf(v.n, w, "match", "selector %q covers %s without targetFilePath, so this response would block every such write in a container; give %q a targetFilePath, or exclude a selector that has one", v.s, writes, v.s)
				continue
			}
			for _, pp := range s.TargetFilePath {
				if pp.Kind != PathExact && pp.Path == "" { // /* or /**: every file at the root or in the container
					// The warning is about the selector's path: point there.
					at := cmp.Or(conditionValue(p.selNodes[t][s.Name], "targetFilePath", pp.String()), v.n)
					p.warnf(at, where{typ: t.String(), selector: s.Name}, "targetFilePath", "%q with block stops %s for every file under %s", pp.String(), writes, cmp.Or(pp.Path, "/"))
				}
			}
		}
		return
	}
	for _, v := range matchVals {
		if s := &sels[index[v.s]]; s.onlyOperations() {
			p.warnf(v.n, w, "match", "selector %q has no condition but its operations, so this response blocks every %s in every container", v.s, s.Covers())
		}
	}
}
