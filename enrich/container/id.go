// Package container tells which container a process runs in from its cgroup:
// the container id and Kubernetes pod UID that runtimes write into cgroup paths,
// and the path of a cgroup v2 id (what the kernel reports) under a cgroup2 mount.
package container

import (
	"strings"
)

// Info is what a cgroup path says about its container.
type Info struct {
	ID      string // container id; empty when the path is not a container's
	PodUID  string // Kubernetes pod UID in its dashed form; empty outside a pod
	Runtime string // "docker", "containerd", "cri-o" or "podman"; empty when the layout does not say
}

// scopePrefixes are the systemd-driver (and CRI-O/podman cgroupfs) names
// "<prefix><64hex>[.scope]". Runtime helpers such as "libpod-conmon-<id>.scope"
// and "crio-conmon-<id>.scope" share a prefix but not the shape, so they never
// match: the monitor is not the container.
var scopePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", "containerd"},
	{"docker-", "docker"},
	{"crio-", "cri-o"},
	{"libpod-", "podman"},
}

// containerdNamespaces are containerd namespaces whose cgroups are
// "/<namespace>/<id>" with ids the user chose (ctr run img name), so any valid
// containerd identifier counts there, not only 64 hex digits.
var containerdNamespaces = map[string]bool{"default": true, "k8s.io": true}

// FromPath reads a cgroup path ("/kubepods/burstable/pod<uid>/<id>"). With
// nesting (a container inside a container) the deepest container wins: it is the
// one the process runs in. Paths of a cgroup namespace ("/../..") work as long as
// the container's component is still visible.
func FromPath(path string) Info {
	var info Info
	comps := strings.Split(strings.Trim(path, "/"), "/")
	kube := false
	for i, c := range comps {
		if strings.HasPrefix(c, "kubepods") {
			kube = true
		}
		if kube {
			if uid, ok := podUID(c); ok {
				info.PodUID = uid
			}
		}
		if id, rt, ok := containerID(comps, i); ok {
			info.ID, info.Runtime = id, rt
		}
	}
	return info
}

// containerID reads component i of a path split at "/".
func containerID(comps []string, i int) (id, runtime string, ok bool) {
	c := comps[i]
	if isHex64(c) {
		switch {
		case i > 0 && comps[i-1] == "docker":
			runtime = "docker"
		case i == 1 && containerdNamespaces[comps[0]]:
			runtime = "containerd"
		}
		return c, runtime, true
	}
	if i == 1 && containerdNamespaces[comps[0]] && validContainerdID(c) {
		return c, "containerd", true
	}
	name := strings.TrimSuffix(c, ".scope")
	for _, p := range scopePrefixes {
		if rest, found := strings.CutPrefix(name, p.prefix); found && isHex64(rest) {
			return rest, p.runtime, true
		}
	}
	return "", "", false
}

// podUID reads the pod component of kubelet's cgroupfs ("pod<uid>") and systemd
// ("kubepods-burstable-pod<uid_with_underscores>.slice") layouts. systemd escapes
// "-" in unit names, so kubelet writes the UID's dashes as underscores there.
func podUID(c string) (string, bool) {
	var uid string
	if rest, ok := strings.CutSuffix(c, ".slice"); ok {
		i := strings.LastIndex(rest, "-pod")
		if i < 0 || !strings.HasPrefix(rest, "kubepods") {
			return "", false
		}
		uid = strings.ReplaceAll(rest[i+len("-pod"):], "_", "-")
	} else if rest, ok := strings.CutPrefix(c, "pod"); ok {
		uid = rest
	} else {
		return "", false
	}
	return uid, isUUID(uid)
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

// isUUID accepts the 8-4-4-4-12 form Kubernetes uses for pod UIDs.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

// validContainerdID follows containerd's identifier rule: alphanumeric runs
// joined by single '.', '_' or '-', at most 76 bytes.
func validContainerdID(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	prevSep := true // no separator first
	for i := 0; i < len(s); i++ {
		b := s[i]
		alnum := b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
		switch {
		case alnum:
			prevSep = false
		case (b == '.' || b == '_' || b == '-') && !prevSep:
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep
}

// FromProcCgroup reads the content of /proc/<pid>/cgroup. The cgroup v2 line
// ("0::/path") is read first; on hybrid hosts a runtime may have placed the
// process only in v1 hierarchies ("4:cpu,cpuacct:/docker/<id>"), so the v1 lines
// are read next, in order. The first line naming a container wins; failing that,
// the first that names a pod.
func FromProcCgroup(content string) Info {
	var best Info
	consider := func(path string) bool {
		info := FromPath(path)
		if info.ID != "" {
			best = info
			return true
		}
		if best.PodUID == "" && info.PodUID != "" {
			best = info
		}
		return false
	}
	if p, ok := V2Path(content); ok && consider(p) {
		return best
	}
	for line := range strings.Lines(content) {
		hier, rest, ok := strings.Cut(strings.TrimRight(line, "\n"), ":")
		if !ok || hier == "0" {
			continue
		}
		if _, path, ok := strings.Cut(rest, ":"); ok && consider(path) {
			return best
		}
	}
	return best
}

// V2Path returns the cgroup v2 path in the content of /proc/<pid>/cgroup.
func V2Path(content string) (string, bool) {
	for line := range strings.Lines(content) {
		if p, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "0::"); ok {
			return p, true
		}
	}
	return "", false
}
