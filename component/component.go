// Package component is cloud-defend as an Elastic Agent component: it speaks the
// agent's V2 control protocol through elastic-agent-client, turns unit changes
// into policy swaps and output settings, and reports each unit's health.
//
// Health, per unit:
//   - STARTING until the unit is first configured, CONFIGURING while a config applies.
//   - HEALTHY when its config is in force and everything works.
//   - DEGRADED with the reason when it works partly: blocking unavailable (no BPF
//     LSM), events dropped, Elasticsearch unreachable or rejecting documents.
//   - FAILED when its config cannot be applied. An invalid policy leaves the
//     previous valid one enforced; the unit is FAILED (the config the user asked
//     for was refused) and its message lists every validation error, each at its
//     path in the policy (file.selectors[name=a].targetFilePath), and says which
//     policy is still enforced: by Fleet's revision and hash, or, in standalone
//     mode where every revision is 0, by hash, with when it was applied. A later
//     valid policy returns it to HEALTHY.
//   - A startup error (the BPF programs do not load) fails every unit with
//     "Startup error: …", as upstream did.
//   - Expected STOPPED: STOPPING, then STOPPED; Run returns once every unit stopped.
//
// One policy is enforced per node. A second cloud_defend/control input unit is
// FAILED with a message naming the unit whose policy is in force.
package component

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/client"
	"github.com/elastic/elastic-agent-libs/logp"
	"go.uber.org/zap/zapcore"

	"github.com/cloud-defend/cloud-defend/policy"
)

// Status is a part's health: healthy, or degraded with a reason.
type Status struct {
	Degraded bool
	Message  string
}

// Enforcer enforces one policy at a time (the kernel engine).
type Enforcer interface {
	// Apply replaces the enforced policy atomically; on error the previous one stays.
	Apply(*policy.Policy) error
	// Status says what the enforcer cannot do (no blocking, dropped events).
	Status() Status
	// Diagnostics is a JSON-marshalable summary for the agent's diagnostics bundle.
	Diagnostics() any
}

// Sink receives the output unit's settings and delivers events (Elasticsearch).
type Sink interface {
	Configure(Output) error
	Status() Status
	Diagnostics() any
}

// Options wire a Component.
type Options struct {
	Enforcer Enforcer
	Sink     Sink
	// StartupError, when set, fails every unit: the enforcer could not start.
	StartupError error
	// OnInput is told each input config once it is in force (its policy applied):
	// the event pipeline stamps events with its package policy id, revision and
	// namespace.
	OnInput func(Input)
	Logger  *logp.Logger
	// HealthInterval is how often unit health is re-checked (default 5s).
	HealthInterval time.Duration
}

// Component runs the protocol loop.
type Component struct {
	client client.V2
	opts   Options
	log    *logp.Logger

	mu       sync.Mutex
	units    map[string]*unit
	inForce  *Input // the input whose policy is enforced
	applied  time.Time
	enforcer string // unit id of that input
	stopped  int    // units that reached STOPPED
}

type unit struct {
	u       *client.Unit
	state   client.UnitState
	message string
	// failure is a config error that stands until the next config (FAILED).
	failure string
	// configured: the unit's config is in force; health now comes from its parts.
	configured bool
	stopped    bool
}

// New returns a component for an agent client (client.NewV2FromReader).
func New(c client.V2, opts Options) *Component {
	if opts.Logger == nil {
		opts.Logger = logp.NewLogger("component")
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 5 * time.Second
	}
	cmp := &Component{client: c, opts: opts, log: opts.Logger, units: map[string]*unit{}}
	c.RegisterDiagnosticHook("cloud-defend-policy", "the cloud-defend policy in force", "cloud-defend-policy.yml", "application/yaml", cmp.policyDiagnostics)
	c.RegisterDiagnosticHook("cloud-defend-state", "cloud-defend's units, compiled policy, counters and queues", "cloud-defend-state.json", "application/json", cmp.stateDiagnostics)
	return cmp
}

// Run connects to the agent and handles unit changes until ctx ends or every unit
// has been stopped.
func (c *Component) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	if err := c.client.Start(ctx); err != nil {
		cancel()
		return fmt.Errorf("connect to the agent: %w", err)
	}
	defer func() {
		// Stop waits for the client's goroutines, which may be sending to us.
		cancel()
		stopped := make(chan struct{})
		go func() { c.client.Stop(); close(stopped) }()
		for {
			select {
			case <-stopped:
				return
			case <-c.client.UnitChanges():
			case err := <-c.client.Errors():
				_ = err // drained so the client can stop; nothing is left to report it to
			}
		}
	}()
	tick := time.NewTicker(c.opts.HealthInterval)
	defer tick.Stop()
	var stopGrace <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ch := <-c.client.UnitChanges():
			c.handle(ch)
			if c.allStopped() && stopGrace == nil {
				// The agent removes units once it has seen them STOPPED; leave
				// then, or after a grace period if it never does.
				stopGrace = time.After(stopGracePeriod)
			}
			if c.allRemoved() {
				c.log.Info("every unit stopped and removed")
				return nil
			}
		case <-stopGrace:
			c.log.Info("every unit stopped")
			return nil
		case err := <-c.client.Errors():
			// The client reconnects by itself; a lost agent is its concern (it kills us).
			if err != nil && !errors.Is(err, context.Canceled) {
				c.log.Warnf("agent connection: %v", err)
			}
		case <-tick.C:
			c.refresh()
		}
	}
}

