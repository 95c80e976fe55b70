package container

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileidKernfs is the file handle type of kernfs (cgroupfs): its handle is the
// node's 64-bit id, which is the cgroup id the kernel reports (and, on 64-bit
// hosts, the directory's inode number).
const fileidKernfs = 0xfe

const (
	defaultMaxCached = 1 << 16
	defaultMinWalk   = time.Second
)

// Cgroups resolves cgroup v2 ids to cgroup paths under one cgroup2 mount. It
// asks the kernel by file handle (open_by_handle_at, which needs
// CAP_DAC_READ_SEARCH) and falls back to walking the hierarchy, so new cgroups
// are found on their first miss. Results are cached. Safe for concurrent use.
type Cgroups struct {
	mount Mount
	// MinWalk is the least time between two walks started by misses: a storm of
	// ids that are already gone must not turn into a storm of walks.
	MinWalk time.Duration
	// MaxCached bounds the cache; ids are never reused, so without a bound it
	// would grow with every container the node ever ran.
	MaxCached int

	mu       sync.Mutex
	fd       int // the mount's directory, for open_by_handle_at; -1 when handles do not work
	paths    map[uint64]string
	lastWalk time.Time
}

// Open finds the cgroup2 mount in this process's own mount table and returns its
// resolver. The mount must be visible here; in a container, mount the host's
// cgroup2 hierarchy into it.
func Open() (*Cgroups, error) {
	m, err := FindCgroup2("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return OpenMount(m)
}

// OpenMount returns a resolver for a cgroup2 mount.
func OpenMount(m Mount) (*Cgroups, error) {
	fd, err := unix.Open(m.Point, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: m.Point, Err: err}
	}
	return &Cgroups{mount: m, fd: fd, paths: map[uint64]string{}, MinWalk: defaultMinWalk, MaxCached: defaultMaxCached}, nil
}

// Mount returns the mount the resolver reads.
func (c *Cgroups) Mount() Mount { return c.mount }

// Close releases the mount's directory.
func (c *Cgroups) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// Path returns the path of cgroup id as /proc/<pid>/cgroup writes it ("/" for
// the root). ok is false for a cgroup that no longer exists or was not found.
func (c *Cgroups) Path(id uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.paths[id]; ok {
		return p, true
	}
	if c.fd >= 0 {
		p, err := c.byHandle(id)
		if err == nil {
			c.remember(id, p)
			return p, true
		}
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			return "", false // asked the kernel itself: gone
		}
		// No permission or no kernfs handles here: walks from now on.
		unix.Close(c.fd)
		c.fd = -1
	}
	if time.Since(c.lastWalk) < c.MinWalk {
		return "", false
	}
	if err := c.walk(); err != nil {
		return "", false
	}
	p, ok := c.paths[id]
	return p, ok
}

// Refresh rewalks the hierarchy now, forgetting removed cgroups.
func (c *Cgroups) Refresh() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.walk()
}

// ID returns the id of the cgroup at path (as /proc/<pid>/cgroup writes it).
func (c *Cgroups) ID(path string) (uint64, error) {
	var st unix.Stat_t
	full := c.fullPath(path)
	if err := unix.Stat(full, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: full, Err: err}
	}
	return st.Ino, nil
}

func (c *Cgroups) fullPath(path string) string {
	rel := path
	if c.mount.Root != "/" {
		rel = strings.TrimPrefix(path, c.mount.Root)
	}
	return filepath.Join(c.mount.Point, rel)
}

// cgroupPath turns a path under the mount point into a cgroup path.
func (c *Cgroups) cgroupPath(full string) (string, bool) {
	rel, ok := strings.CutPrefix(full, c.mount.Point)
	if !ok || rel != "" && rel[0] != '/' {
		return "", false
	}
	return filepath.Join("/", c.mount.Root, rel), true
}

func (c *Cgroups) byHandle(id uint64) (string, error) {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	fd, err := unix.OpenByHandleAt(c.fd, unix.NewFileHandle(fileidKernfs, b[:]), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	full, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	p, ok := c.cgroupPath(full)
	if !ok {
		return "", unix.ENOENT
	}
	return p, nil
}

// walk rebuilds the cache from the hierarchy. Callers hold mu.
func (c *Cgroups) walk() error {
	c.lastWalk = time.Now()
	paths := map[uint64]string{}
	err := filepath.WalkDir(c.mount.Point, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed while walking: skip it
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if p, ok := c.cgroupPath(full); ok && len(paths) < c.MaxCached {
			paths[st.Ino] = p
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.paths = paths
	return nil
}

// remember caches a path, starting over when the cache is full.
func (c *Cgroups) remember(id uint64, p string) {
	if len(c.paths) >= c.MaxCached {
		c.paths = map[uint64]string{}
	}
	c.paths[id] = p
}

// Info returns what the path of cgroup id says about its container.
func (c *Cgroups) Info(id uint64) (Info, bool) {
	p, ok := c.Path(id)
	if !ok {
		return Info{}, false
	}
	return FromPath(p), true
}

// FindContainer returns the id of the cgroup a container's processes run in:
// the directory whose name holds the container id (runtimes name it
// "<id>", "cri-containerd-<id>.scope", "crio-<id>.scope", …). The hierarchy is
// walked; runtime helper cgroups ("crio-conmon-<id>") are not the container.
func (c *Cgroups) FindContainer(id string) (uint64, bool) {
	if id == "" {
		return 0, false
	}
	var found uint64
	// WalkDir returns only what the callback returns, and it returns nil or
	// SkipAll (which WalkDir turns into nil): entries that vanish or cannot
	// be read mid-walk are skipped, and not finding the container is the
	// answer, found == 0.
	_ = filepath.WalkDir(c.mount.Point, func(full string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || found != 0 {
			return nil
		}
		name := d.Name()
		if strings.Contains(name, id) && !strings.Contains(name, "conmon") {
			if p, ok := c.cgroupPath(full); ok && FromPath(p).ID == id {
				if info, err := d.Info(); err == nil {
					if st, ok := info.Sys().(*syscall.Stat_t); ok {
						found = st.Ino
						return filepath.SkipAll
					}
				}
			}
		}
		return nil
	})
	return found, found != 0
}
