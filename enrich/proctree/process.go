package proctree

import (
	"path"
	"time"
)

// Entry types (process.entry_leader.entry_meta.type).
const (
	EntryContainer = "container"
	EntryInit      = "init"
	EntrySSHD      = "sshd"
	EntryTeleport  = "teleport"
	EntrySSM       = "ssm"
)

// Process is a snapshot of one process. Times are since boot (CLOCK_BOOTTIME):
// add the boot time for wall-clock times.
type Process struct {
	EntityID             string
	PID, PPID, PGID, SID uint32
	// Start is the kernel's start time to the nanosecond, or to the tick for a
	// process first found in /proc. It does not change once known.
	Start time.Duration
	End   time.Duration // zero while the process runs
	// Exited is set once the process has ended. ExitKnown is false when the end
	// was inferred (its exit event was lost) and Exit says nothing.
	Exited    bool
	ExitKnown bool
	Exit      Exit

	Executable       string
	Name             string   // the executable's base name; the kernel's comm before any exec is known
	Args             []string // argv; shared, do not modify
	ArgsTruncated    bool
	ArgsCount        int // the true argc (Args may hold fewer when cut); 0: unknown, len(Args)
	WorkingDirectory string
	PathTruncated    bool // Executable or WorkingDirectory was longer than the kernel copies (4096 bytes) and holds its beginning

	UID, EUID, GID, EGID uint32
	TTYMajor, TTYMinor   uint32 // 0/0 without a controlling terminal
	Interactive          bool   // has a controlling terminal
	CgroupID             uint64 // cgroup v2 id
	PIDNamespace         uint32 // inode of its pid namespace

	// Previous holds the executable and args before each exec, oldest first,
	// starting with the image inherited at fork; at most Config.MaxPrevious.
	// Shared, do not modify.
	Previous []Exec
	// EntryMetaType is set when the process is an entry leader (Entry*).
	EntryMetaType string
}

// Exec is one image a process ran (process.previous).
type Exec struct {
	Executable string
	Args       []string
}

// Leader is a group, session or entry leader of a process.
type Leader struct {
	Process
	SameAsProcess bool
}

// View is a process with its relatives, as one consistent snapshot. A relative
// the table does not know is nil.
type View struct {
	Process       Process
	Parent        *Process
	GroupLeader   *Leader
	SessionLeader *Leader
	EntryLeader   *Leader
}

// proc is the table's record of a process. The writer mutates it under the
// table's lock; readers copy Process out under the read lock.
type proc struct {
	Process
	parent, group, session, entry *proc
	// liveRefs counts the links to this record from live processes (itself
	// included while it lives): an exited record past its grace leaves the table
	// when nothing live links to it.
	liveRefs int32
	expired  bool // exited and past its grace: holds no links any more
	nsInit   bool // pid 1 of its pid namespace (known from a /proc scan)
}

func (p *proc) setExecutable(exe string) {
	p.Executable = exe
	if exe != "" {
		p.Name = path.Base(exe)
	}
}

func (p *proc) pushPrevious(max int) {
	if max <= 0 || p.Executable == "" && len(p.Args) == 0 {
		return
	}
	keep := min(len(p.Previous), max-1)
	// A new slice every time: snapshots share the old one.
	prev := make([]Exec, 0, keep+1)
	prev = append(prev, p.Previous[len(p.Previous)-keep:]...)
	p.Previous = append(prev, Exec{Executable: p.Executable, Args: p.Args})
}

func (p *proc) setTTY(major, minor uint32) {
	p.TTYMajor, p.TTYMinor = major, minor
	p.Interactive = major != 0
}

// Relatives holds the copies a View points at.
type Relatives struct {
	parent            Process
	group, sess, entr Leader
}

// view copies p and its relatives. One allocation holds all four relatives.
func (p *proc) view() View {
	var v View
	p.viewInto(&v, new(Relatives))
	return v
}

// viewInto copies p into v and its relatives into b, which v then points at.
func (p *proc) viewInto(v *View, b *Relatives) {
	*v = View{Process: p.Process}
	if p.parent == nil && p.group == nil && p.session == nil && p.entry == nil {
		return
	}
	if p.parent != nil {
		b.parent = p.parent.Process
		v.Parent = &b.parent
	}
	v.GroupLeader = leader(&b.group, p.group, p)
	v.SessionLeader = leader(&b.sess, p.session, p)
	v.EntryLeader = leader(&b.entr, p.entry, p)
}

func leader(dst *Leader, l, p *proc) *Leader {
	if l == nil {
		return nil
	}
	*dst = Leader{Process: l.Process, SameAsProcess: l == p}
	return dst
}
