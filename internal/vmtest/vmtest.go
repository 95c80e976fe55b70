// Package vmtest runs a package's tests inside a QEMU virtual machine booting
// Debian's stock cloud kernel, where BPF LSM programs load (the host's kernel
// refuses them). The guest is an initramfs with busybox and the static test binary;
// results come back over the serial console.
package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Packages the harness needs on the host: the emulator, the guest kernel and the
// guest userland.
var debianPackages = []string{"qemu-system-x86", "linux-image-cloud-amd64", "busybox-static"}

// EnvInVM is set to "1" in the guest, so tests know where they run.
const EnvInVM = "CLOUD_DEFEND_VM"

// Options choose what runs in the VM.
type Options struct {
	// Package is the Go package whose tests run, e.g. "./ebpf", relative to the module root.
	Package string
	// Tags are build tags for the guest's test binary.
	Tags []string
	// Run is the -test.run pattern in the guest.
	Run string
	// Timeout bounds the whole VM run.
	Timeout time.Duration
	// Memory in MiB (default 1024).
	Memory int
	// Args are extra test flags for the guest (e.g. -test.bench).
	Args []string
	// Modules are the guest kernel's modules to load before the tests, as paths
	// under its /lib/modules/<version> (e.g. kernel/fs/overlayfs/overlay.ko).
	// Debian ships them uncompressed and without dependencies for these.
	Modules []string
	// InstructionClock runs the guest on an instruction-counting clock: a duration
	// measured inside it is the number of guest instructions executed, repeatable
	// whatever else the host runs. For benchmarks whose ratios host noise would
	// swamp; QEMU runs slower with it.
	InstructionClock bool
	// Binaries are host programs the guest gets at the same paths, with the shared
	// libraries ldd says they load (e.g. /usr/sbin/runc).
	Binaries []string
	// Files maps guest paths to host files or directories: a directory is copied
	// as a tree (regular files and symlinks, with their modes). For what is not
	// at the same path in the guest (a binary built in a temporary directory) or
	// is not a program (configuration, a program's data files). Guest paths
	// under /tmp are hidden by the tmpfs /init mounts there.
	Files map[string]string
}

var exitLine = regexp.MustCompile(`VMTEST-EXIT: (\d+)`)

// Run builds the test binary, boots the VM and fails t unless the guest's tests
// pass. Outside CI it skips when the VM cannot be set up and the packages cannot be
// installed; in CI (CI=true) that fails, so a missing VM never hides.
func Run(t *testing.T, opts Options) string {
	t.Helper()
	kernel, err := ensureTools()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("VM tests cannot run: %v", err)
		}
		t.Skipf("VM tests cannot run here: %v", err)
	}
	dir := t.TempDir()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pkg.test")
	build := exec.Command("go", "test", "-c", "-tags", strings.Join(opts.Tags, ","), "-o", bin, opts.Package)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s tests: %v\n%s", opts.Package, err, out)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	if err := buildInitramfs(initrd, bin, kernelVersion(kernel), opts); err != nil {
		t.Fatal(err)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	mem := opts.Memory
	if mem == 0 {
		mem = 1024
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// TCG: KVM here fails on an MSR with -cpu host (see shared/docs/PLATFORM.md).
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(mem),
		"-smp", "1", "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=3 lsm=lockdown,capability,landlock,yama,bpf panic=-1"}
	if opts.InstructionClock {
		// The guest's clock counts instructions it executed (1 ns each), not host
		// time; idle time jumps to the next timer instead of passing.
		args = append(args, "-icount", "shift=0,sleep=off")
	}
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	out, err := qemu.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	qemu.Stderr = qemu.Stdout
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	var log bytes.Buffer
	code := -1
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		t.Log("vm: " + line)
		if m := exitLine.FindStringSubmatch(line); m != nil {
			code, _ = strconv.Atoi(m[1])
		}
	}
	werr := qemu.Wait()
	t.Logf("VM run took %v", time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("VM timed out after %v", timeout)
	}
	if code != 0 {
		t.Fatalf("guest tests failed (exit %d, qemu: %v)", code, werr)
	}
	return log.String()
}

