// Package k8snode starts a real single-node Kubernetes for tests on this host:
// etcd (Debian's etcd-server), kube-apiserver (token auth, Node+RBAC
// authorization), containerd with runc and a ptp CNI network, and kubelet, all
// on loopback or the host's own address, with every file under one temporary
// directory and every container under its own cgroup root. There is no
// scheduler or controller-manager: pods need spec.nodeName (Node.NodeName), and
// DaemonSets, Deployments and the like are stored but never create pods.
//
// Kubernetes' binaries come from scripts/k8s-node-build.sh (built from the Go
// module proxy into CacheDir(); Start runs it when they are missing). Images
// come from Debian's busybox-static (ociimage.PauseImage, ociimage.BusyboxImage);
// pods must use imagePullPolicy Never, since no registry is reachable.
//
// Start needs root. Outside CI (CI != "true") it skips the test when not root;
// in CI every missing prerequisite is an error.
package k8snode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cloud-defend/cloud-defend/internal/k8snode/ociimage"
)

// Options tune the node; the zero value works.
type Options struct {
	// NodeName is the Node's name (default "cd-node").
	NodeName string
	// ReadyTimeout bounds the wait for the Node to be Ready (default 3m); the
	// build of missing binaries is not counted.
	ReadyTimeout time.Duration
	// Logf receives progress lines (default t.Logf).
	Logf func(format string, args ...any)
	// NoBuild makes Start fail instead of running scripts/k8s-node-build.sh
	// when the Kubernetes binaries are missing.
	NoBuild bool
	// KubeletArgs are extra kubelet flags (e.g. "--v=4").
	KubeletArgs []string
	// CgroupRoot is kubelet's cgroupRoot. The default, a fresh "/cdk8s-<id>",
	// lets nodes run side by side (a kubelet removes the pod cgroups under its
	// root that it does not know). "/" gives the stock layout,
	// /kubepods/<qos>/pod<uid>/<id>, for one node at a time: Start refuses it
	// when /kubepods exists.
	CgroupRoot string
}

// Node is a running single-node cluster.
type Node struct {
	// NodeName is the Node's name: set it as pods' spec.nodeName.
	NodeName string
	// NodeIP is the Node's InternalIP (the host's address).
	NodeIP string
	// Kubeconfig is an admin kubeconfig (group system:masters).
	Kubeconfig string
	// Server is the apiserver's URL; Token the admin bearer token.
	Server string
	Token  string
	// CAFile is the cluster CA (PEM).
	CAFile string
	// Client is an admin clientset; RESTConfig its configuration.
	Client     *kubernetes.Clientset
	RESTConfig *rest.Config
	// ContainerdSocket is the CRI (and containerd API) socket kubelet uses.
	ContainerdSocket string
	// CgroupRoot is kubelet's cgroupRoot: pod cgroups are
	// <hierarchy><CgroupRoot>/kubepods/<qos>/pod<uid>/<container id>
	// (e.g. /sys/fs/cgroup/memory/cdk8s-1a2b3c4d/kubepods/besteffort/pod<uid>/<id>).
	CgroupRoot string
	// Dir is the temporary directory holding every file of the node.
	Dir string
	// BinDir holds kube-apiserver, kubelet and kubectl.
	BinDir string
	// PodSubnet is the CNI network's subnet.
	PodSubnet string
	// AuditLog is the apiserver's audit log: one JSON audit.k8s.io/v1 Event
	// a line, every request at level Metadata (who, from which pod, what), as
	// a managed cluster's audit log that Elastic's kubernetes integration
	// ships to logs-kubernetes.audit_logs-*.
	AuditLog string

	t    testing.TB
	logf func(string, ...any)

	mu      sync.Mutex
	procs   []*process
	pids    []int
	etcd    *process
	api     *process
	ctrd    *process
	kubelet *process

	cgroupDirs   []string
	cgroupMatch  string
	chainsBefore map[string]map[string]bool
	sysctlBefore map[string]string
	hostBefore   map[string]bool
	netns        map[string]bool

	closeOnce sync.Once
	closeErr  error
}

