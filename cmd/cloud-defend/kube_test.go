package main

import (
	"bufio"
	"context"
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
	os.WriteFile(pol, []byte(`process:
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
`), 0o644)
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
}
