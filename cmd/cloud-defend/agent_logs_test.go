package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/proto"
	"go.uber.org/zap/zapcore"

	"github.com/cloud-defend/cloud-defend/output/estest"
)

// agentLevel is the level Elastic Agent files one line of a component's stderr
// under, as its log writer (pkg/component/runtime/log_writer.go) decides: the
// line is decoded as JSON and the level read from "log.level", else a nested
// log.level, else "level"; a line that is not JSON, or names no level it
// knows, is filed at a default level the component does not control (info in
// 8.x's writer, the stream's level in later ones). ok is false then.
func agentLevel(line string) (lvl zapcore.Level, msg string, ok bool) {
	var evt map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &evt); err != nil {
		return 0, line, false
	}
	msg, _ = evt["message"].(string)
	for _, v := range []any{evt["log.level"], nested(evt, "log", "level"), evt["level"]} {
		s, _ := v.(string)
		if s == "trace" {
			return zapcore.DebugLevel, msg, true
		}
		if s != "" && lvl.UnmarshalText([]byte(s)) == nil {
			return lvl, msg, true
		}
	}
	return 0, msg, false
}

func nested(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// TestAgentLogLevels runs the real binary under a stub agent and reads its
// stderr as the agent does: every line must be ECS JSON whose log.level is the
// level the message was meant at, so a warning is not filed as an error.
func TestAgentLogLevels(t *testing.T) {
	// No runtime socket: the pipeline warns that images are unknown.
	h := startAgentManaged(t, "CRI_SOCKET=/nonexistent/cri.sock", "DOCKER_SOCKET=/nonexistent/docker.sock", "CLOUD_METADATA=off")
	h.configureOutput()
	pol := "process:\n  selectors:\n    - name: a\n      operation: [exec]\n      processName: [true]\n  responses:\n    - match: [a]\n      actions: [alert]\n"
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputUnit(t, 1, pol))
	h.agent.Wait(t, inputID, proto.State_DEGRADED, "policy revision 1", 30*time.Second)
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputUnit(t, 2, strings.Replace(pol, "match: [a]", "match: [b]", 1)))
	h.agent.Wait(t, inputID, proto.State_FAILED, "refused", 10*time.Second)
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_STOPPED, proto.UnitLogLevel_INFO, nil)
	h.agent.SetUnit(outputID, proto.UnitType_OUTPUT, proto.State_STOPPED, proto.UnitLogLevel_INFO, nil)
	done := make(chan error, 1)
	go func() { <-h.logDone; done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after every unit stopped")
	}

	h.logMu.Lock()
	defer h.logMu.Unlock()
	want := []struct {
		substr string
		level  zapcore.Level
	}{
		{"starting under Elastic Agent as component cloud-defend-default", zapcore.InfoLevel},
		{"no container runtime socket found", zapcore.WarnLevel},
		{"policy revision 1", zapcore.InfoLevel},
		{`unknown selector "b"`, zapcore.ErrorLevel},
		{"stopped", zapcore.InfoLevel},
	}
	found := make([]bool, len(want))
	for _, l := range h.logs {
		lvl, msg, ok := agentLevel(l)
		if !ok {
			t.Errorf("the agent would file this stderr line at its default level, not ours: %s", l)
			continue
		}
		for i, w := range want {
			if !found[i] && strings.Contains(msg, w.substr) {
				found[i] = true
				if lvl != w.level {
					t.Errorf("%q logged at %v, want %v: %s", w.substr, lvl, w.level, l)
				}
			}
		}
	}
	for i, w := range want {
		if !found[i] {
			t.Errorf("no log line with %q", w.substr)
		}
	}
}

// TestAgentOutputMessages: the output unit's DEGRADED messages are one line
// each (the agent's status view shows them as they are): what is wrong, since
// when, and what waits in the spool. docs/deploy.md quotes them.
func TestAgentOutputMessages(t *testing.T) {
	h := startAgentManaged(t, "CLOUD_METADATA=off")
	h.es.SetFault(estest.Refuse)
	h.configureOutput()
	pol := "process:\n  selectors:\n    - name: a\n      operation: [exec]\n      processName: [true]\n  responses:\n    - match: [a]\n      actions: [alert]\n"
	// The policy in force starts the heartbeat: a document to deliver.
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputUnit(t, 1, pol))
	const spooled = `; [1-9]\d* documents? spooled \(\d+(\.\d)? (B|KiB|MiB) of 256 MiB\)$`
	msg := h.agent.Wait(t, outputID, proto.State_DEGRADED, "Elasticsearch requests failing", 30*time.Second)
	t.Logf("refused: %s", msg)
	if re := regexp.MustCompile(`^Elasticsearch requests failing since [0-9T:-]+Z \(answered 503 Service Unavailable: cluster_block_exception: [^\n]*\)` + spooled); !re.MatchString(msg) {
		t.Errorf("output message %q does not match %s", msg, re)
	}
	h.es.Close()
	msg = h.agent.Wait(t, outputID, proto.State_DEGRADED, "Elasticsearch unreachable", 30*time.Second)
	t.Logf("down: %s", msg)
	if re := regexp.MustCompile(`^Elasticsearch unreachable since [0-9T:-]+Z \(dial tcp [^\n]*connection refused\)` + spooled); !re.MatchString(msg) {
		t.Errorf("output message %q does not match %s", msg, re)
	}
}
