//go:build !vmguest

package ebpf

import (
	"os"
	"testing"
)

// TestMain turns the test binary into the network helper (netop_test.go) when
// a test starts it so; the VM's TestMain does the same.
func TestMain(m *testing.M) {
	testHelper()
	os.Exit(m.Run())
}
