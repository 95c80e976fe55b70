package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// netSel wraps selector lines into a network section with one alert response
// naming "s".
func netSel(sel string) string {
	return "network:\n  selectors:\n" + sel + "  responses:\n    - match: [s]\n      actions: [alert]\n"
}

// TestOpValuesAreStable pins the numeric values the kernel's C enum mirrors:
// network operations were appended after the file ones.
func TestOpValuesAreStable(t *testing.T) {
	want := []Op{OpFork, OpExec, OpExecMemfd, OpCreateExecutable, OpModifyExecutable, OpCreateFile, OpModifyFile, OpDeleteFile, OpConnect, OpAccept, OpBind}
	for i, op := range want {
		if int(op) != i {
			t.Errorf("%v = %d, want %d", op, op, i)
		}
	}
	if numOps != 11 || numTypes != 3 || Network != 2 {
		t.Errorf("numOps %d numTypes %d Network %d", numOps, numTypes, Network)
	}
	for op, typ := range map[Op]Type{OpExec: Process, OpDeleteFile: File, OpConnect: Network, OpAccept: Network, OpBind: Network} {
		if op.Type() != typ {
			t.Errorf("%v.Type() = %v, want %v", op, op.Type(), typ)
		}
	}
	if allOps[Network].String() != "connect, accept, bind" {
		t.Errorf("network ops: %v", allOps[Network])
	}
}

