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
	rules := ruletest.ContractDir(t, "integrations_cloud_defend") // before podman starts: skipped without it
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
	dir := rules + "/"
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

// TestFileRulesWithoutLSM: on this host BPF LSM cannot load, so file
// operations are seen at their syscalls' exits and judged in user space. The
// file scenarios of Elastic's D4C rules, performed as root in a real podman
// container, must produce file documents (on the stream the rules' index
// patterns read) that the rules' own queries match.
func TestFileRulesWithoutLSM(t *testing.T) {
	rules := ruletest.ContractDir(t, "integrations_cloud_defend") // before podman starts: skipped without it
	h := startPodman(t, `process:
  selectors:
    - name: allExecs
      operation: [exec]
  responses:
    - match: [allExecs]
      actions: [log]
file:
  selectors:
    - name: watched
      operation: [createFile, modifyFile, deleteFile, createExecutable, modifyExecutable]
      targetFilePath: [/etc/**, /root/**, /usr/local/bin/**, /tmp/**]
  responses:
    - match: [watched]
      actions: [log]
`)
	dir := rules + "/"
	scenarios := []struct {
		rule   string
		script string
		path   string // the file the matching document names
	}{
		// A binary dropped into a system location by a program run from /tmp.
		{"execution_interactive_file_creation_in_system_binary_locations.toml",
			"mkdir -p /tmp/dl && cp /bin/busybox /tmp/dl/busybox && mkdir -p /usr/local/bin && /tmp/dl/busybox cp /bin/busybox /usr/local/bin/kit", "/usr/local/bin/kit"},
		{"defense_evasion_ld_preload_shared_object_modified_inside_a_container.toml", "echo /tmp/evil.so > /etc/ld.so.preload", "/etc/ld.so.preload"},
		{"persistence_modification_of_persistence_relevant_files.toml",
			"mkdir -p /etc/cron.d && echo '* * * * * root /tmp/dl/busybox' > /etc/cron.d/job", "/etc/cron.d/job"},
		{"persistence_ssh_authorized_keys_modification_inside_a_container.toml",
			"mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAA attacker' >> /root/.ssh/authorized_keys", "/root/.ssh/authorized_keys"},
		// Written twice: the second open is of an existing file (action open,
		// type change), as an escape writes a cgroup's release_agent. This
		// container's cgroup file system is read-only, so the file is one of
		// its own with that name.
		{"privilege_escalation_potential_container_escape_via_modified_release_agent_file.toml",
			"echo > /tmp/release_agent && echo /tmp/payload > /tmp/release_agent", "/tmp/release_agent"},
		// Download, execute, delete: the shell that writes the file carries
		// "wget" in its args, as the rule's subprocess form expects.
		{"defense_evasion_file_creation_execution_deletion_cradle.toml",
			"sh -c 'cat /bin/busybox > /tmp/dropper; chmod +x /tmp/dropper; /tmp/dropper true; rm -f /tmp/dropper' wget", "/tmp/dropper"},
	}
	for _, s := range scenarios {
		h.podman("exec", "--user", "0", "cdt", "/bin/sh", "-c", s.script)
	}
	h.podman("exec", "--user", "0", "cdt", "/bin/sh", "-c", "echo done > /tmp/last")
	read := func(r *ruletest.Rule) []map[string]any {
		var docs []map[string]any
		for _, stream := range h.es.Streams() {
			if r.Reads(stream) {
				docs = append(docs, h.es.Docs(stream)...)
			}
		}
		return docs
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		found := false
		for _, d := range h.es.Docs("logs-cloud_defend.file-ctr") {
			if field(d, "file.path") == "/tmp/last" {
				found = true
			}
		}
		if found {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	files := h.es.Docs("logs-cloud_defend.file-ctr")
	if len(files) == 0 {
		t.Fatalf("no file documents; streams %v", h.es.Streams())
	}
	for _, s := range scenarios {
		r, err := ruletest.Load(filepath.Join(dir, s.rule))
		if err != nil {
			t.Errorf("%s: %v", s.rule, err)
			continue
		}
		m, ok := r.Query.Match(read(r))
		if !ok {
			t.Errorf("rule %q did not fire on %q", r.Name, s.script)
			continue
		}
		named := false
		for _, d := range m {
			if field(d, "file.path") == s.path {
				named = true
			}
		}
		if !named {
			t.Errorf("rule %q fired, but not on %s", r.Name, s.path)
			continue
		}
		t.Logf("rule fired: %s (%s)", r.Name, s.rule)
	}
	if t.Failed() {
		for _, d := range files {
			t.Logf("file doc: %v %v %v %v by %v %v", field(d, "event.action"), field(d, "event.type"), field(d, "file.path"), field(d, "cloud_defend.hook_point"), field(d, "process.name"), joinArgs(d))
		}
	}
	for _, d := range files {
		if field(d, "cloud_defend.detected_in_user_space") != true || field(d, "cloud_defend.blocked") != false || field(d, "container.id") != h.id {
			t.Errorf("file document %v: user space %v blocked %v container %v", field(d, "file.path"), field(d, "cloud_defend.detected_in_user_space"), field(d, "cloud_defend.blocked"), field(d, "container.id"))
			break
		}
	}
}
