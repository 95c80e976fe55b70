// SPDX-License-Identifier: GPL-2.0
// cloud-defend kernel programs: process telemetry (fork/exec/exit tracepoints) and
// exec enforcement (LSM bprm_check_security) against a policy compiled into maps.
//
// Policy layout (built by ebpf/compile.go, which documents it in Go terms): every
// process selector is one bit of a u64. A condition contributes the set of
// selectors it lets through; the matched set is the AND of all conditions. Maps
// are keyed by a generation (0/1) so user space writes a new policy beside the
// live one and flips config_map.generation to swap atomically.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define CLONE_THREAD 0x00010000
#define TASK_COMM_LEN 16
#define MAX_PATH 255       /* policy paths are at most 255 bytes; LPM data max is 256 */
#define PATH_BUF 4096
#define ARGS_LEN 1024 /* the argv an exec record has room for in its common (smallest) size */
#define ARGS_MID 4096
#define ARGS_MAX 20480 /* the most argv copied, as Elastic's probe: longer is cut, and says so */
#define MAX_RESPONSES 64

enum event_type {
	EVENT_FORK = 1,
	EVENT_EXEC = 2,
	EVENT_EXIT = 3,
	EVENT_DECISION = 4,
	EVENT_SETSID = 5,
	EVENT_FILE = 6,
};

/* File operations, numbered as policy.Op. */
enum file_op {
	FOP_CREATE_EXECUTABLE = 3,
	FOP_MODIFY_EXECUTABLE = 4,
	FOP_CREATE_FILE = 5,
	FOP_MODIFY_FILE = 6,
	FOP_DELETE_FILE = 7,
};

/* The LSM hook that saw a file operation (cloud_defend.hook_point). */
enum hook {
	HOOK_FILE_OPEN = 1,
	HOOK_PATH_MKNOD = 2,
	HOOK_PATH_UNLINK = 3,
	HOOK_PATH_CHMOD = 4,
	HOOK_PATH_TRUNCATE = 5,
	HOOK_PATH_RENAME = 6,
	HOOK_PATH_LINK = 7,
	HOOK_FILE_PERMISSION = 8,
	HOOK_INODE_SETXATTR = 9,
	HOOK_INODE_REMOVEXATTR = 10,
	HOOK_MMAP_FILE = 11,
	HOOK_FILE_MPROTECT = 12,
	HOOK_INODE_SET_ACL = 13,
};

enum action {
	ACTION_LOG = 1,
	ACTION_ALERT = 2,
	ACTION_BLOCK = 4,
};

enum cd_stat {
	STAT_RINGBUF_DROPS = 0,
	STAT_PATH_ERRORS = 1,
	STAT_DECISIONS = 2,
	STAT_BLOCKS = 3,
	STAT_MAX = 4,
};

// The host's pid namespace: processes outside it are container workloads.
const volatile __u32 host_pidns = 0;

struct cd_config {
	__u32 generation;
	__u32 enforce; /* 0: evaluate and report but never block (dry run) */
};

struct responses {
	__u32 n;
	__u32 valid;
	__u64 match[MAX_RESPONSES];
	__u64 exclude[MAX_RESPONSES];
	__u8 actions[MAX_RESPONSES];
};

struct policy {
	__u64 fork_ops;     /* selectors covering fork */
	__u64 exec_ops;     /* selectors covering exec */
	__u64 memfd_ops;    /* selectors covering only exec of a memfd (execMemFd) */
	__u64 no_name;      /* selectors without processName */
	__u64 no_exe;       /* selectors without processExecutable */
	__u64 interactive;  /* selectors satisfied by an interactive session */
	__u64 batch;        /* selectors satisfied by a non-interactive session */
	__u64 agnostic;     /* selectors without container conditions */
	__u64 layers[8];    /* selectors satisfied by an executable in each enum layer (executableLayer) */
	__u64 exec_block;   /* exec selectors a blocking response matches: what executable mappings are judged by */
	struct responses r;
};

/* File selectors, one bit each as for processes. */
struct file_policy {
	__u64 ops[8];        /* selectors covering each operation, indexed by policy.Op */
	__u64 no_path;       /* selectors without targetFilePath */
	__u64 agnostic;      /* selectors without container conditions */
	__u64 ignore_volume; /* ignoreVolumeMounts: not on any volume (file mounts included) */
	__u64 ignore_file;   /* ignoreVolumeFiles: not on a single-file mount */
	struct responses r;
};

struct name_key {
	__u32 generation;
	char comm[TASK_COMM_LEN];
};

