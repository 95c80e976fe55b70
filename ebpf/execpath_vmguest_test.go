//go:build vmguest

package ebpf

import "testing"

// TestVMExecLongPaths is TestExecLongPaths in the VM, with the enforcement
// programs loaded beside the telemetry (and the guest's busybox as the shell).
func TestVMExecLongPaths(t *testing.T) {
	needVM(t)
	e, ch := openEngine(t, Options{})
	if !e.LSM().Available {
		t.Fatalf("BPF LSM unavailable in the VM: %s", e.LSM().Reason)
	}
	checkLongExecPaths(t, ch, t.TempDir())
}
