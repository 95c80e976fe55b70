package ebpf

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
)

// TestProgramSets: every program of the production object is in exactly one
// set (or is probe_lsm), every set names only programs the object has, each set
// has the program type it is attached as, and no benchmark program (empty
// baselines, bench_emit: the Bench object) is in the production object.
func TestProgramSets(t *testing.T) {
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]struct {
		names []string
		types []ebpf.ProgramType
	}{
		"telemetry":     {programNames((*telemetryPrograms)(nil)), []ebpf.ProgramType{ebpf.Tracing, ebpf.TracePoint}},
		"enforcement":   {programNames((*enforcementPrograms)(nil)), []ebpf.ProgramType{ebpf.LSM}},
		"acl":           {programNames((*aclPrograms)(nil)), []ebpf.ProgramType{ebpf.LSM}},
		"file syscalls": {programNames((*fileSyscallPrograms)(nil)), []ebpf.ProgramType{ebpf.TracePoint}},
		"network":       {programNames((*networkPrograms)(nil)), []ebpf.ProgramType{ebpf.LSM}},
		"accept":        {programNames((*acceptPrograms)(nil)), []ebpf.ProgramType{ebpf.Tracing}},
		"accept arg":    {programNames((*acceptArgPrograms)(nil)), []ebpf.ProgramType{ebpf.Tracing}},
		"net syscalls":  {programNames((*netSyscallPrograms)(nil)), []ebpf.ProgramType{ebpf.TracePoint}},
		"lsm probe":     {[]string{bpfobj.ProbeProgProbeLsm}, []ebpf.ProgramType{ebpf.LSM}},
	}
	in := map[string]string{}
	for set, s := range sets {
		for _, name := range s.names {
			if other, dup := in[name]; dup {
				t.Errorf("%s is in both %s and %s", name, other, set)
			}
			in[name] = set
			ps := spec.Programs[name]
			if ps == nil {
				t.Errorf("%s set names %s, which the object does not have", set, name)
				continue
			}
			if !slices.Contains(s.types, ps.Type) {
				t.Errorf("%s (%s set) is a %v program", name, set, ps.Type)
			}
		}
	}
	var names []string
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := in[name]; !ok {
			t.Errorf("the production object's program %s is in no set: nothing loads or attaches it", name)
		}
	}
	// Each set is loaded on its own (objects.go): only the maps are shared, so no
	// program may use a data section (a global) but the read-only .rodata.
	for name, ps := range spec.Programs {
		for _, ins := range ps.Instructions {
			if ref := ins.Reference(); ins.IsLoadFromMap() && strings.HasPrefix(ref, ".") && ref != ".rodata" {
				t.Errorf("%s uses %s: a global the program sets would not share", name, ref)
			}
		}
	}
	bench, err := bpfobj.LoadBench()
	if err != nil {
		t.Fatal(err)
	}
	for name := range bench.Programs {
		if spec.Programs[name] != nil {
			t.Errorf("benchmark program %s is in the production object", name)
		}
	}
	if len(bench.Programs) == 0 {
		t.Error("the benchmark object has no programs")
	}
	// The benchmark object's maps are the production ones, so they can replace them.
	for name, ms := range bench.Maps {
		if p := spec.Maps[name]; p != nil && name[0] != '.' && (p.Type != ms.Type || p.KeySize != ms.KeySize || p.ValueSize != ms.ValueSize || p.MaxEntries != ms.MaxEntries) {
			t.Errorf("map %s differs between the production and the benchmark object", name)
		}
	}
	// Pinned maps are the typed ProbeMaps': every map of the object but its data sections.
	var want []string
	for name := range spec.Maps {
		if name[0] != '.' {
			want = append(want, name)
		}
	}
	sort.Strings(want)
	if got := probeMapNames(); !slices.Equal(got, want) {
		t.Errorf("probeMapNames() = %v, want the object's maps %v", got, want)
	}
}

// TestLoadedSets: on this kernel without BPF LSM the engine loads telemetry and
// file and network syscalls only, or telemetry alone with both disabled.
func TestLoadedSets(t *testing.T) {
	for _, disable := range []bool{false, true} {
		e, err := Open(Options{DisableLSM: true, DisableFileSyscalls: disable, DisableNetworkSyscalls: disable})
		if err != nil {
			t.Fatal(err)
		}
		if e.enforcement != nil || e.acl != nil {
			t.Error("enforcement loaded with BPF LSM disabled")
		}
		if (e.fileSyscalls == nil) != disable {
			t.Errorf("DisableFileSyscalls %v: file syscall set loaded %v", disable, e.fileSyscalls != nil)
		}
		want := len(programNames(&e.telemetry))
		if !disable {
			want += len(programNames(e.fileSyscalls)) + len(programNames(e.netSyscalls))
		}
		if (e.netSyscalls == nil) != disable || e.network != nil || e.accept != nil {
			t.Errorf("DisableNetworkSyscalls %v: network syscall set loaded %v, LSM network sets %v %v", disable, e.netSyscalls != nil, e.network != nil, e.accept != nil)
		}
		if got := len(e.programs()); got != want {
			t.Errorf("%d programs loaded, want %d", got, want)
		}
		if len(mapsByName(&e.maps)) != len(probeMapNames()) {
			t.Errorf("%d maps loaded, want %d", len(mapsByName(&e.maps)), len(probeMapNames()))
		}
		e.Close()
	}
}
