package ebpf

import (
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Without BPF LSM, file operations are seen at the exit of the syscalls that
// make them (bpf/file_syscalls.bpf.h): the kernel keeps workloads' successful
// write-intent opens, unlinks, renames and chmods; here each is mapped to the
// policy's operations as the LSM hooks would name it and evaluated against the
// file selectors: reported (UserSpace), never blocked.

// kindSysfile is a workload's file syscall, as the kernel reports it without
// BPF LSM; Read turns it into file decisions and does not return it.
const kindSysfile = event.Kind(bpfobj.ProbeEventTypeEVENT_SYSFILE)

// Syscall is what a file syscall's record says (what decodeEvent fills for a kindSysfile record).
type Syscall struct {
	Op          uint32 // enum sys_op: bpfobj.ProbeSysOpSYS_OPEN, _UNLINK, _RENAME, _CHMOD
	Flags       uint32
	Mode        uint32 // chmod: the new mode; open: the file's mode
	Created     bool   // open: this open created the file
	Dfd, Dfd2   int32
	Path, Path2 string // as the task passed them (rename: old, new)
	Base, Base2 string // the directories relative ones start from, resolved at the call
}

const atFDCWD = -100

func decodeSysfile(raw []byte, n names, sys *Syscall) (event.Event, error) {
	r, err := view[bpfobj.ProbeSysfileEvent](raw)
	if err != nil {
		return event.Event{}, err
	}
	ev := header(r.Hdr, r.Proc, n)
	if sys == nil {
		return ev, nil
	}
	*sys = Syscall{Op: r.Op, Flags: r.Flags, Mode: r.Mode, Created: r.Created != 0, Dfd: r.Dfd, Dfd2: r.Dfd2,
		Path: cstring(r.Path[:]), Path2: cstring(r.Path2[:]), Base: cstring(r.Base[:]), Base2: cstring(r.Base2[:])}
	return ev, nil
}

// fileSyscallStatus says whether the file syscall programs (attached with the
// rest by attachAll) watch file syscalls, and which could not attach: openat2
// (5.6) may be missing; the others are as old as Linux.
func (l *loader) fileSyscallStatus() FeatureStatus {
	n := len(programsOf(l.fileSyscalls))
	if n == 0 || len(l.fileMissing) == n {
		return FeatureStatus{Reason: "file selectors are not evaluated: no syscall tracepoint attached: " + strings.Join(l.fileMissing, "; ")}
	}
	st := FeatureStatus{Available: true}
	if len(l.fileMissing) > 0 {
		st.Reason = "file syscalls not seen: " + strings.Join(l.fileMissing, "; ")
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
	target := resolvePath(pid, s.Dfd, s.Base, s.Path)
	type judged struct {
		op   policy.Op
		path string
		hook event.HookPoint
	}
	var ops []judged
	switch bpfobj.ProbeSysOp(s.Op) {
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
		dst := resolvePath(pid, s.Dfd2, s.Base2, s.Path2)
		mode, found, regular := statIn(roots, dst)
		if found && !regular {
			return // a directory (or a symlink, a device)
		}
		ops = append(ops, judged{policy.OpDeleteFile, target, event.HookSysRename},
			judged{execOr(mode, policy.OpCreateExecutable, policy.OpCreateFile), dst, event.HookSysRename})
	case bpfobj.ProbeSysOpSYS_CHMOD:
		// The mode before is gone: gaining an x bit is judged by the new one.
		if _, found, regular := statIn(roots, target); found && !regular {
			return
		}
		ops = append(ops, judged{execOr(s.Mode, policy.OpCreateExecutable, policy.OpModifyFile), target, event.HookSysChmod})
	}
	gen, p, meta := e.liveFor(ev.Process.CgroupID)
	if p == nil {
		return
	}
	exe := e.workloads[ev.Process.PID].exe
	for _, j := range ops {
		op := meta
		op.Op, op.TargetPath = j.op, j.path
		op.ProcessExecutable, op.ProcessName = exe, ev.Process.Comm
		op.SessionLeaderInteractive = ev.Process.TTYMajor != 0
		d := p.Evaluate(&op)
		if d.Actions == 0 {
			continue
		}
		e.pending = append(e.pending, event.Event{Kind: event.FileDecision, Time: ev.Time, Process: ev.Process, Op: j.op, Hook: j.hook,
			Generation: gen, Matched: d.Matched, Actions: d.Actions, UserSpace: true, Path: j.path, PathLen: uint32(len(j.path))})
	}
}

func execOr(mode uint32, ifExec, otherwise policy.Op) policy.Op {
	if mode&0o111 != 0 {
		return ifExec
	}
	return otherwise
}

// resolvePath makes a syscall's path absolute as the task sees it: relative to
// the directory the kernel resolved at the call (its working directory or the
// directory fd it passed), else read from /proc while the task lives (which
// shows a task's paths as its own root does).
func resolvePath(pid string, dfd int32, base, p string) string {
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	if base != "" {
		return path.Join(base, p)
	}
	link := "/proc/" + pid + "/cwd"
	if dfd != atFDCWD {
		link = "/proc/" + pid + "/fd/" + strconv.Itoa(int(dfd))
	}
	base, err := os.Readlink(link)
	if err != nil {
		return path.Clean("/" + p) // the task is gone: the best that is left
	}
	return path.Join(base, p)
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
