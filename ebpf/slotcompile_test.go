package ebpf

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"

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
	if e, ok := lpm(c.paths, path); ok {
		exe |= e.masks(path)
	}
	m &= exe
	m &= kp.NoName | c.names[truncComm(op.ProcessName)]
	if op.SessionLeaderInteractive {
		m &= kp.Interactive
	} else {
		m &= kp.Batch
	}
	m &= kp.Agnostic | containerMask
	if m == 0 {
		return 0, 0
	}
	m &= kp.Layers[layerOf(op.ExecutableLayer)]
	if m == 0 {
		return 0, 0
	}
	return m, fire(&kp.R, m)
}

// fire is the kernel's response loop.
func fire(r *bpfobj.ProbeResponses, m uint64) policy.Actions {
	var actions policy.Actions
	for i := range r.N {
		if m&r.Match[i] != 0 && m&r.Exclude[i] == 0 {
			actions |= policy.Actions(r.Actions[i])
		}
	}
	return actions
}

// decideFile is the kernel's decide_file over the compiled maps.
func (c *compiled) decideFile(op *policy.Operation, containerMask uint64) (uint64, policy.Actions) {
	kf := &c.file
	m := kf.Ops[op.Op]
	if m&^kf.NoPath != 0 {
		pm := kf.NoPath
		if e, ok := lpm(c.filePaths, op.TargetPath); ok {
			pm |= e.masks(op.TargetPath)
		}
		if strings.HasSuffix(op.TargetPath, "/") && len(op.TargetPath) <= maxPath {
			pm |= c.fileTrees[op.TargetPath]
		}
		m &= pm
	}
	if op.OnVolumeMount || op.OnFileMount {
		m &^= kf.IgnoreVolume
	}
	if op.OnFileMount {
		m &^= kf.IgnoreFile
	}
	m &= kf.Agnostic | containerMask
	if m == 0 {
		return 0, 0
	}
	return m, fire(&kf.R, m)
}

// masks applies an entry to the path it was found for, as path_masks does: a path
// ending in "/" is a directory tree, matched as its nameless child (and, from
// fileTrees, by the patterns at or below it).
func (e pathEntry) masks(path string) uint64 {
	n := uint32(len(path))
	nameLen := uint32(len(path) - strings.LastIndexByte(path, '/') - 1)
	m := e.desc
	if !strings.HasSuffix(path, "/") && e.len == n {
		m |= e.exact
	}
	if e.dirlen+nameLen == n {
		m |= e.children
	}
	return m
}

// lpm is the LPM trie's longest-prefix lookup over the first 255 bytes of path.
func lpm(entries map[string]pathEntry, path string) (pathEntry, bool) {
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	best, found := "", false
	for k := range entries {
		if strings.HasPrefix(path, k) && (!found || len(k) > len(best)) {
			best, found = k, true
		}
	}
	return entries[best], found
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
	if got := sortedKeys(c.paths); !slices.Equal(got, []string{"/", "/usr/bin/", "/usr/bin/env"}) {
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

// TestCompileFileTrees: a directory renamed into or out of place ("dir/") is matched
// by every file pattern at or below it, from fileTrees, as policy.Evaluate says.
func TestCompileFileTrees(t *testing.T) {
	p := mustParse(t, `file:
  selectors:
    - name: localBin
      operation: [createExecutable]
      targetFilePath: [/usr/local/bin/**]
    - name: passwd
      operation: [createExecutable]
      targetFilePath: [/etc/passwd]
    - name: confs
      operation: [createExecutable]
      targetFilePath: [/etc/conf.d/*]
    - name: all
      operation: [createExecutable]
      targetFilePath: [/**]
  responses:
    - match: [localBin, passwd, confs, all]
      actions: [alert]
`)
	c, err := compile(p)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]uint64{
		"/usr/local/":       0b1001, // localBin below it, /** over it
		"/usr/":             0b1001,
		"/etc/":             0b1110,
		"/etc/conf.d/":      0b1100,
		"/etc/passwd/":      0b1010, // a directory moved to the exact path's name
		"/opt/":             0b1000,
		"/usr/local/bin/x/": 0b1001,
	} {
		op := policy.Operation{Op: policy.OpCreateExecutable, TargetPath: path}
		if m, _ := c.decideFile(&op, 0); m != want {
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
			pm, _, _ := c.containerMasks(&op)
			gotM, gotA := c.decide(&op, pm)
			cases++
			if gotM != want.Matched || gotA != want.Actions {
				t.Fatalf("seed %d: %+v\nkernel model: matched %b actions %v\nevaluator:    matched %b actions %v\n%s",
					seed, op, gotM, gotA, want.Matched, want.Actions, src)
			}
		}
	}
	t.Logf("%d cases agree", cases)
}

// TestCompileFileDifferential: the compiled file maps, read the kernel's way, agree
// with the evaluator, single-file mounts included.
func TestCompileFileDifferential(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	cases := 0
	for range 300 {
		src := genFilePolicy(r, 12)
		p := mustParse(t, src)
		c, err := compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			op := genFileOp(r)
			op.OnFileMount = r.IntN(5) == 0
			op.OnVolumeMount = op.OnVolumeMount || op.OnFileMount
			want := p.Evaluate(&op)
			_, fm, _ := c.containerMasks(&op)
			gotM, gotA := c.decideFile(&op, fm)
			cases++
			if gotM != want.Matched || gotA != want.Actions {
				t.Fatalf("seed %d: %+v\nkernel model: matched %b actions %v\nevaluator:    matched %b actions %v\n%s",
					seed, op, gotM, gotA, want.Matched, want.Actions, src)
			}
		}
	}
	t.Logf("%d cases agree", cases)
}

