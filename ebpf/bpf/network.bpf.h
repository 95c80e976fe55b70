/* SPDX-License-Identifier: GPL-2.0 */
/* Network enforcement (BPF LSM): connect, bind, UDP sends to an explicit
 * address, and accepted TCP connections, judged against the network selectors.
 *
 * Hooks (docs/security-model.md says what they do not see):
 *   lsm/socket_connect   TCP and UDP connect(2)                    -> connect (egress)
 *   lsm/socket_sendmsg   a UDP send with an address (sendto, sendmsg
 *                        msg_name, io_uring's too)                 -> connect (egress)
 *   lsm/socket_bind      bind(2)                                    -> bind
 *   fexit/inet_csk_accept  the accepted TCP connection, in the accepting
 *                        task, with its peer                        -> accept (ingress)
 * socket_accept sees only the listening socket, before a connection is taken;
 * the accepted socket (and its peer) exists only when inet_csk_accept returns,
 * in the same task, before accept(2) installs its fd. An fexit program cannot
 * change the return value, so a refused accept marks the new socket in
 * net_refused (socket storage), and lsm/socket_sendmsg and lsm/socket_recvmsg
 * fail every send and receive on it with EPERM: the connection is useless to the
 * workload from its first byte.
 *
 * Matching, per generation slot (ebpf/slotcompile.go builds the maps):
 *   matched = ops[op] & proto & (agnostic | net_containers[cgroup])
 *           & (no_daddr | net_prefixes[dst addr]) & (no_dport | net_prefixes[dst port])
 *           & (no_saddr | net_prefixes[src addr]) & (no_sport | net_prefixes[src port])
 *           & (interactive or batch) & (no_name | net_names[comm]) & (no_exe | net_paths[exe])
 * net_prefixes is one LPM trie for addresses (v4 and v6) and ports: a key is
 * (generation, kind, bytes), kind saying which endpoint and family; port ranges
 * are split into aligned prefixes of the 16-bit port. An endpoint the operation
 * does not have contributes 0. Each lookup is one trie walk, at most 4 per
 * operation, and only for conditions a candidate selector has and whose
 * prefixes can hold the key's first byte (net_policy.first). A hook reads the
 * live slot's ops mask first (net_live) and leaves before touching the socket
 * or an address when no selector covers the operation; a connect's local end is
 * read only for a candidate with a source condition, or for an event. */
#ifndef __CLOUD_DEFEND_NETWORK_BPF_H__
#define __CLOUD_DEFEND_NETWORK_BPF_H__

#define AF_UNSPEC 0
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* Network operations, numbered as policy.Op. */
enum net_op {
	NOP_CONNECT = 8,
	NOP_ACCEPT = 9,
	NOP_BIND = 10,
};

/* What a net_prefixes key holds. */
enum net_kind {
	NK_DST4 = 0,
	NK_DST6 = 1,
	NK_SRC4 = 2,
	NK_SRC6 = 3,
	NK_DPORT = 4,
	NK_SPORT = 5,
};

struct net_policy {
	__u64 ops[4]; /* selectors covering connect, accept, bind: indexed by op - NOP_CONNECT */
	__u64 tcp, udp;
	__u64 no_daddr, no_dport, no_saddr, no_sport;
	__u64 no_name, no_exe, interactive, batch, agnostic;
	__u64 any; /* selectors of any operation: 0 when the policy has no network selectors */
	struct responses r;
	/* first[kind][b]: the selectors with a prefix of that kind that can hold a
	 * key whose first byte is b (an address's first octet, a port's high byte).
	 * An array read that spares the trie walk when no candidate can match. */
	__u64 first[6][256];
};

struct net_key {
	__u32 prefixlen; /* in bits: 16 (generation and kind) + the prefix's */
	__u8 generation;
	__u8 kind; /* enum net_kind */
	__u8 data[16];
};

/* One end of a connection: family 0 when the operation has none. */
struct endpoint {
	__u16 family; /* AF_INET, AF_INET6, 0 */
	__u16 port;   /* host order */
	__u8 addr[16];
};

