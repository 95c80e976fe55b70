package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-defend/cloud-defend/internal/k8snode"
	"github.com/cloud-defend/cloud-defend/internal/k8snode/ociimage"
	"github.com/cloud-defend/cloud-defend/internal/ruletest"
	"github.com/cloud-defend/cloud-defend/output/estest"
)

// TestKubernetes runs the real binary on a real single-node Kubernetes
// (kube-apiserver, kubelet, containerd, runc): pods with labels and
// annotations, a selector on a pod label that only applies once the pod's
// metadata reaches the kernel engine, and `kubectl exec` sessions into a pod.
// The documents must carry orchestrator.*, the image from CRI, and the exec
// session as entry leader; the delay from a container's start to its pod
// selectors applying is reported.
func TestKubernetes(t *testing.T) {
	ruletest.ContractDir(t, "cross-platform") // checkAuditJoin reads it: without it, skip before the node starts
	n, err := k8snode.Start(t, k8snode.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := daemonBinary(t)
	es, err := estest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(`process:
  selectors:
    - name: allExecs
      operation: [exec]
    - name: webPods
      operation: [exec]
      kubernetesPodLabel: [app:web]
    - name: busyboxImage
      operation: [exec]
      containerImageName: [busybox]
      containerImageTag: ["1"]
  responses:
    - match: [allExecs]
      actions: [log]
    - match: [webPods, busyboxImage]
      actions: [alert]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--policy", pol, "--output", "elasticsearch", "--es-url", es.URL(),
		"--data-path", filepath.Join(dir, "data"), "--namespace", "k8s")
	cmd.Env = append(os.Environ(), "NODE_NAME="+n.NodeName, "KUBECONFIG="+n.Kubeconfig, "CRI_SOCKET="+n.ContainerdSocket,
		"DOCKER_SOCKET="+filepath.Join(dir, "none.sock"), "CLUSTER_NAME=cd-test", "CLOUD_METADATA=off")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	expect := func(re *regexp.Regexp) []string {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l := <-lines:
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("no line matching %s", re)
			}
		}
	}
	expect(regexp.MustCompile(`kubernetes: watching the pods of node`))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"team": "platform"}},
		Spec: corev1.PodSpec{NodeName: n.NodeName, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: ociimage.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/sh", "-c", "sleep 3600; exit 0"}}}},
	}
	if _, err := n.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := n.WaitPodRunning(ctx, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	ctrID := running.Status.ContainerStatuses[0].ContainerID
	ctrID = ctrID[strings.Index(ctrID, "://")+3:]
	delay := expect(regexp.MustCompile(`selectors apply to container \w+ of pod default/web (\S+) after it started`))
	t.Logf("pod selectors applied %s after the container started", delay[1])

	// A plain exec and an interactive one (a pseudo-terminal from script(1)).
	if out, err := n.Kubectl("exec", "web", "--", "/bin/cat", "/etc/hostname"); err != nil {
		t.Fatalf("kubectl exec: %v %s", err, out)
	}
	script := exec.Command("script", "-qec", n.BinDir+"/kubectl --kubeconfig "+n.Kubeconfig+" exec -it web -- /bin/sh -c 'id; exit 0'", "/dev/null")
	if out, err := script.CombinedOutput(); err != nil {
		t.Fatalf("kubectl exec -it: %v %s", err, out)
	}

	find := func(what string, ok func(map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, d := range es.Docs("logs-cloud_defend.alerts-k8s") {
				if ok(d) {
					return d
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("no alert for %s; streams %v", what, es.Streams())
		return nil
	}
	cat := find("kubectl exec cat", func(d map[string]any) bool { return joinArgs(d) == "/bin/cat /etc/hostname" })
	sh := find("kubectl exec -it sh", func(d map[string]any) bool { return joinArgs(d) == "/bin/sh -c id; exit 0" })
	for name, d := range map[string]map[string]any{"cat": cat, "sh": sh} {
		for path, want := range map[string]any{
			"orchestrator.namespace": "default", "orchestrator.resource.name": "web", "orchestrator.resource.type": "pod",
			"orchestrator.cluster.name": "cd-test", "container.id": ctrID,
			"container.image.name": strings.Split(ociimage.BusyboxImage, ":")[0], "container.image.tag": "1",
			"process.entry_leader.entry_meta.type": "container", "process.entry_leader.same_as_process": true,
		} {
			if got := field(d, path); got != want {
				t.Errorf("%s: %s = %#v, want %#v", name, path, got, want)
			}
		}
		labels, _ := field(d, "orchestrator.resource.label").([]any)
		if !slices.Contains(labels, any("app:web")) || field(d, "orchestrator.cluster.id") == "" {
			t.Errorf("%s: labels %v cluster id %v", name, labels, field(d, "orchestrator.cluster.id"))
		}
		if sel, _ := field(d, "cloud_defend.matched_selectors").([]any); !slices.Contains(sel, any("webPods")) || !slices.Contains(sel, any("busyboxImage")) {
			t.Errorf("%s: matched %v", name, sel)
		}
	}
	if field(cat, "process.interactive") != false || field(sh, "process.interactive") != true {
		t.Errorf("interactive: cat %v, sh %v", field(cat, "process.interactive"), field(sh, "process.interactive"))
	}
	checkAuditJoin(ctx, t, n, es)
}

// checkAuditJoin: Elastic's four execution_d4c_k8s_mda_* rules join our
// documents `by orchestrator.resource.name` with the Kubernetes audit log's
// `by kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name` (the
// pod a service-account token was bound to), within a second. From an
// interactive `kubectl exec` into a pod, kubectl (the node's, on a hostPath
// volume: busybox wget's TLS and Go's share no cipher suite) calls the API
// with the pod's own token; the default service account may not list
// secrets: forbidden. The apiserver's real audit log, as the kubernetes
// integration ships it, and our documents must make the rules fire: same pod
// name, the exec interactive, in a container, before the request.
func checkAuditJoin(ctx context.Context, t *testing.T, n *k8snode.Node, es *estest.Server) {
	grace := int64(1)
	ro := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api-client"},
		Spec: corev1.PodSpec{NodeName: n.NodeName, TerminationGracePeriodSeconds: &grace, HostNetwork: true,
			Volumes: []corev1.Volume{{Name: "k8s", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: n.BinDir}}}},
			Containers: []corev1.Container{{Name: "main", Image: ociimage.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				VolumeMounts: []corev1.VolumeMount{{Name: "k8s", MountPath: "/opt/k8s", ReadOnly: ro}},
				Command:      []string{"/bin/sh", "-c", "sleep 3600; exit 0"}}}},
	}
	if _, err := n.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitPodRunning(ctx, "default", "api-client"); err != nil {
		t.Fatal(err)
	}
	port := n.Server[strings.LastIndexByte(n.Server, ':')+1:]
	sa := "/var/run/secrets/kubernetes.io/serviceaccount"
	req := `/opt/k8s/kubectl --server https://127.0.0.1:` + port + ` --certificate-authority ` + sa + `/ca.crt --token "$(cat ` + sa + `/token)" get secrets; exit 0`
	script := exec.Command("script", "-qec", n.BinDir+"/kubectl --kubeconfig "+n.Kubeconfig+" exec -it api-client -- /bin/sh -c '"+req+"'", "/dev/null")
	out, err := script.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl exec -it: %v %s", err, out)
	}
	t.Logf("kubectl in pod api-client: %s", strings.TrimSpace(string(out)))
	var client map[string]any
	for deadline := time.Now().Add(30 * time.Second); client == nil && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, d := range es.Docs("logs-cloud_defend.process-k8s") {
			if field(d, "process.name") == "kubectl" && field(d, "event.action") == "exec" && field(d, "orchestrator.resource.name") != nil {
				client = d
			}
		}
	}
	if client == nil {
		t.Fatal("no exec document for kubectl in the pod")
	}
	audit := auditDocs(t, n.AuditLog)
	var fromPod []map[string]any
	for _, a := range audit {
		if v, _ := field(a, "kubernetes.audit.user.extra").(map[string]any); v != nil {
			if p, _ := v["authentication.kubernetes.io/pod-name"].([]any); len(p) == 1 && p[0] == "api-client" {
				fromPod = append(fromPod, a)
			}
		}
	}
	if len(fromPod) == 0 {
		users := map[string]bool{}
		for _, a := range audit {
			users[fmt.Sprint(field(a, "kubernetes.audit.user.username"), field(a, "kubernetes.audit.user.extra"))] = true
		}
		t.Fatalf("no audit event from pod api-client among %d; users: %v", len(audit), users)
	}
	// The join fields, each as the audit log has it: the pod name the token
	// was bound to, and the namespace of its service account
	// (system:serviceaccount:<namespace>:<name>), the pod's own.
	user, _ := field(fromPod[0], "kubernetes.audit.user.username").(string)
	saNamespace := strings.Split(user, ":")[min(2, len(strings.Split(user, ":"))-1)]
	for path, want := range map[string]any{
		"orchestrator.resource.name": "api-client", "orchestrator.namespace": saNamespace,
		"process.interactive": true, "event.type": []any{"start"}, "event.action": "exec", "host.os.type": "linux",
	} {
		if got := field(client, path); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("kubectl: %s = %#v, want %#v", path, got, want)
		}
	}
	if id, _ := field(client, "container.id").(string); id == "" {
		t.Errorf("kubectl: no container.id")
	}
	docs := audit
	for _, stream := range es.Streams() {
		for _, d := range es.Docs(stream) {
			d["_stream"] = stream
			docs = append(docs, d)
		}
	}
	dir := ruletest.ContractDir(t, "cross-platform") + "/"
	for _, rule := range []string{"execution_d4c_k8s_mda_direct_interactive_kubernetes_api_request_by_usual_utilities.toml",
		"execution_d4c_k8s_mda_forbidden_direct_interactive_kubernetes_api_request.toml"} {
		r, err := ruletest.Load(dir + rule)
		if err != nil {
			t.Fatal(err)
		}
		var read []map[string]any
		for _, d := range docs {
			if r.Reads(field(d, "_stream").(string)) {
				read = append(read, d)
			}
		}
		m, ok := r.Query.Match(read)
		if !ok {
			t.Errorf("rule %q did not fire on kubectl's request with the pod's token", r.Name)
			continue
		}
		t.Logf("rule fired: %s: %s then %v %v", r.Name, joinArgs(m[0]), field(m[1], "kubernetes.audit.verb"), field(m[1], "kubernetes.audit.requestURI"))
	}
}

// auditDocs reads the apiserver's audit log as Elastic's kubernetes
// integration indexes it (data stream kubernetes.audit_logs): the event under
// kubernetes.audit, @timestamp from requestReceivedTimestamp, dots in
// annotation keys made underscores (the rules read
// kubernetes.audit.annotations.authorization_k8s_io/decision).
func auditDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit log line %q: %v", line, err)
		}
		if ann, ok := ev["annotations"].(map[string]any); ok {
			renamed := map[string]any{}
			for k, v := range ann {
				renamed[strings.ReplaceAll(k, ".", "_")] = v
			}
			ev["annotations"] = renamed
		}
		delete(ev, "kind")
		delete(ev, "apiVersion")
		out = append(out, map[string]any{
			"@timestamp": ev["requestReceivedTimestamp"], "_stream": "logs-kubernetes.audit_logs-default",
			"data_stream": map[string]any{"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "default"},
			"event":       map[string]any{"dataset": "kubernetes.audit_logs"},
			"kubernetes":  map[string]any{"audit": ev},
		})
	}
	return out
}
