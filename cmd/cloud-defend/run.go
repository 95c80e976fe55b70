package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
)

// runDaemon is standalone mode: enforce a policy file (or the embedded default) and
// write the kernel's events as NDJSON until SIGTERM or SIGINT; SIGHUP reloads the
// policy file with the same validation as at start.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFile := fs.String("policy", "", "policy file (default: the embedded default policy)")
	dryRun := fs.Bool("dry-run", false, "evaluate and report, never block")
	output := fs.String("output", "stdout", "where events go: stdout or file=PATH")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "cloud-defend run: unexpected argument %q\n", fs.Arg(0))
		}
		return exitUsage
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s cloud-defend: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
	}

	load := func() (*policy.Policy, error) {
		if *policyFile == "" {
			return policy.Default(), nil
		}
		p, warnings, err := policy.ParseFile(*policyFile)
		for _, w := range warnings {
			fmt.Fprintln(stderr, w)
		}
		return p, err
	}
	p, err := load()
	if err != nil {
		var errs policy.Errors
		if errors.As(err, &errs) {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
		fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
		return exitUsage
	}

	var out io.Writer = stdout
	if path, ok := strings.CutPrefix(*output, "file="); ok {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		out = f
	} else if *output != "stdout" {
		fmt.Fprintf(stderr, "cloud-defend run: --output must be stdout or file=PATH, not %q\n", *output)
		return exitUsage
	}

	engine, err := ebpf.Open(ebpf.Options{DryRun: *dryRun})
	if err != nil {
		logf("startup error: %v", err)
		return exitInvalid
	}
	defer engine.Close()
	if err := engine.Swap(p); err != nil {
		logf("startup error: load policy into the kernel: %v", err)
		return exitInvalid
	}
	summarize(logf, engine, p, *dryRun)

	w := bufio.NewWriter(out)
	var mu sync.Mutex // the writer is shared by the event loop and the final flush
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc := json.NewEncoder(w)
		for {
			ev, err := engine.Read()
			if err != nil {
				if !errors.Is(err, ebpf.ErrClosed) {
					logf("read events: %v", err)
				}
				return
			}
			mu.Lock()
			if err := enc.Encode(eventJSON(engine, &ev)); err != nil {
				logf("write event: %v", err)
			}
			mu.Unlock()
		}
	}()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported ebpf.Stats
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				logf("%v: stopping", sig)
				engine.Close()
				<-done
				mu.Lock()
				w.Flush()
				mu.Unlock()
				return exitOK
			}
			np, err := load()
			if err != nil {
				logf("policy reload failed; the running policy (generation %d) stays in force:\n%v", engine.Generation(), err)
				continue
			}
			if err := engine.Swap(np); err != nil {
				logf("policy reload failed; the running policy (generation %d) stays in force: %v", engine.Generation(), err)
				continue
			}
			p = np
			logf("policy reloaded: generation %d, %s", engine.Generation(), p)
		case <-tick.C:
			mu.Lock()
			w.Flush()
			mu.Unlock()
			if s, err := engine.Stats(); err == nil && s.RingbufDrops > reported.RingbufDrops {
				logf("%d events dropped: the event ring was full (%d in all)", s.RingbufDrops-reported.RingbufDrops, s.RingbufDrops)
				reported = s
			}
		}
	}
}

// summarize says what is enforced and what is only detected, and why.
func summarize(logf func(string, ...any), e *ebpf.Engine, p *policy.Policy, dryRun bool) {
	logf("policy %s: %s", p.Name(), p)
	switch {
	case !e.LSM().Available:
		logf("blocking is OFF: %s", e.LSM().Reason)
		logf("detection only: exec selectors are evaluated in user space after each container exec (reported, never blocked); fork and file selectors need BPF LSM and are not evaluated")
	case dryRun:
		logf("dry run: blocking responses are reported as blocked=false and never block")
	case p.Blocks(policy.Process) || p.Blocks(policy.File):
		logf("blocking is ON in containers for responses with block (process: %t, file: %t)", p.Blocks(policy.Process), p.Blocks(policy.File))
	default:
		logf("blocking is available; this policy has no blocking responses")
	}
	if s := e.Sessions(); !s.Available {
		logf("%s", s.Reason)
	}
}

// eventJSON is the NDJSON form of a kernel event. These are the engine's own
// records; ECS documents for Elasticsearch come from the output package.
func eventJSON(e *ebpf.Engine, ev *ebpf.Event) map[string]any {
	p := ev.Process
	doc := map[string]any{
		"kind":    ev.Kind.String(),
		"time_ns": ev.Time.Nanoseconds(),
		"process": map[string]any{
			"pid": p.PID, "tid": p.TID, "ppid": p.PPID, "pgid": p.PGID, "sid": p.SID,
			"pid_ns": p.PIDNamespace, "mnt_ns": p.MountNamespace, "cgroup_id": p.CgroupID,
			"uid": p.UID, "euid": p.EUID, "gid": p.GID, "egid": p.EGID,
			"tty":      map[string]uint32{"major": p.TTYMajor, "minor": p.TTYMinor},
			"start_ns": p.Start.Nanoseconds(), "comm": p.Comm,
		},
	}
	switch ev.Kind {
	case ebpf.EventExec:
		doc["filename"], doc["executable"], doc["cwd"], doc["args"] = ev.Filename, ev.Executable, ev.Cwd, ev.Args
		doc["args_truncated"], doc["path_truncated"] = ev.ArgsTruncated, ev.PathTruncated
		if ev.Layer != ebpf.LayerNone {
			doc["executable_layer"], doc["drift"] = ev.Layer.String(), ev.Layer.Drift()
		}
	case ebpf.EventExit:
		doc["exit_code"] = ev.ExitCode
	case ebpf.EventFile:
		names, err := e.SelectorNames(ev)
		if err != nil {
			names = []string{"unknown: " + err.Error()}
		}
		doc["operation"], doc["hook_point"], doc["generation"], doc["matched_selectors"] = ev.Op.String(), ev.Hook.String(), ev.Generation, names
		doc["actions"], doc["blocked"], doc["path"], doc["on_volume"], doc["on_file_mount"] = strings.Split(ev.Actions.String(), ", "), ev.Blocked, ev.Path, ev.OnVolume, ev.OnFileMount
	case ebpf.EventDecision:
		names, err := e.SelectorNames(ev)
		if err != nil {
			names = []string{"unknown: " + err.Error()}
		}
		doc["operation"], doc["generation"], doc["matched_selectors"] = ev.Op.String(), ev.Generation, names
		doc["actions"], doc["blocked"], doc["memfd"], doc["interactive"], doc["path"] = strings.Split(ev.Actions.String(), ", "), ev.Blocked, ev.Memfd, ev.Interactive, ev.Path
		if ev.Layer != ebpf.LayerNone {
			doc["executable_layer"], doc["drift"] = ev.Layer.String(), ev.Layer.Drift()
		}
	}
	return doc
}
