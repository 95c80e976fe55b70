package component

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/client"
	"github.com/elastic/elastic-agent-client/v7/pkg/proto"
	"github.com/elastic/elastic-agent-libs/logp"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/cloud-defend/cloud-defend/internal/agenttest"
	"github.com/cloud-defend/cloud-defend/policy"
)

// enforcer and sink stand in for the kernel engine and the Elasticsearch output:
// the component's seams, whose real parts the binary's end-to-end test drives.
type enforcer struct {
	mu      sync.Mutex
	applied []*policy.Policy
	status  Status
	err     error
}

func (e *enforcer) Apply(p *policy.Policy) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	e.applied = append(e.applied, p)
	return nil
}

func (e *enforcer) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

func (e *enforcer) Diagnostics() any { return map[string]int{"applied": len(e.applied)} }

func (e *enforcer) last() *policy.Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.applied) == 0 {
		return nil
	}
	return e.applied[len(e.applied)-1]
}

func (e *enforcer) set(st Status) {
	e.mu.Lock()
	e.status = st
	e.mu.Unlock()
}

type sink struct {
	mu     sync.Mutex
	out    []Output
	status Status
}

func (s *sink) Configure(o Output) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, o)
	return nil
}

func (s *sink) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *sink) Diagnostics() any { return nil }

const (
	inputID  = "cloud_defend/control-default-cloud_defend-1"
	outputID = "default"
	timeout  = 10 * time.Second
)

const validPolicy = `process:
  selectors:
    - name: shells
      processName: [bash, sh]
      operation: [exec]
  responses:
    - match: [shells]
      actions: [alert]
`

// inputConfig is an input unit as Fleet sends it: the policy at the alerts
// stream's root (or under security-policy, as elastic-agent.yml nests it).
func inputConfig(t *testing.T, revision uint64, policyYAML string, nested bool) *proto.UnitExpectedConfig {
	t.Helper()
	var doc map[string]any
	if err := yamlUnmarshal([]byte(policyYAML), &doc); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]any{"id": "cloud_defend/control-cloud_defend.alerts-1", "data_stream": map[string]any{"dataset": DatasetAlerts, "type": "logs"}}
	if nested {
		alerts["security-policy"] = doc
	} else {
		for k, v := range doc {
			alerts[k] = v
		}
	}
	return agenttest.Config(t, "cloud_defend/control", revision, map[string]any{
		"id": "cloud_defend-1", "type": "cloud_defend/control", "package_policy_id": "pp-1234",
		"data_stream": map[string]any{"namespace": "prod"},
	}, alerts,
		map[string]any{"data_stream": map[string]any{"dataset": DatasetHeartbeat, "type": "metrics"}, "period": "10m"},
		map[string]any{"data_stream": map[string]any{"dataset": DatasetProcess, "type": "logs"}})
}

func outputConfig(t *testing.T) *proto.UnitExpectedConfig {
	return agenttest.Config(t, "elasticsearch", 1, map[string]any{"type": "elasticsearch", "hosts": []any{"https://es:9200"}, "api_key": "id:key"})
}

type harness struct {
	agent *agenttest.Agent
	enf   *enforcer
	sink  *sink
	cmp   *Component
	done  chan error
	input chan Input
}

