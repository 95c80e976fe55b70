package pkg_test

import (
	"encoding/json"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/internal/ruletest"
	"github.com/cloud-defend/cloud-defend/policy"
)

// networkRuleCases are the detection rules of the contract that read our
// network documents, by file, with whether the network alert and the
// network log document must trigger them. Today only Container Workload
// Protection (every cloud_defend alert) does: no prebuilt rule reads network
// fields from cloud_defend, and the Elastic Defend network rules read
// logs-endpoint.events.network-*, not our streams.
var networkRuleCases = map[string]struct{ alert, log bool }{
	"container_workload_protection.toml": {alert: true, log: false},
}

// TestNetworkRules: every contract rule that reads the network or alerts
// data stream with a query that can see network documents (a KQL query, an
// EQL network or any stage) is triggered by our network documents as
// networkRuleCases says; a rule that reads them and has no case fails the
// test, so a new one in the contract is looked at, not missed.
func TestNetworkRules(t *testing.T) {
	base := ruletest.ContractDir(t, "")
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "0.1.0"}, host.Host{Hostname: "node-1", Name: "node-1"}, nil,
		time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC), func(*event.Event) ([]string, error) { return []string{"noEgress"}, nil })
	ev := event.Event{Kind: event.NetworkDecision, Time: time.Second, Op: policy.OpConnect, Hook: event.HookSocketConnect,
		Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock, Blocked: true, Protocol: event.ProtocolTCP,
		Destination: netip.MustParseAddrPort("203.0.113.9:4444"), Direction: event.DirectionEgress,
		Process: event.Process{PID: 42, TID: 42, Start: time.Millisecond, Comm: "nc"}}
	ctx := &enrich.Context{Container: &enrich.Container{ID: "c1", Runtime: "containerd", ImageName: "alpine"}}
	docs := map[string]ruletest.Doc{} // data stream → document
	err := enc.EncodeAll(&ev, ctx, ecs.Meta{Namespace: "default"}, func(d ecs.Doc) {
		var m ruletest.Doc
		if err := json.Unmarshal(d.Body, &m); err != nil {
			t.Fatal(err)
		}
		docs[d.Stream] = m
	})
	if err != nil {
		t.Fatal(err)
	}
	alert, log := docs["logs-cloud_defend.alerts-default"], docs["logs-cloud_defend.network-default"]
	if alert == nil || log == nil {
		t.Fatalf("documents on %v, want the alerts and network streams", docs)
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".toml" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		readsAlerts, readsNetwork := false, false
		if idx := ruleIndexRe.FindSubmatch(b); idx != nil {
			for _, q := range ruleQuotedRe.FindAllSubmatch(idx[1], -1) {
				readsAlerts = readsAlerts || matchIndex(string(q[1]), "logs-cloud_defend.alerts-default")
				readsNetwork = readsNetwork || matchIndex(string(q[1]), "logs-cloud_defend.network-default")
			}
		}
		if !readsAlerts && !readsNetwork || ruleEQLRe.Match(b) && !seesNetwork(b) {
			return nil // not our streams, or process and file stages only
		}
		// Parsed only when it applies: ruletest knows the subset of EQL the
		// rules for our documents use, not every rule's.
		r, err := ruletest.Load(p)
		if err != nil {
			t.Errorf("%v", err)
			return nil
		}
		name := filepath.Base(p)
		c, ok := networkRuleCases[name]
		if !ok {
			t.Errorf("%s (%s) reads cloud_defend network documents: add it to networkRuleCases with what our documents must do", name, r.Name)
			return nil
		}
		seen[name] = true
		if _, got := r.Query.Match([]ruletest.Doc{alert}); readsAlerts && got != c.alert {
			t.Errorf("%s: the network alert triggers it: %v, want %v", name, got, c.alert)
		}
		if _, got := r.Query.Match([]ruletest.Doc{log}); readsNetwork && got != c.log {
			t.Errorf("%s: the network log document triggers it: %v, want %v", name, got, c.log)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range networkRuleCases {
		if !seen[name] {
			t.Errorf("%s: not in the contract, or no longer reads our network documents", name)
		}
	}
}

var (
	ruleIndexRe  = regexp.MustCompile(`(?m)^index = \[(.*)\]$`)
	ruleQuotedRe = regexp.MustCompile(`"([^"]*)"`)
	ruleEQLRe    = regexp.MustCompile(`(?m)^language = "eql"$`)
)

// seesNetwork reports whether an EQL rule has a network or any stage.
func seesNetwork(rule []byte) bool {
	for _, m := range stageRe.FindAllSubmatch(rule, -1) {
		if string(m[1]) == "network" || string(m[1]) == "any" {
			return true
		}
	}
	return false
}
