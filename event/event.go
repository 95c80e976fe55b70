// Package event holds what the kernel engine reports: the events, the process
// they happened to, and the kinds, hook points and layers that describe them.
// It is the leaf every consumer of events imports (enrichment, encoding,
// user-space detection) without linking the engine and cilium/ebpf.
//
// The numeric values are the kernel's (ebpf/bpf/types.h); the engine's tests
// check them against the constants bpf2go generates from the C enums.
package event

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/cloud-defend/cloud-defend/policy"
)

// Kind tells what happened.
type Kind uint32

const (
	Fork            Kind = 1
	Exec            Kind = 2
	Exit            Kind = 3
	ProcessDecision Kind = 4 // a fork or exec fired a response (log, alert or block)
	Setsid          Kind = 5 // a process started a new session
	FileDecision    Kind = 6 // a file operation fired a response (log, alert or block)
	// NetworkDecision: a connect, accept or bind fired a response (log, alert
	// or block); the Network fields say what. Kind 7 is the engine's own.
	NetworkDecision Kind = 8
)

func (k Kind) String() string {
	switch k {
	case Fork:
		return "fork"
	case Exec:
		return "exec"
	case Exit:
		return "exit"
	case ProcessDecision:
		return "process_decision"
	case Setsid:
		return "setsid"
	case FileDecision:
		return "file_decision"
	case NetworkDecision:
		return "network_decision"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Decision reports whether the event is a response's decision (process or file).
func (k Kind) Decision() bool {
	return k == ProcessDecision || k == FileDecision || k == NetworkDecision
}

// HookPoint names where an operation was seen (cloud_defend.hook_point): an
// LSM hook, or without BPF LSM a file syscall's exit tracepoint.
type HookPoint uint32

const (
	HookFileOpen         HookPoint = 1
	HookPathMknod        HookPoint = 2
	HookPathUnlink       HookPoint = 3
	HookPathChmod        HookPoint = 4
	HookPathTruncate     HookPoint = 5
	HookPathRename       HookPoint = 6
	HookPathLink         HookPoint = 7
	HookFilePermission   HookPoint = 8
	HookInodeSetxattr    HookPoint = 9
	HookInodeRemovexattr HookPoint = 10
	// Executable mappings are judged as execs: a process decision's Hook is one
	// of these two for them, else 0.
	HookMmapFile     HookPoint = 11
	HookFileMprotect HookPoint = 12
	HookInodeSetACL  HookPoint = 13
	// Network operations (NetworkDecision).
	HookSocketConnect HookPoint = 14
	HookSocketAccept  HookPoint = 15
	HookSocketBind    HookPoint = 16
	HookSocketSendmsg HookPoint = 17 // the first send of an unconnected UDP socket to an address

	// File operations seen at a syscall's exit (no BPF LSM).
	HookSysOpen   HookPoint = 20 // openat, openat2, creat with write intent
	HookSysUnlink HookPoint = 21 // unlink, unlinkat
	HookSysRename HookPoint = 22 // rename, renameat, renameat2
	HookSysChmod  HookPoint = 23 // chmod, fchmodat, fchmod
	// Network operations seen without BPF LSM.
	HookSysConnect       HookPoint = 24 // connect(2) returned (or is in progress)
	HookSysAccept        HookPoint = 25 // accept(2), accept4(2) returned
	HookSysBind          HookPoint = 26 // bind(2) returned
	HookInetSockSetState HookPoint = 27 // sock:inet_sock_set_state (TCP state changes)
	// More file operations seen at a syscall's exit (no BPF LSM).
	HookSysLink     HookPoint = 30 // link, linkat
	HookSysTruncate HookPoint = 31 // truncate, ftruncate
	HookSysMknod    HookPoint = 32 // mknod, mknodat of a regular file
)

var hookNames = map[HookPoint]string{
	HookFileOpen: "lsm__file_open", HookPathMknod: "lsm__path_mknod", HookPathUnlink: "lsm__path_unlink",
	HookPathChmod: "lsm__path_chmod", HookPathTruncate: "lsm__path_truncate", HookPathRename: "lsm__path_rename",
	HookPathLink: "lsm__path_link", HookFilePermission: "lsm__file_permission", HookInodeSetxattr: "lsm__inode_setxattr",
	HookInodeRemovexattr: "lsm__inode_removexattr", HookMmapFile: "lsm__mmap_file", HookFileMprotect: "lsm__file_mprotect",
	HookInodeSetACL:   "lsm__inode_set_acl",
	HookSocketConnect: "lsm__socket_connect", HookSocketAccept: "lsm__socket_accept", HookSocketBind: "lsm__socket_bind",
	HookSocketSendmsg: "lsm__socket_sendmsg",
	HookSysConnect:    "tracepoint__sys_exit_connect", HookSysAccept: "tracepoint__sys_exit_accept4", HookSysBind: "tracepoint__sys_exit_bind",
	HookInetSockSetState: "tracepoint__sock__inet_sock_set_state",
	HookSysOpen:          "tracepoint__sys_exit_openat", HookSysUnlink: "tracepoint__sys_exit_unlinkat",
	HookSysRename: "tracepoint__sys_exit_renameat2", HookSysChmod: "tracepoint__sys_exit_fchmodat",
	HookSysLink: "tracepoint__sys_exit_linkat", HookSysTruncate: "tracepoint__sys_exit_truncate",
	HookSysMknod: "tracepoint__sys_exit_mknodat",
}

func (h HookPoint) String() string {
	if s, ok := hookNames[h]; ok {
		return s
	}
	return fmt.Sprintf("hook(%d)", uint32(h))
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
	Kind Kind
	// Time is when it happened, since boot (CLOCK_BOOTTIME).
	Time    time.Duration
	Process Process

	ParentTID   uint32 // fork: the thread that forked
	ParentPIDNS uint32 // fork: the forking task's pid namespace (the node's: a node process forked into a new one)

	Filename      string   // exec: the name as executed (may be relative, or a symlink)
	Executable    string   // exec: the resolved executable, as the process's root sees it
	Cwd           string   // exec: the working directory, as the process's root sees it
	PathTruncated bool     // exec: Executable or Cwd is longer than 4096 bytes (or deeper than the walk goes) and holds its beginning
	Args          []string // exec: argv
	ArgsTruncated bool     // exec: argv was longer than the kernel copies (20 KiB)
	ArgsCount     int      // exec: the true argument count, also when Args was cut

	ExitCode uint32 // exit: the raw wait status

	// Decisions (process and file).
	Op          policy.Op      // the operation: fork, exec, or a file operation
	Hook        HookPoint      // file: where it was seen; process: HookMmapFile or HookFileMprotect for an executable mapping judged as an exec, else 0
	OnVolume    bool           // file: the target is on a volume, not the container's root filesystem
	OnFileMount bool           // file: the target is a single-file mount
	Generation  uint32         // the policy generation that decided
	Matched     uint64         // selector bits of that policy
	Actions     policy.Actions // union of the fired responses' actions
	Blocked     bool           // the operation was refused with EPERM
	UserSpace   bool           // decided after the fact in user space (no BPF LSM): detected, not prevented
	Memfd       bool           // the executable is a memfd (fileless)
	Layer       Layer          // exec and decisions: where the executable lives on an overlay rootfs
	Interactive bool           // the session has a controlling terminal
	Path        string         // the resolved executable (process) or target (file), as the container sees it
	PathLen     uint32         // its full length (Path holds at most 255 bytes)

	// Network (NetworkDecision): the socket as the kernel saw it at the hook.
	// Source is the local end for connect and bind, the peer for accept;
	// addresses are IPv4 when the socket speaks IPv4, IPv4-mapped IPv6
	// unmapped.
	Protocol            Protocol
	Source, Destination netip.AddrPort
	Direction           Direction
}

// Protocol is a socket's transport (network.transport).
type Protocol uint8

const (
	ProtocolTCP Protocol = 6  // IPPROTO_TCP
	ProtocolUDP Protocol = 17 // IPPROTO_UDP
)

func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// Direction is network.direction: egress for connect (and UDP sends),
// ingress for accept; bind has none.
type Direction uint8

const (
	DirectionNone Direction = iota
	DirectionEgress
	DirectionIngress
)

func (d Direction) String() string {
	switch d {
	case DirectionEgress:
		return "egress"
	case DirectionIngress:
		return "ingress"
	}
	return ""
}
