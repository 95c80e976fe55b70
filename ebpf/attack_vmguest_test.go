//go:build vmguest

package ebpf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// attackPolicy is what the adversarial suite tries to get around.
const attackPolicy = `process:
  selectors:
    - name: denied
      operation: [exec]
      processExecutable: [/opt/deny/*]
    - name: fileless
      operation: [execMemFd]
  responses:
    - match: [denied, fileless]
      actions: [alert, block]
file:
  selectors:
    - name: drift
      operation: [createExecutable, modifyExecutable]
      targetFilePath: [/usr/bin/**, /usr/lib/**, /opt/**, /data/**]
    - name: etc
      operation: [createFile, modifyFile, deleteFile]
      targetFilePath: [/etc/**]
      ignoreVolumeMounts: true
    - name: localBin
      operation: [createFile, createExecutable]
      targetFilePath: [/usr/local/bin/**]
  responses:
    - match: [drift, etc, localBin]
      actions: [alert, block]
`

// dockerCaps is Docker's (and so Kubernetes') default capability set.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE"}

// attackCase is one attack and the one refusal document it must produce per EPERM.
type attackCase struct {
	name     string
	kind     event.Kind // EventFile or EventDecision
	hook     string     // file: hook_point; decision: "" for exec, or the mapping's hook
	path     string     // the document's path; a trailing * makes it a prefix
	op       policy.Op
	refusals int
}

var attackCases = []attackCase{
	{"pre-write", event.FileDecision, "lsm__file_permission", "/etc/pre-write", policy.OpModifyFile, 1},
	{"pre-pwritev2", event.FileDecision, "lsm__file_permission", "/etc/pre-pwritev2", policy.OpModifyFile, 1},
	{"pre-ftruncate", event.FileDecision, "lsm__path_truncate", "/etc/pre-ftruncate", policy.OpModifyFile, 1},
	{"pre-fallocate", event.FileDecision, "lsm__file_permission", "/etc/pre-fallocate", policy.OpModifyFile, 1},
	{"pre-copy", event.FileDecision, "lsm__file_permission", "/etc/pre-copy", policy.OpModifyFile, 1},
	{"pre-mmap", event.FileDecision, "lsm__mmap_file", "/etc/pre-mmap", policy.OpModifyFile, 1},
	{"pre-mprotect", event.FileDecision, "lsm__file_mprotect", "/etc/pre-mprotect", policy.OpModifyFile, 1},
	{"pre-uring-write", event.FileDecision, "lsm__file_permission", "/etc/pre-uring", policy.OpModifyFile, 1},
	{"chroot-exec", event.ProcessDecision, "", "/opt/deny/b1", policy.OpExec, 1},
	{"chroot-write", event.FileDecision, "lsm__file_open", "/etc/chroot-w", policy.OpModifyFile, 1},
	{"chroot-volume", event.FileDecision, "lsm__file_open", "/etc/chroot-v", policy.OpModifyFile, 1},
	{"link-etc", event.FileDecision, "lsm__path_link", "/etc/link-src", policy.OpModifyFile, 1},
	{"link-exe", event.FileDecision, "lsm__path_link", "/usr/bin/tool", policy.OpModifyExecutable, 1},
	{"acl-overlay", event.FileDecision, "lsm__inode_setxattr", "/opt/acl-plain", policy.OpCreateExecutable, 1},
	{"acl-volume", event.FileDecision, "lsm__inode_setxattr", "/data/acl-plain", policy.OpCreateExecutable, 1},
	{"caps", event.FileDecision, "lsm__inode_setxattr", "/usr/bin/tool2", policy.OpModifyExecutable, 1},
	{"mv-parent", event.FileDecision, "lsm__path_rename", "/usr/local/", policy.OpCreateExecutable, 1},
	{"memfd-reuse", event.FileDecision, "lsm__file_open", "/etc/memfd-guard", policy.OpModifyFile, 30},
	{"symlink", event.FileDecision, "lsm__file_open", "/etc/sym-target", policy.OpModifyFile, 1},
	{"proc-root", event.FileDecision, "lsm__file_open", "/etc/proc-root", policy.OpModifyFile, 1},
	{"proc-fd", event.FileDecision, "lsm__file_open", "/etc/proc-fd", policy.OpModifyFile, 1},
	{"dotdot", event.FileDecision, "lsm__file_open", "/etc/dotdot", policy.OpModifyFile, 1},
	{"execveat-opath", event.ProcessDecision, "", "/opt/deny/b2", policy.OpExec, 1},
	{"memfd-exec", event.ProcessDecision, "", "/memfd:payload*", policy.OpExec, 1},
	{"mmap-exec", event.ProcessDecision, "lsm__mmap_file", "/opt/deny/b3", policy.OpExec, 1},
	{"mprotect-exec", event.ProcessDecision, "lsm__file_mprotect", "/opt/deny/b4", policy.OpExec, 1},
	{"fchmod", event.FileDecision, "lsm__path_chmod", "/opt/fchmod", policy.OpCreateExecutable, 1},
	{"tmpfile", event.FileDecision, "*", "/data/tmpf/*", 0, 1},
	{"exchange", event.FileDecision, "lsm__path_rename", "/usr/bin/xchg", policy.OpCreateExecutable, 1},
	{"uring-open", event.FileDecision, "lsm__file_open", "/etc/uring-open", policy.OpModifyFile, 1},
	{"uring-unlink", event.FileDecision, "lsm__path_unlink", "/etc/uring-unlink", policy.OpDeleteFile, 1},
	{"allowed", 0, "", "", 0, 0},
}

