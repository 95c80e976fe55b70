package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Position is a place in the policy source, 1-based.
type Position struct {
	Line, Column int
}

// Tristate is an optional boolean condition.
type Tristate uint8

const (
	Unset Tristate = iota
	True
	False
)

// Selector is a compiled selector: every non-empty condition must hold (AND), and
// any value of a list condition may match (OR).
type Selector struct {
	Name string
	Type Type
	Pos  Position
	// Operations is the set named in the policy; empty means every operation of Type.
	Operations OpSet

	ContainerImageName     []string
	ContainerImageTag      []string
	ContainerImageFullName []string
	KubernetesClusterID    []string
	KubernetesClusterName  []string
	KubernetesNamespace    []string
	KubernetesPodName      []NamePattern
	KubernetesPodLabel     []LabelPattern
	// OrchestratorType is the first policy version's condition; its only value,
	// "kubernetes", matches workloads that run in a Kubernetes pod.
	OrchestratorType []string

	// File selectors.
	TargetFilePath     []PathPattern
	IgnoreVolumeMounts bool
	IgnoreVolumeFiles  bool

	// Process selectors; ProcessExecutable, ProcessName and
	// SessionLeaderInteractive also in network selectors, about the process that
	// does the network operation.
	ProcessExecutable        []PathPattern
	ProcessName              []string
	SessionLeaderInteractive Tristate
	// ExecutableLayer: the executable's overlay layer is one of these (Layers).
	ExecutableLayer []string

	// Network selectors (see the package documentation for what source and
	// destination are per operation, and how a kernel compiles these).
	// DestinationAddress and SourceAddress are masked prefixes (Prefix.Masked()
	// is the prefix itself); an address is a prefix of its full length; IPv4,
	// IPv4-mapped values included, is always 4 bytes (Addr().Is4()).
	DestinationAddress []netip.Prefix
	SourceAddress      []netip.Prefix
	// DestinationPort and SourcePort are inclusive ranges, in policy order.
	DestinationPort []PortRange
	SourcePort      []PortRange
	// Protocol holds values of Protocols.
	Protocol []string
}

// Covers returns the operations the selector can match.
func (s *Selector) Covers() OpSet {
	if s.Operations == 0 {
		return allOps[s.Type]
	}
	return s.Operations
}

func (s *Selector) clone() Selector {
	c := *s
	c.ContainerImageName = slices.Clone(s.ContainerImageName)
	c.ContainerImageTag = slices.Clone(s.ContainerImageTag)
	c.ContainerImageFullName = slices.Clone(s.ContainerImageFullName)
	c.KubernetesClusterID = slices.Clone(s.KubernetesClusterID)
	c.KubernetesClusterName = slices.Clone(s.KubernetesClusterName)
	c.KubernetesNamespace = slices.Clone(s.KubernetesNamespace)
	c.KubernetesPodName = slices.Clone(s.KubernetesPodName)
	c.KubernetesPodLabel = slices.Clone(s.KubernetesPodLabel)
	c.OrchestratorType = slices.Clone(s.OrchestratorType)
	c.TargetFilePath = slices.Clone(s.TargetFilePath)
	c.ProcessExecutable = slices.Clone(s.ProcessExecutable)
	c.ProcessName = slices.Clone(s.ProcessName)
	c.ExecutableLayer = slices.Clone(s.ExecutableLayer)
	c.DestinationAddress = slices.Clone(s.DestinationAddress)
	c.SourceAddress = slices.Clone(s.SourceAddress)
	c.DestinationPort = slices.Clone(s.DestinationPort)
	c.SourcePort = slices.Clone(s.SourcePort)
	c.Protocol = slices.Clone(s.Protocol)
	return c
}

// Response is a compiled response: IF any Match selector matches AND NOT any
// Exclude selector matches THEN Actions.
type Response struct {
	Type    Type
	Pos     Position
	Match   []string
	Exclude []string
	Actions Actions
	// MatchMask and ExcludeMask are bit i = selector i of the same type, the form
	// the kernel engine stores.
	MatchMask, ExcludeMask uint64
}

// String renders the response as the rule it is, e.g.
// IF (binDirExeMods OR etcFileChanges) AND NOT (nginx) THEN alert, block.
func (r Response) String() string {
	s := "IF (" + strings.Join(r.Match, " OR ") + ")"
	if len(r.Exclude) > 0 {
		s += " AND NOT (" + strings.Join(r.Exclude, " OR ") + ")"
	}
	return s + " THEN " + r.Actions.String()
}

