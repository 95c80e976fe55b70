package ebpf

import (
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Without BPF LSM, file operations are seen at the exit of the syscalls that
// make them (bpf/file_syscalls.bpf.h): the kernel keeps workloads' successful
// write-intent opens, unlinks, renames, chmods, links, truncates and mknods of
// regular files; here names are resolved as the kernel resolved them, the
// volume conditions read from the container's mounts, and each call mapped to the
// policy's operations as the LSM hooks would name it and evaluated against the
// file selectors: reported (UserSpace), never blocked.

// kindSysfile is a workload's file syscall, as the kernel reports it without
// BPF LSM; Read turns it into file decisions and does not return it.
const kindSysfile = event.Kind(bpfobj.ProbeEventTypeEVENT_SYSFILE)

// Syscall is what a file syscall's record says (what decodeEvent fills for a kindSysfile record).
type Syscall struct {
	Op          uint32 // enum sys_op: bpfobj.ProbeSysOpSYS_OPEN, _UNLINK, _RENAME, _CHMOD, _LINK, _TRUNCATE, _MKNOD
	Flags       uint32
	Mode        uint32 // chmod: the new mode; open: the file's mode
	Created     bool   // open: this open created the file
	ByFD        bool   // fchmod, ftruncate: Path was resolved from the file, in the kernel
	Dfd, Dfd2   int32
	Path, Path2 string // as the task passed them (rename: old, new)
	Base, Base2 string // the directories relative ones start from, resolved at the call
}

const (
	atFDCWD         = -100
	atSymlinkFollow = 0x400
)

func decodeSysfile(raw []byte, n names, sys *Syscall) (event.Event, error) {
	r, err := view[bpfobj.ProbeSysfileEvent](raw)
	if err != nil {
		return event.Event{}, err
	}
	ev := header(r.Hdr, r.Proc, n)
	if sys == nil {
		return ev, nil
	}
	open := bpfobj.ProbeSysOp(r.Op) == bpfobj.ProbeSysOpSYS_OPEN
	*sys = Syscall{Op: r.Op, Flags: r.Flags, Mode: r.Mode, Created: open && r.Created != 0, ByFD: !open && r.Created != 0, Dfd: r.Dfd, Dfd2: r.Dfd2,
		Path: cstring(r.Path[:]), Path2: cstring(r.Path2[:]), Base: cstring(r.Base[:]), Base2: cstring(r.Base2[:])}
	return ev, nil
}

// fileSyscallStatus says whether the file syscall programs (attached with the
// rest by attachAll) watch file syscalls, and which could not attach: openat2
// (5.6) may be missing; the others are as old as Linux.
func (l *loader) fileSyscallStatus() FeatureStatus {
	return syscallSetStatus(l.fileSyscalls, l.fileMissing, "file")
}

// syscallSetStatus is the status of a set of syscall tracepoint programs
// (what: the selectors they serve, "file" or "network"), given the reasons of
// those that could not attach.
func syscallSetStatus(set any, missing []string, what string) FeatureStatus {
	n := len(programsOf(set))
	if n == 0 || len(missing) == n {
		return FeatureStatus{Reason: what + " selectors are not evaluated: no syscall tracepoint attached: " + strings.Join(missing, "; ")}
	}
	st := FeatureStatus{Available: true}
	if len(missing) > 0 {
		st.Reason = what + " syscalls not seen: " + strings.Join(missing, "; ")
	}
	return st
}

// FileSyscalls says whether file operations are detected at syscall exits (no
// BPF LSM), and what is not seen.
func (e *Engine) FileSyscalls() FeatureStatus { return e.fileSys }

// detectFile turns a workload's file syscall into the decisions its
// operations make under the live policy, queued on e.pending.
func (e *Engine) detectFile(ev *event.Event, s *Syscall) {
	pid := strconv.FormatUint(uint64(ev.Process.PID), 10)
	roots := []string{pid, strconv.FormatUint(uint64(ev.Process.PPID), 10)}
	root := liveRoot(roots)
	op := bpfobj.ProbeSysOp(s.Op)
	// Names passed are resolved as the kernel resolved them: symlinks and ".."
	// on the way, and the last component where the call follows it (chmod,
	// truncate, linkat with AT_SYMLINK_FOLLOW; not unlink, rename, link, mknod).
	follow := op == bpfobj.ProbeSysOpSYS_CHMOD || op == bpfobj.ProbeSysOpSYS_TRUNCATE ||
		(op == bpfobj.ProbeSysOpSYS_LINK && s.Flags&atSymlinkFollow != 0)
	target := path.Clean(s.Path)
	if op != bpfobj.ProbeSysOpSYS_OPEN && !s.ByFD {
		target = canonical(root, joinPath(pid, s.Dfd, s.Base, s.Path), follow)
	}
	type judged struct {
		op   policy.Op
		path string
		hook event.HookPoint
	}
	var ops []judged
	switch op {
	case bpfobj.ProbeSysOpSYS_OPEN:
		op := execOr(s.Mode, policy.OpModifyExecutable, policy.OpModifyFile)
		if s.Created {
			op = execOr(s.Mode, policy.OpCreateExecutable, policy.OpCreateFile)
		}
		ops = append(ops, judged{op, target, event.HookSysOpen})
	case bpfobj.ProbeSysOpSYS_UNLINK:
		ops = append(ops, judged{policy.OpDeleteFile, target, event.HookSysUnlink})
	case bpfobj.ProbeSysOpSYS_RENAME:
		// The file is at its new name now: whether it is executable is read
		// there (while the task lives). Whether a file was replaced is not
		// known after the fact: the new name is a creation.
		dst := canonical(root, joinPath(pid, s.Dfd2, s.Base2, s.Path2), false)
		mode, found, regular := statIn(roots, dst)
		if found && !regular {
			return // a directory (or a symlink, a device)
		}
		ops = append(ops, judged{policy.OpDeleteFile, target, event.HookSysRename},
			judged{execOr(mode, policy.OpCreateExecutable, policy.OpCreateFile), dst, event.HookSysRename})
	case bpfobj.ProbeSysOpSYS_LINK:
		// As path_link: the source is modified, the new name created, both
		// judged by the file's mode (read at the new name, which is it).
		dst := canonical(root, joinPath(pid, s.Dfd2, s.Base2, s.Path2), false)
		mode, found, regular := statIn(roots, dst)
		if found && !regular {
			return // a link to a symlink, a device
		}
		ops = append(ops, judged{execOr(mode, policy.OpModifyExecutable, policy.OpModifyFile), target, event.HookSysLink},
			judged{execOr(mode, policy.OpCreateExecutable, policy.OpCreateFile), dst, event.HookSysLink})
	case bpfobj.ProbeSysOpSYS_CHMOD:
		// The mode before is gone: gaining an x bit is judged by the new one.
		if !s.ByFD {
			if _, found, regular := statIn(roots, target); found && !regular {
				return
			}
		}
		ops = append(ops, judged{execOr(s.Mode, policy.OpCreateExecutable, policy.OpModifyFile), target, event.HookSysChmod})
	case bpfobj.ProbeSysOpSYS_TRUNCATE:
		mode := s.Mode // by descriptor: the file's; by name: read now
		if !s.ByFD {
			m, found, regular := statIn(roots, target)
			if found && !regular {
				return
			}
			mode = m
		}
		ops = append(ops, judged{execOr(mode, policy.OpModifyExecutable, policy.OpModifyFile), target, event.HookSysTruncate})
	case bpfobj.ProbeSysOpSYS_MKNOD:
		ops = append(ops, judged{execOr(s.Mode, policy.OpCreateExecutable, policy.OpCreateFile), target, event.HookSysMknod})
	}
	gen, p, meta := e.liveFor(ev.Process.CgroupID)
	if p == nil {
		return
	}
	exe := e.workloads[ev.Process.PID].exe
	mounts := e.mountsOf(ev.Process.MountNamespace, roots)
	for _, j := range ops {
		op := meta
		op.Op, op.TargetPath = j.op, j.path
		op.ProcessExecutable, op.ProcessName = exe, ev.Process.Comm
		op.SessionLeaderInteractive = ev.Process.TTYMajor != 0
		op.OnVolumeMount, op.OnFileMount = mounts.volume(root, j.path)
		d := p.Evaluate(&op)
		if d.Actions == 0 {
			continue
		}
		e.pending = append(e.pending, event.Event{Kind: event.FileDecision, Time: ev.Time, Process: ev.Process, Op: j.op, Hook: j.hook,
			Generation: gen, Matched: d.Matched, Actions: d.Actions, UserSpace: true, Path: j.path, PathLen: uint32(len(j.path)),
			OnVolume: op.OnVolumeMount, OnFileMount: op.OnFileMount})
	}
}

func execOr(mode uint32, ifExec, otherwise policy.Op) policy.Op {
	if mode&0o111 != 0 {
		return ifExec
	}
	return otherwise
}

// joinPath makes a syscall's path absolute as the task sees it, without
// cleaning it (".." is resolved by canonical, after the symlinks before it):
// relative to the directory the kernel resolved at the call (its working
// directory or the directory fd it passed), else read from /proc while the task
// lives (which shows a task's paths as its own root does).
func joinPath(pid string, dfd int32, base, p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	if base == "" {
		link := "/proc/" + pid + "/cwd"
		if dfd != atFDCWD {
			link = "/proc/" + pid + "/fd/" + strconv.Itoa(int(dfd))
		}
		var err error
		if base, err = os.Readlink(link); err != nil {
			base = "/" // the task is gone: the best that is left
		}
	}
	return base + "/" + p
}

// liveRoot is the root directory of the first of pids that still lives
// ("/proc/<pid>/root": the task's root, its container's), or "" when none does.
func liveRoot(pids []string) string {
	for _, pid := range pids {
		r := "/proc/" + pid + "/root"
		if _, err := os.Readlink(r); err == nil {
			return r
		}
	}
	return ""
}

// maxSymlinks is the kernel's limit on symlinks followed in one lookup (ELOOP).
const maxSymlinks = 40

// canonical resolves the absolute path p as the kernel resolves a name against
// the task's root (root, as /proc/<pid>/root; "": resolved lexically): component
// by component, following each symlink met on the way (absolute targets from the
// root, relative ones from the symlink's directory) and ".." from where the
// walk is, and the last component only when follow says the call does. What no
// longer exists resolves as it reads.
func canonical(root, p string, follow bool) string {
	todo := strings.Split(p, "/")
	var done []string
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		last := true
		for _, r := range todo {
			if r != "" && r != "." {
				last = false
				break
			}
		}
		if root == "" || (last && !follow) || links >= maxSymlinks {
			done = append(done, c)
			continue
		}
		target, err := os.Readlink(root + "/" + strings.Join(append(done, c), "/"))
		if err != nil {
			done = append(done, c) // not a symlink, or gone
			continue
		}
		links++
		if strings.HasPrefix(target, "/") {
			done = done[:0]
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return "/" + strings.Join(done, "/")
}

// statIn stats a path as the task sees it, through its root or, once it is
// gone (chmod and mv exit at once), its parent's, which shares it in nearly
// every case (a shell in the same container). found is false when neither
// shows it (removed since): the caller then judges it as a regular file whose
// mode is not known.
func statIn(pids []string, p string) (mode uint32, found, regular bool) {
	var st syscall.Stat_t
	for _, pid := range pids {
		if err := syscall.Lstat("/proc/"+pid+"/root"+p, &st); err == nil {
			return st.Mode, true, st.Mode&syscall.S_IFMT == syscall.S_IFREG
		}
	}
	return 0, false, false
}

// mountTable is a mount namespace's mount points as its tasks see them
// (/proc/<pid>/mountinfo), in mount order.
type mountTable struct {
	points []string
	read   time.Time
}

// mountsTTL bounds how long a namespace's mount table is reused: volumes are
// mounted before a container's workload starts, and rarely after.
const mountsTTL = 2 * time.Second

// mountsOf reads (or reuses) the mount table of the mount namespace mntns
// through the first of pids that still lives; nil when none does.
func (e *Engine) mountsOf(mntns uint32, pids []string) *mountTable {
	now := time.Now()
	if e.mounts == nil {
		e.mounts = map[uint32]*mountTable{}
	}
	if m := e.mounts[mntns]; m != nil && now.Sub(m.read) < mountsTTL {
		return m
	}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/mountinfo")
		if err != nil {
			continue
		}
		m := &mountTable{read: now}
		for line := range strings.SplitSeq(string(b), "\n") {
			// id parent major:minor root mount-point options ...
			f := strings.Fields(line)
			if len(f) >= 5 {
				m.points = append(m.points, unescapeMount(f[4]))
			}
		}
		if len(e.mounts) >= 1024 {
			clear(e.mounts)
		}
		e.mounts[mntns] = m
		return m
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (space, tab, newline, backslash).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// volume says where p (resolved, as the task sees it) is, as the LSM hooks
// tell it: on a mount other than the root filesystem (onVolume, with mounts
// stacked on "/" counted as the root), and on a single-file mount (onFile: the
// mount point is the file itself). Unknown mounts (m nil): the root filesystem.
func (m *mountTable) volume(root, p string) (onVolume, onFile bool) {
	if m == nil {
		return false, false
	}
	best := "/"
	for _, mp := range m.points {
		if len(mp) >= len(best) && (mp == p || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) {
			best = mp
		}
	}
	if best == "/" {
		return false, false
	}
	if best == p && root != "" {
		var st syscall.Stat_t
		if err := syscall.Stat(root+p, &st); err == nil && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return true, true
		}
	}
	return true, false
}
