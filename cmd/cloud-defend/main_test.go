package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloud-defend/cloud-defend/policy"
)

const validPolicy = `file:
  selectors:
    - name: binDirExeMods
      operation: [createExecutable, modifyExecutable]
      targetFilePath: [/usr/bin/**]
    - name: nginx
      containerImageName: [nginx]
  responses:
    - match: [binDirExeMods]
      exclude: [nginx]
      actions: [alert, block]
`

const warnPolicy = `file:
  selectors:
    - name: s
      operation: [createFile]
      targetFilepath: [/etc/passwd]
  responses:
    - match: [s]
      actions: [alert]
`

const invalidPolicy = `process:
  selectors:
    - name: s
      operation: [exec]
      processName: [a-very-long-process-name]
  responses:
    - match: [s, t]
      actions: [block]
`

func writeFiles(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runCLI(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	dir := writeFiles(t, map[string]string{"ok.yaml": validPolicy, "warn.yaml": warnPolicy, "bad.yaml": invalidPolicy,
		"tab.yaml": "file:\n  selectors:\n\t- name: s\n", "bracket.yaml": "file:\n  selectors:\n    - name: s\n      operation: [createFile\n"})
	ok, warn, bad := filepath.Join(dir, "ok.yaml"), filepath.Join(dir, "warn.yaml"), filepath.Join(dir, "bad.yaml")

	code, out, errs := runCLI("", "policy", "validate", ok)
	if code != exitOK || out != ok+": valid\n" || errs != "" {
		t.Errorf("valid: code %d stdout %q stderr %q", code, out, errs)
	}

	code, out, errs = runCLI("", "policy", "validate", warn)
	if code != exitOK || !strings.Contains(errs, warn+`:5:7: warning: file selector "s": targetFilepath: unknown key, ignored; did you mean "targetFilePath"?`) {
		t.Errorf("warnings: code %d stdout %q stderr %q", code, out, errs)
	}

	code, out, errs = runCLI("", "policy", "validate", bad)
	want := bad + `:5:21: process selector "s": processName: "a-very-long-process-name" is 24 bytes; the kernel keeps only 15 bytes of a process name (comm), so this can never match
` + bad + `:7:18: process response #1: match: unknown selector "t"; process selectors are: s
` + bad + `:8:16: process response #1: actions: block requires alert in the same response, so every blocked operation is reported
`
	if code != exitInvalid || out != "" || errs != want {
		t.Errorf("invalid: code %d stdout %q stderr:\n%s\nwant:\n%s", code, out, errs, want)
	}

	// YAML syntax errors are located like the others, FILE:LINE:COL.
	tab, bracket := filepath.Join(dir, "tab.yaml"), filepath.Join(dir, "bracket.yaml")
	code, out, errs = runCLI("", "policy", "validate", tab, bracket)
	want = tab + `:3:1: invalid YAML: found a tab character that cannot start any token: indent with spaces, and separate a value from its key or '-' with spaces
` + bracket + `:4:18: invalid YAML: did not find expected ',' or ']': the list opened here is not closed, or its items are not separated by commas
`
	if code != exitInvalid || out != "" || errs != want {
		t.Errorf("syntax errors: code %d stdout %q stderr:\n%s\nwant:\n%s", code, out, errs, want)
	}

	// Several files: the worst result decides the exit code.
	if code, _, _ := runCLI("", "policy", "validate", ok, bad, warn); code != exitInvalid {
		t.Errorf("mixed files: code %d", code)
	}
	code, _, errs = runCLI("", "policy", "validate", ok, filepath.Join(dir, "missing.yaml"))
	if code != exitUsage || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: code %d stderr %q", code, errs)
	}

	code, out, _ = runCLI(validPolicy, "policy", "validate", "-")
	if code != exitOK || out != "-: valid\n" {
		t.Errorf("stdin: code %d stdout %q", code, out)
	}
}

func TestValidateJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"warn.yaml": warnPolicy, "bad.yaml": invalidPolicy})
	code, out, errs := runCLI("", "policy", "validate", "--format", "json", filepath.Join(dir, "warn.yaml"), filepath.Join(dir, "bad.yaml"), filepath.Join(dir, "none.yaml"))
	if code != exitUsage || errs != "" {
		t.Fatalf("code %d stderr %q", code, errs)
	}
	var reports []fileReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(reports) != 3 || !reports[0].Valid || reports[1].Valid || reports[2].Valid || reports[2].ReadError == "" {
		t.Fatalf("reports: %+v", reports)
	}
	d := reports[1].Diagnostics[0]
	if d.Line != 5 || d.Column != 21 || d.Type != "process" || d.Selector != "s" || d.Field != "processName" || d.Severity != policy.SeverityError ||
		!strings.HasPrefix(d.Path, "process.selectors[name=s].processName") {
		t.Errorf("first diagnostic: %+v", d)
	}
	if !strings.Contains(out, `"severity": "warning"`) || !strings.Contains(out, `"severity": "error"`) {
		t.Errorf("severities are not spelled out:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"policy"},
		{"policy", "bogus"},
		{"policy", "validate"},
		{"policy", "validate", "--format", "xml", "x"},
		{"policy", "validate", "--nope"},
		{"policy", "default", "extra"},
		{"policy", "explain"},
		{"policy", "explain", "--default", "file"},
	} {
		if code, _, errs := runCLI("", args...); code != exitUsage || errs == "" {
			t.Errorf("%q: code %d stderr %q", args, code, errs)
		}
	}
}

func TestDefaultAndExplain(t *testing.T) {
	code, out, _ := runCLI("", "policy", "default")
	if code != exitOK || out != string(policy.DefaultYAML) {
		t.Fatalf("default: code %d\n%s", code, out)
	}
	// The printed default validates.
	if code, _, errs := runCLI(out, "policy", "validate", "-"); code != exitOK {
		t.Fatalf("default does not validate: %s", errs)
	}
	code, out, _ = runCLI("", "policy", "explain", "--default")
	for _, want := range []string{
		"policy default policy",
		"process: 1 selectors, 1 responses, detects only",
		"selector allProcesses: operation in (fork, exec)",
		"IF (allProcesses) THEN log",
		"file: 1 selectors, 1 responses, detects only",
		"IF (executableChanges) THEN alert",
	} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("explain --default lacks %q:\n%s", want, out)
		}
	}
	dir := writeFiles(t, map[string]string{"ok.yaml": validPolicy, "bad.yaml": invalidPolicy})
	code, out, _ = runCLI("", "policy", "explain", filepath.Join(dir, "ok.yaml"))
	if code != exitOK || !strings.Contains(out, "IF (binDirExeMods) AND NOT (nginx) THEN alert, block") || !strings.Contains(out, "can block") {
		t.Errorf("explain: code %d\n%s", code, out)
	}
	if code, _, errs := runCLI("", "policy", "explain", filepath.Join(dir, "bad.yaml")); code != exitInvalid || !strings.Contains(errs, "block requires alert") {
		t.Errorf("explain of an invalid policy: code %d %s", code, errs)
	}
}

// TestBinary runs the built command, so exit codes and streams are the real ones.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := daemonBinary(t)
	dir := writeFiles(t, map[string]string{"bad.yaml": invalidPolicy})
	cmd := exec.Command(bin, "policy", "validate", filepath.Join(dir, "bad.yaml"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if exitCode(err) != exitInvalid || !strings.Contains(stderr.String(), "block requires alert") {
		t.Errorf("invalid policy: %v %s", err, stderr.String())
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "cloud-defend ") {
		t.Errorf("version: %v %q", err, out)
	}
}

// TestDoctor runs the node check here, where BPF LSM programs cannot load: it must
// say that detection works and blocking does not, why, and how to fix it.
func TestDoctor(t *testing.T) {
	needRoot(t, "doctor loads BPF programs")
	var stdout, stderr bytes.Buffer
	code := run([]string{"doctor"}, strings.NewReader(""), &stdout, &stderr)
	out := stdout.String()
	t.Log("\n" + out)
	for _, want := range []string{"[OK  ] kernel BTF", "[OK  ] capability CAP_BPF", "[OK  ] process telemetry", "cgroup v2 mounted at"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q", want)
		}
	}
	lsm, _ := os.ReadFile("/sys/kernel/security/lsm")
	if code == exitOK {
		t.Logf("this kernel blocks (lsm=%s)", lsm)
		if !strings.Contains(out, "[OK  ] BPF LSM programs load and attach: blocking works") {
			t.Error("exit 0 without saying blocking works")
		}
		return
	}
	if code != exitInvalid || !strings.Contains(out, "[FAIL] blocking is unavailable: ") || !strings.Contains(out, "verdict: this node can detect but not block") {
		t.Errorf("exit %d; want 1 with the reason blocking is off", code)
	}
}
