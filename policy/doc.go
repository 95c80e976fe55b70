// Package policy holds the D4C policy language: it parses the YAML users write in
// Kibana and elastic-agent.yml, validates it with positioned diagnostics, compiles it
// into an immutable Policy, and evaluates operations against it.
//
// Policy.Evaluate is the normative meaning of a policy. The kernel engine compiles
// the same Policy into BPF maps and is tested against this evaluator, so any change
// to matching semantics belongs here first.
//
// # Network
//
// The network: section is cloud-defend's extension to D4C (Kibana's policy editor
// does not know it). Its selectors and responses follow the rules of the other
// sections, but unknown keys and conditions of other sections are errors there,
// not warnings: no upstream schema lets them through, and an ignored condition
// would widen a selector.
//
// # Network conditions
//
// Network selectors take destinationAddress and sourceAddress (IPv4 and IPv6
// addresses and CIDRs), destinationPort and sourcePort (ports 0 to 65535 and
// inclusive ranges LOW-HIGH), protocol (tcp, udp), the workload conditions every
// section has (containerImageName, containerImageFullName, containerImageTag,
// kubernetesClusterId, kubernetesClusterName, kubernetesNamespace,
// kubernetesPodName, kubernetesPodLabel) and the D4C process conditions, about
// the process doing the operation: processExecutable, processName and
// sessionLeaderInteractive (a connection from a kubectl exec -it session).
// Rejected there: the file conditions (targetFilePath, ignoreVolumeMounts,
// ignoreVolumeFiles: a network operation has no target file), executableLayer
// (an extension of the process section, judged at exec), and the first-version
// names (the first version had no network section).
//
// A CIDR with host bits set (10.0.0.1/8) is rejected, not masked: it is a
// mistyped length or a mistyped network, and guessing either would silently
// change what a blocking rule covers. IPv6 zones (fe80::1%eth0) are rejected.
//
// # Network operations
//
// Network operations are TCP and UDP over IPv4 and IPv6; other families and
// protocols (Unix sockets, raw sockets, ICMP, SCTP) are not network operations.
//
//   - connect: an outgoing connection. For TCP, connect(2). For UDP, connect(2),
//     and every send to an explicit destination (sendto, sendmsg with a msg_name)
//     on a socket that is not connected: each such datagram is a connect to its
//     destination, so a verdict holds for all of them. A kernel must judge every
//     send (judging only the first would let the second, to another destination,
//     through); it may cache a verdict and report only the first datagram per
//     socket and destination. Sends on a connected UDP socket go to the address
//     judged at connect and are not judged again.
//   - accept: an incoming TCP connection taken by accept(2) on a listening socket.
//     UDP has no accept.
//   - bind: bind(2) of a TCP or UDP socket to a local address, whether it then
//     listens or not (an automatic bind at connect or listen is not a bind
//     operation).
//
// # Network endpoints
//
// Source and destination follow the direction of the connection:
//
//	op       source (sourceAddress/sourcePort)          destination (destinationAddress/destinationPort)
//	connect  the local address, if the socket was bound  the remote address connected or sent to
//	accept   the remote peer (the client)                 the local address that accepted (the server's)
//	bind     the local address bound (0.0.0.0, :: for    none
//	         any; port 0 for an ephemeral port)
//
// An endpoint an operation does not have (a bind's destination, the source of a
// connect on a socket that was never bound) is an invalid netip.Addr in Operation,
// and no address or port condition on it matches; a selector without conditions on
// it still does. A port condition applies to an endpoint's port only when the
// endpoint's address is valid.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what an IPv6 socket connecting to an
// IPv4 peer sees) are IPv4, both in operations (the kernel reports them as IPv4, and
// Evaluate unmaps them) and in policy values (::ffff:10.0.0.0/104 is read as
// 10.0.0.0/8). An IPv6 prefix never matches an IPv4 address: ::/0 is every IPv6
// address, and "any address" is [0.0.0.0/0, "::/0"].
//
// # Compiling network selectors for a kernel
//
// A network selector is bit i of a u64, as in the other sections (Selectors(Network)
// in policy order), and a kernel ANDs per-condition masks:
//
//	matched = ops[op] & protocols[proto]
//	        & (noDstAddr | dstTrie(family, daddr)) & (noDstPort | dstPorts(dport))
//	        & (noSrcAddr | srcTrie(family, saddr)) & (noSrcPort | srcPorts(sport))
//	        & (noName | names[comm]) & (noExe | paths(exe)) & (interactive or batch)
//	        & (agnostic | containers[cgroup])
//
// where noX holds the selectors without condition X, and the d/s tries and port
// lookups are skipped (contribute 0) for an endpoint the operation does not have.
//
//   - Addresses (DestinationAddress, SourceAddress: normalised, masked prefixes,
//     IPv4 ones 4 bytes long): one LPM trie per family and direction, keyed by
//     prefix (32-bit keys for IPv4, 128-bit for IPv6). An LPM lookup returns only
//     the longest matching entry, so every entry's value must be the union of the
//     selectors of every policy prefix that contains the entry's prefix (for
//     10.0.0.0/8 and 10.1.0.0/16, the /16 entry carries both); add a /0 entry only
//     when a policy value is /0.
//   - Ports (DestinationPort, SourcePort: inclusive ranges): a 65536-entry array of
//     masks per direction (512 KiB each), or an LPM trie on the 16-bit port with
//     each range split into its aligned prefixes (at most 30 per range) and entries
//     unioned as for addresses.
//   - Protocol: a mask per protocol (tcp, udp); a selector without protocol is in
//     both.
//   - processName, processExecutable, sessionLeaderInteractive and the workload
//     conditions are the process section's, compiled the same way.
//
// Responses fire as in the other sections: matched&match != 0 and
// matched&exclude == 0 (Response.MatchMask, ExcludeMask).
package policy
