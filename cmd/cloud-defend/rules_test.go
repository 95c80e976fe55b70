package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/ruletest"
)

// TestDetectionRules performs, in a real podman container, the actions that
// Elastic's prebuilt Defend for Containers rules look for, and evaluates each
// rule's query (from ../shared/contract/detection-rules) on the documents the
// real binary shipped: each rule must fire on its scenario, and none of them
// on a benign command.
func TestDetectionRules(t *testing.T) {
	// Log every exec; alert on cat (for the Container Workload Protection
	// rule). comm is what processName sees: busybox's shell runs its applets
	// through /proc/self/exe (comm "exe"), so the alert is for cat exec'd by
	// podman directly.
	h := startPodman(t, `process:
  selectors:
    - name: allExecs
      operation: [exec]
    - name: cat
      operation: [exec]
      processName: [cat]
  responses:
    - match: [allExecs]
      actions: [log]
    - match: [cat]
      actions: [alert]
`)
	dir := "../../../shared/contract/detection-rules/integrations_cloud_defend/"
	scenarios := []struct {
		rule   string
		cmd    []string
		marker string // an argument only this scenario's documents carry
	}{
		{"execution_interactive_exec_to_container.toml", []string{"/bin/sh", "-c", "exit 0"}, "exit 0"},
		// The rule is a sequence: the decoder's exec must come first. In a bare
		// `base64 -d | sh` the two execs race (as they do for Elastic's own
		// sensor), so the shell starts a moment later.
		{"defense_evasion_decoded_payload_piped_to_interpreter.toml", []string{"/bin/sh", "-c", "echo ZWNobyBoaQo= | base64 -d | (sleep 0.3; exec sh)"}, "-d"},
		{"privilege_escalation_nsenter_execution_inside_container.toml", []string{"/bin/sh", "-c", "nsenter -t 1 -m -- true; exit 0"}, "-t"},
		{"credential_access_service_account_token_or_cert_read.toml", []string{"cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"}, "/var/run/secrets/kubernetes.io/serviceaccount/token"},
		{"execution_suspicious_file_made_executable_via_chmod_inside_a_container.toml", []string{"/bin/sh", "-c", "touch /tmp/x; /bin/chmod +x /tmp/x"}, "+x"},
		{"execution_interactive_shell_spawned_from_inside_a_container.toml", []string{"/bin/sh", "-c", "/bin/sh -i -c true </dev/null; exit 0"}, "-i"},
		{"container_workload_protection.toml", nil, "/var/run/secrets/kubernetes.io/serviceaccount/token"}, // the cat alert
	}
	for _, s := range scenarios {
		if s.cmd != nil {
			h.podman(append([]string{"exec", "cdt"}, s.cmd...)...)
		}
	}
	h.podman("exec", "cdt", "/bin/cat", "/etc/motd") // benign

	// Wait until the last (benign) exec's document is in.
	var docs []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		docs = append(h.es.Docs("logs-cloud_defend.process-ctr"), h.es.Docs("logs-cloud_defend.alerts-ctr")...)
		if hasArgs(docs, "/bin/cat /etc/motd") && len(h.es.Docs("logs-cloud_defend.alerts-ctr")) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var benign []map[string]any
	for _, d := range docs {
		if joinArgs(d) == "/bin/cat /etc/motd" {
			benign = append(benign, d)
		}
	}
	if len(benign) == 0 {
		t.Fatalf("no document for the benign command among %d", len(docs))
	}
	covered := 0
	for _, s := range scenarios {
		r, err := ruletest.Load(filepath.Join(dir, s.rule))
		if err != nil {
			t.Errorf("%s: %v", s.rule, err)
			continue
		}
		if len(r.Index) == 0 {
			t.Errorf("%s: no index patterns", s.rule)
		}
		var read []map[string]any // what the rule's index patterns cover
		for _, stream := range h.es.Streams() {
			if r.Reads(stream) {
				read = append(read, h.es.Docs(stream)...)
			}
		}
		matched, ok := r.Query.Match(read)
		if !ok {
			t.Errorf("rule %q did not fire on its scenario %q", r.Name, s.cmd)
			continue
		}
		if s.marker != "" && !strings.Contains(argsOf(matched), s.marker) {
			t.Errorf("rule %q fired, but on other documents: %s", r.Name, argsOf(matched))
			continue
		}
		if r.Name != "Exec Into Container Detected via Defend for Containers" && r.Name != "Container Workload Protection" {
			if m, fired := r.Query.Match(benign); fired {
				t.Errorf("rule %q fired on the benign command: %s", r.Name, argsOf(m))
			}
		}
		covered++
		t.Logf("rule fired: %s (%s)", r.Name, s.rule)
	}
	if t.Failed() {
		for _, d := range docs {
			t.Logf("doc: %v %s parent %v", field(d, "event.kind"), joinArgs(d), field(d, "process.parent.args"))
		}
	}
	t.Logf("%d of %d rules shown to fire on documents from real actions", covered, len(scenarios))
}

func joinArgs(d map[string]any) string {
	a, _ := field(d, "process.args").([]any)
	var s []string
	for _, x := range a {
		s = append(s, x.(string))
	}
	return strings.Join(s, " ")
}

func hasArgs(docs []map[string]any, args string) bool {
	for _, d := range docs {
		if joinArgs(d) == args {
			return true
		}
	}
	return false
}

func argsOf(docs []ruletest.Doc) string {
	var out []string
	for _, d := range docs {
		b, _ := json.Marshal(field(d, "process.args"))
		out = append(out, string(b))
	}
	return strings.Join(out, " then ")
}
