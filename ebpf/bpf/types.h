/* SPDX-License-Identifier: GPL-2.0 */
/* Shared types: the constants and enums user space mirrors (bpf2go -type), the
 * ring records, the map keys and values, and the per-CPU scratch space. */
#ifndef __CLOUD_DEFEND_TYPES_H__
#define __CLOUD_DEFEND_TYPES_H__

#define EPERM 1
#define CLONE_THREAD 0x00010000
#define TASK_COMM_LEN 16
#define MAX_PATH 255 /* policy paths are at most 255 bytes; LPM data max is 256 */
#define PATH_BUF 4096
#define ARGS_LEN 1024 /* the argv an exec record has room for in its common (smallest) size */
#define ARGS_MID 4096
#define ARGS_MAX 20480 /* the most argv copied, as Elastic's probe: longer is cut, and says so */
/* room for the executable and the cwd in an exec record's smallest size; PATH_BUF in its larger */
#define EXEC_PATH_MIN 256
#define MAX_RESPONSES 64

enum event_type {
	EVENT_FORK = 1,
	EVENT_EXEC = 2,
	EVENT_EXIT = 3,
	EVENT_DECISION = 4,
	EVENT_SETSID = 5,
	EVENT_FILE = 6,
	EVENT_SYSFILE = 7, /* file_syscalls.bpf.h: a workload's file syscall, without BPF LSM */
	EVENT_NETWORK = 8, /* a connect, accept or bind fired a response */
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
enum hook_point {
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
	HOOK_SOCKET_CONNECT = 14,
	HOOK_SOCKET_ACCEPT = 15,
	HOOK_SOCKET_BIND = 16,
	HOOK_SOCKET_SENDMSG = 17,
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

/* The process operation of a decision_event. */
enum process_op {
	OP_FORK = 1,
	OP_EXEC = 2,
};

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
	__u64 fork_ops;    /* selectors covering fork */
	__u64 exec_ops;    /* selectors covering exec */
	__u64 memfd_ops;   /* selectors covering only exec of a memfd (execMemFd) */
	__u64 no_name;     /* selectors without processName */
	__u64 no_exe;      /* selectors without processExecutable */
	__u64 interactive; /* selectors satisfied by an interactive session */
	__u64 batch;       /* selectors satisfied by a non-interactive session */
	__u64 agnostic;    /* selectors without container conditions */
	__u64 layers[8];   /* selectors satisfied by an executable in each enum layer (executableLayer) */
	__u64 exec_block;  /* exec selectors a blocking response matches: what executable mappings are judged by */
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
	__u32 prefixlen;         /* in bits, generation byte included */
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
	__u32 pid; /* thread group id, as user space knows pids */
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
	__u32 parent_pidns; /* the forking task's: the node's when a node process forks into a new namespace */
};

struct setsid_event {
	struct event_header hdr;
	struct proc_info proc; /* after setsid: sid == pid, no controlling tty */
};

/* The head of every decision record (file_event, decision_event, net_event):
 * reserve_decision fills it. Each record repeats its fields rather than
 * embedding it, so that bpf2go's Go twins keep them flat; DECISION_HEAD checks
 * that a record lays them out as the head does. */
struct decision_head {
	struct event_header hdr;
	struct proc_info proc;
	__u64 matched;
	__u8 actions;
	__u8 blocked;
};

#define HEAD_AT(rec, f) (__builtin_offsetof(struct rec, f) == __builtin_offsetof(struct decision_head, f))
#define DECISION_HEAD(rec)                                                                                            \
	_Static_assert(HEAD_AT(rec, proc) && HEAD_AT(rec, matched) && HEAD_AT(rec, actions) && HEAD_AT(rec, blocked), \
		       #rec " starts as struct decision_head")

struct file_event {
	struct event_header hdr;
	struct proc_info proc;
	__u64 matched;
	__u8 actions;
	__u8 blocked;
	__u8 on_volume;     /* the target is not on the container's root filesystem */
	__u8 on_file_mount; /* the target is a single-file mount */
	__u32 op;           /* enum file_op */
	__u32 hook;         /* enum hook_point */
	__u32 path_len;     /* full length; path holds the first 255 bytes */
	char path[MAX_PATH + 1];
};
DECISION_HEAD(file_event);

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
	__u8 exe_truncated; /* exe longer than PATH_BUF bytes (the tail holds its first PATH_BUF), or its walk incomplete */
	__u8 cwd_truncated;
	__u8 exe_layer; /* enum layer */
	__u8 pad2[5];
	char filename[MAX_PATH + 1];
	__u32 argc;     /* the true argument count, even when args is cut */
	__u32 args_cap; /* bytes of the tail for argv: ARGS_LEN, ARGS_MID or ARGS_MAX */
	__u32 path_cap; /* bytes of the tail for each of exe and cwd: EXEC_PATH_MIN or PATH_BUF */
	__u32 exe_len;  /* bytes of exe (resolved, as the task's mount tree sees it), at args[args_cap] */
	__u32 cwd_len;  /* bytes of cwd, at args[args_cap + path_cap] */
	__u32 pad3;
	/* The tail: argv (args_len bytes of args_cap), then exe (path_cap bytes), then
	 * cwd (path_cap bytes), none NUL-terminated. The record is reserved in one of
	 * six sizes (ringbuf reservations are of constant size), the smallest that
	 * holds it, so the common exec pays for 1 KiB of argv and 256 bytes per path,
	 * not 20 KiB and 4. */
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
	__u32 op;       /* enum process_op */
	__u32 path_len; /* full resolved length, may exceed what path holds */
	__u8 exe_layer; /* enum layer */
	__u8 hook;      /* 0 for fork and exec; HOOK_MMAP_FILE or HOOK_FILE_MPROTECT for an executable mapping */
	__u8 pad[2];
	char path[MAX_PATH + 1];
};
DECISION_HEAD(decision_event);

/* A directory ("dir/", NUL-padded) and its generation slot: the key of the
 * selectors with a file pattern at or below it, for directory renames only. Apart
 * from the file trie, which every file operation looks up, so that it stays as
 * small as the patterns themselves. */
struct tree_key {
	__u32 generation;
	char dir[MAX_PATH + 1];
};

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
	__u32 at;          /* where the name starts in chunk, or CHUNK when it is not in it */
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
	char path[PATH_BUF];  /* bpf_d_path's output */
	char fname[256];
	struct comp comps[TOP]; /* the walk's components nearest the root, by depth modulo TOP */
	/* The path as an LPM key: the generation tag, then the path's first 255 bytes.
	 * Resolved paths are built here in place, and events copy them from here. */
	struct path_key key;
	char slack[MAX_PATH + 1]; /* keeps a component copied near the end of key inside the value */
};

#endif /* __CLOUD_DEFEND_TYPES_H__ */
