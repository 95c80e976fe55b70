/* SPDX-License-Identifier: GPL-2.0 */
/* The path walker (dentries and mounts up to the root of the task's mount tree),
 * the mount helpers, and the overlay layer of an executable. */
#ifndef __CLOUD_DEFEND_PATH_H__
#define __CLOUD_DEFEND_PATH_H__

/* Path resolution where bpf_d_path is not allowed (tracepoints, path hooks), and
 * wherever the task's own root cannot be trusted: walk the dentries up to the root
 * of the mount namespace's tree, crossing mounts. A task's root is what chroot(2)
 * changes, and CAP_SYS_CHROOT is in Docker's default set, so paths are resolved
 * against the tree the runtime built (pivot_root or runc's MS_MOVE put the
 * container's root filesystem at its root), which only mounting, and so
 * CAP_SYS_ADMIN, changes: chroot /usr then exec /bin/x is an exec of /usr/bin/x.
 * Matching needs only a path's first 255 bytes (policy paths are at most that
 * long), its whole length and the length of its last component, so the walk
 * records each component's name pointer and length (one read per dentry: d_parent
 * and d_name sit side by side), keeps the TOP nearest the root, then copies names
 * from the root down until 255 bytes are filled. A path of any length resolves, up
 * to MAX_STEPS components; one bpf_loop step per component keeps the verifier's
 * work constant. */
struct walk_ctx {
	__u64 dentry;   /* struct dentry *, carried as a scalar for probe reads */
	__u64 mnt;      /* struct vfsmount * */
	__u64 mnt_root; /* 0: no mount known (inode hooks): stop at the file system's root */
	struct scratch *s;
};

struct fill_ctx {
	struct scratch *s;
	__u32 n; /* components the walk saw; the root's is n - 1 */
};

/* Short names live in the dentry itself: d_iname up to 6.13, d_shortname since. */
struct dentry___iname {
	unsigned char d_iname[32];
} __attribute__((preserve_access_index));

struct dentry___shortname {
	union shortname_store d_shortname;
} __attribute__((preserve_access_index));

static __always_inline __u32 inline_name_at(void)
{
	if (bpf_core_field_exists(struct dentry___shortname, d_shortname))
		return bpf_core_field_offset(struct dentry___shortname, d_shortname);
	return bpf_core_field_offset(struct dentry___iname, d_iname);
}

static long walk_step(__u32 i, struct walk_ctx *c)
{
	struct walk_out *o = &c->s->walk;
	if (c->dentry == c->mnt_root && c->mnt) {
		/* Top of a mount: continue from where it is mounted. */
		struct mount *m = (struct mount *)((void *)c->mnt - bpf_core_field_offset(struct mount, mnt));
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (parent == m) {
			o->state = 1; /* the namespace's root mount */
			return 1;
		}
		c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = (__u64)parent + bpf_core_field_offset(struct mount, mnt);
		c->mnt_root = (__u64)BPF_CORE_READ(parent, mnt.mnt_root);
		goto next;
	}
	struct comp *cp = &c->s->comps[o->n & (TOP - 1)];
	__u32 from = bpf_core_field_offset(struct dentry, d_parent);
	__u32 qstr = bpf_core_field_offset(struct dentry, d_name) - from;
	__u32 at_len = qstr + bpf_core_field_offset(struct qstr, len);
	__u32 at_name = qstr + bpf_core_field_offset(struct qstr, name);
	__u64 base = c->dentry + from, parent, name;
	__u32 len;
	bpf_probe_read_kernel(cp->chunk, CHUNK, (void *)base);
	if (at_name + 8 <= CHUNK && at_len + 4 <= CHUNK) {
		parent = *(__u64 *)&cp->chunk[0];
		len = *(__u32 *)&cp->chunk[at_len];
		name = *(__u64 *)&cp->chunk[at_name];
	} else {
		struct dentry *d = (struct dentry *)c->dentry;
		parent = (__u64)BPF_CORE_READ(d, d_parent);
		len = BPF_CORE_READ(d, d_name.len);
		name = (__u64)BPF_CORE_READ(d, d_name.name);
	}
	if (parent == c->dentry) {
		o->state = 1; /* the root of a file system that is not mounted here */
		return 1;
	}
	cp->name = name;
	cp->len = len;
	__u32 at = inline_name_at() - from;
	cp->at = name == base + at && at + len <= CHUNK ? at : CHUNK;
	if (o->n == 0)
		o->leaf = len;
	o->n++;
	o->total += len + 1;
	c->dentry = parent;
next:
	return 0;
}

