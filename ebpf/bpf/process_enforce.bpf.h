/* SPDX-License-Identifier: GPL-2.0 */
/* Process enforcement (BPF LSM): exec (bprm_check_security) and fork
 * (task_alloc) judged against the process selectors. */
#ifndef __CLOUD_DEFEND_PROCESS_ENFORCE_BPF_H__
#define __CLOUD_DEFEND_PROCESS_ENFORCE_BPF_H__

/* decide evaluates the process policy for task t about to fork or exec f, reports
 * a decision when a response fires, and returns -EPERM when it blocks. For exec,
 * filename is the name it was executed by; processName is that name's basename
 * (the comm the program will get). For fork, processName is t's comm. With hook
 * HOOK_MMAP_FILE or HOOK_FILE_MPROTECT, f is being mapped executable: that loads
 * its code as an exec would (ld.so /usr/bin/x runs x without exec'ing it), so it is
 * judged as an exec of f named by its file name, by the selectors of blocking
 * responses only, and reported only when refused: libraries are mapped by every
 * program, and only a refusal is news. */
static __always_inline int decide(struct task_struct *t, __u32 op, struct file *f, const char *filename, __u32 hook)
{
	__u32 zero = 0;
	struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return 0;
	__u32 counter = cfg->generation;
	__u32 gen = counter & 1;
	struct policy *pol = bpf_map_lookup_elem(&policies, &gen);
	if (!pol || !pol->r.valid)
		return 0;
	int mapping = hook != 0;
	if (mapping && !pol->exec_block)
		return 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;

	int memfd = is_memfd(f);
	__u64 m = op == OP_FORK ? pol->fork_ops : pol->exec_ops | (memfd ? pol->memfd_ops : 0);
	if (mapping)
		m &= pol->exec_block;
	if (!m)
		return 0;

	/* Executable path, resolved from the root of the task's mount tree, as the
	 * container's runtime set it up: a chroot does not change it. bpf_d_path, one
	 * call, resolves against the task's root, so it serves only when that root is
	 * the tree's (and in the hooks that allow it); otherwise, or when the path is
	 * too long for it, the path is walked. f must be a trusted BTF pointer (loaded
	 * directly, not through CO-RE reads). */
	long n = 0;
	if (!mapping && root_is_tree_root(t))
		n = bpf_d_path((struct path *)&f->f_path, s->path, PATH_BUF);
	__u32 len = 0, leaf = f->f_path.dentry->d_name.len;
	int resolved = n > 0;
	if (resolved) {
		len = n - 1;
		bpf_probe_read_kernel(&s->key.data[1], MAX_PATH, s->path);
	} else {
		len = walk(s, f->f_path.mnt, f->f_path.dentry, &resolved, 0, &leaf);
		if (!resolved)
			count(STAT_PATH_ERRORS);
	}
	/* Conditions no candidate selector has are not looked up. */
	if (m & ~pol->no_exe) {
		__u64 exe = pol->no_exe;
		if (resolved)
			exe |= path_masks(&paths, s, gen, len, leaf, 0);
		m &= exe;
	}
	if (!(m & ~pol->no_name))
		goto named;

	struct name_key nk = {.generation = gen};
	if (op == OP_EXEC) {
		struct base_ctx bc = {.s = s};
		bc.len = bpf_probe_read_kernel_str(s->fname, sizeof(s->fname), filename);
		bpf_loop(sizeof(s->fname), last_slash, &bc, 0);
		__u32 base = bc.base;
		bpf_probe_read_kernel_str(nk.comm, sizeof(nk.comm), &s->fname[base & (sizeof(s->fname) - 1)]);
	} else {
		bpf_get_current_comm(nk.comm, sizeof(nk.comm));
	}
	__u64 *nm = bpf_map_lookup_elem(&names, &nk);
	m &= pol->no_name | (nm ? *nm : 0);
named:;

	int interactive = t->signal->tty != 0;
	m &= interactive ? pol->interactive : pol->batch;

	struct container_key ck = {.cgroup_id = bpf_get_current_cgroup_id(), .generation = gen};
	__u64 *cm = bpf_map_lookup_elem(&containers, &ck);
	m &= pol->agnostic | (cm ? *cm : 0);
	if (!m)
		return 0;

	/* Drift: where the executable lives, read only for a selector that asks
	 * (layers[LAYER_NONE] holds exactly those without executableLayer). */
	__u8 layer = LAYER_NONE;
	int layered = 0;
	if (m & ~pol->layers[LAYER_NONE]) {
		layer = exe_layer(f);
		layered = 1;
		m &= pol->layers[layer & 7];
		if (!m)
			return 0;
	}

	int block;
	__u8 actions = respond(&pol->r, m, cfg, &block);
	if (mapping && !(actions & ACTION_BLOCK))
		return 0;

	if (actions) {
		struct decision_event *e = reserve_decision(sizeof(*e), EVENT_DECISION, counter, t, m, actions, block);
		if (e) {
			e->op = op;
			e->memfd = memfd;
			e->interactive = interactive;
			e->exe_layer = layered ? layer : exe_layer(f);
			e->hook = hook;
			e->path_len = len;
			copy_path(s, e->path, len);
			submit(e, actions & (ACTION_ALERT | ACTION_BLOCK));
		}
	}
	return block ? -EPERM : 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(enforce_exec, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	if (task_pidns(t) == host_pidns)
		return 0; /* the node's own processes are out of scope */
	return decide(t, OP_EXEC, bprm->file, BPF_CORE_READ(bprm, filename), 0);
}

SEC("lsm/task_alloc")
int BPF_PROG(enforce_fork, struct task_struct *task, unsigned long clone_flags, int ret)
{
	if (ret)
		return ret;
	if (clone_flags & CLONE_THREAD)
		return 0; /* threads are not processes: fork selectors see processes */
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	if (task_pidns(t) == host_pidns)
		return 0;
	struct mm_struct *mm = t->mm;
	if (!mm)
		return 0;
	struct file *exe = mm->exe_file;
	if (!exe)
		return 0;
	return decide(t, OP_FORK, exe, 0, 0);
}

#endif /* __CLOUD_DEFEND_PROCESS_ENFORCE_BPF_H__ */
