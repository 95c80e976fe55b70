//go:build vmguest

package ebpf

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// shIn runs a busybox shell script in the workload (exec'ing the last command keeps
// the acting process a direct child of the parent decisionsOf watches) and reports
// whether the kernel refused it with EPERM.
func shIn(t *testing.T, w workload, script string) (blocked bool, parent int) {
	t.Helper()
	args := []string{"/bin/busybox", "sh", "-c", script}
	if w.container {
		args = append([]string{"/bin/busybox", "unshare", "-p", "-m", "-f", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if w.cgroup != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(w.cgroup.Fd())}
	}
	err := cmd.Run()
	switch {
	case err == nil:
		return false, cmd.Process.Pid
	case strings.Contains(stderr.String(), "Operation not permitted"):
		return true, cmd.Process.Pid
	}
	t.Fatalf("%s: %v: %s", script, err, stderr.String())
	return false, 0
}

func writeFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.WriteFile(path, []byte("x\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s on %s: %v", src, dst, err)
	}
	t.Cleanup(func() { syscall.Unmount(dst, syscall.MNT_DETACH) })
}

const filePolicy = `file:
  selectors:
    - name: binDrift
      operation: [createExecutable, modifyExecutable]
      targetFilePath: [/usr/bin/**]
    - name: etcWrites
      operation: [createFile, modifyFile, deleteFile]
      targetFilePath: [/etc/**]
    - name: protectedDir
      operation: [createFile, createExecutable]
      targetFilePath: [/protected/*]
    - name: volumeData
      operation: [modifyFile]
      targetFilePath: [/data/**]
      ignoreVolumeMounts: true
    - name: configFile
      operation: [modifyFile]
      targetFilePath: [/config/app.conf]
      ignoreVolumeFiles: true
    - name: newLogs
      operation: [createFile]
      targetFilePath: [/var/log/*]
  responses:
    - match: [binDrift, etcWrites, protectedDir, volumeData, configFile]
      actions: [alert, block]
    - match: [newLogs]
      actions: [log]
`

