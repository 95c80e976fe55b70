package ebpf

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/policy"
)

// maxPath is the longest path the kernel's LPM keys hold (one byte of the 256 is the
// generation); policy paths are at most policy.MaxPathBytes, which is the same.
const maxPath = 255

// compiled is a process policy in the kernel's terms, for one generation slot.
//
// Every selector is bit i of a u64 (i is its index in the policy). Each condition
// becomes the set of selectors it lets through, and the kernel ANDs them:
//
//	matched = ops(op) & (noName | names[comm]) & (noExe | paths(exe))
//	        & (interactive or batch) & (agnostic | containers[cgroup])
//
// Responses fire when matched&match != 0 and matched&exclude == 0, as in
// policy.Evaluate.
type compiled struct {
	policy bpfobj.ProbePolicy
	names  map[string]uint64    // comm → selectors naming it
	paths  map[string]pathEntry // LPM key (without generation) → masks
	sels   []policy.Selector    // for container masks
	resps  []policy.Response
}

// pathEntry is one LPM trie entry. The kernel finds the longest entry that prefixes
// the executable's path and then:
//   - exact applies when the path is exactly the entry (len == path length);
//   - desc always applies: the union of every dir/** whose "dir/" prefixes the entry;
//   - children applies when the path's parent directory is dirlen bytes long
//     (dirlen + basename length == path length).
//
// A dir/* entry is keyed "dir/"; an exact entry carries the children of its own
// directory, since it can be the longest match for that directory's other files.
type pathEntry struct {
	exact, desc, children uint64
	len, dirlen           uint32
}

func compile(p *policy.Policy) (*compiled, error) {
	sels := p.Selectors(policy.Process)
	resps := p.Responses(policy.Process)
	if len(sels) > 64 || len(resps) > 64 {
		return nil, fmt.Errorf("process policy has %d selectors and %d responses; the kernel holds 64 of each", len(sels), len(resps))
	}
	c := &compiled{names: map[string]uint64{}, paths: map[string]pathEntry{}, sels: sels, resps: resps}
	kp := &c.policy
	exact := map[string]uint64{}
	children := map[string]uint64{} // "dir/" → selectors
	desc := map[string]uint64{}     // "dir/" → selectors
	for i := range sels {
		s := &sels[i]
		bit := uint64(1) << i
		ops := s.Covers()
		if ops.Has(policy.OpFork) {
			kp.ForkOps |= bit
		}
		if ops.Has(policy.OpExec) {
			kp.ExecOps |= bit
		} else if ops.Has(policy.OpExecMemfd) {
			kp.MemfdOps |= bit
		}
		if len(s.ProcessName) == 0 {
			kp.NoName |= bit
		}
		for _, n := range s.ProcessName {
			c.names[n] |= bit
		}
		if len(s.ProcessExecutable) == 0 {
			kp.NoExe |= bit
		}
		for _, pp := range s.ProcessExecutable {
			if len(pp.String()) > maxPath {
				return nil, fmt.Errorf("selector %q: processExecutable %q is longer than %d bytes", s.Name, pp, maxPath)
			}
			switch pp.Kind {
			case policy.PathExact:
				exact[pp.Path] |= bit
			case policy.PathChildren:
				children[pp.Path+"/"] |= bit
			case policy.PathDescendants:
				desc[pp.Path+"/"] |= bit
			}
		}
		switch s.SessionLeaderInteractive {
		case policy.Unset:
			kp.Interactive |= bit
			kp.Batch |= bit
		case policy.True:
			kp.Interactive |= bit
		case policy.False:
			kp.Batch |= bit
		}
		if !s.ContainerScoped() {
			kp.Agnostic |= bit
		}
	}
	descOf := func(key string) uint64 {
		var m uint64
		for d, bits := range desc {
			if strings.HasPrefix(key, d) {
				m |= bits
			}
		}
		return m
	}
	for k, bits := range exact {
		dir := k[:strings.LastIndexByte(k, '/')+1]
		c.paths[k] = pathEntry{exact: bits, desc: descOf(k), children: children[dir], len: uint32(len(k)), dirlen: uint32(len(dir))}
	}
	for _, m := range []map[string]uint64{children, desc} {
		for k := range m {
			c.paths[k] = pathEntry{desc: descOf(k), children: children[k], len: uint32(len(k)), dirlen: uint32(len(k))}
		}
	}
	kp.N_responses = uint32(len(resps))
	for i, r := range resps {
		kp.Match[i] = r.MatchMask
		kp.Exclude[i] = r.ExcludeMask
		kp.Actions[i] = uint8(r.Actions)
	}
	kp.Valid = 1
	return c, nil
}

// containerMask is the set of container-scoped selectors whose container and
// Kubernetes conditions hold for a container.
func (c *compiled) containerMask(meta *policy.Operation) uint64 {
	var m uint64
	for i := range c.sels {
		if c.sels[i].ContainerScoped() && c.sels[i].MatchesContainer(meta) {
			m |= 1 << i
		}
	}
	return m
}

// pathKeys lists the LPM keys in a stable order, for tests and diagnostics.
func (c *compiled) pathKeys() []string {
	keys := make([]string, 0, len(c.paths))
	for k := range c.paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
