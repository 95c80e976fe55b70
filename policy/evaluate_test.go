package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, _, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	return p
}

func TestPathPattern(t *testing.T) {
	cases := []struct {
		pattern string
		path    string
		want    bool
	}{
		{"/usr/bin/echo", "/usr/bin/echo", true},
		{"/usr/bin/echo", "/usr/bin/echo2", false},
		{"/usr/bin/echo", "/usr/bin/echo/x", false},
		{"/usr/bin/echo", "/usr/bin", false},
		{"/usr/bin/*", "/usr/bin/echo", true},
		{"/usr/bin/*", "/usr/bin/.hidden", true},
		{"/usr/bin/*", "/usr/bin/x/y", false},
		{"/usr/bin/*", "/usr/bin", false},
		// A trailing slash names a directory tree moved as a whole: the patterns
		// of its nameless child, and every pattern at or below it, match.
		{"/usr/bin/*", "/usr/bin/", true},
		{"/usr/bin/**", "/usr/bin/", true},
		{"/usr/bin/echo", "/usr/bin/", true},
		{"/usr/bin/echo", "/usr/", true},
		{"/usr/bin", "/usr/bin/", true},
		{"/usr/bin/*", "/usr/", true},
		{"/usr/bin/*", "/usr/bin/x/", false},
		{"/usr/bin/echo", "/usr/bin/x/", false},
		{"/usr/binx/*", "/usr/bin/", false},
		{"/**", "/usr/", true},
		{"/usr/bin/*", "/usr/binx/y", false},
		{"/usr/bin/**", "/usr/bin/echo", true},
		{"/usr/bin/**", "/usr/bin/x/y/z", true},
		{"/usr/bin/**", "/usr/bin", false},
		{"/usr/bin/**", "/usr/binx", false},
		{"/usr/bin/**", "/usr/binx/y", false},
		{"/*", "/etc", true},
		{"/*", "/etc/passwd", false},
		{"/**", "/etc/passwd", true},
		{"/**", "/x", true},
		{"/**", "", false},
		{"/etc/**", "etc/passwd", false},
	}
	for _, c := range cases {
		if got := newPathPattern(c.pattern).Match(c.path); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.pattern, c.path, got, c.want)
		}
		if s := newPathPattern(c.pattern).String(); s != c.pattern {
			t.Errorf("%q renders as %q", c.pattern, s)
		}
	}
}