// MaxRules is the most selectors plus responses one type may hold, so selector sets
// fit a 64-bit mask.
const MaxRules = 64

type section struct {
	selectors []Selector
	responses []Response
}

// Policy is a validated, compiled policy. It is immutable: accessors return copies,
// so one Policy can be shared by the evaluator, the kernel compiler and diagnostics.
type Policy struct {
	name     string
	version  string
	source   []byte
	warnings []Diagnostic
	// editorWarnings: what Kibana's policy editor does not know (EditorWarnings).
	editorWarnings []Diagnostic
	sections       [numTypes]section
}

// Name is the name the policy was parsed under (a file name or a unit id).
func (p *Policy) Name() string { return p.name }

// Version is the optional top-level version string.
func (p *Policy) Version() string { return p.version }

// Source returns the YAML the policy was parsed from.
func (p *Policy) Source() []byte { return slices.Clone(p.source) }

// Warnings returns the warnings found when the policy was parsed.
func (p *Policy) Warnings() []Diagnostic { return slices.Clone(p.warnings) }

// EditorWarnings returns warnings, positioned like the others, about parts of the
// policy that are cloud-defend extensions Kibana's Defend for Containers policy
// editor does not know: today the network: section. They are not among Warnings
// (a policy that arrived through Fleet has already been past the editor); policy
// validate prints them for a policy about to be pasted there.
func (p *Policy) EditorWarnings() []Diagnostic { return slices.Clone(p.editorWarnings) }

// Selectors returns a copy of the selectors of type t, in policy order; selector i
// is bit i of masks.
func (p *Policy) Selectors(t Type) []Selector {
	src := p.sections[t].selectors
	out := make([]Selector, len(src))
	for i := range src {
		out[i] = src[i].clone()
	}
	return out
}

// Responses returns a copy of the responses of type t, in policy order.
func (p *Policy) Responses(t Type) []Response {
	src := p.sections[t].responses
	out := make([]Response, len(src))
	for i, r := range src {
		r.Match = slices.Clone(r.Match)
		r.Exclude = slices.Clone(r.Exclude)
		out[i] = r
	}
	return out
}

// Blocks reports whether any response of type t can block.
func (p *Policy) Blocks(t Type) bool {
	for _, r := range p.sections[t].responses {
		if r.Actions.Has(ActionBlock) {
			return true
		}
	}
	return false
}

// Operation is what a process in a container is about to do, with the context the
// conditions look at. Paths are absolute and resolved, as the container sees them.
type Operation struct {
	Op Op
	// TargetPath is the file a file operation acts on.
	TargetPath        string
	ProcessExecutable string
	// ProcessName is the kernel's comm: at most 15 bytes.
	ProcessName string
	// ExecutableIsMemfd marks an exec of a memfd (fileless execution).
	ExecutableIsMemfd bool
	// SessionLeaderInteractive: the session leader has a controlling TTY.
	SessionLeaderInteractive bool
	// ExecutableLayer is where the executable lives on an overlay root
	// filesystem (one of Layers), "" when it is not on one.
	ExecutableLayer string

	ContainerImageName     string
	ContainerImageTag      string
	ContainerImageFullName string
	KubernetesClusterID    string
	KubernetesClusterName  string
	KubernetesNamespace    string
	KubernetesPodName      string
	KubernetesPodLabels    map[string]string

	// OnVolumeMount: the target is on any mount other than the container's root
	// filesystem. A file mount is also a volume mount.
	OnVolumeMount bool
	// OnFileMount: the target is a single-file mount (configMap/secret file, subPath).
	OnFileMount bool

	// Network operations. Protocol is ProtocolTCP or ProtocolUDP. Source and
	// destination follow the connection's direction (for accept the source is
	// the peer); an endpoint the operation does not have is the zero Addr, and
	// its port is 0. IPv4-mapped IPv6 addresses are matched as IPv4.
	Protocol                          string
	SourceAddress, DestinationAddress netip.Addr
	SourcePort, DestinationPort       uint16
}

