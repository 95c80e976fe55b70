// SPDX-License-Identifier: GPL-2.0
// cloud-defend kernel programs, one translation unit (one object, one set of maps):
//
//   types.h                 constants, enums (mirrored in Go with bpf2go -type), ring
//                           records, map keys and values, scratch space
//   maps.h                  the shared maps, host_pidns, counter and ring helpers
//   path.h                  the path walker, mount helpers, overlay layers
//   telemetry.bpf.h         tracepoints: fork, exec, exit, setsid (always loaded)
//   match.h                 policy evaluation shared by the enforcement programs
//   process_enforce.bpf.h   LSM: exec (bprm_check_security), fork (task_alloc)
//   file_enforce.bpf.h      LSM: the file hooks (open, write, mmap, mknod, unlink,
//                           chmod, truncate, rename, link, xattr, ACL)
//   file_syscalls.bpf.h     syscall-exit tracepoints (watch_*) that detect file
//                           operations where BPF LSM is not available
//   network.bpf.h           LSM: connect, bind, UDP sends, accepted connections
//   network_syscalls.bpf.h  syscall tracepoints that detect network operations
//                           where BPF LSM is not available
//
// plus probe_lsm, loaded alone to learn whether BPF LSM works. User space loads
// these as program sets (ebpf/objects.go): telemetry always, enforcement with BPF
// LSM, file syscalls without it.
//
// Policy layout (built by ebpf/slotcompile.go, which documents it in Go terms): every
// selector is one bit of a u64. A condition contributes the set of selectors it
// lets through; the matched set is the AND of all conditions. Maps are keyed by a
// generation slot (0/1) so user space writes a new policy beside the live one and
// flips config_map.generation to swap atomically.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#include "types.h"
#include "maps.h"
#include "path.h"
#include "telemetry.bpf.h"
#include "match.h"
#include "process_enforce.bpf.h"
#include "file_enforce.bpf.h"
#include "network.bpf.h"

/* probe_lsm is loaded alone at start to learn whether BPF LSM works here. */
SEC("lsm/bprm_check_security")
int BPF_PROG(probe_lsm, struct linux_binprm *bprm, int ret)
{
	return ret;
}

/* Keep the event types in BTF so bpf2go generates their Go twins. */
struct fork_event *unused_fork_event __attribute__((unused));
struct exit_event *unused_exit_event __attribute__((unused));
struct setsid_event *unused_setsid_event __attribute__((unused));
struct file_event *unused_file_event __attribute__((unused));
struct exec_event *unused_exec_event __attribute__((unused));
struct decision_event *unused_decision_event __attribute__((unused));
struct net_event *unused_net_event __attribute__((unused));

/* Keep the enums in BTF so bpf2go generates their Go constants (-type): the Go
 * twins in package event and policy are checked against them (ebpf enum_test.go). */
enum event_type unused_event_type __attribute__((unused));
enum file_op unused_file_op __attribute__((unused));
enum hook_point unused_hook __attribute__((unused));
enum action unused_action __attribute__((unused));
enum cd_stat unused_cd_stat __attribute__((unused));
enum layer unused_layer __attribute__((unused));
enum process_op unused_process_op __attribute__((unused));
enum sys_op unused_sys_op __attribute__((unused));
enum net_op unused_net_op __attribute__((unused));
enum net_kind unused_net_kind __attribute__((unused));

/* Detection-only file telemetry for kernels without BPF LSM: new programs, kept apart. */
#include "file_syscalls.bpf.h"
#include "network_syscalls.bpf.h"
