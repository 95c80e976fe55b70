package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// diagnose parses src and returns its errors and warnings as rendered lines.
func diagnose(t *testing.T, src string) (errs, warns []string) {
	t.Helper()
	p, ws, err := Parse("p.yaml", []byte(src))
	for _, w := range ws {
		if w.Severity != SeverityWarning {
			t.Fatalf("warning list holds a %v: %v", w.Severity, w)
		}
		warns = append(warns, w.String())
	}
	if err != nil {
		var es Errors
		if !errors.As(err, &es) {
			t.Fatalf("Parse returned %T, want Errors: %v", err, err)
		}
		if p != nil {
			t.Fatalf("Parse returned a policy and an error")
		}
		for _, e := range es {
			if e.Severity != SeverityError {
				t.Fatalf("error list holds a %v: %v", e.Severity, e)
			}
			errs = append(errs, e.String())
		}
	} else if p == nil {
		t.Fatalf("Parse returned neither a policy nor an error")
	}
	return errs, warns
}

// fileSel wraps selector lines (already indented for a list item) into a file section
// with one alert response naming "s".
func fileSel(sel string) string {
	return "file:\n  selectors:\n" + sel + "  responses:\n    - match: [s]\n      actions: [alert]\n"
}

func procSel(sel string) string {
	return "process:\n  selectors:\n" + sel + "  responses:\n    - match: [s]\n      actions: [alert]\n"
}

type diagCase struct {
	name string
	src  string
	// errs and warns are substrings each rendered diagnostic must contain, in order;
	// a case lists every diagnostic it expects, so extra ones fail it.
	errs, warns []string
}

func runDiagCases(t *testing.T, cases []diagCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs, warns := diagnose(t, c.src)
			for _, d := range append(append([]string{}, errs...), warns...) {
				if !positionPrefix.MatchString(d) {
					t.Errorf("%q does not start FILE:LINE:COL: ", d)
				}
			}
			match(t, "error", errs, c.errs)
			match(t, "warning", warns, c.warns)
			configDiagnostics(t, c.src, len(errs)+len(warns))
		})
	}
}

// positionPrefix is how every diagnostic of a file starts.
var positionPrefix = regexp.MustCompile(`^p\.yaml:[1-9]\d*:[1-9]\d*: `)

// positionRe finds what configDiagnostics forbids: a line:column, or a line cited.
var positionRe = regexp.MustCompile(`:\d+:|\bline \d|column \d`)

// configDiagnostics parses src as config (as the agent delivers a policy):
// the same diagnostics come out, each naming a path and no position.
func configDiagnostics(t *testing.T, src string, want int) {
	t.Helper()
	_, warns, err := ParseConfig("unit x", []byte(src))
	var errs Errors
	errors.As(err, &errs)
	all := append(append([]Diagnostic{}, errs...), warns...)
	if len(all) != want {
		t.Errorf("as config: %d diagnostics, as a file %d", len(all), want)
	}
	for _, d := range all {
		s := d.String()
		if positionRe.MatchString(s) {
			t.Errorf("as config, a diagnostic cites a position of the rendering: %s", s)
		}
		if d.Path == "" && !documentWide(d.Message) {
			t.Errorf("as config, a diagnostic has no path: %s", s)
		}
		if !strings.HasPrefix(s, "unit x: ") || !strings.Contains(s, d.Path+": ") {
			t.Errorf("as config, %q does not read NAME: [warning: ]PATH: message", s)
		}
	}
}

// documentWide tells diagnostics about the whole document, which have no path.
func documentWide(msg string) bool {
	for _, p := range []string{"policy is empty", "a policy ", "invalid YAML", "top-level selectors and responses gave"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func match(t *testing.T, kind string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d %ss, want %d:\n  %s", len(got), kind, len(want), strings.Join(got, "\n  "))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("%s %d = %q\n  want it to contain %q", kind, i, got[i], want[i])
		}
	}
}

