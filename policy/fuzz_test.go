package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that any input yields either a policy or errors, never a panic,
// and the same diagnostics every time; a policy that parses must evaluate.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML)
	f.Add([]byte(readmeExample))
	f.Add([]byte(benchPolicy(8)))
	f.Add([]byte("selectors:\n  - name: a\n    operation: [execMemFd]\nresponses:\n  - match: [a]\n    actions: [alert]\n"))
	f.Add([]byte("security-policy:\n  file:\n    selectors:\n      - name: a\n        targetFilePath: [/etc/*]\n        orchestratorResourceLabel: [\"a:b*\"]\n    responses:\n      - match: [a]\n        actions: [alert, block]\n"))
	f.Add([]byte(cookbookEgress))
	f.Add([]byte("network:\n  selectors:\n    - name: a\n      operation: [accept, bind]\n      destinationAddress: [10.0.0.0/8, \"::ffff:10.0.0.0/104\", \"2001:db8::1/32\"]\n      sourcePort: [0-1023, 8100-8000, 70000]\n      protocol: [udp]\n      processName: [nc]\n  responses:\n    - match: [a]\n      actions: [alert, block]\n"))
	examples, _ := filepath.Glob("testdata/*.yaml")
	for _, e := range examples {
		if data, err := os.ReadFile(e); err == nil {
			f.Add(data)
		}
	}
	ops := []Operation{
		{Op: OpExec, ProcessExecutable: "/bin/sh", ProcessName: "sh", ExecutableIsMemfd: true, SessionLeaderInteractive: true},
		{Op: OpFork, ContainerImageName: "a", KubernetesPodName: "a-1", KubernetesPodLabels: map[string]string{"a": "b"}},
		{Op: OpModifyFile, TargetPath: "/etc/a", OnVolumeMount: true},
		{Op: OpCreateExecutable, TargetPath: "/usr/bin/a", OnFileMount: true},
		{Op: OpConnect, Protocol: "udp", DestinationAddress: netip.MustParseAddr("::ffff:10.96.0.10"), DestinationPort: 53, ProcessName: "nc"},
		{Op: OpAccept, Protocol: "tcp", SourceAddress: netip.MustParseAddr("2001:db8::1"), SourcePort: 40000, DestinationAddress: netip.MustParseAddr("10.0.0.1"), DestinationPort: 22},
		{Op: OpBind, Protocol: "tcp", SourceAddress: netip.MustParseAddr("0.0.0.0"), KubernetesPodName: "a-1"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p1, w1, e1 := Parse("f.yaml", data)
		p2, w2, e2 := Parse("f.yaml", data)
		if !reflect.DeepEqual(w1, w2) || !reflect.DeepEqual(e1, e2) || (p1 == nil) != (p2 == nil) {
			t.Fatalf("nondeterministic: %v %v / %v %v", w1, e1, w2, e2)
		}
		if (p1 == nil) == (e1 == nil) {
			t.Fatalf("policy %v with error %v", p1, e1)
		}
		var es Errors
		errors.As(e1, &es)
		for _, d := range append(w1, es...) {
			if d.Line < 1 || d.Column < 1 {
				t.Fatalf("diagnostic without a line and column: %+v", d)
			}
		}
		if p1 == nil {
			return
		}
		for _, d := range p1.EditorWarnings() {
			if d.Line < 1 || d.Column < 1 || d.Severity != SeverityWarning {
				t.Fatalf("editor warning without a line and column: %+v", d)
			}
		}
		for i := range ops {
			d := p1.Evaluate(&ops[i])
			names := p1.MatchedSelectors(d)
			if len(names) != popcount(d.Matched) {
				t.Fatalf("matched mask %b names %v", d.Matched, names)
			}
			if d.Actions.Has(ActionBlock) && !d.Actions.Has(ActionAlert) {
				t.Fatalf("block without alert got through: %v", d.Actions)
			}
			if d.Type != ops[i].Op.Type() {
				t.Fatalf("%v decided as %v", ops[i].Op, d.Type)
			}
		}
		for ty := Type(0); ty < numTypes; ty++ {
			if n := len(p1.Selectors(ty)) + len(p1.Responses(ty)); n > MaxRules {
				t.Fatalf("%d rules of type %v accepted", n, ty)
			}
			for _, s := range p1.Selectors(ty) {
				_ = s.Conditions()
				for _, pfx := range append(s.DestinationAddress, s.SourceAddress...) {
					if !pfx.IsValid() || pfx.Masked() != pfx || pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
						t.Fatalf("selector %s: prefix %v is not normalised", s.Name, pfx)
					}
				}
				for _, r := range append(s.DestinationPort, s.SourcePort...) {
					if r.Lo > r.Hi {
						t.Fatalf("selector %s: port range %v upside down", s.Name, r)
					}
				}
				if s.Type != Network && len(s.DestinationAddress)+len(s.SourceAddress)+len(s.DestinationPort)+len(s.SourcePort)+len(s.Protocol) > 0 {
					t.Fatalf("%v selector %s has network conditions", s.Type, s.Name)
				}
				for _, op := range s.Covers().Ops() {
					if op.Type() != ty {
						t.Fatalf("%v selector %s covers %v", ty, s.Name, op)
					}
				}
			}
		}
		_ = p1.String()
	})
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}
