package ebpf

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
)

// TestExecLongPaths: exec telemetry carries the executable and the working
// directory whole up to PATH_MAX (4096 bytes), and says when it cut them. The
// telemetry set loads without BPF LSM, so this runs on the host;
// TestVMExecLongPaths runs it in the VM.
func TestExecLongPaths(t *testing.T) {
	_, ch := openEngine(t, Options{})
	checkLongExecPaths(t, ch, t.TempDir())
}

// longComponent is a directory name of 100 bytes: paths of n components of it
// are 101*n bytes long below their base.
var longComponent = strings.Repeat("p", 100)

// mkdirLong makes levels components of longComponent below base by descriptors
// (paths longer than PATH_MAX are refused by name), puts a copy of the shell at
// the bottom, and returns the bottom's path.
func mkdirLong(t *testing.T, base string, levels int, sh []byte) string {
	t.Helper()
	fd, err := unix.Open(base, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range levels {
		if err := unix.Mkdirat(fd, longComponent, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, longComponent, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if cerr := unix.Close(fd); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	defer unix.Close(fd)
	f, err := unix.Openat(fd, "sh", unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(f, sh); err != nil {
		t.Fatal(err)
	}
	if err := unix.Close(f); err != nil {
		t.Fatal(err)
	}
	return base + strings.Repeat("/"+longComponent, levels)
}

// checkLongExecPaths execs a copy of the shell at depths past 255, 1024 and
// 4096 bytes below base, from there, and checks the exec events' executable and
// cwd: whole up to 4096 bytes, their first 4096 bytes and PathTruncated past it.
func checkLongExecPaths(t *testing.T, ch <-chan event.Event, base string) {
	t.Helper()
	base, err := filepath.EvalSymlinks(base)
	if err != nil {
		t.Fatal(err)
	}
	shPath, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := os.ReadFile(shPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, levels := range []int{3, 11, 39, 45} {
		dir := filepath.Join(base, strings.Repeat("d", levels))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cwd := mkdirLong(t, dir, levels, sh)
		exe := cwd + "/sh"
		// Down by relative cds (chdir refuses paths past PATH_MAX), then exec
		// the copy by a relative name.
		script := "cd " + dir + strings.Repeat(" && cd -P "+longComponent, levels) + " && exec ./sh -c 'exit 0'"
		cmd := exec.Command("/bin/sh", "-c", script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%d levels: %v: %s", levels, err, out)
		}
		pid := uint32(cmd.Process.Pid)
		ev := waitFor(t, ch, "exec of ./sh", func(ev *event.Event) bool {
			return ev.Kind == event.Exec && ev.Process.PID == pid && ev.Filename == "./sh"
		})
		cut := len(exe) > 4096 || len(cwd) > 4096
		wantExe, wantCwd := exe[:min(len(exe), 4096)], cwd[:min(len(cwd), 4096)]
		if ev.Executable != wantExe || ev.Cwd != wantCwd || ev.PathTruncated != cut {
			t.Errorf("%d levels (exe %d bytes, cwd %d): executable %d bytes %q, cwd %d bytes %q, truncated %v; want %d and %d bytes, truncated %v",
				levels, len(exe), len(cwd), len(ev.Executable), abbrev(ev.Executable), len(ev.Cwd), abbrev(ev.Cwd), ev.PathTruncated,
				len(wantExe), len(wantCwd), cut)
		} else {
			t.Logf("%d levels: executable %d bytes, cwd %d bytes, truncated %v", levels, len(ev.Executable), len(ev.Cwd), ev.PathTruncated)
		}
	}
}

// abbrev shortens a long path for a failure message.
func abbrev(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:40] + "..." + s[len(s)-40:]
}

// TestDecodeExecTail: an exec record's tail holds argv, then the executable and
// the cwd, each in its share of the record's size; a record shorter than its
// shares say is refused, not read past.
func TestDecodeExecTail(t *testing.T) {
	var r bpfobj.ProbeExecEvent
	r.Hdr.Type = uint32(event.Exec)
	args := "/x\x00-v\x00"
	exe, cwd := "/"+strings.Repeat("e", 3000), "/"+strings.Repeat("c", 4095)
	r.ArgsLen, r.ArgsCap, r.PathCap = uint32(len(args)), 1024, 4096
	r.ExeLen, r.CwdLen, r.CwdTruncated = uint32(len(exe)), uint32(len(cwd)), 1
	raw, err := binary.Append(nil, binary.NativeEndian, &r)
	if err != nil {
		t.Fatal(err)
	}
	at := int(unsafe.Offsetof(r.Args))
	raw = append(raw[:at], make([]byte, 1024+2*4096)...)
	copy(raw[at:], args)
	copy(raw[at+1024:], exe)
	copy(raw[at+1024+4096:], cwd)
	ev, err := decodeEvent(raw, names{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ev.Args, []string{"/x", "-v"}) || ev.Executable != exe || ev.Cwd != cwd || !ev.PathTruncated {
		t.Errorf("decoded args %q, executable %d bytes, cwd %d bytes, truncated %v", ev.Args, len(ev.Executable), len(ev.Cwd), ev.PathTruncated)
	}
	if _, err := decodeEvent(raw[:len(raw)-1], names{}, nil); err == nil {
		t.Error("a record shorter than its tail decoded")
	}
}