func TestDocumentShape(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "empty", src: "", errs: []string{"p.yaml:1:1: policy is empty"}},
		{name: "comment only", src: "# nothing\n", errs: []string{"policy is empty"}},
		{name: "null", src: "~\n", errs: []string{"policy is empty"}},
		{name: "scalar", src: "hello\n", errs: []string{"p.yaml:1:1: a policy is a mapping"}},
		{name: "list", src: "- a\n", errs: []string{"a policy is a mapping"}},
		{name: "syntax", src: "file:\n  selectors: [a\n", errs: []string{"p.yaml:2:14: invalid YAML: did not find expected ',' or ']'"}},
		{name: "tab indent", src: "file:\n\tselectors: []\n", errs: []string{"p.yaml:2:1: invalid YAML: found a tab character"}},
		{name: "two documents", src: fileSel("    - name: s\n      operation: [createFile]\n") + "---\nfile: {}\n",
			errs: []string{"p.yaml:9:1: a policy is one YAML document"}},
		{name: "version only", src: "version: \"1\"\n", errs: []string{"p.yaml:1:1: a policy needs a process, file or network section"}},
		{name: "version not a string", src: "version: [1]\n" + fileSel("    - name: s\n      operation: [createFile]\n"),
			errs: []string{"p.yaml:1:10: version: must be a string"}},
		{name: "unknown top-level key", src: "proces:\n  selectors: []\n" + fileSel("    - name: s\n      operation: [createFile]\n"),
			warns: []string{`p.yaml:1:1: warning: proces: unknown key, ignored; did you mean "process"?`}},
		{name: "section not a mapping", src: "file: [a]\n",
			errs: []string{"p.yaml:1:7: file: must be a mapping with selectors and responses"}},
		{name: "section null", src: "file:\n",
			errs: []string{"p.yaml:1:6: file: must be a mapping"}},
		{name: "missing responses", src: "process:\n  selectors:\n    - name: s\n      operation: [exec]\n",
			errs: []string{"p.yaml:1:1: process: responses: required"}},
		{name: "missing selectors", src: "process:\n  responses:\n    - match: [s]\n      actions: [log]\n",
			errs: []string{"p.yaml:1:1: process: selectors: required", `p.yaml:3:15: process response #1: match: unknown selector "s"`}},
		{name: "empty selectors", src: "process:\n  selectors: []\n  responses:\n    - match: [s]\n      actions: [log]\n",
			errs: []string{"p.yaml:2:14: process: selectors: needs at least one selector", `unknown selector "s"`}},
		{name: "selectors not a list", src: "process:\n  selectors: {name: s}\n  responses:\n    - match: [s]\n      actions: [log]\n",
			errs: []string{"p.yaml:2:14: process: selectors: must be a list of selectors", `unknown selector "s"`}},
		{name: "unknown section key", src: "process:\n  selector: []\n  selectors:\n    - name: s\n      operation: [exec]\n  responses:\n    - match: [s]\n      actions: [log]\n",
			warns: []string{`p.yaml:2:3: warning: process: selector: unknown key, ignored; did you mean "selectors"?`}},
		{name: "duplicate key", src: "file:\n  selectors:\n    - name: s\n      operation: [createFile]\n      operation: [deleteFile]\n  responses:\n    - match: [s]\n      actions: [log]\n",
			errs: []string{`p.yaml:5:7: file selector "s": operation: duplicate key; first given at line 4`}},
		{name: "merge key", src: "base: &b {operation: [exec]}\nprocess:\n  selectors:\n    - name: s\n      <<: *b\n  responses:\n    - match: [s]\n      actions: [log]\n",
			errs:  []string{"p.yaml:4:7: process selector \"s\": no conditions", "p.yaml:5:7: process selector \"s\": YAML merge keys (<<) are not supported"},
			warns: []string{"p.yaml:1:1: warning: base: unknown key"}},
		{name: "aliases resolve", src: "x: &ops [exec]\nprocess:\n  selectors:\n    - name: s\n      operation: *ops\n  responses:\n    - match: [s]\n      actions: [log]\n",
			warns: []string{"p.yaml:1:1: warning: x: unknown key"}},
	})
}

func TestSecurityPolicyNesting(t *testing.T) {
	nested := "data_stream:\n  dataset: cloud_defend.alerts\nsecurity-policy:\n  process:\n    selectors:\n      - name: s\n        operation: [exec]\n    responses:\n      - match: [s]\n        actions: [alert]\n"
	p, warns, err := Parse("p.yaml", []byte(nested))
	if err != nil || len(warns) != 0 {
		t.Fatalf("nested policy: err=%v warns=%v", err, warns)
	}
	if got := p.Selectors(Process); len(got) != 1 || got[0].Name != "s" {
		t.Fatalf("selectors = %+v", got)
	}
	runDiagCases(t, []diagCase{
		{name: "both nested and top-level", src: nested + "file:\n  selectors: []\n",
			errs: []string{"p.yaml:11:1: file: given both here and under security-policy (line 3)"}},
		{name: "nested not a mapping", src: "security-policy: [a]\n",
			errs: []string{"p.yaml:1:18: security-policy: must be a mapping"}},
		{name: "unknown key inside nesting", src: "security-policy:\n  procss: {}\n  process:\n    selectors:\n      - name: s\n        operation: [exec]\n    responses:\n      - match: [s]\n        actions: [alert]\n",
			warns: []string{`p.yaml:2:3: warning: procss: unknown key, ignored; did you mean "process"?`}},
	})
}