// Start starts the node and registers its Close with t.Cleanup. It skips t when
// the node cannot run here and CI is not "true" (not root); otherwise a missing
// prerequisite is returned as an error.
func Start(t testing.TB, opts Options) (*Node, error) {
	t.Helper()
	if opts.NodeName == "" {
		opts.NodeName = "cd-node"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 3 * time.Minute
	}
	logf := opts.Logf
	if logf == nil {
		logf = t.Logf
	}
	inCI := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if !inCI {
			t.Skip("k8snode: a Kubernetes node needs root (containerd, kubelet, cgroups, mounts); skipping outside CI")
		}
		return nil, errors.New("k8snode: a Kubernetes node needs root (containerd, kubelet, cgroups, mounts)")
	}
	if err := ensurePackages(logf); err != nil {
		return nil, fmt.Errorf("k8snode: %w", err)
	}
	if opts.NoBuild {
		if m := missingBinaries(); len(m) > 0 {
			s, _ := BuildScript()
			return nil, fmt.Errorf("k8snode: %s missing in %s: run %s", strings.Join(m, ", "), BinDir(), s)
		}
	} else if err := ensureBinaries(logf, testDeadline(t)); err != nil {
		return nil, fmt.Errorf("k8snode: %w", err)
	}

	// Short paths: containerd's and kubelet's unix sockets must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "cdk8s-")
	if err != nil {
		return nil, err
	}
	id := randHex(4)
	n := &Node{
		NodeName:         opts.NodeName,
		Dir:              dir,
		BinDir:           BinDir(),
		ContainerdSocket: filepath.Join(dir, "containerd.sock"),
		CgroupRoot:       opts.CgroupRoot,
		t:                t,
		logf:             logf,
		netns:            map[string]bool{},
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("k8snode: close: %v", err)
		}
	})
	if n.CgroupRoot == "" {
		n.CgroupRoot = "/cdk8s-" + id
	}
	if err := n.start(opts); err != nil {
		n.dumpLogs()
		return nil, fmt.Errorf("k8snode: %w", err)
	}
	return n, nil
}