func start(t *testing.T, startupErr error) *harness {
	t.Helper()
	h := &harness{agent: agenttest.New(t, true), enf: &enforcer{}, sink: &sink{}, done: make(chan error, 1), input: make(chan Input, 10)}
	info, err := h.agent.StartUpInfo()
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := client.NewV2FromReader(bytes.NewReader(info), client.VersionInfo{Name: "cloud-defend-test"})
	if err != nil {
		t.Fatal(err)
	}
	log, err := logp.ConfigureWithCoreLocal(logp.Config{Level: logp.DebugLevel}, zapcore.NewNopCore())
	if err != nil {
		t.Fatal(err)
	}
	h.cmp = New(c, Options{Enforcer: h.enf, Sink: h.sink, StartupError: startupErr, Logger: log,
		OnInput: func(in Input) { h.input <- in }, HealthInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.cmp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func TestPolicyLifecycle(t *testing.T) {
	h := start(t, nil)
	a := h.agent
	a.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, outputConfig(t))
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 1, validPolicy, false))
	a.Wait(t, outputID, proto.State_HEALTHY, "", timeout)
	a.Wait(t, inputID, proto.State_HEALTHY, "policy revision 1 in force", timeout)
	in := <-h.input
	if in.PackagePolicyID != "pp-1234" || in.Revision != 1 || in.Namespace != "prod" || in.HeartbeatPeriod != 10*time.Minute || in.MetricsPeriod != DefaultMetricsPeriod {
		t.Errorf("input %+v", in)
	}
	if p := h.enf.last(); p == nil || len(p.Selectors(policy.Process)) != 1 {
		t.Fatalf("policy not applied: %v", p)
	}
	if o := h.sink.out; len(o) != 1 || o[0].Hosts[0] != "https://es:9200" || o[0].APIKey != "id:key" {
		t.Errorf("output %+v", o)
	}

	// An invalid revision is refused with every error; revision 1 stays enforced.
	bad := strings.Replace(validPolicy, "match: [shells]", "match: [shellz]", 1) + "    - match: [shells]\n      actions: [explode]\n"
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 2, bad, false))
	msg := a.Wait(t, inputID, proto.State_FAILED, "policy revision 2 (sha256:", timeout)
	if !regexp.MustCompile(`^policy revision 2 \(sha256:[0-9a-f]{8}\) refused; revision 1 \(sha256:[0-9a-f]{8}, applied \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\) stays in force:\n`).MatchString(msg) {
		t.Errorf("FAILED message does not say which policy stays in force:\n%s", msg)
	}
	// Each error at its path in the policy, none at a line of our rendering.
	for _, want := range []string{"\nprocess.responses[0].match[0]: unknown selector \"shellz\"", "\nprocess.responses[1].actions[0]: unknown action \"explode\""} {
		if !strings.Contains(msg, want) {
			t.Errorf("FAILED message lacks %q:\n%s", want, msg)
		}
	}
	if _, diags, _ := strings.Cut(msg, "\n"); regexp.MustCompile(`:\d+:|line \d`).MatchString(diags) {
		t.Errorf("FAILED message cites a position of the re-rendered config:\n%s", msg)
	}
	if n := len(h.enf.applied); n != 1 {
		t.Errorf("%d policies applied after an invalid one", n)
	}

	// A later valid revision (nested as elastic-agent.yml does) heals the unit.
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 3, validPolicy, true))
	a.Wait(t, inputID, proto.State_HEALTHY, "policy revision 3 in force", timeout)

	// Degraded parts show on their units, and recover.
	h.enf.set(Status{Degraded: true, Message: "blocking is unavailable: BPF LSM is not enabled"})
	a.Wait(t, inputID, proto.State_DEGRADED, "BPF LSM is not enabled", timeout)
	h.sink.mu.Lock()
	h.sink.status = Status{Degraded: true, Message: "Elasticsearch unreachable"}
	h.sink.mu.Unlock()
	a.Wait(t, outputID, proto.State_DEGRADED, "Elasticsearch unreachable", timeout)
	h.enf.set(Status{})
	a.Wait(t, inputID, proto.State_HEALTHY, "", timeout)

	// Diagnostics through the agent's action channel.
	diags, err := a.PerformDiagnostic(inputID, proto.UnitType_INPUT, proto.ActionRequest_COMPONENT, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, d := range diags {
		found[d.Filename] = string(d.Content)
	}
	if !strings.Contains(found["cloud-defend-policy.yml"], "revision 3") || !strings.Contains(found["cloud-defend-policy.yml"], "shells") {
		t.Errorf("policy diagnostics: %q", found["cloud-defend-policy.yml"])
	}
	if !strings.Contains(found["cloud-defend-state.json"], `"package_policy_id": "pp-1234"`) {
		t.Errorf("state diagnostics: %s", found["cloud-defend-state.json"])
	}

	// Log level changes apply at once.
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_DEBUG, nil)
	deadline := time.Now().Add(timeout)
	for logp.GetLevel() != zapcore.DebugLevel && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if logp.GetLevel() != zapcore.DebugLevel {
		t.Errorf("log level %v after the agent asked for debug", logp.GetLevel())
	}

	// Stop: STOPPING then STOPPED for each unit, then Run returns.
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_STOPPED, proto.UnitLogLevel_INFO, nil)
	a.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_STOPPED, proto.UnitLogLevel_INFO, nil)
	a.Wait(t, inputID, proto.State_STOPPED, "", timeout)
	a.Wait(t, outputID, proto.State_STOPPED, "", timeout)
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(timeout):
		t.Fatal("Run did not return after every unit stopped")
	}
	// The client reports the state current at each check-in, so quick steps
	// (CONFIGURING, STOPPING) may be folded into the next; the order holds.
	states := a.States(inputID)
	if states[len(states)-1] != proto.State_STOPPED || !slices.Contains(states, proto.State_FAILED) || !slices.Contains(states, proto.State_DEGRADED) {
		t.Errorf("input states %v", states)
	}
	t.Logf("input states the agent saw: %v", states)
}