func TestSelectorNames(t *testing.T) {
	long := strings.Repeat("a", MaxNameLength)
	runDiagCases(t, []diagCase{
		{name: "128 characters", src: strings.ReplaceAll(fileSel("    - name: "+long+"\n      operation: [createFile]\n"), "[s]", "["+long+"]")},
		{name: "129 characters", src: fileSel("    - name: a" + long + "\n      operation: [createFile]\n"),
			errs: []string{"p.yaml:3:13: file selector #1: name: is 129 characters; at most 128", `unknown selector "s"`}},
		{name: "case-insensitive pattern", src: strings.ReplaceAll(fileSel("    - name: Bin_Dir-2\n      operation: [createFile]\n"), "[s]", "[Bin_Dir-2]")},
		{name: "space", src: fileSel("    - name: a b\n      operation: [createFile]\n"),
			errs: []string{`p.yaml:3:13: file selector #1: name: "a b" is not a valid name`, `unknown selector "s"`}},
		{name: "leading dash", src: fileSel("    - name: -s\n      operation: [createFile]\n"),
			errs: []string{`name: "-s" is not a valid name`, `unknown selector "s"`}},
		{name: "missing name", src: fileSel("    - operation: [createFile]\n"),
			errs: []string{"p.yaml:3:7: file selector #1: name: required", `unknown selector "s"`}},
		{name: "empty name", src: fileSel("    - name: \"\"\n      operation: [createFile]\n"),
			errs: []string{"p.yaml:3:13: file selector #1: name: must be a non-empty string", `unknown selector "s"`}},
		{name: "duplicate in one type", src: fileSel("    - name: s\n      operation: [createFile]\n    - name: s\n      operation: [deleteFile]\n"),
			errs: []string{`p.yaml:5:7: file selector "s": name: duplicate file selector name; first defined at line 3, column 7`}},
		{name: "same name in both types", src: fileSel("    - name: s\n      operation: [createFile]\n") + strings.TrimPrefix(procSel("    - name: s\n      operation: [exec]\n"), "")},
		{name: "selector not a mapping", src: fileSel("    - s\n    - name: s\n      operation: [createFile]\n"),
			errs: []string{"p.yaml:3:7: file selector #1: must be a mapping"}},
	})
}

func TestConditionsRequired(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "name only", src: fileSel("    - name: s\n"),
			errs: []string{`p.yaml:3:7: file selector "s": no conditions: a selector needs at least one condition besides name (file selectors allow: containerImageFullName`}},
		{name: "only a misspelt condition", src: fileSel("    - name: s\n      targetFilepath: [/etc/passwd]\n"),
			errs:  []string{`p.yaml:3:7: file selector "s": no conditions`},
			warns: []string{`p.yaml:4:7: warning: file selector "s": targetFilepath: unknown key, ignored; did you mean "targetFilePath"?`}},
		{name: "only a condition of the other type", src: fileSel("    - name: s\n      processName: [bash]\n"),
			errs:  []string{`no conditions`},
			warns: []string{`p.yaml:4:7: warning: file selector "s": processName: is not a file selector condition and is ignored, which makes this selector match more than it says`}},
		{name: "a false bool is a condition", src: procSel("    - name: s\n      sessionLeaderInteractive: false\n")},
	})
}

func TestExecutableLayer(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "drift layers", src: procSel("    - name: s\n      executableLayer: [added, modified]\n")},
		{name: "no such layer", src: procSel("    - name: s\n      executableLayer: [upper]\n"),
			errs: []string{`p.yaml:4:25: process selector "s": executableLayer: "upper" is not a layer; allowed: image`}},
		{name: "on a file selector", src: fileSel("    - name: s\n      targetFilePath: [/tmp/x]\n      executableLayer: [added]\n"),
			warns: []string{`warning: file selector "s": executableLayer: is not a file selector condition`}},
	})
}

func TestOperations(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "all file operations", src: fileSel("    - name: s\n      operation: [createExecutable, modifyExecutable, createFile, modifyFile, deleteFile]\n")},
		{name: "all process operations", src: procSel("    - name: s\n      operation: [fork, exec]\n")},
		{name: "process op in file selector", src: fileSel("    - name: s\n      operation: [exec]\n"),
			errs: []string{`p.yaml:4:19: file selector "s": operation: "exec" is a process operation; file selectors allow: createExecutable, modifyExecutable, createFile, modifyFile, deleteFile`}},
		{name: "file op in process selector", src: procSel("    - name: s\n      operation: [fork, deleteFile]\n"),
			errs: []string{`p.yaml:4:25: process selector "s": operation: "deleteFile" is a file operation; process selectors allow: fork, exec`}},
		{name: "misspelt", src: procSel("    - name: s\n      operation: [Exec]\n"),
			errs: []string{`unknown operation "Exec" (did you mean "exec"?); process selectors allow: fork, exec`}},
		{name: "wildcard", src: procSel("    - name: s\n      operation: [\"*\"]\n"),
			errs: []string{`unknown operation "*"; process selectors allow: fork, exec`}},
		{name: "scalar", src: procSel("    - name: s\n      operation: exec\n"),
			errs: []string{`p.yaml:4:18: process selector "s": operation: must be a list, e.g. operation: [exec]`}},
		{name: "empty list", src: procSel("    - name: s\n      operation: []\n"),
			errs: []string{`p.yaml:4:18: process selector "s": operation: needs at least one value`}},
		{name: "null", src: procSel("    - name: s\n      operation:\n"),
			errs: []string{`operation: needs at least one value`}},
		{name: "empty string", src: procSel("    - name: s\n      operation: [exec, \"\"]\n"),
			errs: []string{`p.yaml:4:25: process selector "s": operation: empty value`}},
		{name: "null item", src: procSel("    - name: s\n      operation: [exec, ~]\n"),
			errs: []string{`operation: empty value`}},
		{name: "nested list item", src: procSel("    - name: s\n      operation: [[exec]]\n"),
			errs: []string{`operation: list items must be strings`}},
		{name: "duplicate value", src: procSel("    - name: s\n      operation: [exec, exec]\n"),
			warns: []string{`p.yaml:4:25: warning: process selector "s": operation: "exec" is listed twice`}},
	})
}

