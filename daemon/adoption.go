package daemon

import (
	"fmt"

	"github.com/cloud-defend/cloud-defend/ebpf"
)

// DescribeAdoption says what a start took over from a previous daemon, or "".
func DescribeAdoption(e *ebpf.Engine, pinPath string, dryRun bool) []string {
	a := e.Adoption()
	if !a.Adopted {
		return nil
	}
	pol := a.Policy
	if pol == "" {
		pol = "unknown (no saved source)"
	}
	out := []string{fmt.Sprintf("adopted the pinned enforcement at %s: generation %d, policy %s; %d pinned links replaced with no unprotected moment",
		pinPath, a.Generation, pol, a.OldLinks)}
	if a.FreshMaps {
		out = append(out, fmt.Sprintf("the pinned maps did not fit this build (%s): new maps hold the recompiled policy; %d events left unread in the old ring are counted as dropped", a.Reason, a.Unread))
	}
	switch {
	case a.Enforcing && dryRun:
		out = append(out, "the pinned configuration blocked; this dry run turns blocking off")
	case !a.Enforcing && !dryRun && e.LSM().Available:
		out = append(out, "the pinned configuration was a dry run; blocking is now on")
	}
	return out
}