func TestFirstPolicyInvalid(t *testing.T) {
	h := start(t, nil)
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 1, "process:\n  selectors: 3\n", false))
	h.agent.Wait(t, inputID, proto.State_FAILED, "refused; no policy is enforced:\nprocess.selectors: must be a list of selectors\nprocess.responses: required", timeout)
}

// TestStandaloneRevisions: standalone elastic-agent.yml gives every config
// revision 0, so the unit names policies by hash and says when the one in
// force was applied; a diagnostic's path starts at security-policy, where the
// user's file nests the policy.
func TestStandaloneRevisions(t *testing.T) {
	h := start(t, nil)
	a := h.agent
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 0, validPolicy, true))
	ok := a.Wait(t, inputID, proto.State_HEALTHY, "in force", timeout)
	okRe := regexp.MustCompile(`^policy sha256:([0-9a-f]{8}) in force \(applied (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)$`)
	m := okRe.FindStringSubmatch(ok)
	if m == nil {
		t.Fatalf("HEALTHY message %q does not match %s", ok, okRe)
	}
	bad := "file:\n  selectors:\n    - name: a\n      operation: [modifyFile]\n      targetFilePath: [etc]\n  responses:\n    - match: [a]\n      actions: [alert, nope]\n"
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 0, bad, true))
	msg := a.Wait(t, inputID, proto.State_FAILED, "refused", timeout)
	want := "^policy sha256:[0-9a-f]{8} refused; sha256:" + m[1] + ` \(applied ` + m[2] + `\) stays in force:\n` +
		regexp.QuoteMeta(`security-policy.file.selectors[name=a].targetFilePath[0]: "etc" must be an absolute path`) + ".*\n" +
		regexp.QuoteMeta(`security-policy.file.responses[0].actions[1]: unknown action "nope"`)
	if !regexp.MustCompile(want).MatchString(msg) {
		t.Errorf("FAILED message:\n%s\nwant it to match %s", msg, want)
	}
	if strings.Contains(msg, "revision") {
		t.Errorf("FAILED message speaks of revisions, which are all 0 here:\n%s", msg)
	}
	// The same policy again: the same hash, now in force.
	a.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 0, validPolicy, true))
	a.Wait(t, inputID, proto.State_HEALTHY, "policy sha256:"+m[1]+" in force", timeout)
}

func TestMissingAlertsStream(t *testing.T) {
	h := start(t, nil)
	cfg := agenttest.Config(t, "cloud_defend/control", 4, map[string]any{"id": "x"})
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, cfg)
	h.agent.Wait(t, inputID, proto.State_FAILED, "has no cloud_defend.alerts stream", timeout)
}

func TestKernelRefusesPolicy(t *testing.T) {
	h := start(t, nil)
	h.enf.err = errors.New("map update: no space left on device")
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 1, validPolicy, false))
	h.agent.Wait(t, inputID, proto.State_FAILED, "load the policy into the kernel: map update", timeout)
}

