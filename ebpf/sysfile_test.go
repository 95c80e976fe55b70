package ebpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/event"
)

// sysfileHelperEnv names the directory TestSysfileHelper works in; unset, it
// is skipped.
const sysfileHelperEnv = "CLOUD_DEFEND_SYSFILE_HELPER"

// TestSysfileHelper is the workload of TestFileSyscallsMore, run by it in a
// container (this test binary, re-executed): the file syscalls the LSM hooks
// see and the tracepoints did not, by names through symlinks and "..".
func TestSysfileHelper(t *testing.T) {
	dir := os.Getenv(sysfileHelperEnv)
	if dir == "" {
		t.Skip("the workload of TestFileSyscallsMore")
	}
	step := func(what string, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
			os.Exit(1)
		}
	}
	step("chdir", os.Chdir(dir))
	step("link", unix.Link("lnk/f", "hard"))                                                         // real/f, through the directory link
	step("linkat", unix.Linkat(unix.AT_FDCWD, "fl", unix.AT_FDCWD, "hard2", unix.AT_SYMLINK_FOLLOW)) // follows fl to real/f
	step("truncate", unix.Truncate("fl", 0))                                                         // follows fl: real/f
	fd, err := unix.Open("real/fc", unix.O_RDONLY, 0)
	step("open", err)
	step("fchmod", unix.Fchmod(fd, 0o755)) // by descriptor: real/fc gains x
	fd, err = unix.Open("real/ft", unix.O_WRONLY, 0)
	step("open", err)
	step("ftruncate", unix.Ftruncate(fd, 0))
	step("mknod", unix.Mknod("lnk/node", unix.S_IFREG|0o644, 0))
	step("unlink", unix.Unlink("lnk/../real/node")) // ".." after a symlink: from real's parent
	step("unlink symlink", unix.Unlink("fu"))       // the link itself, not real/f
	step("rename", unix.Rename("lnk/g", "real/../moved"))
	step("chmod", unix.Chmod("lnk/../lnk/h", 0o600)) // follows: real/h
	step("create on a volume", os.WriteFile("vol/v", []byte("v\n"), 0o644))
	step("write a file mount", os.WriteFile("filemnt", []byte("w\n"), 0o644))
	// Stay while user space resolves names and reads mounts through this
	// task's /proc entries.
	time.Sleep(time.Second)
}

// TestFileSyscallsMore: without BPF LSM, link (the source modified, the new
// name created), truncate and ftruncate (modify), fchmod (chmod by descriptor)
// and mknod of a regular file (create) are detected; names passed are resolved
// as the kernel resolved them (symlinks and ".." on the way, the last component
// only where the call follows it), and the volume conditions are read from the
// container's mounts: a selector with ignoreVolumeMounts does not match on the
// volume nor on the single-file mount.
func TestFileSyscallsMore(t *testing.T) {
	e, ch := openEngine(t, Options{DisableLSM: true})
	if !e.FileSyscalls().Available || e.FileSyscalls().Reason != "" {
		t.Fatalf("file syscalls: %+v", e.FileSyscalls())
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Swap(mustParse(t, fmt.Sprintf(`file:
  selectors:
    - name: all
      operation: [createFile, modifyFile, deleteFile, createExecutable, modifyExecutable]
      targetFilePath: [%[1]s/**]
    - name: rootfs
      operation: [createFile, modifyFile, deleteFile, createExecutable, modifyExecutable]
      targetFilePath: [%[1]s/**]
      ignoreVolumeMounts: true
  responses:
    - match: [all, rootfs]
      actions: [log]
`, dir))); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"real", "vol", "volsrc"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"real/f", "real/fc", "real/ft", "real/g", "real/h", "filemnt", "filesrc"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"lnk": "real", "fl": dir + "/real/f", "fu": "real/f"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --make-rprivate / && mount --bind %[1]s/volsrc %[1]s/vol && mount --bind %[1]s/filesrc %[1]s/filemnt && exec %[2]s -test.run='^TestSysfileHelper$'", dir, self)
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), sysfileHelperEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	unshare := uint32(cmd.Process.Pid)
	var got []string
	waitFor(t, ch, "unshare's exit", func(ev *event.Event) bool {
		if ev.Kind == event.FileDecision && strings.HasPrefix(ev.Path, dir) {
			names, _ := e.SelectorNames(ev)
			s := ev.Op.String() + " " + strings.TrimPrefix(ev.Path, dir+"/") + " " + ev.Hook.String() + " " + strings.Join(names, ",")
			if ev.OnVolume {
				s += " on_volume"
			}
			if ev.OnFileMount {
				s += " on_file_mount"
			}
			got = append(got, s)
		}
		return ev.Kind == event.Exit && ev.Process.PID == unshare
	})
	want := []string{
		"modifyFile real/f tracepoint__sys_exit_linkat all,rootfs",
		"createFile hard tracepoint__sys_exit_linkat all,rootfs",
		"modifyFile real/f tracepoint__sys_exit_linkat all,rootfs",
		"createFile hard2 tracepoint__sys_exit_linkat all,rootfs",
		"modifyFile real/f tracepoint__sys_exit_truncate all,rootfs",
		"createExecutable real/fc tracepoint__sys_exit_fchmodat all,rootfs",
		"modifyFile real/ft tracepoint__sys_exit_openat all,rootfs",
		"modifyFile real/ft tracepoint__sys_exit_truncate all,rootfs",
		"createFile real/node tracepoint__sys_exit_mknodat all,rootfs",
		"deleteFile real/node tracepoint__sys_exit_unlinkat all,rootfs",
		"deleteFile fu tracepoint__sys_exit_unlinkat all,rootfs",
		"deleteFile real/g tracepoint__sys_exit_renameat2 all,rootfs",
		"createFile moved tracepoint__sys_exit_renameat2 all,rootfs",
		"modifyFile real/h tracepoint__sys_exit_fchmodat all,rootfs",
		"createFile vol/v tracepoint__sys_exit_openat all on_volume",
		"modifyFile filemnt tracepoint__sys_exit_openat all on_volume on_file_mount",
	}
	if !slices.Equal(got, want) {
		t.Errorf("file operations\n got %q\nwant %q", got, want)
	}
}