func TestVMFileEnforcement(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, filePolicy)); err != nil {
		t.Fatal(err)
	}
	installExecutables(t, exitZero, "/src/exe", "/staging/kit/tool", "/staging/evil", "/staging/sub/tool")
	writeFile(t, "/usr/bin/notes", 0o644)
	writeFile(t, "/etc/conf.d/app", 0o644)
	writeFile(t, "/usr/bin/script", 0o644)
	writeFile(t, "/etc/passwd", 0o644)
	writeFile(t, "/etc/hosts", 0o644)
	writeFile(t, "/etc/shadow", 0o640)
	writeFile(t, "/staging/moved", 0o644) // on the root filesystem, like /protected: rename and link stay on one device
	writeFile(t, "/staging/linked", 0o644)
	writeFile(t, "/protected/.keep", 0o644)
	writeFile(t, "/tmp/datavol/file", 0o644)
	writeFile(t, "/tmp/app.conf", 0o644)
	writeFile(t, "/config/app.conf", 0o644)
	for _, d := range []string{"/data", "/var/log"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bindMount(t, "/tmp/datavol", "/data")
	bindMount(t, "/tmp/app.conf", "/config/app.conf")
	if err := os.Symlink("/etc/passwd", "/tmp/pw"); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	long := "/etc"
	for len(long) < 300 {
		long += "/" + strings.Repeat("l", 40)
	}
	if err := os.MkdirAll(long, 0o755); err != nil {
		t.Fatal(err)
	}
	long += "/new"
	deep := mkdirDeep(t, "/etc/deep") + "/new"
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctr := workload{container: true}
	cases := []struct {
		name    string
		w       workload
		script  string
		blocked bool
		actions policy.Actions
		op      policy.Op
		path    string
		hook    string
		matched []string
	}{
		{"cp a binary into /usr/bin", ctr, "exec busybox cp /src/exe /usr/bin/newtool", true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateExecutable, "/usr/bin/newtool", "lsm__path_mknod", []string{"binDrift"}},
		{"chmod +x a script", ctr, "exec busybox chmod +x /usr/bin/script", true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateExecutable, "/usr/bin/script", "lsm__path_chmod", []string{"binDrift"}},
		{"append to /etc/passwd", ctr, "echo hacker >> /etc/passwd", true, policy.ActionAlert | policy.ActionBlock, policy.OpModifyFile, "/etc/passwd", "lsm__file_open", []string{"etcWrites"}},
		{"rm a file", ctr, "exec busybox rm -f /etc/hosts", true, policy.ActionAlert | policy.ActionBlock, policy.OpDeleteFile, "/etc/hosts", "lsm__path_unlink", []string{"etcWrites"}},
		{"mv into a protected dir", ctr, "exec busybox mv /staging/moved /protected/moved", true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateFile, "/protected/moved", "lsm__path_rename", []string{"protectedDir"}},
		{"mv a directory of tools into /usr/bin", ctr, "exec busybox mv /staging/kit /usr/bin/kit", true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateExecutable, "/usr/bin/kit/", "lsm__path_rename", []string{"binDrift"}},
		{"mv a directory out of /etc", ctr, "exec busybox mv /etc/conf.d /staging/conf.d", true, policy.ActionAlert | policy.ActionBlock, policy.OpDeleteFile, "/etc/conf.d/", "lsm__path_rename", []string{"etcWrites"}},
		{"mv an executable over a plain file", ctr, "exec busybox mv /staging/evil /usr/bin/notes", true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateExecutable, "/usr/bin/notes", "lsm__path_rename", []string{"binDrift"}},
		{"mv a directory below a direct-children rule", ctr, "exec busybox mv /staging/sub /protected/sub", false, 0, 0, "", "", nil},
		{"ln into a protected dir", ctr, "exec busybox ln /staging/linked /protected/linked", true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateFile, "/protected/linked", "lsm__path_link", []string{"protectedDir"}},
		{"through a symlink", ctr, "echo hacker >> /tmp/pw", true, policy.ActionAlert | policy.ActionBlock, policy.OpModifyFile, "/etc/passwd", "lsm__file_open", []string{"etcWrites"}},
		{"through ..", ctr, "echo hacker >> /etc/../etc/passwd", true, policy.ActionAlert | policy.ActionBlock, policy.OpModifyFile, "/etc/passwd", "lsm__file_open", []string{"etcWrites"}},
		{"a path over 255 bytes", ctr, "echo new > " + long, true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateFile, long[:255], "lsm__path_mknod", []string{"etcWrites"}},
		{"a path longer than PATH_MAX", ctr, "CLOUD_DEFEND_HELPER=deepcreate DEEP_BASE=/etc/deep exec " + self, true, policy.ActionAlert | policy.ActionBlock, policy.OpCreateFile, deep[:255], "lsm__path_mknod", []string{"etcWrites"}},
		{"new log file", ctr, "echo hi > /var/log/new.log", false, policy.ActionLog, policy.OpCreateFile, "/var/log/new.log", "lsm__path_mknod", []string{"newLogs"}},
		{"write on a volume, ignoreVolumeMounts", ctr, "echo ok >> /data/file", false, 0, 0, "", "", nil},
		{"write a single-file mount, ignoreVolumeFiles", ctr, "echo ok >> /config/app.conf", false, 0, 0, "", "", nil},
		{"read-only open", ctr, "exec busybox cat /etc/passwd", false, 0, 0, "", "", nil},
		{"unselected path", ctr, "echo ok > /tmp/other", false, 0, 0, "", "", nil},
		{"host process", workload{}, "busybox cp /src/exe /usr/bin/hostcopy", false, 0, 0, "", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked, parent := shIn(t, c.w, c.script)
			ds := decisionsOf(t, ch, parent, event.FileDecision)
			if blocked != c.blocked {
				t.Fatalf("blocked = %v, want %v; decisions %+v", blocked, c.blocked, ds)
			}
			if c.actions == 0 {
				if len(ds) != 0 {
					t.Fatalf("unexpected file decisions %+v", ds)
				}
				return
			}
			var d *event.Event
			for i := range ds {
				if ds[i].Path == c.path {
					d = &ds[i]
				}
			}
			if d == nil {
				t.Fatalf("no decision for %s in %+v", c.path, ds)
			}
			if want := len(c.path); len(c.path) == 255 && int(d.PathLen) <= want {
				t.Errorf("path_len %d for a path cut to 255 bytes", d.PathLen)
			}
			if c.path == deep[:255] && int(d.PathLen) != len(deep) {
				t.Errorf("path_len %d, want %d", d.PathLen, len(deep))
			}
			names, _ := e.SelectorNames(d)
			if d.Op != c.op || d.Actions != c.actions || d.Blocked != c.blocked || d.Hook.String() != c.hook || !slices.Equal(names, c.matched) {
				t.Errorf("decision %v %v blocked %v hook %v selectors %v; want %v %v %v %v %v",
					d.Op, d.Actions, d.Blocked, d.Hook, names, c.op, c.actions, c.blocked, c.hook, c.matched)
			}
		})
	}
	// Nothing the blocked operations touched changed.
	if data, _ := os.ReadFile("/etc/passwd"); string(data) != "x\n" {
		t.Errorf("/etc/passwd = %q", data)
	}
	if _, err := os.Stat("/etc/conf.d/app"); err != nil {
		t.Errorf("/etc/conf.d was moved away: %v", err)
	}
	if st, err := os.Stat("/usr/bin/notes"); err != nil || st.Mode()&0o111 != 0 {
		t.Errorf("/usr/bin/notes was replaced by an executable: %v %v", st, err)
	}
	for _, p := range []string{"/usr/bin/newtool", "/protected/moved", "/protected/linked", "/usr/bin/kit"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists: %v", p, err)
		}
	}
	if st, _ := os.Stat("/usr/bin/script"); st.Mode()&0o111 != 0 {
		t.Errorf("/usr/bin/script became executable: %v", st.Mode())
	}
}

