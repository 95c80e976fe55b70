package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/proto"
	"gopkg.in/yaml.v3"

	"github.com/cloud-defend/cloud-defend/internal/agenttest"
	"github.com/cloud-defend/cloud-defend/output/estest"
)

// TestAgentManaged drives the real binary as Elastic Agent does: a stub agent
// (TLS, client certificates, token) writes StartUpInfo to its stdin and sends an
// Elasticsearch output unit and an input unit with a policy; container activity
// then lands in the test Elasticsearch with the policy's id and revision. An
// invalid revision fails the unit and leaves the old policy in force; a valid one
// heals it; STOPPED ends the process cleanly with nothing left unsent.
func TestAgentManaged(t *testing.T) {
	h := startAgentManaged(t)
	es, agent, cmd, logDone := h.es, h.agent, h.cmd, h.logDone

	policyFor := func(selector string) string {
		return "process:\n  selectors:\n    - name: " + selector + "\n      operation: [exec]\n      processName: [true]\n  responses:\n    - match: [" + selector + "]\n      actions: [alert]\n"
	}
	input := func(rev uint64, pol string) *proto.UnitExpectedConfig { return inputUnit(t, rev, pol) }
	h.configureOutput()
	agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, input(1, policyFor("trueRuns")))

	// This host cannot block (no BPF LSM): the unit says so, with the policy in force.
	msg := agent.Wait(t, inputID, proto.State_DEGRADED, "policy revision 1 in force (sha256:", 30*time.Second)
	if !regexp.MustCompile(`^policy revision 1 in force \(sha256:[0-9a-f]{8}, applied [0-9T:-]+Z\); blocking is unavailable: `).MatchString(msg) {
		t.Errorf("DEGRADED message %q", msg)
	}
	t.Logf("input unit: %s", msg)
	agent.Wait(t, outputID, proto.State_HEALTHY, "", 10*time.Second)

	// A container exec the policy selects becomes an alert in the alerts stream.
	const stream = "logs-cloud_defend.alerts-e2e"
	alertFor := func(selector string, rev float64) map[string]any {
		t.Helper()
		ctr := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/true")
		if out, err := ctr.CombinedOutput(); err != nil {
			t.Fatalf("container: %v %s", err, out)
		}
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			for _, d := range es.Docs(stream) {
				cd, _ := d["cloud_defend"].(map[string]any)
				proc, _ := d["process"].(map[string]any)
				parent, _ := proc["parent"].(map[string]any)
				sel, _ := json.Marshal(cd["matched_selectors"])
				if parent["pid"] == float64(ctr.Process.Pid) && string(sel) == `["`+selector+`"]` {
					if cd["package_policy_id"] != "pp-e2e" || cd["package_policy_revision"] != rev {
						t.Errorf("alert stamped %v revision %v, want pp-e2e revision %v", cd["package_policy_id"], cd["package_policy_revision"], rev)
					}
					return d
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		// What did come: each alert's selectors and parent, and summaries.
		var seen []string
		for _, d := range es.Docs(stream) {
			cd, _ := d["cloud_defend"].(map[string]any)
			proc, _ := d["process"].(map[string]any)
			parent, _ := proc["parent"].(map[string]any)
			seen = append(seen, fmt.Sprintf("%v by parent %v: %v", cd["matched_selectors"], parent["pid"], d["message"]))
		}
		t.Fatalf("no alert for selector %s with parent %d in %s within 15 s (streams: %v); its alerts:\n%s", selector, ctr.Process.Pid, stream, es.Streams(), strings.Join(seen, "\n"))
		return nil
	}
	d := alertFor("trueRuns", 1)
	if ev := d["event"].(map[string]any); ev["kind"] != "alert" || ev["module"] != "cloud_defend" || d["message"] == nil {
		t.Errorf("alert document %v", d)
	}

	// An invalid revision: FAILED with the errors; revision 1 still decides.
	agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, input(2, strings.Replace(policyFor("x"), "match: [x]", "match: [nope]", 1)))
	msg = agent.Wait(t, inputID, proto.State_FAILED, "refused", 10*time.Second)
	t.Logf("input unit: %s", msg)
	if !regexp.MustCompile(`^policy revision 2 \(sha256:[0-9a-f]{8}\) refused; revision 1 \(sha256:[0-9a-f]{8}, applied [0-9T:-]+Z\) stays in force:\n`).MatchString(msg) ||
		!strings.Contains(msg, "\nprocess.responses[0].match[0]: unknown selector \"nope\"") {
		t.Errorf("FAILED message: %s", msg)
	}
	alertFor("trueRuns", 1)

	// A valid revision heals the unit and takes over.
	agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, input(3, policyFor("trueAgain")))
	agent.Wait(t, inputID, proto.State_DEGRADED, "policy revision 3 in force", 10*time.Second)
	alertFor("trueAgain", 3)

	// Stop: every unit STOPPED, then a clean exit with nothing left in the spool.
	agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_STOPPED, proto.UnitLogLevel_INFO, nil)
	agent.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_STOPPED, proto.UnitLogLevel_INFO, nil)
	done := make(chan error, 1)
	go func() { <-logDone; done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after every unit stopped")
	}
	if st := agent.States(inputID); st[len(st)-1] != proto.State_STOPPED {
		t.Errorf("input states %v", st)
	}
	if agent.BadTokens() != 0 {
		t.Errorf("%d check-ins with a wrong token", agent.BadTokens())
	}
	// Logs are ECS NDJSON.
	h.logMu.Lock()
	defer h.logMu.Unlock()
	for _, l := range h.logs {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["@timestamp"] == nil || m["log.level"] == nil || m["message"] == nil {
			t.Errorf("log line is not ECS JSON: %s", l)
			break
		}
	}
}

