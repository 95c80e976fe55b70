// Package peerbench measures cloud-defend beside the agents users would pick
// instead (Linux audit's auditd, Tetragon), on the same loops in the same VM run:
// `go run mage.go benchPeers`. Its code is in test files built only with tags:
// vmbench (the host-side driver, TestInVMPeers) and vmguest (the benchmarks the
// VM runs, BenchmarkVMPeers); see docs/benchmarks.md.
package peerbench

// Config is what the host driver (TestInVMPeers) puts in the guest at ConfigPath.
type Config struct {
	Agents  []string          // in order: none, ours-*, auditd, tetragon
	Skipped map[string]string // peer → why it does not run
	Loops   int               // iterations of a process loop (file loops: ×FileScale)
	Load    int               // marker execs of the load phase
}

// ConfigPath is where the guest finds its Config.
const ConfigPath = "/peers/config.json"

// FileScale: a file operation is ~100x cheaper than a fork+exec.
const FileScale = 200