// TestCompileNetDifferential: the kernel's network matching over the compiled
// maps (decideNet) agrees with policy.Evaluate on random policies and operations.
func TestCompileNetDifferential(t *testing.T) {
	cases := 0
	for seed := range uint64(400) {
		r := rand.New(rand.NewPCG(seed, 3))
		src := genNetPolicy(r, 12)
		p := mustParse(t, src)
		c, err := compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			op := genNetOp(r)
			want := p.Evaluate(&op)
			_, _, nm := c.containerMasks(&op)
			gotM, gotA := c.decideNet(&op, nm)
			cases++
			if gotM != want.Matched || gotA != want.Actions {
				t.Fatalf("seed %d: %+v\nkernel model: matched %b actions %v\nevaluator:    matched %b actions %v\n%s",
					seed, op, gotM, gotA, want.Matched, want.Actions, src)
			}
		}
	}
	t.Logf("%d network operations agree", cases)
}

// TestPortPrefixes: a range's aligned prefixes cover exactly the range.
func TestPortPrefixes(t *testing.T) {
	for _, r := range []policy.PortRange{{Lo: 0, Hi: 65535}, {Lo: 1, Hi: 65534}, {Lo: 80, Hi: 80}, {Lo: 8000, Hi: 8100}, {Lo: 1024, Hi: 65535}, {Lo: 0, Hi: 0}, {Lo: 65535, Hi: 65535}} {
		ps := portPrefixes(bpfobj.ProbeNetKindNK_DPORT, r)
		if len(ps) > 30 {
			t.Errorf("%v: %d prefixes", r, len(ps))
		}
		for port := range 65536 {
			var k netPrefix
			k.kind, k.bits = bpfobj.ProbeNetKindNK_DPORT, 16
			k.data[0], k.data[1] = byte(port>>8), byte(port)
			in := 0
			for _, p := range ps {
				if p.contains(k) {
					in++
				}
			}
			if want := r.Contains(uint16(port)); (in == 1) != want || in > 1 {
				t.Fatalf("%v: port %d in %d prefixes", r, port, in)
			}
		}
	}
}

// TestNetSel64Policy: the benchmarks' 63-selector network policy compiles, and
// the loops' connections (127.0.0.1:9050) match none of it.
func TestNetSel64Policy(t *testing.T) {
	p := mustParse(t, sel64Policy()+fileSel64Policy(false)+netSel64Policy())
	c, err := compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.Selectors(policy.Network)); n != 63 {
		t.Fatalf("%d network selectors", n)
	}
	for _, op := range []policy.Operation{
		{Op: policy.OpConnect, Protocol: "tcp", DestinationAddress: netip.MustParseAddr("127.0.0.1"), DestinationPort: 9050, ProcessName: "ebpf.test"},
		{Op: policy.OpAccept, Protocol: "tcp", SourceAddress: netip.MustParseAddr("127.0.0.1"), SourcePort: 40000,
			DestinationAddress: netip.MustParseAddr("127.0.0.1"), DestinationPort: 9050, ProcessName: "ebpf.test"},
	} {
		if d := p.Evaluate(&op); d.Matched != 0 {
			t.Errorf("%v matches %b", op.Op, d.Matched)
		}
		if m, _ := c.decideNet(&op, 0); m != 0 {
			t.Errorf("%v: kernel model matches %b", op.Op, m)
		}
	}
}

// TestNetFirstBytes: net_policy.first holds, for every key, every selector
// whose prefixes hold it (the filter may let more through, never fewer).
func TestNetFirstBytes(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		p := mustParse(t, genNetPolicy(r, 12))
		sels := p.Selectors(policy.Network)
		first := netFirstBytes(sels)
		own := map[netPrefix]uint64{}
		eachPrefix(sels, func(bit uint64, q netPrefix) { own[q] |= bit })
		for q, bits := range own {
			// Keys at the prefix's edges and inside it, of every first byte it spans.
			for b := range 256 {
				k := q
				k.data[0], k.bits = byte(b), 128
				if q.kind >= bpfobj.ProbeNetKindNK_DPORT {
					k.bits = 16
				}
				if q.contains(k) && first[q.kind][b]&bits != bits {
					t.Fatalf("seed %d: %v holds a key of first byte %d, first has %b of %b", seed, q, b, first[q.kind][b], bits)
				}
			}
		}
	}
}
