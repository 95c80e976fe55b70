/* SPDX-License-Identifier: GPL-2.0 */
/* The maps every program shares (one object, one set of maps; user space pins
 * them), the load-time constant host_pidns, and the counter and ring helpers. */
#ifndef __CLOUD_DEFEND_MAPS_H__
#define __CLOUD_DEFEND_MAPS_H__

const volatile __u32 host_pidns = 0;

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

/* Selector maps that the policy kinds (process, file, network) each have their
 * own copy of, declared alike, each holding both generation slots. */
/* Path patterns (executables, file targets), looked up by path_masks. */
#define PATH_TRIE(name)                               \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);  \
		__uint(max_entries, 2 * 64 * 64);     \
		__uint(map_flags, BPF_F_NO_PREALLOC); \
		__type(key, struct path_key);         \
		__type(value, struct path_val);       \
	} name SEC(".maps")
/* Process names (comm). */
#define NAME_MAP(name)                            \
	struct {                                  \
		__uint(type, BPF_MAP_TYPE_HASH);  \
		__uint(max_entries, 2 * 64 * 64); \
		__type(key, struct name_key);     \
		__type(value, __u64);             \
	} name SEC(".maps")
/* The containers (by cgroup id) of the selectors with container conditions. */
#define CONTAINER_MAP(name)                        \
	struct {                                   \
		__uint(type, BPF_MAP_TYPE_HASH);   \
		__uint(max_entries, 2 * 16384);    \
		__type(key, struct container_key); \
		__type(value, __u64);              \
	} name SEC(".maps")

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

PATH_TRIE(file_paths);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * 64 * 64);
	__type(key, struct tree_key);
	__type(value, __u64);
} file_trees SEC(".maps");

CONTAINER_MAP(file_containers);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct verdict);
} write_verdicts SEC(".maps");

NAME_MAP(names);
PATH_TRIE(paths);
CONTAINER_MAP(containers);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

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

#endif /* __CLOUD_DEFEND_MAPS_H__ */
