package ebpf

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/requirements"
)

// Options configure Open.
type Options struct {
	// HostPIDNamespace is the inode of the node's pid namespace; 0 means the one
	// this process runs in.
	HostPIDNamespace uint32
	// DryRun evaluates and reports decisions but never blocks.
	DryRun bool
	// DisableLSM loads telemetry only, as on a kernel without BPF LSM.
	DisableLSM bool
	// DisableFileSyscalls leaves file syscalls unwatched without BPF LSM
	// (file selectors are then not evaluated): the baseline of
	// BenchmarkFileSyscalls.
	DisableFileSyscalls bool
	// DisableNetworkSyscalls leaves network syscalls unwatched without BPF LSM
	// (network selectors are then not evaluated).
	DisableNetworkSyscalls bool
	// RingBufferSize is the event ring's size in bytes: a power of two and a
	// multiple of the page size. 0 means 16 MiB.
	RingBufferSize int
	// FlushInterval is the longest a telemetry or log-only event waits before Read
	// returns it; alerts and blocks are delivered at once. 0 means 200ms.
	FlushInterval time.Duration
	// PinPath is a directory on the BPF filesystem (e.g. /sys/fs/bpf/cloud-defend)
	// where the programs' links and the maps are pinned, so the last policy stays
	// enforced while no daemon runs; Open adopts what it finds there (see pin.go).
	// "" pins nothing: Close then detaches everything.
	PinPath string
	// StateDir is a directory on disk for what bpffs cannot hold: the sources of
	// the live and the previous policy, and the record of the pinned maps.
	StateDir string
	// ReplacePinnedMaps treats pinned maps as not fitting this build, as an
	// upgrade that changed their layout does: new maps, the live policy
	// recompiled into them. For tests of that path.
	ReplacePinnedMaps bool
}

// LSMStatus says whether blocking is available, and if not, why.
type LSMStatus struct {
	Available bool
	Reason    string
}

// Engine is the loaded kernel engine. It composes three parts, each owning
// its state: the loader (loader.go: the BPF objects, their links, pinning), the
// policy slots (slots.go: generations, policy history, containers, the slot
// writer) and the reader (reader.go: the ring, user-space decisions, names).
type Engine struct {
	loader
	slots
	reader
	closed bool
}

// Open loads and attaches the programs. Without a policy nothing is enforced;
// call Swap.
func Open(opts Options) (*Engine, error) {
	_ = rlimit.RemoveMemlock() // only needed before kernel 5.11's memcg accounting
	hostNS := opts.HostPIDNamespace
	if hostNS == 0 {
		var err error
		if hostNS, err = pidNamespace("self"); err != nil {
			return nil, err
		}
	}
	e := &Engine{}
	e.loader.pinPath = opts.PinPath
	if err := e.loadSpec(hostNS, opts.RingBufferSize); err != nil {
		return nil, err
	}
	e.slots.init(&e.maps, opts.DryRun, opts.StateDir)
	e.reader = reader{names: names{}, hostNS: hostNS, flushInterval: cmp.Or(opts.FlushInterval, defaultFlushInterval)}
	if opts.DisableLSM {
		e.lsm = LSMStatus{Reason: "BPF LSM disabled by configuration"}
	} else {
		e.lsm = probeLSM(e.specs.ProbeLsm)
	}
	old, reuse, err := e.findPinned(e.spec, opts)
	if err != nil {
		return nil, err
	}
	if old != nil {
		defer old.close()
	}
	var reused map[string]*ebpf.Map
	if reuse {
		reused = map[string]*ebpf.Map{}
		for _, name := range probeMapNames() {
			reused[name] = old.maps[name]
		}
	}
	if err := e.load(reused, !opts.DisableFileSyscalls, !opts.DisableNetworkSyscalls); err != nil {
		e.Close()
		return nil, err
	}
	if old != nil {
		if reuse {
			err = e.adoptReused()
		} else {
			err = e.adoptFresh(old, e.spec)
		}
		if err != nil {
			e.Close()
			return nil, err
		}
	}
	if err := e.setConfig(); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.attachAll(); err != nil {
		e.Close()
		return nil, err
	}
	switch {
	case opts.DisableFileSyscalls:
		e.fileSys = FeatureStatus{Reason: "file selectors are not evaluated: file syscalls are not watched (disabled by configuration)"}
	case !e.lsm.Available:
		e.fileSys = e.fileSyscallStatus()
	}
	switch {
	case opts.DisableNetworkSyscalls && !e.lsm.Available:
		e.netSys = FeatureStatus{Reason: "network selectors are not evaluated: network syscalls are not watched (disabled by configuration)"}
	case !e.lsm.Available:
		e.netSys = e.netSyscallStatus()
	}
	if e.pinPath != "" {
		if err := e.handOff(e.spec, old, !reuse); err != nil {
			e.Close()
			return nil, fmt.Errorf("pin to %s: %w", e.pinPath, err)
		}
	}
	if err := e.reader.open(e.maps.Events); err != nil {
		e.Close()
		return nil, err
	}
	e.releaseSpec()
	return e, nil
}

