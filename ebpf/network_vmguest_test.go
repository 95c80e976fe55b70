//go:build vmguest

package ebpf

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// netDecisions collects the network decisions that arrive within wait.
func netDecisions(ch <-chan event.Event, wait time.Duration) []event.Event {
	var out []event.Event
	deadline := time.After(wait)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == event.NetworkDecision {
				out = append(out, ev)
			}
		case <-deadline:
			return out
		}
	}
}

const netBlockPolicy = `network:
  selectors:
    - name: blocked
      operation: [connect]
      destinationAddress: [127.5.0.0/16]
      destinationPort: [9000-9010]
    - name: peers
      operation: [accept]
      sourceAddress: [127.6.0.0/16]
  responses:
    - match: [blocked, peers]
      actions: [alert, block]
`

// TestVMNetworkEnforcement: a container's TCP and UDP connects and UDP sends to
// a blocked CIDR and port range fail with EPERM, each with exactly one decision;
// other destinations in the same CIDR or port range pass, and so does the node's
// own connection to the blocked destination. An accepted connection from a
// blocked peer cannot be used (EPERM on send).
func TestVMNetworkEnforcement(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, netBlockPolicy)); err != nil {
		t.Fatal(err)
	}
	if !e.BlockingInForce() {
		t.Fatal("BlockingInForce is false with a blocking network policy")
	}
	out, _ := runNetOps(t, "lo", "listen:tcp:127.5.0.1:9005", "listen:tcp:127.5.0.1:9011", "listen:tcp:127.0.0.1:9005",
		"connect:tcp:127.5.0.1:9005", "connect:tcp:127.5.0.1:9011", "connect:tcp:127.0.0.1:9005",
		"connect:udp:127.5.0.1:9006", "sendto:udp:127.5.0.1:9007", "sendto:udp:127.7.0.1:9007")
	want := map[string]string{
		"connect:tcp:127.5.0.1:9005": "eperm", "connect:tcp:127.5.0.1:9011": "ok", "connect:tcp:127.0.0.1:9005": "ok",
		"connect:udp:127.5.0.1:9006": "eperm", "sendto:udp:127.5.0.1:9007": "eperm", "sendto:udp:127.7.0.1:9007": "ok",
	}
	for step, res := range want {
		if !strings.Contains(out, step+" "+res+"\n") {
			t.Errorf("%s: want %s\n%s", step, res, out)
		}
	}
	decs := netDecisions(ch, 2*time.Second)
	got := map[string]int{}
	for _, d := range decs {
		if !d.Blocked || d.Actions != policy.ActionAlert|policy.ActionBlock || d.UserSpace {
			t.Errorf("decision %+v", d)
		}
		got[fmt.Sprintf("%v %v %v", d.Op, d.Protocol, d.Destination)]++
		t.Logf("%v %v %v -> %v hook %v blocked %v", d.Op, d.Protocol, d.Source, d.Destination, d.Hook, d.Blocked)
	}
	for _, k := range []string{"connect tcp 127.5.0.1:9005", "connect udp 127.5.0.1:9006", "connect udp 127.5.0.1:9007"} {
		if got[k] != 1 {
			t.Errorf("%s: %d decisions, want exactly 1 (all: %v)", k, got[k], got)
		}
	}
	if len(decs) != 3 {
		t.Errorf("%d decisions, want 3: %v", len(decs), got)
	}
	// The node's own processes are out of scope.
	if err := loopbackUp(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.5.0.1:9005")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", "127.5.0.1:9005")
	if err != nil {
		t.Fatalf("the node's own connect was refused: %v", err)
	}
	c.Close()
}

// TestVMNetworkAcceptRefused: an accepted connection from a blocked peer is
// decided at accept and every send on it fails with EPERM.
func TestVMNetworkAcceptRefused(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, netBlockPolicy)); err != nil {
		t.Fatal(err)
	}
	out, _ := runNetOps(t, "lo", "listen:tcp:127.0.0.1:9020", "bconnect:tcp:127.6.0.1:127.0.0.1:9020", "acceptio")
	if !strings.Contains(out, "acceptio eperm\n") || !strings.Contains(out, "bconnect:tcp:127.6.0.1:127.0.0.1:9020 ok\n") {
		t.Fatalf("want the accepted connection refused:\n%s", out)
	}
	decs := netDecisions(ch, time.Second)
	if len(decs) != 1 || decs[0].Op != policy.OpAccept || decs[0].Source.Addr() != netip.MustParseAddr("127.6.0.1") ||
		decs[0].Destination != netip.MustParseAddrPort("127.0.0.1:9020") || decs[0].Direction != event.DirectionIngress || !decs[0].Blocked {
		t.Fatalf("decisions %+v", decs)
	}
}

