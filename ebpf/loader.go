package ebpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
)

// loader owns the kernel objects: the production object's spec, its maps and
// loaded program sets (objects.go), the links attaching them (attach.go), and
// what is pinned of them (pin.go).
type loader struct {
	spec  *ebpf.CollectionSpec
	specs bpfobj.ProbeSpecs // typed view of spec
	// btf is the kernel's (and its modules') BTF, decoded once for every
	// program set's CO-RE relocations instead of once per set.
	btf *btf.Cache

	maps         bpfobj.ProbeMaps
	telemetry    telemetryPrograms
	enforcement  *enforcementPrograms // nil without BPF LSM
	acl          *aclPrograms         // nil without BPF LSM or without the hook
	fileSyscalls *fileSyscallPrograms // nil with BPF LSM, or disabled
	network      *networkPrograms     // nil without BPF LSM
	accept       any                  // *acceptPrograms or *acceptArgPrograms; nil without BPF LSM
	netSyscalls  *netSyscallPrograms  // nil with BPF LSM, or disabled

	links    []link.Link
	attached map[string]link.Link // by program name: the names links are pinned under

	lsm      LSMStatus
	sessions FeatureStatus
	fileSys  FeatureStatus // file syscalls watched (no BPF LSM)
	// fileMissing: why file syscall programs did not attach, one reason each.
	fileMissing []string
	netSys      FeatureStatus // network syscalls watched (no BPF LSM)
	netMissing  []string

	pinPath  string
	adoption Adoption
	lock     *os.File // the pin directory, locked while this engine is open
}

// loadSpec reads the production object and sets its load-time constants.
func (l *loader) loadSpec(hostNS uint32, ringSize int) error {
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		return fmt.Errorf("load BPF object: %w", err)
	}
	l.spec = spec
	if err := spec.Assign(&l.specs); err != nil {
		return fmt.Errorf("load BPF object: %w", err)
	}
	if err := l.specs.HostPidns.Set(hostNS); err != nil {
		return fmt.Errorf("set host pid namespace: %w", err)
	}
	if ringSize > 0 {
		l.specs.Events.MaxEntries = uint32(ringSize)
	}
	l.attached = map[string]link.Link{}
	l.btf = btf.NewCache()
	return nil
}

// releaseSpec drops the object's spec and the decoded kernel BTF once every
// program is loaded and attached: several MiB of heap that nothing reads
// again (a new policy fills maps; it loads no program).
func (l *loader) releaseSpec() {
	l.spec, l.specs, l.btf = nil, bpfobj.ProbeSpecs{}, nil
}

// load creates the maps (or takes the pinned ones, reused) and loads the
// program sets this kernel and configuration call for.
//
// CO-RE relocates against the kernel's BTF and every loaded module's: overlayfs's
// inode (the executable layer) is a module's type on many kernels. If overlayfs
// is loaded only later, its files report LayerUnknown until the next start.
func (l *loader) load(reused map[string]*ebpf.Map, fileSyscalls, netSyscalls bool) error {
	if err := l.spec.LoadAndAssign(&l.maps, &ebpf.CollectionOptions{MapReplacements: reused, Cache: l.btf}); err != nil {
		return fmt.Errorf("create BPF maps: %w", err)
	}
	shared := &ebpf.CollectionOptions{MapReplacements: mapsByName(&l.maps), Cache: l.btf}
	if err := l.loadSet(&l.telemetry, shared); err != nil {
		return err
	}
	if l.lsm.Available {
		l.enforcement = &enforcementPrograms{}
		if err := l.loadSet(l.enforcement, shared); err != nil {
			return err
		}
		if !l.lsmHookMissing(l.specs.EnforceInodeSetAcl.AttachTo) {
			l.acl = &aclPrograms{}
			if err := l.loadSet(l.acl, shared); err != nil {
				return err
			}
		}
	}
	if l.lsm.Available {
		l.network = &networkPrograms{}
		if err := l.loadSet(l.network, shared); err != nil {
			return err
		}
		if l.acceptTakesArg() {
			l.accept = &acceptArgPrograms{}
		} else {
			l.accept = &acceptPrograms{}
		}
		if err := l.loadSet(l.accept, shared); err != nil {
			return err
		}
	}
	if !l.lsm.Available && netSyscalls {
		l.netSyscalls = &netSyscallPrograms{}
		if err := l.loadSet(l.netSyscalls, shared); err != nil {
			return err
		}
	}
	// Without BPF LSM, file operations are watched at syscall exits instead.
	if !l.lsm.Available && fileSyscalls {
		l.fileSyscalls = &fileSyscallPrograms{}
		if err := l.loadSet(l.fileSyscalls, shared); err != nil {
			return err
		}
	}
	return nil
}

func (l *loader) loadSet(set any, opts *ebpf.CollectionOptions) error {
	err := l.spec.LoadAndAssign(set, opts)
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("load BPF programs: %+v", ve)
	}
	if err != nil {
		return fmt.Errorf("load BPF programs: %w", err)
	}
	return nil
}

// sets are the loaded program sets, in the order they attach: telemetry
// before enforcement.
func (l *loader) sets() []any {
	out := []any{&l.telemetry}
	if l.fileSyscalls != nil {
		out = append(out, l.fileSyscalls)
	}
	if l.enforcement != nil {
		out = append(out, l.enforcement)
	}
	if l.acl != nil {
		out = append(out, l.acl)
	}
	if l.netSyscalls != nil {
		out = append(out, l.netSyscalls)
	}
	if l.network != nil {
		out = append(out, l.network)
	}
	if l.accept != nil {
		out = append(out, l.accept)
	}
	return out
}

// programs are every loaded program, by set.
func (l *loader) programs() []namedProgram {
	var out []namedProgram
	for _, s := range l.sets() {
		out = append(out, programsOf(s)...)
	}
	return out
}

// closeObjects detaches the programs (closing this process's links; pinned
// ones stay) and releases the programs and maps.
func (l *loader) closeObjects() {
	for _, lk := range l.links {
		lk.Close()
	}
	l.links = nil
	for _, s := range l.sets() {
		closeSet(s)
	}
	l.maps.Close()
	if l.lock != nil {
		l.lock.Close()
	}
}

// lsmHookMissing reports whether this kernel lacks an LSM hook some kernels have
// (inode_set_acl came in 6.2; before it, ACLs are set as xattrs, which
// inode_setxattr sees).
func (l *loader) lsmHookMissing(hook string) bool {
	kernel, err := l.btf.Kernel()
	if err != nil {
		return false // the load reports what is wrong
	}
	var fn *btf.Func
	return kernel.TypeByName("bpf_lsm_"+hook, &fn) != nil
}

// acceptTakesArg reports whether this kernel's inet_csk_accept is the 6.10 one,
// (sk, struct proto_accept_arg *), rather than (sk, flags, err, kern).
func (l *loader) acceptTakesArg() bool {
	kernel, err := l.btf.Kernel()
	if err != nil {
		return false
	}
	var fn *btf.Func
	if kernel.TypeByName("inet_csk_accept", &fn) != nil {
		return false
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	return ok && len(proto.Params) == 2
}