// Decision is the outcome of evaluating one operation.
type Decision struct {
	Type Type
	// Matched has bit i set when selector i of Type matched.
	Matched uint64
	// Fired has bit i set when response i of Type fired.
	Fired   uint64
	Actions Actions
}

// Evaluate returns the selectors that match op and the union of the actions of every
// response that fires. It does not allocate.
//
// A selector matches an operation of its own type when every condition it has
// holds; a condition it does not have holds for every operation. For network
// operations: protocol holds when op.Protocol is one of its values; an address
// condition when the endpoint's address is valid and, IPv4-mapped addresses
// unmapped and zones dropped, inside one of its prefixes (an IPv6 prefix never
// holds an IPv4 address); a port condition when the endpoint's address is valid
// and its port is in one of its inclusive ranges. Which endpoint is the source and
// which the destination is per operation (package documentation).
func (p *Policy) Evaluate(op *Operation) Decision {
	t := op.Op.Type()
	sec := &p.sections[t]
	d := Decision{Type: t}
	for i := range sec.selectors {
		if sec.selectors[i].matches(op) {
			d.Matched |= 1 << i
		}
	}
	if d.Matched == 0 {
		return d
	}
	for i := range sec.responses {
		r := &sec.responses[i]
		if d.Matched&r.MatchMask != 0 && d.Matched&r.ExcludeMask == 0 {
			d.Fired |= 1 << i
			d.Actions |= r.Actions
		}
	}
	return d
}

// MatchedSelectors names the selectors of d, in policy order.
func (p *Policy) MatchedSelectors(d Decision) []string {
	var names []string
	for i, s := range p.sections[d.Type].selectors {
		if d.Matched&(1<<i) != 0 {
			names = append(names, s.Name)
		}
	}
	return names
}

func (s *Selector) matches(op *Operation) bool {
	if s.Operations != 0 {
		ok := s.Operations.Has(op.Op) ||
			(op.Op == OpExec && op.ExecutableIsMemfd && s.Operations.Has(OpExecMemfd))
		if !ok {
			return false
		}
	}
	if !s.MatchesContainer(op) {
		return false
	}
	switch s.Type {
	case File:
		if len(s.TargetFilePath) > 0 && !anyPath(s.TargetFilePath, op.TargetPath) {
			return false
		}
		if s.IgnoreVolumeMounts && (op.OnVolumeMount || op.OnFileMount) {
			return false
		}
		if s.IgnoreVolumeFiles && op.OnFileMount {
			return false
		}
	case Process:
		if !anyEqual(s.ExecutableLayer, op.ExecutableLayer) {
			return false
		}
		return s.matchesProcess(op)
	case Network:
		if !anyEqual(s.Protocol, op.Protocol) {
			return false
		}
		if !matchesEndpoint(s.DestinationAddress, s.DestinationPort, op.DestinationAddress, op.DestinationPort) ||
			!matchesEndpoint(s.SourceAddress, s.SourcePort, op.SourceAddress, op.SourcePort) {
			return false
		}
		return s.matchesProcess(op)
	}
	return true
}

// matchesProcess is the conditions on the process doing op, which process and
// network selectors share.
func (s *Selector) matchesProcess(op *Operation) bool {
	if len(s.ProcessExecutable) > 0 && !anyPath(s.ProcessExecutable, op.ProcessExecutable) {
		return false
	}
	if !anyEqual(s.ProcessName, op.ProcessName) {
		return false
	}
	switch s.SessionLeaderInteractive {
	case True:
		return op.SessionLeaderInteractive
	case False:
		return !op.SessionLeaderInteractive
	}
	return true
}

// ContainerScoped reports whether the selector has conditions on the workload's
// container or Kubernetes metadata. The kernel engine resolves those in user space
// per container; the others it matches itself.
func (s *Selector) ContainerScoped() bool {
	return len(s.ContainerImageName)+len(s.ContainerImageTag)+len(s.ContainerImageFullName)+
		len(s.KubernetesClusterID)+len(s.KubernetesClusterName)+len(s.KubernetesNamespace)+
		len(s.KubernetesPodName)+len(s.KubernetesPodLabel)+len(s.OrchestratorType) > 0
}

