// Package enrich puts kernel events in context for their documents: the
// process table (proctree) and the container a process runs in (container),
// and decides when a decision has enough of it to be encoded.
package enrich

import (
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/enrich/container"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// execWait is how long an exec decision waits for its exec event. The kernel
// decides in bprm_check_security and reports the exec from sched_process_exec a
// moment later on the same task; an exec that fails in between never reports.
const execWait = 100 * time.Millisecond

// metaWait is how long a container's documents wait for its runtime's first
// answer (image, privilege) when the runtime is slow to give it; after that
// they go without. maxHeld bounds how many wait.
const (
	metaWait = 5 * time.Second
	maxHeld  = 4096
)

// reconcileEvery is how often the table is checked against /proc for
// processes whose exit event was lost.
const reconcileEvery = time.Minute

// Emit receives a decision with its context. Both are only valid during the
// call: the enricher reuses them.
type Emit func(*event.Event, *Context)

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
	OnContainer func(cgroupID uint64, c *Container)

	pending       map[uint32]*event.Event // exec decisions waiting for their exec, by pid
	forks         map[uint32]*event.Event // fork decisions waiting for their child, by forking thread
	logged        map[uint32]logged       // processes whose fork or exec was logged, by pid: their end is too
	held          []held                  // documents waiting for their container's metadata, in order
	lastReconcile time.Duration

	mu         sync.Mutex
	containers map[uint64]*Container // by cgroup id; nil value: not a container
	waiting    map[uint64]*Container // containers whose runtime has not answered yet
	pods       func(podUID string) *Pod
	ctx        Context // what emit passes, reused: valid during the call
	view       proctree.View
	rel        proctree.Relatives
	// spare holds copies of waiting decisions already emitted, for the next
	// to wait: one exec or fork in two waits, and an event is a few hundred
	// bytes to allocate and collect each time.
	spare []*event.Event
	endEv event.Event // the end document's event, reused
}

// New returns an enricher over a process table and cgroup resolver.
func New(tab *proctree.Table, cg *container.Cgroups) *Enricher {
	return &Enricher{Table: tab, Cgroups: cg, pending: map[uint32]*event.Event{}, forks: map[uint32]*event.Event{},
		logged: map[uint32]logged{}, containers: map[uint64]*Container{}}
}

// SetPods sets where pod metadata comes from (Kubernetes); nil for none.
func (e *Enricher) SetPods(f func(podUID string) *Pod) {
	e.mu.Lock()
	e.pods = f
	e.mu.Unlock()
}

// logged is what logged a process's fork or exec: its end document names the
// same selectors.
type logged struct {
	start      time.Duration
	op         policy.Op
	generation uint32
	matched    uint64
}

// maxLogged bounds the processes waiting for their end document; past it
// (exit events lost) the oldest promises are dropped all at once.
const maxLogged = 1 << 17

// held is a decision waiting for its container's runtime to answer, with its
// process as it was when it was made.
type held struct {
	ev   event.Event
	view *proctree.View // nil: the process was not in the table
}