struct path_key {
	__u32 prefixlen;       /* in bits, generation byte included */
	__u8 data[1 + MAX_PATH]; /* data[0] is the generation */
};

struct path_val {
	__u64 exact;    /* exact patterns equal to the key; valid when the path is as long */
	__u64 desc;     // "dir/**" patterns whose directory prefixes the key
	__u64 children; // "dir/*" patterns of the directory dirlen bytes long
	__u32 len;
	__u32 dirlen;
};

struct container_key {
	__u64 cgroup_id;
	__u32 generation;
	__u32 pad;
};

struct proc_info {
	__u32 pid;   /* thread group id, as user space knows pids */
	__u32 tid;
	__u32 ppid;
	__u32 pgid;
	__u32 sid;
	__u32 pidns;
	__u32 mntns;
	__u32 uid, euid, gid, egid;
	__u32 tty_major, tty_minor;
	__u32 pad;
	__u64 start_ns; /* task start, boot-based ns: with pid, a stable process identity */
	__u64 cgroup_id;
	char comm[TASK_COMM_LEN];
};

struct event_header {
	__u32 type;
	__u32 generation;
	__u64 ts_ns; /* bpf_ktime_get_boot_ns */
};

struct fork_event {
	struct event_header hdr;
	struct proc_info proc;
	__u32 parent_tid;
	__u32 pad;
};

struct setsid_event {
	struct event_header hdr;
	struct proc_info proc; /* after setsid: sid == pid, no controlling tty */
};

struct file_event {
	struct event_header hdr;
	struct proc_info proc;
	__u64 matched;
	__u8 actions;
	__u8 blocked;
	__u8 on_volume;     /* the target is not on the container's root filesystem */
	__u8 on_file_mount; /* the target is a single-file mount */
	__u32 op;           /* enum file_op */
	__u32 hook;         /* enum hook */
	__u32 path_len;     /* full length; path holds the first 255 bytes */
	char path[MAX_PATH + 1];
};

struct exit_event {
	struct event_header hdr;
	struct proc_info proc;
	__u32 exit_code;
	__u32 pad;
};

struct exec_event {
	struct event_header hdr;
	struct proc_info proc;
	__u32 filename_len;
	__u32 args_len;
	__u32 args_truncated;
	__u32 pad;
	__u8 exe_truncated; /* exe or cwd longer than 255 bytes (the field holds the first 255), or deeper than MAX_STEPS */
	__u8 cwd_truncated;
	__u8 exe_layer; /* enum layer */
	__u8 pad2[5];
	char filename[MAX_PATH + 1];
	char exe[MAX_PATH + 1]; /* resolved, as the task's root sees it */
	char cwd[MAX_PATH + 1];
	__u32 argc;     /* the true argument count, even when args is cut */
	__u32 args_cap; /* bytes of args this record has: ARGS_LEN, ARGS_MID or ARGS_MAX */
	/* argv follows, args_len bytes: the record is reserved in one of three sizes
	 * (ringbuf reservations are of constant size), the smallest that holds it, so
	 * the common exec pays for 1 KiB, not 20. */
	char args[];
};

struct decision_event {
	struct event_header hdr;
	struct proc_info proc;
	__u64 matched;
	__u8 actions;
	__u8 blocked;
	__u8 memfd;
	__u8 interactive;
	__u32 op;       /* enum op */
	__u32 path_len; /* full resolved length, may exceed what path holds */
	__u8 exe_layer; /* enum layer */
	__u8 hook;      /* 0 for fork and exec; HOOK_MMAP_FILE or HOOK_FILE_MPROTECT for an executable mapping */
	__u8 pad[2];
	char path[MAX_PATH + 1];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cd_config);
} config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct policy);
} policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct file_policy);
} file_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * 64 * 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_key);
	__type(value, struct path_val);
} file_paths SEC(".maps");

/* A directory ("dir/", NUL-padded) and its generation slot: the key of the
 * selectors with a file pattern at or below it, for directory renames only. Apart
 * from the file trie, which every file operation looks up, so that it stays as
 * small as the patterns themselves. */
struct tree_key {
	__u32 generation;
	char dir[MAX_PATH + 1];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 64 * 64);
	__type(key, struct tree_key);
	__type(value, __u64);
} file_trees SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 16384);
	__type(key, struct container_key);
	__type(value, __u64);
} file_containers SEC(".maps");

/* Verdicts for writes through open files, by struct file: the generation counter
 * (shifted left by one) under which writes through it were allowed, and its inode.
 * file_open records the verdict of every write open it allows; file_permission and
 * the mapping hooks reuse one of the live generation, so only the first write
 * after a swap (or through a file opened before any policy) is judged. Refusals are
 * never recorded: every refused write is judged, and reported. A file allocated
 * later at a freed one's address (the slab's usual choice) finds its own inode
 * there or nothing of its own: a different inode is judged afresh. */
