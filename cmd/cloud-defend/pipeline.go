package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/container"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
	"github.com/cloud-defend/cloud-defend/internal/version"
)

// pipeline moves kernel events to documents: engine → enrich → ecs → publish.
// Agent-managed and standalone Elasticsearch modes share it.
type pipeline struct {
	engine  *ebpf.Engine
	enrich  *enrich.Enricher
	enc     *ecs.Encoder
	meta    func() (ecs.Meta, bool) // false while no policy is in force
	publish func(ecs.Doc)
	logf    func(format string, args ...any)

	events atomic.Uint64
}

// newPipeline builds the enrichment for this node. Without a visible cgroup2
// mount, documents carry no container ids, and the log says so.
func newPipeline(engine *ebpf.Engine, agentID string, meta func() (ecs.Meta, bool), publish func(ecs.Doc), logf func(string, ...any)) *pipeline {
	cg, err := container.Open()
	var cgroupID func(string) (uint64, error)
	if err != nil {
		logf("no container ids in events: %v", err)
		cg = nil
	} else {
		cgroupID = cg.ID
	}
	tab := proctree.New(proctree.Config{AgentID: agentID, ProcRoot: procRoot(), CgroupID: cgroupID})
	enc := ecs.NewEncoder(ecs.Agent{ID: agentID, Version: version.Version}, ecs.LocalHost(procRoot(), "/etc"), nil, ecs.BootTime(), engine.SelectorNames)
	enr := enrich.New(tab, cg)
	enr.Runtimes = runtimeSources(logf)
	return &pipeline{engine: engine, enrich: enr, enc: enc, meta: meta, publish: publish, logf: logf}
}

// Where runtimes listen by default; CRI_SOCKET and DOCKER_SOCKET (paths, comma
// separated) replace these lists.
var (
	defaultCRISockets    = []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}
	defaultDockerSockets = []string{"/var/run/docker.sock", "/run/podman/podman.sock"}
)

// runtimeSources finds the container runtimes' APIs for image names and
// privilege; nil when none is there (documents then carry container ids only).
func runtimeSources(logf func(string, ...any)) *runtime.Cache {
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
			logf("container runtime: %v", err)
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
		logf("no container runtime socket found (CRI_SOCKET, DOCKER_SOCKET): documents carry container ids without images")
		return nil
	}
	return runtime.NewCache(sources...)
}

// run reads events until the engine closes. The /proc scan runs once events
// flow, so no process starts unseen in between.
func (p *pipeline) run() {
	if err := p.enrich.Table.Scan(); err != nil {
		p.logf("scan running processes: %v", err)
	}
	emit := func(ev *ebpf.Event, ctx *ecs.Context) {
		m, ok := p.meta()
		if !ok {
			return // no policy in force yet: nothing was decided
		}
		if err := p.enc.EncodeAll(ev, ctx, m, p.publish); err != nil {
			p.logf("encode event: %v", err)
		}
	}
	for {
		ev, err := p.engine.Read()
		if err != nil {
			if !errors.Is(err, ebpf.ErrClosed) {
				p.logf("read kernel events: %v", err)
			}
			p.enrich.Flush(emit)
			return
		}
		p.events.Add(1)
		p.enrich.Handle(&ev, emit)
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
			if !now.Before(nextHB) {
				p.publish(p.enc.Heartbeat(m, blockEnabled(), now))
				nextHB = now.Add(hb)
			}
			if !now.Before(nextMT) {
				c := p.counters()
				if extra != nil {
					extra(&c)
				}
				p.publish(p.enc.Metrics(m, c, now))
				nextMT = now.Add(mt)
			}
		}
	}
}