struct net_event {
	struct event_header hdr;
	struct proc_info proc;
	__u64 matched;
	__u8 actions;
	__u8 blocked;
	__u8 interactive;
	__u8 protocol; /* IPPROTO_TCP, IPPROTO_UDP */
	__u32 op;      /* enum net_op */
	__u32 hook;    /* enum hook_point (HOOK_SOCKET_*, or a syscall's without BPF LSM) */
	__u32 fd;      /* without BPF LSM: the syscall's socket (not reported) */
	struct endpoint src, dst;
};
DECISION_HEAD(net_event);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct net_policy);
} net_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * 64 * 64 * 4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net_key);
	__type(value, __u64);
} net_prefixes SEC(".maps");

NAME_MAP(net_names);
PATH_TRIE(net_paths);
CONTAINER_MAP(net_containers);

/* Accepted sockets a blocking response refused (see the top of this file). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} net_refused SEC(".maps");

/* endpoint_addr6 sets e's address to the IPv6 address a, or to the IPv4 address
 * in it when it is IPv4-mapped. */
static __always_inline void endpoint_addr6(struct endpoint *e, struct in6_addr *a)
{
	__u32 *w = (__u32 *)a;
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
		e->family = AF_INET;
		__builtin_memcpy(e->addr, &w[3], 4);
	} else {
		e->family = AF_INET6;
		__builtin_memcpy(e->addr, a, 16);
	}
}

/* sockaddr_endpoint reads a kernel sockaddr (len bytes) into e; an IPv4-mapped
 * IPv6 address is IPv4. unspec_v4: AF_UNSPEC is read as AF_INET (what an IPv4
 * UDP socket's send does with it). Returns 0 for other families. */
static __always_inline int sockaddr_endpoint(struct endpoint *e, struct sockaddr *sa, int len, int unspec_v4, int user)
{
	__u16 fam = 0;
	if (user)
		bpf_probe_read_user(&fam, sizeof(fam), sa);
	else
		bpf_probe_read_kernel(&fam, sizeof(fam), sa);
	if (fam == AF_UNSPEC && unspec_v4)
		fam = AF_INET;
	if (fam == AF_INET && len >= (int)sizeof(struct sockaddr_in)) {
		struct sockaddr_in in = {};
		if (user)
			bpf_probe_read_user(&in, sizeof(in), sa);
		else
			bpf_probe_read_kernel(&in, sizeof(in), sa);
		e->family = AF_INET;
		e->port = bpf_ntohs(in.sin_port);
		__builtin_memcpy(e->addr, &in.sin_addr.s_addr, 4);
		return 1;
	}
	if (fam == AF_INET6 && len >= (int)sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 in6 = {};
		if (user)
			bpf_probe_read_user(&in6, sizeof(in6), sa);
		else
			bpf_probe_read_kernel(&in6, sizeof(in6), sa);
		e->port = bpf_ntohs(in6.sin6_port);
		/* endpoint_addr6 written out: through it the verifier walks ~50% more of connect, bind and sendmsg. */
		__u32 *w = (__u32 *)&in6.sin6_addr;
		if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
			e->family = AF_INET;
			__builtin_memcpy(e->addr, &w[3], 4);
		} else {
			e->family = AF_INET6;
			__builtin_memcpy(e->addr, &in6.sin6_addr, 16);
		}
		return 1;
	}
	return 0;
}

/* sock_local is the socket's local end, when it has one (bound: a local port). */
static __always_inline void sock_local(struct endpoint *e, struct sock *sk)
{
	__u16 num = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!num)
		return;
	e->port = num;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6) {
		struct in6_addr a = BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr);
		endpoint_addr6(e, &a);
		return;
	}
	e->family = AF_INET;
	__be32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	__builtin_memcpy(e->addr, &a, 4);
}

