package k8snode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/mountinfo"
)

// childPath is the PATH the node's daemons run with: runc, iptables, mount and
// the CNI plugins' helpers live in the sbin directories.
const childPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// process is one daemon the node started.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// spawn starts bin with args, its output going to logs/<name>.log. The child
// gets SIGKILL if the test binary dies (a test timeout), so a crashed test
// leaves no daemon behind.
func (n *Node) spawn(name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(n.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Dir = n.Dir
	cmd.Env = append(os.Environ(), "PATH="+childPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.pids = append(n.pids, cmd.Process.Pid)
	n.mu.Unlock()
	n.logf("k8snode: started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// logTail is the last lines of the process's log.
func (p *process) logTail(lines int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// pidsMatching lists the processes whose command line contains one of subs, or
// whose cgroup path contains one of cgroupSubs.
func pidsMatching(subs, cgroupSubs []string) []int {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		match := false
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			c := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			for _, s := range subs {
				if s != "" && strings.Contains(c, s) {
					match = true
				}
			}
		}
		if !match && len(cgroupSubs) > 0 {
			if cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil {
				for _, s := range cgroupSubs {
					if s != "" && strings.Contains(string(cg), s) {
						match = true
					}
				}
			}
		}
		if match {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
				// A zombie is gone but for its parent's wait; it holds nothing.
				if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
					continue
				}
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

func describePid(pid int) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return fmt.Sprintf("pid %d: %s", pid, strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))))
}

// killAll SIGKILLs pids and waits (up to timeout) until they are gone.
func killAll(pids []int, timeout time.Duration) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
				break
			}
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
				if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// mountsUnder lists the mount points at or below any of dirs, in mount order.
func mountsUnder(dirs ...string) []string { return mountinfo.Under(dirs...) }

// unmountUnder lazily unmounts every mount at or below dirs, children first.
func unmountUnder(dirs ...string) error { return mountinfo.UnmountUnder(dirs...) }

// removeTree removes dir like os.RemoveAll but never crosses into another file
// system: a mount left under it (a host path bind-mounted into a container) is
// reported, not emptied.
func removeTree(dir string) error {
	var root syscall.Stat_t
	if err := syscall.Lstat(dir, &root); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var dirs []string
	var problems []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			problems = append(problems, err.Error())
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return nil
		}
		if st.Dev != root.Dev {
			problems = append(problems, "another file system at "+path)
			return filepath.SkipDir
		}
		if d.IsDir() {
			dirs = append(dirs, path)
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			problems = append(problems, err.Error())
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) && len(problems) == 0 {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("remove %s: %s", dir, strings.Join(problems, "; "))
	}
	return nil
}

// cgroupMounts lists the mount points of the cgroup hierarchies (v1 and v2).
func cgroupMounts() []string {
	mounts, _ := mountinfo.Read()
	var out []string
	for _, m := range mounts {
		// Only the hierarchy's root mounted at its usual place counts.
		if (m.FSType == "cgroup" || m.FSType == "cgroup2") && m.Root == "/" {
			out = append(out, m.Point)
		}
	}
	sort.Strings(out)
	return out
}

