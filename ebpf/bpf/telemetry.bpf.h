/* SPDX-License-Identifier: GPL-2.0 */
/* Process telemetry: the fork, exec, exit and setsid tracepoints, and the
 * process fields every record carries. */
#ifndef __CLOUD_DEFEND_TELEMETRY_BPF_H__
#define __CLOUD_DEFEND_TELEMETRY_BPF_H__

/* The pid namespace a task runs in is the one of its deepest pid number. The
 * variable index needs a probe read; everything else below is a direct load from
 * a BTF pointer (tracepoint and LSM arguments are typed), which costs no helper
 * call. */
static __always_inline __u32 task_pidns(struct task_struct *t)
{
	struct pid *pid = t->thread_pid;
	unsigned int level = pid->level;
	return BPF_CORE_READ(pid, numbers[level & 31].ns, ns.inum);
}

static __always_inline void fill_proc(struct proc_info *p, struct task_struct *t)
{
	p->pid = t->tgid;
	p->tid = t->pid;
	p->ppid = t->real_parent->tgid;
	struct signal_struct *sig = t->signal;
	p->pgid = sig->pids[PIDTYPE_PGID]->numbers[0].nr;
	p->sid = sig->pids[PIDTYPE_SID]->numbers[0].nr;
	p->pidns = task_pidns(t);
	p->mntns = t->nsproxy->mnt_ns->ns.inum;
	const struct cred *cred = t->cred;
	p->uid = cred->uid.val;
	p->euid = cred->euid.val;
	p->gid = cred->gid.val;
	p->egid = cred->egid.val;
	struct tty_struct *tty = sig->tty;
	if (tty) {
		p->tty_major = tty->driver->major;
		p->tty_minor = tty->driver->minor_start + tty->index;
	}
	p->start_ns = t->start_boottime;
	p->cgroup_id = t->cgroups->dfl_cgrp->kn->id;
	__builtin_memcpy(p->comm, t->comm, TASK_COMM_LEN);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */
	struct fork_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.type = EVENT_FORK;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	fill_proc(&e->proc, child);
	e->parent_tid = BPF_CORE_READ(parent, pid);
	submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	unsigned long len = end - start;
	struct exec_event *e;
	__u32 cap;
	if (len <= ARGS_LEN) {
		e = reserve(sizeof(*e) + ARGS_LEN);
		cap = ARGS_LEN;
	} else if (len <= ARGS_MID) {
		e = reserve(sizeof(*e) + ARGS_MID);
		cap = ARGS_MID;
	} else {
		e = reserve(sizeof(*e) + ARGS_MAX);
		cap = ARGS_MAX;
	}
	if (!e)
		return 0;
	e->hdr.type = EVENT_EXEC;
	e->hdr.generation = 0;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	__builtin_memset(&e->proc, 0, sizeof(e->proc));
	fill_proc(&e->proc, p);
	const char *fn = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), fn);
	e->filename_len = n > 0 ? n - 1 : 0;

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (s) {
		struct fs_struct *fs = p->fs;
		struct file *f = bprm->file;
		e->exe_truncated = resolve(s, f->f_path.mnt, f->f_path.dentry, e->exe);
		e->cwd_truncated = resolve(s, fs->pwd.mnt, fs->pwd.dentry, e->cwd);
	} else {
		e->exe[0] = 0;
		e->cwd[0] = 0;
	}
	e->exe_layer = exe_layer(bprm->file);

	e->argc = BPF_CORE_READ(bprm, argc);
	e->args_cap = cap;
	e->args_truncated = len > cap;
	e->args_len = 0;
	/* One copy per size: each bound is a constant the verifier checks against
	 * its reservation. */
	long err = -1;
	if (cap == ARGS_LEN) {
		if (len > ARGS_LEN)
			len = ARGS_LEN;
		if (len > 0)
			err = bpf_probe_read_user(e->args, len & (2 * ARGS_LEN - 1), (void *)start);
	} else if (cap == ARGS_MID) {
		if (len > ARGS_MID)
			len = ARGS_MID;
		err = bpf_probe_read_user(e->args, len & (2 * ARGS_MID - 1), (void *)start);
	} else {
		if (len > ARGS_MAX)
			len = ARGS_MAX;
		err = bpf_probe_read_user(e->args, len & (32768 - 1), (void *)start);
	}
	if (err == 0)
		e->args_len = len;
	submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0;
	struct exit_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.type = EVENT_EXIT;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	fill_proc(&e->proc, p);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	submit(e, 0);
	return 0;
}

/* A new session: the process becomes a session leader without a controlling
 * terminal. No BTF tracepoint or LSM hook sees setsid, so this is the syscall
 * tracepoint (it needs tracefs; the engine mounts it when missing). */
SEC("tracepoint/syscalls/sys_exit_setsid")
int on_setsid(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	struct setsid_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.type = EVENT_SETSID;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	fill_proc(&e->proc, (struct task_struct *)bpf_get_current_task_btf());
	submit(e, 0);
	return 0;
}

#endif /* __CLOUD_DEFEND_TELEMETRY_BPF_H__ */