/* sock_peer is a connected socket's remote end. */
static __always_inline void sock_peer(struct endpoint *e, struct sock *sk)
{
	e->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6) {
		struct in6_addr a = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);
		endpoint_addr6(e, &a);
		return;
	}
	e->family = AF_INET;
	__be32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	__builtin_memcpy(e->addr, &a, 4);
}

/* sock_proto is IPPROTO_TCP or IPPROTO_UDP for an inet stream or datagram
 * socket of those protocols, 0 otherwise (raw, SCTP, unix, ...). */
static __always_inline __u8 sock_proto(struct sock *sk)
{
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (fam != AF_INET && fam != AF_INET6)
		return 0;
	__u16 type = BPF_CORE_READ(sk, sk_type);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if (type == SOCK_STREAM && proto == IPPROTO_TCP)
		return IPPROTO_TCP;
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		return IPPROTO_UDP;
	return 0;
}

/* first_byte is b as an index the verifier knows is below 256: the compiler
 * may drop a mask it knows holds (a port's high byte), while the verifier,
 * reading the value back from the stack, does not. */
static __always_inline __u32 first_byte(__u32 b)
{
	asm volatile("%[b] &= 0xff" : [b] "+r"(b));
	return b;
}

/* endpoint_mask is the selectors whose address and port conditions on one end
 * hold (the no_* masks included). Each condition first asks pol->first whether
 * a candidate has a prefix that can hold the key, and walks the trie only then. */
static __always_inline __u64 endpoint_mask(struct net_policy *pol, __u32 gen, struct endpoint *e, __u8 kind4,
					   __u8 kind6, __u8 kport, __u64 no_addr, __u64 no_port, __u64 m)
{
	if (!(m & ~(no_addr & no_port)))
		return m; /* no candidate has a condition on this end */
	if (!e->family)
		return m & no_addr & no_port;
	struct net_key k = {.generation = gen};
	if (m & ~no_addr) {
		__u64 am = no_addr;
		__u8 kind = e->family == AF_INET ? kind4 : kind6;
		if (m & ~no_addr & pol->first[kind % 6][first_byte(e->addr[0])]) {
			k.prefixlen = 16 + (e->family == AF_INET ? 32 : 128);
			k.kind = kind;
			__builtin_memcpy(k.data, e->addr, 16);
			__u64 *v = bpf_map_lookup_elem(&net_prefixes, &k);
			if (v)
				am |= *v;
		}
		m &= am;
	}
	if (m & ~no_port) {
		__u64 pm = no_port;
		if (m & ~no_port & pol->first[kport % 6][first_byte(e->port >> 8)]) {
			__builtin_memset(k.data, 0, sizeof(k.data));
			k.prefixlen = 16 + 16;
			k.kind = kport;
			k.data[0] = e->port >> 8;
			k.data[1] = e->port & 0xff;
			__u64 *v = bpf_map_lookup_elem(&net_prefixes, &k);
			if (v)
				pm |= *v;
		}
		m &= pm;
	}
	return m;
}

/* net_emit reports a network operation. */
static __always_inline void net_emit(struct task_struct *t, __u32 counter, __u32 op, __u32 hook, __u8 proto,
				     struct endpoint *src, struct endpoint *dst, __u64 m, __u8 actions, int block,
				     int interactive)
{
	struct net_event *e = reserve_decision(sizeof(*e), EVENT_NETWORK, counter, t, m, actions, block);
	if (!e)
		return;
	e->interactive = interactive;
	e->protocol = proto;
	e->op = op;
	e->hook = hook;
	e->src = *src;
	e->dst = *dst;
	submit(e, actions & (ACTION_ALERT | ACTION_BLOCK));
}

/* The live slot's network policy, read once per operation: net_live reads it
 * before anything of the socket, and judge_net goes on with the same slot. */
struct net_live {
	struct cd_config *cfg;
	struct net_policy *pol;
	__u32 counter;
	__u32 gen;
};

#define NP_TCP 1
#define NP_UDP 2