/* fill_step writes the i-th component from the root after what is written. A name
 * the walk's read brought along is copied from there a word at a time: the bytes a
 * last word carries past the name are overwritten by what follows, or lie past the
 * 255 bytes the key's prefix length covers. */
static long fill_step(__u32 i, struct fill_ctx *c)
{
	struct walk_out *o = &c->s->walk;
	__u32 pos = o->pos;
	if (i >= c->n || pos >= MAX_PATH)
		return 1;
	struct comp *cp = &c->s->comps[(c->n - 1 - i) & (TOP - 1)];
	char *dst = (char *)&c->s->key.data[1];
	dst[pos & MAX_PATH] = '/';
	pos++;
	__u32 room = MAX_PATH - pos;
	__u32 k = cp->len < room ? cp->len : room;
	__u32 at = cp->at;
	if (at < CHUNK) {
#pragma unroll
		for (int w = 0; w < 40; w += 8)
			if (w < k)
				*(__u64 *)&dst[(pos & MAX_PATH) + w] = *(__u64 *)&cp->chunk[(at & (CHUNK_MASK)) + w];
	} else {
		__u32 n = k;
		barrier_var(n); /* keep the mask: the verifier needs it, the compiler thinks not */
		bpf_probe_read_kernel(&dst[pos & MAX_PATH], n & MAX_PATH, (void *)cp->name);
	}
	o->pos = pos + k;
	return 0;
}

/* walk resolves (mnt, d) from the root of its mount tree into s->key.data[1..]:
 * the first 255 bytes of the path; it returns the whole path's length and sets
 * *leaf to its last component's. With slash, a '/' follows the path. *complete is
 * false when the path has more than MAX_STEPS components and mounts to cross, or
 * mnt is 0 (a dentry whose mount is not known: the path is then from its file
 * system's root, and not the one the task sees). */
static __always_inline __u32 walk(struct scratch *s, struct vfsmount *mnt, struct dentry *d, int *complete, int slash,
				  __u32 *leaf)
{
	struct walk_ctx c = {
		.dentry = (__u64)d,
		.mnt = (__u64)mnt,
		.mnt_root = mnt ? (__u64)BPF_CORE_READ(mnt, mnt_root) : 0,
		.s = s,
	};
	struct walk_out *o = &s->walk;
	o->n = 0;
	o->total = 0;
	o->leaf = 0;
	o->state = 0;
	o->pos = 0;
	bpf_loop(MAX_STEPS, walk_step, &c, 0);
	*complete = o->state == 1 && mnt;
	*leaf = o->leaf;
	char *dst = (char *)&s->key.data[1];
	__u32 n = o->n;
	if (n == 0) {
		dst[0] = '/'; /* the root itself */
		return 1;
	}
	struct fill_ctx f = {.s = s, .n = n};
	bpf_loop(TOP, fill_step, &f, 0);
	__u32 total = o->total;
	if (slash) {
		__u32 pos = o->pos;
		if (pos < MAX_PATH)
			dst[pos & MAX_PATH] = '/';
		total++;
	}
	return total;
}

/* copy_path copies the first 255 bytes of the path of length len that walk or
 * key_path left in s->key to dst (MAX_PATH + 1 bytes), NUL-terminated. */
static __always_inline void copy_path(struct scratch *s, char *dst, __u32 len)
{
	__u32 n = len > MAX_PATH ? MAX_PATH : len;
	barrier_var(n); /* keep the mask: the verifier needs it, the compiler thinks not */
	bpf_probe_read_kernel(dst, n & MAX_PATH, &s->key.data[1]);
	dst[n & MAX_PATH] = 0;
}

/* resolve writes the first 255 bytes of the path of (mnt, d) into dst (MAX_PATH + 1
 * bytes) and returns whether that is not the whole path. */
static __always_inline int resolve(struct scratch *s, struct vfsmount *mnt, struct dentry *d, char *dst)
{
	int complete;
	__u32 leaf;
	__u32 len = walk(s, mnt, d, &complete, 0, &leaf);
	copy_path(s, dst, len);
	return !complete || len > MAX_PATH;
}

