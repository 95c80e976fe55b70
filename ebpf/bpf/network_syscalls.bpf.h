/* SPDX-License-Identifier: GPL-2.0 */
/* Network telemetry for kernels without BPF LSM (detection only): a workload's
 * connect, bind, accept/accept4 and UDP sendto/sendmsg with an address, seen at
 * the syscall's exit when it succeeded (connect: also EINPROGRESS). The
 * addresses a call passes are read from user memory at its entry; the socket
 * (protocol, local end, an accepted connection's peer) from the task's fd table.
 * Only workloads (tasks outside the node's pid namespace), TCP and UDP, and
 * operations the live network policy has a selector for are reported; user
 * space evaluates the selectors (reported with UserSpace, never blocked).
 *
 * Included after network.bpf.h: it uses its records and helpers. */
#ifndef __CLOUD_DEFEND_NETWORK_SYSCALLS_BPF_H__
#define __CLOUD_DEFEND_NETWORK_SYSCALLS_BPF_H__

/* event.HookSys*: the syscalls that report network operations without BPF LSM. */
#define HOOK_SYS_CONNECT 24
#define HOOK_SYS_ACCEPT 25
#define HOOK_SYS_BIND 26
#define EINPROGRESS 115
#define S_IFSOCK 0140000

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct net_event);
} net_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct net_event);
} net_scratch SEC(".maps");

/* sock_of_fd is the sock behind a task's socket fd, 0 for other files. */
static __always_inline struct sock *sock_of_fd(struct task_struct *t, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (fd < 0 || fd >= (int)BPF_CORE_READ(fdt, max_fds))
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & 0170000) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* net_covered says whether the live network policy has a selector for op on
 * proto: what is not covered is not reported. */
static __always_inline int net_covered(__u32 op, __u8 proto)
{
	__u32 zero = 0;
	struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	if (!cfg)
		return 0;
	__u32 gen = cfg->generation & 1;
	struct net_policy *pol = bpf_map_lookup_elem(&net_policies, &gen);
	if (!pol || !pol->r.valid)
		return 0;
	return (pol->ops[(op - NOP_CONNECT) & 3] & (proto == IPPROTO_TCP ? pol->tcp : pol->udp)) != 0;
}

/* net_enter keeps a workload's call on fd to address sa (user memory, len
 * bytes) until its exit. */
static __always_inline int net_enter(__u32 op, __u32 hook, int fd, struct sockaddr *sa, int len)
{
	struct task_struct *t = in_scope();
	if (!t || !sa)
		return 0;
	struct sock *sk = sock_of_fd(t, fd);
	if (!sk)
		return 0;
	__u8 proto = sock_proto(sk);
	if (!proto || (op == NOP_CONNECT && hook == HOOK_SOCKET_SENDMSG && proto != IPPROTO_UDP))
		return 0;
	if (!net_covered(op, proto))
		return 0;
	__u32 zero = 0;
	struct net_event *e = bpf_map_lookup_elem(&net_scratch, &zero);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	int v4 = BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET;
	struct endpoint *addr = op == NOP_BIND ? &e->src : &e->dst;
	if (!sockaddr_endpoint(addr, sa, len, v4 && op != NOP_CONNECT, 1) &&
	    !sockaddr_endpoint(addr, sa, len, v4 && hook == HOOK_SOCKET_SENDMSG, 1))
		return 0;
	if (op == NOP_CONNECT)
		sock_local(&e->src, sk);
	e->op = op;
	e->hook = hook == HOOK_SOCKET_SENDMSG ? HOOK_SYS_CONNECT : hook;
	e->protocol = proto;
	e->fd = fd;
	__u32 tid = t->pid;
	bpf_map_update_elem(&net_inflight, &tid, e, BPF_ANY);
	return 0;
}