/* net_live gives the selectors of the live policy that cover op on any of the
 * protocols in protos (NP_TCP, NP_UDP): 0, the common case (no network
 * selectors, or none for this operation), lets a hook leave before it reads
 * the socket or an address. */
static __always_inline __u64 net_live(__u32 op, int protos, struct net_live *l)
{
	__u32 zero = 0;
	struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return 0;
	__u32 counter = cfg->generation;
	__u32 gen = counter & 1;
	struct net_policy *pol = bpf_map_lookup_elem(&net_policies, &gen);
	if (!pol || !pol->r.valid)
		return 0;
	__u64 p = 0;
	if (protos & NP_TCP)
		p |= pol->tcp;
	if (protos & NP_UDP)
		p |= pol->udp;
	l->cfg = cfg;
	l->pol = pol;
	l->counter = counter;
	l->gen = gen;
	return pol->ops[(op - NOP_CONNECT) & 3] & p;
}

/* judge_net evaluates the network policy l (net_live's, for op) for task t
 * doing op (seen at hook) on a socket of protocol proto between src and dst,
 * reports a decision when a response fires, and says whether it blocks
 * (*block). With lsk, src is that socket's local end, read only when a
 * candidate has a source condition or a response reports it. */
static __always_inline __u8 judge_net(struct net_live *l, struct task_struct *t, __u32 op, __u32 hook, __u8 proto,
				      struct endpoint *src, struct endpoint *dst, struct sock *lsk, int *block)
{
	*block = 0;
	struct net_policy *pol = l->pol;
	__u32 gen = l->gen;
	__u64 m = pol->ops[(op - NOP_CONNECT) & 3] & (proto == IPPROTO_TCP ? pol->tcp : pol->udp);
	if (!m)
		return 0;
	struct container_key ck = {.cgroup_id = bpf_get_current_cgroup_id(), .generation = gen};
	__u64 *cm = bpf_map_lookup_elem(&net_containers, &ck);
	m &= pol->agnostic | (cm ? *cm : 0);
	m = endpoint_mask(pol, gen, dst, NK_DST4, NK_DST6, NK_DPORT, pol->no_daddr, pol->no_dport, m);
	if (!m)
		return 0;
	if (lsk && (m & ~(pol->no_saddr & pol->no_sport))) {
		sock_local(src, lsk);
		lsk = 0;
	}
	m = endpoint_mask(pol, gen, src, NK_SRC4, NK_SRC6, NK_SPORT, pol->no_saddr, pol->no_sport, m);
	if (!m)
		return 0;
	int interactive = t->signal->tty != 0;
	m &= interactive ? pol->interactive : pol->batch;
	if (m & ~pol->no_name) {
		struct name_key nk = {.generation = gen};
		bpf_get_current_comm(nk.comm, sizeof(nk.comm));
		__u64 *nm = bpf_map_lookup_elem(&net_names, &nk);
		m &= pol->no_name | (nm ? *nm : 0);
	}
	if (!m)
		return 0;
	/* The executable, walked only for a selector still in the race that names it. */
	if (m & ~pol->no_exe) {
		__u64 em = pol->no_exe;
		__u32 zero = 0;
		struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
		struct mm_struct *mm = t->mm;
		struct file *exe = mm ? mm->exe_file : 0;
		if (s && exe) {
			int resolved = 0;
			__u32 leaf = 0;
			__u32 len = walk(s, exe->f_path.mnt, exe->f_path.dentry, &resolved, 0, &leaf);
			if (resolved)
				em |= path_masks(&net_paths, s, gen, len, leaf, 0);
			else
				count(STAT_PATH_ERRORS);
		}
		m &= em;
		if (!m)
			return 0;
	}
	__u8 actions = respond(&pol->r, m, l->cfg, block);
	if (actions) {
		if (lsk)
			sock_local(src, lsk);
		net_emit(t, l->counter, op, hook, proto, src, dst, m, actions, *block, interactive);
	}
	return actions;
}

/* judge_sockaddr judges a connect (to address) or a bind (to it as the local
 * end) on sock: op is constant in each program, so what the other one does
 * folds away. */
