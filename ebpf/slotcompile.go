package ebpf

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// maxPath is the longest path the kernel's LPM keys hold (one byte of the 256 is the
// generation); policy paths are at most policy.MaxPathBytes, which is the same.
const maxPath = 255

// compiled is a policy in the kernel's terms, for one generation slot.
//
// Every selector is bit i of a u64 (i is its index in its section). Each condition
// becomes the set of selectors it lets through, and the kernel ANDs them:
//
//	process: matched = ops(op) & (noName | names[comm]) & (noExe | paths(exe))
//	                 & (interactive or batch) & (agnostic | containers[cgroup])
//	                 & layers[layer of the executable]
//	file:    matched = ops[op] & (noPath | filePaths(target)) & ~ignored(volume)
//	                 & (agnostic | fileContainers[cgroup])
//
// An executable mapping is judged as an exec by the selectors of blocking
// responses only (execBlock).
//
// Responses fire when matched&match != 0 and matched&exclude == 0, as in
// policy.Evaluate.
type compiled struct {
	policy bpfobj.ProbePolicy
	names  map[string]uint64    // comm → selectors naming it
	paths  map[string]pathEntry // LPM key (without its tag byte) → masks
	sels   []policy.Selector    // for container masks
	resps  []policy.Response

	file      bpfobj.ProbeFilePolicy
	filePaths map[string]pathEntry
	// fileTrees: "dir/" → the file selectors with a pattern at or below dir: a
	// directory renamed into (or out of) place moves those paths with it.
	fileTrees map[string]uint64
	fileSels  []policy.Selector

	net *netCompiled
}

// pathEntry is one LPM trie entry. The kernel finds the longest entry that prefixes
// the path and then:
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

// processMasks are a compiled policy's masks of the conditions process and
// network selectors share: processName, processExecutable,
// sessionLeaderInteractive and the container conditions.
type processMasks struct {
	noName, noExe, interactive, batch, agnostic *uint64
}

// add adds selector s, bit, to the masks of the conditions it lets through
// without a lookup, and to names under each process name it has.
func (m processMasks) add(s *policy.Selector, bit uint64, names map[string]uint64) {
	if len(s.ProcessName) == 0 {
		*m.noName |= bit
	}
	for _, n := range s.ProcessName {
		names[n] |= bit
	}
	if len(s.ProcessExecutable) == 0 {
		*m.noExe |= bit
	}
	switch s.SessionLeaderInteractive {
	case policy.Unset:
		*m.interactive |= bit
		*m.batch |= bit
	case policy.True:
		*m.interactive |= bit
	case policy.False:
		*m.batch |= bit
	}
	if !s.ContainerScoped() {
		*m.agnostic |= bit
	}
}

func compile(p *policy.Policy) (*compiled, error) {
	c := &compiled{names: map[string]uint64{}, sels: p.Selectors(policy.Process), resps: p.Responses(policy.Process),
		fileSels: p.Selectors(policy.File)}
	fileResps := p.Responses(policy.File)
	for _, n := range []int{len(c.sels), len(c.resps), len(c.fileSels), len(fileResps),
		len(p.Selectors(policy.Network)), len(p.Responses(policy.Network))} {
		if n > 64 {
			return nil, fmt.Errorf("the kernel holds 64 selectors and 64 responses per type; this policy has %d", n)
		}
	}
	kp := &c.policy
	pm := processMasks{noName: &kp.NoName, noExe: &kp.NoExe, interactive: &kp.Interactive, batch: &kp.Batch, agnostic: &kp.Agnostic}
	for i := range c.sels {
		s := &c.sels[i]
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
		pm.add(s, bit, c.names)
		if len(s.ExecutableLayer) == 0 {
			for l := range kp.Layers {
				kp.Layers[l] |= bit
			}
		}
		for _, name := range s.ExecutableLayer {
			kp.Layers[layerOf(name)] |= bit
		}
	}
	var err error
	if c.paths, _, err = pathEntries(c.sels, func(s *policy.Selector) []policy.PathPattern { return s.ProcessExecutable }); err != nil {
		return nil, err
	}
	kp.R = responses(c.resps)
	for _, r := range c.resps {
		if r.Actions.Has(policy.ActionBlock) {
			kp.ExecBlock |= r.MatchMask & (kp.ExecOps | kp.MemfdOps)
		}
	}

	kf := &c.file
	for i := range c.fileSels {
		s := &c.fileSels[i]
		bit := uint64(1) << i
		for _, op := range s.Covers().Ops() {
			kf.Ops[op] |= bit
		}
		if len(s.TargetFilePath) == 0 {
			kf.NoPath |= bit
		}
		if !s.ContainerScoped() {
			kf.Agnostic |= bit
		}
		if s.IgnoreVolumeMounts {
			kf.IgnoreVolume |= bit
		}
		if s.IgnoreVolumeFiles {
			kf.IgnoreFile |= bit
		}
	}
	if c.filePaths, c.fileTrees, err = pathEntries(c.fileSels, func(s *policy.Selector) []policy.PathPattern { return s.TargetFilePath }); err != nil {
		return nil, err
	}
	kf.R = responses(fileResps)
	if c.net, err = compileNetwork(p); err != nil {
		return nil, err
	}
	return c, nil
}

