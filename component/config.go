package component

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/proto"
	"github.com/elastic/go-ucfg"
	"gopkg.in/yaml.v3"

	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// Output is the Elasticsearch output unit's settings, as the agent passes them
// (the output section of the agent policy).
type Output struct {
	Type     string   `config:"type"`
	Hosts    []string `config:"hosts"`
	APIKey   string   `config:"api_key"`
	Username string   `config:"username"`
	Password string   `config:"password"`
	SSL      struct {
		CertificateAuthorities []string `config:"certificate_authorities"`
		VerificationMode       string   `config:"verification_mode"`
	} `config:"ssl"`
}

// ParseOutput reads an output unit's config. Only Elasticsearch is supported, as
// the spec file tells the agent.
func ParseOutput(cfg *proto.UnitExpectedConfig) (Output, error) {
	var out Output
	if cfg == nil || cfg.Source == nil {
		return out, errors.New("the output unit has no configuration")
	}
	c, err := ucfg.NewFrom(cfg.Source.AsMap(), ucfg.PathSep("."))
	if err != nil {
		return out, fmt.Errorf("output configuration: %w", err)
	}
	if err := c.Unpack(&out); err != nil {
		return out, fmt.Errorf("output configuration: %w", err)
	}
	if out.Type == "" {
		out.Type = cfg.Type
	}
	switch {
	case out.Type != "elasticsearch":
		return out, fmt.Errorf("output type %q is not supported: cloud-defend writes to elasticsearch", out.Type)
	case len(out.Hosts) == 0:
		return out, errors.New("the elasticsearch output has no hosts")
	case out.APIKey != "" && out.Username != "":
		return out, errors.New("the elasticsearch output sets both api_key and username: choose one")
	case out.Username != "" && out.Password == "":
		return out, errors.New("the elasticsearch output sets username without password")
	}
	switch out.SSL.VerificationMode {
	case "", "full", "strict", "certificate", "none":
	default:
		return out, fmt.Errorf("ssl.verification_mode %q: allowed are full, strict, certificate and none", out.SSL.VerificationMode)
	}
	return out, nil
}

// Dataset names of the input's streams (data_stream.dataset).
const (
	DatasetAlerts    = "cloud_defend.alerts"
	DatasetFile      = "cloud_defend.file"
	DatasetProcess   = "cloud_defend.process"
	DatasetHeartbeat = "cloud_defend.heartbeat"
	DatasetMetrics   = "cloud_defend.metrics"
)

// Default periods of the metrics streams (the integration package's defaults).
const (
	DefaultHeartbeatPeriod = 30 * time.Minute
	DefaultMetricsPeriod   = 24 * time.Hour
)

// Input is what a cloud_defend/control input unit asks for.
type Input struct {
	UnitID          string
	Revision        uint64
	PackagePolicyID string
	Namespace       string // data_stream.namespace, "default" when unset
	Policy          *policy.Policy
	PolicyYAML      []byte // the policy as parsed, for diagnostics
	// Hash is the start of the policy's SHA-256 (of PolicyYAML, a canonical
	// rendering: keys sorted): it names the policy where the revision cannot,
	// as in standalone agent mode, where every revision is 0.
	Hash            string
	Warnings        []policy.Diagnostic
	HeartbeatPeriod time.Duration
	MetricsPeriod   time.Duration
	// AlertRate and AlertBurst are the alert throttle (alert_throttle.rate
	// and .burst on the alerts stream; rate 0 turns it off).
	AlertRate  float64
	AlertBurst int
}

// streamKeys are a stream's own settings, not part of the policy at its root.
var streamKeys = []string{"id", "data_stream", "type", "name", "enabled", "period", "condition", "processors", "index", "alert_throttle"}

