// Package requirements says what a node must offer cloud-defend: the kernel, its
// BTF, the capabilities, the BPF LSM, tracefs and cgroup v2. It holds the one
// list of capabilities cloud-defend uses (the deployment manifests add exactly
// these; deploy's tests hold them to it), and one probe that `cloud-defend
// doctor`, the agent's startup error and the engine's reasons share.
//
// It imports neither the engine nor cilium/ebpf: it reads files and asks the
// kernel nothing it would refuse.
package requirements

import (
	"fmt"
	"strings"
)

// Capability is one Linux capability cloud-defend's container is given.
type Capability struct {
	Name string // as a securityContext spells it: "BPF"
	Bit  uint   // its number (linux/capability.h)
	// Required: without it the BPF programs do not load. Otherwise something
	// less works (Why says what).
	Required bool
	// RequiredBefore, when set, is the kernel release from which a capability
	// that is otherwise only degrading is no longer required ("5.11").
	RequiredBefore string
	// BySysAdmin: CAP_SYS_ADMIN grants what this one grants (the kernel checks
	// "this capability or CAP_SYS_ADMIN").
	BySysAdmin bool
	Why        string // what it is for, and what breaks without it
}

// CapName is the name as the kernel and capabilities(7) spell it: "CAP_BPF".
func (c Capability) CapName() string { return "CAP_" + c.Name }

// Capability numbers (linux/capability.h).
const (
	capDacReadSearch = 2
	capSysPtrace     = 19
	capSysAdmin      = 21
	capSysResource   = 24
	capPerfmon       = 38
	capBPF           = 39
)

var capabilities = []Capability{
	{Name: "BPF", Bit: capBPF, Required: true, BySysAdmin: true,
		Why: "creates the BPF maps and loads the programs"},
	{Name: "PERFMON", Bit: capPerfmon, Required: true, BySysAdmin: true,
		Why: "loads tracing and LSM programs (they read kernel memory) and attaches the syscall tracepoints"},
	{Name: "SYS_RESOURCE", Bit: capSysResource, RequiredBefore: "5.11",
		Why: "raises RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps to; without it their maps do not fit"},
	{Name: "SYS_ADMIN", Bit: capSysAdmin,
		Why: "mounts tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf where the node has not; without it and without those mounts, setsid events (and, without BPF LSM, file syscall detection) are off and pinning fails"},
	{Name: "DAC_READ_SEARCH", Bit: capDacReadSearch,
		Why: "resolves cgroup ids to container cgroups by file handle (open_by_handle_at); without it new cgroups are found by walking the hierarchy"},
	{Name: "SYS_PTRACE", Bit: capSysPtrace,
		Why: "reads other processes' /proc/<pid>/exe, cwd and ns/pid (for processes started before cloud-defend, and without BPF LSM for detection); without it those fields are missing for processes with more privilege or another uid"},
}

// Capabilities is the one list of capabilities cloud-defend uses, in the order
// the manifests add them. The slice is a copy.
func Capabilities() []Capability {
	return append([]Capability(nil), capabilities...)
}

// CapabilityNames renders the list as a securityContext spells it, for
// messages: "BPF, PERFMON, SYS_RESOURCE, SYS_ADMIN, DAC_READ_SEARCH, SYS_PTRACE".
func CapabilityNames() string {
	names := make([]string, len(capabilities))
	for i, c := range capabilities {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// LoadCapabilities names the capabilities the programs need to load, as the
// kernel checks them: "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)".
func LoadCapabilities() string {
	var names []string
	bySysAdmin := true
	for _, c := range capabilities {
		if c.Required {
			names = append(names, c.CapName())
			bySysAdmin = bySysAdmin && c.BySysAdmin
		}
	}
	s := joinAnd(names)
	if bySysAdmin && len(names) > 0 {
		s += " (or CAP_SYS_ADMIN)"
	}
	return s
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// Status is how a check came out.
type Status string

const (
	OK   Status = "OK"
	Info Status = "INFO" // says how things are; needs nothing
	Warn Status = "WARN" // something less works
	Fail Status = "FAIL" // the programs do not load, or blocking does not work
)

// Check is one line of a report.
type Check struct {
	Name   string // stable: "kernel", "btf", "cap:BPF", "lsm", "tracefs", "cgroup2"
	Status Status
	What   string // what was found
	Fix    string // what to change; "" when nothing needs to
	// Load: the BPF programs cannot load while this check fails (Explain
	// names these as the causes of a load error).
	Load bool
}

// Report is what Probe found, check by check.
type Report struct {
	Checks []Check
}

// Failures are the checks that failed.
func (r Report) Failures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c)
		}
	}
	return out
}

// LoadFailures are the failed checks without which the programs do not load.
func (r Report) LoadFailures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail && c.Load {
			out = append(out, c)
		}
	}
	return out
}

// Summary says in one line why the programs cannot load ("" when no requirement
// they need is missing): "capability CAP_PERFMON is missing (fix: ...); ...".
func (r Report) Summary() string {
	var parts []string
	for _, c := range r.LoadFailures() {
		s := c.What
		if c.Fix != "" {
			s += " (" + c.Fix + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// Explain wraps an error loading the BPF programs with the requirements this node
// misses, so the error says what to change:
// "load the BPF programs: <err>: capability CAP_PERFMON is missing (...)".
// When nothing is missing it says so and names the capabilities the pod adds.
// A nil err stays nil.
func (r Report) Explain(err error) error {
	if err == nil {
		return nil
	}
	if s := r.Summary(); s != "" {
		return fmt.Errorf("load the BPF programs: %w: %s", err, s)
	}
	return fmt.Errorf("load the BPF programs: %w (the node meets the kernel, BTF and capability requirements: %s; the pod adds %s; run `cloud-defend doctor` on the node)", err, LoadCapabilities(), CapabilityNames())
}