func (n *Node) start(opts Options) error {
	began := time.Now()
	for _, d := range []string{"logs", "etcd", "apiserver", "kubelet", "pod-logs", "containerd/root", "containerd/state", "containerd/opt", "runc", "cni/net.d", "cni/ipam", "images"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	nodeIP, err := hostIP()
	if err != nil {
		return err
	}
	n.NodeIP = nodeIP
	n.chainsBefore = kubeChains()
	n.sysctlBefore = readSysctls()
	n.hostBefore = existingHostPaths()

	// PKI: CA, apiserver serving cert, apiserver's client cert for kubelet,
	// kubelet's serving cert, service-account keys, tokens.
	p, err := newPKI(filepath.Join(n.Dir, "pki"))
	if err != nil {
		return err
	}
	n.CAFile = p.CACert
	apiCert, apiKey, err := p.issue("apiserver", "kube-apiserver", nil,
		[]string{"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return err
	}
	kcCert, kcKey, err := p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil)
	if err != nil {
		return err
	}
	kubeletCert, kubeletKey, err := p.issue("kubelet", n.NodeName, nil, []string{n.NodeIP, "127.0.0.1", n.NodeName, "localhost"})
	if err != nil {
		return err
	}
	saPub, saKey, err := p.serviceAccountKeys()
	if err != nil {
		return err
	}
	n.Token = randHex(16)
	nodeToken := randHex(16)
	tokens := filepath.Join(n.Dir, "pki", "tokens.csv")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("%s,admin,admin,\"system:masters\"\n%s,system:node:%s,node-%s,\"system:nodes\"\n",
		n.Token, nodeToken, n.NodeName, n.NodeName)), 0o600); err != nil {
		return err
	}

	// etcd
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	n.etcd, err = n.spawn("etcd", "/usr/bin/etcd",
		"--name", "cdk8s",
		"--data-dir", filepath.Join(n.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "cdk8s="+peerURL, "--initial-cluster-state", "new",
		"--listen-metrics-urls", "", "--log-level", "warn")
	if err != nil {
		return err
	}
	if err := n.waitHTTP(n.etcd, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}

	// kube-apiserver
	auditPolicy := filepath.Join(n.Dir, "apiserver", "audit-policy.yaml")
	n.AuditLog = filepath.Join(n.Dir, "logs", "audit.log")
	if err := os.WriteFile(auditPolicy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n"), 0o644); err != nil {
		return err
	}
	n.Server = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	n.api, err = n.spawn("kube-apiserver", filepath.Join(n.BinDir, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--advertise-address", n.NodeIP,
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(n.Dir, "apiserver"),
		"--tls-cert-file", apiCert, "--tls-private-key-file", apiKey,
		"--client-ca-file", p.CACert,
		"--token-auth-file", tokens,
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged=true",
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--kubelet-client-certificate", kcCert, "--kubelet-client-key", kcKey,
		"--kubelet-certificate-authority", p.CACert,
		"--kubelet-preferred-address-types", "InternalIP,Hostname",
		"--profiling=false",
		"--audit-policy-file", auditPolicy, "--audit-log-path", n.AuditLog, "--audit-log-format", "json",
		"--audit-log-mode", "blocking",
		"--v=1")
	if err != nil {
		return err
	}
	n.RESTConfig = &rest.Config{
		Host:            n.Server,
		BearerToken:     n.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.CAData},
		QPS:             50,
		Burst:           100,
	}
	n.Client, err = kubernetes.NewForConfig(n.RESTConfig)
	if err != nil {
		return err
	}
	n.Kubeconfig = filepath.Join(n.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(n.Kubeconfig, n.Server, p.CACert, "admin", n.Token); err != nil {
		return err
	}
	if err := n.waitHTTP(n.api, n.Server+"/readyz", n.RESTConfig, 90*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	n.logf("k8snode: kube-apiserver ready at %s after %s", n.Server, time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), opts.ReadyTimeout)
	defer cancel()
	for _, ns := range []string{"default", "kube-system"} {
		if err := n.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}

	// containerd, then its images
	if err := n.startContainerd(); err != nil {
		return err
	}

	// kubelet
	made, err := makeCgroupRoot(n.CgroupRoot)
	n.cgroupDirs = made
	if err != nil {
		return err
	}
	// cgroup paths in /proc/<pid>/cgroup under the node's root: ":<root>/" or,
	// for the stock root, ":/kubepods/" (":/kubepods.slice" is systemd's).
	n.cgroupMatch = ":" + strings.TrimSuffix(n.CgroupRoot, "/") + "/"
	if n.CgroupRoot == "/" {
		n.cgroupMatch = ":/kubepods/"
	}
	kubeletKubeconfig := filepath.Join(n.Dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(kubeletKubeconfig, n.Server, p.CACert, "system:node:"+n.NodeName, nodeToken); err != nil {
		return err
	}
	kubeletConfig := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(kubeletConfig, []byte(n.kubeletConfig(p.CACert, kubeletCert, kubeletKey, ports[3], ports[4])), 0o644); err != nil {
		return err
	}
	args := []string{
		"--config", kubeletConfig,
		"--kubeconfig", kubeletKubeconfig,
		"--root-dir", filepath.Join(n.Dir, "kubelet"),
		"--cert-dir", filepath.Join(n.Dir, "kubelet", "pki"),
		"--hostname-override", n.NodeName,
		"--node-ip", n.NodeIP,
		"--v=2",
	}
	n.kubelet, err = n.spawn("kubelet", filepath.Join(n.BinDir, "kubelet"), append(args, opts.KubeletArgs...)...)
	if err != nil {
		return err
	}
	if err := n.waitNodeReady(ctx); err != nil {
		return err
	}
	n.logf("k8snode: node %s Ready after %s (dir %s, cgroup root %s)", n.NodeName, time.Since(began).Round(time.Millisecond), n.Dir, n.CgroupRoot)
	return nil
}

func (n *Node) kubeletConfig(ca, cert, key string, port, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://%[2]s
imageServiceEndpoint: unix://%[2]s
address: %[3]s
port: %[4]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[5]d
tlsCertFile: %[6]s
tlsPrivateKeyFile: %[7]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[8]s
authorization:
  mode: Webhook
registerNode: true
failSwapOn: false
podLogsDir: %[9]s
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 10s
httpCheckFrequency: 10s
`, n.CgroupRoot, n.ContainerdSocket, n.NodeIP, port, healthzPort, cert, key, ca, filepath.Join(n.Dir, "pod-logs"))
}

func (n *Node) startContainerd() error {
	sub, err := podSubnet()
	if err != nil {
		return err
	}
	n.PodSubnet = sub
	cni := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "cdk8s",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, sub, filepath.Join(n.Dir, "cni", "ipam"))
	if err := os.WriteFile(filepath.Join(n.Dir, "cni", "net.d", "10-cdk8s.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[5]q
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = %[6]q
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = %[7]q
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = %[8]q
      conf_dir = %[9]q
`,
		filepath.Join(n.Dir, "containerd", "root"), filepath.Join(n.Dir, "containerd", "state"),
		n.ContainerdSocket, n.ContainerdSocket+".ttrpc", filepath.Join(n.Dir, "containerd", "opt"),
		ociimage.PauseImage, filepath.Join(n.Dir, "runc"), CNIBinDir, filepath.Join(n.Dir, "cni", "net.d"))
	configPath := filepath.Join(n.Dir, "containerd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	n.ctrd, err = n.spawn("containerd", "/usr/bin/containerd", "--config", configPath)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := n.Ctr("version"); err == nil {
			break
		}
		if n.ctrd.exited() || time.Now().After(deadline) {
			return fmt.Errorf("containerd did not come up:\n%s", n.ctrd.logTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, spec := range []ociimage.Spec{ociimage.Pause(ociimage.DefaultBusybox), ociimage.Busybox(ociimage.DefaultBusybox)} {
		if err := n.ImportImage(spec); err != nil {
			return err
		}
	}
	return nil
}

// ImportImage writes spec's archive and imports it into the node's containerd
// (namespace k8s.io, where kubelet's images live).
func (n *Node) ImportImage(spec ociimage.Spec) error {
	path := filepath.Join(n.Dir, "images", strings.NewReplacer("/", "_", ":", "_").Replace(spec.Name)+".tar")
	if err := ociimage.WriteFile(path, spec); err != nil {
		return err
	}
	return n.ImportArchive(path)
}

// ImportArchive imports an OCI or Docker image archive into the node's containerd.
func (n *Node) ImportArchive(path string) error {
	if out, err := n.Ctr("image", "import", path); err != nil {
		return fmt.Errorf("import %s: %v: %s", path, err, out)
	}
	return nil
}

// Ctr runs Debian's ctr against the node's containerd, namespace k8s.io.
func (n *Node) Ctr(args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", n.ContainerdSocket, "--namespace", "k8s.io"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+childPath)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Kubectl runs the built kubectl with the admin kubeconfig and returns its
// standard output; the error carries the standard error.
func (n *Node) Kubectl(args ...string) (string, error) {
	return n.KubectlInput(nil, args...)
}

// KubectlInput is Kubectl with stdin (for "apply -f -").
func (n *Node) KubectlInput(stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(n.BinDir, "kubectl"), append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// EnsureNamespace creates namespace ns if needed, with what the missing
// controller-manager would add: the "default" service account and the
// kube-root-ca.crt config map (projected service-account volumes need it).
func (n *Node) EnsureNamespace(ctx context.Context, ns string) error {
	caData, err := os.ReadFile(n.CAFile)
	if err != nil {
		return err
	}
	for {
		err := n.ensureNamespace(ctx, ns, string(caData))
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s: %w", ns, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) ensureNamespace(ctx context.Context, ns, ca string) error {
	c := n.Client.CoreV1()
	if _, err := c.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := c.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": ca}}
	if _, err := c.ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// waitNodeReady waits for the Node's Ready condition, then removes the
// not-ready taint that the (absent) node lifecycle controller would remove.
func (n *Node) waitNodeReady(ctx context.Context) error {
	var last string
	for {
		node, err := n.Client.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
		if err == nil {
			last = "not Ready"
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					last = fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
					if c.Status == corev1.ConditionTrue {
						return n.untaint(ctx)
					}
				}
			}
		} else {
			last = err.Error()
		}
		if n.kubelet.exited() {
			return fmt.Errorf("kubelet exited (%v):\n%s", n.kubelet.err, n.kubelet.logTail(40))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready: %s\nkubelet:\n%s", n.NodeName, last, n.kubelet.logTail(40))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *Node) untaint(ctx context.Context) error {
	for {
		node, err := n.Client.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var keep []corev1.Taint
		for _, t := range node.Spec.Taints {
			if t.Key != "node.kubernetes.io/not-ready" {
				keep = append(keep, t)
			}
		}
		if len(keep) == len(node.Spec.Taints) {
			return nil
		}
		node.Spec.Taints = keep
		if _, err = n.Client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err == nil || !apierrors.IsConflict(err) {
			return err
		}
	}
}

// waitHTTP polls url until it answers 200 (with cfg's TLS and token when set).
func (n *Node) waitHTTP(p *process, url string, cfg *rest.Config, timeout time.Duration) error {
	client := http.DefaultClient
	if cfg != nil {
		rt, err := rest.TransportFor(cfg)
		if err != nil {
			return err
		}
		client = &http.Client{Transport: rt}
	}
	client.Timeout = 5 * time.Second
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		if p.exited() {
			return fmt.Errorf("exited (%v):\n%s", p.err, p.logTail(40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s\n%s", url, timeout, last, p.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeKubeconfig(path, server, ca, user, token string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: cdk8s
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %q
  user:
    token: %s
contexts:
- name: cdk8s
  context:
    cluster: cdk8s
    user: %q
    namespace: default
current-context: cdk8s
`, server, ca, user, token, user)), 0o600)
}

// hostIP is the address of the interface of the default route (no packet is
// sent), else the first non-loopback IPv4 address.
func hostIP() (string, error) {
	if c, err := net.Dial("udp4", "192.0.2.254:9"); err == nil {
		ip := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		if !ip.IsLoopback() && !ip.IsUnspecified() {
			return ip.String(), nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String(), nil
		}
	}
	return "", errors.New("no non-loopback IPv4 address for the node (kubelet refuses a loopback node IP)")
}

// podSubnet picks a 10.244.x.0/24 that no host route overlaps, so nodes in
// concurrent tests do not collide.
func podSubnet() (string, error) {
	routes, _ := os.ReadFile("/proc/net/route")
	for range 64 {
		var b [1]byte
		_, _ = rand.Read(b[:])
		x := int(b[0])
		// /proc/net/route has destinations in little-endian hex: 10.244.x.0 -> 00xxF40A
		if !strings.Contains(strings.ToUpper(string(routes)), fmt.Sprintf("%02XF40A", x)) {
			return fmt.Sprintf("10.244.%d.0/24", x), nil
		}
	}
	return "", errors.New("no free 10.244.x.0/24 for the pod network")
}

func freePorts(k int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range k {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// testDeadline is t's deadline (go test -timeout), zero when none is known.
func testDeadline(t testing.TB) time.Time {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			return dl
		}
	}
	return time.Time{}
}

func randHex(k int) string {
	b := make([]byte, k)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// WaitPodRunning waits until pod ns/name is Running with every container ready,
// and returns it. It fails early when the pod fails or a container cannot start
// (e.g. ErrImageNeverPull: an image not imported into the node's containerd).
func (n *Node) WaitPodRunning(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	for {
		p, err := n.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				return p, fmt.Errorf("pod %s/%s %s: %s", ns, name, p.Status.Phase, p.Status.Message)
			}
			ready := p.Status.Phase == corev1.PodRunning
			for _, c := range p.Status.ContainerStatuses {
				if w := c.State.Waiting; w != nil && (w.Reason == "ErrImageNeverPull" || w.Reason == "CreateContainerError" || w.Reason == "CreateContainerConfigError" || w.Reason == "CrashLoopBackOff") {
					return p, fmt.Errorf("pod %s/%s container %s: %s: %s", ns, name, c.Name, w.Reason, w.Message)
				}
				ready = ready && c.Ready
			}
			if ready {
				return p, nil
			}
		} else if !apierrors.IsNotFound(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			ev, _ := n.Kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name="+name)
			return nil, fmt.Errorf("pod %s/%s not running: %w\nevents:\n%s", ns, name, ctx.Err(), ev)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