// ensureTools finds the guest kernel, installing the Debian packages when missing
// and allowed (root).
func ensureTools() (kernel string, err error) {
	find := func() string {
		k, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
		if len(k) == 0 {
			return ""
		}
		if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
			return ""
		}
		if _, err := os.Stat("/bin/busybox"); err != nil {
			return ""
		}
		return k[len(k)-1]
	}
	if k := find(); k != "" {
		return k, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("needs Debian packages %s and root to install them", strings.Join(debianPackages, " "))
	}
	install := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "+strings.Join(debianPackages, " "))
	if out, err := install.CombinedOutput(); err != nil {
		return "", fmt.Errorf("install %s: %v\n%s", strings.Join(debianPackages, " "), err, out)
	}
	if k := find(); k != "" {
		return k, nil
	}
	return "", fmt.Errorf("installed %s but found no kernel, qemu or busybox", strings.Join(debianPackages, " "))
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
%s
export PATH=/bin:/usr/bin CLOUD_DEFEND_VM=1 HOME=/tmp
echo "VMTEST-START $(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
cd /tmp
/pkg.test -test.v -test.count=1 %s
echo "VMTEST-EXIT: $?"
poweroff -f
`

// kernelVersion is the release a /boot/vmlinuz-<release> image boots.
func kernelVersion(kernel string) string {
	return strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
}

func buildInitramfs(path, testBin, release string, opts Options) error {
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	test, err := os.ReadFile(testBin)
	if err != nil {
		return err
	}
	args := []string{}
	// VMTEST_RUN narrows the guest's tests while working on one of them
	// (VMTEST_COUNT repeats them).
	if r := os.Getenv("VMTEST_RUN"); r != "" && opts.Run != "^$" {
		opts.Run = r
	}
	if opts.Run != "" {
		args = append(args, "-test.run", shellQuote(opts.Run))
	}
	if c := os.Getenv("VMTEST_COUNT"); c != "" {
		args = append(args, "-test.count", shellQuote(c))
	}
	for _, a := range opts.Args {
		args = append(args, shellQuote(a))
	}
	files := map[string]entry{
		"bin":         {mode: modeDir | 0o755},
		"bin/busybox": {mode: modeFile | 0o755, data: busybox},
		"bin/sh":      {mode: modeSymlink | 0o777, data: []byte("busybox")},
		"pkg.test":    {mode: modeFile | 0o755, data: test},
		"modules":     {mode: modeDir | 0o755},
	}
	var insmod strings.Builder
	for i, m := range opts.Modules {
		data, err := os.ReadFile(filepath.Join("/lib/modules", release, m))
		if err != nil {
			return fmt.Errorf("guest kernel module: %w", err)
		}
		name := fmt.Sprintf("modules/%d-%s", i, filepath.Base(m))
		files[name] = entry{mode: modeFile | 0o644, data: data}
		fmt.Fprintf(&insmod, "insmod /%s || echo \"insmod %s failed\"\n", name, m)
	}
	for _, b := range opts.Binaries {
		if err := addBinary(files, b); err != nil {
			return err
		}
	}
	for guest, host := range opts.Files {
		if err := addTree(files, strings.TrimPrefix(filepath.Clean(guest), "/"), host); err != nil {
			return err
		}
	}
	files["init"] = entry{mode: modeFile | 0o755, data: []byte(fmt.Sprintf(initScript, insmod.String(), strings.Join(args, " ")))}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err := writeCpio(zw, files); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// addBinary adds a host program and the libraries it loads, at their host paths,
// with the directories above them.
func addBinary(files map[string]entry, bin string) error {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil && !bytes.Contains(out, []byte("not a dynamic executable")) {
		return fmt.Errorf("ldd %s: %v", bin, err)
	}
	paths := []string{bin}
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/") {
			paths = append(paths, f[2])
		} else if len(f) >= 1 && strings.HasPrefix(f[0], "/") {
			paths = append(paths, f[0])
		}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p) // follows symlinks: the guest gets the file itself
		if err != nil {
			return fmt.Errorf("guest binary: %w", err)
		}
		name := strings.TrimPrefix(p, "/")
		files[name] = entry{mode: modeFile | 0o755, data: data}
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = entry{mode: modeDir | 0o755}
			}
		}
	}
	return nil
}

// addTree adds a host file, symlink or directory tree at the guest path name
// (relative to the root), with the directories above it.
func addTree(files map[string]entry, name, host string) error {
	if name == "" || name == "." || strings.HasPrefix(name, "..") {
		return fmt.Errorf("guest file %q: not a path below /", name)
	}
	err := filepath.WalkDir(host, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(host, p)
		if err != nil {
			return err
		}
		guest := filepath.Join(name, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := uint32(info.Mode().Perm())
		switch {
		case d.IsDir():
			files[guest] = entry{mode: modeDir | perm}
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files[guest] = entry{mode: modeSymlink | 0o777, data: []byte(target)}
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[guest] = entry{mode: modeFile | perm, data: data}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("guest file %s: %w", name, err)
	}
	for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
		if _, ok := files[d]; !ok {
			files[d] = entry{mode: modeDir | 0o755}
		}
	}
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