// makeCgroupRoot creates root (e.g. /cdk8s-1a2b3c4d) in every hierarchy, since
// kubelet refuses a cgroupRoot that does not exist, and returns the trees the
// node's pods will live in. cpuset needs its cpus and mems filled in before
// anything can join a child. For the stock root "/" it creates nothing and the
// trees are each hierarchy's /kubepods, which must not exist yet (another
// kubelet's).
func makeCgroupRoot(root string) ([]string, error) {
	if !strings.HasPrefix(root, "/") || strings.Contains(root, "..") {
		return nil, fmt.Errorf("cgroup root %q: want an absolute path", root)
	}
	var made []string
	for _, m := range cgroupMounts() {
		if root == "/" {
			dir := filepath.Join(m, "kubepods")
			if _, err := os.Stat(dir); err == nil {
				return made, fmt.Errorf("cgroup root /: %s exists (another kubelet?); use a fresh root", dir)
			}
			made = append(made, dir)
			continue
		}
		dir := filepath.Join(m, root)
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return made, fmt.Errorf("cgroup %s exists already; use a fresh root", dir)
			}
			return made, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		made = append(made, dir)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(m, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return made, fmt.Errorf("set %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return made, nil
}

// cgroupPids lists the processes in the cgroup trees rooted at dirs.
func cgroupPids(dirs []string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroups removes the cgroup trees at dirs, deepest first.
func removeCgroups(dirs []string) error {
	var problems []string
	for _, d := range dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, path)
			}
			return nil
		})
		sort.Slice(sub, func(i, j int) bool { return len(sub[i]) > len(sub[j]) })
		for _, s := range sub {
			var err error
			for range 50 { // a cgroup is busy for a moment after its last task exits
				if err = syscall.Rmdir(s); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("rmdir %s: %v", s, err))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Chains kubelet may create; they are removed on Close when they were not there
// before Start.
var iptablesTables = []string{"filter", "nat", "mangle"}

// kubeChains lists the KUBE-* chains per "<binary> <table>".
func kubeChains() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, t := range iptablesTables {
			rules, err := exec.Command(bin, "-w", "-t", t, "-S").Output()
			if err != nil {
				continue
			}
			set := map[string]bool{}
			for _, l := range strings.Split(string(rules), "\n") {
				if f := strings.Fields(l); len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-") {
					set[f[1]] = true
				}
			}
			out[bin+" "+t] = set
		}
	}
	return out
}

// removeNewChains deletes the KUBE-* chains that exist now but not in before:
// first the rules that jump to them, then their rules, then the chains.
func removeNewChains(before map[string]map[string]bool) error {
	var problems []string
	for key, now := range kubeChains() {
		bin, table, _ := strings.Cut(key, " ")
		var fresh []string
		for c := range now {
			if !before[key][c] {
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		isFresh := map[string]bool{}
		for _, c := range fresh {
			isFresh[c] = true
		}
		rules, err := exec.Command(bin, "-w", "-t", table, "-S").Output()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s -t %s -S: %v", bin, table, err))
			continue
		}
		for _, l := range strings.Split(string(rules), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 || f[0] != "-A" || isFresh[f[1]] {
				continue
			}
			for i := 0; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && isFresh[f[i+1]] {
					args := append([]string{"-w", "-t", table, "-D"}, f[1:]...)
					if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
						problems = append(problems, fmt.Sprintf("%s %s: %v %s", bin, strings.Join(args, " "), err, out))
					}
					break
				}
			}
		}
		for _, c := range fresh {
			_ = exec.Command(bin, "-w", "-t", table, "-F", c).Run()
		}
		for _, c := range fresh {
			if out, err := exec.Command(bin, "-w", "-t", table, "-X", c).CombinedOutput(); err != nil {
				problems = append(problems, fmt.Sprintf("%s -t %s -X %s: %v %s", bin, table, c, err, out))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Kernel settings kubelet (setupKernelTunables) and the CNI plugin change;
// Close puts back the values they had before Start.
var sysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
}

func readSysctls() map[string]string {
	out := map[string]string{}
	for _, s := range sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			out[s] = strings.TrimSpace(string(b))
		}
	}
	return out
}

func restoreSysctls(before map[string]string) error {
	var problems []string
	for s, v := range before {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil || strings.TrimSpace(string(b)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+s, []byte(v+"\n"), 0o644); err != nil {
			problems = append(problems, fmt.Sprintf("restore %s=%s: %v", s, v, err))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Host paths outside the node's directory that kubelet and containerd create at
// fixed places: kubelet's device-plugin socket (not configurable), the
// container log links' directory, containerd's shim socket directory and the
// CNI result cache. Close removes those that did not exist before Start (the
// directories only when empty).
var hostPaths = []string{
	"/var/lib/kubelet/device-plugins/kubelet.sock",
	"/var/lib/kubelet/device-plugins",
	"/var/lib/kubelet",
	containerLogsDir,
	"/run/containerd/s",
	"/run/containerd",
	"/var/lib/cni/results",
	"/var/lib/cni",
}

func existingHostPaths() map[string]bool {
	out := map[string]bool{}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			out[p] = true
		}
	}
	return out
}

// newHostPaths lists the hostPaths that exist now but did not before.
func newHostPaths(before map[string]bool) []string {
	var out []string
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil && !before[p] {
			out = append(out, p)
		}
	}
	return out
}
