package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed

// defaultFlushInterval bounds how long a batched event (telemetry, log-only
// decisions) waits in the ring: the kernel wakes the reader only for alerts, blocks
// and a filling ring, so Read polls this often. Each wake-up has a fixed cost
// (threads woken, the runtime's monitor reset):
// 200 ms took a tenth off its CPU at 5,000 events/s against 50 ms, and documents
// become searchable only at Elasticsearch's next refresh (1 s by default) anyway.
const defaultFlushInterval = 200 * time.Millisecond

// memfdPath reports whether a resolved executable path is a memfd's.
func memfdPath(exe string) bool {
	return strings.HasPrefix(exe, "/memfd:") && strings.HasSuffix(exe, " (deleted)")
}

// detect evaluates an exec that already happened against the live policy, as the
// kernel would have before it: same scope, same operation fields.
func (e *Engine) detect(ev *event.Event) (event.Event, bool) {
	if ev.Process.PIDNamespace == e.hostNS {
		return event.Event{}, false
	}
	gen, p, meta := e.liveFor(ev.Process.CgroupID)
	if p == nil {
		return event.Event{}, false
	}
	op := meta
	op.Op = policy.OpExec
	op.ProcessExecutable = ev.Executable
	op.ProcessName = ev.Process.Comm
	op.ExecutableIsMemfd = memfdPath(ev.Executable)
	op.SessionLeaderInteractive = ev.Process.TTYMajor != 0
	op.ExecutableLayer = ev.Layer.String()
	d := p.Evaluate(&op)
	if d.Actions == 0 {
		return event.Event{}, false
	}
	return event.Event{
		Kind: event.ProcessDecision, Time: ev.Time, Process: ev.Process, Op: policy.OpExec, Generation: gen,
		Matched: d.Matched, Actions: d.Actions, Memfd: op.ExecutableIsMemfd, Interactive: op.SessionLeaderInteractive,
		Path: ev.Executable, PathLen: uint32(len(ev.Executable)), UserSpace: true, Layer: ev.Layer,
	}, true
}

