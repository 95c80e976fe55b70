package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/ebpf"
)

// check is one line of the doctor's report.
type check struct {
	status string // OK, WARN, FAIL, or INFO (says how things are, needs nothing)
	what   string
	fix    string
}

// Capability numbers (linux/capability.h).
const (
	capSysAdmin    = 21
	capSysResource = 24
	capPerfmon     = 38
	capBPF         = 39
)

// runDoctor checks whether this node can run cloud-defend, and says what to change
// where it cannot. Exit status: 0 when blocking works, 1 when only detection does
// (or nothing), 2 on usage errors.
func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pinPath, stateDir := pinFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "cloud-defend doctor: unexpected argument %q\n", fs.Arg(0))
		}
		return exitUsage
	}
	var checks []check
	add := func(status, what, fix string) { checks = append(checks, check{status, what, fix}) }

	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	if kernelAtLeast(release, 5, 10, 16) {
		add("OK", "kernel "+release+" (5.10.16 or later)", "")
	} else {
		add("FAIL", "kernel "+release+" is older than 5.10.16", "BPF LSM enforcement needs Linux 5.10.16 or later")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		add("OK", "kernel BTF at /sys/kernel/btf/vmlinux", "")
	} else {
		add("FAIL", "no kernel BTF (/sys/kernel/btf/vmlinux)", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}

	eff := effectiveCaps()
	for _, c := range []struct {
		bit  uint
		name string
		need string
	}{{capBPF, "CAP_BPF", "FAIL"}, {capPerfmon, "CAP_PERFMON", "FAIL"}, {capSysResource, "CAP_SYS_RESOURCE", "WARN"}} {
		switch {
		case eff&(1<<c.bit) != 0:
			add("OK", "capability "+c.name, "")
		case eff&(1<<capSysAdmin) != 0 && c.bit != capSysResource:
			add("OK", "capability "+c.name+" (through CAP_SYS_ADMIN)", "")
		case c.need == "WARN":
			add("WARN", "capability "+c.name+" is missing", "kernels before 5.11 need it to raise RLIMIT_MEMLOCK for BPF maps; add it to the container's securityContext")
		default:
			add("FAIL", "capability "+c.name+" is missing", "run as root with "+c.name+" (securityContext.capabilities.add in the DaemonSet)")
		}
	}

	if data, err := os.ReadFile("/sys/kernel/security/lsm"); err != nil {
		add("WARN", "cannot read the active LSMs (/sys/kernel/security/lsm): "+err.Error(), "mount securityfs (mount -t securityfs securityfs /sys/kernel/security), or in Kubernetes mount the host's /sys/kernel/security read-only")
	} else if lsms := strings.TrimSpace(string(data)); strings.Contains(","+lsms+",", ",bpf,") {
		add("OK", "BPF LSM is enabled (lsm="+lsms+")", "")
	} else {
		add("FAIL", "BPF LSM is not enabled (lsm="+lsms+")", "add bpf to the kernel's lsm= boot parameter, keeping the others: lsm="+lsms+",bpf (GRUB_CMDLINE_LINUX, then reboot)")
	}

	cg := cgroupLayout()
	if cg != "" {
		add("OK", "cgroup v2 mounted at "+cg+" (container ids come from cgroup v2 ids)", "")
	} else {
		add("FAIL", "no cgroup v2 mount", "per-container selectors and container ids need cgroup v2 (unified or hybrid)")
	}

	// The real test: load the programs as the agent would.
	detection, blocking := false, false
	if e, err := ebpf.Open(ebpf.Options{}); err != nil {
		add("FAIL", "the BPF programs do not load: "+err.Error(), "see the failures above; cloud-defend needs BTF, CAP_BPF and CAP_PERFMON")
	} else {
		detection = true
		add("OK", "process telemetry (fork, exec, exit tracepoints) loads and attaches", "")
		if s := e.Sessions(); s.Available {
			add("OK", "setsid events", "")
		} else {
			add("WARN", s.Reason, "mount tracefs at /sys/kernel/tracing, or mount the host's /sys/kernel/debug")
		}
		if l := e.LSM(); l.Available {
			blocking = true
			add("OK", "BPF LSM programs load and attach: blocking works", "")
		} else {
			add("FAIL", "blocking is unavailable: "+l.Reason, "until fixed, cloud-defend runs detection only (exec, fork and file selectors checked after the fact: file operations from their syscalls)")
		}
		e.Close()
	}

	checks = append(checks, pinnedCheck(*pinPath, *stateDir))

	for _, c := range checks {
		fmt.Fprintf(stdout, "[%-4s] %s\n", c.status, c.what)
		if c.fix != "" && c.status != "OK" {
			fmt.Fprintf(stdout, "       fix: %s\n", c.fix)
		}
	}
	switch {
	case blocking:
		fmt.Fprintln(stdout, "verdict: this node can detect and block")
		return exitOK
	case detection:
		fmt.Fprintln(stdout, "verdict: this node can detect but not block")
	default:
		fmt.Fprintln(stdout, "verdict: cloud-defend cannot run on this node")
	}
	return exitInvalid
}

// kernelAtLeast compares a release like "6.1.0-56-cloud-amd64" to major.minor.patch.
func kernelAtLeast(release string, major, minor, patch int) bool {
	var v [3]int
	fields := strings.FieldsFunc(release, func(r rune) bool { return r == '.' || r == '-' || r == '+' })
	for i := 0; i < 3 && i < len(fields); i++ {
		n, err := strconv.Atoi(fields[i])
		if err != nil {
			break
		}
		v[i] = n
	}
	want := [3]int{major, minor, patch}
	for i := range v {
		if v[i] != want[i] {
			return v[i] > want[i]
		}
	}
	return true
}

// effectiveCaps reads this process's effective capability set.
func effectiveCaps() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

// cgroupLayout returns where cgroup v2 is mounted, or "".
func cgroupLayout() string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		// "... - cgroup2 cgroup2 rw,..." : the filesystem type follows the separator.
		if _, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "cgroup2 ") {
			if f := strings.Fields(line); len(f) > 4 {
				return f[4]
			}
		}
	}
	return ""
}
