package requirements

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/internal/mountinfo"
)

// The kernel releases the checks hold to.
const (
	// MinKernel is the oldest kernel whose BPF LSM cloud-defend blocks with.
	MinKernel = "5.10.16"
	// minLoadKernel is the oldest the programs can load on at all: CAP_BPF and
	// the BPF ring buffer came in 5.8.
	minLoadKernel = "5.8"
)

// Options say where Probe looks; the zero value probes this process on this node.
type Options struct {
	ProcRoot string // this process's /proc; default "/proc" (Probe reads self/status and self/mountinfo)
	SysRoot  string // sysfs; default "/sys"
	Release  string // the kernel release; default uname(2)'s
}

// Probe checks this node and this process against what cloud-defend needs: the
// kernel release, BTF, each capability in the effective set, the BPF LSM among the
// active LSMs, tracefs with the syscall tracepoints, and a cgroup v2 mount. It
// never fails: what it cannot read is a check that did not pass.
func Probe(opts Options) Report {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.SysRoot == "" {
		opts.SysRoot = "/sys"
	}
	if opts.Release == "" {
		var uts unix.Utsname
		if unix.Uname(&uts) == nil {
			opts.Release = unix.ByteSliceToString(uts.Release[:])
		}
	}
	var r Report
	add := func(c Check) { r.Checks = append(r.Checks, c) }
	release := opts.Release

	if KernelAtLeast(release, MinKernel) {
		add(Check{Name: "kernel", Status: OK, What: "kernel " + release + " (" + MinKernel + " or later)"})
	} else {
		fix := "BPF LSM enforcement needs Linux " + MinKernel + " or later"
		load := !KernelAtLeast(release, minLoadKernel)
		if load {
			fix += "; the programs do not load before " + minLoadKernel
		}
		add(Check{Name: "kernel", Status: Fail, What: "kernel " + release + " is older than " + MinKernel, Fix: fix, Load: load})
	}

	btf := filepath.Join(opts.SysRoot, "kernel/btf/vmlinux")
	if _, err := os.Stat(btf); err == nil {
		add(Check{Name: "btf", Status: OK, What: "kernel BTF at " + btf})
	} else {
		add(Check{Name: "btf", Status: Fail, What: "no kernel BTF (" + btf + ")", Fix: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y", Load: true})
	}

	eff, effErr := effectiveCaps(filepath.Join(opts.ProcRoot, "self/status"))
	for _, c := range capabilities {
		add(capabilityCheck(c, eff, effErr, release))
	}

	add(lsmCheck(filepath.Join(opts.SysRoot, "kernel/security/lsm")))
	add(tracefsCheck(opts.SysRoot, eff&(1<<capSysAdmin) != 0))
	add(cgroupCheck(filepath.Join(opts.ProcRoot, "self/mountinfo")))
	return r
}

func capabilityCheck(c Capability, eff uint64, effErr error, release string) Check {
	name := "cap:" + c.Name
	has := func(bit uint) bool { return eff&(1<<bit) != 0 }
	required := c.Required || (c.RequiredBefore != "" && !KernelAtLeast(release, c.RequiredBefore))
	switch {
	case effErr != nil:
		return Check{Name: name, Status: Warn, What: "cannot tell whether capability " + c.CapName() + " is held: " + effErr.Error(),
			Fix: "the effective set is read from /proc/self/status (CapEff); " + c.CapName() + " " + c.Why, Load: required}
	case has(c.Bit):
		return Check{Name: name, Status: OK, What: "capability " + c.CapName()}
	case c.BySysAdmin && has(capSysAdmin):
		return Check{Name: name, Status: OK, What: "capability " + c.CapName() + " (through CAP_SYS_ADMIN)"}
	case required:
		why := c.Why
		if c.RequiredBefore != "" {
			why += " (this kernel is older than " + c.RequiredBefore + ")"
		}
		return Check{Name: name, Status: Fail, What: "capability " + c.CapName() + " is missing",
			Fix: "run as root with " + c.Name + " in securityContext.capabilities.add (it " + why + ")", Load: true}
	case c.RequiredBefore != "":
		return Check{Name: name, Status: Info, What: "capability " + c.CapName() + " is missing, and not needed on kernel " + c.RequiredBefore + " or later"}
	default:
		return Check{Name: name, Status: Warn, What: "capability " + c.CapName() + " is missing",
			Fix: "add " + c.Name + " to securityContext.capabilities.add (it " + c.Why + ")"}
	}
}

func lsmCheck(path string) Check {
	data, err := os.ReadFile(path)
	if err != nil {
		return Check{Name: "lsm", Status: Warn, What: "cannot read the active LSMs (" + path + "): " + err.Error(),
			Fix: "mount securityfs (mount -t securityfs securityfs /sys/kernel/security), or in Kubernetes mount the host's /sys/kernel/security read-only"}
	}
	lsms := strings.TrimSpace(string(data))
	if strings.Contains(","+lsms+",", ",bpf,") {
		return Check{Name: "lsm", Status: OK, What: "BPF LSM is enabled (lsm=" + lsms + ")"}
	}
	return Check{Name: "lsm", Status: Fail, What: "BPF LSM is not enabled (lsm=" + lsms + ")",
		Fix: "add bpf to the kernel's lsm= boot parameter, keeping the others: lsm=" + lsms + ",bpf (GRUB_CMDLINE_LINUX, then reboot)"}
}

// tracefsDirs are where the engine looks for tracefs, in its order.
var tracefsDirs = []string{"kernel/tracing", "kernel/debug/tracing"}

// setsidEvent is the syscall tracepoint the engine attaches (its file syscall
// tracepoints, used without BPF LSM, sit beside it).
const setsidEvent = "events/syscalls/sys_exit_setsid"

func tracefsCheck(sysRoot string, sysAdmin bool) Check {
	var mounted []string
	for _, d := range tracefsDirs {
		dir := filepath.Join(sysRoot, d)
		if _, err := os.Stat(filepath.Join(dir, "events")); err != nil {
			continue
		}
		mounted = append(mounted, dir)
		if _, err := os.Stat(filepath.Join(dir, setsidEvent, "id")); err == nil {
			return Check{Name: "tracefs", Status: OK, What: "tracefs at " + dir + " (syscall tracepoints)"}
		}
	}
	if len(mounted) > 0 {
		return Check{Name: "tracefs", Status: Warn, What: "tracefs at " + mounted[0] + " has no syscall tracepoints (" + setsidEvent + ")",
			Fix: "use a kernel built with CONFIG_FTRACE_SYSCALLS=y; without it setsid events, and without BPF LSM file syscall detection, are off"}
	}
	if sysAdmin {
		return Check{Name: "tracefs", Status: Info, What: "tracefs is not mounted; cloud-defend mounts it at /sys/kernel/tracing (CAP_SYS_ADMIN)"}
	}
	return Check{Name: "tracefs", Status: Warn, What: "tracefs is not mounted (" + filepath.Join(sysRoot, tracefsDirs[0]) + ")",
		Fix: "mount tracefs at /sys/kernel/tracing, or mount the host's /sys/kernel/debug, or add SYS_ADMIN so cloud-defend mounts it; without it setsid events, and without BPF LSM file syscall detection, are off"}
}

func cgroupCheck(path string) Check {
	fail := Check{Name: "cgroup2", Status: Fail, What: "no cgroup v2 mount",
		Fix: "per-container selectors and container ids need cgroup v2 (unified or hybrid)"}
	f, err := os.Open(path)
	if err != nil {
		fail.What += " (" + err.Error() + ")"
		return fail
	}
	defer f.Close()
	mounts, err := mountinfo.Parse(f)
	if err != nil {
		fail.What += " (" + err.Error() + ")"
		return fail
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			return Check{Name: "cgroup2", Status: OK, What: "cgroup v2 mounted at " + m.Point + " (container ids come from cgroup v2 ids)"}
		}
	}
	return fail
}

// effectiveCaps reads a process's effective capability set from its status file.
func effectiveCaps(status string) (uint64, error) {
	data, err := os.ReadFile(status)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, &os.PathError{Op: "parse", Path: status, Err: errNoCapEff}
}

var errNoCapEff = errors.New("no CapEff line")

// KernelAtLeast compares a release like "6.1.0-56-cloud-amd64" to a version like
// "5.10.16" (missing parts are 0).
func KernelAtLeast(release, version string) bool {
	have, want := parseRelease(release), parseRelease(version)
	for i := range have {
		if have[i] != want[i] {
			return have[i] > want[i]
		}
	}
	return true
}

func parseRelease(release string) [3]int {
	var v [3]int
	fields := strings.FieldsFunc(release, func(r rune) bool { return r == '.' || r == '-' || r == '+' })
	for i := 0; i < 3 && i < len(fields); i++ {
		n, err := strconv.Atoi(fields[i])
		if err != nil {
			break
		}
		v[i] = n
	}
	return v
}
