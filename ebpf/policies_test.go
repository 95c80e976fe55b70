package ebpf

import (
	"fmt"
	"strconv"
	"strings"
)

// The benchmarks' largest policies, shared by the host and the VM.

// sel64Policy has 63 selectors of every process condition kind, all considered on
// every exec, with one response naming them all.
func sel64Policy() string {
	var b strings.Builder
	b.WriteString("process:\n  selectors:\n")
	names := make([]string, 63)
	for i := range names {
		names[i] = "s" + strconv.Itoa(i)
		fmt.Fprintf(&b, "    - name: %s\n      operation: [fork, exec]\n", names[i])
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "      processExecutable: [/usr/bin/tool%d, /opt/app%d/**, /usr/bin/*]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      processExecutable: [/usr/**]\n      containerImageName: [image%d]\n", i)
		case 2:
			fmt.Fprintf(&b, "      processName: [proc%d, bench-exe]\n", i)
		case 3:
			fmt.Fprintf(&b, "      processName: [sh%d]\n      sessionLeaderInteractive: false\n", i)
		}
	}
	// log, as the default policy: the comparison isolates the cost of 63 selectors
	// from that of waking the reader for alerts.
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	return b.String()
}

// fileSel64Policy has 63 file selectors with path patterns of every kind and one
// logging response. With logged, a third of them name the benchmark's directory
// (/srv/**), so every operation of the loops fires the response; without, they
// name /srv/archive/**, which the loops never touch.
func fileSel64Policy(logged bool) string {
	srv := "/srv/archive/**"
	if logged {
		srv = "/srv/**"
	}
	var b strings.Builder
	b.WriteString("file:\n  selectors:\n")
	names := make([]string, 63)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
		fmt.Fprintf(&b, "    - name: %s\n", names[i])
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "      targetFilePath: [/etc/app%d.conf, /srv/bench/etc/*, /var/lib/app%d/**]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      operation: [createFile, modifyFile, deleteFile]\n      targetFilePath: [%s, /opt/app%d/*]\n      ignoreVolumeMounts: true\n", srv, i)
		case 2:
			fmt.Fprintf(&b, "      operation: [createExecutable, modifyExecutable]\n      targetFilePath: [/usr/bin/**]\n      containerImageName: [image%d]\n", i)
		}
	}
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	return b.String()
}

// netSel64Policy has 63 network selectors (with its response, the 64 a type
// holds) of every condition kind (address
// prefixes v4 and v6, ports and ranges, protocol, process name, image), none of
// which the benchmarks' loopback connections meet, and one logging response:
// every connect and accept is judged against all of them.
func netSel64Policy() string {
	var b strings.Builder
	b.WriteString("network:\n  selectors:\n")
	names := make([]string, 63)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i)
		fmt.Fprintf(&b, "    - name: %s\n", names[i])
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "      operation: [connect]\n      destinationAddress: [10.%d.0.0/16, \"fd00:%x::/32\"]\n      destinationPort: [443, 8000-8100]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      operation: [connect, accept]\n      destinationPort: [%d]\n      protocol: [tcp]\n", 20000+i)
		case 2:
			fmt.Fprintf(&b, "      operation: [accept, bind]\n      sourceAddress: [192.168.%d.0/24]\n      processName: [proc%d]\n", i, i)
		case 3:
			fmt.Fprintf(&b, "      operation: [connect]\n      destinationAddress: [127.9.%d.0/24]\n      containerImageName: [image%d]\n", i, i)
		}
	}
	fmt.Fprintf(&b, "  responses:\n    - match: [%s]\n      actions: [log]\n", strings.Join(names, ", "))
	return b.String()
}
