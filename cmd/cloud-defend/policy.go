package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/daemon"
	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/rollout"
)

func runPolicy(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "validate":
		return policyValidate(args[1:], stdin, stdout, stderr)
	case "explain":
		return policyExplain(args[1:], stdin, stdout, stderr)
	case "test":
		return policyTest(args[1:], stdin, stdout, stderr)
	case "learn":
		return policyLearn(args[1:], stdin, stdout, stderr)
	case "default":
		if len(args) > 1 {
			fmt.Fprintln(stderr, "cloud-defend policy default: takes no arguments")
			return exitUsage
		}
		stdout.Write(policy.DefaultYAML)
		return exitOK
	}
	fmt.Fprintf(stderr, "cloud-defend policy: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// load reads and parses one policy; "-" is stdin. ioErr is set when the file could
// not be read, as opposed to being an invalid policy.
func load(name string, stdin io.Reader) (p *policy.Policy, warnings []policy.Diagnostic, err error, ioErr bool) {
	var data []byte
	if name == "-" {
		data, err = io.ReadAll(stdin)
		name = "<stdin>"
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, nil, err, true
	}
	p, warnings, err = policy.Parse(name, data)
	return p, warnings, err, false
}

// fileReport is one file's result in --format json.
type fileReport struct {
	File        string              `json:"file"`
	Valid       bool                `json:"valid"`
	ReadError   string              `json:"read_error,omitempty"`
	Diagnostics []policy.Diagnostic `json:"diagnostics"`
}

func policyValidate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend policy validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "text", "output format: text or json")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "cloud-defend policy validate: --format must be text or json, not %q\n", *format)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: cloud-defend policy validate [--format text|json] FILE... (- reads stdin)")
		return exitUsage
	}
	code := exitOK
	var reports []fileReport
	for _, name := range fs.Args() {
		p, warnings, err, ioErr := load(name, stdin)
		rep := fileReport{File: name, Valid: err == nil, Diagnostics: []policy.Diagnostic{}}
		var errs policy.Errors
		switch {
		case ioErr:
			rep.ReadError = err.Error()
			code = max(code, exitUsage)
			if *format == "text" {
				fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
			}
		case errors.As(err, &errs):
			code = max(code, exitInvalid)
			rep.Diagnostics = append(rep.Diagnostics, errs...)
		}
		rep.Diagnostics = append(rep.Diagnostics, warnings...)
		if p != nil {
			// What Kibana's policy editor does not know (the network: section):
			// worth saying before the policy is pasted there, not when the
			// agent receives it.
			rep.Diagnostics = append(rep.Diagnostics, p.EditorWarnings()...)
		}
		reports = append(reports, rep)
		if *format == "text" {
			for _, d := range rep.Diagnostics {
				fmt.Fprintln(stderr, d)
			}
			if rep.Valid {
				fmt.Fprintf(stdout, "%s: valid\n", name)
			}
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
	}
	return code
}

func policyExplain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	useDefault := fs.Bool("default", false, "explain the embedded default policy")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var p *policy.Policy
	var warnings []policy.Diagnostic
	switch {
	case *useDefault && fs.NArg() == 0:
		p = policy.Default()
		warnings = p.Warnings()
	case !*useDefault && fs.NArg() == 1:
		var err error
		var ioErr bool
		p, warnings, err, ioErr = load(fs.Arg(0), stdin)
		if err != nil {
			if ioErr {
				fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
				return exitUsage
			}
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
	default:
		fmt.Fprintln(stderr, "usage: cloud-defend policy explain [--default | FILE]")
		return exitUsage
	}
	for _, d := range warnings {
		fmt.Fprintln(stderr, d)
	}
	explain(stdout, p)
	return exitOK
}

