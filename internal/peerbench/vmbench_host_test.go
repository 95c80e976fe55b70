//go:build vmbench

// The peer benchmark's host-side driver, built only by `go run mage.go benchPeers`.

package peerbench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/vmtest"
)

// TestInVMPeers builds cloud-defend, finds the peers scripts/peers-build.sh left
// in the cache ($PEERS_CACHE, default /var/cache/cloud-defend-peers), and runs
// BenchmarkVMPeers in one VM on the instruction-counting clock. A peer that is
// not built is skipped with the reason, printed in the benchmark output.
// $PEERS (default "auditd,tetragon") chooses the peers; $PEERS_LOOPS (default
// 100) the iterations of a loop; $PEERS_LOAD (default 1700) the load phase's
// marker execs; $PEERS_COUNT (default 3) the runs of each loop; $PEERS_OURS
// (default all three) which of our configurations run.
func TestInVMPeers(t *testing.T) {
	cache := envOr("PEERS_CACHE", "/var/cache/cloud-defend-peers")
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cloud-defend")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/cloud-defend")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cloud-defend: %v\n%s", err, out)
	}
	cfg := Config{Agents: []string{"none"}, Skipped: map[string]string{},
		Loops: atoi(t, envOr("PEERS_LOOPS", "100")), Load: atoi(t, envOr("PEERS_LOAD", "1700"))}
	files := map[string]string{"/peers/cloud-defend": bin}
	var binaries, modules []string
	// $PEERS_OURS: our configurations ("-": none, to look at a peer alone).
	if ours := envOr("PEERS_OURS", "ours-default,ours-sel64,ours-job"); ours != "-" {
		for _, o := range strings.Split(ours, ",") {
			if !slices.Contains([]string{"ours-default", "ours-sel64", "ours-job"}, o) {
				t.Fatalf("unknown configuration %q in $PEERS_OURS (known: ours-default, ours-sel64, ours-job)", o)
			}
			cfg.Agents = append(cfg.Agents, o)
		}
	}
	for _, peer := range strings.Split(envOr("PEERS", "auditd,tetragon,sysdig"), ",") {
		switch peer {
		case "auditd":
			ready, _ := filepath.Glob(filepath.Join(cache, "auditd-*", "READY"))
			_, errd := os.Stat("/sbin/auditd")
			_, errc := os.Stat("/sbin/auditctl")
			if len(ready) == 0 || errd != nil || errc != nil {
				cfg.Skipped[peer] = "not installed: run scripts/peers-build.sh auditd (Debian's auditd package)"
				continue
			}
			t.Logf("auditd: %s", strings.TrimSpace(readFile(ready[len(ready)-1])))
			binaries = append(binaries, "/sbin/auditd", "/sbin/auditctl")
			files["/etc/audit"] = "/etc/audit"
			cfg.Agents = append(cfg.Agents, peer)
		case "tetragon":
			ready, _ := filepath.Glob(filepath.Join(cache, "tetragon-*", "READY"))
			if len(ready) == 0 {
				why := "not built: run scripts/peers-build.sh tetragon (needs $TETRAGON_SRC, clang-19)"
				if b, _ := os.ReadFile(filepath.Join(cache, "tetragon.FAILED")); len(b) > 0 {
					why = strings.TrimSpace(string(b))
				}
				cfg.Skipped[peer] = why
				continue
			}
			tdir := filepath.Dir(ready[len(ready)-1])
			t.Logf("tetragon: %s", strings.TrimSpace(readFile(ready[len(ready)-1])))
			files["/opt/tetragon/bin/tetragon"] = filepath.Join(tdir, "bin", "tetragon")
			files["/opt/tetragon/lib"] = filepath.Join(tdir, "lib")
			pol := filepath.Join(dir, "tetragon-policy.yaml")
			if err := os.WriteFile(pol, []byte(tetragonPolicy), 0o644); err != nil {
				t.Fatal(err)
			}
			files["/peers/tetragon/policy.yaml"] = pol
			cfg.Agents = append(cfg.Agents, peer)
		case "sysdig":
			ready, _ := filepath.Glob(filepath.Join(cache, "sysdig-*", "READY"))
			if len(ready) == 0 {
				cfg.Skipped[peer] = "not installed: run scripts/peers-build.sh sysdig (Debian's sysdig and its scap module built for the VM kernel)"
				continue
			}
			r := readFile(ready[len(ready)-1])
			t.Logf("sysdig: %s", strings.TrimSpace(r))
			for _, line := range strings.Split(r, "\n") {
				if m, ok := strings.CutPrefix(line, "module="); ok {
					modules = append(modules, m)
				}
			}
			binaries = append(binaries, "/usr/bin/sysdig")
			cfg.Agents = append(cfg.Agents, peer)
		default:
			t.Fatalf("unknown peer %q in $PEERS (known: auditd, tetragon, sysdig)", peer)
		}
	}
	for peer, why := range cfg.Skipped {
		t.Logf("PEER-SKIPPED %s: %s", peer, why)
	}
	data, _ := json.Marshal(cfg)
	cf := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	files[ConfigPath] = cf
	vmtest.Run(t, vmtest.Options{
		Package: "./internal/peerbench", Tags: []string{"vmguest"}, Run: "^$", Timeout: 160 * time.Minute, // six agents, three runs each: about 15 min an agent under TCG
		Memory:           4096, // the guest's files are in its memory: three runs of every agent's output and the peers' binaries
		InstructionClock: os.Getenv("VM_BENCH_CLOCK") != "host",
		Binaries:         binaries,
		Modules:          modules,
		Files:            files,
		Args: []string{"-test.bench=^BenchmarkVMPeers$", "-test.benchtime=" + envOr("PEERS_LOOPS", "100") + "x",
			"-test.count=" + envOr("PEERS_COUNT", "3"), "-test.timeout=155m"},
	})
}