struct verdict {
	__u64 gen;
	__u64 inode;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct verdict);
} write_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 64 * 64);
	__type(key, struct name_key);
	__type(value, __u64);
} names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * 64 * 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_key);
	__type(value, struct path_val);
} paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 16384);
	__type(key, struct container_key);
	__type(value, __u64);
} containers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define MAX_STEPS 65536 /* dentries and mounts one walk visits; deeper paths do not resolve */
#define TOP 128         /* components a walk keeps: the first 255 bytes of a path hold at most 128 */

/* What one read brings of a dentry: from d_parent on, its d_name and, on every
 * kernel since 2.6, the inline name that short names (up to 31 bytes, 39 since 6.14)
 * live in. */
#define CHUNK 72
#define CHUNK_MASK 127 /* at & CHUNK_MASK bounds what fill_step reads; it stays in the scratch value */

/* A path component found by the walk. */
struct comp {
	__u64 name; /* const unsigned char *: the name, in the dentry */
	__u32 len;
	__u32 at;           /* where the name starts in chunk, or CHUNK when it is not in it */
	__u8 chunk[CHUNK]; /* the dentry from d_parent on */
};

struct scratch;

/* The walk's results are kept in the scratch map value rather than on the stack:
 * up to 6.6 the verifier follows a bpf_loop callback's effects on its caller's
 * stack as if it ran once, and on 6.1 it took a path's length after the walk for
 * less than 255 and removed the clamp before the trie lookup as dead code, so a
 * longer path matched nothing. Loads from a map value are unknown to it, so
 * nothing is pruned. (The contexts themselves must be on the stack: 6.1's
 * bpf_loop takes no other.) */
struct walk_out {
	__u32 n;     /* components seen */
	__u32 total; /* length of the whole path */
	__u32 leaf;  /* length of the last component */
	__u32 state; /* 0 walking, 1 reached the root */
	__u32 pos;   /* bytes of the path written by fill_step */
	__u32 pad;
};

struct scratch {
	struct walk_out walk;
	struct tree_key tree; /* file_trees' key, built for directory renames */
	char path[PATH_BUF]; /* bpf_d_path's output */
	char fname[256];
	struct comp comps[TOP]; /* the walk's components nearest the root, by depth modulo TOP */
	/* The path as an LPM key: the generation tag, then the path's first 255 bytes.
	 * Resolved paths are built here in place, and events copy them from here. */
	struct path_key key;
	char slack[MAX_PATH + 1]; /* keeps a component copied near the end of key inside the value */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += 1;
}

/* Waking the reader for every event costs a context switch each; telemetry and
 * log-only decisions are batched: the reader polls every few tens of milliseconds
 * (ebpf.flushInterval) and is woken early once WAKEUP_BYTES are pending. Alerts
 * and blocks wake it at once. */
#define WAKEUP_BYTES (256 * 1024)

static __always_inline void submit(void *e, int urgent)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (urgent || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void *reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		count(STAT_RINGBUF_DROPS);
	return e;
}

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

/* Where an executable lives when its filesystem is an overlay (a container's
 * rootfs): the drift signal. An upper-only file was added after the container
 * started; an upper file with a lower one was changed (copied up) after it started. */
enum layer {
	LAYER_NONE = 0,       /* not on an overlay */
	LAYER_LOWER = 1,      /* only in the image's (read-only) layers */
	LAYER_UPPER = 2,      /* copied up: in the writable layer, over an image file */
	LAYER_UPPER_ONLY = 3, /* only in the writable layer: added after start */
	LAYER_UNKNOWN = 4,    /* an overlay whose inode layout this build does not know */
};

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
		struct ovl_inode___lower_inode *oi = (void *)ino - bpf_core_field_offset(struct ovl_inode___lower_inode, vfs_inode);
		if (!BPF_CORE_READ(oi, __upperdentry))
			return LAYER_LOWER;
		return BPF_CORE_READ(oi, lower) ? LAYER_UPPER : LAYER_UPPER_ONLY;
	}
	return LAYER_UNKNOWN;
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

/* path_masks returns the selectors whose path patterns (in the LPM trie lpm, under
 * tag: type and generation slot) match the path in s->key, len bytes long (may exceed
 * what the key holds), whose last component is name_len bytes. With tree, the path
 * is a directory's, "dir/", and the operation is on the files below it: the
 * patterns at or below it match too (file_trees). */
