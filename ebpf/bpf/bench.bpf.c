// SPDX-License-Identifier: GPL-2.0
// Benchmark programs, in an object of their own (bpf2go identifier Bench) that
// the production engine never loads: empty programs on the engine's hooks (the
// baseline of "our hook vs an empty hook") and bench_emit, the ring buffer
// producer of BenchmarkRingbufDrain. The maps are declared as the production
// object declares them (maps.h), so the benchmark gives bench_emit the
// production events and stats maps (CollectionOptions.MapReplacements).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#include "types.h"
#include "maps.h"

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

SEC("lsm/socket_connect")
int BPF_PROG(empty_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	return ret;
}

SEC("lsm/socket_bind")
int BPF_PROG(empty_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	return ret;
}

SEC("lsm/socket_sendmsg")
int BPF_PROG(empty_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	return ret;
}

SEC("lsm/socket_recvmsg")
int BPF_PROG(empty_socket_recvmsg, struct socket *sock, struct msghdr *msg, int size, int flags, int ret)
{
	return ret;
}

SEC("fexit/inet_csk_accept")
int BPF_PROG(empty_accept, struct sock *sk, int flags, int *err, bool kern, struct sock *newsk)
{
	return 0;
}

/* One empty program for every syscall tracepoint the file syscall programs
 * watch (BenchmarkFileSyscalls attaches it where they attach): the floor of
 * watching a syscall with a tracepoint, which is all a kernel without BPF LSM,
 * trampolines or kprobes offers. */
SEC("tracepoint")
int empty_syscall(void *ctx)
{
	return 0;
}
