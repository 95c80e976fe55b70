package k8snode

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Version is the Kubernetes release the node runs.
const Version = "v1.35.4"

// DebianPackages are what the node needs from Debian: etcd, containerd (with
// ctr), runc, the CNI plugins (ptp, host-local, loopback), busybox for the
// images, iptables for kubelet, util-linux's flock for the build lock.
var DebianPackages = []string{"etcd-server", "containerd", "runc", "containernetworking-plugins", "busybox-static", "iptables", "util-linux"}

// the files each package provides that the node runs.
var packageFiles = map[string]string{
	"etcd-server":                 "/usr/bin/etcd",
	"containerd":                  "/usr/bin/containerd",
	"runc":                        "/usr/sbin/runc",
	"containernetworking-plugins": "/usr/lib/cni/ptp",
	"busybox-static":              "/bin/busybox",
	"iptables":                    "/usr/sbin/iptables",
	"util-linux":                  "/usr/bin/flock",
}

// CNIBinDir is where Debian installs the CNI plugins.
const CNIBinDir = "/usr/lib/cni"

// CacheDir is where scripts/k8s-node-build.sh puts the Kubernetes binaries:
// $K8S_CACHE/<Version>, by default under /var/cache/cloud-defend-k8s.
func CacheDir() string {
	base := os.Getenv("K8S_CACHE")
	if base == "" {
		base = "/var/cache/cloud-defend-k8s"
	}
	return filepath.Join(base, Version)
}

// BinDir holds kube-apiserver, kubelet and kubectl.
func BinDir() string { return filepath.Join(CacheDir(), "bin") }

var k8sBinaries = []string{"kube-apiserver", "kubelet", "kubectl"}

func missingBinaries() []string {
	var missing []string
	for _, b := range k8sBinaries {
		if st, err := os.Stat(filepath.Join(BinDir(), b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

func missingPackages() []string {
	var missing []string
	for _, p := range DebianPackages {
		if _, err := os.Stat(packageFiles[p]); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// ensurePackages installs the Debian packages that are missing (as root).
func ensurePackages(logf func(string, ...any)) error {
	missing := missingPackages()
	if len(missing) == 0 {
		return nil
	}
	logf("k8snode: installing Debian packages %s", strings.Join(missing, " "))
	install := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "+strings.Join(missing, " "))
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("install Debian packages %s: %v\n%s", strings.Join(missing, " "), err, out)
	}
	if still := missingPackages(); len(still) > 0 {
		return fmt.Errorf("installed but still missing: %s", strings.Join(still, " "))
	}
	return nil
}

// BuildScript is the path of scripts/k8s-node-build.sh in this module.
func BuildScript() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", "scripts", "k8s-node-build.sh"))
	}
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			candidates = append(candidates, filepath.Join(filepath.Dir(mod), "scripts", "k8s-node-build.sh"))
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("scripts/k8s-node-build.sh not found (looked at %s)", strings.Join(candidates, ", "))
}

// ensureBinaries runs the build script when a Kubernetes binary is missing
// (a cold build takes several minutes), relaying its progress lines.
//
// With a deadline (the test's), the build is stopped 30 s before it, so the test
// fails with a message rather than a timeout panic; the Go build cache keeps
// what was compiled.
func ensureBinaries(logf func(string, ...any), deadline time.Time) error {
	missing := missingBinaries()
	if len(missing) == 0 {
		return nil
	}
	script, err := BuildScript()
	if err != nil {
		return fmt.Errorf("missing %s in %s and %v", strings.Join(missing, ", "), BinDir(), err)
	}
	logf("k8snode: %s missing in %s; running %s (a cold build takes minutes)", strings.Join(missing, ", "), BinDir(), script)
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-30*time.Second))
		defer cancel()
	}
	began := time.Now()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = os.Environ()
	if _, err := exec.LookPath("go"); err != nil {
		cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH")+":/usr/local/go/bin")
	}
	// Dies with the test binary (a test timeout); the Go build cache keeps what
	// was compiled, so the next run resumes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// On the deadline stop the whole build (go and its compilers), not just bash.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	r, w := io.Pipe()
	cmd.Stdout = w
	cmd.Stderr = w
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l := sc.Text()
			if strings.HasPrefix(l, "go: downloading") || strings.HasPrefix(l, "go: added") || strings.HasPrefix(l, "go: upgraded") {
				continue
			}
			tail = append(tail, l)
			if len(tail) > 40 {
				tail = tail[1:]
			}
			logf("%s", l)
		}
	}()
	err = cmd.Run()
	w.Close()
	<-done
	if ctx.Err() != nil {
		return fmt.Errorf("%s did not finish within the test's deadline (ran %s); run it before the tests, or raise go test's -timeout (the Go build cache keeps what was compiled)",
			script, time.Since(began).Round(time.Second))
	}
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", script, err, strings.Join(tail, "\n"))
	}
	logf("k8snode: built the Kubernetes binaries in %s", time.Since(began).Round(time.Second))
	if still := missingBinaries(); len(still) > 0 {
		return fmt.Errorf("%s ran but %s still missing in %s", script, strings.Join(still, ", "), BinDir())
	}
	return nil
}
