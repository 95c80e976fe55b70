/* File telemetry for kernels without BPF LSM (detection only).
 *
 * Where the LSM programs cannot load, file operations are seen after the
 * fact at the exit of the syscalls that make them: openat/openat2/creat with
 * write intent, unlink/unlinkat, rename/renameat/renameat2, chmod/fchmodat/
 * fchmod, link/linkat, truncate/ftruncate, mknod/mknodat of a regular file.
 * The kernel keeps only workloads (tasks outside the node's pid namespace),
 * successful calls, write intent (read from the opened file itself: no
 * sys_enter program for opens, the most frequent call) and operations the
 * live file policy has a selector for; user space maps the call to the
 * policy's operations and evaluates the file selectors (reported, never
 * blocked). An opened file's path is resolved from the file, as the LSM hooks
 * resolve it, and so is a call by descriptor's (fchmod, ftruncate); the other
 * calls' paths are the ones the task passed, with the directory they start
 * from resolved at the call: user space resolves their symlinks and ".." (it
 * needs the task's root, which is not walked here).
 *
 * Included at the end of cloud_defend.bpf.c: it uses its maps and helpers. */

/* The syscall that made a sysfile_event (ebpf.SyscallOp). */
enum sys_op {
	SYS_OPEN = 1,
	SYS_UNLINK = 2,
	SYS_RENAME = 3,
	SYS_CHMOD = 4,
	SYS_LINK = 5,     /* link, linkat: path is the source, path2 the new name */
	SYS_TRUNCATE = 6, /* truncate, ftruncate */
	SYS_MKNOD = 7,    /* mknod, mknodat of a regular file */
};

#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define SYSFILE_BY_FD 1 /* sysfile_event.created for a call by descriptor: path was resolved from the file */

struct sysfile_event {
	struct event_header hdr;
	struct proc_info proc;
	__u32 op;      /* enum sys_op */
	__u32 flags;   /* open: the flags; unlinkat: its flags; renameat2: its flags */
	__u32 mode;    /* chmod: the new mode; open: the file's mode after it */
	__u32 created; /* open: this open created the file (FMODE_CREATED); fchmod, ftruncate: SYSFILE_BY_FD */
	__s32 dfd;     /* the directory fd path is relative to (AT_FDCWD: the cwd) */
	__s32 dfd2;    /* rename: newpath's */
	char path[MAX_PATH + 1];
	char path2[MAX_PATH + 1]; /* rename: the new name */
	/* The directories relative paths start from, resolved at the call (the
	 * task may be gone when user space reads the event); empty for absolute
	 * paths. */
	char base[MAX_PATH + 1];
	char base2[MAX_PATH + 1];
};

/* A call in flight, from its sys_enter to its sys_exit, by thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct sysfile_event);
} sysfile_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sysfile_event);
} sysfile_scratch SEC(".maps");

/* sys_in_scope is in_scope for the syscall tracepoints, which run for every
 * task's calls: when the node's pid namespace is the initial one (the agent runs
 * with hostPID), a task is a workload exactly when its pid is not at level 0, and
 * that is two direct loads; otherwise the namespace is compared as in_scope does. */
static __always_inline struct task_struct *sys_in_scope(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	if (host_pidns == PID_NS_INIT_INO)
		return t->thread_pid->level ? t : 0;
	return task_pidns(t) == host_pidns ? 0 : t;
}

/* dir_of resolves the directory a relative path starts from: the task's
 * working directory, or the directory open at dfd. dfd is an int: the
 * syscall's register may carry it zero-extended (AT_FDCWD as 0xffffff9c). */
static __always_inline void dir_of(struct task_struct *t, int dfd, char *dst)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	dst[0] = 0;
	if (!s)
		return;
	if (dfd == AT_FDCWD) {
		struct fs_struct *fs = t->fs;
		resolve(s, fs->pwd.mnt, fs->pwd.dentry, dst);
		return;
	}
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (dfd >= 0 && dfd < BPF_CORE_READ(fdt, max_fds))
		bpf_probe_read_kernel(&f, sizeof(f), &fds[dfd & 0xfffff]);
	if (f)
		resolve(s, BPF_CORE_READ(f, f_path.mnt), BPF_CORE_READ(f, f_path.dentry), dst);
}

