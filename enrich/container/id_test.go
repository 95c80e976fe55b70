package container

import "testing"

const (
	cid  = "3f4a1c2b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"
	cid2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	uid  = "8c1f5e2a-7b3d-4e6f-9a0b-1c2d3e4f5a6b"
	uidU = "8c1f5e2a_7b3d_4e6f_9a0b_1c2d3e4f5a6b" // systemd's escaping of the same UID
)

func TestFromPath(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want       Info
	}{
		{"containerd default", "/default/" + cid, Info{ID: cid, Runtime: "containerd"}},
		{"containerd k8s.io", "/k8s.io/" + cid, Info{ID: cid, Runtime: "containerd"}},
		{"containerd named by ctr", "/default/web-1", Info{ID: "web-1", Runtime: "containerd"}},
		{"crio scope", "/crio-" + cid + ".scope", Info{ID: cid, Runtime: "cri-o"}},
		{"crio systemd pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + cid + ".scope",
			Info{ID: cid, PodUID: uid, Runtime: "cri-o"}},
		{"crio cgroupfs", "/kubepods/besteffort/pod" + uid + "/crio-" + cid, Info{ID: cid, PodUID: uid, Runtime: "cri-o"}},
		{"crio conmon", "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope", Info{PodUID: uid}},
		{"docker cgroupfs", "/docker/" + cid, Info{ID: cid, Runtime: "docker"}},
		{"docker systemd", "/system.slice/docker-" + cid + ".scope", Info{ID: cid, Runtime: "docker"}},
		{"podman cgroupfs", "/libpod_parent/libpod-" + cid, Info{ID: cid, Runtime: "podman"}},
		{"podman systemd", "/machine.slice/libpod-" + cid + ".scope", Info{ID: cid, Runtime: "podman"}},
		{"podman payload subgroup", "/machine.slice/libpod-" + cid + ".scope/container", Info{ID: cid, Runtime: "podman"}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope",
			Info{ID: cid, Runtime: "podman"}},
		{"podman conmon", "/machine.slice/libpod-conmon-" + cid + ".scope", Info{}},
		{"podman conmon cgroupfs", "/libpod_parent/libpod-conmon-" + cid, Info{}},
		{"kubelet cgroupfs qos", "/kubepods/burstable/pod" + uid + "/" + cid, Info{ID: cid, PodUID: uid}},
		{"kubelet cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid, Info{ID: cid, PodUID: uid}},
		{"kubelet pod only", "/kubepods/burstable/pod" + uid, Info{PodUID: uid}},
		{"kubelet systemd containerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU +
			".slice/cri-containerd-" + cid + ".scope", Info{ID: cid, PodUID: uid, Runtime: "containerd"}},
		{"kubelet systemd guaranteed", "/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Info{ID: cid, PodUID: uid, Runtime: "containerd"}},
		{"docker in docker: deepest wins", "/docker/" + cid + "/docker/" + cid2, Info{ID: cid2, Runtime: "docker"}},
		{"cgroup namespace relative", "/../../docker/" + cid, Info{ID: cid, Runtime: "docker"}},
		{"root", "/", Info{}},
		{"empty", "", Info{}},
		{"user session", "/user.slice/user-0.slice/session-3.scope", Info{}},
		{"system service", "/system.slice/containerd.service", Info{}},
		{"init scope", "/init.scope", Info{}},
		{"short hex is not an id", "/process_api/39216e727e84b6e28b61d5e5ee459622", Info{}},
		{"pod outside kubepods is not a pod", "/podcast/x", Info{}},
		{"bad containerd id", "/default/-x", Info{}},
		{"containerd namespace deeper", "/default/a/b", Info{ID: "a", Runtime: "containerd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromPath(tc.path); got != tc.want {
				t.Errorf("FromPath(%q) = %+v, want %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestFromProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          Info
	}{
		{"v2 only", "0::/system.slice/docker-" + cid + ".scope\n", Info{ID: cid, Runtime: "docker"}},
		{"hybrid: id only in v1", "12:pids:/docker/" + cid + "\n4:cpu,cpuacct:/docker/" + cid + "\n0::/\n",
			Info{ID: cid, Runtime: "docker"}},
		{"hybrid: v2 wins", "4:cpu,cpuacct:/docker/" + cid2 + "\n0::/docker/" + cid + "\n", Info{ID: cid, Runtime: "docker"}},
		{"v1 named hierarchy", "1:name=systemd:/kubepods/pod" + uid + "/" + cid + "\n", Info{ID: cid, PodUID: uid}},
		{"pod from v2, id from v1", "0::/kubepods/pod" + uid + "\n3:cpu:/kubepods/pod" + uid + "/" + cid,
			Info{ID: cid, PodUID: uid}},
		{"this sandbox", "9:name=systemd:/\n4:memory:/process_api/39216e727e84b6e28b61d5e5ee459622\n0::/\n", Info{}},
		{"host", "0::/user.slice/user-0.slice/session-1.scope\n", Info{}},
		{"empty", "", Info{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromProcCgroup(tc.content); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestV2Path(t *testing.T) {
	p, ok := V2Path("5:devices:/x\n0::/a/b\n")
	if !ok || p != "/a/b" {
		t.Errorf("V2Path = %q %v", p, ok)
	}
	if _, ok := V2Path("5:devices:/x\n"); ok {
		t.Error("v1-only content has no v2 path")
	}
}