func TestStartupError(t *testing.T) {
	h := start(t, errors.New("load the BPF programs: operation not permitted: capability CAP_PERFMON is missing"))
	h.agent.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, outputConfig(t))
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 1, validPolicy, false))
	h.agent.Wait(t, inputID, proto.State_FAILED, "Startup error: load the BPF programs", timeout)
	h.agent.Wait(t, outputID, proto.State_FAILED, "Startup error: load the BPF programs", timeout)
}

func TestSecondInputRefused(t *testing.T) {
	h := start(t, nil)
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 1, validPolicy, false))
	h.agent.Wait(t, inputID, proto.State_HEALTHY, "", timeout)
	h.agent.SetUnit(inputID+"-2", proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputConfig(t, 1, validPolicy, false))
	h.agent.Wait(t, inputID+"-2", proto.State_FAILED, "only one cloud_defend/control input", timeout)
	h.agent.Wait(t, inputID, proto.State_HEALTHY, "", timeout)
}

func TestOutputRefused(t *testing.T) {
	for _, c := range []struct {
		src  map[string]any
		want string
	}{
		{map[string]any{"type": "logstash", "hosts": []any{"ls:5044"}}, `output type "logstash" is not supported`},
		{map[string]any{"type": "elasticsearch"}, "has no hosts"},
		{map[string]any{"type": "elasticsearch", "hosts": []any{"h"}, "api_key": "a:b", "username": "u", "password": "p"}, "both api_key and username"},
		{map[string]any{"type": "elasticsearch", "hosts": []any{"h"}, "ssl": map[string]any{"verification_mode": "maybe"}}, "verification_mode"},
	} {
		_, err := ParseOutput(agenttest.Config(t, "elasticsearch", 1, c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.src, err, c.want)
		}
	}
	h := start(t, nil)
	h.agent.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO,
		agenttest.Config(t, "kafka", 1, map[string]any{"type": "kafka", "hosts": []any{"k:9092"}}))
	h.agent.Wait(t, outputID, proto.State_FAILED, `output type "kafka" is not supported`, timeout)
}

func yamlUnmarshal(data []byte, v any) error { return yaml.Unmarshal(data, v) }

// TestAlertThrottleSetting: alert_throttle on the alerts stream sets the
// throttle, is not taken for a policy key, and bad values are errors.
func TestAlertThrottleSetting(t *testing.T) {
	const pol = "process:\n  selectors:\n    - name: a\n      operation: [exec]\n  responses:\n    - match: [a]\n      actions: [alert]\n"
	withThrottle := func(v any, nested bool) *proto.UnitExpectedConfig {
		cfg := inputConfig(t, 1, pol, nested)
		for _, s := range cfg.Streams {
			if s.GetDataStream().GetDataset() == DatasetAlerts || s.GetSource().AsMap()["id"] == "cloud_defend/control-cloud_defend.alerts-1" {
				m := s.GetSource().AsMap()
				m["alert_throttle"] = v
				src, err := structpb.NewStruct(m)
				if err != nil {
					t.Fatal(err)
				}
				s.Source = src
			}
		}
		return cfg
	}
	in, err := ParseInput("u", inputConfig(t, 1, pol, false))
	if err != nil || in.AlertRate != 5 || in.AlertBurst != 20 {
		t.Errorf("defaults: %v %v %v", in.AlertRate, in.AlertBurst, err)
	}
	for _, nested := range []bool{false, true} {
		in, err := ParseInput("u", withThrottle(map[string]any{"rate": 0.5, "burst": 100}, nested))
		if err != nil || in.AlertRate != 0.5 || in.AlertBurst != 100 || len(in.Warnings) != 0 {
			t.Errorf("nested %t: %v %v %v warnings %v", nested, in.AlertRate, in.AlertBurst, err, in.Warnings)
		}
	}
	for _, bad := range []any{"fast", map[string]any{"rate": -1}, map[string]any{"burst": 0.5}, map[string]any{"burts": 3}} {
		if _, err := ParseInput("u", withThrottle(bad, false)); err == nil || !strings.Contains(err.Error(), "alert_throttle") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}
