// Package ebpf is the kernel engine: it loads cloud-defend's BPF programs, compiles
// policies into their maps, swaps policies atomically, and reads kernel events.
//
// # Layout
//
// Engine composes three parts, each owning its state: the loader (loader.go,
// objects.go, attach.go, pin.go: the BPF objects loaded as typed program sets,
// their links, pinning), the policy slots (slots.go, with slotcompile.go, the
// compiler of a policy into a slot's map entries) and the reader (reader.go,
// events.go, detect.go, sysfile.go, wake.go: the ring, decoding, user-space
// detection without BPF LSM). The C is in bpf/ (cloud_defend.bpf.c lists its
// parts); the benchmarks' programs are in an object of their own (bench.bpf.c).
//
// Tests: *_test.go run on the host (where this kernel allows: without BPF LSM);
// *_vmguest_test.go are built with the vmguest tag and run inside the VM that
// TestInVM (vm_host_test.go) boots; TestInVMBench (vmbench_host_test.go, tag
// vmbench) runs the VM benchmarks there.
//
// # Scope: what is a container
//
// Policies apply to container workloads. The kernel tells a container's process from
// the node's own by its pid namespace: a task whose pid namespace is not the one
// cloud-defend was started in (the host's; the agent runs with hostPID) is a
// workload. Processes of hostPID pods are therefore treated as the node's.
//
// # The first instant of a container
//
// Conditions on the executable, its name, the session and the operation are matched
// in the kernel itself, so selectors made only of those ("container-agnostic")
// apply to every container from its first exec, before anything is known about it.
// Container and Kubernetes conditions are resolved in user space into a per-cgroup
// selector mask (SetContainer); until a container's metadata arrives, its
// container-scoped selectors do not match. For a block that means: a block scoped to
// an image starts when the image is known, and an exclude scoped to an image (for
// example "block everywhere except nginx") is not yet in effect, so the block
// applies — the window fails closed.
//
// # Hot swap
//
// Every map entry carries a generation slot (0 or 1). Swap writes the new policy into
// the idle slot beside the live one, then flips config.generation; one program run
// reads the generation once, so it sees the old policy or the new one, never a mix.
// The idle slot's old entries are cleared before it is rewritten, one swap later.
// Decision events carry the generation counter, so matched selector names come from
// the policy that decided.
//
// # Telemetry
//
// tp_btf sched_process_fork/exec/exit and the setsid syscall tracepoint report every
// process with its ids, session, namespaces, cgroup, credentials and tty; exec
// events carry argv and the executable and working directory resolved by a dentry
// walk from the task's own root (so container paths are the container's), whole up
// to PATH_MAX (4096 bytes; longer ones keep their beginning and say so), in a
// record reserved at one of six sizes after their lengths are known. Telemetry
// and log-only decisions are batched: the reader is woken for alerts, blocks and a
// filling ring, and otherwise polls (Options.FlushInterval). A full ring drops
// events and counts them (Stats.RingbufDrops); nothing is lost silently.
//
// # File operations
//
// LSM hooks on file_open, file_permission and the path_* hooks map each change to a
// policy operation (createFile, modifyExecutable, ...) on the path the container
// sees; docs/file-operations.md has the table, the path rules and the volume rules.
//
// # Network operations
//
// LSM hooks socket_connect, socket_bind and socket_sendmsg (UDP sends with an
// address) and an fexit program on inet_csk_accept (the accepted connection and
// its peer) judge network selectors (bpf/network.bpf.h, which has the matching;
// netcompile.go builds its maps: one LPM trie for v4/v6 address prefixes and
// port-range prefixes per generation slot, beside names, executable paths and
// container masks as the other types). A refused accept marks its socket, and
// every send and receive on it fails. Without BPF LSM, the connect, bind,
// accept and UDP send syscalls are watched (bpf/network_syscalls.bpf.h) and
// evaluated in user space (netsys.go). docs/security-model.md says what
// network blocking does not cover.
//
// # Persistent enforcement
//
// With Options.PinPath, links and maps are pinned on bpffs: Close leaves them
// attached, so the last policy outlives the daemon, and the next Open adopts them
// with no unprotected moment (pin.go has the rules). RemovePinned takes them away.
//
// # Without BPF LSM
//
// Where the kernel cannot run LSM programs (no bpf in the lsm= list, or no BPF
// trampolines), Open loads the telemetry tracepoints alone and reports why blocking
// is off; it never claims to block.
package ebpf
