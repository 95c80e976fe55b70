package ebpf

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// attachAll attaches every loaded program by its type, set by set (telemetry
// before enforcement): which sets Open loaded decides what runs. A syscall
// tracepoint that cannot attach is a missing feature (Sessions, FileSyscalls),
// not a failure.
func (l *loader) attachAll() error {
	l.sessions = FeatureStatus{Reason: "setsid events are off: the BPF object has no setsid program"}
	for _, set := range l.sets() {
		for _, np := range programsOf(set) {
			name, prog := np.name, np.prog
			ps := l.spec.Programs[name]
			var lk link.Link
			var err error
			switch ps.Type {
			case ebpf.Tracing:
				lk, err = link.AttachTracing(link.TracingOptions{Program: prog})
			case ebpf.LSM:
				lk, err = link.AttachLSM(link.LSMOptions{Program: prog})
			case ebpf.TracePoint:
				var st FeatureStatus
				lk, st = attachTracepoint(ps, prog)
				if prog == l.telemetry.OnSetsid {
					l.sessions = st
				}
				if lk == nil {
					if set == any(l.fileSyscalls) {
						l.fileMissing = append(l.fileMissing, st.Reason)
					}
					if set == any(l.netSyscalls) {
						l.netMissing = append(l.netMissing, st.Reason)
					}
					continue
				}
			default:
				err = fmt.Errorf("program type %v is not attached by the engine", ps.Type)
			}
			if err != nil {
				return fmt.Errorf("attach %s: %w", name, err)
			}
			l.links = append(l.links, lk)
			l.attached[name] = lk
		}
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
