package k8snode_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-defend/cloud-defend/internal/k8snode"
	"github.com/cloud-defend/cloud-defend/internal/k8snode/ociimage"
)

// TestNode starts a real node, runs a pod on it, execs into it, checks where its
// container's cgroup is, dry-runs a deployment manifest, and checks Close
// leaves nothing behind.
func TestNode(t *testing.T) {
	began := time.Now()
	n, err := k8snode.Start(t, k8snode.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s Ready %s after Start was called", n.NodeName, time.Since(began).Round(time.Millisecond))

	t.Run("Pod", func(t *testing.T) { testPod(t, n) })
	t.Run("DryRunApply", func(t *testing.T) { testDryRunApply(t, n) })
	t.Run("LeftRunning", func(t *testing.T) { testLeftRunning(t, n) })

	closing := time.Now()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("Close took %s", time.Since(closing).Round(time.Millisecond))
	if left := n.Leftovers(); len(left) > 0 {
		t.Fatalf("Close left behind:\n%s", strings.Join(left, "\n"))
	}
}

func testPod(t *testing.T, n *k8snode.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods := n.Client.CoreV1().Pods("default")
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "probe",
			Labels:      map[string]string{"app": "cd-probe", "tier": "test"},
			Annotations: map[string]string{"cloud-defend.test/purpose": "k8snode harness"},
		},
		Spec: corev1.PodSpec{
			NodeName:                      n.NodeName,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           ociimage.BusyboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sleep", "3600"},
			}},
		},
	}
	created := time.Now()
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := n.WaitPodRunning(ctx, "default", "probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod Running %s after create, IP %s", time.Since(created).Round(time.Millisecond), running.Status.PodIP)
	if running.Labels["app"] != "cd-probe" || running.Annotations["cloud-defend.test/purpose"] != "k8snode harness" {
		t.Errorf("labels %v annotations %v", running.Labels, running.Annotations)
	}

	out, err := n.Kubectl("exec", "probe", "-c", "main", "--", "sh", "-c", "echo hello-$((6*7)); hostname")
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello-42\nprobe\n"; out != want {
		t.Errorf("kubectl exec output %q, want %q", out, want)
	}

	// The container's cgroup: <hierarchy><CgroupRoot>/kubepods/besteffort/pod<uid>/<id>.
	if len(running.Status.ContainerStatuses) != 1 {
		t.Fatalf("container statuses: %+v", running.Status.ContainerStatuses)
	}
	cid := running.Status.ContainerStatuses[0].ContainerID
	runtime, id, ok := strings.Cut(cid, "://")
	if !ok || runtime != "containerd" || len(id) != 64 {
		t.Fatalf("containerID %q, want containerd://<64 hex>", cid)
	}
	uid := string(running.UID)
	pid := taskPid(t, n, id)
	cgroups, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var memPath string
	sc := bufio.NewScanner(strings.NewReader(string(cgroups)))
	for sc.Scan() {
		// hierarchy-id:controllers:path
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) == 3 && f[1] == "memory" {
			memPath = f[2]
		}
	}
	if !strings.Contains(memPath, "pod"+uid) || !strings.HasSuffix(memPath, "/"+id) || !strings.HasPrefix(memPath, n.CgroupRoot+"/kubepods/") {
		t.Errorf("container process %d memory cgroup %q: want %s/kubepods/.../pod%s/%s\n%s", pid, memPath, n.CgroupRoot, uid, id, cgroups)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", memPath)); err != nil {
		t.Errorf("cgroup directory: %v", err)
	}
	t.Logf("container %s pid %d in cgroup %s", id[:12], pid, memPath)

	if _, err := n.Kubectl("delete", "pod", "probe", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "probe", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod still there after delete: %v", err)
	}
	for range 100 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("container process %d still runs after the pod was deleted", pid)
	}
}

