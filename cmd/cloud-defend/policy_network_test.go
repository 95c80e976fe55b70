package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloud-defend/cloud-defend/policy"
)

const networkPolicy = `process:
  selectors:
    - name: all
      operation: [exec]
  responses:
    - match: [all]
      actions: [log]
network:
  selectors:
    - name: shop
      operation: [connect]
      kubernetesNamespace: [shop]
    - name: serviceCIDR
      destinationAddress: [10.96.0.0/12, "fd00:10:96::/112"]
    - name: nodeLocalDNS
      destinationAddress: [169.254.20.10]
      destinationPort: [53]
      protocol: [udp, tcp]
  responses:
    - match: [shop]
      exclude: [serviceCIDR, nodeLocalDNS]
      actions: [alert, block]
`

// TestValidateNetworkEditorWarning: a network: section is valid, with a
// warning (not an error) that Kibana's editor does not know it.
func TestValidateNetworkEditorWarning(t *testing.T) {
	dir := writeFiles(t, map[string]string{"net.yaml": networkPolicy, "ok.yaml": validPolicy,
		"bad.yaml": "network:\n  selectors:\n    - name: s\n      destinationPort: [8100-8000]\n  responses:\n    - match: [s]\n      actions: [alert]\n"})
	net := filepath.Join(dir, "net.yaml")
	code, out, errs := runCLI("", "policy", "validate", net)
	want := net + ":8:1: warning: network: the network section is a cloud-defend extension that Kibana's Defend for Containers policy editor does not know: Fleet passes the YAML through untouched, but the editor may not show it\n"
	if code != exitOK || out != net+": valid\n" || errs != want {
		t.Errorf("code %d stdout %q stderr:\n%s\nwant:\n%s", code, out, errs, want)
	}
	// A D4C policy has no such warning.
	if code, _, errs := runCLI("", "policy", "validate", filepath.Join(dir, "ok.yaml")); code != exitOK || errs != "" {
		t.Errorf("D4C policy: code %d stderr %q", code, errs)
	}
	// An invalid network section is an error, located.
	bad := filepath.Join(dir, "bad.yaml")
	code, _, errs = runCLI("", "policy", "validate", bad)
	if code != exitInvalid || errs != bad+`:4:25: network selector "s": destinationPort: "8100-8000" is upside down: a range gives its low port first (8000-8100)`+"\n" {
		t.Errorf("invalid: code %d stderr %q", code, errs)
	}

	code, out, _ = runCLI("", "policy", "validate", "--format", "json", net)
	var reports []fileReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil || code != exitOK {
		t.Fatalf("code %d: %v\n%s", code, err, out)
	}
	if len(reports) != 1 || !reports[0].Valid || len(reports[0].Diagnostics) != 1 {
		t.Fatalf("reports: %+v", reports)
	}
	if d := reports[0].Diagnostics[0]; d.Severity != policy.SeverityWarning || d.Line != 8 || d.Column != 1 || d.Path != "network" || d.Type != "network" {
		t.Errorf("diagnostic: %+v", d)
	}
}

func TestExplainNetwork(t *testing.T) {
	dir := writeFiles(t, map[string]string{"net.yaml": networkPolicy})
	code, out, _ := runCLI("", "policy", "explain", filepath.Join(dir, "net.yaml"))
	for _, want := range []string{
		"process: 1 selectors, 1 responses, detects only",
		"network: 3 selectors, 1 responses, can block",
		"selector shop: operation in (connect) AND kubernetesNamespace in (shop)",
		"selector serviceCIDR: destinationAddress in (10.96.0.0/12, fd00:10:96::/112)",
		"selector nodeLocalDNS: protocol in (udp, tcp) AND destinationAddress in (169.254.20.10) AND destinationPort in (53)",
		"IF (shop) AND NOT (serviceCIDR OR nodeLocalDNS) THEN alert, block",
	} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "network:") < strings.Index(out, "process:") {
		t.Errorf("network section before process:\n%s", out)
	}
}