// TestVMDefaultPolicyDrift: the default policy alerts on new and changed
// executables and stays quiet for ordinary writes.
func TestVMDefaultPolicyDrift(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(policy.Default()); err != nil {
		t.Fatal(err)
	}
	installExecutables(t, exitZero, "/bin/ls-copy-src")
	if err := os.MkdirAll("/usr/local/bin", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, "/tmp/script.sh", 0o644)
	writeFile(t, "/tmp/notes.txt", 0o644)
	for _, c := range []struct {
		script string
		alert  bool
		op     policy.Op
	}{
		{"exec busybox cp /bin/ls-copy-src /usr/local/bin/x", true, policy.OpCreateExecutable},
		{"exec busybox chmod +x /tmp/script.sh", true, policy.OpCreateExecutable},
		{"echo more >> /tmp/notes.txt", false, 0},
	} {
		blocked, parent := shIn(t, workload{container: true}, c.script)
		if blocked {
			t.Fatalf("%s: the default policy blocked", c.script)
		}
		alerts := decisionsOf(t, ch, parent, event.FileDecision)
		if !c.alert {
			if len(alerts) != 0 {
				t.Errorf("%s: %+v", c.script, alerts)
			}
			continue
		}
		if len(alerts) != 1 || alerts[0].Op != c.op || alerts[0].Actions != policy.ActionAlert {
			t.Errorf("%s: %+v", c.script, alerts)
		}
	}
}

