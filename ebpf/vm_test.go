package ebpf

import (
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/vmtest"
)

// TestInVM runs this package's TestVM* tests in a VM whose kernel runs BPF LSM.
func TestInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	vmtest.Run(t, vmtest.Options{Package: "./ebpf", Tags: []string{"vmguest"}, Run: "^TestVM", Timeout: 9 * time.Minute})
}
