package k8snode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Close stops everything Start started and removes what it left: pod sandboxes
// (through CRI, so the CNI plugin tears their network down), kubelet,
// containerd, its shims and any container process still in the node's cgroups,
// kube-apiserver and etcd (SIGTERM, then SIGKILL, by pid); then it unmounts what
// is still mounted under the node's directory, removes the node's cgroups, the
// KUBE-* iptables chains that appeared, puts back the kernel settings kubelet
// changed and removes the directory. It is safe to call more than once; Start
// registers it with t.Cleanup.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	var errs []error
	if n.t != nil && n.t.Failed() || os.Getenv("K8SNODE_LOGS") != "" {
		n.dumpLogs()
	}
	began := time.Now()

	// kubelet first, so it does not restart what is being removed.
	if n.kubelet != nil {
		n.kubelet.stop(10 * time.Second)
	}
	if n.ctrd != nil && !n.ctrd.exited() {
		if err := n.removeSandboxes(); err != nil {
			errs = append(errs, fmt.Errorf("remove pod sandboxes: %w", err))
		}
		n.ctrd.stop(10 * time.Second)
	}
	if n.api != nil {
		n.api.stop(10 * time.Second)
	}
	if n.etcd != nil {
		n.etcd.stop(10 * time.Second)
	}
	for _, p := range n.procs {
		p.stop(5 * time.Second)
	}
	// Shims outlive containerd by design; they and the containers are ours when
	// they name our directory (the shims' -address) or sit in our cgroups.
	if pids := pidsMatching([]string{n.Dir + "/"}, nil); len(pids) > 0 {
		killAll(pids, 10*time.Second)
	}
	if pids := cgroupPids(n.cgroupDirs); len(pids) > 0 {
		killAll(pids, 10*time.Second)
	}

	for ns := range n.netns {
		if _, err := os.Stat(ns); err == nil {
			_ = syscall.Unmount(ns, syscall.MNT_DETACH)
			if err := os.Remove(ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if n.Dir != "" {
		if err := unmountUnder(n.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	// kubelet links every container's log into /var/log/containers (a fixed
	// path); the links to this node's logs go with it.
	for _, l := range n.containerLogLinks() {
		_ = os.Remove(l)
	}
	if n.hostBefore != nil {
		// hostPaths lists files and children before their parents.
		for _, p := range newHostPaths(n.hostBefore) {
			_ = os.Remove(p)
		}
	}
	if err := removeCgroups(n.cgroupDirs); err != nil {
		errs = append(errs, err)
	}
	if n.chainsBefore != nil {
		if err := removeNewChains(n.chainsBefore); err != nil {
			errs = append(errs, fmt.Errorf("iptables: %w", err))
		}
	}
	if n.sysctlBefore != nil {
		if err := restoreSysctls(n.sysctlBefore); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Dir != "" {
		if left := mountsUnder(n.Dir); len(left) > 0 {
			errs = append(errs, fmt.Errorf("not removing %s: still mounted: %s", n.Dir, strings.Join(left, ", ")))
		} else if err := removeTree(n.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if n.logf != nil {
		n.logf("k8snode: closed in %s", time.Since(began).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

// removeSandboxes stops and removes every pod sandbox (and so its containers)
// through CRI, recording their network namespaces for the leftover check.
func (n *Node) removeSandboxes() error {
	conn, err := grpc.NewClient("unix://"+n.ContainerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, sb := range list.Items {
		if st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.Id, Verbose: true}); err == nil {
			for _, ns := range netnsPaths(st.Info["info"]) {
				n.netns[ns] = true
			}
		}
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop sandbox %s: %w", sb.Id, err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove sandbox %s: %w", sb.Id, err))
		}
	}
	return errors.Join(errs...)
}

// netnsPaths finds the network namespace paths in containerd's verbose sandbox
// info (its runtimeSpec's linux.namespaces).
func netnsPaths(info string) []string {
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if json.Unmarshal([]byte(info), &v) != nil {
		return nil
	}
	var out []string
	for _, ns := range v.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" && !strings.HasPrefix(ns.Path, "/proc/") {
			out = append(out, ns.Path)
		}
	}
	return out
}

// Leftovers lists what the node left behind: processes started by it or running
// in its cgroups, mounts under its directory, its network namespaces, its
// cgroups and its directory. Empty after a clean Close.
func (n *Node) Leftovers() []string {
	var out []string
	seen := map[int]bool{}
	for _, pid := range n.pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !isZombie(st) {
				seen[pid] = true
				out = append(out, "process "+describePid(pid))
			}
		}
	}
	for _, pid := range pidsMatching([]string{n.Dir + "/"}, []string{n.cgroupMatch}) {
		if !seen[pid] {
			out = append(out, "process "+describePid(pid))
		}
	}
	for _, m := range mountsUnder(n.Dir) {
		out = append(out, "mount "+m)
	}
	for _, l := range n.containerLogLinks() {
		out = append(out, "log link "+l)
	}
	for ns := range n.netns {
		if _, err := os.Stat(ns); err == nil {
			out = append(out, "network namespace "+ns)
		}
	}
	for _, d := range n.cgroupDirs {
		if _, err := os.Stat(d); err == nil {
			out = append(out, "cgroup "+d)
		}
	}
	if n.hostBefore != nil {
		for _, p := range newHostPaths(n.hostBefore) {
			out = append(out, "host path "+p)
		}
	}
	if n.chainsBefore != nil {
		for key, now := range kubeChains() {
			for c := range now {
				if !n.chainsBefore[key][c] {
					out = append(out, "iptables chain "+key+" "+c)
				}
			}
		}
	}
	if n.sysctlBefore != nil {
		now := readSysctls()
		for k, v := range n.sysctlBefore {
			if now[k] != v {
				out = append(out, fmt.Sprintf("sysctl %s=%s (was %s)", k, now[k], v))
			}
		}
	}
	if _, err := os.Stat(n.Dir); err == nil {
		out = append(out, "directory "+n.Dir)
	}
	return out
}

// containerLogsDir is where kubelet links container logs (not configurable).
const containerLogsDir = "/var/log/containers"

// containerLogLinks lists the links in containerLogsDir that point into the
// node's directory.
func (n *Node) containerLogLinks() []string {
	if n.Dir == "" {
		return nil
	}
	entries, _ := os.ReadDir(containerLogsDir)
	var out []string
	for _, e := range entries {
		p := filepath.Join(containerLogsDir, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, n.Dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// dumpLogs writes the tail of every daemon's log to the test log.
func (n *Node) dumpLogs() {
	if n.logf == nil {
		return
	}
	for _, p := range n.procs {
		n.logf("k8snode: --- %s (%s), last lines ---\n%s", p.name, filepath.Base(p.log), p.logTail(60))
	}
}
