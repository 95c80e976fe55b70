package main

import (
	"context"

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

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/event"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// runDaemon is standalone mode: enforce a policy file (or the embedded default) and
// write the kernel's events as NDJSON until SIGTERM or SIGINT; SIGHUP reloads the
// policy file with the same validation as at start.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFile := fs.String("policy", "", "policy file (default: the embedded default policy)")
	dryRun := fs.Bool("dry-run", false, "evaluate and report, never block")
	output := fs.String("output", "stdout", "where events go: stdout or file=PATH (the engine's own NDJSON records), or elasticsearch (ECS documents)")
	var es esFlags
	fs.Var(&es.urls, "es-url", "Elasticsearch URL (repeatable), with --output elasticsearch")
	fs.StringVar(&es.apiKey, "es-api-key", os.Getenv("ES_API_KEY"), "Elasticsearch API key, id:key or base64 (default $ES_API_KEY)")
	fs.StringVar(&es.username, "es-username", os.Getenv("ES_USERNAME"), "Elasticsearch user for basic auth (default $ES_USERNAME)")
	fs.StringVar(&es.password, "es-password", os.Getenv("ES_PASSWORD"), "its password (default $ES_PASSWORD)")
	fs.Var(&es.cas, "es-ca", "PEM file of a CA to trust for Elasticsearch (repeatable)")
	fs.StringVar(&es.namespace, "namespace", "default", "data stream namespace of the documents")
	dataPath := fs.String("data-path", "/var/lib/cloud-defend", "where the output spools events Elasticsearch has not taken yet")
	heartbeat := fs.Duration("heartbeat-period", 30*time.Minute, "how often a heartbeat document is sent, with --output elasticsearch")
	metrics := fs.Duration("metrics-period", 24*time.Hour, "how often a metrics document is sent, with --output elasticsearch")
	pinPath, stateDir := pinFlags(fs)
	alertRate := fs.Float64("alert-rate", throttle.DefaultRate, "alerts per second per container and selector set past the burst, with --output elasticsearch; the rest are counted in summary alerts (0: no throttle)")
	alertBurst := fs.Int("alert-burst", throttle.DefaultBurst, "alerts at once per container and selector set before --alert-rate applies")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *alertBurst < 1 || *alertRate < 0 {
		if *alertBurst < 1 || *alertRate < 0 {
			fmt.Fprintln(stderr, "cloud-defend run: --alert-burst must be at least 1 and --alert-rate not negative")
		}
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
	toES := *output == "elasticsearch"
	if toES {
		if len(es.urls) == 0 {
			fmt.Fprintln(stderr, "cloud-defend run: --output elasticsearch needs --es-url")
			return exitUsage
		}
	} else if len(es.urls) > 0 {
		fmt.Fprintln(stderr, "cloud-defend run: --es-url is only for --output elasticsearch")
		return exitUsage
	} else if path, ok := strings.CutPrefix(*output, "file="); ok {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		out = f
	} else if *output != "stdout" {
		fmt.Fprintf(stderr, "cloud-defend run: --output must be stdout, file=PATH or elasticsearch, not %q\n", *output)
		return exitUsage
	}

	engine, err := ebpf.Open(ebpf.Options{DryRun: *dryRun, PinPath: *pinPath, StateDir: *stateDir})
	if err != nil {
		logf("startup error: %v", err)
		return exitInvalid
	}
	defer engine.Close()
	for _, line := range describeAdoption(engine, *pinPath, *dryRun) {
		logf("%s", line)
	}
	if err := engine.Swap(p); err != nil {
		logf("startup error: load policy into the kernel: %v", err)
		return exitInvalid
	}
	summarize(logf, engine, p, *dryRun)

	w := bufio.NewWriter(out)
	var mu sync.Mutex // the writer is shared by the event loop and the final flush
	done := make(chan struct{})
	var sink *agentSink
	stopPeriodic := make(chan struct{})
	defer close(stopPeriodic)
	if toES {
		if sink, err = newAgentSink(*dataPath, stdLogger(logf)); err == nil {
			o := component.Output{Type: "elasticsearch", Hosts: es.urls, APIKey: es.apiKey, Username: es.username, Password: es.password}
			o.SSL.CertificateAuthorities = es.cas
			err = sink.Configure(o)
		}
		if err != nil {
			logf("startup error: elasticsearch output: %v", err)
			return exitInvalid
		}
		meta := func() (ecs.Meta, bool) { return ecs.Meta{Namespace: es.namespace}, true }
		pipe := newPipeline(engine, nodeID(), meta, sink.Publish, sink.Flush, stdLogger(logf))
		pipe.throttle = throttle.New(throttle.Config{Rate: *alertRate, Burst: *alertBurst})
		if pipe.throttle == nil {
			logf("alert throttle off: every alert is shipped")
		} else {
			logf("alert throttle: %d at once, then %g a second, per container and selector set; the rest are counted in summary alerts", *alertBurst, *alertRate)
		}
		go func() {
			defer close(done)
			pipe.run()
		}()
		periods := func() (time.Duration, time.Duration) { return *heartbeat, *metrics }
		blocks := func() bool {
			lp := engine.PolicyOf(engine.Generation())
			return engine.Enforcing() && lp != nil && (lp.Blocks(policy.Process) || lp.Blocks(policy.File))
		}
		go pipe.periodic(stopPeriodic, periods, blocks, sink.counters)
	} else {
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
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported ebpf.Stats
	var health component.Status
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
				if sink != nil {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					if err := sink.Close(ctx); err != nil {
						logf("flush events: %v (they stay spooled in %s for the next start)", err, *dataPath)
					}
					cancel()
				}
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
			if sink != nil {
				if st := sink.Status(); st != health {
					if st.Degraded {
						logf("output degraded: %s", st.Message)
					} else {
						logf("output healthy")
					}
					health = st
				}
			}
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
		logf("detection only: exec and fork selectors are evaluated in user space after each container exec and fork (reported, never blocked)")
		if f := e.FileSyscalls(); f.Available {
			msg := "file selectors are evaluated in user space from workloads' file syscalls (openat, creat, unlink, rename, chmod) after they return: reported, never blocked"
			if f.Reason != "" {
				msg += "; " + f.Reason
			}
			logf("%s", msg)
		} else {
			logf("%s", f.Reason)
		}
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
func eventJSON(e *ebpf.Engine, ev *event.Event) map[string]any {
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
	case event.Exec:
		doc["filename"], doc["executable"], doc["cwd"], doc["args"] = ev.Filename, ev.Executable, ev.Cwd, ev.Args
		doc["args_truncated"], doc["path_truncated"] = ev.ArgsTruncated, ev.PathTruncated
		if ev.Layer != event.LayerNone {
			doc["executable_layer"], doc["drift"] = ev.Layer.String(), ev.Layer.Drift()
		}
	case event.Exit:
		doc["exit_code"] = ev.ExitCode
	case event.FileDecision:
		names, err := e.SelectorNames(ev)
		if err != nil {
			names = []string{"unknown: " + err.Error()}
		}
		doc["operation"], doc["hook_point"], doc["generation"], doc["matched_selectors"] = ev.Op.String(), ev.Hook.String(), ev.Generation, names
		doc["actions"], doc["blocked"], doc["path"], doc["on_volume"], doc["on_file_mount"] = strings.Split(ev.Actions.String(), ", "), ev.Blocked, ev.Path, ev.OnVolume, ev.OnFileMount
	case event.ProcessDecision:
		names, err := e.SelectorNames(ev)
		if err != nil {
			names = []string{"unknown: " + err.Error()}
		}
		doc["operation"], doc["generation"], doc["matched_selectors"] = ev.Op.String(), ev.Generation, names
		doc["actions"], doc["blocked"], doc["memfd"], doc["interactive"], doc["path"] = strings.Split(ev.Actions.String(), ", "), ev.Blocked, ev.Memfd, ev.Interactive, ev.Path
		if ev.Layer != event.LayerNone {
			doc["executable_layer"], doc["drift"] = ev.Layer.String(), ev.Layer.Drift()
		}
	}
	return doc
}

// esFlags are the Elasticsearch output's flags.
type esFlags struct {
	urls, cas                             listFlag
	apiKey, username, password, namespace string
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// stdLogger adapts a printf logger to output.Logger.
type stdLogger func(string, ...any)

func (l stdLogger) Infof(f string, a ...any)  { l(f, a...) }
func (l stdLogger) Warnf(f string, a ...any)  { l("warning: "+f, a...) }
func (l stdLogger) Errorf(f string, a ...any) { l("error: "+f, a...) }

// nodeID is agent.id standalone: the machine id, stable across restarts, else
// the hostname.
func nodeID() string {
	if b, err := os.ReadFile("/etc/machine-id"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id
		}
	}
	h, _ := os.Hostname()
	return h
}
