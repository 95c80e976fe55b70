package policy

// Network operations and conditions; the package documentation says what they
// mean and how a kernel compiles them.

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols are the protocol condition's values and Operation.Protocol's.
var Protocols = []string{ProtocolTCP, ProtocolUDP}

const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// PortRange is an inclusive range of ports, Lo <= Hi. A single port is Lo == Hi.
type PortRange struct {
	Lo, Hi uint16
}

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// String renders the range as the policy writes it: 443 or 8000-8100.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// parsePrefix reads an address condition's value: an IPv4 or IPv6 address (a
// prefix of its full length) or a CIDR. IPv4-mapped values are returned as IPv4.
// A CIDR with bits set past its length is rejected, not masked: 10.0.0.1/8 is
// either a mistyped length or a mistyped network, and guessing which would widen
// or narrow a blocking rule without saying so.
func parsePrefix(v string) (netip.Prefix, string) {
	if strings.Contains(v, "%") {
		return netip.Prefix{}, "has an IPv6 zone (%...); zones are not supported, give the address alone"
	}
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Prefix{}, "is not an IP address or CIDR: give an IPv4 or IPv6 address (10.0.0.1, 2001:db8::1) or a CIDR (10.0.0.0/8, 2001:db8::/32)"
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), ""
	}
	addr, bits, _ := strings.Cut(v, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("is not a CIDR: %q is not an IPv4 or IPv6 address (write e.g. 10.0.0.0/8 or 2001:db8::/32)", addr)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() || bits != strconv.Itoa(n) {
		family := 6
		if a.Is4() {
			family = 4
		}
		return netip.Prefix{}, fmt.Sprintf("is not a CIDR: the prefix length %q must be a number from 0 to %d for an IPv%d address", bits, a.BitLen(), family)
	}
	p := netip.PrefixFrom(a, n)
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Sprintf("has host bits set past its /%d; write the network %s, or the address %s alone", n, m, a)
	}
	// A masked prefix shorter than /96 never has a mapped address (masking
	// clears bit 95); one that contains the mapped range (::/0, ::/64) matches
	// IPv6 addresses only, since mapped ones are matched as IPv4.
	if a.Is4In6() && n >= 96 {
		p = netip.PrefixFrom(a.Unmap(), n-96)
	}
	return p, ""
}

// parsePortRange reads a port condition's value: a port (443) or an inclusive range
// (8000-8100), ports 0 to 65535.
func parsePortRange(v string) (PortRange, string) {
	lo, hi, isRange := strings.Cut(v, "-")
	if !isRange {
		hi = lo
	}
	l, msg := parsePort(lo)
	if msg == "" {
		var h uint16
		h, msg = parsePort(hi)
		if msg == "" {
			if l > h {
				return PortRange{}, fmt.Sprintf("is upside down: a range gives its low port first (%d-%d)", h, l)
			}
			return PortRange{l, h}, ""
		}
	}
	if msg == "out of range" {
		return PortRange{}, "is out of range: ports are 0 to 65535"
	}
	return PortRange{}, "is not a port: give a number from 0 to 65535 or a range LOW-HIGH (e.g. 443 or 8000-8100)"
}

func parsePort(s string) (uint16, string) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, "not a number"
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, "out of range"
	}
	return uint16(n), ""
}

func checkPrefix(v string) string {
	_, msg := parsePrefix(v)
	return msg
}

func checkPortRange(v string) string {
	_, msg := parsePortRange(v)
	return msg
}

func checkProtocol(v string) string {
	for _, p := range Protocols {
		if v == p {
			return ""
		}
		if strings.EqualFold(v, p) {
			return fmt.Sprintf("is not a protocol (protocols are lowercase: %s); allowed: tcp, udp", p)
		}
	}
	return "is not a protocol; allowed: tcp, udp"
}

func anyPrefix(ps []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func anyPort(rs []PortRange, port uint16) bool {
	for _, r := range rs {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// matchesEndpoint is the address and port conditions on one endpoint: each holds
// when it is absent, or when the endpoint exists and its address (port) is in one
// of the values.
func matchesEndpoint(addrs []netip.Prefix, ports []PortRange, a netip.Addr, port uint16) bool {
	if len(addrs) == 0 && len(ports) == 0 {
		return true
	}
	if !a.IsValid() {
		return false
	}
	return (len(addrs) == 0 || anyPrefix(addrs, a)) && (len(ports) == 0 || anyPort(ports, port))
}
