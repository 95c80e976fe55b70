package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseMountinfo(t *testing.T) {
	hybrid := `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	for _, tc := range []struct {
		name, in string
		want     Mount
		err      bool
	}{
		{"hybrid", hybrid, Mount{Point: "/sys/fs/cgroup/unified", Root: "/"}, false},
		{"unified", "25 20 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
			Mount{Point: "/sys/fs/cgroup", Root: "/"}, false},
		{"escaped point", `50 20 0:22 / /host\040fs/cgroup rw - cgroup2 cgroup2 rw` + "\n",
			Mount{Point: "/host fs/cgroup", Root: "/"}, false},
		{"whole hierarchy preferred", "50 20 0:22 /kubepods /a rw - cgroup2 cgroup2 rw\n51 20 0:22 / /b rw - cgroup2 cgroup2 rw\n",
			Mount{Point: "/b", Root: "/"}, false},
		{"subtree only", "50 20 0:22 /kubepods /a rw - cgroup2 cgroup2 rw\n", Mount{Point: "/a", Root: "/kubepods"}, false},
		{"v1 only", "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", Mount{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("got %+v, %v; want %+v (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The walk fallback works on any directory tree: ids are inode numbers.
func TestCgroupsWalk(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "kubepods", "pod1"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := OpenMount(Mount{Point: dir, Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	unix.Close(c.fd)
	c.fd = -1 // a temp dir has no kernfs handles
	c.MinWalk = 0

	if p, ok := c.Path(inode(t, filepath.Join(dir, "kubepods", "pod1"))); !ok || p != "/kubepods/pod1" {
		t.Errorf("Path = %q, %v", p, ok)
	}
	if p, ok := c.Path(inode(t, dir)); !ok || p != "/" {
		t.Errorf("root Path = %q, %v", p, ok)
	}
	// A cgroup made after the first walk is found by the walk its miss starts.
	if err := os.Mkdir(filepath.Join(dir, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Path(inode(t, filepath.Join(dir, "new"))); !ok || p != "/new" {
		t.Errorf("new Path = %q, %v", p, ok)
	}
	if id, err := c.ID("/kubepods/pod1"); err != nil || id != inode(t, filepath.Join(dir, "kubepods", "pod1")) {
		t.Errorf("ID = %d, %v", id, err)
	}
	// Misses in a burst do not each rewalk.
	c.MinWalk = time.Hour
	if err := os.Mkdir(filepath.Join(dir, "later"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Path(inode(t, filepath.Join(dir, "later"))); ok {
		t.Error("found without a walk")
	}
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Path(inode(t, filepath.Join(dir, "later"))); !ok || p != "/later" {
		t.Errorf("after Refresh: %q, %v", p, ok)
	}
}

func TestCgroupsCacheBound(t *testing.T) {
	c := &Cgroups{fd: -1, paths: map[uint64]string{}, MaxCached: 2}
	c.remember(1, "/a")
	c.remember(2, "/b")
	c.remember(3, "/c")
	if len(c.paths) != 1 || c.paths[3] != "/c" {
		t.Errorf("cache = %v", c.paths)
	}
}

func TestCgroupsSubtreeMount(t *testing.T) {
	c := &Cgroups{mount: Mount{Point: "/mnt/cg", Root: "/kubepods"}}
	if p, ok := c.cgroupPath("/mnt/cg/pod1"); !ok || p != "/kubepods/pod1" {
		t.Errorf("cgroupPath = %q %v", p, ok)
	}
	if _, ok := c.cgroupPath("/mnt/cgx"); ok {
		t.Error("a sibling of the mount point is not under it")
	}
	if f := c.fullPath("/kubepods/pod1"); f != "/mnt/cg/pod1" {
		t.Errorf("fullPath = %q", f)
	}
}

// On the real cgroup2 mount: ids the kernel reports resolve to their paths, by
// handle, including a cgroup made after the resolver opened.
func TestCgroupsReal(t *testing.T) {
	c, err := Open()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs a cgroup2 mount: %v", err)
		}
		t.Skipf("no cgroup2 here: %v", err)
	}
	defer c.Close()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	mine, ok := V2Path(string(self))
	if !ok {
		t.Skip("this process is in no cgroup v2")
	}
	id, err := c.ID(mine)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Path(id); !ok || p != mine {
		t.Errorf("Path(%d) = %q, %v; want %q", id, p, ok, mine)
	}

	name := filepath.Join(mine, "cloud-defend-test-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.Mkdir(c.fullPath(name), 0o755); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	newID, err := c.ID(name)
	os.Remove(c.fullPath(name))
	if err != nil {
		t.Fatal(err)
	}
	// Gone before it was asked for: the kernel says so, no walk finds it.
	if p, ok := c.Path(newID); ok {
		t.Errorf("removed cgroup %d resolved to %q", newID, p)
	}

	if err := os.Mkdir(c.fullPath(name), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(c.fullPath(name))
	newID, _ = c.ID(name)
	if p, ok := c.Path(newID); !ok || p != name {
		t.Errorf("new cgroup: Path = %q, %v; want %q (handles: %v)", p, ok, name, c.fd >= 0)
	}
	t.Logf("resolved by file handle: %v", c.fd >= 0)
}

func TestFindContainer(t *testing.T) {
	root := t.TempDir()
	id := strings.Repeat("ab", 32)
	for _, d := range []string{
		"kubepods/besteffort/pod0d0a2f5e-6f0e-4c4e-9d3b-0123456789ab/" + id,
		"machine.slice/crio-conmon-" + strings.Repeat("cd", 32) + ".scope",
		"machine.slice/crio-" + strings.Repeat("cd", 32) + ".scope",
	} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cgroups{mount: Mount{Point: root, Root: "/"}, fd: -1, paths: map[uint64]string{}, MaxCached: 10}
	for _, want := range []string{id, strings.Repeat("cd", 32)} {
		cg, ok := c.FindContainer(want)
		if !ok {
			t.Fatalf("container %s not found", want[:8])
		}
		p, _ := c.Path(cg)
		if info := FromPath(p); info.ID != want || strings.Contains(p, "conmon") {
			t.Errorf("found %s (%+v) for %s", p, info, want[:8])
		}
	}
	if _, ok := c.FindContainer(strings.Repeat("ef", 32)); ok {
		t.Error("found a container that is not there")
	}
}
