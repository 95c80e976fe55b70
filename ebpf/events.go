package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/policy"
)

// EventKind tells what happened.
type EventKind uint32

const (
	EventFork     EventKind = 1
	EventExec     EventKind = 2
	EventExit     EventKind = 3
	EventDecision EventKind = 4 // a fork or exec fired a response (log, alert or block)
	EventSetsid   EventKind = 5 // a process started a new session
	EventFile     EventKind = 6 // a file operation fired a response (log, alert or block)
)

// HookPoint names the LSM hook that saw a file operation (cloud_defend.hook_point).
type HookPoint uint32

var hookNames = []string{1: "lsm__file_open", 2: "lsm__path_mknod", 3: "lsm__path_unlink", 4: "lsm__path_chmod",
	5: "lsm__path_truncate", 6: "lsm__path_rename", 7: "lsm__path_link", 8: "lsm__file_permission",
	9: "lsm__inode_setxattr", 10: "lsm__inode_removexattr", 11: "lsm__mmap_file", 12: "lsm__file_mprotect",
	13: "lsm__inode_set_acl"}

// Hook points of executable mappings, judged as execs (Event.Hook of a decision).
const (
	HookMmapFile     HookPoint = 11
	HookFileMprotect HookPoint = 12
)

func (h HookPoint) String() string {
	if int(h) < len(hookNames) && hookNames[h] != "" {
		return hookNames[h]
	}
	if s, ok := sysHookNames[h]; ok {
		return s
	}
	return fmt.Sprintf("hook(%d)", uint32(h))
}

