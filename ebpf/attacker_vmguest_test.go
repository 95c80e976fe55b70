//go:build vmguest

package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The attacker runs inside the adversarial suite's container (the test binary,
// copied into the image, with CLOUD_DEFEND_HELPER=attack): each attack is one or a
// few raw system calls, the way an intruder with Docker's default capabilities
// and no seccomp profile would make them, and prints one line per attack:
//
//	RESULT <name> <refusals> <other errors>
//
// refusals counts the calls the kernel refused with EPERM; the suite holds each
// refusal to exactly one document.

// attack is one attempt; it returns the errors its calls got.
type attack func() []error

// preopened holds what the "before" phase opened before the policy came into force.
var preopened = map[string]int{}

// preopenPaths are opened for writing (or mapped) before the policy: each is then
// written another way after it.
var preopenPaths = []string{"/etc/pre-write", "/etc/pre-pwritev2", "/etc/pre-ftruncate", "/etc/pre-fallocate",
	"/etc/pre-copy", "/etc/pre-mmap", "/etc/pre-mprotect", "/etc/pre-uring"}

var preMapped []byte // /etc/pre-mprotect, mapped shared read-only before the policy

func attacks() map[string]attack {
	return map[string]attack{
		// Descriptors opened before the policy, written after it.
		"pre-write": func() []error {
			_, err := unix.Write(preopened["/etc/pre-write"], []byte("x"))
			return []error{err}
		},
		"pre-pwritev2": func() []error {
			_, err := unix.Pwritev2(preopened["/etc/pre-pwritev2"], [][]byte{[]byte("x")}, 0, 0)
			return []error{err}
		},
		"pre-ftruncate": func() []error { return []error{unix.Ftruncate(preopened["/etc/pre-ftruncate"], 0)} },
		"pre-fallocate": func() []error { return []error{unix.Fallocate(preopened["/etc/pre-fallocate"], 0, 0, 4096)} },
		"pre-copy": func() []error {
			src, err := unix.Open("/etc/hostname", unix.O_RDONLY, 0)
			if err != nil {
				return []error{fmt.Errorf("open source: %w", err)}
			}
			defer unix.Close(src)
			_, err = unix.CopyFileRange(src, nil, preopened["/etc/pre-copy"], nil, 2, 0)
			return []error{err}
		},
		"pre-mmap": func() []error {
			b, err := unix.Mmap(preopened["/etc/pre-mmap"], 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err == nil {
				b[0] = 'x'
				unix.Munmap(b)
			}
			return []error{err}
		},
		"pre-mprotect": func() []error {
			return []error{unix.Mprotect(preMapped, unix.PROT_READ|unix.PROT_WRITE)}
		},
		"pre-uring-write": func() []error {
			buf := []byte("x")
			return []error{uring(sqe{opcode: opWrite, fd: int32(preopened["/etc/pre-uring"]), addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), len: 1}, buf)}
		},

		// chroot: paths are the container's, not the chrooted process's.
		"chroot-exec": func() []error {
			if err := unix.Chroot("/opt"); err != nil {
				return []error{fmt.Errorf("chroot: %w", err)}
			}
			return []error{unix.Exec("/deny/b1", []string{"b1"}, nil)}
		},
		"chroot-write": func() []error {
			if err := unix.Chroot("/etc"); err != nil {
				return []error{fmt.Errorf("chroot: %w", err)}
			}
			return []error{openWrite("/chroot-w")}
		},
		// A directory descriptor kept across a chroot into a volume: the overlay's
		// /etc must not pass for a volume (ignoreVolumeMounts).
		"chroot-volume": func() []error {
			etc, err := unix.Open("/etc", unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				return []error{err}
			}
			if err := unix.Chroot("/data"); err != nil {
				return []error{fmt.Errorf("chroot: %w", err)}
			}
			fd, err := unix.Openat(etc, "chroot-v", unix.O_WRONLY|unix.O_APPEND, 0)
			if err == nil {
				unix.Close(fd)
			}
			return []error{err}
		},

		// Hard links: an alias of a protected file cannot be made.
		"link-etc": func() []error { return []error{unix.Link("/etc/link-src", "/tmp/link-alias")} },
		"link-exe": func() []error { return []error{unix.Link("/usr/bin/tool", "/tmp/tool-alias")} },

		// Execute permission and capabilities without chmod.
		"acl-overlay": func() []error { return []error{setACLx("/opt/acl-plain")} },
		"acl-volume":  func() []error { return []error{setACLx("/data/acl-plain")} },
		"caps": func() []error {
			// VFS_CAP_REVISION_2, CAP_NET_RAW permitted and effective.
			v := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			return []error{unix.Setxattr("/usr/bin/tool2", "security.capability", v, 0)}
		},

		// A parent directory moved into place brings the paths below it.
		// (The image has no /usr/local: overlayfs refuses to rename an image
		// directory away with EXDEV, so mv would copy; an attacker removes it.)
		"mv-parent": func() []error {
			if err := os.MkdirAll("/tmp/loc/bin", 0o755); err != nil {
				return []error{err}
			}
			if err := os.WriteFile("/tmp/loc/bin/tool", elf(exitZero), 0o755); err != nil {
				return []error{err}
			}
			return []error{unix.Rename("/tmp/loc", "/usr/local")}
		},

		// A refused write-open, then memfds at the freed file's address: the
		// refusal must not stick to them.
		"memfd-reuse": func() []error {
			var errs []error
			for range 30 {
				errs = append(errs, openWrite("/etc/memfd-guard"))
				fd, err := unix.MemfdCreate("scratch", 0)
				if err != nil {
					errs = append(errs, fmt.Errorf("memfd_create: %w", noEPERM(err)))
					continue
				}
				if _, err := unix.Write(fd, []byte("data")); err != nil {
					errs = append(errs, fmt.Errorf("memfd write: %w", noEPERM(err)))
				}
				unix.Close(fd)
			}
			return errs
		},

		// Variants that hold already and must keep holding.
		"symlink": func() []error {
			if err := unix.Symlink("/etc/sym-target", "/tmp/sym"); err != nil {
				return []error{err}
			}
			return []error{openWrite("/tmp/sym")}
		},
		"proc-root": func() []error { return []error{openWrite("/proc/self/root/etc/proc-root")} },
		"proc-fd": func() []error {
			fd, err := unix.Open("/etc/proc-fd", unix.O_PATH, 0)
			if err != nil {
				return []error{err}
			}
			return []error{openWrite("/proc/self/fd/" + strconv.Itoa(fd))}
		},
		"dotdot": func() []error { return []error{openWrite("//etc/./../etc//dotdot")} },
		"execveat-opath": func() []error {
			fd, err := unix.Open("/opt/deny/b2", unix.O_PATH, 0)
			if err != nil {
				return []error{err}
			}
			return []error{execveat(fd, "", unix.AT_EMPTY_PATH)}
		},
		"memfd-exec": func() []error {
			fd, err := unix.MemfdCreate("payload", 0)
			if err != nil {
				return []error{err}
			}
			if _, err := unix.Write(fd, elf(exitZero)); err != nil {
				return []error{err}
			}
			return []error{execveat(fd, "", unix.AT_EMPTY_PATH)}
		},
		"mmap-exec": func() []error {
			fd, err := unix.Open("/opt/deny/b3", unix.O_RDONLY, 0)
			if err != nil {
				return []error{err}
			}
			_, err = unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
			return []error{err}
		},
		"mprotect-exec": func() []error {
			fd, err := unix.Open("/opt/deny/b4", unix.O_RDONLY, 0)
			if err != nil {
				return []error{err}
			}
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE)
			if err != nil {
				return []error{fmt.Errorf("map readable: %w", noEPERM(err))}
			}
			return []error{unix.Mprotect(b, unix.PROT_READ|unix.PROT_EXEC)}
		},
		"fchmod": func() []error {
			fd, err := unix.Open("/opt/fchmod", unix.O_RDONLY, 0)
			if err != nil {
				return []error{err}
			}
			return []error{unix.Fchmod(fd, 0o755)}
		},
		// On the volume: overlayfs has O_TMPFILE only from 6.6.
		"tmpfile": func() []error {
			fd, err := unix.Open("/data/tmpf", unix.O_TMPFILE|unix.O_RDWR, 0o755)
			if err != nil {
				return []error{err}
			}
			if _, err := unix.Write(fd, elf(exitZero)); err != nil {
				return []error{err}
			}
			return []error{unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, "/data/tmpf/tool", unix.AT_SYMLINK_FOLLOW)}
		},
		"exchange": func() []error {
			return []error{unix.Renameat2(unix.AT_FDCWD, "/tmp/evil", unix.AT_FDCWD, "/usr/bin/xchg", unix.RENAME_EXCHANGE)}
		},
		"uring-open": func() []error {
			p, _ := unix.BytePtrFromString("/etc/uring-open")
			return []error{uring(sqe{opcode: opOpenat, fd: unix.AT_FDCWD, addr: uint64(uintptr(unsafe.Pointer(p))), opFlags: unix.O_WRONLY | unix.O_APPEND}, p)}
		},
		"uring-unlink": func() []error {
			p, _ := unix.BytePtrFromString("/etc/uring-unlink")
			return []error{uring(sqe{opcode: opUnlinkat, fd: unix.AT_FDCWD, addr: uint64(uintptr(unsafe.Pointer(p)))}, p)}
		},

		// What must keep working: no refusal, no document.
		"allowed": func() []error {
			return []error{noEPERM(os.WriteFile("/tmp/ok", []byte("ok"), 0o644)), noEPERM(exec.Command("/usr/bin/tool").Run()),
				noEPERM(os.WriteFile("/data/ok", []byte("ok"), 0o644))}
		},
	}
}

