package ebpf

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloud-defend/cloud-defend/policy"
)

// decide is the kernel's enforce_exec (and, for fork, the same masks) written over
// the compiled maps in Go, step for step, so the compiler can be checked against
// policy.Evaluate on the host; the VM tests check the real kernel the same way.
func (c *compiled) decide(op *policy.Operation, containerMask uint64) (uint64, policy.Actions) {
	kp := &c.policy
	var m uint64
	switch op.Op {
	case policy.OpFork:
		m = kp.ForkOps
	case policy.OpExec:
		m = kp.ExecOps
		if op.ExecutableIsMemfd {
			m |= kp.MemfdOps
		}
	}
	path := op.ProcessExecutable
	exe := kp.NoExe
	if e, ok := c.lpm(path); ok {
		n := uint32(len(path))
		nameLen := uint32(len(path) - strings.LastIndexByte(path, '/') - 1)
		exe |= e.desc
		if e.len == n {
			exe |= e.exact
		}
		if e.dirlen+nameLen == n {
			exe |= e.children
		}
	}
	m &= exe
	m &= kp.NoName | c.names[truncComm(op.ProcessName)]
	if op.SessionLeaderInteractive {
		m &= kp.Interactive
	} else {
		m &= kp.Batch
	}
	m &= kp.Agnostic | containerMask
	var actions policy.Actions
	if m == 0 {
		return 0, 0
	}
	for i := range kp.N_responses {
		if m&kp.Match[i] != 0 && m&kp.Exclude[i] == 0 {
			actions |= policy.Actions(kp.Actions[i])
		}
	}
	return m, actions
}

// lpm is the LPM trie's longest-prefix lookup over the first 255 bytes of path.
func (c *compiled) lpm(path string) (pathEntry, bool) {
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	best, found := "", false
	for k := range c.paths {
		if strings.HasPrefix(path, k) && (!found || len(k) > len(best)) {
			best, found = k, true
		}
	}
	return c.paths[best], found
}

func truncComm(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}

func mustParse(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, _, err := policy.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return p
}

func TestCompilePathEntries(t *testing.T) {
	p := mustParse(t, `process:
  selectors:
    - name: a
      processExecutable: [/usr/bin/**]
    - name: b
      processExecutable: [/usr/bin/*, /usr/bin/env]
    - name: c
      processExecutable: [/**]
    - name: d
      processExecutable: [/*]
  responses:
    - match: [a, b, c, d]
      actions: [alert]
`)
	c, err := compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.pathKeys(); !slices.Equal(got, []string{"/", "/usr/bin/", "/usr/bin/env"}) {
		t.Fatalf("keys %q", got)
	}
	want := map[string]pathEntry{
		"/":            {desc: 0b0100, children: 0b1000, len: 1, dirlen: 1},
		"/usr/bin/":    {desc: 0b0101, children: 0b0010, len: 9, dirlen: 9},
		"/usr/bin/env": {exact: 0b0010, desc: 0b0101, children: 0b0010, len: 12, dirlen: 9},
	}
	for k, w := range want {
		if c.paths[k] != w {
			t.Errorf("%q = %+v, want %+v", k, c.paths[k], w)
		}
	}
	for path, want := range map[string]uint64{
		"/usr/bin/env":   0b0111, // exact b, children b, desc a and c
		"/usr/bin/envx":  0b0111, // longest entry is /usr/bin/env: children of /usr/bin still apply
		"/usr/bin/env/x": 0b0101, // under /usr/bin/env: only the /** patterns
		"/usr/bin":       0b0100, // not below itself, and not a child of /
		"/usr":           0b1100, // a child of /
		"/usr/binx":      0b0100,
		"/etc/passwd":    0b0100,
	} {
		op := policy.Operation{Op: policy.OpExec, ProcessExecutable: path}
		if m, _ := c.decide(&op, 0); m != want {
			t.Errorf("%s: matched %04b, want %04b", path, m, want)
		}
		if d := p.Evaluate(&op); d.Matched != want {
			t.Errorf("%s: evaluator matched %04b, want %04b", path, d.Matched, want)
		}
	}
}

func TestActionBitsMatchKernel(t *testing.T) {
	// cloud_defend.bpf.c: ACTION_LOG 1, ACTION_ALERT 2, ACTION_BLOCK 4.
	if policy.ActionLog != 1 || policy.ActionAlert != 2 || policy.ActionBlock != 4 {
		t.Fatal("policy.Actions bits differ from the kernel's enum action")
	}
}

// TestCompileDifferential checks the compiled maps, read the kernel's way, against
// the reference evaluator on random policies and operations.
func TestCompileDifferential(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	cases := 0
	for range 300 {
		src := genPolicy(r, 12)
		p := mustParse(t, src)
		c, err := compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			op := genOp(r)
			want := p.Evaluate(&op)
			gotM, gotA := c.decide(&op, c.containerMask(&op))
			cases++
			if gotM != want.Matched || gotA != want.Actions {
				t.Fatalf("seed %d: %+v\nkernel model: matched %b actions %v\nevaluator:    matched %b actions %v\n%s",
					seed, op, gotM, gotA, want.Matched, want.Actions, src)
			}
		}
	}
	t.Logf("%d cases agree", cases)
}