func TestNetworkSection(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "every condition", src: netSel("    - name: s\n      operation: [connect, accept, bind]\n" +
			"      destinationAddress: [10.0.0.0/8, 192.168.1.1, \"2001:db8::/32\", \"::1\"]\n" +
			"      sourceAddress: [0.0.0.0/0]\n      destinationPort: [53, 8000-8100]\n      sourcePort: [0-1023]\n" +
			"      protocol: [tcp, udp]\n      processExecutable: [/usr/bin/curl]\n      sessionLeaderInteractive: true\n" +
			"      containerImageName: [nginx]\n      containerImageTag: [latest]\n      kubernetesClusterId: [u]\n" +
			"      kubernetesClusterName: [c]\n      kubernetesNamespace: [n]\n      kubernetesPodName: [web-*]\n" +
			"      kubernetesPodLabel: [\"app:web\"]\n    - name: t\n      processName: [curl]\n      containerImageFullName: [docker.io/nginx]\n")},
		{name: "network only", src: netSel("    - name: s\n      operation: [connect]\n")},
		{name: "missing responses", src: "network:\n  selectors:\n    - name: s\n      operation: [bind]\n",
			errs: []string{"p.yaml:1:1: network: responses: required: a network section needs at least one response"}},
		{name: "not a mapping", src: "network: [a]\n",
			errs: []string{"p.yaml:1:10: network: must be a mapping with selectors and responses"}},
		// Ops belong to their section.
		{name: "exec in network", src: netSel("    - name: s\n      operation: [connect, exec]\n"),
			errs: []string{`p.yaml:4:28: network selector "s": operation: "exec" is a process operation; network selectors allow: connect, accept, bind`}},
		{name: "connect in process", src: procSel("    - name: s\n      operation: [connect]\n"),
			errs: []string{`p.yaml:4:19: process selector "s": operation: "connect" is a network operation; process selectors allow: fork, exec`}},
		{name: "bind in file", src: fileSel("    - name: s\n      operation: [bind]\n"),
			errs: []string{`p.yaml:4:19: file selector "s": operation: "bind" is a network operation; file selectors allow: createExecutable, modifyExecutable, createFile, modifyFile, deleteFile`}},
		{name: "misspelt op", src: netSel("    - name: s\n      operation: [conect]\n"),
			errs: []string{`p.yaml:4:19: network selector "s": operation: unknown operation "conect" (did you mean "connect"?); network selectors allow: connect, accept, bind`}},
		// Addresses.
		{name: "host bits", src: netSel("    - name: s\n      destinationAddress: [10.0.0.1/8]\n"),
			errs: []string{`p.yaml:4:28: network selector "s": destinationAddress: "10.0.0.1/8" has host bits set past its /8; write the network 10.0.0.0/8, or the address 10.0.0.1 alone`}},
		{name: "IPv6 host bits", src: netSel("    - name: s\n      sourceAddress: [\"2001:db8::1/32\"]\n"),
			errs: []string{`p.yaml:4:23: network selector "s": sourceAddress: "2001:db8::1/32" has host bits set past its /32; write the network 2001:db8::/32, or the address 2001:db8::1 alone`}},
		{name: "not an address", src: netSel("    - name: s\n      destinationAddress: [example.com]\n"),
			errs: []string{`p.yaml:4:28: network selector "s": destinationAddress: "example.com" is not an IP address or CIDR: give an IPv4 or IPv6 address (10.0.0.1, 2001:db8::1) or a CIDR (10.0.0.0/8, 2001:db8::/32)`}},
		{name: "bad CIDR address", src: netSel("    - name: s\n      destinationAddress: [10.0.0/8]\n"),
			errs: []string{`p.yaml:4:28: network selector "s": destinationAddress: "10.0.0/8" is not a CIDR: "10.0.0" is not an IPv4 or IPv6 address`}},
		{name: "prefix too long", src: netSel("    - name: s\n      destinationAddress: [10.0.0.0/33]\n"),
			errs: []string{`p.yaml:4:28: network selector "s": destinationAddress: "10.0.0.0/33" is not a CIDR: the prefix length "33" must be a number from 0 to 32 for an IPv4 address`}},
		{name: "IPv6 prefix too long", src: netSel("    - name: s\n      destinationAddress: [\"::/129\"]\n"),
			errs: []string{`destinationAddress: "::/129" is not a CIDR: the prefix length "129" must be a number from 0 to 128 for an IPv6 address`}},
		{name: "prefix not a number", src: netSel("    - name: s\n      destinationAddress: [10.0.0.0/a, 10.0.0.0/, 10.0.0.0/+8]\n"),
			errs: []string{`"10.0.0.0/a" is not a CIDR: the prefix length "a"`, `"10.0.0.0/" is not a CIDR: the prefix length ""`, `"10.0.0.0/+8" is not a CIDR`}},
		{name: "zone", src: netSel("    - name: s\n      destinationAddress: [\"fe80::1%eth0\"]\n"),
			errs: []string{`p.yaml:4:28: network selector "s": destinationAddress: "fe80::1%eth0" has an IPv6 zone (%...); zones are not supported`}},
		{name: "duplicate address", src: netSel("    - name: s\n      destinationAddress: [10.0.0.1, 10.0.0.1]\n"),
			warns: []string{`p.yaml:4:38: warning: network selector "s": destinationAddress: "10.0.0.1" is listed twice`}},
		// Ports.
		{name: "port out of range", src: netSel("    - name: s\n      destinationPort: [65535, 65536]\n"),
			errs: []string{`p.yaml:4:32: network selector "s": destinationPort: "65536" is out of range: ports are 0 to 65535`}},
		{name: "range end out of range", src: netSel("    - name: s\n      sourcePort: [1000-70000]\n"),
			errs: []string{`p.yaml:4:20: network selector "s": sourcePort: "1000-70000" is out of range: ports are 0 to 65535`}},
		{name: "upside down", src: netSel("    - name: s\n      destinationPort: [8100-8000]\n"),
			errs: []string{`p.yaml:4:25: network selector "s": destinationPort: "8100-8000" is upside down: a range gives its low port first (8000-8100)`}},
		{name: "not a number", src: netSel("    - name: s\n      destinationPort: [http, -1, 0x35, 80-, 1-2-3, \" 80\", 80.5]\n"),
			errs: []string{
				`p.yaml:4:25: network selector "s": destinationPort: "http" is not a port: give a number from 0 to 65535 or a range LOW-HIGH (e.g. 443 or 8000-8100)`,
				`"-1" is not a port`, `"0x35" is not a port`, `"80-" is not a port`, `"1-2-3" is not a port`, `" 80" is not a port`, `"80.5" is not a port`,
			}},
		{name: "a port is a list", src: netSel("    - name: s\n      destinationPort: 443\n"),
			errs: []string{`p.yaml:4:24: network selector "s": destinationPort: must be a list, e.g. destinationPort: [443]`}},
		{name: "edges", src: netSel("    - name: s\n      destinationPort: [0, 65535, 0-65535, 80-80]\n")},
		// Protocols.
		{name: "protocol", src: netSel("    - name: s\n      protocol: [icmp, TCP]\n"),
			errs: []string{
				`p.yaml:4:18: network selector "s": protocol: "icmp" is not a protocol; allowed: tcp, udp`,
				`p.yaml:4:24: network selector "s": protocol: "TCP" is not a protocol (protocols are lowercase: tcp); allowed: tcp, udp`,
			}},
		// Conditions that are not network ones are errors, not ignored.
		{name: "file condition", src: netSel("    - name: s\n      operation: [connect]\n      targetFilePath: [/etc/**]\n"),
			errs: []string{`p.yaml:5:7: network selector "s": targetFilePath: is a file selector condition, not a network one; network selectors allow: containerImageFullName, containerImageName, containerImageTag, destinationAddress, destinationPort, kubernetesClusterId, kubernetesClusterName, kubernetesNamespace, kubernetesPodLabel, kubernetesPodName, operation, processExecutable, processName, protocol, sessionLeaderInteractive, sourceAddress, sourcePort`}},
		{name: "volume condition", src: netSel("    - name: s\n      operation: [connect]\n      ignoreVolumeMounts: true\n"),
			errs: []string{`p.yaml:5:7: network selector "s": ignoreVolumeMounts: is a file selector condition, not a network one`}},
		{name: "executableLayer", src: netSel("    - name: s\n      operation: [connect]\n      executableLayer: [added]\n"),
			errs: []string{`p.yaml:5:7: network selector "s": executableLayer: is a process selector condition, not a network one`}},
		{name: "first-version names", src: netSel("    - name: s\n      orchestratorNamespace: [a]\n      orchestratorType: [kubernetes]\n"),
			errs: []string{
				`p.yaml:3:7: network selector "s": no conditions`,
				`p.yaml:4:7: network selector "s": orchestratorNamespace: is a first-version condition name, not valid in network selectors; use kubernetesNamespace`,
				`p.yaml:5:7: network selector "s": orchestratorType: is a first-version condition, not valid in network selectors`,
			}},
		{name: "unknown condition", src: netSel("    - name: s\n      destinationPorts: [53]\n"),
			errs: []string{
				`p.yaml:3:7: network selector "s": no conditions: a selector needs at least one condition besides name (network selectors allow: containerImageFullName`,
				`p.yaml:4:7: network selector "s": destinationPorts: unknown key (did you mean "destinationPort"?); network sections allow here: containerImageFullName,`,
			}},
		{name: "unknown section key", src: "network:\n  selector: []\n" + strings.TrimPrefix(netSel("    - name: s\n      operation: [bind]\n"), "network:\n"),
			errs: []string{`p.yaml:2:3: network: selector: unknown key (did you mean "selectors"?); network sections allow here: selectors, responses`}},
		{name: "unknown response key", src: strings.Replace(netSel("    - name: s\n      operation: [bind]\n"), "      actions: [alert]\n", "      actions: [alert]\n      action: [log]\n", 1),
			errs: []string{`p.yaml:8:7: network response #1: action: unknown key (did you mean "actions"?); network sections allow here: match, exclude, actions`}},
		// A network condition in a D4C section is ignored with a warning there,
		// as every unknown condition is.
		{name: "network condition in process", src: procSel("    - name: s\n      operation: [exec]\n      destinationPort: [53]\n"),
			warns: []string{`p.yaml:5:7: warning: process selector "s": destinationPort: is not a process selector condition and is ignored`}},
		// Responses.
		{name: "block without alert", src: "network:\n  selectors:\n    - name: s\n      destinationPort: [22]\n  responses:\n    - match: [s]\n      actions: [block]\n",
			errs: []string{"p.yaml:7:16: network response #1: actions: block requires alert in the same response, so every blocked operation is reported"}},
		{name: "block every connect", src: "network:\n  selectors:\n    - name: s\n      operation: [connect]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n",
			warns: []string{`p.yaml:6:15: warning: network response #1: match: selector "s" has no condition but its operations, so this response blocks every connect in every container`}},
		{name: "cross-section reference", src: netSel("    - name: x\n      operation: [bind]\n") + procSel("    - name: s\n      operation: [exec]\n"),
			errs: []string{`p.yaml:6:15: network response #1: match: "s" is a process selector; a network response can name only network selectors`}},
		{name: "file response naming a network selector", src: netSel("    - name: s\n      operation: [bind]\n") + strings.ReplaceAll(fileSel("    - name: f\n      operation: [createFile]\n"), "[s]", "[s, f]"),
			errs: []string{`p.yaml:13:15: file response #1: match: "s" is a network selector; a file response can name only file selectors`}},
		{name: "same name in every section", src: netSel("    - name: s\n      operation: [bind]\n") + procSel("    - name: s\n      operation: [exec]\n") + fileSel("    - name: s\n      operation: [createFile]\n")},
		// Selectors no operation can match.
		{name: "udp accept", src: netSel("    - name: s\n      operation: [accept]\n      protocol: [udp]\n"),
			warns: []string{`p.yaml:5:7: warning: network selector "s": protocol: accept is TCP only, so with protocol udp this selector never matches`}},
		{name: "bind destination", src: netSel("    - name: s\n      operation: [bind]\n      destinationPort: [80]\n"),
			warns: []string{`p.yaml:5:7: warning: network selector "s": destinationPort: a bind has no destination (its address is the source), so with destinationPort this selector never matches; use sourcePort`}},
		{name: "nested under security-policy", src: "security-policy:\n  " + strings.ReplaceAll(netSel("    - name: s\n      protocol: [udp]\n"), "\n", "\n  ")},
	})
}

