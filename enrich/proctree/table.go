package proctree

import (
	"os"
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/event"
)

// Defaults of Config.
const (
	DefaultGrace       = 10 * time.Second
	DefaultMaxExited   = 1 << 16
	DefaultMaxPrevious = 8
)

// Config configures a Table.
type Config struct {
	AgentID string // agent.id, the first part of entity ids
	// HostPIDNamespace is the inode of the host's pid namespace; processes in
	// others are container workloads. Zero: read from ProcRoot/self/ns/pid.
	HostPIDNamespace uint32
	// ProcRoot is the host's /proc. Empty: $HOSTFS_PROC_PATH, else /proc.
	ProcRoot string
	// Grace is how long an exited process stays resolvable after its exit.
	Grace time.Duration
	// MaxExited bounds how many exited processes wait out their grace.
	MaxExited int
	// MaxPrevious bounds Process.Previous.
	MaxPrevious int
	// CgroupID maps a cgroup v2 path to its id for processes found in /proc
	// (container.Cgroups.ID); nil leaves their CgroupID zero.
	CgroupID func(path string) (uint64, error)
	// Clock returns the time since boot; nil uses CLOCK_BOOTTIME.
	Clock func() time.Duration
}

// Stats counts what the table did.
type Stats struct {
	Tracked int // records reachable by pid: live and exited
	Live    int
	Waiting int // exited records still within their grace

	Forks, Execs, Exits, Setsids uint64
	Adopted                      uint64 // unknown processes read from /proc on their first event
	Created                      uint64 // unknown processes built from an event alone
	MissedExits                  uint64 // processes found gone without an exit event
	Evicted                      uint64
}

// Table is the process table. See the package documentation for who may call
// what concurrently.
type Table struct {
	cfg Config

	mu     sync.RWMutex
	procs  map[uint32]*proc // the newest record of each pid still tracked
	peak   int              // largest len(procs) since the map was last rebuilt
	exited queue            // exited records in their grace, oldest first
	now    time.Duration    // the latest event time seen
	stats  Stats
	// suspects were missing from /proc at the last Reconcile; still missing at
	// the next, they are ended.
	suspects map[*proc]bool
}

// New returns an empty table; Scan fills it with what runs now.
func New(cfg Config) *Table {
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = os.Getenv("HOSTFS_PROC_PATH")
		if cfg.ProcRoot == "" {
			cfg.ProcRoot = "/proc"
		}
	}
	if cfg.HostPIDNamespace == 0 {
		cfg.HostPIDNamespace = nsInode(cfg.ProcRoot + "/self/ns/pid")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MaxExited <= 0 {
		cfg.MaxExited = DefaultMaxExited
	}
	if cfg.MaxPrevious == 0 {
		cfg.MaxPrevious = DefaultMaxPrevious
	}
	if cfg.Clock == nil {
		cfg.Clock = event.Now
	}
	return &Table{cfg: cfg, procs: map[uint32]*proc{}}
}