func TestValueLimits(t *testing.T) {
	v511 := strings.Repeat("n", MaxValueBytes)
	p255 := "/" + strings.Repeat("p", MaxPathBytes-1)
	runDiagCases(t, []diagCase{
		{name: "511 bytes", src: procSel("    - name: s\n      kubernetesNamespace: [" + v511 + "]\n")},
		{name: "512 bytes", src: procSel("    - name: s\n      kubernetesNamespace: [" + v511 + "x]\n"),
			errs: []string{`kubernetesNamespace: value is 512 bytes; at most 511 bytes are allowed`}},
		{name: "511 bytes counted in UTF-8", src: procSel("    - name: s\n      kubernetesClusterName: [" + strings.Repeat("é", 256) + "]\n"),
			errs: []string{`kubernetesClusterName: value is 512 bytes`}},
		{name: "path 255 bytes", src: fileSel("    - name: s\n      targetFilePath: [" + p255 + "]\n")},
		{name: "path 256 bytes", src: fileSel("    - name: s\n      targetFilePath: [" + p255 + "q]\n"),
			errs: []string{`is 256 bytes; paths are at most 255 bytes`}},
		{name: "executable 256 bytes", src: procSel("    - name: s\n      processExecutable: [" + p255 + "q]\n"),
			errs: []string{`processExecutable: "/ppp`}},
		{name: "process name 15 bytes", src: procSel("    - name: s\n      processName: [abcdefghijklmno]\n")},
		{name: "process name 16 bytes", src: procSel("    - name: s\n      processName: [abcdefghijklmnop]\n"),
			errs: []string{`processName: "abcdefghijklmnop" is 16 bytes; the kernel keeps only 15 bytes`}},
		{name: "numbers are their text", src: procSel("    - name: s\n      containerImageTag: [1.20, 3]\n")},
	})
	p, _, err := Parse("p.yaml", []byte(procSel("    - name: s\n      containerImageTag: [1.20]\n")))
	if err != nil || p.Selectors(Process)[0].ContainerImageTag[0] != "1.20" {
		t.Fatalf("unquoted tag 1.20 must keep its text: %v", err)
	}
}

