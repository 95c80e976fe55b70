package requirements

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	allCaps  = "000001ffffffffff"
	noCaps   = "0000000000000000"
	sysAdmin = "0000000000200000" // CAP_SYS_ADMIN only
)

// node is a fake /proc and /sys.
type node struct {
	capEff     string // "" leaves CapEff out of status
	noStatus   bool
	btf        bool
	lsm        *string // nil: no lsm file
	tracefs    string  // "", "kernel/tracing" or "kernel/debug/tracing"
	noSyscalls bool    // tracefs without the syscall tracepoints
	cgroup2    bool
	release    string
}

func (n node) probe(t *testing.T) Report {
	t.Helper()
	root := t.TempDir()
	proc, sys := filepath.Join(root, "proc"), filepath.Join(root, "sys")
	write := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !n.noStatus {
		status := "Name:\tcloud-defend\nCapInh:\t0000000000000000\n"
		if n.capEff != "" {
			status += "CapEff:\t" + n.capEff + "\n"
		}
		write(filepath.Join(proc, "self/status"), status)
	}
	mi := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
	if n.cgroup2 {
		mi += "35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
	}
	write(filepath.Join(proc, "self/mountinfo"), mi)
	if n.btf {
		write(filepath.Join(sys, "kernel/btf/vmlinux"), "BTF")
	}
	if n.lsm != nil {
		write(filepath.Join(sys, "kernel/security/lsm"), *n.lsm+"\n")
	}
	if n.tracefs != "" {
		write(filepath.Join(sys, n.tracefs, "events/sched/sched_switch/id"), "1\n")
		if !n.noSyscalls {
			write(filepath.Join(sys, n.tracefs, "events/syscalls/sys_exit_setsid/id"), "2\n")
		}
	}
	release := n.release
	if release == "" {
		release = "6.1.0-56-cloud-amd64"
	}
	return Probe(Options{ProcRoot: proc, SysRoot: sys, Release: release})
}

func str(s string) *string { return &s }

func good() node {
	return node{capEff: allCaps, btf: true, lsm: str("lockdown,capability,landlock,yama,apparmor,bpf"), tracefs: "kernel/tracing", cgroup2: true}
}

func check(t *testing.T, r Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

func expect(t *testing.T, r Report, name string, status Status, what string, load bool) {
	t.Helper()
	c := check(t, r, name)
	if c.Status != status || !strings.Contains(c.What, what) || c.Load != load {
		t.Errorf("%s: %+v, want %s %q load=%v", name, c, status, what, load)
	}
	if c.Status != OK && c.Status != Info && c.Fix == "" {
		t.Errorf("%s: %s without a fix", name, c.Status)
	}
}

func TestProbeGoodNode(t *testing.T) {
	r := good().probe(t)
	if len(r.Checks) != 5+len(capabilities) {
		t.Errorf("%d checks", len(r.Checks))
	}
	for _, c := range r.Checks {
		if c.Status != OK {
			t.Errorf("%+v", c)
		}
	}
	expect(t, r, "kernel", OK, "kernel 6.1.0-56-cloud-amd64 (5.10.16 or later)", false)
	expect(t, r, "btf", OK, "kernel BTF at ", false)
	expect(t, r, "cap:BPF", OK, "capability CAP_BPF", false)
	expect(t, r, "lsm", OK, "BPF LSM is enabled (lsm=lockdown,capability,landlock,yama,apparmor,bpf)", false)
	expect(t, r, "tracefs", OK, "kernel/tracing (syscall tracepoints)", false)
	expect(t, r, "cgroup2", OK, "cgroup v2 mounted at /sys/fs/cgroup/unified", false)
	if len(r.Failures()) != 0 || r.Summary() != "" {
		t.Errorf("failures %v summary %q", r.Failures(), r.Summary())
	}
	err := r.Explain(errors.New("boom"))
	if !strings.HasPrefix(err.Error(), "load the BPF programs: boom (the node meets") || !strings.Contains(err.Error(), CapabilityNames()) {
		t.Errorf("explain: %v", err)
	}
	if r.Explain(nil) != nil {
		t.Error("Explain(nil) is not nil")
	}
}

func TestProbeKernel(t *testing.T) {
	n := good()
	n.release = "5.10.15-1-amd64"
	expect(t, n.probe(t), "kernel", Fail, "kernel 5.10.15-1-amd64 is older than 5.10.16", false)
	n.release = "5.4.0"
	r := n.probe(t)
	expect(t, r, "kernel", Fail, "kernel 5.4.0 is older than 5.10.16", true)
	if !strings.Contains(check(t, r, "kernel").Fix, "do not load before 5.8") {
		t.Errorf("%+v", check(t, r, "kernel"))
	}
}

func TestProbeBTF(t *testing.T) {
	n := good()
	n.btf = false
	r := n.probe(t)
	expect(t, r, "btf", Fail, "no kernel BTF (", true)
	if !strings.Contains(r.Summary(), "CONFIG_DEBUG_INFO_BTF=y") {
		t.Errorf("summary %q", r.Summary())
	}
}

func TestProbeCapabilities(t *testing.T) {
	n := good()
	n.capEff = noCaps
	r := n.probe(t)
	expect(t, r, "cap:BPF", Fail, "capability CAP_BPF is missing", true)
	expect(t, r, "cap:PERFMON", Fail, "capability CAP_PERFMON is missing", true)
	expect(t, r, "cap:SYS_RESOURCE", Info, "not needed on kernel 5.11 or later", false)
	expect(t, r, "cap:SYS_ADMIN", Warn, "capability CAP_SYS_ADMIN is missing", false)
	expect(t, r, "cap:DAC_READ_SEARCH", Warn, "capability CAP_DAC_READ_SEARCH is missing", false)
	expect(t, r, "cap:SYS_PTRACE", Warn, "capability CAP_SYS_PTRACE is missing", false)
	err := r.Explain(errors.New("operation not permitted"))
	want := "load the BPF programs: operation not permitted: capability CAP_BPF is missing (run as root with BPF in securityContext.capabilities.add (it creates the BPF maps"
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "; capability CAP_PERFMON is missing (") {
		t.Errorf("explain: %v", err)
	}
	if strings.Contains(err.Error(), "SYS_PTRACE") {
		t.Errorf("explain names a capability the load does not need: %v", err)
	}

	n.release = "5.10.16"
	expect(t, n.probe(t), "cap:SYS_RESOURCE", Fail, "capability CAP_SYS_RESOURCE is missing", true)

	n.capEff = sysAdmin
	r = n.probe(t)
	expect(t, r, "cap:BPF", OK, "capability CAP_BPF (through CAP_SYS_ADMIN)", false)
	expect(t, r, "cap:PERFMON", OK, "capability CAP_PERFMON (through CAP_SYS_ADMIN)", false)
	expect(t, r, "cap:SYS_ADMIN", OK, "capability CAP_SYS_ADMIN", false)
	expect(t, r, "cap:SYS_RESOURCE", Fail, "capability CAP_SYS_RESOURCE is missing", true)
	expect(t, r, "cap:SYS_PTRACE", Warn, "capability CAP_SYS_PTRACE is missing", false)

	n.capEff = ""
	expect(t, n.probe(t), "cap:BPF", Warn, "cannot tell whether capability CAP_BPF is held", true)
	n.noStatus = true
	expect(t, n.probe(t), "cap:BPF", Warn, "cannot tell whether capability CAP_BPF is held", true)
}

