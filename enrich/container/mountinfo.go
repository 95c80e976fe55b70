package container

import (
	"errors"
	"io"
	"os"

	"github.com/cloud-defend/cloud-defend/internal/mountinfo"
)

// ErrNoCgroup2 says no cgroup2 filesystem is mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 mount")

// Mount is a cgroup2 mount: where it is, and which cgroup it shows as its root
// ("/" unless a subtree or another cgroup namespace's root is mounted).
type Mount struct {
	Point string
	Root  string
}

// FindCgroup2 finds the cgroup2 mount in a mountinfo file (/proc/self/mountinfo).
// It is /sys/fs/cgroup on unified hosts and /sys/fs/cgroup/unified on hybrid ones;
// a mount showing the whole hierarchy (root "/") is preferred over a subtree.
func FindCgroup2(mountinfo string) (Mount, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return Mount{}, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

func parseMountinfo(r io.Reader) (Mount, error) {
	mounts, err := mountinfo.Parse(r)
	if err != nil {
		return Mount{}, err
	}
	var found *Mount
	for _, mi := range mounts {
		if mi.FSType != "cgroup2" {
			continue
		}
		m := Mount{Point: mi.Point, Root: mi.Root}
		if m.Root == "/" {
			return m, nil
		}
		if found == nil {
			found = &m
		}
	}
	if found == nil {
		return Mount{}, ErrNoCgroup2
	}
	return *found, nil
}