func TestContainerConditions(t *testing.T) {
	ok := []string{"nginx", "my-app", "a.b_c-d", "0x"}
	for _, v := range ok {
		if msg := checkImageName(v); msg != "" {
			t.Errorf("containerImageName %q rejected: %s", v, msg)
		}
	}
	for _, v := range []string{"Nginx", "nginx:latest", "docker.io/nginx", "a__b", "-a", "a-", "a..b"} {
		if checkImageName(v) == "" {
			t.Errorf("containerImageName %q accepted", v)
		}
	}
	for _, v := range []string{"docker.io/nginx", "docker.io/library/nginx", "localhost:5000/app", "[::1]:5000/team/app", "[2001:db8::1]/a", "gcr.io/my-project/my.app", "Registry.Example.COM/x"} {
		if msg := checkImageFullName(v); msg != "" {
			t.Errorf("containerImageFullName %q rejected: %s", v, msg)
		}
	}
	full := map[string]string{
		"docker.io/nginx:latest":       "must not include a tag",
		"docker.io/nginx@sha256:abcd":  "must not include a digest",
		"nginx":                        "must start with a registry host",
		"docker.io/Nginx":              "lowercase path components",
		"docker.io/":                   "lowercase path components",
		"-bad.io/x":                    "registry host",
		"docker.io:port/x":             "registry host",
		"localhost:5000/app:1.0":       "must not include a tag",
		"[::1]:5000/team/app:v1":       "must not include a tag",
		"docker.io//nginx":             "lowercase path components",
		"docker.io/nginx/":             "lowercase path components",
		"host.with_underscore.io/name": "registry host",
	}
	for v, want := range full {
		if msg := checkImageFullName(v); !strings.Contains(msg, want) {
			t.Errorf("containerImageFullName %q: got %q, want %q", v, msg, want)
		}
	}
	for _, v := range []string{"app:nginx", "app:", "app:*", "app:web-*", "example.com/tier:front_1.x", "a.b-c:d"} {
		if msg := checkPodLabel(v); msg != "" {
			t.Errorf("kubernetesPodLabel %q rejected: %s", v, msg)
		}
	}
	labels := map[string]string{
		"app":          "must be key:value",
		"app:w*b":      "* is allowed only at the end of the value",
		"a*:b":         "* is allowed only at the end of the value",
		"a/b/c:d":      "must be key:value where",
		"app:a b":      "must be key:value where",
		":v":           "must be key:value where",
		"app:v:w":      "must be key:value where",
		"example.com/": "must be key:value",
	}
	for v, want := range labels {
		if msg := checkPodLabel(v); !strings.Contains(msg, want) {
			t.Errorf("kubernetesPodLabel %q: got %q, want %q", v, msg, want)
		}
	}
	runDiagCases(t, []diagCase{
		{name: "all container conditions", src: procSel("    - name: s\n      containerImageName: [nginx]\n      containerImageTag: [latest]\n      kubernetesClusterId: [0c9c8c3f-0000-4000-8000-000000000000]\n      kubernetesClusterName: [prod]\n      kubernetesNamespace: [default]\n      kubernetesPodName: [web-*]\n      kubernetesPodLabel: [\"app:web\"]\n")},
		{name: "image name message", src: procSel("    - name: s\n      containerImageName: [nginx:1.25]\n"),
			errs: []string{`p.yaml:4:28: process selector "s": containerImageName: "nginx:1.25" must be an image name without registry or tag`}},
		{name: "full name with tag", src: fileSel("    - name: s\n      containerImageFullName: [docker.io/nginx:1.25]\n"),
			errs: []string{`p.yaml:4:32: file selector "s": containerImageFullName: "docker.io/nginx:1.25" must not include a tag; put the tag in containerImageTag`}},
		{name: "full name and name together", src: fileSel("    - name: s\n      containerImageName: [nginx]\n      containerImageFullName: [docker.io/nginx]\n"),
			errs: []string{`p.yaml:5:7: file selector "s": containerImageFullName: containerImageFullName and containerImageName cannot be combined`}},
		{name: "pod name star in the middle", src: fileSel("    - name: s\n      kubernetesPodName: [web-*-1]\n"),
			errs: []string{`kubernetesPodName: "web-*-1" * is allowed only at the end`}},
		{name: "literal star", src: fileSel("    - name: s\n      kubernetesNamespace: [kube-*]\n"),
			warns: []string{`p.yaml:4:29: warning: file selector "s": kubernetesNamespace: "kube-*": * is matched literally here`}},
		{name: "label message", src: fileSel("    - name: s\n      kubernetesPodLabel: [app]\n"),
			errs: []string{`kubernetesPodLabel: "app" must be key:value`}},
	})
}

func TestPathConditions(t *testing.T) {
	good := []string{"/usr/bin/echo", "/usr/bin/*", "/usr/bin/**", "/*", "/**", "/etc/ld.so.preload", "/a b/c", "/x.y"}
	for _, v := range good {
		if msg := checkPath(v); msg != "" {
			t.Errorf("path %q rejected: %s", v, msg)
		}
	}
	bad := map[string]string{
		"usr/bin":       "must be an absolute path",
		"*":             "must be an absolute path",
		"/":             "the root itself is not a file",
		"/usr/bin/":     "must not end with /",
		"/usr//bin":     "empty components",
		"/usr/*/bin":    "* is allowed only as a final /* (direct children) or /** (any depth)",
		"/usr/bin*":     "* is allowed only as a final",
		"/usr/bin/***":  "* is allowed only as a final",
		"/usr/bin/*.sh": "* is allowed only as a final",
		"/usr/**/bin":   "* is allowed only as a final",
	}
	for v, want := range bad {
		if msg := checkPath(v); !strings.Contains(msg, want) {
			t.Errorf("path %q: got %q, want %q", v, msg, want)
		}
	}
	runDiagCases(t, []diagCase{
		{name: "target message", src: fileSel("    - name: s\n      targetFilePath: [/etc/*/passwd]\n"),
			errs: []string{`p.yaml:4:24: file selector "s": targetFilePath: "/etc/*/passwd" * is allowed only as a final /*`}},
		{name: "executable message", src: procSel("    - name: s\n      processExecutable: [bin/sh]\n"),
			errs: []string{`p.yaml:4:27: process selector "s": processExecutable: "bin/sh" must be an absolute path`}},
		{name: "dot components never match", src: fileSel("    - name: s\n      targetFilePath: [/etc/../root/**]\n"),
			warns: []string{`targetFilePath: "/etc/../root/**" has a . or .. component`}},
		{name: "executable and name", src: procSel("    - name: s\n      processExecutable: [/bin/sh]\n      processName: [sh]\n"),
			warns: []string{`p.yaml:5:7: warning: process selector "s": processName: combined with processExecutable`}},
	})
}

