// Command cloud-defend is the cloud-defend agent and its tools.
//
//	cloud-defend run [--policy FILE] [--dry-run] [--output ...]  standalone mode
//	cloud-defend policy validate [--format text|json] FILE...   check policies
//	cloud-defend policy explain [--default | FILE]              print what a policy does
//	cloud-defend policy default                                 print the default policy
//	cloud-defend policy test POLICY --events FILE...            what a policy would do to recorded activity
//	cloud-defend policy learn --events FILE... [--block]        an allowlist policy from recorded activity
//	cloud-defend policy learn --duration D [--block]            ... or from this node's containers, live
//	cloud-defend doctor                                         check this node
//	cloud-defend unpin [--pin-path DIR] [--state-dir DIR]       remove the pinned enforcement
//	cloud-defend --agent-managed [-E key=value]...              run under Elastic Agent
//	cloud-defend version
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/cloud-defend/cloud-defend/internal/version"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitInvalid = 1 // the input was read and is wrong (an invalid policy)
	exitUsage   = 2 // bad arguments or unreadable input
)

func main() {
	// CLOUD_DEFEND_CPUPROFILE names a file for a CPU profile of the whole
	// run, CLOUD_DEFEND_MEMPROFILE one for the heap as the run ends: how a
	// node's cost is investigated in the field.
	stopCPU := func() {}
	if path := os.Getenv("CLOUD_DEFEND_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	code := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopCPU()
	if path := os.Getenv("CLOUD_DEFEND_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	os.Exit(code)
}

const usage = `usage: cloud-defend <command> [arguments]

commands:
  run [--policy FILE] [--dry-run] [--output console|stdout|file=PATH|elasticsearch --es-url URL ...]
      [--pin-path DIR] [--state-dir DIR]         enforce a policy (default: the embedded one) and
                                                 write its ECS documents: a line each on a terminal
                                                 (console), NDJSON on stdout or to a rotated file,
                                                 or to Elasticsearch; SIGHUP reloads.
                                                 Programs and maps are pinned at --pin-path
                                                 (default /sys/fs/bpf/cloud-defend; "" for none):
                                                 the last policy stays enforced when the daemon
                                                 stops or dies, and the next start adopts it
  policy validate [--format text|json] FILE...   validate policies (- reads stdin)
  policy explain [--default | FILE]              print the rules a policy enforces
  policy default                                 print the embedded default policy
  policy test POLICY --events FILE... [--show blocked] [--format text|json]
                                                 replay recorded activity (ECS NDJSON, Elasticsearch
                                                 exports) through a policy;
                                                 exit 0: nothing would be blocked, 1: something
                                                 would, 2: bad arguments or input
  policy learn (--events FILE... | --duration D [--record FILE]) [--by image|pod-labels=KEY] [--block]
               [--max-values N] [--out FILE]
                                                 write a policy that allows what each image (or pod
                                                 label) was seen doing and alerts (or blocks) the rest
  doctor [--pin-path DIR]                        check this node: kernel, BTF, capabilities,
                                                 BPF LSM, pinned enforcement; says what to change
  unpin [--pin-path DIR] [--state-dir DIR]       detach and remove the pinned enforcement (refused
                                                 while a daemon runs with it: stop it first)
  version                                        print the version
  --agent-managed [-E key=value]...              run under Elastic Agent (StartUpInfo on stdin)
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "policy":
		return runPolicy(args[1:], stdin, stdout, stderr)
	case "run":
		return runDaemon(args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(args[1:], stdout, stderr)
	case "unpin":
		return runUnpin(args[1:], stdout, stderr)
	case "--agent-managed", "-agent-managed":
		return runAgent(args, stdin, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.String())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "cloud-defend: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}
