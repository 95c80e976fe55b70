package proctree

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/enrich/container"
	"github.com/cloud-defend/cloud-defend/event"
)

// nsInode is the inode of a namespace file (/proc/<pid>/ns/pid), 0 when it
// cannot be read.
func nsInode(path string) uint32 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0
	}
	return uint32(st.Ino)
}

// Scan adds every process running now, read from /proc, that the table does
// not know yet. Call it once the kernel's events flow, so nothing starts
// unseen between the scan and the first event. Writer only.
func (t *Table) Scan() error {
	ents, err := os.ReadDir(t.cfg.ProcRoot)
	if err != nil {
		return err
	}
	var found []*proc
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || t.procs[uint32(pid)] != nil {
			continue
		}
		if p := t.adopt(uint32(pid), nil); p != nil {
			found = append(found, p)
		}
	}
	// Parents start before their children, so in start order a parent is in the
	// table when its child's entry leader is decided. A process reparented to a
	// younger subreaper is linked in the second pass.
	slices.SortFunc(found, func(a, b *proc) int { return int(a.Start - b.Start) })
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = max(t.now, t.cfg.Clock())
	for _, p := range found {
		if t.procs[p.PID] == nil {
			t.insertFound(p)
		}
	}
	for _, p := range found {
		if p.parent == nil && p.PPID != 0 {
			t.setLink(p, &p.parent, t.procs[p.PPID])
		}
	}
	return nil
}

// Reconcile ends the processes the table thinks alive that /proc no longer
// has: their exit events were lost (a full ring). Events lag behind /proc — a
// process may be gone with its exit still in the ring — so a process is only
// ended when it was already missing at the previous Reconcile; call it at
// intervals long enough for the reader to catch up (a minute). Their exit code
// stays unknown. Writer only.
func (t *Table) Reconcile() {
	suspects := map[*proc]bool{}
	var gone []*proc
	for pid, p := range t.procs {
		if p.Exited {
			continue
		}
		start, ok := procStart(t.cfg.ProcRoot, pid)
		if ok && sameStart(start, p.Start) {
			continue
		}
		if t.suspects[p] {
			gone = append(gone, p)
		} else {
			suspects[p] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.suspects = suspects
	t.now = max(t.now, t.cfg.Clock())
	for _, p := range gone {
		if !p.Exited {
			t.stats.MissedExits++
			t.markExited(p, t.now)
		}
	}
	t.expire()
}

// insertFound adds a process read from /proc. Writer only, under the lock.
func (t *Table) insertFound(p *proc) {
	t.stats.Adopted++
	t.insert(p, t.procs[p.PPID])
}

// adopt reads a process from /proc. With pp, the process must be the one the
// event is about (same start), else the pid was reused and nil is returned; nil
// also when it is gone. The record is not in the table yet.
func (t *Table) adopt(pid uint32, pp *event.Process) *proc {
	dir := t.cfg.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil
	}
	st, ok := parseStat(stat)
	if !ok {
		return nil
	}
	if pp != nil && !startMatches(st.start, pp) {
		return nil
	}
	if st.kthread {
		// Kernel threads have no image, args or credentials worth reading.
		p := &proc{Process: Process{PID: pid, PPID: st.ppid, PGID: st.pgid, SID: st.sid, Start: st.start, Name: st.comm}}
		p.EntityID = EntityID(t.cfg.AgentID, pid, p.Start)
		return p
	}
	p := &proc{Process: Process{
		PID: pid, PPID: st.ppid, PGID: st.pgid, SID: st.sid, Start: st.start, Name: st.comm,
		PIDNamespace: nsInode(dir + "/ns/pid"),
	}}
	if pp != nil && pp.Start != 0 && (pp.TID == pp.PID || pp.TID == 0) {
		p.Start = pp.Start // the kernel's is finer than /proc's tick
	}
	p.EntityID = EntityID(t.cfg.AgentID, pid, p.Start)
	p.setTTY(st.ttyMajor, st.ttyMinor)
	if status, err := os.ReadFile(dir + "/status"); err == nil {
		p.UID, p.EUID, p.GID, p.EGID, p.nsInit = parseStatus(status)
	}
	if exe, err := os.Readlink(dir + "/exe"); err == nil {
		p.setExecutable(strings.TrimSuffix(exe, " (deleted)"))
	}
	if cwd, err := os.Readlink(dir + "/cwd"); err == nil {
		p.WorkingDirectory = cwd
	}
	if cmdline, err := os.ReadFile(dir + "/cmdline"); err == nil && len(cmdline) > 0 {
		p.Args = strings.Split(string(bytes.TrimSuffix(cmdline, []byte{0})), "\x00")
	}
	if t.cfg.CgroupID != nil {
		if cg, err := os.ReadFile(dir + "/cgroup"); err == nil {
			if path, ok := container.V2Path(string(cg)); ok {
				p.CgroupID, _ = t.cfg.CgroupID(path)
			}
		}
	}
	if pp != nil {
		// What the event says is newer than /proc's reading of a moment ago.
		p.CgroupID = max(p.CgroupID, pp.CgroupID)
		if p.PIDNamespace == 0 {
			p.PIDNamespace = pp.PIDNamespace
		}
	}
	return p
}

// startMatches says whether a process started at start (to the tick) is the
// one an event's task belongs to: the same start for its main thread, no later
// than the task's for another thread.
func startMatches(start time.Duration, pp *event.Process) bool {
	if pp.TID == pp.PID || pp.TID == 0 {
		return sameStart(start, pp.Start)
	}
	return start <= pp.Start
}

// procStart reads a process's start time from /proc.
func procStart(root string, pid uint32) (time.Duration, bool) {
	stat, err := os.ReadFile(root + "/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return 0, false
	}
	st, ok := parseStat(stat)
	return st.start, ok
}

type statFields struct {
	comm               string
	ppid, pgid, sid    uint32
	ttyMajor, ttyMinor uint32
	start              time.Duration
	kthread            bool
}

// parseStat reads /proc/<pid>/stat (proc(5)). comm is in parentheses and may
// itself hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (statFields, bool) {
	var s statFields
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, false
	}
	s.comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 {
		return s, false
	}
	num := func(n int) uint64 { v, _ := strconv.ParseUint(f[n-3], 10, 64); return v }
	snum := func(n int) int64 { v, _ := strconv.ParseInt(f[n-3], 10, 64); return v }
	s.ppid, s.pgid, s.sid = uint32(num(4)), uint32(num(5)), uint32(num(6))
	// tty_nr packs the device as the kernel's new_encode_dev: minor bits 0-7 and
	// 20-31, major bits 8-19.
	tty := uint32(snum(7))
	s.ttyMajor = tty >> 8 & 0xfff
	s.ttyMinor = tty&0xff | tty>>12&0xfff00
	s.start = time.Duration(num(22)) * Tick
	const pfKthread = 0x00200000
	s.kthread = num(9)&pfKthread != 0
	return s, true
}

// parseStatus reads the real and effective ids from /proc/<pid>/status, and
// whether the process is pid 1 of its own namespace (the last NSpid is 1).
func parseStatus(b []byte) (uid, euid, gid, egid uint32, nsInit bool) {
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		id := func(i int) uint32 {
			if i >= len(f) {
				return 0
			}
			v, _ := strconv.ParseUint(f[i], 10, 32)
			return uint32(v)
		}
		switch key {
		case "Uid":
			uid, euid = id(0), id(1)
		case "Gid":
			gid, egid = id(0), id(1)
		case "NSpid":
			nsInit = len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	return
}
