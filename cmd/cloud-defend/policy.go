package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cloud-defend/cloud-defend/policy"
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
		_, warnings, err, ioErr := load(name, stdin)
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
	for _, t := range []policy.Type{policy.Process, policy.File} {
		sels := p.Selectors(t)
		if len(sels) == 0 {
			continue
		}
		blocks := "detects only"
		if p.Blocks(t) {
			blocks = "can block"
		}
		fmt.Fprintf(w, "\n%s: %d selectors, %d responses, %s\n", t, len(sels), len(p.Responses(t)), blocks)
		for _, s := range sels {
			fmt.Fprintf(w, "  selector %s: %s\n", s.Name, s.Conditions())
		}
		for _, r := range p.Responses(t) {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
}
