package ecs

import (
	"net/netip"
	"strconv"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Network decisions are encoded with the fields Elastic Defend's network
// events use (logs-endpoint.events.network), so rules and dashboards written
// for those read ours:
//
//	connect (and a UDP send)  event.action connection_attempted, event.type start, network.direction egress
//	accept                    event.action connection_accepted,  event.type start, network.direction ingress
//	bind                      event.action bind,                 event.type info,  no network.direction
//
// event.type is denied instead when the operation was blocked, as for
// process and file documents. Elastic Defend reports no bind on Linux; a
// bind starts no connection, so it is info: a rule that looks for
// connections (event.type start) does not see it. source is the local end
// for connect and bind and the peer for accept, destination the other end
// (Elastic Defend's convention: source is who opened the connection); an
// end the kernel did not report (a bind's destination, an unbound
// connect's source) is left out, not written as zeros.

// networkOp is the operation of a network decision: its policy op, or,
// should the kernel not have set one, what its hook says.
func networkOp(ev *event.Event) policy.Op {
	switch ev.Op {
	case policy.OpConnect, policy.OpAccept, policy.OpBind:
		return ev.Op
	}
	switch ev.Hook {
	case event.HookSocketAccept, event.HookSysAccept:
		return policy.OpAccept
	case event.HookSocketBind, event.HookSysBind:
		return policy.OpBind
	}
	return policy.OpConnect
}

// networkHook is the hook a network decision was seen at.
func networkHook(ev *event.Event) event.HookPoint {
	if ev.Hook != 0 {
		return ev.Hook
	}
	switch op := networkOp(ev); {
	case op == policy.OpAccept && ev.UserSpace:
		return event.HookSysAccept
	case op == policy.OpAccept:
		return event.HookSocketAccept
	case op == policy.OpBind && ev.UserSpace:
		return event.HookSysBind
	case op == policy.OpBind:
		return event.HookSocketBind
	case ev.UserSpace:
		return event.HookSysConnect
	}
	return event.HookSocketConnect
}

func networkAction(ev *event.Event) (action, typ string) {
	switch networkOp(ev) {
	case policy.OpAccept:
		return "connection_accepted", "start"
	case policy.OpBind:
		return "bind", "info"
	}
	return "connection_attempted", "start"
}

// transport is network.transport; "" for a protocol we do not name.
func transport(p event.Protocol) string {
	switch p {
	case event.ProtocolTCP:
		return "tcp"
	case event.ProtocolUDP:
		return "udp"
	}
	return ""
}

// endpointAddr is an end's address as documents carry it: IPv4-mapped
// addresses as IPv4, no zone; invalid when the kernel did not report the end.
func endpointAddr(ap netip.AddrPort) netip.Addr {
	return ap.Addr().Unmap().WithZone("")
}

// writeNetwork writes source.*, destination.* and network.* without
// allocating: addresses are appended as text, never formatted to strings.
func writeNetwork(w *jw, ev *event.Event) {
	writeEndpoint(w, "source", ev.Source)
	writeEndpoint(w, "destination", ev.Destination)
	w.obj("network")
	w.strIf("transport", transport(ev.Protocol))
	a := endpointAddr(ev.Destination)
	if !a.IsValid() {
		a = endpointAddr(ev.Source)
	}
	switch {
	case a.Is4():
		w.str("type", "ipv4")
	case a.Is6():
		w.str("type", "ipv6")
	}
	w.strIf("direction", ev.Direction.String())
	w.close()
}

func writeEndpoint(w *jw, k string, ap netip.AddrPort) {
	a := endpointAddr(ap)
	if !a.IsValid() {
		return
	}
	w.obj(k)
	w.addr("address", a)
	w.addr("ip", a)
	w.uint("port", uint64(ap.Port()))
	w.close()
}

// addr writes an IP address as a string (its text is digits, dots, colons
// and hex letters: nothing to escape).
func (w *jw) addr(k string, a netip.Addr) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = a.AppendTo(w.b)
	w.b = append(w.b, '"')
}

// appendNetworkTarget appends what a network operation was about, as the
// message and the console view say it: "connect 10.0.0.5:443/tcp",
// "accept from [::1]:5000/tcp", "bind 0.0.0.0:8080/udp".
func appendNetworkTarget(b []byte, ev *event.Event) []byte {
	op := networkOp(ev)
	b = append(b, op.String()...)
	end := ev.Destination
	switch op {
	case policy.OpAccept:
		b = append(b, " from"...)
		end = ev.Source
	case policy.OpBind:
		end = ev.Source
	}
	if a := endpointAddr(end); a.IsValid() {
		b = append(b, ' ')
		b = netip.AddrPortFrom(a, end.Port()).AppendTo(b)
	}
	if t := transport(ev.Protocol); t != "" {
		b = append(append(b, '/'), t...)
	}
	return b
}

// appendNetworkMessage appends a network alert's message as a JSON string,
// in the words message uses for the others: "cloud-defend blocked: connect
// 10.0.0.5:443/tcp by curl (pid 42), selectors noEgress".
func appendNetworkMessage(b []byte, ev *event.Event, names []string) []byte {
	b = append(b, `"cloud-defend `...)
	if ev.Blocked {
		b = append(b, "blocked: "...)
	} else {
		b = append(b, "alert: "...)
	}
	b = appendNetworkTarget(b, ev)
	b = append(b, " by "...)
	b = appendEscaped(b, ev.Process.Comm)
	b = append(b, " (pid "...)
	b = strconv.AppendUint(b, uint64(ev.Process.PID), 10)
	b = append(b, "), selectors "...)
	for i, n := range names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendEscaped(b, n)
	}
	return append(b, '"')
}
