package ebpf

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
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

// A superseded policy is kept, to name the selectors of its decisions, until the
// reader has passed events stamped retireAfter after the swap: a program reads the
// generation microseconds before it stamps its event, so by then every decision
// the old policy made has been read, however many swaps came in between or however
// long the ring's backlog was. maxRetiring bounds what a stalled reader keeps.
const (
	retireAfter = time.Second
	maxRetiring = 1024
)

// superseded is a generation that is no longer live, and since when.
type superseded struct {
	generation uint32
	at         time.Duration
}

// Engine is the loaded kernel engine.
type Engine struct {
	coll     *ebpf.Collection
	links    []link.Link
	reader   *ringbuf.Reader
	waiter   *ringWaiter
	lsm      LSMStatus
	sessions FeatureStatus
	fileSys  FeatureStatus // file syscalls watched (no BPF LSM)
	// fileMissing: why watch_* programs did not attach, one reason each.
	fileMissing []string
	dryRun      bool
	hostNS      uint32
	pending     []event.Event // user-space decisions waiting to be read (no BPF LSM)
	// workloads: what fork decisions need of workload processes, by pid
	// (no BPF LSM; see detect.go). Reader only.
	workloads map[uint32]workloadProc
	rec       ringbuf.Record
	names     names   // the reader's interned command names
	sys       Syscall // the last file syscall record read (no BPF LSM)
	// flushInterval: see Options.FlushInterval.
	flushInterval time.Duration

	mu         sync.Mutex
	generation uint32 // counter; slot = generation & 1
	live       *compiled
	history    map[uint32]*policy.Policy
	retiring   []superseded // oldest first
	// retireAt is when the oldest of retiring may go (event clock), read by the
	// reader on every event without the lock.
	retireAt   atomic.Int64
	written    [2]writtenKeys // entries of each slot, to clear before reuse
	containers map[uint64]*policy.Operation
	// slotLive: the current slot holds a policy in the kernel, though live may be
	// nil (adopted from pinned maps without its source).
	slotLive bool

	pinPath, stateDir string
	attached          map[string]link.Link // by program name
	adoption          Adoption
	lock              *os.File // the pin directory, locked while this engine is open
	closed            bool
}

// writtenKeys are the hash and trie entries of one slot, map by map.
type writtenKeys map[string][]any

