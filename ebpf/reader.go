package ebpf

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/cloud-defend/cloud-defend/event"
)

// reader owns what the one reading goroutine uses: the ring and its waiter, the
// decisions user space makes without BPF LSM waiting to be read, the workload
// processes those decisions need, and the interned command names.
type reader struct {
	ring    *ringbuf.Reader
	waiter  *ringWaiter
	pending []event.Event // user-space decisions waiting to be read (no BPF LSM)
	// workloads: what fork decisions need of workload processes, by pid
	// (no BPF LSM; see detect.go).
	workloads map[uint32]workloadProc
	rec       ringbuf.Record
	names     names   // interned command names
	sys       Syscall // the last file syscall record read (no BPF LSM)
	// mounts: workloads' mount tables by mount namespace, for the volume
	// conditions of file syscalls (no BPF LSM; sysfile.go).
	mounts map[uint32]*mountTable
	// flushInterval: see Options.FlushInterval.
	flushInterval time.Duration
	hostNS        uint32 // the node's pid namespace: processes outside it are workloads
}

// open starts reading the ring. Reads never block: the waiter waits.
func (r *reader) open(events *ebpf.Map) error {
	var err error
	if r.ring, err = ringbuf.NewReader(events); err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	r.ring.SetDeadline(time.Unix(1, 0))
	r.waiter, err = newRingWaiter(events)
	return err
}

func (r *reader) close() {
	if r.waiter != nil {
		r.waiter.close()
	}
	if r.ring != nil {
		r.ring.Close()
	}
}

// Buffered reports whether Read has an event ready without waiting: false at
// the end of what the kernel has delivered so far, where a reader that batches
// its own output flushes it.
func (e *Engine) Buffered() bool {
	return len(e.pending) > 0 || e.ring.AvailableBytes() > 0
}

// Read blocks until the next kernel event. Only one goroutine may read.
//
// Without BPF LSM the kernel makes no decisions, so Read evaluates the live policy
// on each container exec and fork itself and follows the exec or fork event with a
// decision event (UserSpace set, never blocked): detection keeps working where
// blocking cannot.
func (e *Engine) Read() (event.Event, error) {
	if len(e.pending) > 0 {
		return e.popPending(), nil
	}
	for {
		// One record buffer, reused: Event copies out what it keeps. The
		// reader's deadline is in the past: this never blocks, and reports
		// ErrDeadlineExceeded once the ring is empty.
		err := e.ring.ReadInto(&e.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if werr := e.waiter.wait(e.flushInterval); werr != nil {
				return event.Event{}, fmt.Errorf("ringbuffer: %w", ErrClosed)
			}
			continue
		}
		if err != nil {
			return event.Event{}, err
		}
		ev, err := decodeEvent(e.rec.RawSample, e.names, &e.sys)
		if int64(ev.Time) > e.retireAt.Load() {
			e.retire(ev.Time)
		}
		if err == nil && !e.lsm.Available {
			if d, ok := e.observe(&ev); ok {
				e.pending = append(e.pending, d)
			}
		}
		if err == nil && (ev.Kind == kindSysfile || ev.Kind == event.NetworkDecision && netSyscall(ev.Hook)) {
			// Only its decisions (detectFile) go on.
			if len(e.pending) > 0 {
				return e.popPending(), nil
			}
			continue
		}
		return ev, err
	}
}

// popPending takes the first waiting decision. The rest move to the front
// (there are rarely more than one or two) rather than the slice moving on:
// slicing off the front would shrink its capacity until every append of a
// decision reallocated it.
func (e *Engine) popPending() event.Event {
	ev := e.pending[0]
	n := copy(e.pending, e.pending[1:])
	e.pending[n] = event.Event{} // keeps no strings alive
	e.pending = e.pending[:n]
	return ev
}
