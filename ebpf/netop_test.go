package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// netOps is the network workload the tests and benchmarks run inside a
// container (the test binary with CLOUD_DEFEND_HELPER=netop): each argument is
// a step, done with the plain syscalls, and its result is printed
// ("STEP ok", "STEP eperm", "STEP err: ..."):
//
//	lo                       bring the loopback interface up (a new netns has it down)
//	listen:tcp:ADDR:PORT     bind and listen (the listener accept uses)
//	bind:PROTO:ADDR:PORT     bind a new socket
//	connect:PROTO:ADDR:PORT  connect a new socket (kept open)
//	sendto:udp:ADDR:PORT     send a datagram from a new unconnected socket
//	accept                   accept on the listener
//	tcploop:N:ADDR:PORT      N times: connect to the listener, accept, close both
//	udploop:N:ADDR:PORT      N times: connect a UDP socket, close it
//
// It exits 77 when any step was refused with EPERM, 1 on another error.
func netOps(steps []string) int {
	listener := -1
	code := 0
	for _, step := range steps {
		err := netStep(step, &listener)
		switch {
		case err == nil:
			fmt.Println(step, "ok")
		case errors.Is(err, unix.EPERM):
			fmt.Println(step, "eperm")
			code = 77
		default:
			fmt.Println(step, "err:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

func sockaddrOf(addr, port string) (unix.Sockaddr, int, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, 0, err
	}
	if a.Is4() {
		return &unix.SockaddrInet4{Port: p, Addr: a.As4()}, unix.AF_INET, nil
	}
	return &unix.SockaddrInet6{Port: p, Addr: a.As16()}, unix.AF_INET6, nil
}

func socketFor(proto string, family int) (int, error) {
	if proto == "udp" {
		return unix.Socket(family, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
	}
	return unix.Socket(family, unix.SOCK_STREAM, unix.IPPROTO_TCP)
}

func netStep(step string, listener *int) error {
	f := strings.Split(step, ":")
	if len(f) > 4 && f[0] != "try" && f[0] != "bconnect" { // an IPv6 address has colons: kind:proto:ADDR...:PORT
		f = []string{f[0], f[1], strings.Join(f[2:len(f)-1], ":"), f[len(f)-1]}
	}
	switch f[0] {
	case "lo":
		return loopbackUp()
	case "accept":
		nfd, _, err := unix.Accept4(*listener, 0)
		if err == nil {
			unix.Close(nfd)
		}
		return err
	case "acceptio": // accept, then send on the accepted connection
		nfd, _, err := unix.Accept4(*listener, 0)
		if err != nil {
			return err
		}
		defer unix.Close(nfd)
		_, err = unix.Write(nfd, []byte("x"))
		return err
	case "bconnect": // bconnect:tcp:SRC:DST:PORT: a client bound to SRC (any port) connects
		sa, fam, err := sockaddrOf(f[3], f[4])
		if err != nil {
			return err
		}
		src, _, err := sockaddrOf(f[2], "0")
		if err != nil {
			return err
		}
		fd, err := socketFor(f[1], fam)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, src); err != nil {
			return err
		}
		return unix.Connect(fd, sa)
	case "udptry": // udptry:N:ADDR:PORT: N sends from fresh sockets, counted
		n, _ := strconv.Atoi(f[1])
		sa, fam, err := sockaddrOf(f[2], f[3])
		if err != nil {
			return err
		}
		ok, eperm := 0, 0
		for range n {
			fd, err := socketFor("udp", fam)
			if err != nil {
				return err
			}
			err = unix.Sendto(fd, []byte("x"), 0, sa)
			unix.Close(fd)
			switch {
			case err == nil:
				ok++
			case errors.Is(err, unix.EPERM):
				eperm++
			default:
				return err
			}
		}
		fmt.Printf("udptry ok=%d eperm=%d\n", ok, eperm)
		return nil
	case "try": // try:connect|bind:PROTO:ADDR:PORT: one operation on a fresh socket, closed; refusals are results
		sub := strings.Join(f[1:], ":")
		g := strings.Split(sub, ":")
		if len(g) > 4 {
			g = []string{g[0], g[1], strings.Join(g[2:len(g)-1], ":"), g[len(g)-1]}
		}
		sa, fam, err := sockaddrOf(g[2], g[3])
		if err != nil {
			return err
		}
		fd, err := socketFor(g[1], fam)
		if err != nil {
			return err
		}
		if g[0] == "bind" {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return err
			}
			err = unix.Bind(fd, sa)
		} else {
			err = unix.Connect(fd, sa)
		}
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return err
		}
		return nil // refused connections and addresses in use are not refusals
	case "tcploop", "udploop":
		n, _ := strconv.Atoi(f[1])
		sa, fam, err := sockaddrOf(f[2], f[3])
		if err != nil {
			return err
		}
		for range n {
			proto := "tcp"
			if f[0] == "udploop" {
				proto = "udp"
			}
			fd, err := socketFor(proto, fam)
			if err != nil {
				return err
			}
			err = unix.Connect(fd, sa)
			if err == nil && proto == "tcp" {
				var nfd int
				if nfd, _, err = unix.Accept4(*listener, 0); err == nil {
					unix.Close(nfd)
				}
			}
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		return nil
	}
	if len(f) != 4 {
		return fmt.Errorf("bad step %q", step)
	}
	sa, fam, err := sockaddrOf(f[2], f[3])
	if err != nil {
		return err
	}
	fd, err := socketFor(f[1], fam)
	if err != nil {
		return err
	}
	switch f[0] {
	case "listen":
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
		*listener = fd
		return unix.Listen(fd, 128)
	case "bind":
		return unix.Bind(fd, sa)
	case "connect":
		return unix.Connect(fd, sa)
	case "sendto":
		defer unix.Close(fd)
		return unix.Sendto(fd, []byte("x"), 0, sa)
	}
	return fmt.Errorf("bad step %q", step)
}

// loopbackUp sets lo up (SIOCSIFFLAGS), as ip link set lo up does.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var req [40]byte
	copy(req[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), unix.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		return e
	}
	*(*uint16)(unsafe.Pointer(&req[16])) |= unix.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), unix.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		return e
	}
	return nil
}

// testHelper runs the helper the test binary was started as: netop (netOps),
// or rdcreate, which opens its argument O_RDONLY|O_CREAT (a creation without
// write intent, as runtimes make mount points).
func testHelper() {
	switch os.Getenv("CLOUD_DEFEND_HELPER") {
	case "netop":
		os.Exit(netOps(os.Args[1:]))
	case "rdcreate":
		fd, err := unix.Open(os.Args[1], unix.O_RDONLY|unix.O_CREAT, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		unix.Close(fd)
		os.Exit(0)
	}
}
