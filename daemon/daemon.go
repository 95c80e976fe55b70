// Package daemon runs cloud-defend on a node: it opens the kernel engine,
// moves its events through one pipeline (enrich → ecs → throttle → a sink),
// publishes the periodic heartbeat and metrics documents, follows the node's
// Kubernetes pods, and shuts all of it down in one order. A Controller supplies
// the policy: a file and SIGHUP standalone (Standalone), the Elastic Agent's
// units agent-managed (Agent). cmd/cloud-defend parses flags and calls Run.
package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/enrich/cloud"
	"github.com/cloud-defend/cloud-defend/enrich/container"
	"github.com/cloud-defend/cloud-defend/enrich/host"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/enrich/runtime"
	"github.com/cloud-defend/cloud-defend/internal/version"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

// Logger takes each message at the level meant (logp.Logger satisfies it).
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}

// shutdownFlush bounds how long the sink may take to deliver what it holds
// at exit; the Elasticsearch sink keeps the rest spooled for the next start.
const shutdownFlush = 20 * time.Second

// Config is what Run needs.
type Config struct {
	Engine  ebpf.Options
	AgentID string // agent.id; empty: this node's machine id
	Sink    Sink
	Log     Logger
	// Throttle bounds alerts per container and selector set; Rate 0 turns it
	// off. SetInput may change it.
	Throttle throttle.Config
	// Control supplies policies until it returns.
	Control Controller
}

// Controller supplies the policy while the daemon runs.
type Controller interface {
	// Control runs until ctx ends or it stops the daemon; its error is Run's.
	// openErr is why the kernel engine did not open (d has no engine then): a
	// controller that can report it elsewhere (the agent, on every unit) does.
	Control(ctx context.Context, d *Daemon, openErr error) error
}

// Daemon is a running node agent, as its controller sees it.
type Daemon struct {
	engine *ebpf.Engine
	sink   Sink
	log    Logger
	pipe   *pipeline
	enr    *enrich.Enricher
	enc    *ecs.Encoder
	// cgroups finds a container's cgroup (nil without cgroup v2); applied is
	// what the engine was told about each container (id → appliedContainer).
	cgroups *container.Cgroups
	applied sync.Map

	mu        sync.Mutex
	meta      ecs.Meta
	metaOK    bool
	heartbeat time.Duration
	metrics   time.Duration
}

// Input is what the policy in force adds to documents and periods.
type Input struct {
	Meta                     ecs.Meta
	HeartbeatPeriod, Metrics time.Duration
	Throttle                 throttle.Config
}

// Run opens the engine, runs the pipeline and the controller, and when the
// controller returns stops in this order: the kernel links are released (no
// new events), the pipeline drains the ring, and the sink delivers what it
// holds within shutdownFlush.
func Run(ctx context.Context, cfg Config) error {
	d := &Daemon{sink: cfg.Sink, log: cfg.Log, heartbeat: 30 * time.Minute, metrics: 24 * time.Hour}
	engine, err := ebpf.Open(cfg.Engine)
	if err != nil {
		cerr := cfg.Control.Control(ctx, d, err)
		d.closeSink()
		return cerr
	}
	d.engine = engine
	defer engine.Close()
	// Loading decoded the BPF object and the kernel's BTF: garbage now, and
	// the largest heap this daemon has. Give it back rather than keep it
	// resident until the scavenger gets to it.
	debug.FreeOSMemory()
	if cfg.Sink == nil {
		// Nowhere to send events (the agent's data path failed): the
		// controller reports why and the policy is still enforced.
		return cfg.Control.Control(ctx, d, nil)
	}
	for _, line := range DescribeAdoption(engine, cfg.Engine.PinPath, cfg.Engine.DryRun) {
		cfg.Log.Infof("%s", line)
	}
	agentID := cfg.AgentID
	if agentID == "" {
		agentID = NodeID()
	}
	d.enr, d.pipe = d.newPipeline(engine, agentID, throttle.New(cfg.Throttle))

	nodeCtx, stopNode := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer d.enr.Runtimes.Close() // its retries
		d.watchNode(nodeCtx)
		d.pipe.run()
	}()
	go func() {
		defer wg.Done()
		d.periodic(nodeCtx)
	}()

	cerr := cfg.Control.Control(ctx, d, nil)
	// Release the BPF links first (no more events), then drain the ring.
	engine.Close()
	stopNode()
	wg.Wait()
	d.closeSink()
	return cerr
}

