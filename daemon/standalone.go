package daemon

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Standalone is the controller without an agent: a policy file (or the
// embedded default) in force from the start, reloaded on SIGHUP with the same
// validation; SIGTERM and SIGINT stop. Once a second it logs what changed in
// the sink's health and the kernel's drops.
type Standalone struct {
	Policy *policy.Policy                 // in force from the start
	Reload func() (*policy.Policy, error) // the policy file again; nil: SIGHUP is ignored
	DryRun bool
	Input  Input
	// Signals delivers SIGHUP, SIGTERM and SIGINT (signal.Notify).
	Signals <-chan os.Signal
	Log     Logger
}

// Control applies the policy and serves signals until one stops the daemon.
func (s *Standalone) Control(ctx context.Context, d *Daemon, openErr error) error {
	if openErr != nil {
		return fmt.Errorf("startup error: %w", openErr)
	}
	if err := d.Apply(s.Policy); err != nil {
		return fmt.Errorf("startup error: load policy into the kernel: %w", err)
	}
	for _, line := range Summary(d.engine, s.Policy, s.DryRun) {
		s.Log.Infof("%s", line)
	}
	d.SetInput(s.Input)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported ebpf.Stats
	var health component.Status
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-s.Signals:
			if sig != syscall.SIGHUP {
				s.Log.Infof("%v: stopping", sig)
				return nil
			}
			if s.Reload == nil {
				continue
			}
			np, err := s.Reload()
			if err != nil {
				s.Log.Errorf("policy reload failed; the running policy (generation %d) stays in force:\n%v", d.engine.Generation(), err)
				continue
			}
			if err := d.Apply(np); err != nil {
				s.Log.Errorf("policy reload failed; the running policy (generation %d) stays in force: %v", d.engine.Generation(), err)
				continue
			}
			s.Policy = np
			s.Log.Infof("policy reloaded: generation %d, %s", d.engine.Generation(), np)
		case <-tick.C:
			if d.sink != nil {
				if st := d.sink.Status(); st != health {
					if st.Degraded {
						s.Log.Warnf("output degraded: %s", st.Message)
					} else {
						s.Log.Infof("output healthy")
					}
					health = st
				}
			}
			if st, err := d.engine.Stats(); err == nil && st.RingbufDrops > reported.RingbufDrops {
				s.Log.Warnf("%d events dropped: the event ring was full (%d in all)", st.RingbufDrops-reported.RingbufDrops, st.RingbufDrops)
				reported = st
			}
		}
	}
}
