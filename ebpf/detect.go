package ebpf

import (
	"os"
	"strconv"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Without BPF LSM the kernel decides nothing, so Read evaluates the policy in
// user space on what the tracepoints report (detection only: reported, never
// blocked). Execs are judged from their exec event (detect). Forks are judged
// from the fork event, as the kernel's task_alloc hook would have judged them
// in the forking process: its pid namespace (the node's own are out of
// scope), executable, comm, terminal, container. The fork event names only
// the child, so the engine remembers each workloadProc process's executable from
// its exec (inherited at fork, forgotten at exit), and each node process's
// that execs, since a container's first fork is a node process's; a process
// that was running before the engine started is read once from /proc. A node
// process's fork into a namespace runs the node's image until it execs
// (workloadProc.setup): its file and network calls are the runtime's, not the
// workload's.

// workloadProc is what fork decisions need of a workload process.
type workloadProc struct {
	exe   string
	layer event.Layer
	pidns uint32
	// setup: forked into the namespace by a node process (a runtime's
	// "runc init", an exec into the container) and not exec'd since, so still
	// running the node's image: the runtime's setup, before the pivot into the
	// container's root, not the workload. The kernel's hooks cannot tell it
	// apart; here its file and network calls (paths still the node's) and forks
	// are out of scope, as the fork that made it is. Its exec ends it.
	setup bool
}

// maxWorkloads bounds the remembered processes; past it (exits lost) they
// are forgotten all at once and read again from /proc as needed.
const maxWorkloads = 1 << 16

// observe keeps the workloadProc table in step with telemetry and returns the
// user-space decision an exec or fork makes, if any. The reader (one
// goroutine) calls it for every event when BPF LSM is unavailable.
func (e *Engine) observe(ev *event.Event) (event.Event, bool) {
	if e.workloads == nil {
		e.workloads = map[uint32]workloadProc{}
	}
	switch ev.Kind {
	case event.Exec:
		if ev.Process.PIDNamespace != e.hostNS {
			e.remember(ev.Process.PID, workloadProc{exe: ev.Executable, layer: ev.Layer, pidns: ev.Process.PIDNamespace})
		} else {
			// A node process too: when it forks into a new pid namespace (a
			// container's start, unshare), its fork is judged from this, not
			// from two reads of /proc. The layer stays unknown, as fromProc
			// leaves it.
			e.remember(ev.Process.PID, workloadProc{exe: ev.Executable, pidns: e.hostNS})
		}
		return e.detect(ev)
	case event.Fork:
		if ev.Process.PIDNamespace == e.hostNS {
			return event.Event{}, false // a child in the node's namespace has its parent there too
		}
		parent, ok := e.workloads[ev.Process.PPID]
		if !ok {
			var found bool
			if parent, found = e.fromProc(ev.Process.PPID, ev.Process.PIDNamespace); found {
				// Read once: its exec or exit updates or forgets it.
				e.remember(ev.Process.PPID, parent)
			}
		}
		// The child runs its parent's image, in its own namespace (a new one
		// with CLONE_NEWPID).
		// Whether the parent is the node's is the kernel's word (a parent that
		// exits at once, as runc's intermediate process does, is gone from /proc).
		if ev.ParentPIDNS != 0 {
			parent.pidns = ev.ParentPIDNS
		}
		e.remember(ev.Process.PID, workloadProc{exe: parent.exe, layer: parent.layer, pidns: ev.Process.PIDNamespace,
			setup: parent.setup || parent.pidns == e.hostNS})
		return e.detectFork(ev, parent)
	case event.Exit:
		delete(e.workloads, ev.Process.PID)
	case kindSysfile:
		if !e.workloads[ev.Process.PID].setup {
			e.detectFile(ev, &e.sys)
		}
	case event.NetworkDecision:
		if netSyscall(ev.Hook) {
			return e.detectNet(ev)
		}
	}
	return event.Event{}, false
}

func (e *Engine) remember(pid uint32, w workloadProc) {
	if len(e.workloads) >= maxWorkloads {
		clear(e.workloads)
	}
	e.workloads[pid] = w
}

// fromProc reads a process the engine has not seen exec: its executable as
// its own root shows it (the kernel resolves /proc/<pid>/exe against the
// process's mount namespace for a process outside ours) and its pid
// namespace. A process already gone reads as the namespace the caller
// supplies, with no executable; found says whether both were read.
func (e *Engine) fromProc(pid, pidns uint32) (w workloadProc, found bool) {
	w = workloadProc{pidns: pidns}
	p := strconv.FormatUint(uint64(pid), 10)
	exe, err := os.Readlink("/proc/" + p + "/exe")
	if err == nil {
		w.exe = exe
	}
	ns, nerr := pidNamespace(p)
	if nerr == nil {
		w.pidns = ns
	}
	return w, err == nil && nerr == nil
}

// detectFork evaluates a fork that already happened against the live policy,
// as the kernel's task_alloc hook would have in the forking process. The
// decision is about the child (as the enricher makes the kernel's), with the
// parent's image.
func (e *Engine) detectFork(ev *event.Event, parent workloadProc) (event.Event, bool) {
	if parent.pidns == e.hostNS {
		return event.Event{}, false // forked by a node process into a new namespace (a container's start)
	}
	gen, p, meta := e.liveFor(ev.Process.CgroupID)
	if p == nil {
		return event.Event{}, false
	}
	op := meta
	op.Op = policy.OpFork
	op.ProcessExecutable = parent.exe
	op.ProcessName = ev.Process.Comm // the child's comm is its parent's at fork
	op.ExecutableIsMemfd = memfdPath(parent.exe)
	op.SessionLeaderInteractive = ev.Process.TTYMajor != 0
	op.ExecutableLayer = parent.layer.String()
	d := p.Evaluate(&op)
	if d.Actions == 0 {
		return event.Event{}, false
	}
	return event.Event{
		Kind: event.ProcessDecision, Time: ev.Time, Process: ev.Process, Op: policy.OpFork, Generation: gen,
		Matched: d.Matched, Actions: d.Actions, Memfd: op.ExecutableIsMemfd, Interactive: op.SessionLeaderInteractive,
		Path: parent.exe, PathLen: uint32(len(parent.exe)), UserSpace: true, Layer: parent.layer,
	}, true
}