func TestBooleans(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "volume bools", src: fileSel("    - name: s\n      ignoreVolumeMounts: true\n    - name: t\n      ignoreVolumeFiles: true\n")},
		{name: "both ignore true", src: fileSel("    - name: s\n      ignoreVolumeMounts: true\n      ignoreVolumeFiles: true\n"),
			errs: []string{`p.yaml:5:7: file selector "s": ignoreVolumeFiles: cannot be combined with ignoreVolumeMounts`}},
		{name: "both ignore, one false", src: fileSel("    - name: s\n      ignoreVolumeMounts: true\n      ignoreVolumeFiles: false\n")},
		{name: "string bool", src: procSel("    - name: s\n      sessionLeaderInteractive: \"true\"\n"),
			errs: []string{`p.yaml:4:33: process selector "s": sessionLeaderInteractive: must be true or false`}},
		{name: "yes is not a bool", src: fileSel("    - name: s\n      ignoreVolumeMounts: yes\n"),
			errs: []string{`ignoreVolumeMounts: must be true or false`}},
		{name: "list bool", src: fileSel("    - name: s\n      ignoreVolumeMounts: [true]\n"),
			errs: []string{`ignoreVolumeMounts: must be true or false`}},
	})
}

func TestLimits(t *testing.T) {
	build := func(nsel int) string {
		var b strings.Builder
		b.WriteString("process:\n  selectors:\n")
		for i := range nsel {
			fmt.Fprintf(&b, "    - name: s%d\n      operation: [exec]\n", i)
		}
		b.WriteString("  responses:\n    - match: [s0]\n      actions: [log]\n")
		return b.String()
	}
	if errs, _ := diagnose(t, build(63)); len(errs) != 0 {
		t.Fatalf("63 selectors + 1 response rejected: %v", errs)
	}
	errs, _ := diagnose(t, build(64))
	match(t, "error", errs, []string{"p.yaml:1:1: process: has 64 selectors and 1 responses; at most 64 in all are allowed per type"})
	// The limit is per type: 63+1 of each is fine.
	both := build(63) + strings.ReplaceAll(strings.ReplaceAll(build(63), "process:", "file:"), "[exec]", "[createFile]")
	if errs, _ := diagnose(t, both); len(errs) != 0 {
		t.Fatalf("63+1 per type rejected: %v", errs)
	}
}

func TestResponses(t *testing.T) {
	sels := "file:\n  selectors:\n    - name: a\n      operation: [createExecutable]\n    - name: b\n      targetFilePath: [/etc/**]\n"
	resp := func(r string) string { return sels + "  responses:\n" + r }
	runDiagCases(t, []diagCase{
		{name: "valid", src: resp("    - match: [a, b]\n      exclude: [b]\n      actions: [log, alert, block]\n"),
			warns: []string{`p.yaml:9:17: warning: file response #1: exclude: "b" is in both match and exclude`}},
		{name: "missing match", src: resp("    - actions: [log]\n"),
			errs: []string{"p.yaml:8:7: file response #1: match: required"}},
		{name: "missing actions", src: resp("    - match: [a]\n"),
			errs: []string{"p.yaml:8:7: file response #1: actions: required: at least one of log, alert, block"}},
		{name: "empty actions", src: resp("    - match: [a]\n      actions: []\n"),
			errs: []string{"p.yaml:9:16: file response #1: actions: needs at least one value"}},
		{name: "unknown action", src: resp("    - match: [a]\n      actions: [deny]\n"),
			errs: []string{`p.yaml:9:17: file response #1: actions: unknown action "deny"; allowed: log, alert, block`}},
		{name: "block without alert", src: resp("    - match: [a]\n      actions: [block]\n"),
			errs: []string{"p.yaml:9:16: file response #1: actions: block requires alert in the same response"}},
		{name: "block with log only", src: resp("    - match: [a]\n      actions: [log, block]\n"),
			errs: []string{"block requires alert"}},
		{name: "unknown selector", src: resp("    - match: [a, c]\n      actions: [log]\n"),
			errs: []string{`p.yaml:8:18: file response #1: match: unknown selector "c"; file selectors are: a, b`}},
		{name: "unknown exclude", src: resp("    - match: [a]\n      exclude: [z]\n      actions: [log]\n"),
			errs: []string{`p.yaml:9:17: file response #1: exclude: unknown selector "z"`}},
		{name: "empty exclude", src: resp("    - match: [a]\n      exclude: []\n      actions: [log]\n"),
			errs: []string{`file response #1: exclude: needs at least one value`}},
		{name: "cross-type reference", src: resp("    - match: [a, p]\n      actions: [log]\n") + "process:\n  selectors:\n    - name: p\n      operation: [exec]\n  responses:\n    - match: [p]\n      actions: [log]\n",
			errs: []string{`p.yaml:8:18: file response #1: match: "p" is a process selector; a file response can name only file selectors`}},
		{name: "unknown response key", src: resp("    - match: [a]\n      action: [log]\n"),
			errs:  []string{"actions: required"},
			warns: []string{`p.yaml:9:7: warning: file response #1: action: unknown key, ignored; did you mean "actions"?`}},
		{name: "response not a mapping", src: resp("    - a\n"),
			errs: []string{"p.yaml:8:7: file response #1: must be a mapping with match and actions"}},
	})
}

