// Package host describes the node cloud-defend runs on (host.*) and converts
// the kernel's boot-relative clock to wall-clock time.
package host

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Host is the node, as host.*.
type Host struct {
	Hostname, Name, ID, Architecture, BootID string
	PIDNamespace                             uint32
	IPs, MACs                                []string
	OS                                       OS
}

// OS is host.os.*.
type OS struct {
	Family, Full, Kernel, Name, Platform, Version string
}

// BootTime is the wall-clock time at which CLOCK_BOOTTIME was zero: kernel event
// times (boot-relative, counting suspend) plus this are wall-clock times.
func BootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// Local describes this node. procRoot is where the host's /proc is mounted
// (HOSTFS_PROC_PATH in a container, /proc otherwise); etcRoot the host's /etc.
func Local(procRoot, etcRoot string) Host {
	h := Host{Architecture: arch(), OS: OS{Family: "linux", Platform: "linux"}}
	h.Hostname, _ = os.Hostname()
	h.Name = h.Hostname
	h.ID = firstLine(etcRoot + "/machine-id")
	h.BootID = firstLine(procRoot + "/sys/kernel/random/boot_id")
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		h.OS.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	if rel := osRelease(etcRoot + "/os-release"); rel != nil {
		h.OS.Name, h.OS.Version, h.OS.Full = rel["NAME"], rel["VERSION_ID"], rel["PRETTY_NAME"]
		if id := rel["ID"]; id != "" {
			h.OS.Platform, h.OS.Family = id, family(id, rel["ID_LIKE"])
		}
	}
	var st syscall.Stat_t
	if syscall.Stat(procRoot+"/self/ns/pid", &st) == nil {
		h.PIDNamespace = uint32(st.Ino)
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback != 0 {
				continue
			}
			if len(i.HardwareAddr) > 0 {
				h.MACs = append(h.MACs, strings.ToUpper(strings.ReplaceAll(i.HardwareAddr.String(), ":", "-")))
			}
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					h.IPs = append(h.IPs, n.IP.String())
				}
			}
		}
	}
	return h
}

func arch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

func family(id, like string) string {
	for _, f := range append([]string{id}, strings.Fields(like)...) {
		switch f {
		case "debian", "redhat", "suse", "arch":
			return f
		case "rhel", "fedora", "centos":
			return "redhat"
		}
	}
	return id
}

func firstLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(line)
}

func osRelease(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}
