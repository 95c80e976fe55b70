//go:build mage

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
)

const (
	binary     = "build/cloud-defend"
	versionPkg = "github.com/cloud-defend/cloud-defend/internal/version"
)

func init() {
	// Run the Go that runs mage, even when it is not on PATH (/usr/local/go/bin).
	// mage compiles this file on this machine just before running it, so the
	// root recorded at build time is the running Go's.
	if bin := filepath.Join(runtime.GOROOT(), "bin"); dirExists(bin) { //nolint:staticcheck // SA1019: see above; the binary is never copied elsewhere

		os.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Build compiles a static build/cloud-defend stamped with version, commit and build time.
func Build() error {
	version := "0.1.0-dev"
	if v, err := sh.Output("git", "describe", "--tags", "--always", "--dirty"); err == nil && v != "" {
		version = v
	}
	commit := "unknown"
	if c, err := sh.Output("git", "rev-parse", "--short", "HEAD"); err == nil && c != "" {
		commit = c
	}
	ldflags := fmt.Sprintf("-s -w -X %[1]s.Version=%[2]s -X %[1]s.Commit=%[3]s -X %[1]s.BuildTime=%[4]s",
		versionPkg, version, commit, time.Now().UTC().Format(time.RFC3339))
	return sh.RunWith(map[string]string{"CGO_ENABLED": "0"},
		"go", "build", "-trimpath", "-ldflags", ldflags, "-o", binary, "./cmd/cloud-defend")
}

// Run builds cloud-defend and runs it in standalone mode on the embedded default
// policy until Ctrl-C (needs root to load BPF; $ARGS replaces the arguments).
func Run() error {
	mg.Deps(Build)
	args := []string{"run"}
	if extra := strings.Fields(os.Getenv("ARGS")); len(extra) > 0 {
		args = extra
	}
	if err := sh.RunV(binary, "policy", "explain", "--default"); err != nil {
		return err
	}
	return sh.RunV(binary, args...)
}

// golangciLint is golangci-lint at a pinned version, built by go run (and
// cached) from the module proxy, so neither CI nor a developer installs it and
// the main module's dependencies stay as they are.
const golangciLint = "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0"

// Lint fails on files gofmt would change, then runs go vet and golangci-lint
// (.golangci.yml; with the vmguest, vmbench and mage build tags it sets, one
// run covers every file).
func Lint() error {
	out, err := sh.Output("gofmt", "-l", ".")
	if err != nil {
		return err
	}
	if out != "" {
		return fmt.Errorf("gofmt would change:\n%s", out)
	}
	if err := sh.RunV("go", "vet", "./..."); err != nil {
		return err
	}
	// The VM's tests and the benchmark driver build only with their tags.
	if err := sh.RunV("go", "vet", "-tags", "vmguest,vmbench", "./..."); err != nil {
		return err
	}
	return sh.RunV("go", "run", golangciLint, "run", "./...")
}

// Test runs lint, checks the committed BPF objects are current, runs every test
// with the race detector, then each fuzz target briefly ($FUZZTIME, default 15s).
func Test() error {
	mg.SerialDeps(Lint, CheckGenerated)
	// The end-to-end tests of the real binary (a minute of Elasticsearch faults,
	// a Kubernetes node) outlast go test's default 10 minutes per package on a
	// loaded 2-core machine.
	if err := sh.RunV("go", "test", "-race", "-count=1", "-timeout=25m", "./..."); err != nil {
		return err
	}
	return fuzz(envOr("FUZZTIME", "15s"))
}

// Fuzz runs each fuzz target for $FUZZTIME (default 60s).
func Fuzz() error { return fuzz(envOr("FUZZTIME", "60s")) }

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)

// fuzz runs every FuzzXxx in the module, one go test per target (go test -fuzz takes
// exactly one).
func fuzz(fuzztime string) error {
	var targets [][2]string // package dir, name
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" || d.Name() == "build") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
			targets = append(targets, [2]string{"./" + filepath.Dir(path), string(m[1])})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range targets {
		fmt.Printf("fuzzing %s %s for %s\n", t[0], t[1], fuzztime)
		if err := sh.RunV("go", "test", "-run=^$", "-fuzz=^"+t[1]+"$", "-fuzztime="+fuzztime, t[0]); err != nil {
			return fmt.Errorf("fuzz %s %s: %w", t[0], t[1], err)
		}
	}
	return nil
}

// Generate regenerates generated code (BPF objects via bpf2go) with go generate.
func Generate() error {
	return sh.RunV("go", "generate", "./...")
}

// CheckGenerated regenerates the BPF objects and fails if they differ from the
// committed ones (needs clang-19; CI installs it).
func CheckGenerated() error {
	if _, err := exec.LookPath("clang-19"); err != nil {
		if os.Getenv("CI") == "true" {
			return fmt.Errorf("clang-19 is missing: cannot prove the committed BPF objects are current")
		}
		fmt.Println("checkgenerated: clang-19 not installed; not checking the committed BPF objects")
		return nil
	}
	mg.SerialDeps(Generate)
	if err := sh.RunV("git", "diff", "--exit-code", "--stat", "--", "ebpf/internal/bpfobj"); err != nil {
		return fmt.Errorf("the committed BPF objects are stale: run go run mage.go generate and commit the result")
	}
	return nil
}

// Bench runs every benchmark (host, then the kernel benchmarks in the VM) and prints
// a table, with the VM's overheads as ratios measured in the same VM run.
func Bench() error {
	var buf bytes.Buffer
	// One package at a time: benchmarks running side by side on a small
	// machine measure each other.
	host := exec.Command("go", "test", "-p=1", "-run=^$", "-bench=.", "-benchmem", "-count=1", "./...")
	host.Stdout, host.Stderr = io.MultiWriter(os.Stdout, &buf), os.Stderr
	if err := host.Run(); err != nil {
		return err
	}
	vm := exec.Command("go", "test", "-tags", "vmbench", "-run=^TestInVMBench$", "-v", "-count=1", "-timeout=45m", "./ebpf")
	vm.Stdout, vm.Stderr = io.MultiWriter(os.Stdout, &buf), os.Stderr
	if err := vm.Run(); err != nil {
		return err
	}
	fmt.Println()
	if err := benchTable(&buf, os.Stdout); err != nil {
		return err
	}
	fmt.Println("\nThese ratios are against empty programs; ours beside auditd, Tetragon and sysdig on the same loops: go run mage.go benchPeers (docs/benchmarks.md)")
	return nil
}

// BenchPeers measures cloud-defend beside the agents users would pick instead,
// in one VM run (docs/benchmarks.md): scripts/peers-build.sh installs or builds
// the peers into /var/cache/cloud-defend-peers (PEERS_BUILD=0 skips it; a peer
// that cannot be had is skipped with the reason), then internal/peerbench runs
// the exec, fork and file loops under each agent and a load phase, and two
// tables are printed: each loop's time as a ratio to no agent, and each agent's
// CPU, memory and losses. PEERS_TABLES_FROM=<saved output> prints the tables of
// an earlier run instead. Not part of Test: it needs peers and a long VM run.
func BenchPeers() error {
	if saved := os.Getenv("PEERS_TABLES_FROM"); saved != "" {
		// The tables again from a saved run's output (its go test -v log), no VM.
		f, err := os.Open(saved)
		if err != nil {
			return err
		}
		defer f.Close()
		return peerTables(f, os.Stdout)
	}
	if os.Getenv("PEERS_BUILD") != "0" {
		build := exec.Command("scripts/peers-build.sh", strings.Split(envOr("PEERS", "auditd,tetragon,sysdig"), ",")...)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Println("benchpeers: not every peer could be built or installed (above); measuring the ones that were")
		}
	}
	var buf bytes.Buffer
	vm := exec.Command("go", "test", "-tags", "vmbench", "-run=^TestInVMPeers$", "-v", "-count=1", "-timeout=170m", "./internal/peerbench")
	vm.Stdout, vm.Stderr = io.MultiWriter(os.Stdout, &buf), os.Stderr
	if err := vm.Run(); err != nil {
		return err
	}
	fmt.Println()
	return peerTables(&buf, os.Stdout)
}

