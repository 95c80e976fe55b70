package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/cloud"
	"github.com/cloud-defend/cloud-defend/enrich/container"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/kube"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/internal/version"
	"github.com/cloud-defend/cloud-defend/output"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// pipeline moves kernel events to documents: engine → enrich → ecs → publish.
// Agent-managed and standalone Elasticsearch modes share it.
type pipeline struct {
	engine  *ebpf.Engine
	enrich  *enrich.Enricher
	enc     *ecs.Encoder
	meta    func() (ecs.Meta, bool) // false while no policy is in force
	publish func(ecs.Doc)
	flush   func() // hands what publish took to the OS, at the end of each batch read
	// log takes each message at the level meant: under the agent, its level is
	// the log.level the agent files the line under.
	log output.Logger

	events           atomic.Uint64
	cgroups          *container.Cgroups
	containerCgroups sync.Map // container id → appliedContainer given to the engine

	// throttle bounds alert documents per container and selector set (nil:
	// off). publishDoc applies it to the documents of cur, the event being
	// encoded; it is a field so the event loop does not make a closure per event.
	throttle   *throttle.Limiter
	cur        *event.Event
	curCtx     *enrich.Context
	publishDoc func(ecs.Doc)
}

// appliedContainer is what the kernel engine was told about a container.
type appliedContainer struct {
	cgid  uint64
	image bool // with its image
}

// newPipeline builds the enrichment for this node. Without a visible cgroup2
// mount, documents carry no container ids, and the log says so.
func newPipeline(engine *ebpf.Engine, agentID string, meta func() (ecs.Meta, bool), publish func(ecs.Doc), flush func(), log output.Logger) *pipeline {
	cg, err := container.Open()
	var cgroupID func(string) (uint64, error)
	if err != nil {
		log.Warnf("no container ids in events: %v", err)
		cg = nil
	} else {
		cgroupID = cg.ID
	}
	tab := proctree.New(proctree.Config{AgentID: agentID, ProcRoot: procRoot(), CgroupID: cgroupID})
	enc := ecs.NewEncoder(ecs.Agent{ID: agentID, Version: version.Version}, host.Local(procRoot(), "/etc"), nil, host.BootTime(), engine.SelectorNames)
	enr := enrich.New(tab, cg)
	enr.Runtimes = runtimeSources(log)
	p := &pipeline{engine: engine, enrich: enr, enc: enc, meta: meta, publish: publish, flush: flush, log: log, cgroups: cg,
		throttle: throttle.New(throttle.Config{Rate: throttle.DefaultRate, Burst: throttle.DefaultBurst})}
	p.publishDoc = p.publishThrottled
	return p
}

// publishThrottled publishes a document of the event being encoded; alerts
// go through the throttle, which may first hand back the summary of the
// window it closes. Log documents are never throttled.
func (p *pipeline) publishThrottled(d ecs.Doc) {
	if p.throttle == nil || !strings.HasPrefix(d.Stream, "logs-cloud_defend.alerts-") {
		p.publish(d)
		return
	}
	k := throttle.Key{Selectors: p.cur.Matched, Generation: p.cur.Generation, Type: uint8(p.cur.Op.Type())}
	if c := p.curCtx; c != nil && c.Container != nil {
		k.Container = c.Container.ID
	}
	ok, closed := p.throttle.Allow(k, time.Now(), d.Body, d.Stream)
	if closed != nil {
		p.publishSummary(*closed)
	}
	if ok {
		p.publish(d)
	}
}

func (p *pipeline) publishSummary(s throttle.Summary) {
	id, body, err := throttle.Document(s, p.throttle.Config(), time.Now())
	if err != nil {
		p.log.Errorf("%v", err)
		return
	}
	p.publish(ecs.Doc{Stream: s.Stream, ID: id, Body: body})
}

// Where runtimes listen by default; CRI_SOCKET and DOCKER_SOCKET (paths, comma
// separated) replace these lists.
var (
	defaultCRISockets    = []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}
	defaultDockerSockets = []string{"/var/run/docker.sock", "/run/podman/podman.sock"}
)