// Handle takes one kernel event: telemetry updates the table, decisions are
// emitted once their process is known as it was when they were made.
func (e *Enricher) Handle(ev *event.Event, emit Emit) {
	e.expire(ev.Time, emit)
	e.release(ev.Time, false, emit)
	pid := ev.Process.PID
	if p := e.pending[pid]; p != nil && ev.Kind != event.Exec {
		delete(e.pending, pid)
		e.emitWaited(p, emit)
	}
	if p := e.forks[ev.Process.TID]; p != nil && ev.Kind != event.Fork {
		// The fork failed after it was decided: no child to describe.
		delete(e.forks, ev.Process.TID)
		e.emitWaited(p, emit)
	}
	switch ev.Kind {
	case event.Fork:
		e.Table.Apply(ev)
		if p := e.forks[ev.ParentTID]; p != nil {
			// The kernel decides a fork in the forking task, before the child
			// exists; the document is about the child, as D4C's fork events
			// are (Session View draws a process from its fork).
			delete(e.forks, ev.ParentTID)
			p.Process, p.Time = ev.Process, ev.Time
			e.emitWaited(p, emit)
		}
	case event.Exit:
		e.Table.Apply(ev)
		e.end(ev, emit)
	case event.Setsid:
		e.Table.Apply(ev)
	case event.Exec:
		e.Table.Apply(ev)
		// A container's first exec is its first sight (OnContainer).
		e.container(ev.Process.CgroupID)
		if p := e.pending[pid]; p != nil {
			delete(e.pending, pid)
			e.emitWaited(p, emit)
		}
	case event.ProcessDecision:
		if ev.Op == policy.OpExec && !ev.Blocked && !ev.UserSpace {
			// Wait for the exec to land in the table: the document should carry
			// the new image's args and the old one as previous.
			e.pending[pid] = e.copyOf(ev)
			return
		}
		if ev.Op == policy.OpFork && !ev.Blocked && !ev.UserSpace {
			e.forks[ev.Process.TID] = e.copyOf(ev)
			return
		}
		e.emit(ev, emit)
	case event.FileDecision, event.NetworkDecision:
		// Made by a running process about its own file or socket call: the
		// table already has the process as it is, nothing to wait for but
		// the container's metadata (emit holds it when the runtime has not
		// answered yet).
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
		e.emitWaited(p, emit)
	}
	for tid, p := range e.forks {
		delete(e.forks, tid)
		e.emitWaited(p, emit)
	}
	e.release(0, true, emit)
}

// release emits, in the order they were made, the held decisions whose
// container's runtime answered (or is gone), or that waited metaWait, or all
// of them.
func (e *Enricher) release(now time.Duration, all bool, emit Emit) {
	if len(e.held) == 0 {
		return
	}
	kept := e.held[:0]
	for i := range e.held {
		h := &e.held[i]
		cgid := h.ev.Process.CgroupID
		c, pod := e.container(cgid)
		e.mu.Lock()
		waiting := e.waiting[cgid] != nil
		e.mu.Unlock()
		if waiting && !all && now-h.ev.Time <= metaWait {
			kept = append(kept, *h)
			continue
		}
		e.ctx = Context{Process: h.view, Container: c, Pod: pod}
		emit(&h.ev, &e.ctx)
	}
	clear(e.held[len(kept):])
	e.held = kept
}

func (e *Enricher) expire(now time.Duration, emit Emit) {
	for pid, p := range e.pending {
		if now-p.Time > execWait {
			delete(e.pending, pid)
			e.emitWaited(p, emit)
		}
	}
	for tid, p := range e.forks {
		if now-p.Time > execWait {
			delete(e.forks, tid)
			e.emitWaited(p, emit)
		}
	}
}

// end emits the end document of a process whose fork or exec was logged: an
// exit event, with the logging decision's selectors, about the process as the
// table has it now (ended, with its exit code, entity id and leaders).
func (e *Enricher) end(ev *event.Event, emit Emit) {
	pid := ev.Process.PID
	l, ok := e.logged[pid]
	if !ok {
		return
	}
	delete(e.logged, pid)
	if proctree.TruncStart(l.start) != proctree.TruncStart(ev.Process.Start) {
		return // a reused pid: the logged process ended unseen
	}
	e.endEv = *ev
	e.endEv.Op, e.endEv.Generation, e.endEv.Matched, e.endEv.Actions = l.op, l.generation, l.matched, policy.ActionLog
	e.emit(&e.endEv, emit)
	e.endEv = event.Event{} // keeps no strings alive
}

// copyOf copies a decision that waits for its exec or fork.
func (e *Enricher) copyOf(ev *event.Event) *event.Event {
	if n := len(e.spare); n > 0 {
		c := e.spare[n-1]
		e.spare = e.spare[:n-1]
		*c = *ev
		return c
	}
	c := *ev
	return &c
}

// emitWaited emits a decision that waited, and keeps its copy for the next:
// emit is done with it when it returns (held documents copy their event).
func (e *Enricher) emitWaited(p *event.Event, emit Emit) {
	e.emit(p, emit)
	*p = event.Event{}
	if len(e.spare) < 64 {
		e.spare = append(e.spare, p)
	}
}