func TestNameAndLabelPatterns(t *testing.T) {
	names := []struct {
		pattern, name string
		want          bool
	}{
		{"nginx", "nginx", true},
		{"nginx", "nginx-1", false},
		{"nginx-*", "nginx-1", true},
		{"nginx-*", "nginx-", true},
		{"nginx-*", "nginx", false},
		{"*", "anything", true},
	}
	for _, c := range names {
		if got := newNamePattern(c.pattern).Match(c.name); got != c.want {
			t.Errorf("pod name %q matches %q = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	labels := map[string]string{"app": "web-1", "empty": "", "example.com/tier": "front"}
	lc := []struct {
		pattern string
		want    bool
	}{
		{"app:web-1", true},
		{"app:web", false},
		{"app:web*", true},
		{"app:*", true},
		{"app:", false},
		{"empty:", true},
		{"empty:*", true},
		{"empty:x", false},
		{"missing:", false},
		{"missing:*", false},
		{"example.com/tier:front", true},
		{"tier:front", false},
	}
	for _, c := range lc {
		if got := newLabelPattern(c.pattern).Match(labels); got != c.want {
			t.Errorf("label %q matches = %v, want %v", c.pattern, got, c.want)
		}
	}
	if newLabelPattern("app:*").Match(nil) {
		t.Error("a label pattern matched a workload without labels")
	}
}

// TestConditionSemantics checks each condition alone (OR inside a list) and their
// conjunction (AND across conditions).
func TestConditionSemantics(t *testing.T) {
	pod := Operation{
		Op: OpExec, ProcessExecutable: "/usr/bin/curl", ProcessName: "curl",
		ContainerImageName: "nginx", ContainerImageTag: "1.25", ContainerImageFullName: "docker.io/library/nginx",
		KubernetesClusterID: "uid-1", KubernetesClusterName: "prod", KubernetesNamespace: "web",
		KubernetesPodName: "web-7d9f", KubernetesPodLabels: map[string]string{"app": "web", "tier": ""},
	}
	host := Operation{Op: OpExec, ProcessExecutable: "/usr/bin/curl", ProcessName: "curl"}
	cases := []struct {
		cond      string
		pod, host bool
	}{
		{"operation: [exec]", true, true},
		{"operation: [fork]", false, false},
		{"operation: [fork, exec]", true, true},
		{"containerImageName: [redis, nginx]", true, false},
		{"containerImageName: [redis]", false, false},
		{"containerImageTag: [\"1.25\"]", true, false},
		{"containerImageTag: [latest]", false, false},
		{"containerImageFullName: [docker.io/library/nginx]", true, false},
		{"containerImageFullName: [docker.io/nginx]", false, false},
		{"kubernetesClusterId: [uid-1]", true, false},
		{"kubernetesClusterName: [prod, dev]", true, false},
		{"kubernetesNamespace: [kube-system]", false, false},
		{"kubernetesNamespace: [web]", true, false},
		{"kubernetesPodName: [web-*]", true, false},
		{"kubernetesPodName: [\"*\"]", true, false},
		{"kubernetesPodName: [web]", false, false},
		{"kubernetesPodLabel: [\"app:web\"]", true, false},
		{"kubernetesPodLabel: [\"app:db\", \"tier:\"]", true, false},
		{"kubernetesPodLabel: [\"app:db\"]", false, false},
		{"orchestratorType: [kubernetes]", true, false},
		{"processExecutable: [/usr/bin/curl]", true, true},
		{"processExecutable: [/usr/bin/*]", true, true},
		{"processExecutable: [/usr/**]", true, true},
		{"processExecutable: [/bin/*]", false, false},
		{"processName: [curl]", true, true},
		{"processName: [wget, curl]", true, true},
		{"processName: [cur]", false, false},
		{"sessionLeaderInteractive: false", true, true},
		{"sessionLeaderInteractive: true", false, false},
		// AND across conditions.
		{"containerImageName: [nginx]\n      kubernetesNamespace: [web]\n      processName: [curl]", true, false},
		{"containerImageName: [nginx]\n      kubernetesNamespace: [other]", false, false},
	}
	for _, c := range cases {
		p := mustParse(t, procSel("    - name: s\n      "+c.cond+"\n"))
		for _, x := range []struct {
			name string
			op   Operation
			want bool
		}{{"pod", pod, c.pod}, {"host", host, c.host}} {
			d := p.Evaluate(&x.op)
			if got := d.Matched == 1 && d.Actions == ActionAlert; got != x.want {
				t.Errorf("%s on %s: matched=%v, want %v", c.cond, x.name, got, x.want)
			}
		}
	}
	// sessionLeaderInteractive: true matches an interactive session.
	p := mustParse(t, procSel("    - name: s\n      sessionLeaderInteractive: true\n"))
	if d := p.Evaluate(&Operation{Op: OpFork, SessionLeaderInteractive: true}); d.Matched != 1 {
		t.Error("interactive session not matched")
	}
	// executableLayer: drift, by where the executable lives; a file on no
	// overlay has no layer and matches none.
	p = mustParse(t, procSel("    - name: s\n      executableLayer: [added, modified]\n"))
	for layer, want := range map[string]bool{"added": true, "modified": true, "image": false, "unknown": false, "": false} {
		if d := p.Evaluate(&Operation{Op: OpExec, ProcessExecutable: "/tmp/x", ExecutableLayer: layer}); (d.Matched == 1) != want {
			t.Errorf("executableLayer [added, modified] on layer %q: matched %v", layer, d.Matched == 1)
		}
	}
}

func TestFileSemantics(t *testing.T) {
	cases := []struct {
		cond string
		op   Operation
		want bool
	}{
		{"operation: [createFile]", Operation{Op: OpCreateFile, TargetPath: "/tmp/x"}, true},
		{"operation: [createFile]", Operation{Op: OpModifyFile, TargetPath: "/tmp/x"}, false},
		{"targetFilePath: [/etc/passwd]", Operation{Op: OpModifyFile, TargetPath: "/etc/passwd"}, true},
		{"targetFilePath: [/etc/passwd]", Operation{Op: OpDeleteFile, TargetPath: "/etc/passwd"}, true},
		{"targetFilePath: [/etc/*]", Operation{Op: OpModifyFile, TargetPath: "/etc/ssh/sshd_config"}, false},
		{"targetFilePath: [/etc/**]", Operation{Op: OpModifyFile, TargetPath: "/etc/ssh/sshd_config"}, true},
		{"ignoreVolumeMounts: true", Operation{Op: OpModifyFile, TargetPath: "/data/x"}, true},
		{"ignoreVolumeMounts: true", Operation{Op: OpModifyFile, TargetPath: "/data/x", OnVolumeMount: true}, false},
		{"ignoreVolumeMounts: true", Operation{Op: OpModifyFile, TargetPath: "/etc/cfg", OnFileMount: true}, false},
		{"ignoreVolumeFiles: true", Operation{Op: OpModifyFile, TargetPath: "/data/x", OnVolumeMount: true}, true},
		{"ignoreVolumeFiles: true", Operation{Op: OpModifyFile, TargetPath: "/etc/cfg", OnVolumeMount: true, OnFileMount: true}, false},
		{"ignoreVolumeMounts: false", Operation{Op: OpModifyFile, TargetPath: "/data/x", OnVolumeMount: true}, true},
		// A file selector never matches a process operation, even without conditions on operations.
		{"targetFilePath: [/**]", Operation{Op: OpExec, ProcessExecutable: "/bin/sh"}, false},
	}
	for _, c := range cases {
		p := mustParse(t, fileSel("    - name: s\n      "+c.cond+"\n"))
		if got := p.Evaluate(&c.op).Matched == 1; got != c.want {
			t.Errorf("%s on %+v: matched=%v, want %v", c.cond, c.op, got, c.want)
		}
	}
}

func TestSelectorWithoutOperationCoversItsType(t *testing.T) {
	p := mustParse(t, fileSel("    - name: s\n      targetFilePath: [/usr/bin/**]\n"))
	for _, op := range allOps[File].Ops() {
		if d := p.Evaluate(&Operation{Op: op, TargetPath: "/usr/bin/x"}); d.Matched != 1 {
			t.Errorf("%v not covered", op)
		}
	}
	if got := p.Selectors(File)[0].Covers(); got != allOps[File] {
		t.Errorf("Covers = %v", got)
	}
}

func TestExecMemfd(t *testing.T) {
	p := mustParse(t, procSel("    - name: s\n      operation: [execMemFd]\n"))
	if d := p.Evaluate(&Operation{Op: OpExec, ProcessExecutable: "/memfd:x (deleted)", ExecutableIsMemfd: true}); d.Matched != 1 {
		t.Error("memfd exec not matched by execMemFd")
	}
	if d := p.Evaluate(&Operation{Op: OpExec, ProcessExecutable: "/bin/sh"}); d.Matched != 0 {
		t.Error("ordinary exec matched by execMemFd")
	}
	if d := p.Evaluate(&Operation{Op: OpFork, ExecutableIsMemfd: true}); d.Matched != 0 {
		t.Error("fork matched by execMemFd")
	}
	p = mustParse(t, procSel("    - name: s\n      operation: [exec]\n"))
	if d := p.Evaluate(&Operation{Op: OpExec, ExecutableIsMemfd: true}); d.Matched != 1 {
		t.Error("exec does not cover a memfd exec")
	}
}

// readmeExample is the README's drift and /etc protection example:
// IF (binDirExeMods OR etcFileChanges) AND NOT nginx THEN alert, block.
const readmeExample = `file:
  selectors:
    - name: binDirExeMods
      operation: [createExecutable, modifyExecutable]
      targetFilePath: [/usr/bin/**]
    - name: etcFileChanges
      operation: [createFile, modifyFile, deleteFile]
      targetFilePath: [/etc/**]
    - name: nginx
      containerImageName: [nginx]
  responses:
    - match: [binDirExeMods, etcFileChanges]
      exclude: [nginx]
      actions: [alert, block]
    - match: [etcFileChanges]
      actions: [log]
`

func TestResponseSemantics(t *testing.T) {
	p := mustParse(t, readmeExample)
	if got := p.Responses(File)[0].String(); got != "IF (binDirExeMods OR etcFileChanges) AND NOT (nginx) THEN alert, block" {
		t.Errorf("response renders as %q", got)
	}
	cases := []struct {
		op      Operation
		actions Actions
		matched []string
	}{
		{Operation{Op: OpCreateExecutable, TargetPath: "/usr/bin/x", ContainerImageName: "redis"}, ActionAlert | ActionBlock, []string{"binDirExeMods"}},
		{Operation{Op: OpCreateExecutable, TargetPath: "/usr/bin/x", ContainerImageName: "nginx"}, 0, []string{"binDirExeMods", "nginx"}},
		{Operation{Op: OpModifyFile, TargetPath: "/etc/passwd", ContainerImageName: "redis"}, ActionLog | ActionAlert | ActionBlock, []string{"etcFileChanges"}},
		// The exclude stops the first response only; the second still logs.
		{Operation{Op: OpModifyFile, TargetPath: "/etc/passwd", ContainerImageName: "nginx"}, ActionLog, []string{"etcFileChanges", "nginx"}},
		{Operation{Op: OpModifyFile, TargetPath: "/usr/bin/x", ContainerImageName: "redis"}, 0, nil},
		{Operation{Op: OpCreateFile, TargetPath: "/tmp/x", ContainerImageName: "nginx"}, 0, []string{"nginx"}},
		{Operation{Op: OpExec, ProcessExecutable: "/usr/bin/x"}, 0, nil},
	}
	for _, c := range cases {
		d := p.Evaluate(&c.op)
		if d.Actions != c.actions || !slices.Equal(p.MatchedSelectors(d), c.matched) {
			t.Errorf("%+v: actions %q matched %v; want %q %v", c.op, d.Actions, p.MatchedSelectors(d), c.actions, c.matched)
		}
	}
}

func TestPolicyIsImmutable(t *testing.T) {
	p := mustParse(t, readmeExample)
	sels := p.Selectors(File)
	sels[0].TargetFilePath[0] = newPathPattern("/**")
	sels[0].Name = "x"
	resps := p.Responses(File)
	resps[0].Match[0] = "x"
	if d := p.Evaluate(&Operation{Op: OpCreateExecutable, TargetPath: "/opt/x"}); d.Matched != 0 {
		t.Error("changing a returned selector changed the policy")
	}
	if p.Selectors(File)[0].Name != "binDirExeMods" || p.Responses(File)[0].Match[0] != "binDirExeMods" {
		t.Error("changing returned values changed the policy")
	}
	src := p.Source()
	src[0] = 'X'
	if p.Source()[0] != 'f' {
		t.Error("Source is shared")
	}
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	p := mustParse(t, benchPolicy(63))
	op := benchOperation()
	if n := testing.AllocsPerRun(100, func() { p.Evaluate(&op) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per call", n)
	}
}

// benchPolicy builds a process policy of n selectors (n+1 rules) that mixes every
// condition kind, as a large real policy would.
func benchPolicy(n int) string {
	var b strings.Builder
	b.WriteString("process:\n  selectors:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - name: s%d\n      operation: [exec]\n", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "      processExecutable: [/usr/bin/tool%d, /opt/app%d/**, /bin/*]\n", i, i)
		case 1:
			fmt.Fprintf(&b, "      containerImageName: [image%d]\n      kubernetesNamespace: [ns%d, web]\n", i, i)
		case 2:
			fmt.Fprintf(&b, "      kubernetesPodLabel: [\"app:svc%d\", \"tier:front*\"]\n      kubernetesPodName: [web-%d-*]\n", i, i)
		case 3:
			fmt.Fprintf(&b, "      processName: [proc%d, curl]\n      sessionLeaderInteractive: true\n", i)
		}
	}
	b.WriteString("  responses:\n    - match: [")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "s%d", i)
	}
	b.WriteString("]\n      exclude: [s1]\n      actions: [alert]\n")
	return b.String()
}

func benchOperation() Operation {
	return Operation{
		Op: OpExec, ProcessExecutable: "/opt/app40/bin/server", ProcessName: "curl",
		SessionLeaderInteractive: true,
		ContainerImageName:       "web", ContainerImageTag: "1.0", KubernetesNamespace: "web",
		KubernetesPodName: "web-7d9f", KubernetesPodLabels: map[string]string{"app": "svc", "tier": "frontend"},
	}
}

func BenchmarkEvaluate(b *testing.B) {
	p := mustParse(b, benchPolicy(63))
	op := benchOperation()
	if d := p.Evaluate(&op); d.Matched == 0 {
		b.Fatal("benchmark operation matches nothing")
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Evaluate(&op)
	}
}

func BenchmarkEvaluateNoMatch(b *testing.B) {
	p := mustParse(b, benchPolicy(63))
	op := Operation{Op: OpExec, ProcessExecutable: "/usr/sbin/nothing", ProcessName: "nothing"}
	b.ReportAllocs()
	for b.Loop() {
		p.Evaluate(&op)
	}
}

func BenchmarkParseDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(DefaultName, DefaultYAML); err != nil {
			b.Fatal(err)
		}
	}
}
