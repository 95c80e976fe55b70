package ebpf

import (
	"net/netip"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Network decisions. With BPF LSM the kernel judges connect, bind, UDP sends
// and accepted connections (bpf/network.bpf.h) and reports the decisions; the
// record is decoded here. Without it, the syscall tracepoints
// (bpf/network_syscalls.bpf.h) report a workload's successful connect, bind,
// accept and UDP send to an address, with the same endpoints, for the
// operations the live policy has a selector for; Read evaluates them against
// the live policy (UserSpace, never blocked) and returns only the decisions.

const afInet, afInet6 = 2, 10

// endpoint is a record's endpoint as an AddrPort (invalid when the operation
// has none).
func endpoint(e *bpfobj.ProbeEndpoint) netip.AddrPort {
	switch e.Family {
	case afInet:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(e.Addr[:4])), e.Port)
	case afInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(e.Addr).Unmap(), e.Port)
	}
	return netip.AddrPort{}
}

// netSyscall reports whether a network record is a syscall's, for user space
// to judge (no BPF LSM), rather than a kernel decision.
func netSyscall(h event.HookPoint) bool {
	return h >= event.HookSysConnect && h <= event.HookInetSockSetState
}

func decodeNetwork(raw []byte, n names) (event.Event, error) {
	r, err := view[bpfobj.ProbeNetEvent](raw)
	if err != nil {
		return event.Event{}, err
	}
	ev := header(r.Hdr, r.Proc, n)
	ev.Generation = r.Hdr.Generation
	ev.Op = policy.Op(r.Op)
	ev.Hook = event.HookPoint(r.Hook)
	ev.Matched = r.Matched
	ev.Actions = policy.Actions(r.Actions)
	ev.Blocked = r.Blocked != 0
	ev.Interactive = r.Interactive != 0
	ev.Protocol = event.Protocol(r.Protocol)
	ev.Source = endpoint(&r.Src)
	ev.Destination = endpoint(&r.Dst)
	switch ev.Op {
	case policy.OpConnect:
		ev.Direction = event.DirectionEgress
	case policy.OpAccept:
		ev.Direction = event.DirectionIngress
	}
	return ev, nil
}

// netOperation is the policy operation a network event is about, with the
// process doing it (exe) and its container's metadata (meta).
func netOperation(ev *event.Event, exe string, meta policy.Operation) policy.Operation {
	op := meta
	op.Op = ev.Op
	op.Protocol = ev.Protocol.String()
	op.ProcessExecutable = exe
	op.ProcessName = ev.Process.Comm
	op.SessionLeaderInteractive = ev.Interactive
	if ev.Source.IsValid() {
		op.SourceAddress, op.SourcePort = ev.Source.Addr(), ev.Source.Port()
	}
	if ev.Destination.IsValid() {
		op.DestinationAddress, op.DestinationPort = ev.Destination.Addr(), ev.Destination.Port()
	}
	return op
}

// detectNet evaluates a workload's network syscall against the live policy, as
// the LSM hooks would have.
func (e *Engine) detectNet(ev *event.Event) (event.Event, bool) {
	if ev.Process.PIDNamespace == e.hostNS {
		return event.Event{}, false
	}
	gen, p, meta := e.liveFor(ev.Process.CgroupID)
	if p == nil {
		return event.Event{}, false
	}
	w, ok := e.workloads[ev.Process.PID]
	if !ok {
		w, _ = e.fromProc(ev.Process.PID, ev.Process.PIDNamespace)
		e.remember(ev.Process.PID, w)
	}
	if w.setup {
		return event.Event{}, false // a runtime's setup, not the workload (workloadProc.setup)
	}
	op := netOperation(ev, w.exe, meta)
	d := p.Evaluate(&op)
	if d.Actions == 0 {
		return event.Event{}, false
	}
	out := *ev
	out.Generation, out.Matched, out.Actions, out.UserSpace = gen, d.Matched, d.Actions, true
	return out, true
}

// netSyscallStatus says whether the network syscall programs watch workloads'
// network operations (no BPF LSM), and which could not attach.
func (l *loader) netSyscallStatus() FeatureStatus {
	return syscallSetStatus(l.netSyscalls, l.netMissing, "network")
}

// NetworkSyscalls says whether network operations are detected at their
// syscalls (no BPF LSM), and what is not seen.
func (e *Engine) NetworkSyscalls() FeatureStatus { return e.netSys }
