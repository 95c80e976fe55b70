package daemon

import (
	"fmt"
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/policy"
)

// dropWindow is how long the input unit stays DEGRADED after the kernel drops
// events, so a burst is seen in Fleet rather than flickering past.
const dropWindow = time.Minute

// engineEnforcer is the kernel engine as the component's Enforcer: the input
// unit's policy goes to Apply, and its health tells blocking's absence and
// dropped events.
type engineEnforcer struct {
	e *ebpf.Engine

	mu        sync.Mutex
	drops     uint64    // ring buffer drops seen so far
	lastDrop  time.Time // when drops last grew
	newDrops  uint64    // drops within the window
	dropSince time.Time
}

func (f *engineEnforcer) Apply(p *policy.Policy) error { return f.e.Swap(p) }

func (f *engineEnforcer) Status() component.Status {
	lsm := f.e.LSM()
	if !lsm.Available {
		return component.Status{Degraded: true, Message: fmt.Sprintf(
			"blocking is unavailable: %s. Exec and fork selectors are detected after the fact in user space; %s. Enable BPF LSM (add bpf to the lsm= kernel boot parameter) to block",
			lsm.Reason, fileDetection(f.e.FileSyscalls()))}
	}
	st, err := f.e.Stats()
	if err != nil {
		return component.Status{Degraded: true, Message: "cannot read the kernel counters: " + err.Error()}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if st.RingbufDrops > f.drops {
		if now.Sub(f.lastDrop) > dropWindow {
			f.newDrops, f.dropSince = 0, now
		}
		f.newDrops += st.RingbufDrops - f.drops
		f.drops, f.lastDrop = st.RingbufDrops, now
	}
	if !f.lastDrop.IsZero() && now.Sub(f.lastDrop) <= dropWindow {
		return component.Status{Degraded: true, Message: fmt.Sprintf(
			"%d kernel events dropped since %s: the event ring was full (%d in all)", f.newDrops, f.dropSince.UTC().Format(time.RFC3339), f.drops)}
	}
	return component.Status{}
}

func (f *engineEnforcer) Diagnostics() any {
	st, err := f.e.Stats()
	doc := map[string]any{"lsm": f.e.LSM(), "sessions": f.e.Sessions(), "enforcing": f.e.Enforcing(), "generation": f.e.Generation()}
	if err != nil {
		doc["stats_error"] = err.Error()
	} else {
		doc["stats"] = st
	}
	return doc
}

// fileDetection says how file selectors are evaluated without BPF LSM.
func fileDetection(f ebpf.FeatureStatus) string {
	if !f.Available {
		return f.Reason
	}
	return "file selectors are detected after the fact from workloads' file syscalls"
}
