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
	e->parent_pidns = task_pidns(parent);
	submit(e, 0);
	return 0;
}

/* Exec paths whole, up to PATH_BUF bytes: the executable and the working
 * directory are written by a walk of their own from the leaf up, each name placed
 * before the one written last (as d_path does), into a per-CPU buffer of this
 * file's, so the record can be reserved at the size they need once their lengths
 * are known. A path longer than PATH_BUF is walked a second time from its known
 * length, keeping the bytes that land in its first PATH_BUF: the record holds its
 * beginning, as for argv, and says it is cut. */
#define XPATH_BUF (PATH_BUF + 256) /* a name (at most 255 bytes) written at any offset below PATH_BUF stays inside */

struct xpath_out {
	__u32 r;     /* where the last name written starts (its '/'), in path or buffer coordinates */
	__u32 total; /* length of the whole path */
	__u32 n;     /* components seen */
	__u32 state; /* 0 walking, 1 reached the root */
	__u32 over;  /* a name did not fit before r: writing stopped */
	__u32 pad;
};

struct exec_paths {
	struct xpath_out o;
	__u8 chunk[CHUNK];
	char buf[2][XPATH_BUF]; /* 0: the executable, 1: the cwd */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_paths);
} exec_paths_map SEC(".maps");

struct xwalk_ctx {
	__u64 dentry;   /* struct dentry * */
	__u64 mnt;      /* struct vfsmount * */
	__u64 mnt_root; /* its root dentry */
	struct exec_paths *s;
	__u32 which; /* buf index */
	__u32 pad;
};

static long xwalk_step(__u32 i, struct xwalk_ctx *c)
{
	struct exec_paths *s = c->s;
	struct xpath_out *o = &s->o;
	if (c->dentry == c->mnt_root && c->mnt) {
		struct mount *m = (struct mount *)((void *)c->mnt - bpf_core_field_offset(struct mount, mnt));
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (parent == m) {
			o->state = 1;
			return 1;
		}
		c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)parent + bpf_core_field_offset(struct mount, mnt);
		c->mnt_root = (__u64)BPF_CORE_READ(parent, mnt.mnt_root);
		return 0;
	}
	__u32 from = bpf_core_field_offset(struct dentry, d_parent);
	__u32 qstr = bpf_core_field_offset(struct dentry, d_name) - from;
	__u32 at_len = qstr + bpf_core_field_offset(struct qstr, len);
	__u32 at_name = qstr + bpf_core_field_offset(struct qstr, name);
	__u64 parent, name;
	__u32 len;
	if (at_name + 8 <= CHUNK && at_len + 4 <= CHUNK) {
		bpf_probe_read_kernel(s->chunk, CHUNK, (void *)(c->dentry + from));
		parent = *(__u64 *)&s->chunk[0];
		len = *(__u32 *)&s->chunk[at_len];
		name = *(__u64 *)&s->chunk[at_name];
	} else {
		struct dentry *d = (struct dentry *)c->dentry;
		parent = (__u64)BPF_CORE_READ(d, d_parent);
		len = BPF_CORE_READ(d, d_name.len);
		name = (__u64)BPF_CORE_READ(d, d_name.name);
	}
	if (parent == c->dentry) {
		o->state = 1;
		return 1;
	}
	o->n++;
	o->total += len + 1;
	c->dentry = parent;
	if (o->over)
		return 0;
	__u32 r = o->r;
	if (len + 1 > r || len > 255) {
		o->over = 1;
		return 0;
	}
	__u32 a = r - len - 1;
	o->r = a;
	if (a >= PATH_BUF)
		return 0; /* second pass: past the first PATH_BUF bytes */
	char *buf = s->buf[c->which & 1];
	buf[a & (PATH_BUF - 1)] = '/';
	__u32 k = PATH_BUF - 1 - a;
	if (k > len)
		k = len;
	barrier_var(k);
	if (k > 0)
		bpf_probe_read_kernel(&buf[(a + 1) & (PATH_BUF - 1)], k & 255, (void *)name);
	return 0;
}

/* xwalk runs one pass from (mnt, d), the path's right edge at r0. */
static __always_inline void xwalk(struct exec_paths *s, __u32 which, struct vfsmount *mnt, struct dentry *d, __u32 r0)
{
	struct xwalk_ctx c = {
		.dentry = (__u64)d,
		.mnt = (__u64)mnt,
		.mnt_root = (__u64)BPF_CORE_READ(mnt, mnt_root),
		.s = s,
		.which = which,
	};
	struct xpath_out *o = &s->o;
	o->r = r0;
	o->total = 0;
	o->n = 0;
	o->state = 0;
	o->over = 0;
	bpf_loop(MAX_STEPS, xwalk_step, &c, 0);
}

/* xresolve resolves (mnt, d) into s->buf[which]: it returns the path's length in
 * the buffer (at most PATH_BUF), its start in *at, and in *cut whether that is not
 * the whole path. */