// ParseInput reads an input unit's config: the policy from the alerts stream (at
// the stream's root as Fleet places it, or under security-policy as
// elastic-agent.yml does), and the metadata every event carries. A policy that
// does not validate is an error holding its diagnostics (policy.Errors).
func ParseInput(unitID string, cfg *proto.UnitExpectedConfig) (Input, error) {
	in := Input{UnitID: unitID, Namespace: "default", HeartbeatPeriod: DefaultHeartbeatPeriod, MetricsPeriod: DefaultMetricsPeriod,
		AlertRate: throttle.DefaultRate, AlertBurst: throttle.DefaultBurst}
	if cfg == nil {
		return in, errors.New("the input unit has no configuration")
	}
	in.Revision = cfg.Revision
	if ds := cfg.GetDataStream(); ds != nil && ds.Namespace != "" {
		in.Namespace = ds.Namespace
	}
	src := cfg.GetSource().AsMap()
	if id, ok := src["package_policy_id"].(string); ok {
		in.PackagePolicyID = id
	}
	var alerts map[string]any
	for _, s := range cfg.Streams {
		ds := s.GetDataStream().GetDataset()
		if ds == "" {
			if m, ok := s.GetSource().AsMap()["data_stream"].(map[string]any); ok {
				ds, _ = m["dataset"].(string)
			}
		}
		switch ds {
		case DatasetAlerts:
			alerts = s.GetSource().AsMap()
		case DatasetHeartbeat, DatasetMetrics:
			period, err := streamPeriod(s.GetSource().AsMap())
			if err != nil {
				return in, fmt.Errorf("stream %s: %w", ds, err)
			}
			if period > 0 && ds == DatasetHeartbeat {
				in.HeartbeatPeriod = period
			} else if period > 0 {
				in.MetricsPeriod = period
			}
		}
	}
	if alerts == nil {
		return in, fmt.Errorf("input %s has no %s stream: the policy lives there (Fleet puts it at the stream's root, elastic-agent.yml under security-policy)", unitID, DatasetAlerts)
	}
	if err := alertThrottle(alerts["alert_throttle"], &in); err != nil {
		return in, fmt.Errorf("stream %s: %w", DatasetAlerts, err)
	}
	var doc map[string]any
	if sp, ok := alerts["security-policy"]; ok {
		if _, ok := sp.(map[string]any); !ok {
			return in, fmt.Errorf("stream %s: security-policy must be a mapping, not %T", DatasetAlerts, sp)
		}
		// Kept nested, as elastic-agent.yml has it, so diagnostics' paths
		// start where the user's do (security-policy.file.…); Parse unwraps.
		doc = map[string]any{"security-policy": sp}
	} else {
		doc = maps.Clone(alerts)
		for _, k := range streamKeys {
			delete(doc, k)
		}
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return in, fmt.Errorf("stream %s: %w", DatasetAlerts, err)
	}
	in.PolicyYAML = data
	sum := sha256.Sum256(data)
	in.Hash = hex.EncodeToString(sum[:4])
	// The policy is a rendering of the unit's config, not what the user typed:
	// diagnostics name paths, not lines of ours.
	p, warnings, err := policy.ParseConfig("input "+unitID, data)
	in.Warnings = warnings
	if err != nil {
		return in, err
	}
	in.Policy = p
	return in, nil
}

// alertThrottle reads the alerts stream's alert_throttle: {rate, burst}.
func alertThrottle(v any, in *Input) error {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("alert_throttle must be a mapping with rate and burst, not %T", v)
	}
	for k, x := range m {
		n, ok := x.(float64) // structpb numbers are float64
		switch {
		case !ok:
			return fmt.Errorf("alert_throttle.%s must be a number, not %T", k, x)
		case k == "rate" && n >= 0:
			in.AlertRate = n
		case k == "burst" && n >= 1 && n == float64(int(n)):
			in.AlertBurst = int(n)
		case k == "rate" || k == "burst":
			return fmt.Errorf("alert_throttle.%s %v: rate is alerts a second (0 turns the throttle off), burst a whole number from 1", k, x)
		default:
			return fmt.Errorf("alert_throttle.%s: unknown key (rate, burst)", k)
		}
	}
	return nil
}

func streamPeriod(src map[string]any) (time.Duration, error) {
	v, ok := src["period"]
	if !ok {
		return 0, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("period must be a duration such as 30m, not %v", v)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("period %q: want a positive duration such as 30m or 24h", s)
	}
	return d, nil
}

// Name names the policy as the agent's user can tell it: Fleet's revision, or
// where there is none (standalone, revision 0) its hash.
func (in *Input) Name() string {
	switch {
	case in.Revision > 0:
		return fmt.Sprintf("revision %d", in.Revision)
	case in.Hash != "":
		return "sha256:" + in.Hash
	}
	return ""
}

// details are what Name leaves out: the hash when Name is the revision, and
// when the policy was applied (zero: not applied).
func (in *Input) details(applied time.Time) string {
	var d []string
	if in.Revision > 0 && in.Hash != "" {
		d = append(d, "sha256:"+in.Hash)
	}
	if !applied.IsZero() {
		d = append(d, "applied "+applied.UTC().Format(time.RFC3339))
	}
	if len(d) == 0 {
		return ""
	}
	return " (" + strings.Join(d, ", ") + ")"
}

// inUnit renders a diagnostic inside the unit's message or log line, which
// already names the unit.
func inUnit(d policy.Diagnostic) string {
	d.File = ""
	return d.String()
}

// policyErrors formats validation errors for a unit's message: every diagnostic,
// one per line, so Fleet shows what to fix.
func policyErrors(err error) string {
	var errs policy.Errors
	if errors.As(err, &errs) {
		lines := make([]string, 0, len(errs))
		for _, d := range errs {
			lines = append(lines, inUnit(d))
		}
		return strings.Join(slices.Compact(lines), "\n")
	}
	return err.Error()
}
