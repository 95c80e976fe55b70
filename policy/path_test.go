package policy

import (
	"errors"
	"strings"
	"testing"
)

// TestConfigPaths: a policy given as config (an agent unit's) is diagnosed by
// path: selectors by name when they have one, by index otherwise; responses
// by index; list values by index; the key a warning is about; and places the
// message cites by path too.
func TestConfigPaths(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      []string // every diagnostic, as rendered, in order
	}{
		{"the issue's two", "file:\n  selectors:\n    - name: a\n      operation: [modifyFile]\n      targetFilePath: [etc/passwd]\n  responses:\n    - match: [a]\n      actions: [alert, explode]\n",
			[]string{`u: file.selectors[name=a].targetFilePath[0]: "etc/passwd" must be an absolute path`,
				`u: file.responses[0].actions[1]: unknown action "explode"; allowed: log, alert, block`}},
		{"index when unnamed", "process:\n  selectors:\n    - name: ok\n      processName: [sh]\n    - operation: [exec]\n  responses:\n    - match: [ok]\n      actions: [alert]\n",
			[]string{`u: process.selectors[1].name: required: every selector needs a name`}},
		{"duplicate names", "process:\n  selectors:\n    - name: a\n      processName: [sh]\n    - name: a\n      processName: [bash]\n  responses:\n    - match: [a]\n      actions: [alert]\n",
			[]string{`u: process.selectors[1].name: duplicate process selector name; first defined at process.selectors[name=a]`}},
		{"did you mean", "process:\n  selectors:\n    - name: a\n      procesName: [sh]\n      processName: [sh]\n  responses:\n    - match: [a]\n      actions: [alert]\n      exclud: [a]\n",
			[]string{`u: warning: process.selectors[name=a].procesName: unknown key, ignored; did you mean "processName"?`,
				`u: warning: process.responses[0].exclud: unknown key, ignored; did you mean "exclude"?`}},
		{"top-level unknown key", "proces:\n  selectors: []\nfile:\n  selectors:\n    - name: a\n      targetFilePath: [/etc]\n  responses:\n    - match: [a]\n      actions: [log]\n",
			[]string{`u: warning: proces: unknown key, ignored; did you mean "process"?`}},
		{"missing section parts", "file:\n  selectors:\n    - name: a\n      targetFilePath: [/etc]\n",
			[]string{`u: file.responses: required: a file section needs at least one response`}},
		{"missing response field", "file:\n  selectors:\n    - name: a\n      targetFilePath: [/etc]\n  responses:\n    - match: [a]\n",
			[]string{`u: file.responses[0].actions: required: at least one of log, alert, block`}},
		{"renamed condition given twice", "process:\n  selectors:\n    - name: a\n      kubernetesNamespace: [x]\n      orchestratorNamespace: [y]\n      processName: [sh]\n  responses:\n    - match: [a]\n      actions: [alert]\n",
			[]string{`u: process.selectors[name=a].orchestratorNamespace: given twice in one selector (also at process.selectors[name=a].kubernetesNamespace, under its old or new name)`,
				`u: warning: process.selectors[name=a].orchestratorNamespace: deprecated first-version condition; use kubernetesNamespace`}},
		{"under security-policy", "security-policy:\n  file:\n    selectors:\n      - name: a\n        targetFilePath: [/**]\n        operation: [modifyFile]\n    responses:\n      - match: [a]\n        actions: [alert, block]\n",
			[]string{`u: warning: security-policy.file.selectors[name=a].targetFilePath[0]: "/**" with block stops modifyFile for every file under /`}},
		{"both nested and not", "security-policy:\n  file:\n    selectors:\n      - name: a\n        targetFilePath: [/etc]\n    responses:\n      - match: [a]\n        actions: [log]\nfile: {}\n",
			[]string{`u: file: given both here and under security-policy (security-policy); use one`}},
		{"first-version top level", "selectors:\n  - name: a\n    operation: [createFile]\n    targetFilePath: [/etc]\n  - name: b\n    targetFilePath: [3, /etc]\nresponses:\n  - match: [a]\n    actions: [alert]\n  - match: [zzz]\n    actions: [alert]\n",
			[]string{`u: selectors[name=b].targetFilePath[0]: "3" must be an absolute path`,
				`u: responses[1].match: cannot tell whether this top-level response is for files or processes`,
				`u: warning: selectors: top-level selectors are from the first policy version`,
				`u: warning: responses: top-level responses are from the first policy version`}},
		{"odd keys are quoted", "file:\n  selectors:\n    - name: a\n      targetFilePath: [/etc]\n      \"x.y\": 1\n  responses:\n    - match: [a]\n      actions: [log]\n",
			[]string{`u: warning: file.selectors[name=a]["x.y"]: unknown key, ignored`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, warns, err := ParseConfig("u", []byte(c.src))
			var errs Errors
			if err != nil && !errors.As(err, &errs) {
				t.Fatal(err)
			}
			var got []string
			for _, d := range append(append([]Diagnostic{}, errs...), warns...) {
				got = append(got, d.String())
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d diagnostics, want %d:\n  %s", len(got), len(c.want), strings.Join(got, "\n  "))
			}
			for i := range got {
				if !strings.Contains(got[i], c.want[i]) {
					t.Errorf("diagnostic %d = %q\n  want it to contain %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestFileKeepsPositions: the same problem in a file reads FILE:LINE:COL, with
// the path in the JSON form.
func TestFileKeepsPositions(t *testing.T) {
	src := "file:\n  selectors:\n    - name: a\n      targetFilePath: [/etc]\n  responses:\n    - match: [a]\n      actions: [alert, explode]\n"
	_, _, err := Parse("p.yaml", []byte(src))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("%v", err)
	}
	d := errs[0]
	if s := d.String(); !strings.HasPrefix(s, `p.yaml:7:24: file response #1: actions: unknown action "explode"`) {
		t.Errorf("file diagnostic %q", s)
	}
	if d.Path != "file.responses[0].actions[1]" {
		t.Errorf("path %q", d.Path)
	}
}