func (k EventKind) String() string {
	switch k {
	case EventFork:
		return "fork"
	case EventExec:
		return "exec"
	case EventExit:
		return "exit"
	case EventDecision:
		return "decision"
	case EventSetsid:
		return "setsid"
	case EventFile:
		return "file"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Layer says where an executable lives when the container's root filesystem is an
// overlay: the drift signal. Files in the writable (upper) layer were added or
// changed after the container started; its image never had them as they are.
type Layer uint8

const (
	LayerNone     Layer = 0 // not on an overlay filesystem
	LayerImage    Layer = 1 // only in the image's read-only (lower) layers
	LayerModified Layer = 2 // copied up: the writable layer holds a changed image file
	LayerAdded    Layer = 3 // only in the writable layer: added after the container started
	LayerUnknown  Layer = 4 // an overlay whose inode layout this kernel's BTF did not reveal
)

var layerNames = []string{"", "image", "modified", "added", "unknown"}

// String is the value of cloud_defend.executable_layer; empty for LayerNone.
func (l Layer) String() string {
	if int(l) < len(layerNames) {
		return layerNames[l]
	}
	return fmt.Sprintf("layer(%d)", uint8(l))
}

// Drift reports whether the executable was added or changed after the container
// started.
func (l Layer) Drift() bool { return l == LayerModified || l == LayerAdded }

// Process is a task as the kernel saw it when the event happened. PIDs are as the
// node sees them.
type Process struct {
	PID, TID, PPID, PGID, SID uint32
	PIDNamespace              uint32 // the namespace the task runs in
	MountNamespace            uint32
	UID, EUID, GID, EGID      uint32
	TTYMajor, TTYMinor        uint32 // 0/0 when there is no controlling terminal
	// Start is the task's start time since boot; with PID, a stable identity.
	Start    time.Duration
	CgroupID uint64 // cgroup v2 id
	Comm     string
}

// Event is one kernel event. Fields beyond Process depend on Kind.
type Event struct {
	Kind EventKind
	// Time is when it happened, since boot (CLOCK_BOOTTIME).
	Time    time.Duration
	Process Process

	ParentTID uint32 // fork: the thread that forked

	Filename      string   // exec: the name as executed (may be relative, or a symlink)
	Executable    string   // exec: the resolved executable, as the process's root sees it
	Cwd           string   // exec: the working directory, as the process's root sees it
	PathTruncated bool     // exec: Executable or Cwd is longer than 255 bytes and was cut
	Args          []string // exec: argv
	ArgsTruncated bool     // exec: argv was longer than the kernel copies (20 KiB)
	ArgsCount     int      // exec: the true argument count, also when Args was cut

	ExitCode uint32 // exit: the raw wait status

	// Decisions (process and file).
	Op          policy.Op      // the operation: fork, exec, or a file operation
	Hook        HookPoint      // file: the LSM hook that saw it; decision: HookMmapFile or HookFileMprotect for an executable mapping judged as an exec, else 0
	OnVolume    bool           // file: the target is on a volume, not the container's root filesystem
	OnFileMount bool           // file: the target is a single-file mount
	Generation  uint32         // the policy generation that decided
	Matched     uint64         // selector bits of that policy
	Actions     policy.Actions // union of the fired responses' actions
	Blocked     bool           // the exec was refused with EPERM
	UserSpace   bool           // decided after the fact in user space (no BPF LSM): detected, not prevented
	Memfd       bool           // the executable is a memfd (fileless)
	Layer       Layer          // exec and decisions: where the executable lives on an overlay rootfs
	Interactive bool           // the session has a controlling terminal
	Path        string         // the resolved executable (process) or target (file), as the container sees it
	Sys         *Syscall       // EventSysfile: the file syscall (no BPF LSM)
	PathLen     uint32         // its full length (Path holds at most 255 bytes)
}

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed

// defaultFlushInterval bounds how long a batched event (telemetry, log-only
// decisions) waits in the ring: the kernel wakes the reader only for alerts, blocks
// and a filling ring, so Read polls this often. Each wake-up has a fixed cost
// (threads woken, the runtime's monitor reset):
// 200 ms took a tenth off its CPU at 5,000 events/s against 50 ms, and documents
// become searchable only at Elasticsearch's next refresh (1 s by default) anyway.
const defaultFlushInterval = 200 * time.Millisecond

// Buffered reports whether Read has an event ready without waiting: false at
// the end of what the kernel has delivered so far, where a reader that batches
// its own output flushes it.
func (e *Engine) Buffered() bool {
	return len(e.pending) > 0 || e.reader.AvailableBytes() > 0
}

// Read blocks until the next kernel event. Only one goroutine may read.
//
// Without BPF LSM the kernel makes no decisions, so Read evaluates the live policy
// on each container exec and fork itself and follows the exec or fork event with a
// decision event (UserSpace set, never blocked): detection keeps working where
// blocking cannot.
func (e *Engine) Read() (Event, error) {
	if len(e.pending) > 0 {
		ev := e.pending[0]
		e.pending = e.pending[1:]
		return ev, nil
	}
	for {
		// One record buffer, reused: Event copies out what it keeps. The
		// reader's deadline is in the past: this never blocks, and reports
		// ErrDeadlineExceeded once the ring is empty.
		err := e.reader.ReadInto(&e.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if werr := e.waiter.wait(e.flushInterval); werr != nil {
				return Event{}, fmt.Errorf("ringbuffer: %w", ErrClosed)
			}
			continue
		}
		if err != nil {
			return Event{}, err
		}
		ev, err := decodeEvent(e.rec.RawSample, e.names)
		if int64(ev.Time) > e.retireAt.Load() {
			e.retire(ev.Time)
		}
		if err == nil && !e.lsm.Available {
			if d, ok := e.observe(&ev); ok {
				e.pending = append(e.pending, d)
			}
		}
		if err == nil && ev.Kind == EventSysfile {
			// Only its decisions (detectFile) go on.
			if len(e.pending) > 0 {
				ev = e.pending[0]
				e.pending = e.pending[1:]
				return ev, nil
			}
			continue
		}
		return ev, err
	}
}

// liveFor reads, under one lock, the live policy's generation and policy and the
// container and Kubernetes metadata of a cgroup: what user-space detection
// evaluates an operation against.
func (e *Engine) liveFor(cgroupID uint64) (uint32, *policy.Policy, policy.Operation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var meta policy.Operation
	if m := e.containers[cgroupID]; m != nil {
		meta = *m
	}
	return e.generation, e.history[e.generation], meta
}

// memfdPath reports whether a resolved executable path is a memfd's.
func memfdPath(exe string) bool {
	return strings.HasPrefix(exe, "/memfd:") && strings.HasSuffix(exe, " (deleted)")
}

// detect evaluates an exec that already happened against the live policy, as the
// kernel would have before it: same scope, same operation fields.
func (e *Engine) detect(ev *Event) (Event, bool) {
	if ev.Process.PIDNamespace == e.hostNS {
		return Event{}, false
	}
	gen, p, meta := e.liveFor(ev.Process.CgroupID)
	if p == nil {
		return Event{}, false
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
		return Event{}, false
	}
	return Event{
		Kind: EventDecision, Time: ev.Time, Process: ev.Process, Op: policy.OpExec, Generation: gen,
		Matched: d.Matched, Actions: d.Actions, Memfd: op.ExecutableIsMemfd, Interactive: op.SessionLeaderInteractive,
		Path: ev.Executable, PathLen: uint32(len(ev.Executable)), UserSpace: true, Layer: ev.Layer,
	}, true
}

func decodeEvent(raw []byte, n names) (Event, error) {
	if len(raw) < 4 {
		return Event{}, fmt.Errorf("short event: %d bytes", len(raw))
	}
	var ev Event
	switch kind := EventKind(binary.NativeEndian.Uint32(raw)); kind {
	case EventFork:
		r, err := view[bpfobj.ProbeForkEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.ParentTID = r.ParentTid
	case EventExec:
		r, err := view[bpfobj.ProbeExecEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.Filename = cstring(r.Filename[:])
		ev.Executable = cstring(r.Exe[:])
		ev.Cwd = cstring(r.Cwd[:])
		ev.PathTruncated = r.ExeTruncated != 0 || r.CwdTruncated != 0
		// argv follows the fixed part, in a record of one of three sizes.
		fixed := int(unsafe.Offsetof(r.Args)) // not Sizeof: args starts before the tail padding
		n := min(int(r.ArgsLen), int(r.ArgsCap), len(raw)-fixed)
		if n < 0 {
			return ev, fmt.Errorf("short exec record: %d bytes", len(raw))
		}
		ev.Args = splitArgs(raw[fixed : fixed+n])
		ev.ArgsTruncated = r.ArgsTruncated != 0
		ev.ArgsCount = int(r.Argc)
		ev.Layer = Layer(r.ExeLayer)
	case EventFile:
		r, err := view[bpfobj.ProbeFileEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.Generation = r.Hdr.Generation
		ev.Op = policy.Op(r.Op)
		ev.Hook = HookPoint(r.Hook)
		ev.Matched = r.Matched
		ev.Actions = policy.Actions(r.Actions)
		ev.Blocked = r.Blocked != 0
		ev.OnVolume = r.OnVolume != 0
		ev.OnFileMount = r.OnFileMount != 0
		ev.Path = cstring(r.Path[:])
		ev.PathLen = r.PathLen
	case EventSetsid:
		r, err := view[bpfobj.ProbeSetsidEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
	case EventExit:
		r, err := view[bpfobj.ProbeExitEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.ExitCode = r.ExitCode
	case EventDecision:
		r, err := view[bpfobj.ProbeDecisionEvent](raw)
		if err != nil {
			return ev, err
		}
		ev = header(r.Hdr, r.Proc, n)
		ev.Generation = r.Hdr.Generation
		ev.Op = policy.OpExec
		if r.Op == 1 {
			ev.Op = policy.OpFork
		}
		ev.Matched = r.Matched
		ev.Actions = policy.Actions(r.Actions)
		ev.Blocked = r.Blocked != 0
		ev.Memfd = r.Memfd != 0
		ev.Layer = Layer(r.ExeLayer)
		ev.Hook = HookPoint(r.Hook)
		ev.Interactive = r.Interactive != 0
		ev.Path = cstring(r.Path[:])
		ev.PathLen = r.PathLen
	case EventSysfile:
		return decodeSysfile(raw, n)
	default:
		return ev, fmt.Errorf("unknown event kind %d", kind)
	}
	return ev, nil
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

func header(h bpfobj.ProbeEventHeader, p bpfobj.ProbeProcInfo, n names) Event {
	return Event{
		Kind: EventKind(h.Type),
		Time: time.Duration(h.TsNs),
		Process: Process{
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
func (e *Engine) SelectorNames(ev *Event) ([]string, error) {
	p := e.PolicyOf(ev.Generation)
	if p == nil {
		return nil, errors.New("the policy of this decision has been forgotten")
	}
	return p.MatchedSelectors(policy.Decision{Type: ev.Op.Type(), Matched: ev.Matched}), nil
}