func TestNetworkAllErrorsAtOnce(t *testing.T) {
	src := `network:
  selectors:
    - name: a
      operation: [connect, exec]
      destinationAddress: [10.0.0.1/24, "::1"]
      destinationPort: [443, 9000-8000, 70000]
    - name: b
      targetFilePath: [/etc]
  responses:
    - match: [a, b, c]
      actions: [block]
`
	_, _, err := Parse("p.yaml", []byte(src))
	want := `p.yaml:4:28: network selector "a": operation: "exec" is a process operation; network selectors allow: connect, accept, bind
p.yaml:5:28: network selector "a": destinationAddress: "10.0.0.1/24" has host bits set past its /24; write the network 10.0.0.0/24, or the address 10.0.0.1 alone
p.yaml:6:30: network selector "a": destinationPort: "9000-8000" is upside down: a range gives its low port first (8000-9000)
p.yaml:6:41: network selector "a": destinationPort: "70000" is out of range: ports are 0 to 65535
p.yaml:7:7: network selector "b": no conditions: a selector needs at least one condition besides name (network selectors allow: containerImageFullName, containerImageName, containerImageTag, destinationAddress, destinationPort, kubernetesClusterId, kubernetesClusterName, kubernetesNamespace, kubernetesPodLabel, kubernetesPodName, operation, processExecutable, processName, protocol, sessionLeaderInteractive, sourceAddress, sourcePort)
p.yaml:8:7: network selector "b": targetFilePath: is a file selector condition, not a network one; network selectors allow: containerImageFullName, containerImageName, containerImageTag, destinationAddress, destinationPort, kubernetesClusterId, kubernetesClusterName, kubernetesNamespace, kubernetesPodLabel, kubernetesPodName, operation, processExecutable, processName, protocol, sessionLeaderInteractive, sourceAddress, sourcePort
p.yaml:10:21: network response #1: match: unknown selector "c"; network selectors are: a, b
p.yaml:11:16: network response #1: actions: block requires alert in the same response, so every blocked operation is reported`
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestNetworkLimits(t *testing.T) {
	build := func(nsel int) string {
		var b strings.Builder
		b.WriteString("network:\n  selectors:\n")
		for i := range nsel {
			fmt.Fprintf(&b, "    - name: s%d\n      destinationPort: [%d]\n", i, i)
		}
		b.WriteString("  responses:\n    - match: [s0]\n      actions: [log]\n")
		return b.String()
	}
	if errs, _ := diagnose(t, build(63)); len(errs) != 0 {
		t.Fatalf("63 selectors + 1 response rejected: %v", errs)
	}
	errs, _ := diagnose(t, build(64))
	match(t, "error", errs, []string{"p.yaml:1:1: network: has 64 selectors and 1 responses; at most 64 in all are allowed per type"})
	// Per type: 63+1 in each of the three sections is fine.
	all := build(63) + strings.ReplaceAll(strings.ReplaceAll(build(63), "network:", "file:"), "destinationPort: [", "targetFilePath: [/f") +
		strings.ReplaceAll(strings.ReplaceAll(build(63), "network:", "process:"), "destinationPort: [", "processName: [p")
	if errs, _ := diagnose(t, all); len(errs) != 0 {
		t.Fatalf("63+1 per type rejected: %v", errs)
	}
}

func TestNetworkSelectorsExposed(t *testing.T) {
	p := mustParse(t, netSel(`    - name: s
      operation: [connect, bind]
      destinationAddress: [10.0.0.0/8, 192.168.1.1, "2001:db8::/32", "::ffff:10.1.0.0/112", "::ffff:192.0.2.1", "::/0"]
      sourceAddress: [0.0.0.0/0]
      destinationPort: [53, 8000-8100]
      sourcePort: [0-1023]
      protocol: [udp]
      processName: [curl]
`))
	sels := p.Selectors(Network)
	if len(sels) != 1 {
		t.Fatalf("selectors: %+v", sels)
	}
	s := sels[0]
	wantAddr := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("::/0")}
	if !slices.Equal(s.DestinationAddress, wantAddr) {
		t.Errorf("DestinationAddress = %v, want %v", s.DestinationAddress, wantAddr)
	}
	for _, pfx := range append(s.DestinationAddress, s.SourceAddress...) {
		if pfx.Masked() != pfx || (pfx.Addr().Is4In6()) {
			t.Errorf("%v is not normalised", pfx)
		}
	}
	if !slices.Equal(s.SourceAddress, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}) ||
		!slices.Equal(s.DestinationPort, []PortRange{{53, 53}, {8000, 8100}}) ||
		!slices.Equal(s.SourcePort, []PortRange{{0, 1023}}) ||
		!slices.Equal(s.Protocol, []string{"udp"}) || !slices.Equal(s.ProcessName, []string{"curl"}) ||
		s.Covers() != OpSet(0).With(OpConnect).With(OpBind) || s.Type != Network {
		t.Errorf("selector: %+v", s)
	}
	want := "operation in (connect, bind) AND processName in (curl) AND protocol in (udp) AND destinationAddress in (10.0.0.0/8, 192.168.1.1, 2001:db8::/32, 10.1.0.0/16, 192.0.2.1, ::/0) AND destinationPort in (53, 8000-8100) AND sourceAddress in (0.0.0.0/0) AND sourcePort in (0-1023)"
	if got := s.Conditions(); got != want {
		t.Errorf("Conditions:\n %s\nwant\n %s", got, want)
	}
	// Copies: changing them leaves the policy alone.
	sels[0].DestinationAddress[0] = netip.MustParsePrefix("0.0.0.0/0")
	sels[0].DestinationPort[0] = PortRange{0, 65535}
	if got := p.Selectors(Network)[0]; got.DestinationAddress[0] != wantAddr[0] || got.DestinationPort[0] != (PortRange{53, 53}) {
		t.Error("a returned selector shares its lists with the policy")
	}
	if p.Blocks(Network) {
		t.Error("an alert-only network policy blocks")
	}
	if got := p.String(); got != "network: 1 selectors, 1 responses" {
		t.Errorf("String = %q", got)
	}
	if len(p.Responses(Network)) != 1 || p.Responses(Network)[0].MatchMask != 1 {
		t.Errorf("responses: %+v", p.Responses(Network))
	}
}