// testLeftRunning leaves a pod running for Close to tear down (its sandbox,
// network namespace, mounts and cgroups).
func testLeftRunning(t *testing.T, n *k8snode.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "left-running"},
		Spec: corev1.PodSpec{
			NodeName: n.NodeName,
			Containers: []corev1.Container{{
				Name: "main", Image: ociimage.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
	if _, err := n.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitPodRunning(ctx, "default", "left-running"); err != nil {
		t.Fatal(err)
	}
}

// taskPid is the container's main process, from containerd's task list.
func taskPid(t *testing.T, n *k8snode.Node, id string) int {
	t.Helper()
	out, err := n.Ctr("tasks", "ls")
	if err != nil {
		t.Fatalf("ctr tasks ls: %v: %s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == id {
			var pid int
			if _, err := fmt.Sscan(f[1], &pid); err == nil && pid > 0 {
				return pid
			}
		}
	}
	t.Fatalf("no task %s in:\n%s", id, out)
	return 0
}

const manifest = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: cloud-defend-test
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: cloud-defend-test
rules:
- apiGroups: [""]
  resources: ["pods", "namespaces", "nodes"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: cloud-defend-test
subjects:
- kind: ServiceAccount
  name: cloud-defend-test
  namespace: kube-system
roleRef:
  kind: ClusterRole
  name: cloud-defend-test
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: cloud-defend-test
  namespace: kube-system
  labels:
    app: cloud-defend-test
spec:
  selector:
    matchLabels:
      app: cloud-defend-test
  template:
    metadata:
      labels:
        app: cloud-defend-test
    spec:
      serviceAccountName: cloud-defend-test
      hostNetwork: true
      hostPID: true
      dnsPolicy: ClusterFirstWithHostNet
      tolerations:
      - operator: Exists
      containers:
      - name: agent
        image: ` + ociimage.BusyboxImage + `
        imagePullPolicy: Never
        command: ["sleep", "3600"]
        env:
        - name: HOSTFS_PROC_PATH
          value: /hostfs/proc
        securityContext:
          runAsUser: 0
          capabilities:
            add: ["BPF", "PERFMON", "SYS_RESOURCE"]
        volumeMounts:
        - {name: proc, mountPath: /hostfs/proc, readOnly: true}
        - {name: debugfs, mountPath: /sys/kernel/debug}
        - {name: boot, mountPath: /boot, readOnly: true}
        - {name: bpffs, mountPath: /sys/fs/bpf}
        - {name: securityfs, mountPath: /sys/kernel/security, readOnly: true}
      volumes:
      - {name: proc, hostPath: {path: /proc}}
      - {name: debugfs, hostPath: {path: /sys/kernel/debug}}
      - {name: boot, hostPath: {path: /boot}}
      - {name: bpffs, hostPath: {path: /sys/fs/bpf}}
      - {name: securityfs, hostPath: {path: /sys/kernel/security}}
`

func testDryRunApply(t *testing.T, n *k8snode.Node) {
	out, err := n.KubectlInput(strings.NewReader(manifest), "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"serviceaccount/cloud-defend-test created (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/cloud-defend-test created (server dry run)",
		"clusterrolebinding.rbac.authorization.k8s.io/cloud-defend-test created (server dry run)",
		"daemonset.apps/cloud-defend-test created (server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply --dry-run=server output lacks %q:\n%s", want, out)
		}
	}
	// A dry run stores nothing.
	if _, err := n.Kubectl("get", "-n", "kube-system", "daemonset/cloud-defend-test"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("daemonset exists after a dry run: %v", err)
	}
	// And the server validates: an invalid object is refused.
	bad := strings.Replace(manifest, "name: agent", "name: Agent_Invalid", 1)
	if out, err := n.KubectlInput(strings.NewReader(bad), "apply", "--dry-run=server", "-f", "-"); err == nil {
		t.Errorf("dry run accepted an invalid container name:\n%s", out)
	}
}