func TestBlockGuards(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "drift prevention needs no path", src: "file:\n  selectors:\n    - name: s\n      operation: [createExecutable, modifyExecutable]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n"},
		{name: "write ops without path", src: "file:\n  selectors:\n    - name: s\n      operation: [createFile, modifyExecutable]\n      containerImageName: [nginx]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n",
			errs: []string{`p.yaml:7:15: file response #1: match: selector "s" covers createFile without targetFilePath, so this response would block every such write in a container`}},
		{name: "no operation covers writes", src: "file:\n  selectors:\n    - name: s\n      containerImageName: [nginx]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n",
			errs: []string{`selector "s" covers createFile, modifyFile, deleteFile without targetFilePath`}},
		{name: "path on the selector", src: "file:\n  selectors:\n    - name: s\n      operation: [modifyFile]\n      targetFilePath: [/etc/passwd]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n"},
		{name: "path on an exclude", src: "file:\n  selectors:\n    - name: s\n      operation: [deleteFile]\n    - name: tmp\n      targetFilePath: [/tmp/**]\n  responses:\n    - match: [s]\n      exclude: [tmp]\n      actions: [alert, block]\n"},
		{name: "exclude without path does not help", src: "file:\n  selectors:\n    - name: s\n      operation: [deleteFile]\n    - name: n\n      containerImageName: [nginx]\n  responses:\n    - match: [s]\n      exclude: [n]\n      actions: [alert, block]\n",
			errs: []string{`selector "s" covers deleteFile without targetFilePath`}},
		{name: "alert without block needs no path", src: "file:\n  selectors:\n    - name: s\n      operation: [deleteFile]\n  responses:\n    - match: [s]\n      actions: [alert]\n"},
		{name: "broad root block", src: "file:\n  selectors:\n    - name: s\n      operation: [modifyFile]\n      targetFilePath: [/**]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n",
			warns: []string{`p.yaml:5:24: warning: file selector "s": targetFilePath: "/**" with block stops modifyFile for every file under /`}},
		{name: "root children block", src: "file:\n  selectors:\n    - name: s\n      operation: [createFile]\n      targetFilePath: [/*]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n",
			warns: []string{`targetFilePath: "/*" with block stops createFile for every file under /`}},
		{name: "a directory is not broad", src: "file:\n  selectors:\n    - name: s\n      operation: [modifyFile]\n      targetFilePath: [/etc/**]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n"},
		{name: "block every exec", src: "process:\n  selectors:\n    - name: s\n      operation: [exec]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n",
			warns: []string{`p.yaml:6:15: warning: process response #1: match: selector "s" has no condition but its operations, so this response blocks every exec in every container`}},
		{name: "scoped process block", src: "process:\n  selectors:\n    - name: s\n      operation: [exec]\n      processName: [nc]\n  responses:\n    - match: [s]\n      actions: [alert, block]\n"},
	})
}