func TestNetworkBlocksAndSummary(t *testing.T) {
	src := readmeExample + "network:\n  selectors:\n    - name: ssh\n      operation: [accept]\n      destinationPort: [22]\n  responses:\n    - match: [ssh]\n      actions: [alert, block]\n"
	p := mustParse(t, src)
	if !p.Blocks(Network) || !p.Blocks(File) || p.Blocks(Process) {
		t.Errorf("Blocks: network %v file %v process %v", p.Blocks(Network), p.Blocks(File), p.Blocks(Process))
	}
	if got := p.String(); got != "file: 3 selectors, 2 responses; network: 1 selectors, 1 responses" {
		t.Errorf("String = %q", got)
	}
}

func TestEditorWarnings(t *testing.T) {
	p := mustParse(t, readmeExample)
	if len(p.EditorWarnings()) != 0 {
		t.Errorf("a D4C policy has editor warnings: %v", p.EditorWarnings())
	}
	p = mustParse(t, readmeExample+"network:\n  selectors:\n    - name: s\n      protocol: [tcp]\n  responses:\n    - match: [s]\n      actions: [log]\n")
	if len(p.Warnings()) != 0 {
		t.Errorf("the network section is a parse warning: %v", p.Warnings())
	}
	ws := p.EditorWarnings()
	if len(ws) != 1 {
		t.Fatalf("editor warnings: %v", ws)
	}
	want := "p.yaml:17:1: warning: network: the network section is a cloud-defend extension that Kibana's Defend for Containers policy editor does not know: Fleet passes the YAML through untouched, but the editor may not show it"
	if got := ws[0].String(); got != want || ws[0].Path != "network" || ws[0].Severity != SeverityWarning {
		t.Errorf("editor warning %+v\n %s\nwant\n %s", ws[0], got, want)
	}
	ws[0].Message = "x"
	if p.EditorWarnings()[0].Message == "x" {
		t.Error("EditorWarnings is shared")
	}
}

