// Package fileloop is the file benchmarks' workload, shared by ebpf's VM file
// benchmarks and the peer benchmark (internal/peerbench): n iterations of one
// file operation pattern, raw system calls on paths prepared beforehand, with
// the garbage collector off, so the loop's own cost is the same under every
// configuration and only the kernel's differs. Only test binaries import it.
package fileloop

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Paths are the files the operations work on, made beforehand (New and B need
// not exist): Read is opened read-only, Write opened for writing, chmod'ed,
// mapped and given an xattr, New created and unlinked, A renamed to B and back.
type Paths struct {
	Read, Write, New, A, B string
}

// Run runs count iterations of the operation pattern kind on p, "open-ro",
// "open-wr", "create-unlink", "chmod", "rename", "mmap-shared" or "setxattr",
// prints the loop's duration in nanoseconds (the loop alone, without process
// start-up) and returns the exit status: 2 for a bad count or kind, 1 when an
// operation fails (said on stderr).
func Run(kind, count string, p Paths) int {
	n, err := strconv.Atoi(count)
	if err != nil {
		return 2
	}
	debug.SetGCPercent(-1)
	cstr := func(s string) uintptr {
		b, err := unix.BytePtrFromString(s)
		if err != nil {
			panic(err)
		}
		return uintptr(unsafe.Pointer(b))
	}
	read, data, created, a, b := cstr(p.Read), cstr(p.Write), cstr(p.New), cstr(p.A), cstr(p.B)
	sys := func(trap, a1, a2, a3 uintptr) (uintptr, syscall.Errno) {
		r, _, errno := unix.RawSyscall(trap, a1, a2, a3)
		return r, errno
	}
	cwd := unix.AT_FDCWD
	at := uintptr(cwd)
	var op func(i int) syscall.Errno
	switch kind {
	case "open-ro", "open-wr":
		path, flags := read, uintptr(unix.O_RDONLY)
		if kind == "open-wr" {
			path, flags = data, unix.O_WRONLY
		}
		op = func(int) syscall.Errno {
			fd, errno := sys(unix.SYS_OPENAT, at, path, flags)
			if errno == 0 {
				_, errno = sys(unix.SYS_CLOSE, fd, 0, 0)
			}
			return errno
		}
	case "create-unlink":
		op = func(int) syscall.Errno {
			fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, at, created, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644, 0, 0)
			if errno == 0 {
				_, _ = sys(unix.SYS_CLOSE, fd, 0, 0)
				_, errno = sys(unix.SYS_UNLINKAT, at, created, 0)
			}
			return errno
		}
	case "chmod":
		op = func(i int) syscall.Errno {
			_, errno := sys(unix.SYS_FCHMODAT, at, data, uintptr(0o600+i%2*0o40))
			return errno
		}
	case "rename":
		op = func(i int) syscall.Errno {
			from, to := a, b
			if i%2 == 1 {
				from, to = to, from
			}
			_, _, errno := unix.RawSyscall6(unix.SYS_RENAMEAT, at, from, at, to, 0, 0)
			return errno
		}
	case "mmap-shared":
		// A shared writable mapping of a file opened once, before the loop.
		fd, err := unix.Open(p.Write, unix.O_RDWR, 0)
		if err != nil {
			return 1
		}
		op = func(int) syscall.Errno {
			addr, _, errno := unix.RawSyscall6(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED, uintptr(fd), 0)
			if errno == 0 {
				_, errno = sys(unix.SYS_MUNMAP, addr, 4096, 0)
			}
			return errno
		}
	case "setxattr":
		name, value := cstr("trusted.bench"), cstr("1")
		op = func(int) syscall.Errno {
			_, _, errno := unix.RawSyscall6(unix.SYS_SETXATTR, data, name, value, 1, 0, 0)
			if errno == unix.EOPNOTSUPP {
				errno = 0 // the hooks ran; the file system has no such xattrs
			}
			return errno
		}
	default:
		return 2
	}
	start := time.Now()
	for i := range n {
		if errno := op(i); errno != 0 {
			fmt.Fprintf(os.Stderr, "%s: %v\n", kind, errno)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds())
	return 0
}
