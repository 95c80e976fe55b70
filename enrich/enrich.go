// Package enrich puts kernel events in context for their documents: the
// process table (proctree) and the container a process runs in (container),
// and decides when a decision has enough of it to be encoded.
package enrich

import (
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich/container"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
	"github.com/cloud-defend/cloud-defend/policy"
)

// execWait is how long an exec decision waits for its exec event. The kernel
// decides in bprm_check_security and reports the exec from sched_process_exec a
// moment later on the same task; an exec that fails in between never reports.
const execWait = 100 * time.Millisecond

// reconcileEvery is how often the table is checked against /proc for
// processes whose exit event was lost.
const reconcileEvery = time.Minute

// Emit receives a decision with its context. The context is only valid during
// the call.
type Emit func(*ebpf.Event, *ecs.Context)

// Enricher turns the kernel's event stream into decisions with context. One
// goroutine (the event loop) calls Handle.
type Enricher struct {
	Table   *proctree.Table
	Cgroups *container.Cgroups // nil: no container ids (no cgroup2 mount visible)
	// Runtimes tells images and privilege; nil: container ids only.
	Runtimes *runtime.Cache
	// OnContainer is called when a container is first seen in the events,
	// with its cgroup: the earliest moment its metadata can reach the kernel
	// engine. It must not call back into the Enricher.
	OnContainer func(cgroupID uint64, c *ecs.Container)

	pending       map[uint32]*ebpf.Event // exec decisions waiting for their exec, by pid
	lastReconcile time.Duration

	mu         sync.Mutex
	containers map[uint64]*ecs.Container // by cgroup id; nil value: not a container
	pods       func(podUID string) *ecs.Pod
	ctx        ecs.Context // what emit passes, reused: valid during the call
	view       proctree.View
	rel        proctree.Relatives
}

// New returns an enricher over a process table and cgroup resolver.
func New(tab *proctree.Table, cg *container.Cgroups) *Enricher {
	return &Enricher{Table: tab, Cgroups: cg, pending: map[uint32]*ebpf.Event{}, containers: map[uint64]*ecs.Container{}}
}

// SetPods sets where pod metadata comes from (Kubernetes); nil for none.
func (e *Enricher) SetPods(f func(podUID string) *ecs.Pod) {
	e.mu.Lock()
	e.pods = f
	e.mu.Unlock()
}

// Handle takes one kernel event: telemetry updates the table, decisions are
// emitted once their process is known as it was when they were made.
func (e *Enricher) Handle(ev *ebpf.Event, emit Emit) {
	e.expire(ev.Time, emit)
	pid := ev.Process.PID
	if p := e.pending[pid]; p != nil && ev.Kind != ebpf.EventExec {
		delete(e.pending, pid)
		e.emit(p, emit)
	}
	switch ev.Kind {
	case ebpf.EventFork, ebpf.EventExit, ebpf.EventSetsid:
		e.Table.Apply(ev)
	case ebpf.EventExec:
		e.Table.Apply(ev)
		// A container's first exec is its first sight (OnContainer).
		e.container(ev.Process.CgroupID)
		if p := e.pending[pid]; p != nil {
			delete(e.pending, pid)
			e.emit(p, emit)
		}
	case ebpf.EventDecision:
		if ev.Op == policy.OpExec && !ev.Blocked && !ev.UserSpace {
			// Wait for the exec to land in the table: the document should carry
			// the new image's args and the old one as previous.
			c := *ev
			e.pending[pid] = &c
			return
		}
		e.emit(ev, emit)
	default:
		e.emit(ev, emit)
	}
	switch {
	case e.lastReconcile == 0:
		e.lastReconcile = ev.Time // the first check a period after the start
	case ev.Time-e.lastReconcile > reconcileEvery:
		e.lastReconcile = ev.Time
		e.Table.Reconcile()
	}
}

// Flush emits every waiting decision (at shutdown).
func (e *Enricher) Flush(emit Emit) {
	for pid, p := range e.pending {
		delete(e.pending, pid)
		e.emit(p, emit)
	}
}

func (e *Enricher) expire(now time.Duration, emit Emit) {
	for pid, p := range e.pending {
		if now-p.Time > execWait {
			delete(e.pending, pid)
			e.emit(p, emit)
		}
	}
}

func (e *Enricher) emit(ev *ebpf.Event, emit Emit) {
	e.ctx = ecs.Context{}
	if e.Table.LookupInto(&ev.Process, &e.view, &e.rel) {
		e.ctx.Process = &e.view
	}
	e.ctx.Container, e.ctx.Pod = e.container(ev.Process.CgroupID)
	emit(ev, &e.ctx)
}

// container returns the container of a cgroup, cached by cgroup id (ids are
// never reused).
func (e *Enricher) container(id uint64) (*ecs.Container, *ecs.Pod) {
	if e.Cgroups == nil || id == 0 {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, cached := e.containers[id]
	if !cached {
		info, ok := e.Cgroups.Info(id)
		if !ok {
			return nil, nil // maybe not walked yet: ask again next time
		}
		complete := true
		if info.ID != "" {
			c = &ecs.Container{ID: info.ID, Runtime: info.Runtime, PodUID: info.PodUID}
			if m, ok := e.Runtimes.Lookup(info.ID); ok {
				c.ImageName, c.ImageTag, c.Privileged = m.ImageName, m.ImageTag, m.Privileged
			} else {
				// The runtime may not have registered it yet; its cache
				// spaces out the next questions.
				complete = e.Runtimes == nil
			}
		}
		if c != nil && e.OnContainer != nil {
			e.OnContainer(id, c)
		}
		if complete {
			if len(e.containers) >= 1<<16 {
				clear(e.containers)
			}
			e.containers[id] = c
		}
	}
	if c == nil {
		return nil, nil
	}
	var pod *ecs.Pod
	if c.PodUID != "" && e.pods != nil {
		pod = e.pods(c.PodUID)
	}
	return c, pod
}
