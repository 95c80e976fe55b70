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
//
// plus probe_lsm, loaded alone to learn whether BPF LSM works. User space loads
// these as program sets (ebpf/objects.go): telemetry always, enforcement with BPF
// LSM, file syscalls without it.
//
// Policy layout (built by ebpf/compile.go, which documents it in Go terms): every
// selector is one bit of a u64. A condition contributes the set of selectors it
// lets through; the matched set is the AND of all conditions. Maps are keyed by a
// generation slot (0/1) so user space writes a new policy beside the live one and
// flips config_map.generation to swap atomically.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#include "types.h"
#include "maps.h"
#include "path.h"
#include "telemetry.bpf.h"
#include "match.h"
#include "process_enforce.bpf.h"
#include "file_enforce.bpf.h"

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

/* Empty programs on the same hooks: the benchmarks' baseline for "our hook vs an
 * empty hook". Never attached by the engine. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(empty_fork, struct task_struct *parent, struct task_struct *child)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(empty_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(empty_exit, struct task_struct *p)
{
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(empty_bprm_check, struct linux_binprm *bprm, int ret)
{
	return ret;
}

SEC("lsm/task_alloc")
int BPF_PROG(empty_task_alloc, struct task_struct *task, unsigned long clone_flags, int ret)
{
	return ret;
}

/* bench_emit fills the ring with exec-sized events when run through BPF_PROG_RUN:
 * the host benchmark's producer for measuring how fast user space drains the ring.
 * Never attached. */
const volatile __u32 bench_burst = 64;

static long emit_one(__u32 i, void *ctx)
{
	struct exec_event *e = reserve(sizeof(*e) + ARGS_LEN); /* the common exec record */
	if (!e)
		return 0;
	e->hdr.type = EVENT_EXEC;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->filename_len = 0;
	e->args_len = 0;
	e->args_cap = ARGS_LEN;
	e->filename[0] = 0;
	e->proc.pid = i;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("raw_tp")
int bench_emit(void *ctx)
{
	bpf_loop(bench_burst, emit_one, 0, 0);
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(empty_file_open, struct file *file, int ret)
{
	return ret;
}

SEC("lsm/path_mknod")
int BPF_PROG(empty_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev, int ret)
{
	return ret;
}

SEC("lsm/path_unlink")
int BPF_PROG(empty_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	return ret;
}

SEC("lsm/path_chmod")
int BPF_PROG(empty_path_chmod, const struct path *path, umode_t mode, int ret)
{
	return ret;
}

SEC("lsm/path_truncate")
int BPF_PROG(empty_path_truncate, const struct path *path, int ret)
{
	return ret;
}

SEC("lsm/path_rename")
int BPF_PROG(empty_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	return ret;
}

SEC("lsm/path_link")
int BPF_PROG(empty_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry, int ret)
{
	return ret;
}

SEC("lsm/file_permission")
int BPF_PROG(empty_file_permission, struct file *file, int mask, int ret)
{
	return ret;
}

SEC("lsm/mmap_file")
int BPF_PROG(empty_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags,
	     int ret)
{
	return ret;
}

SEC("lsm/file_mprotect")
int BPF_PROG(empty_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot, int ret)
{
	return ret;
}

SEC("lsm/inode_setxattr")
int BPF_PROG(empty_inode_setxattr, void *idmap, struct dentry *dentry, void *name, void *value, __u64 size, int flags,
	     int ret)
{
	return ret;
}

SEC("lsm/inode_removexattr")
int BPF_PROG(empty_inode_removexattr, void *idmap, struct dentry *dentry, void *name, int ret)
{
	return ret;
}

/* Detection-only file telemetry for kernels without BPF LSM: new programs, kept apart. */
#include "file_syscalls.bpf.h"