/* enter records a workload's call: its user-space path arguments are only
 * readable now. */
static __always_inline int sysfile_covered(__u32 op, __u32 mode);

static __always_inline int sysfile_enter(__u32 op, __u32 flags, __u32 mode, int dfd, const char *path, int dfd2,
					 const char *path2)
{
	struct task_struct *t = sys_in_scope();
	if (!t)
		return 0;
	/* Calls no selector covers leave before the copies and the directory walk
	 * (sysfile_exit asks again, of the policy live then). */
	if (!sysfile_covered(op, mode))
		return 0;
	__u32 zero = 0;
	struct sysfile_event *e = bpf_map_lookup_elem(&sysfile_scratch, &zero);
	if (!e)
		return 0;
	e->op = op;
	e->flags = flags;
	e->mode = mode;
	e->created = 0;
	e->dfd = dfd;
	e->dfd2 = dfd2;
	if (bpf_probe_read_user_str(e->path, sizeof(e->path), path) < 0)
		return 0;
	e->path2[0] = 0;
	if (path2 && bpf_probe_read_user_str(e->path2, sizeof(e->path2), path2) < 0)
		return 0;
	e->base[0] = 0;
	e->base2[0] = 0;
	if (e->path[0] != '/')
		dir_of(t, dfd, e->base);
	if (path2 && e->path2[0] != '/')
		dir_of(t, dfd2, e->base2);
	__u32 tid = t->pid;
	bpf_map_update_elem(&sysfile_inflight, &tid, e, BPF_ANY);
	return 0;
}

/* fd_file is the file open at fd in t, or 0. */
static __always_inline struct file *fd_file(struct task_struct *t, long fd)
{
	struct fdtable *fdt = t->files->fdt;
	if (fd < 0 || fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]);
	return f;
}

/* sysfile_enter_fd records a workload's call on a regular file by descriptor
 * (fchmod, ftruncate): its path is resolved from the file, as for opens. mode
 * is the new mode (fchmod), or 0 for the file's own. */
static __always_inline int sysfile_enter_fd(__u32 op, long fd, __u32 mode)
{
	struct task_struct *t = sys_in_scope();
	if (!t)
		return 0;
	struct file *f = fd_file(t, fd);
	if (!f)
		return 0;
	__u32 imode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((imode & S_IFMT) != S_IFREG)
		return 0;
	if (!sysfile_covered(op, mode ? mode : imode))
		return 0;
	__u32 zero = 0;
	struct sysfile_event *e = bpf_map_lookup_elem(&sysfile_scratch, &zero);
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!e || !s)
		return 0;
	e->op = op;
	e->flags = 0;
	e->mode = mode ? mode : imode;
	e->created = SYSFILE_BY_FD;
	e->dfd = AT_FDCWD;
	e->dfd2 = 0;
	resolve(s, BPF_CORE_READ(f, f_path.mnt), BPF_CORE_READ(f, f_path.dentry), e->path);
	e->path2[0] = 0;
	e->base[0] = 0;
	e->base2[0] = 0;
	__u32 tid = t->pid;
	bpf_map_update_elem(&sysfile_inflight, &tid, e, BPF_ANY);
	return 0;
}

/* sysfile_covered says whether the live file policy has a selector for an
 * operation the call makes: only those reach user space. */