// TestVMNetworkDifferential: for random network policies, real connects and
// binds (TCP and UDP, IPv4 and IPv6, on loopback) in a container are refused
// exactly when policy.Evaluate blocks them, and decided with its selectors and
// actions.
func TestVMNetworkDifferential(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 9))
	cases := 0
	for range 25 {
		src := genNetPolicy(r, 10)
		p := mustParse(t, src)
		if err := e.Swap(p); err != nil {
			t.Fatal(err)
		}
		steps := []string{"lo"}
		var ops []policy.Operation
		for range 12 {
			op := genNetOp(r)
			if op.Op == policy.OpAccept { // made a bind: its peer is the bound address, and it has no destination
				op.Op = policy.OpBind
				op.DestinationAddress, op.DestinationPort = netip.Addr{}, 0
			}
			if op.Op == policy.OpConnect {
				op.SourceAddress, op.SourcePort = netip.Addr{}, 0
			}
			op.ProcessName = "ebpf.test"
			a, port := op.DestinationAddress, op.DestinationPort
			if op.Op == policy.OpBind {
				a, port = op.SourceAddress, op.SourcePort
			}
			steps = append(steps, fmt.Sprintf("try:%v:%s:%s:%d", op.Op, op.Protocol, a, port))
			ops = append(ops, op)
		}
		out, _ := runNetOps(t, steps...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(steps) {
			t.Fatalf("helper output:\n%s", out)
		}
		expect := 0
		for i := range ops {
			if p.Evaluate(&ops[i]).Actions != 0 {
				expect++
			}
		}
		// This policy's decisions only: a slow ring may still hold the
		// previous one's (the generation says which policy decided).
		gen := e.Generation()
		var decs []event.Event
		for deadline := time.Now().Add(3 * time.Second); len(decs) < expect && time.Now().Before(deadline); {
			for _, d := range netDecisions(ch, 100*time.Millisecond) {
				if d.Generation == gen {
					decs = append(decs, d)
				}
			}
		}
		for _, d := range netDecisions(ch, 100*time.Millisecond) {
			if d.Generation == gen {
				decs = append(decs, d)
			}
		}
		di := 0
		for i, op := range ops {
			want := p.Evaluate(&op)
			blocked := strings.HasSuffix(lines[i+1], " eperm")
			if blocked != want.Actions.Has(policy.ActionBlock) {
				t.Fatalf("%s: blocked %v, evaluator %v %b\n%s", lines[i+1], blocked, want.Actions, want.Matched, src)
			}
			cases++
			if want.Actions == 0 {
				continue
			}
			if di >= len(decs) {
				t.Fatalf("%s: no decision (evaluator %v %b)\n%s", lines[i+1], want.Actions, want.Matched, src)
			}
			d := decs[di]
			di++
			if d.Op != op.Op || d.Matched != want.Matched || d.Actions != want.Actions {
				t.Fatalf("%s: decision %v %v %v -> %v matched %b actions %v, evaluator matched %b actions %v\nops %v\n%s",
					lines[i+1], d.Op, d.Protocol, d.Source, d.Destination, d.Matched, d.Actions, want.Matched, want.Actions, lines, src)
			}
		}
		if di != len(decs) {
			t.Fatalf("%d decisions for %d expected\n%s", len(decs), di, src)
		}
	}
	t.Logf("%d operations agree", cases)
}

// TestVMNetworkHotSwap: UDP sends in a loop while the policy flips between
// blocking their destination and not; every refusal has exactly one decision,
// made by a blocking generation, and the last policy decides the next send.
func TestVMNetworkHotSwap(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	block := mustParse(t, netBlockPolicy)
	allow := mustParse(t, strings.Replace(netBlockPolicy, "9000-9010", "9100", 1))
	if err := e.Swap(block); err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	go func() {
		out, _ := runNetOps(t, "lo", "udptry:400:127.5.0.1:9005")
		done <- out
	}()
	swaps := 0
	var out string
loop:
	for {
		select {
		case out = <-done:
			break loop
		default:
		}
		next := allow
		if swaps%2 == 1 {
			next = block
		}
		if err := e.Swap(next); err != nil {
			t.Fatal(err)
		}
		swaps++
		time.Sleep(2 * time.Millisecond)
	}
	var ok, eperm int
	i := strings.Index(out, "udptry ok=")
	if i < 0 {
		t.Fatalf("helper output %q: no udptry line", out)
	}
	if _, err := fmt.Sscanf(out[i:], "udptry ok=%d eperm=%d", &ok, &eperm); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	decs := netDecisions(ch, time.Second)
	for _, d := range decs {
		if p := e.PolicyOf(d.Generation); p != block {
			t.Fatalf("a refusal decided by generation %d, not a blocking one", d.Generation)
		}
		if names, err := e.SelectorNames(&d); err != nil || len(names) != 1 || names[0] != "blocked" {
			t.Fatalf("selector names %v %v", names, err)
		}
	}
	if len(decs) != eperm {
		t.Fatalf("%d refusals, %d decisions", eperm, len(decs))
	}
	t.Logf("%d swaps, %d sends passed, %d refused, each decided once", swaps, ok, eperm)
}
