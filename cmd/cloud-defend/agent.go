package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/client"
	"github.com/elastic/elastic-agent-libs/logp"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/internal/version"
	"github.com/cloud-defend/cloud-defend/requirements"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// agentSettings are what the agent passes besides StartUpInfo: -E key=value.
type agentSettings struct {
	dataPath string
}

// parseAgentArgs accepts the spec's --agent-managed and any -E key=value (the
// agent passes path.data and may pass others); only path.data is used.
func parseAgentArgs(args []string) (agentSettings, error) {
	s := agentSettings{dataPath: "data"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--agent-managed" || a == "-agent-managed":
		case a == "-E" || a == "--E":
			if i+1 >= len(args) {
				return s, errors.New("-E needs key=value")
			}
			i++
			if err := s.set(args[i]); err != nil {
				return s, err
			}
		case strings.HasPrefix(a, "-E"):
			if err := s.set(strings.TrimPrefix(a, "-E")); err != nil {
				return s, err
			}
		default:
			return s, fmt.Errorf("unexpected argument %q in agent-managed mode", a)
		}
	}
	return s, nil
}

func (s *agentSettings) set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("-E %q: want key=value", kv)
	}
	if k == "path.data" {
		s.dataPath = v
	}
	return nil
}

// runAgent is agent-managed mode: the agent writes StartUpInfo to stdin, then
// drives units over its control protocol. Logs are ECS NDJSON on stderr.
func runAgent(args []string, stdin io.Reader, stderr io.Writer) int {
	settings, err := parseAgentArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "cloud-defend: %v\n", err)
		return exitUsage
	}
	if err := logp.Configure(logp.Config{Beat: "cloud-defend", Level: logp.InfoLevel, ToStderr: true}); err != nil {
		fmt.Fprintf(stderr, "cloud-defend: configure logging: %v\n", err)
		return exitUsage
	}
	log := logp.NewLogger("cloud-defend")
	defer logp.Sync()
	log.Infof("%s starting under Elastic Agent as component %s, data in %s", version.String(), os.Getenv("AGENT_COMPONENT_ID"), settings.dataPath)

	agent, _, err := client.NewV2FromReader(stdin, client.VersionInfo{Name: "cloud-defend", BuildHash: version.Commit})
	if err != nil {
		log.Errorf("read the agent's StartUpInfo from stdin: %v", err)
		return exitUsage
	}

	// A BPF failure is reported on every unit ("Startup error") rather than
	// exiting: the agent would restart us in a loop and Fleet would show nothing.
	var enforcer *engineEnforcer
	var startupErr error
	pinPath, stateDir := pinDefaults()
	engine, err := ebpf.Open(ebpf.Options{PinPath: pinPath, StateDir: stateDir})
	if err != nil {
		// Says which node requirement is missing (capabilities, BTF, kernel).
		startupErr = requirements.Probe(requirements.Options{}).Explain(err)
		log.Errorf("Startup error: %v", startupErr)
	} else {
		defer engine.Close()
		for _, line := range describeAdoption(engine, pinPath, false) {
			log.Info(line)
		}
		enforcer = &engineEnforcer{e: engine}
		if lsm := engine.LSM(); !lsm.Available {
			log.Warnf("blocking is unavailable, detection only: %s", lsm.Reason)
		}
	}

	sink, err := newAgentSink(settings.dataPath, log)
	if err != nil {
		log.Errorf("Startup error: %v", err)
		startupErr = errors.Join(startupErr, err)
	}
	var meta metaBox
	opts := component.Options{StartupError: startupErr, Logger: log, OnInput: meta.set}
	if enforcer != nil {
		opts.Enforcer = enforcer
	}
	if sink != nil {
		opts.Sink = sink
	}
	cmp := component.New(agent, opts)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	var events sync.WaitGroup
	if engine != nil && sink != nil {
		agentID := "unknown"
		if info := agent.AgentInfo(); info != nil && info.ID != "" {
			agentID = info.ID
		}
		pipe := newPipeline(engine, agentID, meta.get, sink.Publish, sink.Flush, log)
		meta.setLimiter(pipe.throttle)
		stop := make(chan struct{})
		defer close(stop)
		events.Add(1)
		go func() {
			defer events.Done()
			pipe.run()
		}()
		go pipe.periodic(stop, meta.periods, func() bool { return enforcer.BlockEnabled() }, sink.counters)
	}

	err = cmp.Run(ctx)
	// Release the BPF links first (no more events), then flush what is queued.
	if engine != nil {
		engine.Close()
	}
	events.Wait()
	if sink != nil {
		flushCtx, done := context.WithTimeout(context.Background(), 20*time.Second)
		if cerr := sink.Close(flushCtx); cerr != nil {
			log.Errorf("flush events on exit: %v", cerr)
		}
		done()
	}
	if err != nil {
		log.Errorf("%v", err)
		return exitInvalid
	}
	log.Info("stopped")
	return exitOK
}

// metaBox holds the input metadata events are stamped with.
type metaBox struct {
	mu      sync.Mutex
	m       ecs.Meta
	ok      bool
	hb, met time.Duration
	// The alert throttle follows the input's alert_throttle.
	limiter *throttle.Limiter
	alerts  throttle.Config
}

func (b *metaBox) set(in component.Input) {
	b.mu.Lock()
	b.m, b.ok = ecs.Meta{Namespace: in.Namespace, PackagePolicyID: in.PackagePolicyID, Revision: in.Revision}, true
	b.hb, b.met = in.HeartbeatPeriod, in.MetricsPeriod
	b.alerts = throttle.Config{Rate: in.AlertRate, Burst: in.AlertBurst}
	if b.limiter != nil {
		b.limiter.SetConfig(b.alerts)
	}
	b.mu.Unlock()
}

// setLimiter gives the pipeline's throttle the input's setting, now and on
// every change.
func (b *metaBox) setLimiter(l *throttle.Limiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limiter = l
	if l != nil && b.ok {
		l.SetConfig(b.alerts)
	}
}

func (b *metaBox) periods() (heartbeat, metrics time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hb, b.met
}

func (b *metaBox) get() (ecs.Meta, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m, b.ok
}

// procRoot is the host's /proc: HOSTFS_PROC_PATH in a container.
func procRoot() string {
	if p := os.Getenv("HOSTFS_PROC_PATH"); p != "" {
		return p
	}
	return "/proc"
}