static __always_inline int sysfile_covered(__u32 op, __u32 mode)
{
	__u64 gen;
	switch (op) {
	case SYS_UNLINK:
		return covered(FOP_DELETE_FILE, &gen);
	case SYS_RENAME: /* a deletion and a creation (the moved file's mode is read later) */
		return covered(FOP_DELETE_FILE, &gen) || covered(FOP_CREATE_FILE, &gen) ||
		       covered(FOP_CREATE_EXECUTABLE, &gen);
	case SYS_CHMOD:
		return covered(exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_MODIFY_FILE), &gen);
	case SYS_LINK: /* the source is modified, the new name created (the mode is read later) */
		return covered(FOP_MODIFY_FILE, &gen) || covered(FOP_MODIFY_EXECUTABLE, &gen) ||
		       covered(FOP_CREATE_FILE, &gen) || covered(FOP_CREATE_EXECUTABLE, &gen);
	case SYS_TRUNCATE: /* by name, the mode is read later: 0 */
		if (!mode)
			return covered(FOP_MODIFY_FILE, &gen) || covered(FOP_MODIFY_EXECUTABLE, &gen);
		return covered(exec_or(mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE), &gen);
	case SYS_MKNOD:
		return covered(exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_CREATE_FILE), &gen);
	}
	return 0;
}

/* exit reports a recorded call that succeeded. */
static __always_inline int sysfile_exit(long ret)
{
	struct task_struct *t = sys_in_scope();
	if (!t)
		return 0;
	__u32 tid = t->pid;
	struct sysfile_event *in = bpf_map_lookup_elem(&sysfile_inflight, &tid);
	if (!in)
		return 0;
	if (ret < 0 || !sysfile_covered(in->op, in->mode)) {
		bpf_map_delete_elem(&sysfile_inflight, &tid);
		return 0;
	}
	struct sysfile_event *e = reserve(sizeof(*e));
	if (!e) {
		bpf_map_delete_elem(&sysfile_inflight, &tid);
		return 0;
	}
	bpf_probe_read_kernel(e, sizeof(*e), in); /* too big for an inlined copy */
	bpf_map_delete_elem(&sysfile_inflight, &tid);
	e->hdr.type = EVENT_SYSFILE;
	e->hdr.generation = 0;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	__builtin_memset(&e->proc, 0, sizeof(e->proc));
	fill_proc(&e->proc, t);
	submit(e, 0);
	return 0;
}

/* open_exit reports a workload's open that returned fd with write intent:
 * what it means is read from the file it opened (its mode, whether this open
 * created it), and its path resolved from it. Read-only opens leave after the
 * pid namespace test and a few loads. */
