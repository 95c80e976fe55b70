package daemon

import (
	"context"
	"os"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/kube"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// appliedContainer is what the kernel engine was told about a container.
type appliedContainer struct {
	cgid  uint64
	image bool // with its image
}

// watchKubernetes follows this node's pods when NODE_NAME is set: their
// metadata goes into documents (orchestrator.*) and, for each container that
// starts, into the kernel engine, so selectors on namespaces, pod labels and
// images cover it. The config is in-cluster, or KUBECONFIG's. It logs how long
// after a container started its selectors applied.
func (d *Daemon) watchKubernetes(ctx context.Context) {
	cg := d.cgroups
	node := os.Getenv("NODE_NAME")
	if node == "" {
		return
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		cfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	}
	if err != nil {
		d.log.Warnf("kubernetes: no API access (%v): documents carry no pod metadata", err)
		return
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		d.log.Errorf("kubernetes: %v", err)
		return
	}
	clusterName := os.Getenv("CLUSTER_NAME")
	var pods atomic.Pointer[kube.Pods]
	// apply gives a container's pod metadata to the kernel engine, once.
	// It runs again when the image arrives after the first time (a runtime
	// slow to answer): image-scoped selectors then apply too.
	apply := func(cgid uint64, id, image string, pod *enrich.Pod, labels map[string]string, how string) {
		applied := appliedContainer{cgid: cgid, image: image != ""}
		if v, done := d.applied.LoadOrStore(id, applied); done {
			if v.(appliedContainer).image || !applied.image {
				return
			}
			d.applied.Store(id, applied)
			how += ", with the image the runtime gave late"
		}
		// The policy's image conditions name the repository's last segment
		// (containerImageName: nginx) and the repository (containerImageFullName),
		// not the reference with its tag.
		name, tag, repo := runtime.PolicyImage(image)
		op := policy.Operation{ContainerImageName: name, ContainerImageTag: tag, ContainerImageFullName: repo,
			KubernetesClusterID: pod.ClusterID, KubernetesClusterName: clusterName, KubernetesNamespace: pod.Namespace,
			KubernetesPodName: pod.Name, KubernetesPodLabels: labels}
		if err := d.engine.SetContainer(cgid, op); err != nil {
			d.applied.Delete(id)
			d.log.Errorf("kubernetes: container %s: %v", id, err)
			return
		}
		// Measured from the container's first process, as the kernel started it.
		since := "?"
		if first, ok := d.enr.Table.FirstStart(cgid); ok {
			since = (event.Now() - first).Round(time.Microsecond).String()
		}
		d.log.Infof("kubernetes: selectors apply to container %s of pod %s/%s %s after it started (%s)", id[:min(12, len(id))], pod.Namespace, pod.Name, since, how)
	}
	// First sight: the container's first event carries its pod UID (cgroup
	// path); the informer knew the pod since it was scheduled.
	d.enr.OnContainer = func(cgid uint64, c *enrich.Container) {
		pp := pods.Load()
		if pp == nil || c.PodUID == "" {
			return
		}
		pod := pp.Pod(c.PodUID)
		labels, ok := pp.Labels(c.PodUID)
		if pod == nil || !ok {
			return
		}
		full := c.ImageName
		if c.ImageTag != "" {
			full += ":" + c.ImageTag
		}
		apply(cgid, c.ID, full, pod, labels, "first event")
	}
	// The kubelet's report, for containers whose first event came before the
	// pod reached the informer.
	onContainer := func(c kube.Container) {
		if cg == nil {
			return
		}
		if _, done := d.applied.Load(c.ID); done {
			return
		}
		var cgid uint64
		var ok bool
		for range 20 {
			if cgid, ok = cg.FindContainer(c.ID); ok {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !ok {
			d.log.Warnf("kubernetes: no cgroup for container %s of pod %s/%s: its pod selectors do not apply", c.ID, c.Pod.Namespace, c.Pod.Name)
			return
		}
		apply(cgid, c.ID, c.Image, c.Pod, c.Labels, "kubelet status")
	}
	onRemove := func(id string) {
		if v, ok := d.applied.LoadAndDelete(id); ok {
			cgid := v.(appliedContainer).cgid
			if err := d.engine.RemoveContainer(cgid); err != nil {
				d.log.Errorf("kubernetes: container %s is gone, but forgetting its cgroup %d failed: %v", id, cgid, err)
			}
		}
		d.enr.Runtimes.Forget(id)
	}
	go func() {
		w, err := kube.Watch(ctx, client, kube.Config{NodeName: node, ClusterName: clusterName, OnContainer: onContainer, OnRemove: onRemove, Resync: 10 * time.Minute})
		if err != nil {
			d.log.Errorf("%v", err) // it says kubernetes: itself
			return
		}
		pods.Store(w)
		d.enr.SetPods(w.Pod)
		d.log.Infof("kubernetes: watching the pods of node %s (cluster id %s)", node, w.ClusterID())
	}()
}
