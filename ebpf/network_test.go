package ebpf

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// netLogPolicy logs every network operation.
const netLogPolicy = `network:
  selectors:
    - name: all
      operation: [connect, accept, bind]
  responses:
    - match: [all]
      actions: [log]
`

// runNetOps runs the network helper in a container of its own making: new pid,
// mount and network namespaces (loopback brought up by the helper's lo step).
func runNetOps(t testing.TB, steps ...string) (string, int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, steps...)
	cmd.Env = append(os.Environ(), "CLOUD_DEFEND_HELPER=netop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("network helper: %v", err)
	}
	return string(out), code
}

// TestNetworkDetection: without BPF LSM (this host), a container's TCP listen
// (bind), connect and accept, UDP connect, sendto and bind in its own network
// namespace are reported as user-space network decisions with their protocol,
// endpoints, direction and process.
func TestNetworkDetection(t *testing.T) {
	e, ch := openEngine(t, Options{})
	if e.LSM().Available {
		t.Skip("BPF LSM is available: the kernel decides (the VM tests)")
	}
	if st := e.NetworkSyscalls(); !st.Available {
		t.Fatalf("network syscalls not watched: %s", st.Reason)
	}
	if err := e.Swap(mustParse(t, netLogPolicy)); err != nil {
		t.Fatal(err)
	}
	out, code := runNetOps(t, "lo", "listen:tcp:127.0.0.1:8080", "connect:tcp:127.0.0.1:8080", "accept",
		"connect:udp:127.0.0.1:5353", "sendto:udp:127.0.0.1:5354", "bind:udp:127.0.0.1:5355", "bind:tcp:::1:8443")
	if code != 0 {
		t.Fatalf("helper exited %d:\n%s", code, out)
	}
	a := netip.MustParseAddr("127.0.0.1")
	type want struct {
		op        policy.Op
		proto     event.Protocol
		hook      event.HookPoint
		src, dst  netip.AddrPort
		srcAnyPrt bool
		dir       event.Direction
	}
	wants := []want{
		{policy.OpBind, event.ProtocolTCP, event.HookSysBind, netip.AddrPortFrom(a, 8080), netip.AddrPort{}, false, event.DirectionNone},
		{policy.OpConnect, event.ProtocolTCP, event.HookSysConnect, netip.AddrPort{}, netip.AddrPortFrom(a, 8080), false, event.DirectionEgress},
		{policy.OpAccept, event.ProtocolTCP, event.HookSysAccept, netip.AddrPortFrom(a, 0), netip.AddrPortFrom(a, 8080), true, event.DirectionIngress},
		{policy.OpConnect, event.ProtocolUDP, event.HookSysConnect, netip.AddrPort{}, netip.AddrPortFrom(a, 5353), false, event.DirectionEgress},
		{policy.OpConnect, event.ProtocolUDP, event.HookSysConnect, netip.AddrPort{}, netip.AddrPortFrom(a, 5354), false, event.DirectionEgress},
		{policy.OpBind, event.ProtocolUDP, event.HookSysBind, netip.AddrPortFrom(a, 5355), netip.AddrPort{}, false, event.DirectionNone},
		{policy.OpBind, event.ProtocolTCP, event.HookSysBind, netip.MustParseAddrPort("[::1]:8443"), netip.AddrPort{}, false, event.DirectionNone},
	}
	self, _ := os.Executable()
	comm := self[strings.LastIndexByte(self, '/')+1:]
	if len(comm) > 15 {
		comm = comm[:15]
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < len(wants); {
		select {
		case ev := <-ch:
			if ev.Kind != event.NetworkDecision {
				continue
			}
			w := wants[i]
			src := ev.Source
			if w.srcAnyPrt && src.Port() != 0 {
				src = netip.AddrPortFrom(src.Addr(), 0)
			}
			if ev.Op != w.op || ev.Protocol != w.proto || ev.Hook != w.hook || src != w.src || ev.Destination != w.dst || ev.Direction != w.dir {
				t.Fatalf("decision %d: got %v %v hook %v %v -> %v %v, want %+v", i, ev.Op, ev.Protocol, ev.Hook, ev.Source, ev.Destination, ev.Direction, w)
			}
			if !ev.UserSpace || ev.Blocked || ev.Actions != policy.ActionLog || ev.Process.Comm != comm || ev.Process.PIDNamespace == e.hostNS {
				t.Fatalf("decision %d: %+v", i, ev)
			}
			if names, err := e.SelectorNames(&ev); err != nil || len(names) != 1 || names[0] != "all" {
				t.Fatalf("selector names %v %v", names, err)
			}
			t.Logf("%v %v %v -> %v %v (%s pid %d)", ev.Op, ev.Protocol, ev.Source, ev.Destination, ev.Direction, ev.Process.Comm, ev.Process.PID)
			i++
		case <-deadline:
			t.Fatalf("only %d of %d decisions seen", i, len(wants))
		}
	}
}