// TestVMFileDifferential checks the kernel's file decisions against
// policy.Evaluate: random policies, random operations performed for real in
// containers with and without image metadata, on the root filesystem and on a
// volume (/tmp is a tmpfs).
func TestVMFileDifferential(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	installExecutables(t, exitZero, "/src/exe", "/staging/kit/tool", "/staging/evil", "/staging/sub/tool")
	writeFile(t, "/usr/bin/notes", 0o644)
	writeFile(t, "/etc/conf.d/app", 0o644)
	cgroups := imageCgroups(t, e, "file-img-")
	// The script that performs each operation, and the state it needs first.
	do := func(op policy.Op, path string) string {
		switch op {
		case policy.OpCreateExecutable:
			os.Remove(path)
			return "exec busybox cp /src/exe " + path
		case policy.OpCreateFile:
			os.Remove(path)
			return "echo new > " + path
		case policy.OpModifyExecutable:
			writeFile(t, path, 0o755)
			return "echo more >> " + path
		case policy.OpModifyFile:
			writeFile(t, path, 0o644)
			return "echo more >> " + path
		default:
			writeFile(t, path, 0o644)
			return "exec busybox rm -f " + path
		}
	}
	for _, p := range genFiles {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cases := 0
	for range 40 {
		src := genFilePolicy(r, 16)
		p := mustParse(t, src)
		if err := e.Swap(p); err != nil {
			t.Fatal(err)
		}
		for range 15 {
			op := genFileOp(r)
			want := p.Evaluate(&op)
			script := do(op.Op, op.TargetPath)
			blocked, parent := shIn(t, workload{container: true, cgroup: cgroups[op.ContainerImageName]}, script)
			ds := decisionsOf(t, ch, parent, event.FileDecision)
			cases++
			fail := func(what string) {
				t.Fatalf("seed %d, case %d: %+v (%s)\n%s: kernel %+v\nevaluator: matched %b actions %v\npolicy:\n%s",
					seed, cases, op, script, what, ds, want.Matched, want.Actions, src)
			}
			if blocked != want.Actions.Has(policy.ActionBlock) {
				fail("blocked differs")
			}
			switch {
			case want.Actions == 0 && len(ds) != 0:
				fail("unexpected decision")
			case want.Actions != 0 && len(ds) != 1:
				fail("decision count")
			case want.Actions != 0 && (ds[0].Matched != want.Matched || ds[0].Actions != want.Actions || ds[0].Op != op.Op || ds[0].Path != op.TargetPath || ds[0].OnVolume != op.OnVolumeMount):
				fail("decision differs")
			}
		}
	}
	t.Logf("%d file cases agree (seed %d)", cases, seed)
}

// TestVMWriteThroughOpenFile: a container opens /etc/passwd for appending before any
// policy exists, then writes after a blocking policy arrives: the write is refused
// and reported, at file_permission.
func TestVMWriteThroughOpenFile(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	writeFile(t, "/etc/passwd", 0o644)
	os.Remove("/tmp/go")
	if err := syscall.Mkfifo("/tmp/go", 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/busybox", "sh", "-c",
		"exec 3>>/etc/passwd; echo opened; read x < /tmp/go; echo one >&3; echo two >&3")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "opened\n" {
		t.Fatalf("container did not open the file: %q %v", buf, err)
	}
	if err := e.Swap(mustParse(t, filePolicy)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/tmp/go", []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !strings.Contains(stderr.String(), "Operation not permitted") {
		t.Fatalf("writes went through: stderr %q", stderr.String())
	}
	if data, _ := os.ReadFile("/etc/passwd"); string(data) != "x\n" {
		t.Fatalf("/etc/passwd = %q", data)
	}
	ds := decisionsOf(t, ch, cmd.Process.Pid, event.FileDecision)
	// Two refused writes, two decisions: a refusal is never taken from the verdict
	// cache silently, so every EPERM the workload sees is reported.
	if len(ds) != 2 {
		t.Fatalf("%d decisions, want 2: %+v", len(ds), ds)
	}
	for _, d := range ds {
		if d.Hook.String() != "lsm__file_permission" || !d.Blocked || d.Path != "/etc/passwd" || d.Op != policy.OpModifyFile {
			t.Fatalf("decision %+v", d)
		}
	}
}

// TestVMTruncate: truncate(2) by path in a container is judged at path_truncate.
func TestVMTruncate(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if err := e.Swap(mustParse(t, filePolicy)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, "/etc/shadow", 0o640)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", self)
	cmd.Env = append(os.Environ(), "CLOUD_DEFEND_HELPER=truncate", "TRUNCATE_PATH=/etc/shadow")
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 77 {
		t.Fatalf("truncate was not refused with EPERM: %v", err)
	}
	ds := decisionsOf(t, ch, cmd.Process.Pid, event.FileDecision)
	if len(ds) != 1 || ds[0].Hook.String() != "lsm__path_truncate" || !ds[0].Blocked || ds[0].Path != "/etc/shadow" {
		t.Fatalf("decisions %+v", ds)
	}
	if data, _ := os.ReadFile("/etc/shadow"); string(data) != "x\n" {
		t.Fatalf("/etc/shadow = %q", data)
	}
}