func (c *attackCase) matches(ev *event.Event) bool {
	hook := ev.Hook.String()
	if ev.Kind == event.ProcessDecision && ev.Hook == 0 {
		hook = ""
	}
	if ev.Kind != c.kind || (c.hook != "*" && hook != c.hook) {
		return false
	}
	if p, ok := strings.CutSuffix(c.path, "*"); ok {
		return strings.HasPrefix(ev.Path, p)
	}
	return ev.Path == c.path
}

// attackBundle lays out the suite's container: an image layer with busybox, the
// attacker (this test binary) and the files the attacks aim at, under a writable
// overlay layer, a volume on /data, Docker's default capabilities and no seccomp
// profile (runc spec sets none).
func attackBundle(t *testing.T, script string) string {
	t.Helper()
	bundle := t.TempDir()
	image := filepath.Join(bundle, "image")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		put(t, dst, data, mode)
	}
	copyFile("/bin/busybox", filepath.Join(image, "bin/busybox"), 0o755)
	copyFile(self, filepath.Join(image, "bin/attacker"), 0o755)
	exe := elf(exitZero)
	for _, p := range []string{"opt/deny/b1", "opt/deny/b2", "opt/deny/b3", "opt/deny/b4", "usr/bin/tool", "usr/bin/tool2", "tmp/evil"} {
		put(t, filepath.Join(image, p), exe, 0o755)
	}
	page := []byte(strings.Repeat("x", 4096))
	for _, p := range preopenPaths {
		put(t, filepath.Join(image, p), page, 0o644)
	}
	for _, p := range []string{"etc/passwd", "etc/hostname", "etc/link-src", "etc/memfd-guard", "etc/sym-target", "etc/proc-root",
		"etc/proc-fd", "etc/dotdot", "etc/uring-open", "etc/uring-unlink", "etc/chroot-w", "etc/chroot-v",
		"opt/acl-plain", "opt/fchmod", "usr/bin/xchg"} {
		put(t, filepath.Join(image, p), []byte("root:x:0:0::/:/bin/sh\n"), 0o644)
	}
	for _, d := range []string{"upper", "work", "rootfs", "volume/tmpf", "image/data", "image/proc", "image/dev", "image/sys", "image/tmp"} {
		if err := os.MkdirAll(filepath.Join(bundle, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	put(t, filepath.Join(bundle, "volume", "acl-plain"), []byte("#!/bin/sh\n"), 0o644)
	finishBundle(t, bundle, image, script, func(spec, proc map[string]any) {
		proc["env"] = []string{"PATH=/bin:/usr/bin", "CLOUD_DEFEND_HELPER=attack"}
		proc["capabilities"] = map[string]any{"bounding": dockerCaps, "effective": dockerCaps, "permitted": dockerCaps}
		delete(proc, "rlimits")
		delete(spec["linux"].(map[string]any), "seccomp")
		spec["mounts"] = append(spec["mounts"].([]any),
			map[string]any{"destination": "/data", "type": "bind", "source": filepath.Join(bundle, "volume"), "options": []string{"rbind", "rw"}})
	})
	return bundle
}

func put(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestVMAttacks is the adversarial suite: every attack of the list, in a real runc
// container on an overlay rootfs with a volume, Docker's default capabilities and
// no seccomp, against the real kernel programs. Each attack is refused with EPERM,
// and each refusal is named by exactly one blocked document; across the whole
// workload the EPERMs the container saw equal the blocked documents.
func TestVMAttacks(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	var script strings.Builder
	script.WriteString("/bin/attacker before || echo BEFORE-FAILED\n")
	for _, c := range attackCases {
		if !strings.HasPrefix(c.name, "pre-") {
			fmt.Fprintf(&script, "/bin/attacker %s || echo RESULT %s crashed\n", c.name, c.name)
		}
	}
	bundle := attackBundle(t, script.String())
	id := "cd-attacks"
	cmd := exec.Command("/usr/sbin/runc", "--root", "/run/runc", "run", "--no-pivot", "-b", bundle, id)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exec.Command("/usr/sbin/runc", "--root", "/run/runc", "delete", "-f", id).Run() }() // gone already when it exited
	results := map[string][2]int{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch f := strings.Fields(line); {
		case line == "READY":
			// The descriptors are open: now the policy comes into force.
			if err := e.Swap(mustParse(t, attackPolicy)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Fatal(err)
			}
		case len(f) == 4 && f[0] == "RESULT":
			refused, _ := strconv.Atoi(f[2])
			other, _ := strconv.Atoi(f[3])
			results[f[1]] = [2]int{refused, other}
		case len(f) == 3 && f[0] == "RESULT" && f[2] == "crashed":
			t.Errorf("%s: the attacker died (or an exec meant to be refused ran)", f[1])
		default:
			t.Logf("container: %s", line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("runc run: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("container stderr:\n%s", stderr.String())
	}

	// Every event of the container's processes was read once the host's own
	// sentinel exec, which came after them, is.
	installExecutables(t, exitZero, "/tmp/attack-sentinel")
	if err := exec.Command("/tmp/attack-sentinel").Run(); err != nil {
		t.Fatal(err)
	}
	hostNS, _ := pidNamespace("self")
	var blocked []event.Event
	waitFor(t, ch, "sentinel exec", func(ev *event.Event) bool {
		if ev.Process.PIDNamespace != hostNS && ev.Blocked {
			blocked = append(blocked, *ev)
		}
		return ev.Kind == event.Exec && ev.Executable == "/tmp/attack-sentinel"
	})

	docs := make([]int, len(attackCases))
	totalRefusals := 0
	for _, ev := range blocked {
		found := false
		for i := range attackCases {
			if attackCases[i].matches(&ev) {
				docs[i]++
				found = true
				c := &attackCases[i]
				names, _ := e.SelectorNames(&ev)
				if (c.op != 0 && ev.Op != c.op) || !ev.Actions.Has(policy.ActionAlert) || len(names) == 0 {
					t.Errorf("%s: document %v %v selectors %v; want %v with alert", c.name, ev.Op, ev.Actions, names, c.op)
				}
				if c.name == "acl-volume" && !ev.OnVolume {
					t.Errorf("acl-volume: on_volume false for a volume file")
				}
				break
			}
		}
		if !found {
			t.Errorf("a blocked document no attack accounts for: %v %v %s %q", ev.Kind, ev.Op, ev.Hook, ev.Path)
		}
	}
	for i, c := range attackCases {
		r, ok := results[c.name]
		switch {
		case !ok:
			t.Errorf("%s: no result (the attack did not run to the end)", c.name)
		case r[1] != 0:
			t.Errorf("%s: %d calls failed otherwise than with EPERM (see the container's stderr)", c.name, r[1])
		case r[0] != c.refusals:
			t.Errorf("%s: %d refusals, want %d", c.name, r[0], c.refusals)
		}
		if docs[i] != r[0] {
			t.Errorf("%s: %d EPERMs, %d blocked documents", c.name, r[0], docs[i])
		}
		totalRefusals += r[0]
	}
	if totalRefusals != len(blocked) {
		t.Errorf("the container saw %d EPERMs; %d blocked documents", totalRefusals, len(blocked))
	}
	t.Logf("%d attacks, %d refusals, %d blocked documents", len(attackCases)-1, totalRefusals, len(blocked))
}
