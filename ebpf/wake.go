package ebpf

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringWaiter parks the reader in the Go runtime's network poller until the
// kernel wakes the ring buffer up or a deadline passes.
//
// ringbuf.Reader waits in a blocking epoll_wait of its own. A thread blocked in
// a system call for more than 10 ms has its P taken back by the runtime's
// monitor thread, which then polls every 20 µs for a millisecond before it
// backs off again: waiting that way twenty times a second was a fifth of the
// daemon's CPU at 5,000 events/s. A goroutine parked in the poller is no
// system call, and the monitor sleeps while nothing runs.
//
// The ring is in an epoll set of our own, edge-triggered, so the set is ready
// once per kernel wake-up and stays so until consume sees it: a wake-up that
// comes while the reader is still draining the last one is not lost.
type ringWaiter struct {
	f   *os.File // the epoll set, registered with the runtime poller
	rc  syscall.RawConn
	evs [1]unix.EpollEvent
}

func newRingWaiter(ring *ebpf.Map) (*ringWaiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(ring.FD())}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, ring.FD(), &ev); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	// Non-blocking is what makes os.NewFile register the descriptor with the
	// runtime poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &ringWaiter{f: os.NewFile(uintptr(fd), "ring-epoll")}
	if w.rc, err = w.f.SyscallConn(); err == nil {
		err = w.f.SetReadDeadline(time.Time{}) // fails where the file is not in the poller
	}
	if err != nil {
		w.f.Close()
		return nil, fmt.Errorf("ring buffer wake-ups through the runtime poller: %w", err)
	}
	return w, nil
}

// wait returns once the kernel has woken the ring since the last wait, or after
// d; os.ErrClosed once close was called.
func (w *ringWaiter) wait(d time.Duration) error {
	if err := w.f.SetReadDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	err := w.rc.Read(func(fd uintptr) bool {
		// Consumes the edge: the set is not ready again until the next wake-up.
		n, err := unix.EpollWait(int(fd), w.evs[:], 0)
		return n > 0 || (err != nil && err != unix.EINTR)
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// close wakes a pending wait, which returns os.ErrClosed.
func (w *ringWaiter) close() error { return w.f.Close() }
