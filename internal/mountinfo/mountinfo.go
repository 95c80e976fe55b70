// Package mountinfo reads the kernel's mount table (/proc/self/mountinfo,
// proc(5)) and detaches mounts below a directory: what the cgroup resolver
// and the tests that start containers and Kubernetes nodes share.
package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Mount is one line of the mount table.
type Mount struct {
	Root   string // the path within its file system that is mounted
	Point  string // where it is mounted
	FSType string
}

// Read returns this process's mount table, in mount order (parents first).
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads a mountinfo file:
// "36 35 98:0 /root /mnt/point opts [optional...] - fstype source superopts".
func Parse(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		fstype, _, _ := strings.Cut(post, " ")
		out = append(out, Mount{Root: unescape(f[3]), Point: unescape(f[4]), FSType: fstype})
	}
	return out, sc.Err()
}

// Under lists the mount points at or below any of dirs, in mount order.
func Under(dirs ...string) []string {
	mounts, _ := Read()
	var out []string
	for _, m := range mounts {
		for _, d := range dirs {
			if d != "" && (m.Point == d || strings.HasPrefix(m.Point, d+"/")) {
				out = append(out, m.Point)
				break
			}
		}
	}
	return out
}

// UnmountUnder lazily unmounts every mount at or below dirs, children first,
// until none is left (a mount can hide another at the same point).
func UnmountUnder(dirs ...string) error {
	for range 10 {
		mps := Under(dirs...)
		if len(mps) == 0 {
			return nil
		}
		for i := len(mps) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
		}
	}
	if mps := Under(dirs...); len(mps) > 0 {
		return fmt.Errorf("still mounted: %s", strings.Join(mps, ", "))
	}
	return nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash ("\040").
func unescape(s string) string {
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
