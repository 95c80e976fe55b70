package main

import (
	"context"

	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/daemon"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/output/console"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// runDaemon is standalone mode: enforce a policy file (or the embedded default)
// and write ECS documents to the output until SIGTERM or SIGINT; SIGHUP reloads
// the policy file with the same validation as at start.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFile := fs.String("policy", "", "policy file (default: the embedded default policy)")
	dryRun := fs.Bool("dry-run", false, "evaluate and report, never block")
	outFlag := fs.String("output", "", "where ECS documents go: console (a line per event, the default on a terminal), stdout (NDJSON, the default otherwise), file=PATH (NDJSON, rotated), or elasticsearch")
	var es esFlags
	fs.Var(&es.urls, "es-url", "Elasticsearch URL (repeatable), with --output elasticsearch")
	fs.StringVar(&es.apiKey, "es-api-key", os.Getenv("ES_API_KEY"), "Elasticsearch API key, id:key or base64 (default $ES_API_KEY)")
	fs.StringVar(&es.username, "es-username", os.Getenv("ES_USERNAME"), "Elasticsearch user for basic auth (default $ES_USERNAME)")
	fs.StringVar(&es.password, "es-password", os.Getenv("ES_PASSWORD"), "its password (default $ES_PASSWORD)")
	fs.Var(&es.cas, "es-ca", "PEM file of a CA to trust for Elasticsearch (repeatable)")
	namespace := fs.String("namespace", "default", "data stream namespace of the documents")
	dataPath := fs.String("data-path", "/var/lib/cloud-defend", "where the output spools events Elasticsearch has not taken yet")
	var file fileFlags
	fs.IntVar(&file.rotateKB, "file-rotate-every-kb", 10240, "with --output file=PATH: rotate the file at this size")
	fs.IntVar(&file.keep, "file-number-of-files", 7, "with --output file=PATH: files kept, the current one included")
	showNode := fs.Bool("console-all", false, "with --output console: also show the node's own processes and the periodic documents")
	heartbeat := fs.Duration("heartbeat-period", 30*time.Minute, "how often a heartbeat document is written")
	metrics := fs.Duration("metrics-period", 24*time.Hour, "how often a metrics document is written")
	pinPath, stateDir := pinFlags(fs)
	alertRate := fs.Float64("alert-rate", throttle.DefaultRate, "alerts per second per container and selector set past the burst; the rest are counted in summary alerts (0: no throttle)")
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
	log := stderrLogger(stderr)

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

	sink, code := openSink(*outFlag, es, file, *showNode, *dataPath, stdout, stderr, log)
	if sink == nil {
		return code
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctl := &daemon.Standalone{Policy: p, Reload: load, DryRun: *dryRun, Signals: sigs, Log: log,
		Input: daemon.Input{Meta: ecs.Meta{Namespace: *namespace}, HeartbeatPeriod: *heartbeat, Metrics: *metrics,
			Throttle: throttle.Config{Rate: *alertRate, Burst: *alertBurst}}}
	if *alertRate == 0 {
		log.Infof("alert throttle off: every alert is written")
	} else {
		log.Infof("alert throttle: %d at once, then %g a second, per container and selector set; the rest are counted in summary alerts", *alertBurst, *alertRate)
	}
	err = daemon.Run(context.Background(), daemon.Config{
		Engine: ebpf.Options{DryRun: *dryRun, PinPath: *pinPath, StateDir: *stateDir},
		Sink:   sink, Log: log, Throttle: ctl.Input.Throttle, Control: ctl,
	})
	if err != nil {
		log.Errorf("%v", err)
		return exitInvalid
	}
	return exitOK
}

// openSink opens the --output sink, or says why not and returns the exit code.
func openSink(out string, es esFlags, file fileFlags, showNode bool, dataPath string, stdout, stderr io.Writer, log stdLogger) (daemon.Sink, int) {
	if out != "elasticsearch" && len(es.urls) > 0 {
		fmt.Fprintln(stderr, "cloud-defend run: --es-url is only for --output elasticsearch")
		return nil, exitUsage
	}
	if out == "" {
		out = "stdout"
		if f, ok := stdout.(*os.File); ok && console.IsTerminal(f) {
			out = "console"
		}
	}
	switch path, isFile := strings.CutPrefix(out, "file="); {
	case out == "elasticsearch":
		if len(es.urls) == 0 {
			fmt.Fprintln(stderr, "cloud-defend run: --output elasticsearch needs --es-url")
			return nil, exitUsage
		}
		s, err := daemon.NewElasticsearch(dataPath, log)
		if err == nil {
			o := component.Output{Type: "elasticsearch", Hosts: es.urls, APIKey: es.apiKey, Username: es.username, Password: es.password}
			o.SSL.CertificateAuthorities = es.cas
			err = s.Configure(o)
		}
		if err != nil {
			log.Errorf("startup error: elasticsearch output: %v", err)
			return nil, exitInvalid
		}
		return s, exitOK
	case out == "stdout":
		return daemon.NewWriterSink(stdout, "stdout", log), exitOK
	case out == "console":
		color := false
		if f, ok := stdout.(*os.File); ok {
			color = console.IsTerminal(f)
		}
		return daemon.NewConsoleSink(stdout, console.Options{Color: color, ShowNode: showNode}, log), exitOK
	case isFile && path != "":
		if file.rotateKB < 1 {
			fmt.Fprintln(stderr, "cloud-defend run: --file-rotate-every-kb must be at least 1")
			return nil, exitUsage
		}
		s, err := daemon.NewFileSink(path, file.rotateKB, file.keep, log)
		if err != nil {
			fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
			return nil, exitUsage
		}
		return s, exitOK
	}
	fmt.Fprintf(stderr, "cloud-defend run: --output must be console, stdout, file=PATH or elasticsearch, not %q\n", out)
	return nil, exitUsage
}

// fileFlags are the file output's rotation flags.
type fileFlags struct{ rotateKB, keep int }

// esFlags are the Elasticsearch output's flags.
type esFlags struct {
	urls, cas                  listFlag
	apiKey, username, password string
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// stderrLogger logs to w, one time-stamped line a message: what the daemon
// says standalone and while learning live.
func stderrLogger(w io.Writer) stdLogger {
	return func(format string, a ...any) {
		fmt.Fprintf(w, "%s cloud-defend: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
	}
}

// stdLogger adapts a printf logger to output.Logger.
type stdLogger func(string, ...any)

func (l stdLogger) Infof(f string, a ...any)  { l(f, a...) }
func (l stdLogger) Warnf(f string, a ...any)  { l("warning: "+f, a...) }
func (l stdLogger) Errorf(f string, a ...any) { l("error: "+f, a...) }