// noEPERM marks an EPERM where none is allowed, so it is not counted as a refusal.
func noEPERM(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("refused: %v", err)
	}
	return err
}

func openWrite(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// setACLx gives path an access ACL whose owner entry grants execute.
func setACLx(path string) error {
	entry := func(tag, perm uint16, id uint32) []byte {
		return []byte{byte(tag), byte(tag >> 8), byte(perm), byte(perm >> 8), byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)}
	}
	v := []byte{2, 0, 0, 0} // POSIX_ACL_XATTR_VERSION
	v = append(v, entry(0x01, 7, 0xffffffff)...)
	v = append(v, entry(0x04, 4, 0xffffffff)...)
	v = append(v, entry(0x20, 4, 0xffffffff)...)
	return unix.Setxattr(path, "system.posix_acl_access", v, 0)
}

func execveat(fd int, path string, flags int) error {
	p, _ := unix.BytePtrFromString(path)
	argv := []*byte{p, nil}
	env := []*byte{nil}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&argv[0])),
		uintptr(unsafe.Pointer(&env[0])), uintptr(flags), 0)
	return errno
}

// A minimal io_uring: one submission, one completion, through the raw system calls
// (no library: the suite's container has only this binary).
const (
	opOpenat   = 18
	opWrite    = 23
	opUnlinkat = 36
)