// Open loads and attaches the programs. Without a policy nothing is enforced;
// call Swap.
func Open(opts Options) (*Engine, error) {
	_ = rlimit.RemoveMemlock() // only needed before kernel 5.11's memcg accounting
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		return nil, fmt.Errorf("load BPF object: %w", err)
	}
	hostNS := opts.HostPIDNamespace
	if hostNS == 0 {
		if hostNS, err = pidNamespace("self"); err != nil {
			return nil, err
		}
	}
	if err := spec.Variables["host_pidns"].Set(hostNS); err != nil {
		return nil, fmt.Errorf("set host pid namespace: %w", err)
	}
	e := &Engine{dryRun: opts.DryRun, hostNS: hostNS, flushInterval: cmp.Or(opts.FlushInterval, defaultFlushInterval),
		history: map[uint32]*policy.Policy{}, containers: map[uint64]*policy.Operation{}, names: names{},
		pinPath: opts.PinPath, stateDir: opts.StateDir, attached: map[string]link.Link{}}
	e.retireAt.Store(math.MaxInt64)
	if opts.DisableLSM {
		e.lsm = LSMStatus{Reason: "BPF LSM disabled by configuration"}
	} else {
		e.lsm = probeLSM(spec)
	}
	for name := range spec.Programs {
		if strings.HasPrefix(name, "empty_") || strings.HasPrefix(name, "bench_") {
			delete(spec.Programs, name) // benchmark baselines and producers
		}
	}
	if opts.RingBufferSize > 0 {
		spec.Maps["events"].MaxEntries = uint32(opts.RingBufferSize)
	}
	delete(spec.Programs, "probe_lsm")
	for name, ps := range spec.Programs {
		if strings.HasPrefix(name, "enforce_") && (!e.lsm.Available || lsmHookMissing(ps.AttachTo)) {
			delete(spec.Programs, name)
		}
	}
	old, reuse, err := e.findPinned(spec, opts)
	if err != nil {
		return nil, err
	}
	if old != nil {
		defer old.close()
	}
	var collOpts ebpf.CollectionOptions
	if reuse {
		collOpts.MapReplacements = map[string]*ebpf.Map{}
		for _, name := range pinnable(spec.Maps) {
			collOpts.MapReplacements[name] = old.maps[name]
		}
	}
	// Without BPF LSM, file operations are watched at syscall exits instead.
	for name := range spec.Programs {
		if strings.HasPrefix(name, "watch_") && (e.lsm.Available || opts.DisableFileSyscalls) {
			delete(spec.Programs, name)
		}
	}
	// CO-RE relocates against the kernel's BTF and every loaded module's: overlayfs's
	// inode (the executable layer) is a module's type on many kernels. If overlayfs
	// is loaded only later, its files report LayerUnknown until the next start.
	e.coll, err = ebpf.NewCollectionWithOptions(spec, collOpts)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF programs: %+v", ve)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	if old != nil {
		if reuse {
			err = e.adoptReused()
		} else {
			err = e.adoptFresh(old, spec)
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
	if err := e.attachAll(spec); err != nil {
		e.Close()
		return nil, err
	}
	switch {
	case opts.DisableFileSyscalls:
		e.fileSys = FeatureStatus{Reason: "file selectors are not evaluated: file syscalls are not watched (disabled by configuration)"}
	case !e.lsm.Available:
		e.fileSys = e.fileSyscallStatus()
	}
	if e.pinPath != "" {
		if err := e.handOff(spec, old, !reuse); err != nil {
			e.Close()
			return nil, fmt.Errorf("pin to %s: %w", e.pinPath, err)
		}
	}
	if e.reader, err = ringbuf.NewReader(e.coll.Maps["events"]); err != nil {
		e.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	e.reader.SetDeadline(time.Unix(1, 0)) // reads never block: the waiter waits
	if e.waiter, err = newRingWaiter(e.coll.Maps["events"]); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// lsmHookMissing reports whether this kernel lacks an LSM hook some kernels have
// (inode_set_acl came in 6.2; before it, ACLs are set as xattrs, which
// inode_setxattr sees).
func lsmHookMissing(hook string) bool {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return false // the load reports what is wrong
	}
	var fn *btf.Func
	return kernel.TypeByName("bpf_lsm_"+hook, &fn) != nil
}

// probeLSM loads and attaches a do-nothing LSM program to learn whether this kernel
// runs BPF LSM programs at all.
func probeLSM(spec *ebpf.CollectionSpec) LSMStatus {
	if data, err := os.ReadFile("/sys/kernel/security/lsm"); err == nil && !strings.Contains(","+strings.TrimSpace(string(data))+",", ",bpf,") {
		return LSMStatus{Reason: fmt.Sprintf("BPF LSM is not enabled (active LSMs: %s); add bpf to the lsm= kernel boot parameter", strings.TrimSpace(string(data)))}
	}
	prog, err := ebpf.NewProgram(spec.Programs["probe_lsm"])
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

func (e *Engine) setConfig() error {
	cfg := bpfobj.ProbeCdConfig{Generation: e.generation}
	if !e.dryRun {
		cfg.Enforce = 1
	}
	if err := e.coll.Maps["config_map"].Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Swap compiles p and makes it the enforced policy in one step. On error the
// previous policy stays in force.
func (e *Engine) Swap(p *policy.Policy) error {
	c, err := compile(p)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.generation + 1
	if e.live == nil && !e.slotLive {
		next = e.generation // the first policy goes into the empty current slot
	}
	slot := next & 1
	if err := e.clearSlot(slot); err != nil {
		return err
	}
	if err := e.writeSlot(slot, c); err != nil {
		return err
	}
	if err := e.savePolicy(next, p); err != nil {
		return err
	}
	prev := e.generation
	e.generation = next
	if err := e.setConfig(); err != nil {
		e.generation = prev
		return err
	}
	e.slotLive = true
	e.prunePolicies()
	if e.live != nil {
		e.retiring = append(e.retiring, superseded{prev, event.Now()})
		if len(e.retiring) > maxRetiring {
			delete(e.history, e.retiring[0].generation)
			e.retiring = e.retiring[1:]
		}
		e.scheduleRetire()
	}
	e.live = c
	e.history[next] = p
	return nil
}

// retire forgets the superseded policies whose decisions were all read before
// an event stamped t.
func (e *Engine) retire(t time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.retiring) > 0 && e.retiring[0].at+retireAfter < t {
		delete(e.history, e.retiring[0].generation)
		e.retiring = e.retiring[1:]
	}
	e.scheduleRetire()
}

// scheduleRetire sets retireAt from the oldest superseded policy. Under mu.
func (e *Engine) scheduleRetire() {
	next := int64(math.MaxInt64)
	if len(e.retiring) > 0 {
		next = int64(e.retiring[0].at + retireAfter)
	}
	e.retireAt.Store(next)
}

func (e *Engine) clearSlot(slot uint32) error {
	for name, keys := range e.written[slot] {
		for _, k := range keys {
			if err := e.coll.Maps[name].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("clear %s: %w", name, err)
			}
		}
	}
	e.written[slot] = writtenKeys{}
	return nil
}

// put writes one entry of a slot and remembers it for clearSlot.
func (e *Engine) put(slot uint32, mapName string, k, v any) error {
	if err := e.coll.Maps[mapName].Put(k, v); err != nil {
		return fmt.Errorf("write %s: %w", mapName, err)
	}
	if e.written[slot] == nil {
		e.written[slot] = writtenKeys{}
	}
	e.written[slot][mapName] = append(e.written[slot][mapName], k)
	return nil
}

func (e *Engine) writeSlot(slot uint32, c *compiled) error {
	for name, bits := range c.names {
		k := bpfobj.ProbeNameKey{Generation: slot}
		for i := 0; i < len(name) && i < len(k.Comm)-1; i++ {
			k.Comm[i] = int8(name[i])
		}
		if err := e.put(slot, "names", k, bits); err != nil {
			return err
		}
	}
	for mapName, entries := range map[string]map[string]pathEntry{"paths": c.paths, "file_paths": c.filePaths} {
		for _, path := range sortedKeys(entries) {
			pe := entries[path]
			k := bpfobj.ProbePathKey{Prefixlen: uint32(8 * (1 + len(path)))}
			k.Data[0] = uint8(slot)
			copy(k.Data[1:], path)
			v := bpfobj.ProbePathVal{Exact: pe.exact, Desc: pe.desc, Children: pe.children, Len: pe.len, Dirlen: pe.dirlen}
			if err := e.put(slot, mapName, k, v); err != nil {
				return err
			}
		}
	}
	for dir, bits := range c.fileTrees {
		k := bpfobj.ProbeTreeKey{Generation: slot}
		for i := 0; i < len(dir) && i < len(k.Dir)-1; i++ {
			k.Dir[i] = int8(dir[i])
		}
		if err := e.put(slot, "file_trees", k, bits); err != nil {
			return err
		}
	}
	for cg, meta := range e.containers {
		if err := e.putContainer(slot, c, cg, meta); err != nil {
			return err
		}
	}
	if err := e.coll.Maps["file_policies"].Put(slot, c.file); err != nil {
		return fmt.Errorf("write file policy: %w", err)
	}
	if err := e.coll.Maps["policies"].Put(slot, c.policy); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	return nil
}

func (e *Engine) putContainer(slot uint32, c *compiled, cgroupID uint64, meta *policy.Operation) error {
	pm, fm := c.containerMasks(meta)
	k := bpfobj.ProbeContainerKey{CgroupId: cgroupID, Generation: slot}
	// No matching container-scoped selector: absence says the same.
	if pm != 0 {
		if err := e.put(slot, "containers", k, pm); err != nil {
			return err
		}
	}
	if fm != 0 {
		if err := e.put(slot, "file_containers", k, fm); err != nil {
			return err
		}
	}
	return nil
}

// SetContainer records a container's image and Kubernetes metadata (the container
// and Kubernetes fields of meta) for the cgroup its processes run in, so selectors
// with container conditions apply to it.
func (e *Engine) SetContainer(cgroupID uint64, meta policy.Operation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers[cgroupID] = &meta
	if e.live == nil {
		return nil
	}
	return e.putContainer(e.generation&1, e.live, cgroupID, &meta)
}

// RemoveContainer forgets a container that is gone.
func (e *Engine) RemoveContainer(cgroupID uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.containers, cgroupID)
	for slot := range uint32(2) {
		k := bpfobj.ProbeContainerKey{CgroupId: cgroupID, Generation: slot}
		for _, m := range []string{"containers", "file_containers"} {
			if err := e.coll.Maps[m].Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
		}
	}
	return nil
}