func TestProbeLSM(t *testing.T) {
	n := good()
	n.lsm = str("lockdown,capability,apparmor")
	r := n.probe(t)
	expect(t, r, "lsm", Fail, "BPF LSM is not enabled (lsm=lockdown,capability,apparmor)", false)
	if c := check(t, r, "lsm"); !strings.Contains(c.Fix, "lsm=lockdown,capability,apparmor,bpf") {
		t.Errorf("%+v", c)
	}
	if len(r.Failures()) != 1 || len(r.LoadFailures()) != 0 || r.Summary() != "" {
		t.Errorf("BPF LSM off is a failure that does not stop the load: %+v", r.Failures())
	}
	n.lsm = str("bpfx,apparmor") // a name that merely starts with bpf
	expect(t, n.probe(t), "lsm", Fail, "BPF LSM is not enabled", false)
	n.lsm = nil
	expect(t, n.probe(t), "lsm", Warn, "cannot read the active LSMs", false)
}

func TestProbeTracefs(t *testing.T) {
	n := good()
	n.tracefs = "kernel/debug/tracing"
	expect(t, n.probe(t), "tracefs", OK, "kernel/debug/tracing (syscall tracepoints)", false)
	n.noSyscalls = true
	expect(t, n.probe(t), "tracefs", Warn, "has no syscall tracepoints", false)
	n.tracefs = ""
	expect(t, n.probe(t), "tracefs", Info, "cloud-defend mounts it", false)
	n.capEff = "000000c000000000" // BPF and PERFMON, no SYS_ADMIN
	expect(t, n.probe(t), "tracefs", Warn, "tracefs is not mounted", false)
}

func TestProbeCgroup(t *testing.T) {
	n := good()
	n.cgroup2 = false
	expect(t, n.probe(t), "cgroup2", Fail, "no cgroup v2 mount", false)
}

func TestCapabilities(t *testing.T) {
	if got, want := CapabilityNames(), "BPF, PERFMON, SYS_RESOURCE, SYS_ADMIN, DAC_READ_SEARCH, SYS_PTRACE"; got != want {
		t.Errorf("CapabilityNames() = %q", got)
	}
	if got, want := LoadCapabilities(), "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"; got != want {
		t.Errorf("LoadCapabilities() = %q", got)
	}
	seen := map[uint]bool{}
	for _, c := range Capabilities() {
		if c.Why == "" || seen[c.Bit] || c.Bit > 63 {
			t.Errorf("%+v", c)
		}
		seen[c.Bit] = true
	}
	caps := Capabilities()
	caps[0].Name = "changed"
	if Capabilities()[0].Name != "BPF" {
		t.Error("Capabilities returns the package's own slice")
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		release string
		want    bool
	}{{"5.10.16", true}, {"5.10.15-1-amd64", false}, {"6.1.0-56-cloud-amd64", true}, {"5.4.0", false}, {"6.18.2+deb13", true}, {"5.11", true}, {"", false}} {
		if got := KernelAtLeast(c.release, MinKernel); got != c.want {
			t.Errorf("%s: %v", c.release, got)
		}
	}
}
