package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/elastic/elastic-agent-client/v7/pkg/client"
	"github.com/elastic/elastic-agent-libs/logp"

	"github.com/cloud-defend/cloud-defend/daemon"
	"github.com/cloud-defend/cloud-defend/internal/version"
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
	// Logs go unbuffered to stderr, the agent's pipe, which fsync rejects
	// (EINVAL); and with logging the thing failing, there is nowhere left
	// to report it. Sync is only for a logger that buffers.
	defer func() { _ = logp.Sync() }()
	log.Infof("%s starting under Elastic Agent as component %s, data in %s", version.String(), os.Getenv("AGENT_COMPONENT_ID"), settings.dataPath)

	agent, _, err := client.NewV2FromReader(stdin, client.VersionInfo{Name: "cloud-defend", BuildHash: version.Commit})
	if err != nil {
		log.Errorf("read the agent's StartUpInfo from stdin: %v", err)
		return exitUsage
	}
	ctl := &daemon.Agent{Client: agent, Log: log}
	if ctl.Output, err = daemon.NewElasticsearch(settings.dataPath, log); err != nil {
		log.Errorf("Startup error: %v", err)
		ctl.Output, ctl.OutputError = nil, err
	}
	cfg := daemon.Config{Log: log, Control: ctl, Throttle: throttle.Config{Rate: throttle.DefaultRate, Burst: throttle.DefaultBurst}}
	if ctl.Output != nil {
		cfg.Sink = ctl.Output
	}
	cfg.Engine.PinPath, cfg.Engine.StateDir = pinDefaults()
	cfg.AgentID = "unknown"
	if info := agent.AgentInfo(); info != nil && info.ID != "" {
		cfg.AgentID = info.ID
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := daemon.Run(ctx, cfg); err != nil {
		log.Errorf("%v", err)
		return exitInvalid
	}
	log.Info("stopped")
	return exitOK
}