// MatchesContainer reports whether the container and Kubernetes conditions hold for
// the workload described by op's container and Kubernetes fields; other fields are
// ignored.
func (s *Selector) MatchesContainer(op *Operation) bool {
	if !anyEqual(s.ContainerImageName, op.ContainerImageName) ||
		!anyEqual(s.ContainerImageTag, op.ContainerImageTag) ||
		!anyEqual(s.ContainerImageFullName, op.ContainerImageFullName) ||
		!anyEqual(s.KubernetesClusterID, op.KubernetesClusterID) ||
		!anyEqual(s.KubernetesClusterName, op.KubernetesClusterName) ||
		!anyEqual(s.KubernetesNamespace, op.KubernetesNamespace) {
		return false
	}
	if len(s.KubernetesPodName) > 0 {
		// A pod name pattern, even "*", only matches workloads that are in a pod.
		if op.KubernetesPodName == "" || !anyName(s.KubernetesPodName, op.KubernetesPodName) {
			return false
		}
	}
	if len(s.KubernetesPodLabel) > 0 && !anyLabel(s.KubernetesPodLabel, op.KubernetesPodLabels) {
		return false
	}
	if len(s.OrchestratorType) > 0 && op.KubernetesPodName == "" {
		return false
	}
	return true
}

// anyEqual is true for an absent condition (no values) or when v is one of them.
func anyEqual(vals []string, v string) bool {
	if len(vals) == 0 {
		return true
	}
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

func anyName(ps []NamePattern, v string) bool {
	for _, p := range ps {
		if p.Match(v) {
			return true
		}
	}
	return false
}

func anyLabel(ps []LabelPattern, labels map[string]string) bool {
	for _, p := range ps {
		if p.Match(labels) {
			return true
		}
	}
	return false
}

func anyPath(ps []PathPattern, path string) bool {
	for _, p := range ps {
		if p.Match(path) {
			return true
		}
	}
	return false
}

// String gives a one-line summary of the policy, e.g. for a startup log.
func (p *Policy) String() string {
	var parts []string
	for t := Type(0); t < numTypes; t++ {
		sec := p.sections[t]
		if len(sec.selectors) == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d selectors, %d responses", t, len(sec.selectors), len(sec.responses)))
	}
	return strings.Join(parts, "; ")
}

// Conditions renders the selector's conditions, AND-joined, e.g.
// operation in (createFile, modifyFile) AND targetFilePath in (/etc/**).
func (s *Selector) Conditions() string {
	var parts []string
	list := func(key string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, key+" in ("+strings.Join(vals, ", ")+")")
		}
	}
	if s.Operations != 0 {
		parts = append(parts, "operation in ("+s.Operations.String()+")")
	}
	list("containerImageName", s.ContainerImageName)
	list("containerImageTag", s.ContainerImageTag)
	list("containerImageFullName", s.ContainerImageFullName)
	list("kubernetesClusterId", s.KubernetesClusterID)
	list("kubernetesClusterName", s.KubernetesClusterName)
	list("kubernetesNamespace", s.KubernetesNamespace)
	list("kubernetesPodName", stringsOf(s.KubernetesPodName))
	list("kubernetesPodLabel", stringsOf(s.KubernetesPodLabel))
	list("orchestratorType", s.OrchestratorType)
	list("targetFilePath", stringsOf(s.TargetFilePath))
	list("processExecutable", stringsOf(s.ProcessExecutable))
	list("processName", s.ProcessName)
	list("executableLayer", s.ExecutableLayer)
	list("protocol", s.Protocol)
	list("destinationAddress", addrsOf(s.DestinationAddress))
	list("destinationPort", stringsOf(s.DestinationPort))
	list("sourceAddress", addrsOf(s.SourceAddress))
	list("sourcePort", stringsOf(s.SourcePort))
	if s.SessionLeaderInteractive != Unset {
		parts = append(parts, fmt.Sprintf("sessionLeaderInteractive is %t", s.SessionLeaderInteractive == True))
	}
	if s.IgnoreVolumeMounts {
		parts = append(parts, "not on a volume mount")
	}
	if s.IgnoreVolumeFiles {
		parts = append(parts, "not on a file mount")
	}
	if len(parts) == 0 {
		return "any " + s.Type.String() + " operation"
	}
	return strings.Join(parts, " AND ")
}

// addrsOf renders prefixes as the policy writes them: a single address without
// its length.
func addrsOf(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out
}

func stringsOf[T fmt.Stringer](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
}
