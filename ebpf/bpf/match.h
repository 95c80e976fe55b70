/* SPDX-License-Identifier: GPL-2.0 */
/* Policy evaluation shared by process, file and network enforcement: the path
 * trie lookups, memfd detection, the responses fired for matched selectors, and
 * the head of the decision records they report. */
#ifndef __CLOUD_DEFEND_MATCH_H__
#define __CLOUD_DEFEND_MATCH_H__

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

/* reserve_decision reserves a decision record of size bytes (one that starts as
 * struct decision_head), zeroes it and fills its head: record type, generation
 * counter, time, task t, the matched selectors m, the actions fired and whether
 * they block. The caller fills the rest and submits it. 0 when the ring is full. */
static __always_inline void *reserve_decision(__u64 size, __u32 type, __u32 counter, struct task_struct *t, __u64 m,
					      __u8 actions, int block)
{
	struct decision_head *h = reserve(size);
	if (!h)
		return 0;
	__builtin_memset(h, 0, size);
	h->hdr.type = type;
	h->hdr.generation = counter;
	h->hdr.ts_ns = bpf_ktime_get_boot_ns();
	fill_proc(&h->proc, t);
	h->matched = m;
	h->actions = actions;
	h->blocked = block;
	return h;
}

#endif /* __CLOUD_DEFEND_MATCH_H__ */