// Apply updates the table with a kernel event. Writer only. It keeps ev.Args.
func (t *Table) Apply(ev *event.Event) {
	pp := &ev.Process
	// Unknown processes are read from /proc before taking the lock, so readers
	// never wait on the filesystem. The writer is the only one to change the map,
	// so it may read it unlocked.
	var self, parent *proc
	if ev.Kind != event.Fork && t.find(pp) == nil {
		self = t.adopt(pp.PID, pp)
	}
	if t.procs[pp.PPID] == nil && pp.PPID != 0 {
		parent = t.adopt(pp.PPID, nil)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = max(t.now, ev.Time)
	if parent != nil && t.procs[parent.PID] == nil {
		t.insertFound(parent)
	}
	if self != nil && t.find(pp) == nil {
		t.insertFound(self)
	}
	switch ev.Kind {
	case event.Fork:
		t.fork(ev)
	case event.Exec:
		t.exec(ev)
	case event.Exit:
		t.exit(ev)
	case event.Setsid:
		t.setsid(ev)
	default:
		if p := t.known(pp); !p.Exited {
			t.observe(p, pp)
		}
	}
	t.expire()
}

// find returns the record of the process an event is about, nil when unknown.
// A thread's start time is its own, not its process's: it only has to be later.
func (t *Table) find(pp *event.Process) *proc {
	p := t.procs[pp.PID]
	if p == nil {
		return nil
	}
	if pp.TID == pp.PID || pp.TID == 0 {
		if !sameStart(p.Start, pp.Start) {
			return nil
		}
	} else if pp.Start < TruncStart(p.Start) {
		return nil
	}
	return p
}

// known returns the record of an event's process, making one from the event
// when the table does not know it.
func (t *Table) known(pp *event.Process) *proc {
	if p := t.find(pp); p != nil {
		return p
	}
	p := t.newProc(pp)
	t.stats.Created++
	t.insert(p, t.procs[pp.PPID])
	return p
}

func (t *Table) newProc(pp *event.Process) *proc {
	p := &proc{Process: Process{
		PID: pp.PID, PPID: pp.PPID, PGID: pp.PGID, SID: pp.SID, Start: pp.Start,
		Name: pp.Comm, UID: pp.UID, EUID: pp.EUID, GID: pp.GID, EGID: pp.EGID,
		CgroupID: pp.CgroupID, PIDNamespace: pp.PIDNamespace,
	}}
	if pp.TID != pp.PID && pp.TID != 0 {
		// A thread's start time is not the process's: take the tick it is known
		// to, so the entity id does not depend on which thread was seen first.
		p.Start = TruncStart(pp.Start)
	}
	p.setTTY(pp.TTYMajor, pp.TTYMinor)
	p.EntityID = EntityID(t.cfg.AgentID, p.PID, p.Start)
	return p
}

// insert makes p the record of its pid, links it to parent and its leaders and
// decides its entry leader.
func (t *Table) insert(p, parent *proc) {
	if old := t.procs[p.PID]; old != nil && old != p {
		t.displace(old)
	}
	t.procs[p.PID] = p
	t.peak = max(t.peak, len(t.procs))
	if !p.Exited {
		t.stats.Live++
	}
	t.setLink(p, &p.parent, parent)
	t.setLink(p, &p.group, t.leader(p, parent, p.PGID))
	t.setLink(p, &p.session, t.leader(p, parent, p.SID))
	t.classify(p, parent)
}

// displace drops the record of a pid that now belongs to another process. A
// live one missed its exit event.
func (t *Table) displace(old *proc) {
	if !old.Exited {
		t.stats.MissedExits++
		t.markExited(old, t.now)
	}
	if t.procs[old.PID] == old {
		delete(t.procs, old.PID)
	}
}

// leader returns the leader of the group or session id of p: p itself, its
// parent's when shared (leaders may have left the pid map), or the table's.
func (t *Table) leader(p, parent *proc, id uint32) *proc {
	switch {
	case id == p.PID:
		return p
	case parent != nil && parent.PGID == id && parent.group != nil:
		return parent.group
	case parent != nil && parent.SID == id && parent.session != nil:
		return parent.session
	}
	return t.procs[id]
}

func (t *Table) fork(ev *event.Event) {
	t.stats.Forks++
	pp := &ev.Process
	if p := t.procs[pp.PID]; p != nil && sameStart(p.Start, pp.Start) {
		if !p.Exited { // already known, from a scan
			t.observe(p, pp)
		}
		return
	}
	p := t.newProc(pp)
	parent := t.procs[pp.PPID]
	if parent != nil {
		// Before its exec, a child runs its parent's image.
		p.Executable, p.Name, p.Args, p.ArgsTruncated, p.ArgsCount = parent.Executable, parent.Name, parent.Args, parent.ArgsTruncated, parent.ArgsCount
		p.WorkingDirectory, p.PathTruncated = parent.WorkingDirectory, parent.PathTruncated
		if p.Name == "" {
			p.Name = pp.Comm
		}
	}
	t.insert(p, parent)
}

func (t *Table) exec(ev *event.Event) {
	t.stats.Execs++
	p := t.known(&ev.Process)
	if p.Exited {
		return
	}
	p.pushPrevious(t.cfg.MaxPrevious)
	exe := ev.Executable
	if exe == "" {
		exe = ev.Filename
	}
	p.setExecutable(exe)
	if exe == "" {
		p.Name = ev.Process.Comm
	}
	p.Args, p.ArgsTruncated, p.ArgsCount = ev.Args, ev.ArgsTruncated, ev.ArgsCount
	p.WorkingDirectory, p.PathTruncated = ev.Cwd, ev.PathTruncated
	t.observe(p, &ev.Process)
}

func (t *Table) exit(ev *event.Event) {
	t.stats.Exits++
	p := t.known(&ev.Process)
	if p.Exited {
		return
	}
	t.observe(p, &ev.Process)
	t.markExited(p, ev.Time)
	p.ExitKnown = true
	p.Exit = DecodeWaitStatus(ev.ExitCode)
}

func (t *Table) setsid(ev *event.Event) {
	t.stats.Setsids++
	p := t.known(&ev.Process)
	if p.Exited {
		return
	}
	t.observe(p, &ev.Process)
	t.sessionEntry(p)
}

// observe takes what every event says about a live process: its real parent
// (which changes when it is orphaned), group, session, terminal, and, from its
// main thread, credentials and cgroup.
func (t *Table) observe(p *proc, pp *event.Process) {
	p.setTTY(pp.TTYMajor, pp.TTYMinor)
	if pp.TID == pp.PID || pp.TID == 0 {
		p.UID, p.EUID, p.GID, p.EGID = pp.UID, pp.EUID, pp.GID, pp.EGID
		p.CgroupID = pp.CgroupID
	}
	if pp.PPID != p.PPID || p.parent == nil && pp.PPID != 0 {
		p.PPID = pp.PPID
		if np := t.procs[pp.PPID]; np != p {
			t.setLink(p, &p.parent, np)
		}
	}
	if pp.PGID != p.PGID || p.group == nil {
		p.PGID = pp.PGID
		t.setLink(p, &p.group, t.leader(p, p.parent, p.PGID))
	}
	if pp.SID != p.SID || p.session == nil {
		p.SID = pp.SID
		t.setLink(p, &p.session, t.leader(p, p.parent, p.SID))
	}
}

// Lookup returns the process an event is about, with its relatives.
func (t *Table) Lookup(pp *event.Process) (View, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p := t.find(pp)
	if p == nil {
		return View{}, false
	}
	return p.view(), true
}

// LookupInto is Lookup without allocating: it fills v, whose relatives point
// into rel, for a caller that reuses both.
func (t *Table) LookupInto(pp *event.Process, v *View, rel *Relatives) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p := t.find(pp)
	if p == nil {
		return false
	}
	p.viewInto(v, rel)
	return true
}

// LookupPID returns the newest process the table knows with this pid.
func (t *Table) LookupPID(pid uint32) (View, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p := t.procs[pid]
	if p == nil {
		return View{}, false
	}
	return p.view(), true
}

// Children returns the processes the table knows (live, or exited within
// their grace) whose parent is the newest process with pid: for tests and
// diagnostics, it walks the whole table.
func (t *Table) Children(pid uint32) []View {
	t.mu.RLock()
	defer t.mu.RUnlock()
	parent := t.procs[pid]
	if parent == nil {
		return nil
	}
	var out []View
	for _, p := range t.procs {
		if p.parent == parent {
			out = append(out, p.view())
		}
	}
	return out
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.stats
	s.Tracked = len(t.procs)
	s.Waiting = t.exited.len()
	return s
}

// FirstStart returns the earliest start time of the live processes in a
// cgroup: when a container began running, to the process.
func (t *Table) FirstStart(cgroupID uint64) (time.Duration, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var first time.Duration
	for _, p := range t.procs {
		if p.CgroupID == cgroupID && !p.Exited && (first == 0 || p.Start < first) {
			first = p.Start
		}
	}
	return first, first != 0
}