static __always_inline __u32 xresolve(struct exec_paths *s, __u32 which, struct vfsmount *mnt, struct dentry *d,
				      __u32 *at, __u8 *cut)
{
	struct xpath_out *o = &s->o;
	xwalk(s, which, mnt, d, PATH_BUF);
	*cut = o->state != 1;
	if (!o->over) {
		if (o->n == 0) {
			s->buf[which & 1][PATH_BUF - 1] = '/'; /* the root itself */
			*at = PATH_BUF - 1;
			return 1;
		}
		*at = o->r;
		return PATH_BUF - o->r;
	}
	*cut = 1;
	xwalk(s, which, mnt, d, o->total);
	*at = 0;
	return PATH_BUF;
}

/* clamp bounds v by max where the verifier sees it: the compiler may merge a C
 * comparison into code shared by several record sizes, and lose the bound. */
#define clamp(v, max) asm volatile("if %[n] <= %[m] goto +1; %[n] = %[m];" : [n] "+r"(v) : [m] "i"(max))

/* EXEC_RECORD reserves an exec record with ACAP bytes of argv and PCAP of each
 * path, and copies what it has room for: each bound a constant the verifier
 * checks against the reservation. */
#define EXEC_RECORD(ACAP, PCAP, AMASK, PMASK)                                                                          \
	do {                                                                                                           \
		e = reserve(sizeof(*e) + (ACAP) + 2 * (PCAP));                                                        \
		if (!e)                                                                                                \
			return 0;                                                                                      \
		e->args_cap = (ACAP);                                                                                  \
		e->path_cap = (PCAP);                                                                                  \
		clamp(len, ACAP);                                                                                      \
		if (len > 0)                                                                                           \
			aerr = bpf_probe_read_user(e->args, len & (AMASK), (void *)start);                            \
		if (s) {                                                                                               \
			__u64 el = exe_len, cl = cwd_len;                                                              \
			clamp(el, PCAP);                                                                               \
			clamp(cl, PCAP);                                                                               \
			bpf_probe_read_kernel(&e->args[(ACAP)], el & (PMASK), &s->buf[0][exe_at & (PATH_BUF - 1)]);  \
			bpf_probe_read_kernel(&e->args[(ACAP) + (PCAP)], cl & (PMASK),                               \
					      &s->buf[1][cwd_at & (PATH_BUF - 1)]);                                  \
			e->exe_len = el;                                                                               \
			e->cwd_len = cl;                                                                               \
		}                                                                                                      \
	} while (0)

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	unsigned long len = end - start;
	unsigned long want = len;

	__u32 zero = 0;
	struct exec_paths *s = bpf_map_lookup_elem(&exec_paths_map, &zero);
	__u32 exe_len = 0, cwd_len = 0, exe_at = 0, cwd_at = 0;
	__u8 exe_cut = 1, cwd_cut = 1;
	if (s) {
		struct fs_struct *fs = p->fs;
		struct file *f = bprm->file;
		exe_len = xresolve(s, 0, f->f_path.mnt, f->f_path.dentry, &exe_at, &exe_cut);
		cwd_len = xresolve(s, 1, fs->pwd.mnt, fs->pwd.dentry, &cwd_at, &cwd_cut);
	}

	struct exec_event *e;
	long aerr = len > 0 ? -1 : 0;
	int small = exe_len <= EXEC_PATH_MIN && cwd_len <= EXEC_PATH_MIN;
	if (len <= ARGS_LEN) {
		if (small)
			EXEC_RECORD(ARGS_LEN, EXEC_PATH_MIN, 2 * ARGS_LEN - 1, 2 * EXEC_PATH_MIN - 1);
		else
			EXEC_RECORD(ARGS_LEN, PATH_BUF, 2 * ARGS_LEN - 1, 2 * PATH_BUF - 1);
	} else if (len <= ARGS_MID) {
		if (small)
			EXEC_RECORD(ARGS_MID, EXEC_PATH_MIN, 2 * ARGS_MID - 1, 2 * EXEC_PATH_MIN - 1);
		else
			EXEC_RECORD(ARGS_MID, PATH_BUF, 2 * ARGS_MID - 1, 2 * PATH_BUF - 1);
	} else {
		if (small)
			EXEC_RECORD(ARGS_MAX, EXEC_PATH_MIN, 32768 - 1, 2 * EXEC_PATH_MIN - 1);
		else
			EXEC_RECORD(ARGS_MAX, PATH_BUF, 32768 - 1, 2 * PATH_BUF - 1);
	}
	if (!s) {
		e->exe_len = 0;
		e->cwd_len = 0;
	}
	e->hdr.type = EVENT_EXEC;
	e->hdr.generation = 0;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	__builtin_memset(&e->proc, 0, sizeof(e->proc));
	fill_proc(&e->proc, p);
	const char *fn = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), fn);
	e->filename_len = n > 0 ? n - 1 : 0;
	e->exe_truncated = exe_cut;
	e->cwd_truncated = cwd_cut;
	e->exe_layer = exe_layer(bprm->file);
	e->argc = BPF_CORE_READ(bprm, argc);
	e->args_truncated = want > e->args_cap;
	e->args_len = aerr == 0 ? len : 0;
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