// stopGracePeriod bounds the wait for the agent to remove stopped units, so
// their STOPPED state reaches it before the process exits.
const stopGracePeriod = 5 * time.Second

func (c *Component) allRemoved() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped > 0 && len(c.units) == 0
}

func (c *Component) allStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped == 0 {
		return false
	}
	for _, u := range c.units {
		if !u.stopped {
			return false
		}
	}
	return true
}

func (c *Component) handle(ch client.UnitChanged) {
	id := ch.Unit.ID()
	if ch.Type == client.UnitChangedRemoved {
		c.mu.Lock()
		delete(c.units, id)
		c.mu.Unlock()
		c.log.Infof("unit %s removed", id)
		return
	}
	c.mu.Lock()
	u, ok := c.units[id]
	if !ok {
		u = &unit{u: ch.Unit, state: client.UnitStateStarting}
		c.units[id] = u
	}
	c.mu.Unlock()
	exp := ch.Unit.Expected()
	if ch.Type == client.UnitChangedAdded || ch.Triggers&client.TriggeredLogLevelChange != 0 {
		setLevel(exp.LogLevel)
	}
	if exp.State == client.UnitStateStopped {
		c.stop(u)
		return
	}
	if ch.Type == client.UnitChangedAdded || ch.Triggers&client.TriggeredConfigChange != 0 {
		c.configure(u, exp)
	}
}

func (c *Component) configure(u *unit, exp client.Expected) {
	if c.opts.StartupError != nil {
		c.set(u, client.UnitStateFailed, "Startup error: "+c.opts.StartupError.Error())
		return
	}
	c.set(u, client.UnitStateConfiguring, "applying configuration")
	switch u.u.Type() {
	case client.UnitTypeOutput:
		out, err := ParseOutput(exp.Config)
		if err == nil {
			err = c.opts.Sink.Configure(out)
		}
		c.mu.Lock()
		u.failure = ""
		if err != nil {
			u.failure = "output configuration refused: " + err.Error()
		}
		u.configured = err == nil
		c.mu.Unlock()
	case client.UnitTypeInput:
		c.configureInput(u, exp)
	}
	c.refresh()
}

func (c *Component) configureInput(u *unit, exp client.Expected) {
	id := u.u.ID()
	c.mu.Lock()
	other := c.enforcer
	c.mu.Unlock()
	if other != "" && other != id {
		c.fail(u, fmt.Sprintf("only one cloud_defend/control input is enforced per node; unit %s's policy is in force", other))
		return
	}
	in, err := ParseInput(id, exp.Config)
	for _, w := range in.Warnings {
		c.log.Warnf("unit %s: policy %s: %s", id, in.Name(), inUnit(w))
	}
	if err == nil {
		err = c.opts.Enforcer.Apply(in.Policy)
		if err != nil {
			err = fmt.Errorf("load the policy into the kernel: %w", err)
		}
	}
	if err != nil {
		c.mu.Lock()
		still := "no policy is enforced"
		if c.inForce != nil {
			still = c.inForce.Name() + c.inForce.details(c.applied) + " stays in force"
		}
		c.mu.Unlock()
		refused := "the new policy"
		if name := in.Name(); name != "" {
			refused = "policy " + name + in.details(time.Time{})
		}
		// Logged at error when the unit reports FAILED with this message.
		c.fail(u, fmt.Sprintf("%s refused; %s:\n%s", refused, still, policyErrors(err)))
		return
	}
	c.mu.Lock()
	c.inForce, c.enforcer, c.applied = &in, id, time.Now()
	u.failure, u.configured = "", true
	c.mu.Unlock()
	c.log.Infof("unit %s: policy %s in force: %s", id, in.Name()+in.details(time.Time{}), in.Policy)
	if c.opts.OnInput != nil {
		c.opts.OnInput(in)
	}
}

func (c *Component) fail(u *unit, msg string) {
	c.mu.Lock()
	u.failure = msg
	c.mu.Unlock()
}

