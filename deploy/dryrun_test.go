package deploy

import (
	"strings"
	"testing"

	"github.com/cloud-defend/cloud-defend/internal/k8snode"
)

// TestServerDryRun has a real kube-apiserver (internal/k8snode) validate
// every manifest: `kubectl apply --dry-run=server` with strict field
// validation, which runs admission and defaulting and stores nothing.
func TestServerDryRun(t *testing.T) {
	n, err := k8snode.Start(t, k8snode.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "kubernetes/")
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	for _, want := range []string{"daemonset.apps/cloud-defend", "daemonset.apps/elastic-agent-cloud-defend", "daemonset.apps/elastic-agent-cloud-defend-fleet",
		"clusterrole.rbac.authorization.k8s.io/cloud-defend", "serviceaccount/cloud-defend"} {
		if !strings.Contains(out, want+" created (server dry run)") {
			t.Errorf("%s not accepted:\n%s", want, out)
		}
	}
	// Nothing was stored.
	if out, err := n.Kubectl("get", "daemonsets", "-n", "kube-system", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("a dry run stored DaemonSets: %q %v", out, err)
	}
}