func TestPortRange(t *testing.T) {
	for v, want := range map[string]PortRange{"0": {0, 0}, "65535": {65535, 65535}, "0-65535": {0, 65535}, "80-80": {80, 80}, "080": {80, 80}} {
		got, msg := parsePortRange(v)
		if msg != "" || got != want {
			t.Errorf("%q: %v %q", v, got, msg)
		}
	}
	r := PortRange{8000, 8100}
	for port, want := range map[uint16]bool{7999: false, 8000: true, 8050: true, 8100: true, 8101: false} {
		if r.Contains(port) != want {
			t.Errorf("%v contains %d = %v", r, port, !want)
		}
	}
	if r.String() != "8000-8100" || (PortRange{53, 53}).String() != "53" {
		t.Errorf("String: %v %v", r, PortRange{53, 53})
	}
}

func TestParsePrefix(t *testing.T) {
	good := map[string]string{
		"10.0.0.1":            "10.0.0.1/32",
		"10.0.0.0/8":          "10.0.0.0/8",
		"0.0.0.0/0":           "0.0.0.0/0",
		"::":                  "::/128",
		"::/0":                "::/0",
		"2001:db8::1":         "2001:db8::1/128",
		"2001:DB8::/32":       "2001:db8::/32",
		"::ffff:10.0.0.1":     "10.0.0.1/32",
		"::ffff:a00:1":        "10.0.0.1/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:0:0/96":       "0.0.0.0/0",
	}
	for v, want := range good {
		got, msg := parsePrefix(v)
		if msg != "" || got.String() != want {
			t.Errorf("%q: %v %q, want %s", v, got, msg, want)
		}
	}
	bad := map[string]string{
		"10.0.0.1/8":      "has host bits set past its /8; write the network 10.0.0.0/8, or the address 10.0.0.1 alone",
		"::ffff:0:0/95":   "has host bits set",
		"10.0.0.256":      "is not an IP address or CIDR",
		"010.0.0.1":       "is not an IP address or CIDR",
		"10.0.0.0/-1":     "the prefix length \"-1\"",
		"10.0.0.0/08":     "the prefix length \"08\"",
		"10.0.0.0/8/8":    "the prefix length \"8/8\"",
		"fe80::1%eth0":    "IPv6 zone",
		"fe80::/10%eth0":  "IPv6 zone",
		"[::1]":           "is not an IP address",
		"10.0.0.0 /8":     "is not a CIDR",
		"1.2.3.4:80":      "is not an IP address",
		"10.0.0.0/8 ":     "is not a CIDR",
		"::ffff:1.2.3.4/": "the prefix length \"\"",
	}
	for v, want := range bad {
		if _, msg := parsePrefix(v); !strings.Contains(msg, want) {
			t.Errorf("%q: got %q, want %q", v, msg, want)
		}
	}
}

