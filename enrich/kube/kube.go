// Package kube keeps the Kubernetes metadata of this node's pods, from a
// client-go informer limited to the node (spec.nodeName), so a DaemonSet pod
// watches only its own node's share of the cluster. It serves two readers:
// documents (orchestrator.* by pod UID) and the kernel engine (a callback for
// each container that starts, with what its selectors match on).
package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
)

// Container is a container of one of the node's pods, as its pod says.
type Container struct {
	ID         string // the runtime's id, without the "containerd://" scheme
	Name       string
	Image      string // as the pod spec names it
	ImageName  string
	ImageTag   string
	Privileged bool
	Pod        *enrich.Pod
	PodUID     string
	Labels     map[string]string
	// Running is when the kubelet reported it running (its start time).
	Running time.Time
}

// Config configures Watch.
type Config struct {
	NodeName    string // required: the node this agent runs on (NODE_NAME)
	ClusterName string // orchestrator.cluster.name, from configuration
	// OnContainer is called (on the informer's goroutine) when a container of
	// the node's pods is first seen running, and OnRemove when its pod goes.
	OnContainer func(Container)
	OnRemove    func(containerID string)
	Resync      time.Duration
}

// Pods is the node's pods, by UID.
type Pods struct {
	cfg       Config
	clusterID string

	mu     sync.RWMutex
	pods   map[string]*enrich.Pod
	labels map[string]map[string]string // by pod UID
	seen   map[string]bool              // container ids already passed to OnContainer
}

// Watch starts the informer and waits for its first sync. The cluster id is
// the kube-system namespace's UID, as Elastic's integrations use.
func Watch(ctx context.Context, client kubernetes.Interface, cfg Config) (*Pods, error) {
	if cfg.NodeName == "" {
		return nil, fmt.Errorf("kubernetes: no node name (set NODE_NAME from the downward API)")
	}
	p := &Pods{cfg: cfg, pods: map[string]*enrich.Pod{}, labels: map[string]map[string]string{}, seen: map[string]bool{}}
	if ns, err := client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err == nil {
		p.clusterID = string(ns.UID)
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, cfg.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
		}))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.update(o) },
		UpdateFunc: func(_, o any) { p.update(o) },
		DeleteFunc: p.remove,
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("kubernetes: pod informer did not sync: %w", ctx.Err())
	}
	return p, nil
}

// ClusterID is the kube-system namespace's UID; empty if it could not be read.
func (p *Pods) ClusterID() string { return p.clusterID }

// Pod returns a pod's metadata by UID, nil when unknown.
func (p *Pods) Pod(uid string) *enrich.Pod {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.pods[uid]
}

// Labels returns a pod's labels by UID.
func (p *Pods) Labels(uid string) (map[string]string, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	l, ok := p.labels[uid]
	return l, ok
}

func (p *Pods) update(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	meta := p.podMeta(pod)
	var started []Container
	p.mu.Lock()
	p.pods[string(pod.UID)] = meta
	p.labels[string(pod.UID)] = pod.Labels
	for _, st := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses) {
		id := stripScheme(st.ContainerID)
		if id == "" || st.State.Running == nil || p.seen[id] {
			continue
		}
		p.seen[id] = true
		c := Container{ID: id, Name: st.Name, Pod: meta, PodUID: string(pod.UID), Labels: pod.Labels,
			Running: st.State.Running.StartedAt.Time, Privileged: privileged(pod, st.Name)}
		c.Image = specImage(pod, st.Name, st.Image)
		c.ImageName, c.ImageTag = runtime.SplitImage(c.Image)
		started = append(started, c)
	}
	p.mu.Unlock()
	if p.cfg.OnContainer != nil {
		for _, c := range started {
			p.cfg.OnContainer(c)
		}
	}
}

func (p *Pods) remove(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	var gone []string
	p.mu.Lock()
	delete(p.pods, string(pod.UID))
	delete(p.labels, string(pod.UID))
	for _, st := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses) {
		if id := stripScheme(st.ContainerID); id != "" && p.seen[id] {
			delete(p.seen, id)
			gone = append(gone, id)
		}
	}
	p.mu.Unlock()
	if p.cfg.OnRemove != nil {
		for _, id := range gone {
			p.cfg.OnRemove(id)
		}
	}
}

// podMeta is orchestrator.* for a pod: labels and annotations as "key:value".
func (p *Pods) podMeta(pod *corev1.Pod) *enrich.Pod {
	m := &enrich.Pod{ClusterID: p.clusterID, ClusterName: p.cfg.ClusterName, Namespace: pod.Namespace, Name: pod.Name, IP: pod.Status.PodIP}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		m.ParentType = ref.Kind
	}
	for _, k := range slices.Sorted(maps.Keys(pod.Labels)) {
		m.Labels = append(m.Labels, k+":"+pod.Labels[k])
	}
	for _, k := range slices.Sorted(maps.Keys(pod.Annotations)) {
		m.Annotations = append(m.Annotations, k+":"+pod.Annotations[k])
	}
	return m
}

// specImage is the image as the pod spec names it ("nginx:1.27"); the status
// may hold the resolved reference instead.
func specImage(pod *corev1.Pod, name, status string) string {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return c.Image
		}
	}
	return status
}

func privileged(pod *corev1.Pod, name string) bool {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == name && c.SecurityContext != nil && c.SecurityContext.Privileged != nil {
			return *c.SecurityContext.Privileged
		}
	}
	return false
}

// stripScheme turns "containerd://<id>" into "<id>".
func stripScheme(id string) string {
	if _, rest, ok := strings.Cut(id, "://"); ok {
		return rest
	}
	return id
}