/* The struct mount around a vfsmount. */
static __always_inline struct mount *real_mount(struct vfsmount *mnt)
{
	return (struct mount *)((void *)mnt - bpf_core_field_offset(struct mount, mnt));
}

#define MAX_STACK 16 /* mounts climbed to find the tree's root mount */

/* tree_root_mount climbs from mnt to the top of its mount tree and returns the
 * lowest mount on the way that is the tree's root as far as paths go: it and every
 * mount above it are mounted on the root of the one above. For a container that is
 * its root filesystem, whatever the task's root (chroot) is; 0 if the tree is deeper
 * than MAX_STACK. A file whose mount is not it is on a volume. */
static __always_inline struct vfsmount *tree_root_mount(struct vfsmount *mnt)
{
	struct mount *m = real_mount(mnt), *cand = m;
	for (int i = 0; i < MAX_STACK; i++) {
		struct mount *p = BPF_CORE_READ(m, mnt_parent);
		if (p == m)
			return (struct vfsmount *)((void *)cand + bpf_core_field_offset(struct mount, mnt));
		if (BPF_CORE_READ(m, mnt_mountpoint) != BPF_CORE_READ(p, mnt.mnt_root))
			cand = p;
		m = p;
	}
	return 0;
}

/* The root of the task's file system view is the tree's root (not chrooted), so
 * bpf_d_path, which resolves against the task's root, names paths as walk does. */
static __always_inline int root_is_tree_root(struct task_struct *t)
{
	struct fs_struct *fs = t->fs;
	struct vfsmount *mnt = fs->root.mnt;
	return fs->root.dentry == mnt->mnt_root && tree_root_mount(mnt) == mnt;
}

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/* overlayfs's private inode has had three ways to point at its lower file: an
 * inode (up to 5.19), an ovl_path (6.0 to 6.4) and an ovl_entry counting lower
 * layers (6.5 on). Each flavour is relocated against the kernel's or the overlay
 * module's BTF; whichever the kernel has is used. */
struct ovl_path___path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct ovl_inode___path {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
	struct ovl_path___path lowerpath;
} __attribute__((preserve_access_index));

struct ovl_inode___lower_inode {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
	struct inode *lower;
} __attribute__((preserve_access_index));

struct ovl_entry___entry {
	unsigned int __numlower;
} __attribute__((preserve_access_index));

struct ovl_inode___entry {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
	struct ovl_entry___entry *oe;
} __attribute__((preserve_access_index));

static __always_inline __u8 exe_layer(struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	if (BPF_CORE_READ(ino, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return LAYER_NONE;
	if (bpf_core_field_exists(struct ovl_inode___entry, oe)) {
		struct ovl_inode___entry *oi = (void *)ino - bpf_core_field_offset(struct ovl_inode___entry, vfs_inode);
		if (!BPF_CORE_READ(oi, __upperdentry))
			return LAYER_LOWER;
		struct ovl_entry___entry *oe = BPF_CORE_READ(oi, oe);
		return oe && BPF_CORE_READ(oe, __numlower) ? LAYER_UPPER : LAYER_UPPER_ONLY;
	}
	if (bpf_core_field_exists(struct ovl_inode___path, lowerpath)) {
		struct ovl_inode___path *oi = (void *)ino - bpf_core_field_offset(struct ovl_inode___path, vfs_inode);
		if (!BPF_CORE_READ(oi, __upperdentry))
			return LAYER_LOWER;
		return BPF_CORE_READ(oi, lowerpath.dentry) ? LAYER_UPPER : LAYER_UPPER_ONLY;
	}
	if (bpf_core_field_exists(struct ovl_inode___lower_inode, lower)) {
		struct ovl_inode___lower_inode *oi =
			(void *)ino - bpf_core_field_offset(struct ovl_inode___lower_inode, vfs_inode);
		if (!BPF_CORE_READ(oi, __upperdentry))
			return LAYER_LOWER;
		return BPF_CORE_READ(oi, lower) ? LAYER_UPPER : LAYER_UPPER_ONLY;
	}
	return LAYER_UNKNOWN;
}

#endif /* __CLOUD_DEFEND_PATH_H__ */