var peerLoadLine = regexp.MustCompile(`PEER-LOAD (\S+) (\S+=.*)$`)

// peerTables prints BenchmarkVMPeers' results: rows are loops, columns agents,
// cells the median loop time over that of no agent; then per agent the load
// phase's medians; then the peers that were skipped or failed, and why.
func peerTables(r io.Reader, w io.Writer) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	results, err := parseBench(bytes.NewReader(data))
	if err != nil {
		return err
	}
	var agents, loops []string
	cells := map[string]map[string]float64{}   // loop → agent → median loop-ns/op
	drained := map[string]map[string]float64{} // loop → agent → median of loop + drain
	reports := map[string]map[string]float64{} // loop → agent → median reports per file operation
	for _, res := range results {
		rest, ok := strings.CutPrefix(res.name, "BenchmarkVMPeers/")
		if !ok {
			continue
		}
		agent, loop, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		if !slices.Contains(agents, agent) {
			agents = append(agents, agent)
		}
		if cells[loop] == nil {
			cells[loop], drained[loop], reports[loop] = map[string]float64{}, map[string]float64{}, map[string]float64{}
			loops = append(loops, loop)
		}
		cells[loop][agent] = median(res.metrics["loop-ns/op"])
		if r := res.metrics["reports/fileop"]; len(r) > 0 {
			reports[loop][agent] = median(r)
		}
		var sums []float64
		for i, v := range res.metrics["loop-ns/op"] {
			if i < len(res.metrics["drain-ns/op"]) {
				v += res.metrics["drain-ns/op"][i]
			}
			sums = append(sums, v)
		}
		drained[loop][agent] = median(sums)
	}
	ratios := func(title string, cells map[string]map[string]float64) error {
		fmt.Fprintln(w, title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "loop\t"+strings.Join(agents, "\t")+"\t")
		for _, loop := range loops {
			row := []string{loop}
			for _, a := range agents {
				c, none := cells[loop][a], cells[loop]["none"]
				switch {
				case c == 0 || none == 0:
					row = append(row, "-")
				case a == "none":
					row = append(row, fmt.Sprintf("%.3f ms", none/1e6))
				default:
					row = append(row, fmt.Sprintf("%.2fx", c/none))
				}
			}
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		return tw.Flush()
	}
	if err := ratios("Loop time beside peers, ratio to no agent (medians of guest-clock wall time of the loop, one VM run; none: time per iteration, a file loop's iteration is 200 operations):", cells); err != nil {
		return err
	}
	if err := ratios("\nThe same with the time each agent stays busy after the loop (events it had not finished with) added:", drained); err != nil {
		return err
	}
	// Whether each agent did the job: its reports of the file loops' operations.
	fmt.Fprintln(w, "\nReports in each agent's output per file operation of the loop (1: one per operation; 0: the loop's operations are not what it watches):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "loop\t"+strings.Join(agents[1:], "\t")+"\t")
	for _, loop := range loops {
		if len(reports[loop]) == 0 {
			continue
		}
		row := []string{loop}
		for _, a := range agents[1:] {
			if v, ok := reports[loop][a]; ok {
				row = append(row, fmt.Sprintf("%.2f", v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	load := map[string]map[string][]float64{}
	var loadAgents []string
	var notes []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "vm: "); i >= 0 {
			line = line[i+4:]
		}
		line = strings.TrimSpace(line)
		if m := peerLoadLine.FindStringSubmatch(line); m != nil && strings.HasPrefix(line, "PEER-LOAD") {
			if load[m[1]] == nil {
				load[m[1]] = map[string][]float64{}
				loadAgents = append(loadAgents, m[1])
			}
			for _, kv := range strings.Fields(m[2]) {
				k, v, _ := strings.Cut(kv, "=")
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					load[m[1]][k] = append(load[m[1]][k], f)
				}
			}
		}
		for _, tag := range []string{"PEER-SKIPPED", "PEER-FAILED", "PEER-NOTE"} {
			if i := strings.Index(line, tag+" "); i >= 0 && !slices.Contains(notes, line[i:]) {
				notes = append(notes, line[i:])
			}
		}
	}
	fmt.Fprintln(w, "\nAgents under a container exec loop (medians of runs; CPU is the agent's threads, user and kernel, in guest-clock ns):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "agent\tagent-ns/event\tshare of a core at 5k events/s\tkernel-thread-ns/event\tevents/s reached\tRSS MiB\tof it anon MiB\tlost (own counter)\tmarker execs missing\t")
	for _, a := range loadAgents {
		m := load[a]
		lost := fmt.Sprintf("%.0f", median(m["lost"]))
		if median(m["lost"]) < 0 {
			lost = "n/a (see notes)"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f%%\t%.0f\t%.0f\t%.1f\t%.1f\t%s\t%.0f of %.0f\t\n", a, median(m["agent-ns/event"]), median(m["%core@5k-events/s"]),
			median(m["kthread-ns/event"]), median(m["events/s"]), median(m["MiB-rss"]), median(m["MiB-anon"]), lost, median(m["missing-execs"]), median(m["execs"]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

var procsSuffix = regexp.MustCompile(`-\d+$`) // GOMAXPROCS, absent in the 1-CPU VM

type benchResult struct {
	pkg, name string
	metrics   map[string][]float64 // unit → one value per run
}

// parseBench reads go test -bench output (also the VM's, relayed as "vm: " log
// lines): each benchmark's metrics, one value per run, in the order first seen.
func parseBench(r io.Reader) ([]*benchResult, error) {
	var results []*benchResult
	byName := map[string]*benchResult{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "vm: "); i >= 0 {
			line = line[i+4:]
		}
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "pkg:":
			pkg = f[1]
		case len(f) >= 4 && strings.HasPrefix(f[0], "Benchmark") && f[3] == "ns/op":
			name := procsSuffix.ReplaceAllString(f[0], "")
			res := byName[pkg+" "+name]
			if res == nil {
				res = &benchResult{pkg: pkg, name: name, metrics: map[string][]float64{}}
				byName[pkg+" "+name] = res
				results = append(results, res)
			}
			for i := 2; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					res.metrics[f[i+1]] = append(res.metrics[f[i+1]], v)
				}
			}
		}
	}
	return results, sc.Err()
}

// benchTable turns go test -bench output into a table of medians, then the VM
// overhead ratios.
func benchTable(r io.Reader, w io.Writer) error {
	results, err := parseBench(r)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "package\tbenchmark\truns\tns/op\tB/op\tallocs/op\tother (median)\t")
	for _, res := range results {
		var other []string
		for unit, vs := range res.metrics {
			if unit != "ns/op" && unit != "B/op" && unit != "allocs/op" {
				other = append(other, fmt.Sprintf("%.0f %s", median(vs), unit))
			}
		}
		sort.Strings(other)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", res.pkg, res.name, len(res.metrics["ns/op"]),
			medianStr(res.metrics["ns/op"]), medianStr(res.metrics["B/op"]), medianStr(res.metrics["allocs/op"]), strings.Join(other, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Overheads in the VM: configurations of one loop, measured in one run, on
	// the guest's instruction-counting clock (a "ns" is one guest instruction)
	// unless VM_BENCH_CLOCK=host.
	fmt.Fprintln(w, "\nVM overhead ratios (medians of guest instructions, loop-ns/op where the loop timed itself):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "(sel64: 63 selectors judge every operation, none fires; sel64-log: one of them logs every operation, an event each)")
	fmt.Fprintln(tw, "loop\tempty/none\tdefault/empty\tsel64/empty\tsel64-log/empty\t")
	var loops []string
	byLoop := map[string]map[string]float64{}
	for _, res := range results {
		i := strings.LastIndexByte(res.name, '/')
		if !strings.HasPrefix(res.name, "BenchmarkVM") || i < 0 {
			continue
		}
		loop, cfg := strings.TrimPrefix(res.name[:i], "BenchmarkVM"), res.name[i+1:]
		v := median(res.metrics["loop-ns/op"])
		if v == 0 {
			v = median(res.metrics["ns/op"])
		}
		if byLoop[loop] == nil {
			byLoop[loop] = map[string]float64{}
			loops = append(loops, loop)
		}
		byLoop[loop][cfg] = v
	}
	for _, loop := range loops {
		c := byLoop[loop]
		if c["none"] == 0 || c["empty"] == 0 {
			continue
		}
		defTarget, selTarget := "1.10x", "1.25x"
		if strings.Contains(loop, "open-ro") {
			defTarget = "1.05x"
		}
		if strings.HasPrefix(loop, "File") {
			selTarget = "1.30x"
		}
		logged := "-"
		if c["sel64-log"] > 0 {
			logged = fmt.Sprintf("%.2fx", c["sel64-log"]/c["empty"])
		}
		fmt.Fprintf(tw, "%s\t%.2fx\t%.2fx (target %s)\t%.2fx (target %s)\t%s\t\n", loop,
			c["empty"]/c["none"], c["default"]/c["empty"], defTarget, c["sel64"]/c["empty"], selTarget, logged)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return policyLatency(results, w)
}

// policyLatency prints how long a policy push takes to be enforced in the VM,
// and that time on this host: divided by the emulation factor of the policy
// path, the same Swap benchmark in the VM over on the host.
func policyLatency(results []*benchResult, w io.Writer) error {
	find := func(name string) map[string]float64 {
		for _, r := range results {
			if r.name == name {
				m := map[string]float64{}
				for unit, vs := range r.metrics {
					m[unit] = median(vs)
				}
				return m
			}
		}
		return nil
	}
	host, vm, lat := find("BenchmarkSwap"), find("BenchmarkVMSwap"), find("BenchmarkVMPolicyLatency")
	if host == nil || vm == nil || lat == nil || host["ns/op"] == 0 {
		return nil
	}
	f := vm["ns/op"] / host["ns/op"]
	fmt.Fprintf(w, "\nPolicy push to the first decision enforced under it (64 process + 63 file selectors), emulation factor %.1f (Swap: %.2f ms host, %.2f ms VM):\n", f, host["ns/op"]/1e6, vm["ns/op"]/1e6)
	fmt.Fprintf(w, "  VM:   p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", lat["p50-ns/enforced"]/1e6, lat["p99-ns/enforced"]/1e6, lat["max-ns/enforced"]/1e6)
	fmt.Fprintf(w, "  host: p50 %.1f ms, p99 %.1f ms (target 100 ms), max %.1f ms\n", lat["p50-ns/enforced"]/f/1e6, lat["p99-ns/enforced"]/f/1e6, lat["max-ns/enforced"]/f/1e6)
	return nil
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianStr(vs []float64) string {
	if len(vs) == 0 {
		return "-"
	}
	return strconv.FormatFloat(median(vs), 'f', -1, 64)
}

// Clean removes build outputs.
func Clean() error { return os.RemoveAll("build") }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