type sqe struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len           uint32
	opFlags       uint32
	userData      uint64
	bufIndex      uint16
	personality   uint16
	spliceFdIn    int32
	pad           [2]uint64
}

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sq                                                                     sqOffsets
	cq                                                                     cqOffsets
}

// uring submits s and returns its completion's error; keep is kept alive meanwhile.
func uring(s sqe, keep any) error {
	var p uringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_setup: %w", noEPERM(errno))
	}
	defer unix.Close(int(fd))
	sqRing, err := unix.Mmap(int(fd), 0, int(p.sq.array+p.sqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("map sq ring: %w", noEPERM(err))
	}
	defer unix.Munmap(sqRing)
	cqRing, err := unix.Mmap(int(fd), 0x8000000, int(p.cq.cqes+p.cqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("map cq ring: %w", noEPERM(err))
	}
	defer unix.Munmap(cqRing)
	sqes, err := unix.Mmap(int(fd), 0x10000000, int(p.sqEntries)*64, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("map sqes: %w", noEPERM(err))
	}
	defer unix.Munmap(sqes)
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	*(*sqe)(unsafe.Pointer(&sqes[0])) = s
	tail := atomic.LoadUint32(u32(sqRing, p.sq.tail))
	mask := *u32(sqRing, p.sq.ringMask)
	*u32(sqRing, p.sq.array+4*(tail&mask)) = 0
	atomic.StoreUint32(u32(sqRing, p.sq.tail), tail+1)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, fd, 1, 1, 1 /* IORING_ENTER_GETEVENTS */, 0, 0); errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", noEPERM(errno))
	}
	head := atomic.LoadUint32(u32(cqRing, p.cq.head))
	cqe := p.cq.cqes + 16*(head&*u32(cqRing, p.cq.ringMask))
	res := int32(*u32(cqRing, cqe+8))
	atomic.StoreUint32(u32(cqRing, p.cq.head), head+1)
	runtime.KeepAlive(keep)
	if res < 0 {
		return unix.Errno(-res)
	}
	if s.opcode == opOpenat {
		unix.Close(int(res))
	}
	return nil
}

// attackMain is the helper's entry: "before" opens the pre-policy descriptors and
// waits for the suite to put the policy in force; any other argument is an attack.
func attackMain(args []string) int {
	if len(args) == 1 && args[0] == "before" {
		for _, path := range preopenPaths {
			fd, err := unix.Open(path, unix.O_RDWR, 0)
			if err != nil {
				fmt.Fprintf(os.Stderr, "open %s before the policy: %v\n", path, err)
				return 3
			}
			preopened[path] = fd
		}
		b, err := unix.Mmap(preopened["/etc/pre-mprotect"], 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			fmt.Fprintf(os.Stderr, "map before the policy: %v\n", err)
			return 3
		}
		preMapped = b
		fmt.Println("READY")
		// The suite answers once the policy is in force.
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 3
		}
		args = []string{"pre-write", "pre-pwritev2", "pre-ftruncate", "pre-fallocate", "pre-copy", "pre-mmap", "pre-mprotect", "pre-uring-write"}
	}
	all := attacks()
	for _, name := range args {
		a, ok := all[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "no attack %q\n", name)
			return 3
		}
		refused, other := 0, 0
		for _, err := range a() {
			switch {
			case err == nil:
			case errors.Is(err, unix.EPERM):
				refused++
			default:
				other++
				fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			}
		}
		fmt.Printf("RESULT %s %d %d\n", name, refused, other)
	}
	return 0
}
