package ebpf

import (
	"reflect"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
)

// The production object (bpfobj Probe, bpf/cloud_defend.bpf.c) is loaded as
// bpf2go intends, with LoadAndAssign into typed objects: its maps into the
// generated bpfobj.ProbeMaps, and its programs as sets, each a struct of
// *ebpf.Program fields tagged with their ELF names. Which sets are assigned
// decides what is loaded and attached:
//
//	telemetry     always
//	enforcement   with BPF LSM
//	acl           with BPF LSM, when the kernel has the hook (lsmHookMissing)
//	network       with BPF LSM: connect, bind, sends, and the refused accepts' I/O
//	accept        with BPF LSM, one of two: inet_csk_accept's signature changed in 6.10
//	file syscalls without BPF LSM, unless Options.DisableFileSyscalls
//	net syscalls  without BPF LSM, unless Options.DisableNetworkSyscalls
//
// (probe_lsm, the do-nothing LSM program probeLSM loads alone, is in none.)
//
// The maps are shared by every set: they are loaded first, on their own, and
// each set is then loaded with CollectionOptions.MapReplacements naming all of
// them. One LoadAndAssign into a struct embedding the sets would need a struct
// type per combination of sets; loading them one by one keeps the decision a
// plain if per set. Each set gets its own copy of .rodata (host_pidns, set on
// the spec before any load), which is read-only: nothing else is per load.

// telemetryPrograms report forks, execs, exits and new sessions.
type telemetryPrograms struct {
	OnExec   *ebpf.Program `ebpf:"on_exec"`
	OnExit   *ebpf.Program `ebpf:"on_exit"`
	OnFork   *ebpf.Program `ebpf:"on_fork"`
	OnSetsid *ebpf.Program `ebpf:"on_setsid"`
}

// enforcementPrograms are the BPF LSM programs on hooks every supported kernel
// has: exec and fork (process selectors) and the file hooks (file selectors).
type enforcementPrograms struct {
	EnforceExec             *ebpf.Program `ebpf:"enforce_exec"`
	EnforceFork             *ebpf.Program `ebpf:"enforce_fork"`
	EnforceFileMprotect     *ebpf.Program `ebpf:"enforce_file_mprotect"`
	EnforceFileOpen         *ebpf.Program `ebpf:"enforce_file_open"`
	EnforceFilePermission   *ebpf.Program `ebpf:"enforce_file_permission"`
	EnforceInodeRemovexattr *ebpf.Program `ebpf:"enforce_inode_removexattr"`
	EnforceInodeSetxattr    *ebpf.Program `ebpf:"enforce_inode_setxattr"`
	EnforceMmapFile         *ebpf.Program `ebpf:"enforce_mmap_file"`
	EnforcePathChmod        *ebpf.Program `ebpf:"enforce_path_chmod"`
	EnforcePathLink         *ebpf.Program `ebpf:"enforce_path_link"`
	EnforcePathMknod        *ebpf.Program `ebpf:"enforce_path_mknod"`
	EnforcePathRename       *ebpf.Program `ebpf:"enforce_path_rename"`
	EnforcePathTruncate     *ebpf.Program `ebpf:"enforce_path_truncate"`
	EnforcePathUnlink       *ebpf.Program `ebpf:"enforce_path_unlink"`
}

// aclPrograms are BPF LSM programs on a hook some supported kernels lack:
// inode_set_acl came in 6.2 (before it, ACLs are set as xattrs, which
// inode_setxattr sees).
type aclPrograms struct {
	EnforceInodeSetAcl *ebpf.Program `ebpf:"enforce_inode_set_acl"`
}

// fileSyscallPrograms see workloads' file syscalls at their exits, where BPF LSM
// is not available (bpf/file_syscalls.bpf.h; sysfile.go).
type fileSyscallPrograms struct {
	WatchChmod         *ebpf.Program `ebpf:"watch_chmod"`
	WatchChmodExit     *ebpf.Program `ebpf:"watch_chmod_exit"`
	WatchCreatExit     *ebpf.Program `ebpf:"watch_creat_exit"`
	WatchFchmodat      *ebpf.Program `ebpf:"watch_fchmodat"`
	WatchFchmodatExit  *ebpf.Program `ebpf:"watch_fchmodat_exit"`
	WatchOpenat2Exit   *ebpf.Program `ebpf:"watch_openat2_exit"`
	WatchOpenatExit    *ebpf.Program `ebpf:"watch_openat_exit"`
	WatchRename        *ebpf.Program `ebpf:"watch_rename"`
	WatchRenameExit    *ebpf.Program `ebpf:"watch_rename_exit"`
	WatchRenameat      *ebpf.Program `ebpf:"watch_renameat"`
	WatchRenameat2     *ebpf.Program `ebpf:"watch_renameat2"`
	WatchRenameat2Exit *ebpf.Program `ebpf:"watch_renameat2_exit"`
	WatchRenameatExit  *ebpf.Program `ebpf:"watch_renameat_exit"`
	WatchUnlink        *ebpf.Program `ebpf:"watch_unlink"`
	WatchUnlinkExit    *ebpf.Program `ebpf:"watch_unlink_exit"`
	WatchUnlinkat      *ebpf.Program `ebpf:"watch_unlinkat"`
	WatchUnlinkatExit  *ebpf.Program `ebpf:"watch_unlinkat_exit"`
	WatchLink          *ebpf.Program `ebpf:"watch_link"`
	WatchLinkExit      *ebpf.Program `ebpf:"watch_link_exit"`
	WatchLinkat        *ebpf.Program `ebpf:"watch_linkat"`
	WatchLinkatExit    *ebpf.Program `ebpf:"watch_linkat_exit"`
	WatchTruncate      *ebpf.Program `ebpf:"watch_truncate"`
	WatchTruncateExit  *ebpf.Program `ebpf:"watch_truncate_exit"`
	WatchFtruncate     *ebpf.Program `ebpf:"watch_ftruncate"`
	WatchFtruncateExit *ebpf.Program `ebpf:"watch_ftruncate_exit"`
	WatchFchmod        *ebpf.Program `ebpf:"watch_fchmod"`
	WatchFchmodExit    *ebpf.Program `ebpf:"watch_fchmod_exit"`
	WatchMknod         *ebpf.Program `ebpf:"watch_mknod"`
	WatchMknodExit     *ebpf.Program `ebpf:"watch_mknod_exit"`
	WatchMknodat       *ebpf.Program `ebpf:"watch_mknodat"`
	WatchMknodatExit   *ebpf.Program `ebpf:"watch_mknodat_exit"`
}

