package policy

import (
	"errors"
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
		for i := range ops {
			d := p1.Evaluate(&ops[i])
			names := p1.MatchedSelectors(d)
			if len(names) != popcount(d.Matched) {
				t.Fatalf("matched mask %b names %v", d.Matched, names)
			}
			if d.Actions.Has(ActionBlock) && !d.Actions.Has(ActionAlert) {
				t.Fatalf("block without alert got through: %v", d.Actions)
			}
		}
		for ty := Type(0); ty < numTypes; ty++ {
			if n := len(p1.Selectors(ty)) + len(p1.Responses(ty)); n > MaxRules {
				t.Fatalf("%d rules of type %v accepted", n, ty)
			}
			for _, s := range p1.Selectors(ty) {
				_ = s.Conditions()
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