// probeLSM loads and attaches a do-nothing LSM program to learn whether this kernel
// runs BPF LSM programs at all.
func probeLSM(spec *ebpf.ProgramSpec) LSMStatus {
	if data, err := os.ReadFile("/sys/kernel/security/lsm"); err == nil && !strings.Contains(","+strings.TrimSpace(string(data))+",", ",bpf,") {
		return LSMStatus{Reason: fmt.Sprintf("BPF LSM is not enabled (active LSMs: %s); add bpf to the lsm= kernel boot parameter", strings.TrimSpace(string(data)))}
	}
	prog, err := ebpf.NewProgram(spec)
	if errors.Is(err, unix.EPERM) {
		// cilium/ebpf suggests MEMLOCK for any EPERM; with memcg accounting the cause
		// is the kernel refusing BPF trampolines (as on this project's build hosts) or
		// missing capabilities.
		return LSMStatus{Reason: "the kernel refused to load a BPF LSM program (EPERM): BPF trampolines are not permitted on this kernel, or " + requirements.LoadCapabilities() + " are missing; BPF LSM also needs CONFIG_BPF_LSM and bpf in the lsm= boot parameter"}
	}
	if err != nil {
		return LSMStatus{Reason: fmt.Sprintf("the kernel refused a BPF LSM program (%v); it needs CONFIG_BPF_LSM, bpf in lsm=, BPF trampolines, and %s", err, requirements.LoadCapabilities())}
	}
	defer prog.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: prog})
	if err != nil {
		return LSMStatus{Reason: fmt.Sprintf("the kernel refused to attach a BPF LSM program: %v", err)}
	}
	l.Close()
	return LSMStatus{Available: true}
}

func pidNamespace(pid string) (uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+pid+"/ns/pid", &st); err != nil {
		return 0, fmt.Errorf("read pid namespace: %w", err)
	}
	return uint32(st.Ino), nil
}

// FeatureStatus says whether an optional part of the telemetry runs, and if not, why.
type FeatureStatus struct {
	Available bool
	Reason    string
}

// Sessions says whether setsid events are reported.
func (e *Engine) Sessions() FeatureStatus { return e.sessions }

// LSM says whether this engine can block.
func (e *Engine) LSM() LSMStatus { return e.lsm }

// Enforcing reports whether blocking responses block: BPF LSM works and this is not
// a dry run.
func (e *Engine) Enforcing() bool { return e.lsm.Available && !e.dryRun }

// BlockingInForce reports whether blocking responses block right now: the
// kernel can block, this is no dry run, and the live policy has responses that
// block.
func (e *Engine) BlockingInForce() bool {
	if !e.Enforcing() {
		return false
	}
	_, p := e.Live()
	return p != nil && (p.Blocks(policy.Process) || p.Blocks(policy.File) || p.Blocks(policy.Network))
}

// Stats are the kernel's counters, summed over CPUs.
type Stats struct {
	RingbufDrops uint64 // events lost because the ring buffer was full
	PathErrors   uint64 // executables whose path could not be resolved
	Decisions    uint64 // execs that matched a selector
	Blocks       uint64 // execs refused with EPERM
}

// Stats reads the kernel counters.
func (e *Engine) Stats() (Stats, error) {
	var s Stats
	for i, dst := range map[bpfobj.ProbeCdStat]*uint64{
		bpfobj.ProbeCdStatSTAT_RINGBUF_DROPS: &s.RingbufDrops, bpfobj.ProbeCdStatSTAT_PATH_ERRORS: &s.PathErrors,
		bpfobj.ProbeCdStatSTAT_DECISIONS: &s.Decisions, bpfobj.ProbeCdStatSTAT_BLOCKS: &s.Blocks,
	} {
		var per []uint64
		if err := e.maps.Stats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// Close detaches the programs and frees the maps, except what is pinned
// (Options.PinPath): that stays in force until RemovePinned. Pending Read calls
// return ErrClosed.
func (e *Engine) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.reader.close()
	e.closeObjects()
	return nil
}
