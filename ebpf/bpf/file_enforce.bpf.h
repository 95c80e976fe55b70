/* SPDX-License-Identifier: GPL-2.0 */
/* File enforcement (BPF LSM): opens, writes, mappings, mknod, unlink, chmod,
 * truncate, rename, link and the xattr/ACL hooks, judged against the file
 * selectors. */
#ifndef __CLOUD_DEFEND_FILE_ENFORCE_BPF_H__
#define __CLOUD_DEFEND_FILE_ENFORCE_BPF_H__

#define S_IFMT 0170000
#define S_IFREG 0100000
#define S_IFDIR 0040000
#define S_IFLNK 0120000
#define EXEC_BITS 0111
#define FMODE_WRITE 0x2
#define FMODE_CREATED 0x100000

#define MNT_INTERNAL 0x4000

/* judge evaluates the file policy for task t doing op (or also, when not 0), seen
 * at hook, on the file at (mnt, d) — for a new name, the negative dentry under its
 * directory; mnt is 0 when the hook gives no mount (inode hooks) and the file is
 * not on the container's root file system. With tree set, (mnt, d) is a directory
 * and the operation is on the files below it: its path is matched with a trailing
 * slash, as the path of a nameless child, so recursive patterns over it and
 * direct-children patterns of it match, and so does every pattern at or below it
 * (a tree moved into place brings those paths with it). Returns -EPERM when a
 * response blocks. */
static __always_inline int judge(struct task_struct *t, __u32 op, __u32 also, __u32 hook, struct vfsmount *mnt,
				 struct dentry *d, int tree)
{
	__u32 zero = 0;
	struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return 0;
	__u32 counter = cfg->generation;
	__u32 gen = counter & 1;
	struct file_policy *pol = bpf_map_lookup_elem(&file_policies, &gen);
	if (!pol || !pol->r.valid)
		return 0;
	__u64 m = pol->ops[op & 7] | (also ? pol->ops[also & 7] : 0);
	if (!m)
		return 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;

	/* Volumes: anything not on the container's root file system, the mount at the
	 * root of its mount tree (not the task's root, which chroot moves). A mount
	 * whose root is not a directory is a single-file mount (configMap/secret
	 * files, subPath). */
	int on_volume = 1, on_file = 0;
	if (mnt && (__u64)mnt == (__u64)t->fs->root.mnt) {
		/* The common case, for a few loads: the task's own root mount is its
		 * container's root file system. (Chrooted into a volume, that volume is
		 * then taken as the root file system: judged more strictly, never less.) */
		on_volume = 0;
	} else if (mnt) {
		/* mnt may be a scalar (inode hooks find it by probe reads): read through CO-RE.
		 * Kernel-internal mounts hold memfds, SysV shared memory and the like:
		 * files without a path in any container's tree, not file operations the
		 * policy language names. Code run from a memfd is judged at exec. */
		if (BPF_CORE_READ(mnt, mnt_flags) & MNT_INTERNAL)
			return 0;
		on_volume = tree_root_mount(mnt) != mnt;
		on_file = on_volume && (BPF_CORE_READ(mnt, mnt_root, d_inode, i_mode) & S_IFMT) != S_IFDIR;
	}
	if (on_volume)
		m &= ~pol->ignore_volume;
	if (on_file)
		m &= ~pol->ignore_file;

	struct container_key ck = {.cgroup_id = bpf_get_current_cgroup_id(), .generation = gen};
	__u64 *cm = bpf_map_lookup_elem(&file_containers, &ck);
	m &= pol->agnostic | (cm ? *cm : 0);
	if (!m)
		return 0;

	/* The path walk, the costly part, runs only for a selector still in the race:
	 * to match targetFilePath, or to report a decision. */
	int complete = 0, walked = 0;
	__u32 len = 0, leaf = 0;
	if (m & ~pol->no_path) {
		len = walk(s, mnt, d, &complete, tree, &leaf);
		walked = 1;
		__u64 pm = pol->no_path;
		if (complete)
			pm |= path_masks(&file_paths, s, gen, len, leaf, tree);
		else
			count(STAT_PATH_ERRORS);
		m &= pm;
		if (!m)
			return 0;
	}

