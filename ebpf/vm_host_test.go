package ebpf

import (
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/internal/vmtest"
)

// guestModules are loaded in the VM before the tests: overlayfs, a container
// rootfs's filesystem, is a module in Debian's kernel.
var guestModules = []string{"kernel/fs/overlayfs/overlay.ko"}

// TestInVM runs this package's TestVM* tests in a VM whose kernel runs BPF LSM.
func TestInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	vmtest.Run(t, vmtest.Options{Package: "./ebpf", Tags: []string{"vmguest"}, Run: "^TestVM", Timeout: 20 * time.Minute, Binaries: []string{"/usr/sbin/runc"},
		Modules: guestModules})
}