static __always_inline int judge_sockaddr(struct socket *sock, struct sockaddr *address, int addrlen, __u32 op,
					  __u32 hook)
{
	int local = op == NOP_BIND; /* address is the socket's own end */
	struct net_live l;
	if (!net_live(op, NP_TCP | NP_UDP, &l))
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	__u8 proto = sock_proto(sk);
	if (!proto)
		return 0;
	struct endpoint src = {}, dst = {};
	/* A connect to AF_UNSPEC dissolves a UDP association: not a connection. An
	 * IPv4 socket's bind takes AF_UNSPEC with INADDR_ANY as AF_INET. */
	if (!sockaddr_endpoint(local ? &src : &dst, address, addrlen,
			       local && BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET, 0))
		return 0;
	int block;
	judge_net(&l, t, op, hook, proto, &src, &dst, local ? 0 : sk, &block);
	return block ? -EPERM : 0;
}

SEC("lsm/socket_connect")
int BPF_PROG(enforce_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return judge_sockaddr(sock, address, addrlen, NOP_CONNECT, HOOK_SOCKET_CONNECT);
}

SEC("lsm/socket_bind")
int BPF_PROG(enforce_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return judge_sockaddr(sock, address, addrlen, NOP_BIND, HOOK_SOCKET_BIND);
}

/* refused says whether sk is an accepted connection a blocking response refused. */
static __always_inline int refused(struct sock *sk)
{
	return sk && bpf_sk_storage_get(&net_refused, sk, 0, 0) != 0;
}

SEC("lsm/socket_sendmsg")
int BPF_PROG(enforce_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	if (ret)
		return ret;
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	if (sk->sk_protocol == IPPROTO_TCP)
		return refused(sk) ? -EPERM : 0;
	void *name = msg->msg_name;
	if (!name)
		return 0; /* to the connected address, judged at connect */
	struct net_live l;
	if (!net_live(NOP_CONNECT, NP_UDP, &l))
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	__u8 proto = sock_proto(sk);
	if (proto != IPPROTO_UDP)
		return 0;
	struct endpoint src = {}, dst = {};
	if (!sockaddr_endpoint(&dst, name, msg->msg_namelen, BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET, 0))
		return 0;
	int block;
	judge_net(&l, t, NOP_CONNECT, HOOK_SOCKET_SENDMSG, proto, &src, &dst, sk, &block);
	return block ? -EPERM : 0;
}

SEC("lsm/socket_recvmsg")
int BPF_PROG(enforce_socket_recvmsg, struct socket *sock, struct msghdr *msg, int size, int flags, int ret)
{
	if (ret)
		return ret;
	struct sock *sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	return refused(sk) ? -EPERM : 0;
}

static __always_inline int accepted(struct sock *newsk)
{
	if (!newsk)
		return 0;
	struct net_live l;
	if (!net_live(NOP_ACCEPT, NP_TCP, &l))
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	if (sock_proto(newsk) != IPPROTO_TCP)
		return 0;
	struct endpoint src = {}, dst = {};
	sock_peer(&src, newsk);
	sock_local(&dst, newsk);
	int block;
	judge_net(&l, t, NOP_ACCEPT, HOOK_SOCKET_ACCEPT, IPPROTO_TCP, &src, &dst, 0, &block);
	if (block)
		bpf_sk_storage_get(&net_refused, newsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	return 0;
}

/* inet_csk_accept(sk, flags, err, kern) up to 6.9 ... */
SEC("fexit/inet_csk_accept")
int BPF_PROG(enforce_accept, struct sock *sk, int flags, int *err, bool kern, struct sock *newsk)
{
	return accepted(newsk);
}

/* ... and inet_csk_accept(sk, arg) since 6.10. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(enforce_accept_arg, struct sock *sk, void *arg, struct sock *newsk)
{
	return accepted(newsk);
}

#endif /* __CLOUD_DEFEND_NETWORK_BPF_H__ */