	int block;
	__u8 actions = respond(&pol->r, m, cfg, &block);
	if (actions) {
		if (!walked)
			len = walk(s, mnt, d, &complete, tree, &leaf);
		if (also && !(m & pol->ops[op & 7]))
			op = also; /* report the operation that matched */
		struct file_event *e = reserve_decision(sizeof(*e), EVENT_FILE, counter, t, m, actions, block);
		if (e) {
			e->on_volume = on_volume;
			e->on_file_mount = on_file;
			e->op = op;
			e->hook = hook;
			e->path_len = len;
			copy_path(s, e->path, len);
			submit(e, actions & (ACTION_ALERT | ACTION_BLOCK));
		}
	}
	return block ? -EPERM : 0;
}

#define decide_file(t, op, hook, mnt, d) judge(t, op, 0, hook, mnt, d, 0)

/* in_scope returns the current task when it is a container workload. */
static __always_inline struct task_struct *in_scope(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	return task_pidns(t) == host_pidns ? 0 : t;
}

static __always_inline __u32 exec_or(__u32 mode, __u32 if_exec, __u32 otherwise)
{
	return (mode & EXEC_BITS) ? if_exec : otherwise;
}

/* Operation table (also in docs/file-operations.md):
 *   file_open, write intent on an existing regular file  -> modifyExecutable | modifyFile
 *   file_permission, a write through a file the live policy has not judged (opened
 *                    before it)                          -> modifyExecutable | modifyFile
 *   path_mknod, a new regular file (open O_CREAT, mknod)  -> createExecutable | createFile (mode has x)
 *   path_unlink, a file or symlink                        -> deleteFile
 *   path_chmod, a regular file gaining its first x bit    -> createExecutable, otherwise modifyFile
 *   path_truncate, a regular file                          -> modifyExecutable | modifyFile
 *   path_rename, a regular file: old name                 -> deleteFile
 *                                new name, replacing an executable        -> modifyExecutable
 *                                new name, replacing a plain file         -> createExecutable | modifyFile (the moved file)
 *                                new name, fresh          -> createExecutable | createFile (the moved file)
 *   path_rename, a directory (its files, as "dir/"): old name -> deleteFile
 *                                new name                 -> createExecutable or createFile
 *   path_rename with RENAME_EXCHANGE: each name is judged as the new name of what arrives there
 *   path_link, a regular file                              -> createExecutable | createFile */
/* covered reports whether the live file policy has a selector for op, and gives the
 * generation counter shifted for write_verdicts. */
static __always_inline int covered(__u32 op, __u64 *gen)
{
	__u32 zero = 0;
	struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return 0;
	__u32 counter = cfg->generation;
	__u32 slot = counter & 1;
	struct file_policy *pol = bpf_map_lookup_elem(&file_policies, &slot);
	if (!pol || !pol->r.valid)
		return 0;
	*gen = (__u64)counter << 1;
	return pol->ops[op & 7] != 0;
}

/* write_scope says whether a write-open file needs judging at all: a regular file
 * in a container, not on a kernel-internal mount. */