/* net_exit reports the call kept at entry if it succeeded. */
static __always_inline int net_exit(long ret, int inprogress_ok)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct net_event *k = bpf_map_lookup_elem(&net_inflight, &tid);
	if (!k)
		return 0;
	if (ret >= 0 || (inprogress_ok && ret == -EINPROGRESS)) {
		struct net_event *e = reserve(sizeof(*e));
		if (e) {
			*e = *k;
			struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
			__u32 zero = 0;
			struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
			e->hdr.type = EVENT_NETWORK;
			e->hdr.generation = cfg ? cfg->generation : 0;
			e->hdr.ts_ns = bpf_ktime_get_boot_ns();
			fill_proc(&e->proc, t);
			e->interactive = t->signal->tty != 0;
			submit(e, 0);
		}
	}
	bpf_map_delete_elem(&net_inflight, &tid);
	return 0;
}

/* One enter and one exit program per syscall (watch_<name>, watch_<name>_exit),
 * as for the file syscalls: each runs only for its own call. NET_ENTER is for the
 * calls that take the socket, the address and its length as arguments (addr and
 * addrlen are their indexes); inprogress_ok: EINPROGRESS is a success. */
#define NET_ENTER(name, op, hook, addr, addrlen)                                                  \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                               \
	int watch_##name(struct trace_event_raw_sys_enter *ctx)                                   \
	{                                                                                         \
		return net_enter(op, hook, (int)ctx->args[0], (struct sockaddr *)ctx->args[addr], \
				 (int)ctx->args[addrlen]);                                        \
	}
#define NET_EXIT(name, inprogress_ok)                                 \
	SEC("tracepoint/syscalls/sys_exit_" #name)                    \
	int watch_##name##_exit(struct trace_event_raw_sys_exit *ctx) \
	{                                                             \
		return net_exit(ctx->ret, inprogress_ok);             \
	}

/* connect(fd, addr, addrlen), bind(fd, addr, addrlen) */
NET_ENTER(connect, NOP_CONNECT, HOOK_SYS_CONNECT, 1, 2)
NET_EXIT(connect, 1)
NET_ENTER(bind, NOP_BIND, HOOK_SYS_BIND, 1, 2)
NET_EXIT(bind, 0)

/* sendto(fd, buf, len, flags, addr, addrlen) */
NET_ENTER(sendto, NOP_CONNECT, HOOK_SOCKET_SENDMSG, 4, 5)
NET_EXIT(sendto, 0)

/* sendmsg(fd, msg, flags): the address is in the user's msghdr. */
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int watch_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct user_msghdr mh = {};
	if (bpf_probe_read_user(&mh, sizeof(mh), (void *)ctx->args[1]) < 0)
		return 0;
	return net_enter(NOP_CONNECT, HOOK_SOCKET_SENDMSG, (int)ctx->args[0], (struct sockaddr *)mh.msg_name,
			 mh.msg_namelen);
}
NET_EXIT(sendmsg, 0)

/* accept's new socket exists only at its exit: it is read from the new fd. */
static __always_inline int accepted_fd(long fd)
{
	if (fd < 0)
		return 0;
	struct task_struct *t = in_scope();
	if (!t)
		return 0;
	struct sock *sk = sock_of_fd(t, (int)fd);
	if (!sk || sock_proto(sk) != IPPROTO_TCP || !net_covered(NOP_ACCEPT, IPPROTO_TCP))
		return 0;
	struct net_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	sock_peer(&e->src, sk);
	sock_local(&e->dst, sk);
	__u32 zero = 0;
	struct cd_config *cfg = bpf_map_lookup_elem(&config_map, &zero);
	e->hdr.type = EVENT_NETWORK;
	e->hdr.generation = cfg ? cfg->generation : 0;
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	fill_proc(&e->proc, t);
	e->interactive = t->signal->tty != 0;
	e->protocol = IPPROTO_TCP;
	e->op = NOP_ACCEPT;
	e->hook = HOOK_SYS_ACCEPT;
	e->fd = fd;
	submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int watch_accept4_exit(struct trace_event_raw_sys_exit *ctx)
{
	return accepted_fd(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int watch_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	return accepted_fd(ctx->ret);
}

#endif /* __CLOUD_DEFEND_NETWORK_SYSCALLS_BPF_H__ */