func (e *Enricher) emit(ev *event.Event, emit Emit) {
	if ev.Kind == event.ProcessDecision && ev.Actions.Has(policy.ActionLog) && !ev.Blocked {
		if len(e.logged) >= maxLogged {
			clear(e.logged)
		}
		// The process's start as the table knows it: a thread's own start
		// differs, and its exit is reported with the process's.
		start := ev.Process.Start
		if ev.Process.TID != ev.Process.PID {
			if v, ok := e.Table.LookupPID(ev.Process.PID); ok {
				start = v.Process.Start
			}
		}
		e.logged[ev.Process.PID] = logged{start: start, op: ev.Op, generation: ev.Generation, matched: ev.Matched}
	}
	c, pod := e.container(ev.Process.CgroupID)
	if c != nil && len(e.held) < maxHeld {
		e.mu.Lock()
		waiting := e.waiting[ev.Process.CgroupID] != nil
		e.mu.Unlock()
		if waiting {
			// Its runtime has not told the image yet: the document waits for
			// it (metaWait at most), with the process as it is now.
			h := held{ev: *ev}
			if v := new(proctree.View); e.Table.LookupInto(&ev.Process, v, new(proctree.Relatives)) {
				h.view = v
			}
			e.held = append(e.held, h)
			return
		}
	}
	e.ctx = Context{Container: c, Pod: pod}
	if e.Table.LookupInto(&ev.Process, &e.view, &e.rel) {
		e.ctx.Process = &e.view
	}
	emit(ev, &e.ctx)
}

// container returns the container of a cgroup, cached by cgroup id (ids are
// never reused). A container whose runtime has not answered yet is returned
// with its id only and asked about again (a map read: the runtime cache
// retries in the background) at each of its events until the answer arrives;
// OnContainer is called at first sight and again when the image arrives.
func (e *Enricher) container(id uint64) (*Container, *Pod) {
	if e.Cgroups == nil || id == 0 {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, cached := e.containers[id]
	if w := e.waiting[id]; w != nil {
		c = e.resolve(id, w)
	} else if !cached {
		info, ok := e.Cgroups.Info(id)
		if !ok {
			return nil, nil // maybe not walked yet: ask again next time
		}
		if info.ID != "" {
			c = &Container{ID: info.ID, Runtime: info.Runtime, PodUID: info.PodUID}
		}
		if len(e.containers) >= 1<<16 {
			clear(e.containers)
			clear(e.waiting)
		}
		e.containers[id] = c
		if c != nil {
			c = e.resolve(id, c)
			if e.OnContainer != nil {
				e.OnContainer(id, c)
			}
		}
	}
	if c == nil {
		return nil, nil
	}
	var pod *Pod
	if c.PodUID != "" && e.pods != nil {
		pod = e.pods(c.PodUID)
	}
	return c, pod
}

// resolve asks the runtimes about a container that has no answer yet and
// returns what to use now. A new *ecs.Container replaces the old one when the
// answer arrives (documents already encoded keep what they had). Callers hold
// e.mu.
func (e *Enricher) resolve(cgid uint64, c *Container) *Container {
	if e.Runtimes == nil {
		return c
	}
	alive := func() bool {
		// The container is there while its cgroup is: the runtime removes it
		// after the last process is gone.
		p, ok := e.Cgroups.Path(cgid)
		if !ok {
			return false
		}
		got, err := e.Cgroups.ID(p)
		return err == nil && got == cgid
	}
	m, st := e.Runtimes.Lookup(c.ID, alive)
	switch st {
	case runtime.Pending:
		if e.waiting == nil {
			e.waiting = map[uint64]*Container{}
		}
		e.waiting[cgid] = c
		return c
	case runtime.Found:
		n := *c
		n.ImageName, n.ImageTag, n.Privileged = m.ImageName, m.ImageTag, m.Privileged
		e.containers[cgid] = &n
		if _, was := e.waiting[cgid]; was {
			delete(e.waiting, cgid)
			if e.OnContainer != nil {
				e.OnContainer(cgid, &n)
			}
		}
		return &n
	default: // gone, or no source: ids only, for good
		delete(e.waiting, cgid)
		return c
	}
}
