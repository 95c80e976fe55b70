package host

import (
	"os"
	"testing"
)

func TestLocalHost(t *testing.T) {
	h := Local("/proc", "/etc")
	name, _ := os.Hostname()
	if h.Hostname != name || h.BootID == "" || h.OS.Kernel == "" || h.PIDNamespace == 0 || h.Architecture == "" {
		t.Errorf("host %+v", h)
	}
}