func yamlUnmarshal(s string, v any) error { return yaml.Unmarshal([]byte(s), v) }

const inputID, outputID = "cloud_defend/control-default-cloud_defend-e2e", "default"

// agentHarness is the real binary started by a stub agent (TLS), with the
// test Elasticsearch for its output.
type agentHarness struct {
	t       *testing.T
	es      *estest.Server
	agent   *agenttest.Agent
	cmd     *exec.Cmd
	logMu   sync.Mutex
	logs    []string
	logDone chan struct{}
}

// startAgentManaged starts the binary; env entries (KEY=value) are added to
// its environment.
func startAgentManaged(t *testing.T, env ...string) *agentHarness {
	t.Helper()
	needRoot(t, "loads BPF programs")
	dir := t.TempDir()
	bin := daemonBinary(t)
	es, err := estest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Close)
	es.SetAPIKey("e2e-id:e2e-secret")
	agent := agenttest.New(t, true)
	info, err := agent.StartUpInfo()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--agent-managed", "-E", "path.data="+filepath.Join(dir, "data"), "-E", "management.enabled=true")
	cmd.Stdin = bytes.NewReader(info)
	cmd.Env = append(os.Environ(), append([]string{"AGENT_COMPONENT_ID=cloud-defend-default", "AGENT_COMPONENT_TYPE=cloud-defend"}, env...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &agentHarness{t: t, es: es, agent: agent, cmd: cmd, logDone: make(chan struct{})}
	go func() {
		defer close(h.logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			h.logMu.Lock()
			h.logs = append(h.logs, sc.Text())
			h.logMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		h.logMu.Lock()
		for _, l := range h.logs {
			t.Log(l)
		}
		h.logMu.Unlock()
	})
	return h
}

func (h *agentHarness) configureOutput() {
	h.agent.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO,
		agenttest.Config(h.t, "elasticsearch", 1, map[string]any{"type": "elasticsearch", "hosts": []any{h.es.URL()}, "api_key": "e2e-id:e2e-secret"}))
}

// inputUnit is the input unit Fleet sends: the policy at the alerts stream's
// root.
func inputUnit(t *testing.T, rev uint64, pol string) *proto.UnitExpectedConfig {
	var doc map[string]any
	if err := yamlUnmarshal(pol, &doc); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]any{"id": "alerts", "data_stream": map[string]any{"dataset": "cloud_defend.alerts", "type": "logs"}}
	for k, v := range doc {
		alerts[k] = v
	}
	return agenttest.Config(t, "cloud_defend/control", rev, map[string]any{"id": "cloud_defend-e2e", "package_policy_id": "pp-e2e",
		"data_stream": map[string]any{"namespace": "e2e"}}, alerts)
}