// runtimeSources finds the container runtimes' APIs for image names and
// privilege; nil when none is there (documents then carry container ids only).
func runtimeSources(log output.Logger) *runtime.Cache {
	pick := func(env string, defaults []string) []string {
		if v := os.Getenv(env); v != "" {
			return strings.Split(v, ",")
		}
		return defaults
	}
	var sources []runtime.Source
	for _, s := range pick("CRI_SOCKET", defaultCRISockets) {
		if _, err := os.Stat(s); err != nil {
			continue
		}
		c, err := runtime.NewCRI(s)
		if err != nil {
			log.Warnf("container runtime: %v", err)
			continue
		}
		sources = append(sources, c)
	}
	for _, s := range pick("DOCKER_SOCKET", defaultDockerSockets) {
		if _, err := os.Stat(s); err == nil {
			sources = append(sources, runtime.NewDockerAPI(s))
		}
	}
	if len(sources) == 0 {
		log.Warnf("no container runtime socket found (CRI_SOCKET, DOCKER_SOCKET): documents carry container ids without images")
		return nil
	}
	return runtime.NewCache(sources...)
}

// run reads events until the engine closes. The /proc scan runs once events
// flow, so no process starts unseen in between.
func (p *pipeline) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer p.enrich.Runtimes.Close() // its retries
	p.watchKubernetes(ctx, p.cgroups)
	if os.Getenv("CLOUD_METADATA") != "off" {
		go func() {
			if c := cloud.Detect(ctx, cloud.Default, 2*time.Second); c != nil {
				p.enc.SetCloud(c)
				p.log.Infof("cloud: %s %s, instance %s", c.Provider, c.Region, c.InstanceID)
			}
		}()
	}
	if err := p.enrich.Table.Scan(); err != nil {
		p.log.Errorf("scan running processes: %v", err)
	}
	emit := func(ev *event.Event, ctx *enrich.Context) {
		m, ok := p.meta()
		if !ok {
			return // no policy in force yet: nothing was decided
		}
		p.cur, p.curCtx = ev, ctx
		if err := p.enc.EncodeAll(ev, ctx, m, p.publishDoc); err != nil {
			p.log.Errorf("encode event: %v", err)
		}
		p.cur, p.curCtx = nil, nil
	}
	for {
		ev, err := p.engine.Read()
		if err != nil {
			if !errors.Is(err, ebpf.ErrClosed) {
				p.log.Errorf("read kernel events: %v", err)
			}
			p.enrich.Flush(emit)
			if p.throttle != nil {
				// Every suppressed alert is counted in some summary.
				for _, s := range p.throttle.Flush(time.Now()) {
					p.publishSummary(s)
				}
			}
			p.flush()
			return
		}
		p.events.Add(1)
		p.enrich.Handle(&ev, emit)
		// Documents go to the OS once per batch the kernel delivered, not one
		// write each: until then they are as safe as the events still in the ring.
		if !p.engine.Buffered() {
			p.flush()
		}
	}
}

// counters gathers the pipeline's numbers for the metrics stream.
func (p *pipeline) counters() ecs.Counters {
	c := ecs.Counters{Events: p.events.Load(), ProcessesTracked: p.enrich.Table.Stats().Tracked, RSSBytes: rss()}
	if s, err := p.engine.Stats(); err == nil {
		c.RingDrops = s.RingbufDrops
	}
	return c
}

// rss is this process's resident set size, from /proc/self/statm.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// periodic publishes the heartbeat and metrics documents every period (read
// each tick: the input unit may change them) until stop closes.
func (p *pipeline) periodic(stop <-chan struct{}, periods func() (heartbeat, metrics time.Duration), blockEnabled func() bool, extra func(*ecs.Counters)) {
	hb, mt := periods()
	nextHB, nextMT := time.Now(), time.Now().Add(mt)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			m, ok := p.meta()
			if !ok {
				continue
			}
			hb, mt = periods()
			if p.throttle != nil {
				for _, s := range p.throttle.Expire(now) {
					p.publishSummary(s)
				}
			}
			if !now.Before(nextHB) {
				p.publish(p.enc.Heartbeat(m, blockEnabled(), now))
				nextHB = now.Add(hb)
			}
			if !now.Before(nextMT) {
				c := p.counters()
				if extra != nil {
					extra(&c)
				}
				d := p.enc.Metrics(m, c, now)
				suppressed, _ := p.throttle.Stats()
				d.Body = throttle.AddMetric(d.Body, suppressed)
				p.publish(d)
				nextMT = now.Add(mt)
			}
			p.flush()
		}
	}
}

