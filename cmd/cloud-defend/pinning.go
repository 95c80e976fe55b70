package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cloud-defend/cloud-defend/ebpf"
)

// Pinned enforcement: where the kernel objects that outlive the daemon are pinned
// (bpffs) and where what bpffs cannot hold is kept (policy sources, on disk).
// CLOUD_DEFEND_PIN_PATH and CLOUD_DEFEND_STATE_DIR set the defaults, also for
// --agent-managed, which takes no flags of ours; an empty pin path turns pinning
// off: the daemon's programs then end with it.
const (
	defaultPinPath  = "/sys/fs/bpf/cloud-defend"
	defaultStateDir = "/var/lib/cloud-defend/pinned"
)

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

func pinDefaults() (pinPath, stateDir string) {
	return envOr("CLOUD_DEFEND_PIN_PATH", defaultPinPath), envOr("CLOUD_DEFEND_STATE_DIR", defaultStateDir)
}

// pinFlags adds --pin-path and --state-dir to a command.
func pinFlags(fs *flag.FlagSet) (pinPath, stateDir *string) {
	pin, state := pinDefaults()
	pinPath = fs.String("pin-path", pin, `bpffs directory where programs and maps are pinned so the last policy stays enforced while no daemon runs ("" turns pinning off; default $CLOUD_DEFEND_PIN_PATH or `+defaultPinPath+`)`)
	stateDir = fs.String("state-dir", state, "directory for the pinned policy's source (default $CLOUD_DEFEND_STATE_DIR or "+defaultStateDir+")")
	return pinPath, stateDir
}

// runUnpin removes the pinned enforcement.
func runUnpin(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloud-defend unpin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pinPath, stateDir := pinFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "cloud-defend unpin: unexpected argument %q\n", fs.Arg(0))
		}
		return exitUsage
	}
	if *pinPath == "" {
		fmt.Fprintln(stderr, "cloud-defend unpin: --pin-path is empty")
		return exitUsage
	}
	st, err := ebpf.InspectPinned(*pinPath, *stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "cloud-defend unpin: %v (removing anyway)\n", err)
	}
	links, maps, err := ebpf.RemovePinned(*pinPath, *stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "cloud-defend unpin: %v\n", err)
		return exitInvalid
	}
	if links == 0 && maps == 0 {
		fmt.Fprintf(stdout, "nothing pinned at %s\n", *pinPath)
		return exitOK
	}
	fmt.Fprintf(stdout, "removed the pinned enforcement at %s (generation %d): %d links detached, %d maps unpinned\n",
		*pinPath, st.Generation, links, maps)
	return exitOK
}

// pinnedCheck is the doctor's line on pinned enforcement.
func pinnedCheck(pinPath, stateDir string) check {
	if pinPath == "" {
		return check{"INFO", "pinning is off (empty pin path): enforcement ends with the daemon", ""}
	}
	st, err := ebpf.InspectPinned(pinPath, stateDir)
	if err != nil {
		return check{"WARN", "pinned enforcement at " + pinPath + " is unreadable: " + err.Error(), "cloud-defend unpin --pin-path " + pinPath + " removes it"}
	}
	if !st.Present {
		return check{"INFO", "no pinned enforcement at " + pinPath + " (a running daemon pins its policy there)", ""}
	}
	mode := "blocking"
	if !st.Enforcing {
		mode = "dry run"
	}
	pol := "policy source unknown"
	if st.Policy != "" {
		pol = "policy " + st.Policy + " since " + st.PolicyAt.UTC().Format(time.RFC3339)
	}
	what := fmt.Sprintf("pinned enforcement at %s: generation %d (%s, %s), %d programs [%s]", pinPath, st.Generation, pol, mode, len(st.Links), strings.Join(st.Links, " "))
	if !st.Since.IsZero() {
		what += ", pinned since " + st.Since.UTC().Format(time.RFC3339)
	}
	return check{"OK", what, ""}
}