// pathEntries builds the LPM entries for the path patterns of each selector, and
// for every directory at or above a pattern ("dir/", up to 255 bytes) the
// selectors with a pattern at or below it.
func pathEntries(sels []policy.Selector, patterns func(*policy.Selector) []policy.PathPattern) (map[string]pathEntry, map[string]uint64, error) {
	exact := map[string]uint64{}
	children := map[string]uint64{} // "dir/" → selectors
	desc := map[string]uint64{}     // "dir/" → selectors
	below := map[string]uint64{}    // "dir/" → selectors with a pattern at or below dir
	for i := range sels {
		bit := uint64(1) << i
		for _, pp := range patterns(&sels[i]) {
			if len(pp.String()) > maxPath {
				return nil, nil, fmt.Errorf("selector %q: path %q is longer than %d bytes", sels[i].Name, pp, maxPath)
			}
			switch pp.Kind {
			case policy.PathExact:
				exact[pp.Path] |= bit
			case policy.PathChildren:
				children[pp.Path+"/"] |= bit
			case policy.PathDescendants:
				desc[pp.Path+"/"] |= bit
			}
			// Every directory from the root down to the pattern's own ("/",
			// "/usr/", "/usr/bin/" for /usr/bin/*; also "/etc/passwd/" for the
			// exact /etc/passwd, a directory moved to that name).
			key := pp.Path + "/"
			for i := 0; i < len(key) && i < maxPath; i++ {
				if key[i] == '/' {
					below[key[:i+1]] |= bit
				}
			}
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
	out := map[string]pathEntry{}
	for k, bits := range exact {
		dir := k[:strings.LastIndexByte(k, '/')+1]
		out[k] = pathEntry{exact: bits, desc: descOf(k), children: children[dir], len: uint32(len(k)), dirlen: uint32(len(dir))}
	}
	for _, m := range []map[string]uint64{children, desc} {
		for k := range m {
			out[k] = pathEntry{desc: descOf(k), children: children[k], len: uint32(len(k)), dirlen: uint32(len(k))}
		}
	}
	return out, below, nil
}

func responses(rs []policy.Response) bpfobj.ProbeResponses {
	r := bpfobj.ProbeResponses{N: uint32(len(rs)), Valid: 1}
	for i, resp := range rs {
		r.Match[i] = resp.MatchMask
		r.Exclude[i] = resp.ExcludeMask
		r.Actions[i] = uint8(resp.Actions)
	}
	return r
}

// containerMasks are the container-scoped selectors, process and file, whose
// container and Kubernetes conditions hold for a container.
func (c *compiled) containerMasks(meta *policy.Operation) (process, file, network uint64) {
	return scopedMask(c.sels, meta), scopedMask(c.fileSels, meta), scopedMask(c.net.sels, meta)
}

func scopedMask(sels []policy.Selector, meta *policy.Operation) uint64 {
	var m uint64
	for i := range sels {
		if sels[i].ContainerScoped() && sels[i].MatchesContainer(meta) {
			m |= 1 << i
		}
	}
	return m
}

// sortedKeys lists LPM keys in a stable order, for writing and tests.
func sortedKeys(m map[string]pathEntry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// layerOf is the kernel's layer number for a policy layer name (policy.Layers).
func layerOf(name string) event.Layer {
	for l := event.LayerImage; l <= event.LayerUnknown; l++ {
		if l.String() == name {
			return l
		}
	}
	return event.LayerNone
}

// slotMap names a map that holds one slot's share of a policy.
type slotMap uint8

const (
	slotNames slotMap = iota
	slotPaths
	slotFilePaths
	slotFileTrees
	slotContainers
	slotFileContainers
	slotPolicies     // array: one entry per slot, overwritten, never cleared
	slotFilePolicies // array, as policies
	slotNetPrefixes
	slotNetNames
	slotNetPaths
	slotNetContainers
	slotNetPolicies // array, as policies
)

// String is the map's ELF name.
func (m slotMap) String() string {
	return [...]string{bpfobj.ProbeMapNames, bpfobj.ProbeMapPaths, bpfobj.ProbeMapFilePaths, bpfobj.ProbeMapFileTrees,
		bpfobj.ProbeMapContainers, bpfobj.ProbeMapFileContainers, bpfobj.ProbeMapPolicies, bpfobj.ProbeMapFilePolicies,
		bpfobj.ProbeMapNetPrefixes, bpfobj.ProbeMapNetNames, bpfobj.ProbeMapNetPaths, bpfobj.ProbeMapNetContainers,
		bpfobj.ProbeMapNetPolicies}[m]
}

// cleared reports whether the map's entries of a slot are deleted before the
// slot is reused (hash and trie maps; arrays are overwritten).
func (m slotMap) cleared() bool {
	return m != slotPolicies && m != slotFilePolicies && m != slotNetPolicies
}

// slotEntry is one key and value a slot puts in one map.
type slotEntry struct {
	m          slotMap
	key, value any
}

// entries are every map entry of a slot holding c, for the containers known
// (the writer only writes them): the names, path tries, directory trees and
// container masks, then the policies themselves.
func (c *compiled) entries(slot uint32, containers map[uint64]*policy.Operation) []slotEntry {
	var out []slotEntry
	for name, bits := range c.names {
		k := bpfobj.ProbeNameKey{Generation: slot}
		for i := 0; i < len(name) && i < len(k.Comm)-1; i++ {
			k.Comm[i] = int8(name[i])
		}
		out = append(out, slotEntry{slotNames, k, bits})
	}
	for _, t := range []struct {
		m       slotMap
		entries map[string]pathEntry
	}{{slotPaths, c.paths}, {slotFilePaths, c.filePaths}} {
		for _, path := range sortedKeys(t.entries) {
			pe := t.entries[path]
			k := bpfobj.ProbePathKey{Prefixlen: uint32(8 * (1 + len(path)))}
			k.Data[0] = uint8(slot)
			copy(k.Data[1:], path)
			v := bpfobj.ProbePathVal{Exact: pe.exact, Desc: pe.desc, Children: pe.children, Len: pe.len, Dirlen: pe.dirlen}
			out = append(out, slotEntry{t.m, k, v})
		}
	}
	for dir, bits := range c.fileTrees {
		k := bpfobj.ProbeTreeKey{Generation: slot}
		for i := 0; i < len(dir) && i < len(k.Dir)-1; i++ {
			k.Dir[i] = int8(dir[i])
		}
		out = append(out, slotEntry{slotFileTrees, k, bits})
	}
	out = append(out, c.net.entries(slot)...)
	for cg, meta := range containers {
		out = append(out, c.containerEntries(slot, cg, meta)...)
	}
	return append(out, slotEntry{slotNetPolicies, slot, c.net.policy}, slotEntry{slotFilePolicies, slot, c.file},
		slotEntry{slotPolicies, slot, c.policy})
}

// containerEntries are a container's masks in a slot holding c. A container
// no container-scoped selector matches has none: absence says the same.
func (c *compiled) containerEntries(slot uint32, cgroupID uint64, meta *policy.Operation) []slotEntry {
	pm, fm, nm := c.containerMasks(meta)
	k := bpfobj.ProbeContainerKey{CgroupId: cgroupID, Generation: slot}
	var out []slotEntry
	if pm != 0 {
		out = append(out, slotEntry{slotContainers, k, pm})
	}
	if fm != 0 {
		out = append(out, slotEntry{slotFileContainers, k, fm})
	}
	if nm != 0 {
		out = append(out, slotEntry{slotNetContainers, k, nm})
	}
	return out
}
