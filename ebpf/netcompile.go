package ebpf

import (
	"net/netip"
	"sort"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Network selectors in the kernel's terms (bpf/network.bpf.h has the
// matching):
//
//	network: matched = ops[op] & proto & (agnostic | netContainers[cgroup])
//	                 & (noDaddr | prefixes[dst addr]) & (noDport | prefixes[dst port])
//	                 & (noSaddr | prefixes[src addr]) & (noSport | prefixes[src port])
//	                 & (interactive or batch) & (noName | netNames[comm]) & (noExe | netPaths(exe))
//
// prefixes is one LPM trie keyed by (generation, kind, bytes): kind says the
// endpoint and the family (IPv4 keys are 4 bytes long, IPv6 16) or that the
// bytes are a port (2 bytes, big-endian). A port range is split into its
// aligned prefixes. An LPM lookup finds only the longest entry that holds the
// key, so every entry carries the selectors of every policy prefix (of its
// kind) that contains it.

// netPrefix is one prefix of a net_prefixes kind: its first bits bits of data.
type netPrefix struct {
	kind bpfobj.ProbeNetKind
	data [16]byte
	bits int
}

// contains reports whether p contains q (same kind, p no longer than q, and
// their first p.bits bits equal).
func (p netPrefix) contains(q netPrefix) bool {
	if p.kind != q.kind || p.bits > q.bits {
		return false
	}
	full := p.bits / 8
	for i := range full {
		if p.data[i] != q.data[i] {
			return false
		}
	}
	if rem := p.bits % 8; rem != 0 {
		mask := byte(0xff << (8 - rem))
		return p.data[full]&mask == q.data[full]&mask
	}
	return true
}

// addrPrefix is a policy prefix as a key of the endpoint's kinds (kind4 for
// IPv4, kind4+1 for IPv6).
func addrPrefix(kind4 bpfobj.ProbeNetKind, p netip.Prefix) netPrefix {
	n := netPrefix{kind: kind4, bits: p.Bits()}
	if p.Addr().Is4() {
		a := p.Addr().As4()
		copy(n.data[:], a[:])
	} else {
		n.kind++
		a := p.Addr().As16()
		n.data = a
	}
	return n
}

// portPrefixes splits an inclusive port range into aligned prefixes of the
// 16-bit port (at most 30).
func portPrefixes(kind bpfobj.ProbeNetKind, r policy.PortRange) []netPrefix {
	var out []netPrefix
	for lo := uint32(r.Lo); lo <= uint32(r.Hi); {
		size, bits := uint32(1), 16
		for bits > 0 && lo%(size*2) == 0 && lo+size*2-1 <= uint32(r.Hi) {
			size *= 2
			bits--
		}
		n := netPrefix{kind: kind, bits: bits}
		n.data[0], n.data[1] = byte(lo>>8), byte(lo)
		out = append(out, n)
		lo += size
	}
	return out
}

// eachPrefix calls f with every prefix of every selector and the selector's bit.
func eachPrefix(sels []policy.Selector, f func(bit uint64, p netPrefix)) {
	for i := range sels {
		s := &sels[i]
		bit := uint64(1) << i
		for _, p := range s.DestinationAddress {
			f(bit, addrPrefix(bpfobj.ProbeNetKindNK_DST4, p))
		}
		for _, p := range s.SourceAddress {
			f(bit, addrPrefix(bpfobj.ProbeNetKindNK_SRC4, p))
		}
		for _, r := range s.DestinationPort {
			for _, n := range portPrefixes(bpfobj.ProbeNetKindNK_DPORT, r) {
				f(bit, n)
			}
		}
		for _, r := range s.SourcePort {
			for _, n := range portPrefixes(bpfobj.ProbeNetKindNK_SPORT, r) {
				f(bit, n)
			}
		}
	}
}

// netPrefixEntries are the trie's entries for the prefixes of each selector: for
// every distinct prefix, the selectors of every prefix that contains it.
func netPrefixEntries(sels []policy.Selector) map[netPrefix]uint64 {
	own := map[netPrefix]uint64{}
	eachPrefix(sels, func(bit uint64, p netPrefix) { own[p] |= bit })
	out := make(map[netPrefix]uint64, len(own))
	for q := range own {
		var m uint64
		for p, bits := range own {
			if p.contains(q) {
				m |= bits
			}
		}
		out[q] = m
	}
	return out
}

// netFirstBytes is net_policy.first: by kind and first byte of a key, the
// selectors with a prefix that can hold such a key (a prefix of 8 bits or
// more holds one first byte; a shorter one, every byte it begins).
func netFirstBytes(sels []policy.Selector) (first [6][256]uint64) {
	eachPrefix(sels, func(bit uint64, p netPrefix) {
		if p.bits >= 8 {
			first[p.kind][p.data[0]] |= bit
			return
		}
		span := 1 << (8 - p.bits)
		lo := int(p.data[0]) &^ (span - 1)
		for b := lo; b < lo+span; b++ {
			first[p.kind][b] |= bit
		}
	})
	return first
}

// netCompiled is a policy's network section in the kernel's terms.
type netCompiled struct {
	policy   bpfobj.ProbeNetPolicy
	prefixes map[netPrefix]uint64
	names    map[string]uint64
	paths    map[string]pathEntry
	sels     []policy.Selector
}

func compileNetwork(p *policy.Policy) (*netCompiled, error) {
	c := &netCompiled{sels: p.Selectors(policy.Network), names: map[string]uint64{}}
	kp := &c.policy
	pm := processMasks{noName: &kp.NoName, noExe: &kp.NoExe, interactive: &kp.Interactive, batch: &kp.Batch, agnostic: &kp.Agnostic}
	for i := range c.sels {
		s := &c.sels[i]
		bit := uint64(1) << i
		kp.Any |= bit
		for _, op := range s.Covers().Ops() {
			kp.Ops[(op-policy.OpConnect)&3] |= bit
		}
		if len(s.Protocol) == 0 {
			kp.Tcp |= bit
			kp.Udp |= bit
		}
		for _, pr := range s.Protocol {
			switch pr {
			case policy.ProtocolTCP:
				kp.Tcp |= bit
			case policy.ProtocolUDP:
				kp.Udp |= bit
			}
		}
		if len(s.DestinationAddress) == 0 {
			kp.NoDaddr |= bit
		}
		if len(s.DestinationPort) == 0 {
			kp.NoDport |= bit
		}
		if len(s.SourceAddress) == 0 {
			kp.NoSaddr |= bit
		}
		if len(s.SourcePort) == 0 {
			kp.NoSport |= bit
		}
		pm.add(s, bit, c.names)
	}
	var err error
	if c.paths, _, err = pathEntries(c.sels, func(s *policy.Selector) []policy.PathPattern { return s.ProcessExecutable }); err != nil {
		return nil, err
	}
	c.prefixes = netPrefixEntries(c.sels)
	kp.First = netFirstBytes(c.sels)
	kp.R = responses(p.Responses(policy.Network))
	return c, nil
}

// netKey is the trie key of a prefix in a slot.
func netKey(slot uint32, p netPrefix) bpfobj.ProbeNetKey {
	return bpfobj.ProbeNetKey{Prefixlen: uint32(16 + p.bits), Generation: uint8(slot), Kind: uint8(p.kind), Data: p.data}
}

// entries are the network section's entries of a slot (containers apart).
func (c *netCompiled) entries(slot uint32) []slotEntry {
	var out []slotEntry
	keys := make([]netPrefix, 0, len(c.prefixes))
	for p := range c.prefixes {
		keys = append(keys, p)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.data != b.data {
			return string(a.data[:]) < string(b.data[:])
		}
		return a.bits < b.bits
	})
	for _, p := range keys {
		out = append(out, slotEntry{slotNetPrefixes, netKey(slot, p), c.prefixes[p]})
	}
	for name, bits := range c.names {
		k := bpfobj.ProbeNameKey{Generation: slot}
		for i := 0; i < len(name) && i < len(k.Comm)-1; i++ {
			k.Comm[i] = int8(name[i])
		}
		out = append(out, slotEntry{slotNetNames, k, bits})
	}
	for _, path := range sortedKeys(c.paths) {
		pe := c.paths[path]
		k := bpfobj.ProbePathKey{Prefixlen: uint32(8 * (1 + len(path)))}
		k.Data[0] = uint8(slot)
		copy(k.Data[1:], path)
		out = append(out, slotEntry{slotNetPaths, k, bpfobj.ProbePathVal{Exact: pe.exact, Desc: pe.desc, Children: pe.children, Len: pe.len, Dirlen: pe.dirlen}})
	}
	return out
}