// PolicyOf returns the policy that generation decided with, if still known.
func (e *Engine) PolicyOf(generation uint32) *policy.Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.history[generation]
}

// Live is the live policy and its generation, read together under one lock: a
// swap in between cannot pair one generation with another's policy. p is nil
// before the first Swap.
func (e *Engine) Live() (generation uint32, p *policy.Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.generation, e.history[e.generation]
}

// BlockingInForce reports whether blocking responses block right now: the
// kernel can block, this is no dry run, and the live policy has responses that
// block.
func (e *Engine) BlockingInForce() bool {
	if !e.Enforcing() {
		return false
	}
	_, p := e.Live()
	return p != nil && (p.Blocks(policy.Process) || p.Blocks(policy.File))
}

// Generation is the live policy's generation counter.
func (e *Engine) Generation() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.generation
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
	for i, dst := range []*uint64{&s.RingbufDrops, &s.PathErrors, &s.Decisions, &s.Blocks} {
		var per []uint64
		if err := e.coll.Maps["stats"].Lookup(uint32(i), &per); err != nil {
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
	if e.waiter != nil {
		e.waiter.close()
	}
	if e.reader != nil {
		e.reader.Close()
	}
	for _, l := range e.links {
		l.Close()
	}
	e.links = nil
	if e.coll != nil {
		e.coll.Close()
	}
	if e.lock != nil {
		e.lock.Close()
	}
	return nil
}