// networkPrograms are the BPF LSM programs of network selectors
// (bpf/network.bpf.h).
type networkPrograms struct {
	EnforceSocketBind    *ebpf.Program `ebpf:"enforce_socket_bind"`
	EnforceSocketConnect *ebpf.Program `ebpf:"enforce_socket_connect"`
	EnforceSocketRecvmsg *ebpf.Program `ebpf:"enforce_socket_recvmsg"`
	EnforceSocketSendmsg *ebpf.Program `ebpf:"enforce_socket_sendmsg"`
}

// acceptPrograms judge accepted connections at inet_csk_accept's return, in
// the accepting task: its arguments up to 6.9 (sk, flags, err, kern) ...
type acceptPrograms struct {
	EnforceAccept *ebpf.Program `ebpf:"enforce_accept"`
}

// ... and since 6.10 (sk, arg). Which one loads is read from the kernel's BTF.
type acceptArgPrograms struct {
	EnforceAcceptArg *ebpf.Program `ebpf:"enforce_accept_arg"`
}

// netSyscallPrograms see workloads' connect, bind, accept and UDP sends at
// their syscalls where BPF LSM is not available (bpf/network_syscalls.bpf.h;
// netsys.go).
type netSyscallPrograms struct {
	WatchAccept4Exit *ebpf.Program `ebpf:"watch_accept4_exit"`
	WatchAcceptExit  *ebpf.Program `ebpf:"watch_accept_exit"`
	WatchBind        *ebpf.Program `ebpf:"watch_bind"`
	WatchBindExit    *ebpf.Program `ebpf:"watch_bind_exit"`
	WatchConnect     *ebpf.Program `ebpf:"watch_connect"`
	WatchConnectExit *ebpf.Program `ebpf:"watch_connect_exit"`
	WatchSendmsg     *ebpf.Program `ebpf:"watch_sendmsg"`
	WatchSendmsgExit *ebpf.Program `ebpf:"watch_sendmsg_exit"`
	WatchSendto      *ebpf.Program `ebpf:"watch_sendto"`
	WatchSendtoExit  *ebpf.Program `ebpf:"watch_sendto_exit"`
}

// namedProgram is a loaded program and its ELF name (its field's tag).
type namedProgram struct {
	name string
	prog *ebpf.Program
}

// programsOf lists the programs of a set (a pointer to a struct of tagged
// *ebpf.Program fields; nil: none), by name.
func programsOf(set any) []namedProgram {
	var out []namedProgram
	forTagged(set, func(name string, v reflect.Value) {
		if p, ok := v.Interface().(*ebpf.Program); ok && p != nil {
			out = append(out, namedProgram{name, p})
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// programNames lists the names a set type assigns (set: a pointer to it, may be
// nil-valued), by name.
func programNames(set any) []string {
	var out []string
	forTagged(set, func(name string, v reflect.Value) {
		if v.Type() == reflect.TypeFor[*ebpf.Program]() {
			out = append(out, name)
		}
	})
	sort.Strings(out)
	return out
}

// mapsByName are the loaded maps by their ELF names: the names they are pinned
// under and replaced by (MapReplacements).
func mapsByName(m *bpfobj.ProbeMaps) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	forTagged(m, func(name string, v reflect.Value) {
		if mp, ok := v.Interface().(*ebpf.Map); ok && mp != nil {
			out[name] = mp
		}
	})
	return out
}

// probeMapNames are the names of the production object's maps, as bpf2go's
// ProbeMaps assigns them, sorted: the maps that carry state across daemons
// (pinned). The loader's own sections (.rodata: this load's constants, such as
// host_pidns) are not among them.
func probeMapNames() []string {
	var out []string
	forTagged((*bpfobj.ProbeMaps)(nil), func(name string, _ reflect.Value) { out = append(out, name) })
	sort.Strings(out)
	return out
}

// forTagged calls f with each `ebpf:"name"` field of the struct p points to (its
// zero value when p is a nil pointer).
func forTagged(p any, f func(name string, v reflect.Value)) {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer {
		panic("forTagged: not a pointer to a struct")
	}
	if v.IsNil() {
		v = reflect.New(v.Type().Elem())
	}
	v = v.Elem()
	for i := range v.NumField() {
		if name := v.Type().Field(i).Tag.Get("ebpf"); name != "" {
			f(name, v.Field(i))
		}
	}
}

// closeSet closes a set's programs.
func closeSet(set any) {
	for _, p := range programsOf(set) {
		p.prog.Close()
	}
}