static __always_inline struct task_struct *write_scope(struct file *file)
{
	if ((file->f_inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	if (file->f_path.mnt->mnt_flags & MNT_INTERNAL)
		return 0; /* memfds: see judge */
	return in_scope();
}

SEC("lsm/file_open")
int BPF_PROG(enforce_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	/* Read-only opens, the common case, leave here. */
	if (!(file->f_mode & FMODE_WRITE))
		return 0;
	if ((file->f_inode->i_mode & S_IFMT) != S_IFREG || (file->f_path.mnt->mnt_flags & MNT_INTERNAL))
		return 0; /* file_permission ignores these too */
	__u64 key = (__u64)file;
	struct task_struct *t = in_scope();
	if (!t) {
		/* A node process's file can reach a container (fd passing): a verdict an
		 * earlier file left at this address must not apply to it. */
		bpf_map_delete_elem(&write_verdicts, &key);
		return 0;
	}
	__u32 op = exec_or(file->f_inode->i_mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE);
	struct verdict v = {.inode = (__u64)file->f_inode};
	if (!covered(op, &v.gen))
		return 0; /* file_permission will not look either */
	int r = 0;
	/* A file this open created was judged at path_mknod. */
	if (!(file->f_mode & FMODE_CREATED))
		r = decide_file(t, op, HOOK_FILE_OPEN, file->f_path.mnt, file->f_path.dentry);
	if (r)
		return r; /* a refused open leaves no file, and no verdict */
	/* An LRU update allocates a node; a file reopened at a freed one's address
	 * mostly finds its verdict already there. */
	struct verdict *had = bpf_map_lookup_elem(&write_verdicts, &key);
	if (!had || had->gen != v.gen || had->inode != v.inode)
		bpf_map_update_elem(&write_verdicts, &key, &v, BPF_ANY);
	return 0;
}

#define MAY_WRITE 0x2

/* judge_write judges a write through an open file (a write(2), a shared writable
 * mapping) unless the live policy already allowed writes through it: at its open,
 * or at its first write after the policy came into force (opened before it). */
static __always_inline int judge_write(struct file *file, __u32 hook)
{
	struct task_struct *t = write_scope(file);
	if (!t)
		return 0;
	__u32 op = exec_or(file->f_inode->i_mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE);
	struct verdict nv = {.inode = (__u64)file->f_inode};
	if (!covered(op, &nv.gen))
		return 0;
	__u64 key = (__u64)file;
	struct verdict *v = bpf_map_lookup_elem(&write_verdicts, &key);
	if (v && v->gen == nv.gen && v->inode == nv.inode)
		return 0;
	int r = decide_file(t, op, hook, file->f_path.mnt, file->f_path.dentry);
	if (!r)
		bpf_map_update_elem(&write_verdicts, &key, &nv, BPF_ANY);
	return r;
}

/* Writes through a file that the live policy has not judged (opened before it, or
 * before the last swap): judged at the first write, then by the recorded verdict. */
SEC("lsm/file_permission")
int BPF_PROG(enforce_file_permission, struct file *file, int mask, int ret)
{
	if (ret)
		return ret;
	if (!(mask & MAY_WRITE))
		return 0;
	return judge_write(file, HOOK_FILE_PERMISSION);
}

#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define MAP_SHARED 0x1 /* MAP_SHARED_VALIDATE (3) has it too */
#define VM_EXEC 0x4
#define VM_SHARED 0x8

/* map_exec judges mapping file's code as an exec of it (see decide). The program
 * an exec starts is mapped too: it was judged at bprm_check_security already. */
static __always_inline int map_exec(struct file *file, __u32 hook)
{
	if ((file->f_inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	struct mm_struct *mm = t->mm;
	if (mm && mm->exe_file == file)
		return 0;
	return decide(t, OP_EXEC, file, (const char *)file->f_path.dentry->d_name.name, hook);
}

/* A shared writable mapping writes the file with no write(2): judged as its write.
 * An executable mapping runs its code: judged as its exec. */
SEC("lsm/mmap_file")
int BPF_PROG(enforce_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags,
	     int ret)
{
	if (ret)
		return ret;
	if (!file)
		return 0; /* anonymous memory */
	int r = 0;
	if ((prot & PROT_WRITE) && (flags & MAP_SHARED))
		r = judge_write(file, HOOK_MMAP_FILE);
	if (!r && (prot & PROT_EXEC))
		r = map_exec(file, HOOK_MMAP_FILE);
	return r;
}

SEC("lsm/file_mprotect")
int BPF_PROG(enforce_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot, int ret)
{
	if (ret)
		return ret;
	struct file *file = vma->vm_file;
	if (!file)
		return 0;
	unsigned long flags = vma->vm_flags;
	int r = 0;
	if ((prot & PROT_WRITE) && (flags & VM_SHARED))
		r = judge_write(file, HOOK_FILE_MPROTECT);
	if (!r && (prot & PROT_EXEC) && !(flags & VM_EXEC))
		r = map_exec(file, HOOK_FILE_MPROTECT);
	return r;
}

SEC("lsm/path_mknod")
int BPF_PROG(enforce_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev, int ret)
{
	if (ret)
		return ret;
	if ((mode & S_IFMT) != S_IFREG && (mode & S_IFMT) != 0)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	return decide_file(t, exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_CREATE_FILE), HOOK_PATH_MKNOD, dir->mnt, dentry);
}

SEC("lsm/path_unlink")
int BPF_PROG(enforce_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	__u32 mode = dentry->d_inode->i_mode & S_IFMT;
	if (mode != S_IFREG && mode != S_IFLNK)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	return decide_file(t, FOP_DELETE_FILE, HOOK_PATH_UNLINK, dir->mnt, dentry);
}

SEC("lsm/path_chmod")
int BPF_PROG(enforce_path_chmod, const struct path *path, umode_t mode, int ret)
{
	if (ret)
		return ret;
	struct dentry *d = path->dentry;
	__u32 old = d->d_inode->i_mode;
	if ((old & S_IFMT) != S_IFREG)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	__u32 op = (!(old & EXEC_BITS) && (mode & EXEC_BITS)) ? FOP_CREATE_EXECUTABLE : FOP_MODIFY_FILE;
	return decide_file(t, op, HOOK_PATH_CHMOD, path->mnt, d);
}

SEC("lsm/path_truncate")
int BPF_PROG(enforce_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	struct dentry *d = path->dentry;
	__u32 mode = d->d_inode->i_mode;
	if ((mode & S_IFMT) != S_IFREG)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	return decide_file(t, exec_or(mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE), HOOK_PATH_TRUNCATE, path->mnt, d);
}

#define RENAME_EXCHANGE 2

/* arrival names what a rename does at a name that object (with mode) arrives at,
 * replacing what is there (replaced, 0 for nothing): *also is a second operation
 * judged with it, *tree says the name is a directory whose files arrive. Returns 0
 * when nothing the policy covers arrives (a symlink, a device). */
static __always_inline __u32 arrival(__u32 mode, __u32 replaced, __u32 *also, int *tree)
{
	*also = 0;
	*tree = 0;
	if ((mode & S_IFMT) == S_IFDIR) {
		/* Its files are new at their new paths; which are executable is unknown. */
		*also = FOP_CREATE_FILE;
		*tree = 1;
		return FOP_CREATE_EXECUTABLE;
	}
	if ((mode & S_IFMT) != S_IFREG)
		return 0;
	if ((replaced & S_IFMT) == S_IFREG) {
		if (replaced & EXEC_BITS)
			return FOP_MODIFY_EXECUTABLE;
		/* An executable where a plain file was is a new executable. */
		return exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_MODIFY_FILE);
	}
	return exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_CREATE_FILE);
}

SEC("lsm/path_rename")
int BPF_PROG(enforce_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	__u32 mode = old_dentry->d_inode->i_mode;
	struct inode *target = new_dentry->d_inode;
	__u32 target_mode = target ? target->i_mode : 0;
	__u32 also;
	int tree;

	/* The old name: left empty (deleted), or given the target (exchange). */
	__u32 op;
	if (flags & RENAME_EXCHANGE) {
		op = arrival(target_mode, mode, &also, &tree);
	} else {
		also = 0;
		tree = (mode & S_IFMT) == S_IFDIR;
		op = tree || (mode & S_IFMT) == S_IFREG ? FOP_DELETE_FILE : 0;
	}
	int r = op ? judge(t, op, also, HOOK_PATH_RENAME, old_dir->mnt, old_dentry, tree) : 0;

	/* The new name: given the moved object. */
	op = arrival(mode, target_mode, &also, &tree);
	int r2 = op ? judge(t, op, also, HOOK_PATH_RENAME, new_dir->mnt, new_dentry, tree) : 0;
	return r ? r : r2;
}

/* A hard link is a second name for the file: whatever is done through it is done
 * to the file. So making it is judged as a change of the file at its own path
 * (modifyExecutable or modifyFile), besides the creation at the new name: a
 * protected file cannot be given an unprotected alias to write, truncate or chmod
 * it through. (Links made before the policy are not judged: see
 * docs/security-model.md.) */
SEC("lsm/path_link")
int BPF_PROG(enforce_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	if (ret)
		return ret;
	__u32 mode = old_dentry->d_inode->i_mode;
	if ((mode & S_IFMT) != S_IFREG)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	/* Links never cross mounts (EXDEV before this hook): the source is on new_dir's. */
	struct vfsmount *mnt = new_dir->mnt;
	int r = decide_file(t, exec_or(mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE), HOOK_PATH_LINK, mnt, old_dentry);
	if (r)
		return r;
	return decide_file(t, exec_or(mode, FOP_CREATE_EXECUTABLE, FOP_CREATE_FILE), HOOK_PATH_LINK, mnt, new_dentry);
}

/* Extended attributes change a file without chmod(2): a POSIX ACL grants execute
 * (system.posix_acl_access) and file capabilities (security.capability) change
 * what an executable may do. An xattr change of a regular file is judged as:
 *   an ACL that grants execute        -> createExecutable (no x bit yet) | modifyExecutable
 *   security.capability (set, remove)  -> modifyExecutable
 *   anything else                      -> modifyExecutable (executable) | modifyFile
 * Inode hooks give no mount: mount_of finds it. */
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20
#define ACL_EXECUTE 0x01
#define MAX_ACL_ENTRIES 32

struct acl_ctx {
	__u64 entries; /* kernel memory */
	__u32 n;
	__u32 stride;  /* bytes per entry; tag and perm are its two leading u16s in both layouts */
	__u32 present; /* tags seen */
	__u32 x;       /* tags with execute */
};

static long acl_step(__u32 i, struct acl_ctx *c)
{
	if (i >= c->n)
		return 1;
	__u16 tp[2] = {};
	bpf_probe_read_kernel(tp, sizeof(tp), (void *)(c->entries + (__u64)i * c->stride));
	c->present |= tp[0];
	if (tp[1] & ACL_EXECUTE)
		c->x |= tp[0];
	return 0;
}

/* acl_grants_exec reads n ACL entries and says whether they give anyone execute:
 * the owner, others, or a group or named entry that the mask (when there is one)
 * lets through. */
static __always_inline int acl_grants_exec(__u64 entries, __u32 n, __u32 stride)
{
	struct acl_ctx c = {.entries = entries, .n = n > MAX_ACL_ENTRIES ? MAX_ACL_ENTRIES : n, .stride = stride};
	bpf_loop(MAX_ACL_ENTRIES, acl_step, &c, 0);
	if (c.x & (ACL_USER_OBJ | ACL_OTHER))
		return 1;
	if (c.present & ACL_MASK)
		return (c.x & ACL_MASK) && (c.x & (ACL_USER | ACL_GROUP_OBJ | ACL_GROUP));
	return (c.x & ACL_GROUP_OBJ) != 0;
}

/* Where a dentry of an inode hook is mounted. The container's root file system is
 * the common case (same super block as the tree's root mount); anything else is a
 * volume, found among the mounts below the root one (children, their children, up
 * to MAX_QUEUE parents and MAX_MOUNTS mounts): one of that super block whose root
 * the dentry lies below. */
#define MAX_MOUNTS 256
#define MAX_QUEUE 16
#define MAX_CANDIDATES 4
#define MAX_DEPTH 4096 /* dentries climbed to find which candidate holds the file */

struct mounts_ctx {
	__u64 queue[MAX_QUEUE]; /* children list heads still to scan (&mount->mnt_mounts) */
	__u32 qhead, qtail;
	__u64 pos; /* the list node being looked at, 0 to take the next head */
	__u64 head;
	__u64 sb;
	__u64 roots[MAX_CANDIDATES];
	__u64 mnts[MAX_CANDIDATES]; /* struct vfsmount * */
	__u32 n;
};

static long mounts_step(__u32 i, struct mounts_ctx *c)
{
	if (!c->pos) {
		if (c->qhead >= c->qtail || c->qhead >= MAX_QUEUE)
			return 1;
		c->head = c->queue[c->qhead & (MAX_QUEUE - 1)];
		c->qhead++;
		c->pos = c->head;
	}
	/* Locals, not c's fields, inside BPF_CORE_READ: it would relocate those too. */
	struct list_head *pos = (struct list_head *)c->pos;
	__u64 next = (__u64)BPF_CORE_READ(pos, next);
	if (!next || next == c->head) {
		c->pos = 0; /* this list is done */
		return 0;
	}
	c->pos = next;
	struct mount *m = (struct mount *)(next - bpf_core_field_offset(struct mount, mnt_child));
	if (c->qtail < MAX_QUEUE) {
		c->queue[c->qtail & (MAX_QUEUE - 1)] = (__u64)m + bpf_core_field_offset(struct mount, mnt_mounts);
		c->qtail++;
	}
	if ((__u64)BPF_CORE_READ(m, mnt.mnt_sb) != c->sb || c->n >= MAX_CANDIDATES)
		return 0;
	__u32 k = c->n & (MAX_CANDIDATES - 1);
	c->roots[k] = (__u64)BPF_CORE_READ(m, mnt.mnt_root);
	c->mnts[k] = (__u64)m + bpf_core_field_offset(struct mount, mnt);
	c->n++;
	return 0;
}

struct climb_ctx {
	struct mounts_ctx *mc;
	__u64 dentry;
	__u64 found; /* struct vfsmount * */
};

static long climb_step(__u32 i, struct climb_ctx *c)
{
	struct mounts_ctx *mc = c->mc;
#pragma unroll
	for (int k = 0; k < MAX_CANDIDATES; k++) {
		if (k < mc->n && mc->roots[k] == c->dentry) {
			c->found = mc->mnts[k];
			return 1;
		}
	}
	struct dentry *d = (struct dentry *)c->dentry;
	__u64 parent = (__u64)BPF_CORE_READ(d, d_parent);
	if (parent == c->dentry)
		return 1;
	c->dentry = parent;
	return 0;
}

static __always_inline struct vfsmount *mount_of(struct task_struct *t, struct dentry *d)
{
	struct super_block *sb = d->d_sb;
	/* The common case, for a few loads: the task's own root mount. (Chrooted into
	 * a volume, its files are then taken as the root file system's, as judge
	 * does: more strictly, never less.) */
	struct vfsmount *own = t->fs->root.mnt;
	if (own->mnt_sb == sb)
		return own;
	struct vfsmount *root = tree_root_mount(own);
	if (!root)
		return 0;
	if (BPF_CORE_READ(root, mnt_sb) == sb)
		return root;
	struct mounts_ctx mc = {.sb = (__u64)sb, .qtail = 1};
	mc.queue[0] = (__u64)real_mount(root) + bpf_core_field_offset(struct mount, mnt_mounts);
	bpf_loop(MAX_MOUNTS, mounts_step, &mc, 0);
	if (!mc.n)
		return 0;
	struct climb_ctx cc = {.mc = &mc, .dentry = (__u64)d};
	bpf_loop(MAX_DEPTH, climb_step, &cc, 0);
	return (struct vfsmount *)cc.found;
}

#define XATTR_NAME 24 /* bytes of an xattr's name read: enough for the names that matter */

static __always_inline int judge_xattr(struct dentry *d, const char *n, int grants_exec, __u32 hook)
{
	struct inode *inode = d->d_inode;
	if (!inode)
		return 0;
	__u32 mode = inode->i_mode;
	if ((mode & S_IFMT) != S_IFREG)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	int caps = __builtin_memcmp(n, "security.capability", 20) == 0;
	__u32 op;
	if (grants_exec)
		op = exec_or(mode, FOP_MODIFY_EXECUTABLE, FOP_CREATE_EXECUTABLE);
	else if (caps)
		op = FOP_MODIFY_EXECUTABLE;
	else
		op = exec_or(mode, FOP_MODIFY_EXECUTABLE, FOP_MODIFY_FILE);
	/* Cheap before costly: the mount search runs for a policy that covers op. */
	__u64 gen;
	if (!covered(op, &gen))
		return 0;
	return decide_file(t, op, hook, mount_of(t, d), d);
}

#define XATTR_ACL_ACCESS "system.posix_acl_access"

/* The xattr form of an ACL: a version word, then 8-byte entries (tag, perm, id). n is
 * the name, read once. */
static __always_inline int xattr_acl_grants_exec(const char *n, const void *value, __u64 size)
{
	if (__builtin_memcmp(n, XATTR_ACL_ACCESS, sizeof(XATTR_ACL_ACCESS)) != 0 || !value || size < 4)
		return 0;
	return acl_grants_exec((__u64)value + 4, (size - 4) / 8, 8);
}

/* arg reads argument i of the hook as a scalar: 6.1's verifier refuses direct loads
 * of const-qualified pointers (const char *, const void *) from the context. */
static __always_inline __u64 arg(void *ctx, __u32 i)
{
	__u64 v = 0;
	bpf_get_func_arg(ctx, i, &v);
	return v;
}

/* Up to 6.1 ACLs are set as xattrs: the value is the kernel's copy of the xattr. */
SEC("lsm/inode_setxattr")
int BPF_PROG(enforce_inode_setxattr, void *idmap, struct dentry *dentry, void *name_, void *value_, __u64 size_,
	     int flags, int ret)
{
	if (ret)
		return ret;
	char n[XATTR_NAME] = {};
	bpf_probe_read_kernel_str(n, sizeof(n), (const char *)arg(ctx, 2));
	return judge_xattr(dentry, n, xattr_acl_grants_exec(n, (const void *)arg(ctx, 3), arg(ctx, 4)),
			   HOOK_INODE_SETXATTR);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(enforce_inode_removexattr, void *idmap, struct dentry *dentry, void *name_, int ret)
{
	if (ret)
		return ret;
	char n[XATTR_NAME] = {};
	bpf_probe_read_kernel_str(n, sizeof(n), (const char *)arg(ctx, 2));
	return judge_xattr(dentry, n, 0, HOOK_INODE_REMOVEXATTR);
}

/* Since 6.2 ACLs have a hook of their own, with the parsed ACL (NULL removes it).
 * The engine attaches this program where the kernel has the hook. */
SEC("lsm/inode_set_acl")
int BPF_PROG(enforce_inode_set_acl, void *idmap, struct dentry *dentry, void *name_, struct posix_acl *kacl_, int ret)
{
	if (ret)
		return ret;
	const char *acl_name = (const char *)arg(ctx, 2);
	struct posix_acl *kacl = (struct posix_acl *)arg(ctx, 3);
	int x = 0;
	char n[XATTR_NAME] = {};
	bpf_probe_read_kernel_str(n, sizeof(n), acl_name);
	if (kacl && __builtin_memcmp(n, XATTR_ACL_ACCESS, sizeof(XATTR_ACL_ACCESS)) == 0)
		x = acl_grants_exec((__u64)kacl + bpf_core_field_offset(struct posix_acl, a_entries),
				    BPF_CORE_READ(kacl, a_count), sizeof(struct posix_acl_entry));
	return judge_xattr(dentry, n, x, HOOK_INODE_SET_ACL);
}

#endif /* __CLOUD_DEFEND_FILE_ENFORCE_BPF_H__ */