func (d *Daemon) closeSink() {
	if d.sink == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownFlush)
	defer cancel()
	if err := d.sink.Close(ctx); err != nil {
		d.log.Errorf("flush events on exit: %v", err)
	}
}

// Engine is the kernel engine, nil when it did not open.
func (d *Daemon) Engine() *ebpf.Engine { return d.engine }

// Apply puts a policy in force; on error the running one stays.
func (d *Daemon) Apply(p *policy.Policy) error { return d.engine.Swap(p) }

// SetInput sets what documents are stamped with, the periodic documents'
// periods and the alert throttle: the policy in force's input. Until the
// first call no decision is encoded (nothing was decided under a policy).
func (d *Daemon) SetInput(in Input) {
	d.mu.Lock()
	d.meta, d.metaOK = in.Meta, true
	if in.HeartbeatPeriod > 0 {
		d.heartbeat = in.HeartbeatPeriod
	}
	if in.Metrics > 0 {
		d.metrics = in.Metrics
	}
	d.mu.Unlock()
	if d.pipe != nil && d.pipe.throttle != nil {
		d.pipe.throttle.SetConfig(in.Throttle)
	}
}

func (d *Daemon) input() (ecs.Meta, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta, d.metaOK
}

func (d *Daemon) periods() (heartbeat, metrics time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.heartbeat, d.metrics
}

// BlockingInForce reports whether blocking responses block now.
func (d *Daemon) BlockingInForce() bool { return d.engine != nil && d.engine.BlockingInForce() }

// Counters are the pipeline's, the engine's and the sink's numbers, for the
// metrics document.
func (d *Daemon) Counters() ecs.Counters {
	c := ecs.Counters{RSSBytes: rss()}
	if d.pipe != nil {
		c.Events = d.pipe.events.Load()
		c.ProcessesTracked = d.enr.Table.Stats().Tracked
	}
	if d.engine != nil {
		if s, err := d.engine.Stats(); err == nil {
			c.RingDrops = s.RingbufDrops
		}
	}
	if d.sink != nil {
		d.sink.Counters(&c)
	}
	return c
}

// newPipeline builds the enrichment for this node. Without a visible cgroup2
// mount, documents carry no container ids, and the log says so.
func (d *Daemon) newPipeline(engine *ebpf.Engine, agentID string, lim *throttle.Limiter) (*enrich.Enricher, *pipeline) {
	cg, err := container.Open()
	var cgroupID func(string) (uint64, error)
	if err != nil {
		d.log.Warnf("no container ids in events: %v", err)
		cg = nil
	} else {
		cgroupID = cg.ID
	}
	tab := proctree.New(proctree.Config{AgentID: agentID, ProcRoot: ProcRoot(), CgroupID: cgroupID})
	enc := ecs.NewEncoder(ecs.Agent{ID: agentID, Version: version.Version}, host.Local(ProcRoot(), "/etc"), nil, host.BootTime(), engine.SelectorNames)
	enr := enrich.New(tab, cg)
	enr.Runtimes = runtimeSources(d.log)
	d.enc = enc
	d.cgroups = cg
	return enr, newPipeline(engine, enr, enc, d.sink, d.input, lim, d.log)
}

// watchNode starts what follows the node beside the event stream: the pods
// (Kubernetes), the cloud instance, and the scan of running processes, which
// runs once events flow so no process starts unseen in between.
func (d *Daemon) watchNode(ctx context.Context) {
	d.watchKubernetes(ctx)
	if os.Getenv("CLOUD_METADATA") != "off" {
		go func() {
			if c := cloud.Detect(ctx, cloud.Default, 2*time.Second); c != nil {
				d.enc.SetCloud(c)
				d.log.Infof("cloud: %s %s, instance %s", c.Provider, c.Region, c.InstanceID)
			}
		}()
	}
	if err := d.enr.Table.Scan(); err != nil {
		d.log.Errorf("scan running processes: %v", err)
	}
}