static __always_inline __u64 path_masks(void *lpm, struct scratch *s, __u8 tag, __u32 len, __u32 name_len, int tree)
{
	__u32 n = len > MAX_PATH ? MAX_PATH : len;
	s->key.data[0] = tag;
	/* Bytes past n may be stale; prefixlen keeps the lookup from reading them. */
	s->key.prefixlen = 8 * (1 + n);
	__u64 m = 0;
	if (tree) {
		name_len = 0;
		if (len <= MAX_PATH) {
			__builtin_memset(&s->tree, 0, sizeof(s->tree));
			s->tree.generation = tag;
			bpf_probe_read_kernel(s->tree.dir, n & MAX_PATH, &s->key.data[1]);
			__u64 *below = bpf_map_lookup_elem(&file_trees, &s->tree);
			if (below)
				m = *below;
		}
	}
	struct path_val *v = bpf_map_lookup_elem(lpm, &s->key);
	if (!v)
		return m;
	m |= v->desc;
	if (!tree && v->len == len)
		m |= v->exact;
	if (v->dirlen + name_len == len)
		m |= v->children;
	return m;
}

static __always_inline int is_memfd(struct file *f)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	char name[7] = {};
	bpf_probe_read_kernel(name, 6, BPF_CORE_READ(d, d_name.name));
	if (name[0] != 'm' || name[1] != 'e' || name[2] != 'm' || name[3] != 'f' || name[4] != 'd' || name[5] != ':')
		return 0;
	return BPF_CORE_READ(d, d_inode, __i_nlink) == 0;
}

/* Loop bodies run through bpf_loop: the verifier checks them once instead of
 * unrolling every path through 64 responses or 256 filename bytes. */
struct base_ctx {
	struct scratch *s;
	long len;
	__u32 base;
};

static long last_slash(__u32 i, struct base_ctx *c)
{
	if ((long)i >= c->len)
		return 1;
	if (c->s->fname[i & (sizeof(c->s->fname) - 1)] == '/')
		c->base = i + 1;
	return 0;
}

struct resp_ctx {
	struct responses *r;
	__u64 m;
	__u8 actions;
};

static long fire(__u32 i, struct resp_ctx *c)
{
	if (i >= c->r->n)
		return 1;
	/* n <= 64 is user space's promise; the mask is the verifier's bound.
	 * (A separate i < 64 test would let the compiler drop the mask.) */
	__u32 j = i & (MAX_RESPONSES - 1);
	if ((c->m & c->r->match[j]) && !(c->m & c->r->exclude[j]))
		c->actions |= c->r->actions[j];
	return 0;
}

/* respond fires the responses for matched selectors m, counts the decision, and says
 * whether it blocks (never in a dry run). */
static __always_inline __u8 respond(struct responses *r, __u64 m, struct cd_config *cfg, int *block)
{
	struct resp_ctx rc = {.r = r, .m = m};
	bpf_loop(MAX_RESPONSES, fire, &rc, 0);
	*block = (rc.actions & ACTION_BLOCK) && cfg->enforce;
	count(STAT_DECISIONS);
	if (*block)
		count(STAT_BLOCKS);
	return rc.actions;
}

enum op {
	OP_FORK = 1,
	OP_EXEC = 2,
};

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
		struct decision_event *e = reserve(sizeof(*e));
		if (e) {
			__builtin_memset(e, 0, sizeof(*e));
			e->hdr.type = EVENT_DECISION;
			e->hdr.generation = counter;
			e->hdr.ts_ns = bpf_ktime_get_boot_ns();
			fill_proc(&e->proc, t);
			e->op = op;
			e->matched = m;
			e->actions = actions;
			e->blocked = block;
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
		struct file_event *e = reserve(sizeof(*e));
		if (e) {
			__builtin_memset(e, 0, sizeof(*e));
			e->hdr.type = EVENT_FILE;
			e->hdr.generation = counter;
			e->hdr.ts_ns = bpf_ktime_get_boot_ns();
			fill_proc(&e->proc, t);
			e->matched = m;
			e->actions = actions;
			e->blocked = block;
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
int BPF_PROG(enforce_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, unsigned int flags, int ret)
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
int BPF_PROG(enforce_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry, int ret)
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
	return judge_xattr(dentry, n, xattr_acl_grants_exec(n, (const void *)arg(ctx, 3), arg(ctx, 4)), HOOK_INODE_SETXATTR);
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
int BPF_PROG(empty_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, unsigned int flags, int ret)
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
int BPF_PROG(empty_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags, int ret)
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