func (c *Component) stop(u *unit) {
	c.mu.Lock()
	if u.stopped {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.set(u, client.UnitStateStopping, "stopping")
	c.mu.Lock()
	u.stopped = true
	c.stopped++
	if c.enforcer == u.u.ID() {
		// The policy stays loaded until the process exits: dropping protection
		// before the agent replaces us would leave the node open.
		c.enforcer = ""
	}
	c.mu.Unlock()
	c.set(u, client.UnitStateStopped, "stopped")
}

// refresh recomputes every configured unit's state from its parts.
func (c *Component) refresh() {
	c.mu.Lock()
	units := make([]*unit, 0, len(c.units))
	for _, u := range c.units {
		units = append(units, u)
	}
	c.mu.Unlock()
	for _, u := range units {
		state, msg := c.health(u)
		if state != 0 {
			c.set(u, state, msg)
		}
	}
}

// health is a unit's state now; 0 means leave it as it is.
func (c *Component) health(u *unit) (client.UnitState, string) {
	c.mu.Lock()
	failure, configured, stopped := u.failure, u.configured, u.stopped
	c.mu.Unlock()
	switch {
	case stopped:
		return 0, ""
	case failure != "":
		return client.UnitStateFailed, failure
	case !configured:
		return 0, ""
	}
	var st Status
	switch u.u.Type() {
	case client.UnitTypeInput:
		st = c.opts.Enforcer.Status()
	case client.UnitTypeOutput:
		st = c.opts.Sink.Status()
	}
	if u.u.Type() == client.UnitTypeInput {
		c.mu.Lock()
		msg := "policy " + c.inForce.Name() + " in force" + c.inForce.details(c.applied)
		c.mu.Unlock()
		if st.Degraded {
			return client.UnitStateDegraded, msg + "; " + st.Message
		}
		return client.UnitStateHealthy, msg
	}
	if st.Degraded {
		return client.UnitStateDegraded, st.Message
	}
	return client.UnitStateHealthy, "healthy"
}

func (c *Component) set(u *unit, state client.UnitState, msg string) {
	c.mu.Lock()
	same := u.state == state && u.message == msg
	u.state, u.message = state, msg
	c.mu.Unlock()
	if same {
		return
	}
	if err := u.u.UpdateState(state, msg, nil); err != nil {
		c.log.Warnf("unit %s: report %s: %v", u.u.ID(), state, err)
		return
	}
	// The agent files each line under its log.level: a unit that fails or
	// degrades is logged as the error or warning it is.
	switch state {
	case client.UnitStateFailed:
		c.log.Errorf("unit %s: %s: %s", u.u.ID(), state, msg)
	case client.UnitStateDegraded:
		c.log.Warnf("unit %s: %s: %s", u.u.ID(), state, msg)
	default:
		c.log.Infof("unit %s: %s: %s", u.u.ID(), state, msg)
	}
}

func setLevel(l client.UnitLogLevel) {
	switch l {
	case client.UnitLogLevelError:
		logp.SetLevel(zapcore.ErrorLevel)
	case client.UnitLogLevelWarn:
		logp.SetLevel(zapcore.WarnLevel)
	case client.UnitLogLevelInfo:
		logp.SetLevel(zapcore.InfoLevel)
	case client.UnitLogLevelDebug, client.UnitLogLevelTrace:
		logp.SetLevel(zapcore.DebugLevel)
	}
}

func (c *Component) policyDiagnostics() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inForce == nil {
		return []byte("# no policy is in force\n")
	}
	return fmt.Appendf(nil, "# unit %s, policy revision %d, sha256:%s, applied %s, package policy %s\n%s", c.inForce.UnitID, c.inForce.Revision,
		c.inForce.Hash, c.applied.UTC().Format(time.RFC3339), c.inForce.PackagePolicyID, c.inForce.PolicyYAML)
}

func (c *Component) stateDiagnostics() []byte {
	type unitDiag struct {
		ID, Type, State, Message string
	}
	c.mu.Lock()
	var units []unitDiag
	for id, u := range c.units {
		units = append(units, unitDiag{id, u.u.Type().String(), u.state.String(), u.message})
	}
	var in any
	if c.inForce != nil {
		in = map[string]any{
			"unit": c.inForce.UnitID, "revision": c.inForce.Revision, "sha256": c.inForce.Hash, "applied": c.applied.UTC().Format(time.RFC3339),
			"package_policy_id": c.inForce.PackagePolicyID,
			"namespace":         c.inForce.Namespace, "rules": c.inForce.Policy.String(),
			"selectors": map[string]int{"process": len(c.inForce.Policy.Selectors(policy.Process)), "file": len(c.inForce.Policy.Selectors(policy.File))},
		}
	}
	c.mu.Unlock()
	sort.Slice(units, func(i, j int) bool { return units[i].ID < units[j].ID })
	doc := map[string]any{"units": units, "input": in}
	if c.opts.Enforcer != nil {
		doc["enforcer"] = c.opts.Enforcer.Diagnostics()
	}
	if c.opts.Sink != nil {
		doc["output"] = c.opts.Sink.Diagnostics()
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Appendf(nil, `{"error": %q}`, err.Error())
	}
	return data
}