// watchKubernetes follows this node's pods when NODE_NAME is set: their
// metadata goes into documents (orchestrator.*) and, for each container that
// starts, into the kernel engine, so selectors on namespaces, pod labels and
// images cover it. The config is in-cluster, or KUBECONFIG's. It logs how long
// after a container started its selectors applied.
func (p *pipeline) watchKubernetes(ctx context.Context, cg *container.Cgroups) {
	node := os.Getenv("NODE_NAME")
	if node == "" {
		return
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		cfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	}
	if err != nil {
		p.log.Warnf("kubernetes: no API access (%v): documents carry no pod metadata", err)
		return
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		p.log.Errorf("kubernetes: %v", err)
		return
	}
	clusterName := os.Getenv("CLUSTER_NAME")
	var pods atomic.Pointer[kube.Pods]
	// apply gives a container's pod metadata to the kernel engine, once.
	// It runs again when the image arrives after the first time (a runtime
	// slow to answer): image-scoped selectors then apply too.
	apply := func(cgid uint64, id, image string, pod *enrich.Pod, labels map[string]string, how string) {
		applied := appliedContainer{cgid: cgid, image: image != ""}
		if v, done := p.containerCgroups.LoadOrStore(id, applied); done {
			if v.(appliedContainer).image || !applied.image {
				return
			}
			p.containerCgroups.Store(id, applied)
			how += ", with the image the runtime gave late"
		}
		// The policy's image conditions name the repository's last segment
		// (containerImageName: nginx) and the repository (containerImageFullName),
		// not the reference with its tag.
		name, tag, repo := runtime.PolicyImage(image)
		op := policy.Operation{ContainerImageName: name, ContainerImageTag: tag, ContainerImageFullName: repo,
			KubernetesClusterID: pod.ClusterID, KubernetesClusterName: clusterName, KubernetesNamespace: pod.Namespace,
			KubernetesPodName: pod.Name, KubernetesPodLabels: labels}
		if err := p.engine.SetContainer(cgid, op); err != nil {
			p.containerCgroups.Delete(id)
			p.log.Errorf("kubernetes: container %s: %v", id, err)
			return
		}
		// Measured from the container's first process, as the kernel started it.
		since := "?"
		if first, ok := p.enrich.Table.FirstStart(cgid); ok {
			since = (event.Now() - first).Round(time.Microsecond).String()
		}
		p.log.Infof("kubernetes: selectors apply to container %s of pod %s/%s %s after it started (%s)", id[:min(12, len(id))], pod.Namespace, pod.Name, since, how)
	}
	// First sight: the container's first event carries its pod UID (cgroup
	// path); the informer knew the pod since it was scheduled.
	p.enrich.OnContainer = func(cgid uint64, c *enrich.Container) {
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
		if _, done := p.containerCgroups.Load(c.ID); done {
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
			p.log.Warnf("kubernetes: no cgroup for container %s of pod %s/%s: its pod selectors do not apply", c.ID, c.Pod.Namespace, c.Pod.Name)
			return
		}
		apply(cgid, c.ID, c.Image, c.Pod, c.Labels, "kubelet status")
	}
	onRemove := func(id string) {
		if v, ok := p.containerCgroups.LoadAndDelete(id); ok {
			p.engine.RemoveContainer(v.(appliedContainer).cgid)
		}
		p.enrich.Runtimes.Forget(id)
	}
	go func() {
		w, err := kube.Watch(ctx, client, kube.Config{NodeName: node, ClusterName: clusterName, OnContainer: onContainer, OnRemove: onRemove, Resync: 10 * time.Minute})
		if err != nil {
			p.log.Errorf("%v", err) // it says kubernetes: itself
			return
		}
		pods.Store(w)
		p.enrich.SetPods(w.Pod)
		p.log.Infof("kubernetes: watching the pods of node %s (cluster id %s)", node, w.ClusterID())
	}()
}