// tetragonPolicy is the job in Tetragon's terms (its base sensor reports every
// exec without a policy): opens with write intent under /etc and /usr/bin
// reported from the security_file_open kprobe (the file's f_mode has
// FMODE_WRITE, read with Tetragon's resolve: what auditd's -p w and our
// modifyFile report; an open with O_CREAT is one of them), unlink, chmod and
// rename there from the LSM path hooks, and an open for writing under /usr/bin
// by a process named bench-deny killed (Sigkill), which the loops never run:
// what blocking costs when nothing is blocked, as our default policy's alert
// on executable changes.
var tetragonPolicy = `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: peerbench-file-watch
spec:
  kprobes:
  - call: "security_file_open"
    syscall: false
    args:
    - index: 0
      type: "file"
    - index: 0
      type: "int"
      resolve: "f_mode"
    selectors:
` + watchedPrefixes + `      - args: [1]
        operator: "Mask"
        values:
        - "2"
    - matchBinaries:
      - operator: "In"
        values:
        - "/usr/bin/bench-deny"
      matchArgs:
      - args: [0]
        operator: "Prefix"
        values:
        - "/usr/bin/"
      - args: [1]
        operator: "Mask"
        values:
        - "2"
      matchActions:
      - action: Sigkill
` + tetragonPathKprobe("security_path_unlink", true) + tetragonPathKprobe("security_path_chmod", false) +
	tetragonPathKprobe("security_path_rename", true)

// tetragonPathKprobe is a kprobe on an LSM path hook reporting the operations
// under /etc and /usr/bin: its path argument, and its dentry (the name made,
// removed or moved) where the hook has one.
func tetragonPathKprobe(call string, dentry bool) string {
	args := `    - index: 0
      type: "path"
`
	if dentry {
		args += `    - index: 1
      type: "dentry"
`
	}
	return `  - call: "` + call + `"
    syscall: false
    args:
` + args + `    selectors:
` + watchedPrefixes
}

// watchedPrefixes is a selector's first condition: argument 0 under /etc or
// /usr/bin.
const watchedPrefixes = `    - matchArgs:
      - args: [0]
        operator: "Prefix"
        values:
        - "/etc/"
        - "/usr/bin/"
`

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("not a positive count: %q", s)
	}
	return n
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
