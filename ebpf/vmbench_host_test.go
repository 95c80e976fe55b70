//go:build vmbench

// The VM benchmark driver, built only by `go run mage.go bench` (-tags vmbench).

package ebpf

import (
	"os"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/vmtest"
)

// TestInVMBench runs the BenchmarkVM* benchmarks in the VM; `go run mage.go bench`
// prints their table and ratios. The guest runs on an instruction-counting
// clock, so a benchmark's ns are guest instructions: repeatable whatever else
// this host runs, where wall time under emulation swings by tens of percent
// between runs (VM_BENCH_CLOCK=host measures wall time instead).
func TestInVMBench(t *testing.T) {
	vmtest.Run(t, vmtest.Options{
		Package: "./ebpf", Tags: []string{"vmguest"}, Run: "^$", Timeout: 44 * time.Minute, // about 30 minutes with the defaults
		Modules:          guestModules,
		InstructionClock: os.Getenv("VM_BENCH_CLOCK") != "host",
		Args:             []string{"-test.bench=" + envOr("VM_BENCH", "^BenchmarkVM"), "-test.benchtime=" + envOr("VM_BENCHTIME", "150x"), "-test.count=" + envOr("VM_BENCHCOUNT", "3")},
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