// TestNetworkSemantics is Evaluate's meaning for network operations.
func TestNetworkSemantics(t *testing.T) {
	a := netip.MustParseAddr
	tcp := func(op Op, dst string, dport uint16) Operation {
		o := Operation{Op: op, Protocol: "tcp", DestinationPort: dport, ProcessName: "curl", ProcessExecutable: "/usr/bin/curl"}
		if dst != "" {
			o.DestinationAddress = a(dst)
		}
		return o
	}
	udp := func(dst string, dport uint16) Operation {
		o := tcp(OpConnect, dst, dport)
		o.Protocol = "udp"
		return o
	}
	withSrc := func(o Operation, src string, sport uint16) Operation {
		o.SourceAddress, o.SourcePort = a(src), sport
		return o
	}
	bind := func(src string, sport uint16) Operation {
		return withSrc(Operation{Op: OpBind, Protocol: "tcp"}, src, sport)
	}
	cases := []struct {
		cond string
		op   Operation
		want bool
	}{
		{"operation: [connect]", tcp(OpConnect, "1.2.3.4", 80), true},
		{"operation: [connect]", tcp(OpAccept, "1.2.3.4", 80), false},
		{"operation: [accept, bind]", bind("0.0.0.0", 80), true},
		// A network selector never matches another section's operation.
		{"protocol: [tcp, udp]", Operation{Op: OpExec, Protocol: "tcp"}, false},
		// CIDR edges, IPv4.
		{"destinationAddress: [10.0.0.0/8]", tcp(OpConnect, "10.0.0.0", 1), true},
		{"destinationAddress: [10.0.0.0/8]", tcp(OpConnect, "10.255.255.255", 1), true},
		{"destinationAddress: [10.0.0.0/8]", tcp(OpConnect, "11.0.0.0", 1), false},
		{"destinationAddress: [10.0.0.0/8]", tcp(OpConnect, "9.255.255.255", 1), false},
		{"destinationAddress: [10.96.0.0/12]", tcp(OpConnect, "10.111.255.255", 1), true},
		{"destinationAddress: [10.96.0.0/12]", tcp(OpConnect, "10.112.0.0", 1), false},
		{"destinationAddress: [192.168.1.1]", tcp(OpConnect, "192.168.1.1", 1), true},
		{"destinationAddress: [192.168.1.1]", tcp(OpConnect, "192.168.1.2", 1), false},
		{"destinationAddress: [0.0.0.0/0]", tcp(OpConnect, "255.255.255.255", 1), true},
		{"destinationAddress: [172.16.0.0/12, 10.0.0.0/8]", tcp(OpConnect, "172.31.0.1", 1), true},
		// IPv6, and the families kept apart.
		{`destinationAddress: ["2001:db8::/32"]`, tcp(OpConnect, "2001:db8:ffff::1", 1), true},
		{`destinationAddress: ["2001:db8::/32"]`, tcp(OpConnect, "2001:db9::", 1), false},
		{`destinationAddress: ["::1"]`, tcp(OpConnect, "::1", 1), true},
		{`destinationAddress: ["::1"]`, tcp(OpConnect, "127.0.0.1", 1), false},
		{`destinationAddress: ["::/0"]`, tcp(OpConnect, "2001:db8::1", 1), true},
		{`destinationAddress: ["::/0"]`, tcp(OpConnect, "10.0.0.1", 1), false},
		{`destinationAddress: [0.0.0.0/0]`, tcp(OpConnect, "2001:db8::1", 1), false},
		// IPv4-mapped IPv6: IPv4, in operations and in the policy.
		{"destinationAddress: [10.0.0.0/8]", tcp(OpConnect, "::ffff:10.1.2.3", 1), true},
		{`destinationAddress: ["::ffff:10.0.0.0/104"]`, tcp(OpConnect, "10.1.2.3", 1), true},
		{`destinationAddress: ["::ffff:10.0.0.0/104"]`, tcp(OpConnect, "::ffff:10.1.2.3", 1), true},
		{`destinationAddress: ["::/0"]`, tcp(OpConnect, "::ffff:10.1.2.3", 1), false},
		{`destinationAddress: ["::ffff:0:0/96"]`, tcp(OpConnect, "10.1.2.3", 1), true},
		// A zoned operation address is matched without its zone.
		{`destinationAddress: ["fe80::/10"]`, tcp(OpConnect, "fe80::1%eth0", 1), true},
		// Port ranges.
		{"destinationPort: [8000-8100]", tcp(OpConnect, "1.2.3.4", 7999), false},
		{"destinationPort: [8000-8100]", tcp(OpConnect, "1.2.3.4", 8000), true},
		{"destinationPort: [8000-8100]", tcp(OpConnect, "1.2.3.4", 8100), true},
		{"destinationPort: [8000-8100]", tcp(OpConnect, "1.2.3.4", 8101), false},
		{"destinationPort: [53, 443]", tcp(OpConnect, "1.2.3.4", 443), true},
		{"destinationPort: [53, 443]", tcp(OpConnect, "1.2.3.4", 80), false},
		{"destinationPort: [0-65535]", tcp(OpConnect, "1.2.3.4", 65535), true},
		{"destinationPort: [0]", tcp(OpConnect, "1.2.3.4", 0), true},
		// Protocol.
		{"protocol: [udp]", udp("10.96.0.10", 53), true},
		{"protocol: [udp]", tcp(OpConnect, "10.96.0.10", 53), false},
		{"protocol: [tcp, udp]", udp("10.96.0.10", 53), true},
		// Address AND port AND protocol.
		{"destinationAddress: [10.96.0.10]\n      destinationPort: [53]\n      protocol: [udp]", udp("10.96.0.10", 53), true},
		{"destinationAddress: [10.96.0.10]\n      destinationPort: [53]\n      protocol: [udp]", udp("10.96.0.10", 54), false},
		{"destinationAddress: [10.96.0.10]\n      destinationPort: [53]\n      protocol: [udp]", udp("10.96.0.11", 53), false},
		// Sources: accept's source is the peer; bind's is the local address.
		{"sourceAddress: [192.0.2.0/24]", withSrc(tcp(OpAccept, "10.0.0.5", 22), "192.0.2.7", 50000), true},
		{"sourceAddress: [192.0.2.0/24]", withSrc(tcp(OpAccept, "10.0.0.5", 22), "198.51.100.1", 50000), false},
		{"sourcePort: [1024-65535]", withSrc(tcp(OpAccept, "10.0.0.5", 22), "192.0.2.7", 50000), true},
		{"sourceAddress: [0.0.0.0]\n      sourcePort: [8080]", bind("0.0.0.0", 8080), true},
		{"sourcePort: [0]", bind("::", 0), true},
		{`sourceAddress: ["::/0"]`, bind("::", 0), true},
		// An endpoint the operation lacks matches no condition on it, a port
		// condition included, but a selector without such conditions still
		// matches.
		{"sourcePort: [0-65535]", tcp(OpConnect, "1.2.3.4", 80), false},
		{"sourceAddress: [0.0.0.0/0]", tcp(OpConnect, "1.2.3.4", 80), false},
		{"destinationPort: [0-65535]", bind("0.0.0.0", 80), false},
		{"destinationAddress: [0.0.0.0/0]", bind("0.0.0.0", 80), false},
		{"sourcePort: [40000-50000]", withSrc(tcp(OpConnect, "1.2.3.4", 80), "10.0.0.2", 45000), true},
		{"operation: [bind]", bind("0.0.0.0", 80), true},
		// The process and workload conditions.
		{"processName: [curl]", tcp(OpConnect, "1.2.3.4", 80), true},
		{"processName: [wget]", tcp(OpConnect, "1.2.3.4", 80), false},
		{"processExecutable: [/usr/bin/*]", tcp(OpConnect, "1.2.3.4", 80), true},
		{"processExecutable: [/bin/*]", tcp(OpConnect, "1.2.3.4", 80), false},
		{"sessionLeaderInteractive: true", tcp(OpConnect, "1.2.3.4", 80), false},
		{"sessionLeaderInteractive: false", tcp(OpConnect, "1.2.3.4", 80), true},
		{"containerImageName: [nginx]", tcp(OpConnect, "1.2.3.4", 80), false},
		{"kubernetesPodName: [\"*\"]", tcp(OpConnect, "1.2.3.4", 80), false},
	}
	for _, c := range cases {
		p := mustParse(t, netSel("    - name: s\n      "+c.cond+"\n"))
		d := p.Evaluate(&c.op)
		if got := d.Matched == 1 && d.Actions == ActionAlert && d.Type == Network; got != c.want {
			t.Errorf("%s on %+v: matched=%v, want %v", c.cond, c.op, got, c.want)
		}
	}
	// A workload condition holds in its container.
	p := mustParse(t, netSel("    - name: s\n      containerImageName: [nginx]\n      kubernetesPodLabel: [\"app:web\"]\n"))
	op := tcp(OpConnect, "1.2.3.4", 80)
	op.ContainerImageName, op.KubernetesPodName, op.KubernetesPodLabels = "nginx", "web-1", map[string]string{"app": "web"}
	if d := p.Evaluate(&op); d.Matched != 1 {
		t.Error("workload conditions do not match their workload")
	}
}

