package ebpf

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// attachAll attaches every program of the collection by its type, telemetry
// before enforcement: Open has already removed what must not run (benchmark
// producers, the LSM probe, enforce_* without BPF LSM). A syscall tracepoint
// that cannot attach is a missing feature (Sessions), not a failure.
func (e *Engine) attachAll(spec *ebpf.CollectionSpec) error {
	names := make([]string, 0, len(e.coll.Programs))
	for name := range e.coll.Programs {
		names = append(names, name)
	}
	lsm := func(name string) bool { return spec.Programs[name].Type == ebpf.LSM }
	sort.Slice(names, func(i, j int) bool {
		if lsm(names[i]) != lsm(names[j]) {
			return !lsm(names[i])
		}
		return names[i] < names[j]
	})
	e.sessions = FeatureStatus{Reason: "setsid events are off: the BPF object has no setsid program"}
	for _, name := range names {
		ps, prog := spec.Programs[name], e.coll.Programs[name]
		var l link.Link
		var err error
		switch ps.Type {
		case ebpf.Tracing:
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		case ebpf.LSM:
			l, err = link.AttachLSM(link.LSMOptions{Program: prog})
		case ebpf.TracePoint:
			var st FeatureStatus
			l, st = attachTracepoint(ps, prog)
			if name == "on_setsid" {
				e.sessions = st
			}
			if l == nil {
				if strings.HasPrefix(name, "watch_") {
					e.fileMissing = append(e.fileMissing, st.Reason)
				}
				continue
			}
		default:
			err = fmt.Errorf("program type %v is not attached by the engine", ps.Type)
		}
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		e.links = append(e.links, l)
		e.attached[name] = l
	}
	return nil
}

// attachTracepoint attaches a tracepoint/<group>/<name> program, mounting tracefs
// first when it is missing (the tracepoint library looks for it once per
// process). Without the setsid tracepoint the session id is still on every
// event; only a setsid that no fork or exec follows goes unseen.
func attachTracepoint(ps *ebpf.ProgramSpec, prog *ebpf.Program) (link.Link, FeatureStatus) {
	what := strings.TrimPrefix(ps.Name, "on_")
	parts := strings.Split(ps.SectionName, "/")
	if len(parts) != 3 {
		return nil, FeatureStatus{Reason: fmt.Sprintf("%s events are off: section %q names no tracepoint", what, ps.SectionName)}
	}
	const tracefsMagic = 0x74726163
	mounted := false
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		var fs unix.Statfs_t
		if unix.Statfs(dir, &fs) == nil && fs.Type == tracefsMagic {
			mounted = true
		}
	}
	if !mounted {
		if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
			return nil, FeatureStatus{Reason: fmt.Sprintf("%s events are off: tracefs is not mounted and mounting it failed: %v", what, err)}
		}
	}
	l, err := link.Tracepoint(parts[1], parts[2], prog, nil)
	if err != nil {
		return nil, FeatureStatus{Reason: fmt.Sprintf("%s events are off: attach %s/%s: %v", what, parts[1], parts[2], err)}
	}
	return l, FeatureStatus{Available: true}
}
