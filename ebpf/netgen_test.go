package ebpf

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Vocabularies for random network policies and operations: nested prefixes
// (/0, /8, /16, /32 under 127/8, and a near miss), IPv6 ones, single ports and
// ranges that overlap; all on loopback, so the VM can make every operation.
var (
	genNetAddrs = []string{"127.0.0.0/8", "127.0.0.1", "127.1.0.0/16", "127.1.2.3", "127.2.0.0/15", "0.0.0.0/0", "10.0.0.0/8", "::1", "::/0", "fd00::/8"}
	genNetPorts = []string{"80", "8000-8100", "0-1023", "8080", "1024-65535", "9000-9001"}
	genNetOpIPs = []string{"127.0.0.1", "127.1.2.3", "127.1.9.9", "127.3.0.1", "127.2.5.5", "::1"}
	genNetOpPts = []uint16{80, 8000, 8050, 8080, 8100, 8101, 9000, 9001, 1023, 1024, 40000}
)

// genNetPolicy writes a random, valid network policy of up to maxSel selectors.
func genNetPolicy(r *rand.Rand, maxSel int) string {
	n := 1 + r.IntN(maxSel)
	var b strings.Builder
	b.WriteString("network:\n  selectors:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - name: n%d\n", i)
		ops := [][]string{{"connect"}, {"bind"}, {"accept"}, {"connect", "bind"}, {"connect", "accept", "bind"}}[r.IntN(5)]
		fmt.Fprintf(&b, "      operation: [%s]\n", strings.Join(ops, ", "))
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "      protocol: [%s]\n", []string{"tcp", "udp"}[r.IntN(2)])
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "      destinationAddress: [%s]\n", quoted(dedup(pick(r, genNetAddrs, 1+r.IntN(3)))))
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "      destinationPort: [%s]\n", quoted(dedup(pick(r, genNetPorts, 1+r.IntN(2)))))
		}
		if r.IntN(4) == 0 {
			fmt.Fprintf(&b, "      sourceAddress: [%s]\n", quoted(dedup(pick(r, genNetAddrs, 1+r.IntN(2)))))
		}
		if r.IntN(4) == 0 {
			fmt.Fprintf(&b, "      sourcePort: [%s]\n", quoted(dedup(pick(r, genNetPorts, 1+r.IntN(2)))))
		}
		if r.IntN(5) == 0 {
			fmt.Fprintf(&b, "      processName: [%s]\n", []string{"busybox", "nc", "cd-netop"}[r.IntN(3)])
		}
	}
	genResponses(&b, r, "n", n)
	return b.String()
}

func quoted(xs []string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = `"` + x + `"`
	}
	return strings.Join(out, ", ")
}

// genNetOp is a random network operation as the kernel reports it: connect has
// a destination and (bound) a source, accept a peer source and a local
// destination, bind a source only.
func genNetOp(r *rand.Rand) policy.Operation {
	op := policy.Operation{Op: []policy.Op{policy.OpConnect, policy.OpAccept, policy.OpBind}[r.IntN(3)],
		Protocol: []string{"tcp", "udp"}[r.IntN(2)], ProcessName: []string{"busybox", "nc"}[r.IntN(2)]}
	if op.Op == policy.OpAccept {
		op.Protocol = "tcp"
	}
	addr := func() netip.Addr { return netip.MustParseAddr(genNetOpIPs[r.IntN(len(genNetOpIPs))]) }
	port := func() uint16 { return genNetOpPts[r.IntN(len(genNetOpPts))] }
	switch op.Op {
	case policy.OpConnect:
		op.DestinationAddress, op.DestinationPort = addr(), port()
		if r.IntN(2) == 0 {
			op.SourceAddress, op.SourcePort = addr(), port()
		}
	case policy.OpAccept:
		op.SourceAddress, op.SourcePort = addr(), port()
		op.DestinationAddress, op.DestinationPort = addr(), port()
	case policy.OpBind:
		op.SourceAddress, op.SourcePort = addr(), port()
	}
	return op
}

// decideNet is the kernel's network matching (bpf/network.bpf.h judge_net) over
// the compiled maps, the trie lookups done by longest match.
func (c *compiled) decideNet(op *policy.Operation, containerMask uint64) (uint64, policy.Actions) {
	kp := &c.net.policy
	m := kp.Ops[(op.Op-policy.OpConnect)&3]
	if op.Protocol == "tcp" {
		m &= kp.Tcp
	} else {
		m &= kp.Udp
	}
	m &= kp.Agnostic | containerMask
	end := func(a netip.Addr, port uint16, k4, kport bpfobj.ProbeNetKind, noAddr, noPort uint64) {
		if !a.IsValid() {
			m &= noAddr & noPort
			return
		}
		a = a.Unmap()
		am, pm := noAddr, noPort
		// The trie is walked only when a candidate's prefixes can hold the
		// key's first byte (net_policy.first).
		ak := addrPrefix(k4, netip.PrefixFrom(a, a.BitLen()))
		if m&^noAddr&kp.First[ak.kind][ak.data[0]] != 0 {
			am |= c.net.lpm(ak)
		}
		m &= am
		var pk netPrefix
		pk.kind, pk.bits = kport, 16
		pk.data[0], pk.data[1] = byte(port>>8), byte(port)
		if m&^noPort&kp.First[kport][pk.data[0]] != 0 {
			pm |= c.net.lpm(pk)
		}
		m &= pm
	}
	end(op.DestinationAddress, op.DestinationPort, bpfobj.ProbeNetKindNK_DST4, bpfobj.ProbeNetKindNK_DPORT, kp.NoDaddr, kp.NoDport)
	end(op.SourceAddress, op.SourcePort, bpfobj.ProbeNetKindNK_SRC4, bpfobj.ProbeNetKindNK_SPORT, kp.NoSaddr, kp.NoSport)
	if op.SessionLeaderInteractive {
		m &= kp.Interactive
	} else {
		m &= kp.Batch
	}
	m &= kp.NoName | c.net.names[truncComm(op.ProcessName)]
	exe := kp.NoExe
	if e, ok := lpm(c.net.paths, op.ProcessExecutable); ok {
		exe |= e.masks(op.ProcessExecutable)
	}
	m &= exe
	if m == 0 {
		return 0, 0
	}
	return m, fire(&kp.R, m)
}

// lpm is the trie's longest-match lookup of a full-length key.
func (c *netCompiled) lpm(key netPrefix) uint64 {
	best, found := -1, uint64(0)
	for p, v := range c.prefixes {
		if p.contains(key) && p.bits > best {
			best, found = p.bits, v
		}
	}
	return found
}