// TestNetworkResponses: match and exclude, and union of actions, as in the
// other sections.
func TestNetworkResponses(t *testing.T) {
	p := mustParse(t, cookbookEgress)
	a := netip.MustParseAddr
	cases := []struct {
		op      Operation
		actions Actions
		matched []string
	}{
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("10.100.3.4"), DestinationPort: 443, KubernetesNamespace: "shop"}, 0, []string{"shop", "serviceCIDR"}},
		{Operation{Op: OpConnect, Protocol: "udp", DestinationAddress: a("10.96.0.10"), DestinationPort: 53, KubernetesNamespace: "shop"}, 0, []string{"shop", "serviceCIDR"}},
		{Operation{Op: OpConnect, Protocol: "udp", DestinationAddress: a("169.254.20.10"), DestinationPort: 53, KubernetesNamespace: "shop"}, 0, []string{"shop", "nodeLocalDNS"}},
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("169.254.20.10"), DestinationPort: 53, KubernetesNamespace: "shop"}, 0, []string{"shop", "nodeLocalDNS"}},
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("169.254.20.10"), DestinationPort: 80, KubernetesNamespace: "shop"}, ActionAlert | ActionBlock, []string{"shop"}},
		// A pod's own address is not in the service CIDR: pod-to-pod is egress too.
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("10.244.1.7"), DestinationPort: 8080, KubernetesNamespace: "shop"}, ActionAlert | ActionBlock, []string{"shop"}},
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("93.184.216.34"), DestinationPort: 443, KubernetesNamespace: "shop"}, ActionAlert | ActionBlock, []string{"shop"}},
		{Operation{Op: OpConnect, Protocol: "udp", DestinationAddress: a("8.8.8.8"), DestinationPort: 53, KubernetesNamespace: "shop"}, ActionAlert | ActionBlock, []string{"shop"}},
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("::ffff:93.184.216.34"), DestinationPort: 443, KubernetesNamespace: "shop"}, ActionAlert | ActionBlock, []string{"shop"}},
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("2001:db8::1"), DestinationPort: 443, KubernetesNamespace: "shop"}, ActionAlert | ActionBlock, []string{"shop"}},
		{Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: a("93.184.216.34"), DestinationPort: 443, KubernetesNamespace: "other"}, 0, nil},
		// Accepting connections and binding are not egress.
		{Operation{Op: OpAccept, Protocol: "tcp", SourceAddress: a("93.184.216.34"), DestinationAddress: a("10.0.0.5"), DestinationPort: 8080, KubernetesNamespace: "shop"}, 0, nil},
		{Operation{Op: OpBind, Protocol: "tcp", SourceAddress: a("0.0.0.0"), SourcePort: 8080, KubernetesNamespace: "shop"}, 0, nil},
	}
	for _, c := range cases {
		d := p.Evaluate(&c.op)
		if d.Actions != c.actions || !slices.Equal(p.MatchedSelectors(d), c.matched) {
			t.Errorf("%+v: actions %q matched %v; want %q %v", c.op, d.Actions, p.MatchedSelectors(d), c.actions, c.matched)
		}
	}
}

// cookbookEgress is docs/cookbook.md's egress recipe (TestCookbookEgress checks
// it is there, word for word).
const cookbookEgress = `network:
  selectors:
    - name: shop
      operation: [connect]
      kubernetesNamespace: [shop]
    - name: serviceCIDR
      destinationAddress: [10.96.0.0/12]
    - name: nodeLocalDNS
      destinationAddress: [169.254.20.10]
      destinationPort: [53]
  responses:
    - match: [shop]
      exclude: [serviceCIDR, nodeLocalDNS]
      actions: [alert, block]
`

func TestEvaluateNetworkDoesNotAllocate(t *testing.T) {
	p := mustParse(t, cookbookEgress)
	op := Operation{Op: OpConnect, Protocol: "tcp", DestinationAddress: netip.MustParseAddr("::ffff:93.184.216.34"), DestinationPort: 443, KubernetesNamespace: "shop"}
	if n := testing.AllocsPerRun(100, func() { p.Evaluate(&op) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per call", n)
	}
}
