package container

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
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
	var found *Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// "36 35 98:0 /root /mnt/point opts [optional...] - fstype source superopts"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fstype, _, _ := strings.Cut(post, " "); fstype != "cgroup2" {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		m := Mount{Point: unescapeMount(f[4]), Root: unescapeMount(f[3])}
		if m.Root == "/" {
			return m, nil
		}
		if found == nil {
			found = &m
		}
	}
	if err := sc.Err(); err != nil {
		return Mount{}, err
	}
	if found == nil {
		return Mount{}, ErrNoCgroup2
	}
	return *found, nil
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and
// backslash ("\040").
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && isOctal3(s[i+1:]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal3(s string) bool {
	if len(s) < 3 {
		return false
	}
	for i := range 3 {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}