// decodeEvent decodes a ring record; a kindSysfile record's syscall goes to
// *sys (nil: dropped), as only user-space detection reads it.
func decodeEvent(raw []byte, n names, sys *Syscall) (event.Event, error) {
	if len(raw) < 4 {
		return event.Event{}, fmt.Errorf("short event: %d bytes", len(raw))
	}
	var ev event.Event
	switch kind := event.Kind(binary.NativeEndian.Uint32(raw)); kind {
	case event.Fork:
		r, err := view[bpfobj.ProbeForkEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.ParentTID, ev.ParentPIDNS = r.ParentTid, r.ParentPidns
	case event.Exec:
		r, err := view[bpfobj.ProbeExecEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.Filename = cstring(r.Filename[:])
		ev.PathTruncated = r.ExeTruncated != 0 || r.CwdTruncated != 0
		// The tail follows the fixed part, in a record of one of six sizes:
		// args_cap bytes for argv, then path_cap for the executable and for the
		// cwd.
		fixed := int(unsafe.Offsetof(r.Args)) // not Sizeof: args starts before the tail padding
		tail := raw[fixed:]
		acap, pcap := int(r.ArgsCap), int(r.PathCap)
		if acap+2*pcap > len(tail) || acap < 0 || pcap < 0 {
			return ev, fmt.Errorf("short exec record: %d bytes for a tail of %d+2*%d", len(raw), acap, pcap)
		}
		ev.Args = splitArgs(tail[:min(int(r.ArgsLen), acap)])
		ev.Executable = string(tail[acap : acap+min(int(r.ExeLen), pcap)])
		ev.Cwd = string(tail[acap+pcap : acap+pcap+min(int(r.CwdLen), pcap)])
		ev.ArgsTruncated = r.ArgsTruncated != 0
		ev.ArgsCount = int(r.Argc)
		ev.Layer = event.Layer(r.ExeLayer)
	case event.FileDecision:
		r, err := view[bpfobj.ProbeFileEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.Generation = r.Hdr.Generation
		ev.Op = policy.Op(r.Op)
		ev.Hook = event.HookPoint(r.Hook)
		ev.Matched = r.Matched
		ev.Actions = policy.Actions(r.Actions)
		ev.Blocked = r.Blocked != 0
		ev.OnVolume = r.OnVolume != 0
		ev.OnFileMount = r.OnFileMount != 0
		ev.Path = cstring(r.Path[:])
		ev.PathLen = r.PathLen
	case event.Setsid:
		r, err := view[bpfobj.ProbeSetsidEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
	case event.Exit:
		r, err := view[bpfobj.ProbeExitEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.ExitCode = r.ExitCode
	case event.ProcessDecision:
		r, err := view[bpfobj.ProbeDecisionEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.Generation = r.Hdr.Generation
		ev.Op = processOp(bpfobj.ProbeProcessOp(r.Op))
		ev.Matched = r.Matched
		ev.Actions = policy.Actions(r.Actions)
		ev.Blocked = r.Blocked != 0
		ev.Memfd = r.Memfd != 0
		ev.Layer = event.Layer(r.ExeLayer)
		ev.Hook = event.HookPoint(r.Hook)
		ev.Interactive = r.Interactive != 0
		ev.Path = cstring(r.Path[:])
		ev.PathLen = r.PathLen
	case event.NetworkDecision:
		return decodeNetwork(raw, n)
	case kindSysfile:
		return decodeSysfile(raw, n, sys)
	default:
		return ev, fmt.Errorf("unknown event kind %d", kind)
	}
	return ev, nil
}

// processOp is the policy operation of a process decision (enum process_op,
// numbered apart from policy.Op).
func processOp(op bpfobj.ProbeProcessOp) policy.Op {
	if op == bpfobj.ProbeProcessOpOP_FORK {
		return policy.OpFork
	}
	return policy.OpExec
}

// view reads a record in place: records are the kernel's structs, laid out as
// bpf2go's Go twins (same fields, same padding, native endianness) and 8-byte
// aligned in the ring, so a cast replaces a reflective decode.
func view[T any](raw []byte) (*T, error) {
	var zero T
	if uintptr(len(raw)) < unsafe.Sizeof(zero) {
		return nil, fmt.Errorf("short %T record: %d bytes", zero, len(raw))
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(raw))), nil
}

func header(h bpfobj.ProbeEventHeader, p bpfobj.ProbeProcInfo, n names) event.Event {
	return event.Event{
		Kind: event.Kind(h.Type),
		Time: time.Duration(h.TsNs),
		Process: event.Process{
			PID: p.Pid, TID: p.Tid, PPID: p.Ppid, PGID: p.Pgid, SID: p.Sid,
			PIDNamespace: p.Pidns, MountNamespace: p.Mntns,
			UID: p.Uid, EUID: p.Euid, GID: p.Gid, EGID: p.Egid,
			TTYMajor: p.TtyMajor, TTYMinor: p.TtyMinor,
			Start: time.Duration(p.StartNs), CgroupID: p.CgroupId,
			Comm: n.comm(p.Comm),
		},
	}
}

// int8s views the kernel's char arrays (int8 in bpf2go's Go) as bytes.
func int8s(b []int8) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

func cstring(b []int8) string {
	s := int8s(b)
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// names interns command names: a node runs few distinct ones, and every
// event carries one. Each reader has its own.
type names map[[16]byte]string

func (n names) comm(c [16]int8) string {
	k := *(*[16]byte)(unsafe.Pointer(&c))
	if s, ok := n[k]; ok {
		return s
	}
	if len(n) >= 4096 {
		clear(n)
	}
	s := cstring(c[:])
	n[k] = s
	return s
}

// splitArgs splits the kernel's NUL-separated argv: one string, cut.
func splitArgs(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	all := string(b)
	out := make([]string, 0, bytes.Count(b, []byte{0})+1)
	for {
		i := strings.IndexByte(all, 0)
		if i < 0 {
			return append(out, all)
		}
		out = append(out, all[:i])
		all = all[i+1:]
	}
}

// SelectorNames names the selectors of a decision with the policy that made it.
func (e *Engine) SelectorNames(ev *event.Event) ([]string, error) {
	p := e.PolicyOf(ev.Generation)
	if p == nil {
		return nil, errors.New("the policy of this decision has been forgotten")
	}
	return p.MatchedSelectors(policy.Decision{Type: ev.Op.Type(), Matched: ev.Matched}), nil
}
