package daemon

import (
	"context"
	"errors"

	"github.com/elastic/elastic-agent-client/v7/pkg/client"
	"github.com/elastic/elastic-agent-libs/logp"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/requirements"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// Agent is the controller under Elastic Agent: the input unit's policy goes to
// the engine, its package policy id, revision, namespace, periods and alert
// throttle to the documents, the output unit's Elasticsearch connection to
// Output; unit health goes back to Fleet.
type Agent struct {
	Client client.V2
	Log    *logp.Logger
	// Output is the Elasticsearch sink, nil when it could not be created
	// (OutputError says why).
	Output      *Elasticsearch
	OutputError error
}

// Control runs the control protocol until ctx ends. A start-up failure (the
// engine, the output) is reported on every unit as "Startup error" rather
// than exiting: the agent would restart us in a loop and Fleet would show
// nothing.
func (a *Agent) Control(ctx context.Context, d *Daemon, openErr error) error {
	startupErr := a.OutputError
	opts := component.Options{Logger: a.Log, OnInput: func(in component.Input) {
		d.SetInput(Input{Meta: ecs.Meta{Namespace: in.Namespace, PackagePolicyID: in.PackagePolicyID, Revision: in.Revision},
			HeartbeatPeriod: in.HeartbeatPeriod, Metrics: in.MetricsPeriod, Throttle: throttle.Config{Rate: in.AlertRate, Burst: in.AlertBurst}})
	}}
	if openErr != nil {
		err := requirements.Probe(requirements.Options{}).Explain(openErr)
		a.Log.Errorf("Startup error: %v", err)
		startupErr = errors.Join(err, startupErr)
	} else {
		opts.Enforcer = &engineEnforcer{e: d.engine}
		if lsm := d.engine.LSM(); !lsm.Available {
			a.Log.Warnf("blocking is unavailable, detection only: %s", lsm.Reason)
		}
	}
	if a.Output != nil {
		opts.Sink = a.Output
	}
	opts.StartupError = startupErr
	return component.New(a.Client, opts).Run(ctx)
}