func TestLegacyKeys(t *testing.T) {
	runDiagCases(t, []diagCase{
		{name: "orchestrator conditions", src: fileSel("    - name: s\n      orchestratorNamespace: [default]\n      orchestratorResourceLabel: [\"app:web\"]\n      orchestratorResourceName: [web-*]\n      orchestratorClusterId: [abc]\n      orchestratorClusterName: [prod]\n      orchestratorType: [kubernetes]\n"),
			warns: []string{
				`p.yaml:4:7: warning: file selector "s": orchestratorNamespace: deprecated first-version condition; use kubernetesNamespace`,
				`orchestratorResourceLabel: deprecated first-version condition; use kubernetesPodLabel`,
				`orchestratorResourceName: deprecated first-version condition; use kubernetesPodName`,
				`orchestratorClusterId: deprecated first-version condition; use kubernetesClusterId`,
				`orchestratorClusterName: deprecated first-version condition; use kubernetesClusterName`,
				`orchestratorType: deprecated first-version condition with no replacement`,
			}},
		{name: "old and new name together", src: fileSel("    - name: s\n      kubernetesNamespace: [a]\n      orchestratorNamespace: [b]\n"),
			errs:  []string{`p.yaml:5:7: file selector "s": kubernetesNamespace: given twice in one selector (also at line 4`},
			warns: []string{`orchestratorNamespace: deprecated`}},
		{name: "orchestrator type value", src: fileSel("    - name: s\n      orchestratorType: [nomad]\n"),
			errs:  []string{`orchestratorType: "nomad" the only supported orchestrator is kubernetes`},
			warns: []string{`orchestratorType: deprecated`}},
		{name: "execMemFd", src: procSel("    - name: s\n      operation: [execMemFd]\n"),
			warns: []string{`p.yaml:4:19: warning: process selector "s": operation: execMemFd is a deprecated first-version operation; use exec`}},
		{name: "top-level selectors and responses", src: "selectors:\n  - name: exe\n    operation: [createExecutable]\n  - name: sh\n    operation: [exec]\n    processName: [sh]\nresponses:\n  - match: [exe]\n    actions: [alert]\n  - match: [sh]\n    actions: [log]\n",
			warns: []string{"p.yaml:1:1: warning: selectors: top-level selectors are from the first policy version and deprecated: move them under file: or process:", "p.yaml:7:1: warning: responses: top-level responses"}},
		{name: "top-level response naming nothing", src: "selectors:\n  - name: exe\n    operation: [createExecutable]\nresponses:\n  - match: [exe]\n    actions: [alert]\n  - match: [nope]\n    actions: [alert]\n",
			errs:  []string{"p.yaml:7:5: response #2: match: cannot tell whether this top-level response is for files or processes"},
			warns: []string{"selectors: top-level", "responses: top-level"}},
		{name: "top-level mixed selector", src: "selectors:\n  - name: x\n    operation: [exec, createFile]\nresponses:\n  - match: [x]\n    actions: [alert]\n",
			errs:  []string{"p.yaml:2:5: operation: mixes file and process operations", `p.yaml:3:23: process selector "x": operation: "createFile" is a file operation`},
			warns: []string{"selectors: top-level", "responses: top-level"}},
	})
	p, _, err := Parse("p.yaml", []byte("selectors:\n  - name: exe\n    operation: [createExecutable]\n  - name: sh\n    operation: [exec]\nresponses:\n  - match: [exe]\n    actions: [alert]\n  - match: [sh]\n    actions: [log]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f, pr := p.Selectors(File), p.Selectors(Process); len(f) != 1 || f[0].Name != "exe" || len(pr) != 1 || pr[0].Name != "sh" {
		t.Fatalf("legacy selectors placed as file=%v process=%v", f, pr)
	}
	if d := p.Evaluate(&Operation{Op: OpExec}); d.Actions != ActionLog {
		t.Fatalf("legacy process response: actions %v", d.Actions)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	src := `file:
  selectors:
    - name: a
      operation: [createFile]
      targetFilePath: [etc]
    - name: b
      containerImageName: [Nginx]
  responses:
    - match: [a, b, c]
      actions: [block]
`
	_, _, err := Parse("p.yaml", []byte(src))
	want := `p.yaml:5:24: file selector "a": targetFilePath: "etc" must be an absolute path (start with /)
p.yaml:7:28: file selector "b": containerImageName: "Nginx" must be an image name without registry or tag, lowercase letters and digits separated by single '.', '_' or '-' (e.g. nginx); use containerImageFullName for registry/path
p.yaml:9:21: file response #1: match: unknown selector "c"; file selectors are: a, b
p.yaml:10:16: file response #1: actions: block requires alert in the same response, so every blocked operation is reported`
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestDefaultPolicy(t *testing.T) {
	p, warns, err := Parse(DefaultName, DefaultYAML)
	if err != nil || len(warns) != 0 {
		t.Fatalf("default policy: err=%v warnings=%v", err, warns)
	}
	d := p.Evaluate(&Operation{Op: OpExec, ProcessExecutable: "/bin/sh"})
	if d.Actions != ActionLog || fmt.Sprint(p.MatchedSelectors(d)) != "[allProcesses]" {
		t.Errorf("exec: %v %v", d.Actions, p.MatchedSelectors(d))
	}
	d = p.Evaluate(&Operation{Op: OpCreateExecutable, TargetPath: "/usr/local/bin/x"})
	if d.Actions != ActionAlert || fmt.Sprint(p.MatchedSelectors(d)) != "[executableChanges]" {
		t.Errorf("createExecutable: %v %v", d.Actions, p.MatchedSelectors(d))
	}
	if d := p.Evaluate(&Operation{Op: OpModifyFile, TargetPath: "/etc/passwd"}); d.Actions != 0 {
		t.Errorf("ordinary write: %v", d.Actions)
	}
	if p.Blocks(File) || p.Blocks(Process) {
		t.Error("default policy must not block")
	}
}
