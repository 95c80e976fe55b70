package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/requirements"
)

// check is one line of the doctor's report.
type check struct {
	status string // OK, WARN, FAIL, or INFO (says how things are, needs nothing)
	what   string
	fix    string
}

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

	// What the node offers: kernel, BTF, capabilities, BPF LSM, tracefs, cgroup v2.
	report := requirements.Probe(requirements.Options{})
	for _, c := range report.Checks {
		add(string(c.Status), c.What, c.Fix)
	}

	// The real test: load the programs as the agent would.
	detection, blocking := false, false
	if e, err := ebpf.Open(ebpf.Options{}); err != nil {
		add("FAIL", "the BPF programs do not load: "+err.Error(), "see the failures above; the programs need kernel BTF and "+requirements.LoadCapabilities())
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