// explain prints the rules a policy enforces, one response per line, in the
// evaluator's terms.
func explain(w io.Writer, p *policy.Policy) {
	fmt.Fprintf(w, "policy %s", p.Name())
	if v := p.Version(); v != "" {
		fmt.Fprintf(w, " (version %s)", v)
	}
	fmt.Fprintln(w)
	for _, t := range []policy.Type{policy.Process, policy.File, policy.Network} {
		sels := p.Selectors(t)
		if len(sels) == 0 {
			continue
		}
		blocks := "detects only"
		if p.Blocks(t) {
			blocks = "can block"
		}
		fmt.Fprintf(w, "\n%s: %d selectors, %d responses, %s\n", t, len(sels), len(p.Responses(t)), blocks)
		if t == policy.Network {
			fmt.Fprintln(w, "  (a cloud-defend extension: connect is outgoing, accept incoming TCP, bind a local address; the source of an accept is the peer)")
		}
		for _, s := range sels {
			fmt.Fprintf(w, "  selector %s: %s\n", s.Name, s.Conditions())
		}
		for _, r := range p.Responses(t) {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
}

// readEvents reads recordings into one reader; "-" is stdin. Unusable lines
// are printed as FILE:LINE: why.
func readEvents(files []string, stdin io.Reader, stderr io.Writer) (*rollout.Reader, bool) {
	var rd rollout.Reader
	for _, name := range files {
		var err error
		if name == "-" {
			err = rd.Read("<stdin>", stdin)
		} else if f, oerr := os.Open(name); oerr != nil {
			err = oerr
		} else {
			err = rd.Read(name, f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
			return nil, false
		}
	}
	for _, p := range rd.Problems {
		fmt.Fprintln(stderr, p)
	}
	return &rd, true
}

// splitPositional lets the command's first argument come before its flags
// (policy test POLICY --events FILE), as the usage line writes it.
func splitPositional(args []string) (first string, rest []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

const testUsage = "usage: cloud-defend policy test POLICY --events FILE... [--show blocked] [--format text|json] [--skip-invalid]"

// policyTest replays recordings through a policy. Exit 0: nothing would be
// blocked; 1: something would; 2: bad arguments, unreadable or invalid
// policy, or unusable recording lines (unless --skip-invalid).
func policyTest(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var events listFlag
	fs.Var(&events, "events", "a recording: ECS NDJSON, Elasticsearch hits or search response, or the engine's NDJSON (repeatable; - reads stdin)")
	show := fs.String("show", "", "blocked: also print the documents that would be blocked")
	format := fs.String("format", "text", "output format: text or json")
	skip := fs.Bool("skip-invalid", false, "answer even when some recording lines cannot be used (they are still listed)")
	name, rest := splitPositional(args)
	if err := fs.Parse(rest); err != nil {
		return exitUsage
	}
	pos := fs.Args()
	if name == "" && len(pos) > 0 {
		name, pos = pos[0], pos[1:]
	}
	files := append(append([]string(nil), events...), pos...)
	if name == "" || len(files) == 0 || (*show != "" && *show != "blocked") || (*format != "text" && *format != "json") {
		fmt.Fprintln(stderr, testUsage)
		return exitUsage
	}
	p, warnings, err, _ := load(name, stdin)
	for _, w := range warnings {
		fmt.Fprintln(stderr, w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
		return exitUsage
	}
	rd, ok := readEvents(files, stdin, stderr)
	if !ok {
		return exitUsage
	}
	rep := rollout.Replay(p, rd)
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
	} else {
		rep.WriteText(stdout, *show == "blocked")
	}
	if len(rd.Problems) > 0 && !*skip {
		fmt.Fprintf(stderr, "cloud-defend: %d recording lines could not be used (listed above); the answer may be incomplete (--skip-invalid answers anyway)\n", len(rd.Problems))
		return exitUsage
	}
	if rep.WouldBlock() {
		return exitInvalid
	}
	return exitOK
}

const learnUsage = "usage: cloud-defend policy learn (--events FILE... | --duration D [--record FILE]) [--by image|pod-labels=KEY] [--block] [--max-values N] [--out FILE]"

// policyLearn writes an allowlist policy learned from recordings.
func policyLearn(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend policy learn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var events listFlag
	fs.Var(&events, "events", "a recording, as for policy test (repeatable)")
	by := fs.String("by", "image", "group workloads by container image, or by pod-labels=KEY (with the pod's namespace)")
	block := fs.Bool("block", false, "block what is not allowed, not only alert on it")
	maxValues := fs.Int("max-values", rollout.DefaultMaxValues, "widen a selector's paths past this many")
	out := fs.String("out", "", "write the policy here instead of stdout")
	skip := fs.Bool("skip-invalid", false, "learn even when some recording lines cannot be used (they are still listed)")
	duration := fs.Duration("duration", 0, "learn live instead: record this node's containers for this long (as root: it loads BPF programs, never blocks, pins nothing); Ctrl-C ends it early")
	record := fs.String("record", "", "with --duration: keep the recording in this file (ECS NDJSON, for policy test)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	files := append(events, fs.Args()...)
	if *duration < 0 || (*duration > 0) == (len(files) > 0) || (*record != "" && *duration == 0) {
		fmt.Fprintln(stderr, "cloud-defend policy learn: give recordings (--events) or --duration for a live recording, not both; --record only with --duration")
		fmt.Fprintln(stderr, learnUsage)
		return exitUsage
	}
	if *duration > 0 {
		path, code := recordLive(*duration, *record, stderr)
		if path == "" {
			return code
		}
		if *record == "" {
			defer os.Remove(path)
		}
		files = []string{path}
	}
	opts := rollout.LearnOptions{Block: *block, MaxValues: *maxValues, Source: strings.Join(files, ", ")}
	if key, ok := strings.CutPrefix(*by, "pod-labels="); ok {
		if key == "" || strings.Contains(key, ",") {
			// A selector's kubernetesPodLabel values are alternatives (OR):
			// one selector cannot require two labels.
			fmt.Fprintln(stderr, "cloud-defend policy learn: --by pod-labels takes one label key: a selector's kubernetesPodLabel values are alternatives, so one selector cannot require two labels (the pod's namespace is always part of the group)")
			return exitUsage
		}
		opts.PodLabel = key
	} else if *by != "image" {
		fmt.Fprintf(stderr, "cloud-defend policy learn: --by must be image or pod-labels=KEY, not %q\n", *by)
		return exitUsage
	}
	if len(files) == 0 || *maxValues < 1 {
		fmt.Fprintln(stderr, learnUsage)
		return exitUsage
	}
	rd, ok := readEvents(files, stdin, stderr)
	if !ok {
		return exitUsage
	}
	if len(rd.Problems) > 0 && !*skip {
		fmt.Fprintf(stderr, "cloud-defend: %d recording lines could not be used (listed above); --skip-invalid learns from the rest\n", len(rd.Problems))
		return exitUsage
	}
	l, err := rollout.Learn(rd, opts)
	if err != nil {
		fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
		return exitInvalid
	}
	for _, w := range l.Widened {
		fmt.Fprintf(stderr, "widened %s in %s: replaces %d recorded values (%s)\n", w.Pattern, w.Selector, len(w.Replaced), w.Why)
	}
	for _, w := range l.Warnings {
		fmt.Fprintln(stderr, w)
	}
	if *out == "" {
		stdout.Write(l.YAML)
		return exitOK
	}
	if err := os.WriteFile(*out, l.YAML, 0o644); err != nil {
		fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s: %d groups learned from %d operations\n", *out, l.Groups, len(rd.Records))
	return exitOK
}

// recordLive runs the daemon for d on the recording policy, in dry run and
// without pinning (a running daemon's pinned enforcement is left alone), and
// returns the file its documents went to.
func recordLive(d time.Duration, keep string, stderr io.Writer) (string, int) {
	var f *os.File
	var err error
	if keep != "" {
		f, err = os.OpenFile(keep, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	} else {
		f, err = os.CreateTemp("", "cloud-defend-learn-*.ndjson")
	}
	if err != nil {
		fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
		return "", exitUsage
	}
	defer f.Close()
	log := stderrLogger(stderr)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	log.Infof("recording every container's execs, forks and file changes for %v (Ctrl-C ends it early)", d)
	err = daemon.Run(ctx, daemon.Config{
		Engine: ebpf.Options{DryRun: true}, Sink: daemon.NewWriterSink(f, f.Name(), log), Log: log,
		Control: &daemon.Standalone{Policy: rollout.RecordingPolicy(), DryRun: true, Signals: sigs, Log: log,
			Input: daemon.Input{Meta: ecs.Meta{Namespace: "learn"}}},
	})
	if err != nil {
		log.Errorf("%v", err)
		if keep == "" {
			os.Remove(f.Name())
		}
		return "", exitInvalid
	}
	return f.Name(), exitOK
}