// periodic publishes the heartbeat and metrics documents every period (read
// each tick: the input may change them) and closes expired throttle windows,
// until ctx ends.
func (d *Daemon) periodic(ctx context.Context) {
	// The periods are the input's, which arrives after this starts: the first
	// heartbeat goes as soon as an input is in force, the first metrics a
	// period later, and a changed period applies from the last document sent.
	var lastHB, lastMT time.Time
	const tickEvery = time.Second
	// due: a period has passed, give or take half a tick (a tick that fires a
	// little late must not push the next document a whole tick further).
	due := func(now, last time.Time, period time.Duration) bool { return now.Sub(last)+tickEvery/2 >= period }
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	lim := d.pipe.throttle
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			m, ok := d.input()
			if !ok {
				continue
			}
			hb, mt := d.periods()
			if lastMT.IsZero() {
				lastMT = now
			}
			if lim != nil {
				for _, s := range lim.Expire(now) {
					d.pipe.publishSummary(s)
				}
			}
			if lastHB.IsZero() || due(now, lastHB, hb) {
				d.sink.Publish(d.enc.Heartbeat(m, d.BlockingInForce(), now))
				lastHB = now
			}
			if due(now, lastMT, mt) {
				doc := d.enc.Metrics(m, d.Counters(), now)
				suppressed, _ := lim.Stats()
				doc.Body = throttle.AddMetric(doc.Body, suppressed)
				d.sink.Publish(doc)
				lastMT = now
			}
			d.sink.Flush()
		}
	}
}

// Where runtimes listen by default; CRI_SOCKET and DOCKER_SOCKET (paths, comma
// separated) replace these lists.
var (
	defaultCRISockets    = []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}
	defaultDockerSockets = []string{"/var/run/docker.sock", "/run/podman/podman.sock"}
)

// runtimeSources finds the container runtimes' APIs for image names and
// privilege; nil when none is there (documents then carry container ids only).
func runtimeSources(log Logger) *runtime.Cache {
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

// ProcRoot is the host's /proc: HOSTFS_PROC_PATH in a container.
func ProcRoot() string {
	if p := os.Getenv("HOSTFS_PROC_PATH"); p != "" {
		return p
	}
	return "/proc"
}

// NodeID is agent.id standalone: the machine id, stable across restarts, else
// the hostname.
func NodeID() string {
	if b, err := os.ReadFile("/etc/machine-id"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id
		}
	}
	h, _ := os.Hostname()
	return h
}

// Summary says what is enforced and what is only detected, and why.
func Summary(e *ebpf.Engine, p *policy.Policy, dryRun bool) []string {
	out := []string{fmt.Sprintf("policy %s: %s", p.Name(), p)}
	switch {
	case !e.LSM().Available:
		out = append(out, "blocking is OFF: "+e.LSM().Reason,
			"detection only: exec and fork selectors are evaluated in user space after each container exec and fork (reported, never blocked)")
		if f := e.FileSyscalls(); f.Available {
			msg := "file selectors are evaluated in user space from workloads' file syscalls (openat, creat, unlink, rename, chmod) after they return: reported, never blocked"
			if f.Reason != "" {
				msg += "; " + f.Reason
			}
			out = append(out, msg)
		} else {
			out = append(out, f.Reason)
		}
		if n := e.NetworkSyscalls(); n.Available {
			msg := "network selectors are evaluated in user space from workloads' connect, bind, accept and UDP sendto/sendmsg syscalls after they return: reported, never blocked"
			if n.Reason != "" {
				msg += "; " + n.Reason
			}
			out = append(out, msg)
		} else {
			out = append(out, n.Reason)
		}
	case dryRun:
		out = append(out, "dry run: blocking responses are reported as blocked=false and never block")
	case p.Blocks(policy.Process) || p.Blocks(policy.File) || p.Blocks(policy.Network):
		out = append(out, fmt.Sprintf("blocking is ON in containers for responses with block (process: %t, file: %t, network: %t)",
			p.Blocks(policy.Process), p.Blocks(policy.File), p.Blocks(policy.Network)))
	default:
		out = append(out, "blocking is available; this policy has no blocking responses")
	}
	if s := e.Sessions(); !s.Available {
		out = append(out, s.Reason)
	}
	return out
}