static __always_inline int open_exit(long fd)
{
	if (fd < 0)
		return 0;
	struct task_struct *t = sys_in_scope();
	if (!t)
		return 0;
	/* Direct loads through the task's BTF pointers; the fd array's slot and
	 * the file's mode need a probe read each: two helper calls for a read-only
	 * open, the whole cost of the commonest call. */
	struct fdtable *fdt = t->files->fdt;
	if (fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]);
	if (!f)
		return 0;
	__u32 fmode = 0;
	bpf_probe_read_kernel(&fmode, sizeof(fmode), (void *)f + bpf_core_field_offset(struct file, f_mode));
	/* A creation counts without write intent too (open(O_RDONLY|O_CREAT),
	 * as runtimes make mount points): path_mknod judges it with BPF LSM. */
	if (!(fmode & (FMODE_WRITE | FMODE_CREATED)))
		return 0;
	__u32 mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFREG)
		return 0;
	__u32 created = (fmode & FMODE_CREATED) != 0;
	__u32 op = created ? exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_CREATE_FILE)
			   : exec_or(mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE);
	__u64 gen;
	if (!covered(op, &gen))
		return 0;
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	struct sysfile_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	e->hdr.type = EVENT_SYSFILE;
	e->hdr.generation = 0;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	__builtin_memset(&e->proc, 0, sizeof(e->proc));
	fill_proc(&e->proc, t);
	e->op = SYS_OPEN;
	e->flags = BPF_CORE_READ(f, f_flags);
	e->mode = mode;
	e->created = created;
	e->dfd = AT_FDCWD;
	e->dfd2 = 0;
	resolve(s, BPF_CORE_READ(f, f_path.mnt), BPF_CORE_READ(f, f_path.dentry), e->path);
	e->path2[0] = 0;
	e->base[0] = 0;
	e->base2[0] = 0;
	submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int watch_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int watch_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int watch_creat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int watch_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	__u32 flags = ctx->args[2];
	if (flags & AT_REMOVEDIR)
		return 0; /* directories are not files */
	return sysfile_enter(SYS_UNLINK, flags, 0, ctx->args[0], (const char *)ctx->args[1], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int watch_unlink(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_UNLINK, 0, 0, AT_FDCWD, (const char *)ctx->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int watch_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_RENAME, ctx->args[4], 0, ctx->args[0], (const char *)ctx->args[1], ctx->args[2],
			     (const char *)ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int watch_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_RENAME, 0, 0, ctx->args[0], (const char *)ctx->args[1], ctx->args[2],
			     (const char *)ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int watch_rename(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_RENAME, 0, 0, AT_FDCWD, (const char *)ctx->args[0], AT_FDCWD,
			     (const char *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int watch_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_CHMOD, 0, ctx->args[2], ctx->args[0], (const char *)ctx->args[1], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int watch_chmod(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_CHMOD, 0, ctx->args[1], AT_FDCWD, (const char *)ctx->args[0], 0, 0);
}

#define AT_SYMLINK_FOLLOW 0x400

SEC("tracepoint/syscalls/sys_enter_linkat")
int watch_linkat(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_LINK, ctx->args[4], 0, ctx->args[0], (const char *)ctx->args[1], ctx->args[2],
			     (const char *)ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_link")
int watch_link(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_LINK, 0, 0, AT_FDCWD, (const char *)ctx->args[0], AT_FDCWD, (const char *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_truncate")
int watch_truncate(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter(SYS_TRUNCATE, 0, 0, AT_FDCWD, (const char *)ctx->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_ftruncate")
int watch_ftruncate(struct trace_event_raw_sys_enter *ctx)
{
	return sysfile_enter_fd(SYS_TRUNCATE, ctx->args[0], 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmod")
int watch_fchmod(struct trace_event_raw_sys_enter *ctx)
{
	__u32 mode = ctx->args[1];
	return sysfile_enter_fd(SYS_CHMOD, ctx->args[0], mode | S_IFREG); /* never 0: the new mode */
}

/* mknod of anything but a regular file (a device, a fifo, a socket) makes no file
 * the policy names; mode 0 is a regular file. */
static __always_inline int mknod_enter(int dfd, const char *path, __u32 mode)
{
	if ((mode & S_IFMT) != S_IFREG && (mode & S_IFMT) != 0)
		return 0;
	return sysfile_enter(SYS_MKNOD, 0, mode, dfd, path, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_mknodat")
int watch_mknodat(struct trace_event_raw_sys_enter *ctx)
{
	return mknod_enter(ctx->args[0], (const char *)ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_mknod")
int watch_mknod(struct trace_event_raw_sys_enter *ctx)
{
	return mknod_enter(AT_FDCWD, (const char *)ctx->args[0], ctx->args[1]);
}

/* One exit program per syscall: each runs only for its own call. */
#define SYSFILE_EXIT(name)                                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                    \
	int watch_##name##_exit(struct trace_event_raw_sys_exit *ctx) \
	{                                                             \
		return sysfile_exit(ctx->ret);                        \
	}
SYSFILE_EXIT(unlinkat)
SYSFILE_EXIT(unlink)
SYSFILE_EXIT(renameat2)
SYSFILE_EXIT(renameat)
SYSFILE_EXIT(rename)
SYSFILE_EXIT(fchmodat)
SYSFILE_EXIT(chmod)
SYSFILE_EXIT(linkat)
SYSFILE_EXIT(link)
SYSFILE_EXIT(truncate)
SYSFILE_EXIT(ftruncate)
SYSFILE_EXIT(fchmod)
SYSFILE_EXIT(mknodat)
SYSFILE_EXIT(mknod)

struct sysfile_event *unused_sysfile_event __attribute__((unused));
