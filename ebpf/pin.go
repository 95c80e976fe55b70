package ebpf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// Persistent enforcement.
//
// With Options.PinPath set, the engine pins its maps (PinPath/maps/<name>) and its
// links (PinPath/links/<program>) on the BPF filesystem, so the kernel keeps the
// last policy enforced when the daemon dies (a crash, an OOM kill, an upgrade) or
// stops: Close releases only this process's descriptors. The next Open adopts
// what it finds there:
//
//   - Maps that fit this build are reused (the live policy, both generation
//     slots, the unread ring and the counters stay as they are), and the new
//     programs are loaded against them.
//   - Maps that do not fit (an upgrade changed a layout, the ring's size changed,
//     or the pins are not the set the state directory recorded, as after an
//     interrupted handoff) are replaced by new ones, into which the live policy
//     is compiled again from its source in Options.StateDir. Records left in the
//     old ring cannot be decoded by this build: they are counted as dropped.
//
// Either way the new programs are attached before the old links are released,
// so every hook has a program at every instant. BPF LSM programs on one hook run
// in turn, each given the previous one's verdict as its last argument (ret), and
// ours return a non-zero ret at once: while both are attached, a refusal is
// decided and reported once. Tracing programs have no such chaining: during the
// microseconds both are attached, a fork, exec or exit can be reported twice.
//
// RemovePinned is the explicit way out. The state directory holds what bpffs
// cannot: the source of the live and the previous policy (to name the selectors
// of their decisions, and to recompile), and the ids and layouts of the pinned
// maps.

const (
	pinMapsDir  = "maps"
	pinLinksDir = "links"
	stateFile   = "state.json"
	bpfFSMagic  = 0xcafe4a11
	pinTmp      = "__new" // suffix of a pin not yet moved into place (bpffs refuses names with dots)
)

// Adoption says what Open found pinned and what it did with it.
type Adoption struct {
	// Adopted: a pinned state was found and taken over.
	Adopted bool
	// FreshMaps: its maps did not fit this build (Reason says why); new maps hold
	// the live policy, recompiled from the state directory.
	FreshMaps bool
	Reason    string
	// Generation is the pinned live generation; Enforcing whether the pinned
	// configuration blocked (false: it was a dry run's). Open writes this
	// daemon's own setting.
	Generation uint32
	Enforcing  bool
	Policy     string // the live policy's name, when the state directory has it
	OldLinks   int    // pinned links released after the new ones were attached
	// Unread is how many records an incompatible old ring still held: counted
	// as dropped (Stats.RingbufDrops).
	Unread uint64
}

// Adoption reports what Open adopted; the zero value when nothing was pinned.
func (e *Engine) Adoption() Adoption { return e.adoption }

// pinned is what a previous daemon left under PinPath.
type pinned struct {
	maps  map[string]*ebpf.Map
	links map[string]link.Link // by file name under links/
	state *pinState            // nil when absent or from an earlier boot
}

func (p *pinned) close() {
	for _, m := range p.maps {
		m.Close()
	}
	for _, l := range p.links {
		l.Close()
	}
}

// pinState is StateDir/state.json: which map objects are the committed pinned set
// (a pin with another id was left by an interrupted handoff), and their layouts.
type pinState struct {
	BootID string                    `json:"boot_id"`
	Maps   map[string]pinnedMapState `json:"maps"`
	Since  time.Time                 `json:"since"` // when this pinned set was first created
}

type pinnedMapState struct {
	ID     uint32 `json:"id"`
	Layout string `json:"layout"`
}

// savedPolicy is StateDir/policy-<generation>.json, written before the generation
// goes live.
type savedPolicy struct {
	Generation uint32    `json:"generation"`
	Name       string    `json:"name"`
	Source     string    `json:"source"`
	At         time.Time `json:"at"`
}

// ensureBPFFS makes sure dir can be created on a BPF filesystem, mounting bpffs at
// /sys/fs/bpf when it is missing there (as minimal hosts and some containers
// leave it).
func ensureBPFFS(dir string) error {
	onBPFFS := func(p string) bool {
		for {
			if _, err := os.Stat(p); err == nil || p == "/" || p == "." {
				break
			}
			p = filepath.Dir(p)
		}
		var fs unix.Statfs_t
		return unix.Statfs(p, &fs) == nil && fs.Type == bpfFSMagic
	}
	if onBPFFS(dir) {
		return nil
	}
	if dir == "/sys/fs/bpf" || strings.HasPrefix(dir, "/sys/fs/bpf/") {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err != nil {
			return fmt.Errorf("pin path %s: bpffs is not mounted at /sys/fs/bpf and mounting it failed: %w", dir, err)
		}
		if onBPFFS(dir) {
			return nil
		}
	}
	return fmt.Errorf("pin path %s is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)", dir)
}

// bootID tells one boot from the next: map ids restart at every boot.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// loadPinned opens what is pinned under dir; nil when nothing is.
func loadPinned(dir, stateDir string) (*pinned, error) {
	p := &pinned{maps: map[string]*ebpf.Map{}, links: map[string]link.Link{}}
	mapFiles, _ := os.ReadDir(filepath.Join(dir, pinMapsDir))
	linkFiles, _ := os.ReadDir(filepath.Join(dir, pinLinksDir))
	if len(mapFiles) == 0 && len(linkFiles) == 0 {
		return nil, nil
	}
	for _, f := range mapFiles {
		if strings.HasSuffix(f.Name(), pinTmp) {
			continue // never moved into place: not part of the set
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinMapsDir, f.Name()), nil)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("open pinned map %s: %w", f.Name(), err)
		}
		p.maps[f.Name()] = m
	}
	for _, f := range linkFiles {
		l, err := link.LoadPinnedLink(filepath.Join(dir, pinLinksDir, f.Name()), nil)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("open pinned link %s: %w", f.Name(), err)
		}
		p.links[f.Name()] = l
	}
	if stateDir != "" {
		var st pinState
		if b, err := os.ReadFile(filepath.Join(stateDir, stateFile)); err == nil && json.Unmarshal(b, &st) == nil && st.BootID == bootID() {
			p.state = &st
		}
	}
	return p, nil
}

// reusable says whether the pinned maps can serve spec as they are, and if not why.
func reusable(spec *ebpf.CollectionSpec, old *pinned) (bool, string) {
	for _, name := range probeMapNames() {
		ms, m := spec.Maps[name], old.maps[name]
		if m == nil {
			return false, fmt.Sprintf("map %s is not pinned", name)
		}
		if err := ms.Compatible(m); err != nil {
			return false, fmt.Sprintf("map %s changed: %v", name, err)
		}
		if old.state == nil {
			continue
		}
		rec, ok := old.state.Maps[name]
		if !ok {
			return false, fmt.Sprintf("map %s is not in the recorded pinned set", name)
		}
		if id, _ := mapID(m); id != rec.ID {
			return false, fmt.Sprintf("pinned map %s is not the recorded one (an interrupted handoff)", name)
		}
		if rec.Layout != layoutOf(ms) {
			return false, fmt.Sprintf("the layout of map %s changed", name)
		}
	}
	return true, ""
}

func mapID(m *ebpf.Map) (uint32, error) {
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return uint32(id), nil
}

// ringRecords are the records the reader decodes (decodeEvent): a ring written by
// programs whose records are laid out otherwise cannot be read by this build.
var ringRecords = []any{bpfobj.ProbeForkEvent{}, bpfobj.ProbeExecEvent{}, bpfobj.ProbeExitEvent{},
	bpfobj.ProbeSetsidEvent{}, bpfobj.ProbeFileEvent{}, bpfobj.ProbeDecisionEvent{}}

// layoutOf fingerprints what a map's contents mean: its key and value types (BTF
// member names, offsets, sizes), and for the ring the layout of every record.
// MapSpec.Compatible compares sizes only; two builds can agree on sizes and still
// disagree on what the bytes say.
func layoutOf(ms *ebpf.MapSpec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%v %d %d %d|", ms.Type, ms.KeySize, ms.ValueSize, ms.MaxEntries)
	btfLayout(h, ms.Key, 0)
	fmt.Fprint(h, "|")
	btfLayout(h, ms.Value, 0)
	if ms.Type == ebpf.RingBuf {
		for _, r := range ringRecords {
			goLayout(h, reflect.TypeOf(r))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func btfLayout(w io.Writer, t btf.Type, depth int) {
	if t == nil || depth > 16 {
		fmt.Fprint(w, "-")
		return
	}
	switch t := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		fmt.Fprintf(w, "struct %s %d{", t.Name, t.Size)
		for _, m := range t.Members {
			fmt.Fprintf(w, "%s@%d/%d:", m.Name, m.Offset, m.BitfieldSize)
			btfLayout(w, m.Type, depth+1)
			fmt.Fprint(w, ";")
		}
		fmt.Fprint(w, "}")
	case *btf.Union:
		fmt.Fprintf(w, "union %s %d{", t.Name, t.Size)
		for _, m := range t.Members {
			fmt.Fprintf(w, "%s@%d:", m.Name, m.Offset)
			btfLayout(w, m.Type, depth+1)
			fmt.Fprint(w, ";")
		}
		fmt.Fprint(w, "}")
	case *btf.Array:
		fmt.Fprintf(w, "[%d]", t.Nelems)
		btfLayout(w, t.Type, depth+1)
	case *btf.Int:
		fmt.Fprintf(w, "int%d/%v", t.Size, t.Encoding)
	case *btf.Enum:
		fmt.Fprintf(w, "enum%d", t.Size)
	case *btf.Pointer:
		fmt.Fprint(w, "ptr")
	default:
		fmt.Fprintf(w, "%T", t)
	}
}

func goLayout(w io.Writer, t reflect.Type) {
	switch t.Kind() {
	case reflect.Struct:
		fmt.Fprintf(w, "{%s %d", t.Name(), t.Size())
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Name == "_" {
				continue
			}
			fmt.Fprintf(w, " %s@%d:", f.Name, f.Offset)
			goLayout(w, f.Type)
		}
		fmt.Fprint(w, "}")
	case reflect.Array:
		fmt.Fprintf(w, "[%d]", t.Len())
		goLayout(w, t.Elem())
	default:
		fmt.Fprint(w, t.Kind().String())
	}
}

// adoptReused takes over the live state of reused maps: the generation counter,
// whether its slot holds a policy, the keys of both slots, and the policies'
// sources.
func (e *Engine) adoptReused() error {
	var cfg bpfobj.ProbeCdConfig
	if err := e.maps.ConfigMap.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read pinned config: %w", err)
	}
	e.generation = cfg.Generation
	e.adoption.Generation, e.adoption.Enforcing = cfg.Generation, cfg.Enforce != 0
	slot := cfg.Generation & 1
	var pp bpfobj.ProbePolicy
	var fp bpfobj.ProbeFilePolicy
	if err := e.maps.Policies.Lookup(slot, &pp); err != nil {
		return fmt.Errorf("read pinned policy: %w", err)
	}
	if err := e.maps.FilePolicies.Lookup(slot, &fp); err != nil {
		return fmt.Errorf("read pinned file policy: %w", err)
	}
	e.slotLive = pp.R.Valid != 0 || fp.R.Valid != 0
	if err := e.rebuildWritten(); err != nil {
		return err
	}
	if e.slotLive {
		e.restoreHistory()
	}
	return nil
}

// rebuildWritten lists the entries of both slots of the maps put writes, so the
// next Swap clears the idle slot as if this process had written it. Every key
// carries its slot.
func (s *slots) rebuildWritten() error {
	s.written = [2][]slotKey{}
	add := func(slot uint32, m slotMap, k any) {
		s.written[slot&1] = append(s.written[slot&1], slotKey{m, k})
	}
	var nk bpfobj.ProbeNameKey
	var u uint64
	for _, m := range []slotMap{slotNames, slotNetNames} {
		it := s.table(m).Iterate()
		for it.Next(&nk, &u) {
			add(nk.Generation, m, nk)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("list %s: %w", m, err)
		}
	}
	var xk bpfobj.ProbeNetKey
	it := s.table(slotNetPrefixes).Iterate()
	for it.Next(&xk, &u) {
		add(uint32(xk.Generation), slotNetPrefixes, xk)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list %s: %w", slotNetPrefixes, err)
	}
	for _, m := range []slotMap{slotPaths, slotFilePaths, slotNetPaths} {
		var pk bpfobj.ProbePathKey
		var pv bpfobj.ProbePathVal
		it := s.table(m).Iterate()
		for it.Next(&pk, &pv) {
			add(uint32(pk.Data[0]), m, pk)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("list %s: %w", m, err)
		}
	}
	var tk bpfobj.ProbeTreeKey
	it = s.table(slotFileTrees).Iterate()
	for it.Next(&tk, &u) {
		add(tk.Generation, slotFileTrees, tk)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list %s: %w", slotFileTrees, err)
	}
	for _, m := range []slotMap{slotContainers, slotFileContainers, slotNetContainers} {
		var ck bpfobj.ProbeContainerKey
		it := s.table(m).Iterate()
		for it.Next(&ck, &u) {
			add(ck.Generation, m, ck)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("list %s: %w", m, err)
		}
	}
	return nil
}

// restoreHistory reloads the live policy and the one before it from the state
// directory, to name the selectors of decisions still in the ring (the previous
// one retires like any superseded policy).
func (e *Engine) restoreHistory() {
	live, err := e.loadPolicy(e.generation)
	if err != nil {
		return // decisions of this generation go unnamed; enforcement is unaffected
	}
	if c, err := compile(live); err == nil {
		e.live = c
	}
	e.history[e.generation] = live
	e.adoption.Policy = live.Name()
	if prev, err := e.loadPolicy(e.generation - 1); err == nil && e.generation > 0 {
		e.history[e.generation-1] = prev
		e.retiring = append(e.retiring, superseded{e.generation - 1, event.Now()})
		e.scheduleRetire()
	}
}

// adoptFresh fills new maps with the pinned live policy, recompiled from its
// source: the old maps do not fit this build.
func (e *Engine) adoptFresh(old *pinned, spec *ebpf.CollectionSpec) error {
	gen, live, err := oldGeneration(old, spec, e.stateDir)
	if err != nil {
		return err
	}
	e.generation = gen
	e.adoption.Generation, e.adoption.Enforcing = gen, live
	p, err := e.loadPolicy(gen)
	if errors.Is(err, os.ErrNotExist) {
		if !live {
			return nil // the old daemon never enforced a policy: nothing to carry
		}
	}
	if err != nil {
		return fmt.Errorf("the pinned maps do not fit this build and the live policy (generation %d) cannot be recompiled: %w; the pinned programs stay in force (cloud-defend unpin removes them)", gen, err)
	}
	c, err := compile(p)
	if err != nil {
		return fmt.Errorf("recompile the pinned policy: %w", err)
	}
	if err := e.write(gen&1, c.entries(gen&1, e.containers)); err != nil {
		return err
	}
	e.live, e.slotLive = c, true
	e.history[gen] = p
	e.adoption.Policy = p.Name()
	return nil
}

// oldGeneration reads the generation counter of pinned maps this build's layout
// may not describe: config_map is read as this build reads it when it still
// fits, else the counter is taken from the newest policy source saved. live says
// whether it was enforcing (or, failing that, whether a policy was saved).
func oldGeneration(old *pinned, spec *ebpf.CollectionSpec, stateDir string) (uint32, bool, error) {
	if m := old.maps[bpfobj.ProbeMapConfigMap]; m != nil && spec.Maps[bpfobj.ProbeMapConfigMap].Compatible(m) == nil {
		var cfg bpfobj.ProbeCdConfig
		if err := m.Lookup(uint32(0), &cfg); err != nil {
			return 0, false, fmt.Errorf("read pinned config: %w", err)
		}
		return cfg.Generation, cfg.Enforce != 0, nil
	}
	gens := savedGenerations(stateDir)
	if len(gens) == 0 {
		return 0, false, nil
	}
	return gens[len(gens)-1], true, nil
}

// savedGenerations lists the generations whose source is in stateDir, oldest first.
func savedGenerations(stateDir string) []uint32 {
	files, _ := filepath.Glob(filepath.Join(stateDir, "policy-*.json"))
	var gens []uint32
	for _, f := range files {
		n := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "policy-"), ".json")
		if g, err := strconv.ParseUint(n, 10, 32); err == nil {
			gens = append(gens, uint32(g))
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens
}

func policyFile(stateDir string, gen uint32) string {
	return filepath.Join(stateDir, fmt.Sprintf("policy-%d.json", gen))
}

// loadPolicy parses the saved source of a generation.
func (s *slots) loadPolicy(gen uint32) (*policy.Policy, error) {
	if s.stateDir == "" {
		return nil, fmt.Errorf("no state directory: %w", os.ErrNotExist)
	}
	sp, err := readSavedPolicy(s.stateDir, gen)
	if err != nil {
		return nil, err
	}
	p, _, err := policy.Parse(sp.Name, []byte(sp.Source))
	return p, err
}

func readSavedPolicy(stateDir string, gen uint32) (*savedPolicy, error) {
	b, err := os.ReadFile(policyFile(stateDir, gen))
	if err != nil {
		return nil, err
	}
	var sp savedPolicy
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("%s: %w", policyFile(stateDir, gen), err)
	}
	return &sp, nil
}

// savePolicy writes a generation's source before it goes live: a daemon that
// dies right after the flip leaves the source of what the kernel enforces.
func (s *slots) savePolicy(gen uint32, p *policy.Policy) error {
	if s.stateDir == "" {
		return nil
	}
	b, err := json.Marshal(savedPolicy{Generation: gen, Name: p.Name(), Source: string(p.Source()), At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := writeAtomic(policyFile(s.stateDir, gen), b); err != nil {
		return fmt.Errorf("save the policy for pinned enforcement: %w", err)
	}
	return nil
}

// prunePolicies keeps the sources of the live generation and the one before it.
func (s *slots) prunePolicies() {
	if s.stateDir == "" {
		return
	}
	for _, g := range savedGenerations(s.stateDir) {
		if g+1 < s.generation || g > s.generation {
			os.Remove(policyFile(s.stateDir, g))
		}
	}
}

// writeAtomic replaces path with data: a reader sees the old file or the new one.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// pinReplace pins obj at path, replacing what is pinned there in one rename, so
// the name never points at nothing.
func pinReplace(obj interface{ Pin(string) error }, path string) error {
	tmp := path + pinTmp
	os.Remove(tmp) // left by an interrupted handoff
	if err := obj.Pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// handOff pins this engine's maps (when they are new) and links, then releases
// the old links: every hook keeps a program throughout. Pins the new engine does
// not use (links of programs this build no longer has, maps it dropped) go.
func (e *Engine) handOff(spec *ebpf.CollectionSpec, old *pinned, freshMaps bool) error {
	mapsDir, linksDir := filepath.Join(e.pinPath, pinMapsDir), filepath.Join(e.pinPath, pinLinksDir)
	for _, d := range []string{mapsDir, linksDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("pin path: %w", err)
		}
	}
	maps := mapsByName(&e.maps)
	keepMaps := map[string]bool{}
	for _, name := range probeMapNames() {
		keepMaps[name] = true
		if old != nil && !freshMaps {
			continue // the pinned map is the one in use
		}
		if err := pinReplace(maps[name], filepath.Join(mapsDir, name)); err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	keepLinks := map[string]bool{}
	for name, l := range e.attached {
		err := pinReplace(l, filepath.Join(linksDir, name))
		if errors.Is(err, ebpf.ErrNotSupported) {
			continue // a perf event without a BPF link (before 5.15): it ends with this process
		}
		if err != nil {
			return fmt.Errorf("pin link %s: %w", name, err)
		}
		keepLinks[name] = true
	}
	if old != nil {
		for name, l := range old.links {
			// A pin this build replaced was renamed over already; one it does
			// not replace is removed. Closing the last descriptor detaches.
			if !keepLinks[name] {
				os.Remove(filepath.Join(linksDir, name))
			}
			l.Close()
			e.adoption.OldLinks++
		}
		old.links = nil
	}
	for _, dir := range []string{mapsDir, linksDir} {
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			if (dir == mapsDir && !keepMaps[f.Name()]) || (dir == linksDir && !keepLinks[f.Name()]) {
				os.Remove(filepath.Join(dir, f.Name()))
			}
		}
	}
	if old != nil && freshMaps {
		e.carryOver(old)
	}
	return e.saveState(spec, old)
}

// carryOver counts what an incompatible old ring still holds as dropped, and adds
// the old counters to the new ones, so Stats survive the upgrade.
func (e *Engine) carryOver(old *pinned) {
	var unread uint64
	if ring := old.maps[bpfobj.ProbeMapEvents]; ring != nil {
		if r, err := ringbuf.NewReader(ring); err == nil {
			r.SetDeadline(time.Unix(1, 0))
			var rec ringbuf.Record
			for r.ReadInto(&rec) == nil {
				unread++
			}
			r.Close()
		}
	}
	e.adoption.Unread = unread
	oldStats, newStats := old.maps[bpfobj.ProbeMapStats], e.maps.Stats
	if newStats == nil {
		return
	}
	for i := uint32(0); i < newStats.MaxEntries(); i++ {
		var cur []uint64
		if newStats.Lookup(i, &cur) != nil || len(cur) == 0 {
			continue
		}
		var prev []uint64
		if oldStats != nil && i < oldStats.MaxEntries() && oldStats.ValueSize() == newStats.ValueSize() && oldStats.Lookup(i, &prev) == nil {
			for c := range min(len(cur), len(prev)) {
				cur[c] += prev[c]
			}
		}
		if i == uint32(bpfobj.ProbeCdStatSTAT_RINGBUF_DROPS) {
			cur[0] += unread
		}
		// The new programs run already: an increment between the lookup and
		// this update is lost (a counter, not an event).
		_ = newStats.Update(i, cur, ebpf.UpdateAny) // an array index in range: it cannot fail but for ENOMEM
	}
}

// saveState records the committed pinned set.
func (e *Engine) saveState(spec *ebpf.CollectionSpec, old *pinned) error {
	if e.stateDir == "" {
		return nil
	}
	st := pinState{BootID: bootID(), Maps: map[string]pinnedMapState{}, Since: time.Now().UTC()}
	if old != nil && old.state != nil && !old.state.Since.IsZero() {
		st.Since = old.state.Since
	}
	maps := mapsByName(&e.maps)
	for _, name := range probeMapNames() {
		id, err := mapID(maps[name])
		if err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
		st.Maps[name] = pinnedMapState{ID: id, Layout: layoutOf(spec.Maps[name])}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(e.stateDir, stateFile), b)
}

// clearState forgets a previous boot's state: nothing of it is pinned any more.
func clearState(stateDir string) {
	if stateDir == "" {
		return
	}
	os.Remove(filepath.Join(stateDir, stateFile))
	for _, g := range savedGenerations(stateDir) {
		os.Remove(policyFile(stateDir, g))
	}
}

// PinnedState is what pinned enforcement is in force, as InspectPinned reads it.
type PinnedState struct {
	Present    bool
	Links      []string // programs whose links are pinned
	Maps       int
	Generation uint32
	Enforcing  bool      // false: a dry run's configuration
	Policy     string    // the live policy's name, when the state directory has it
	PolicyAt   time.Time // when that generation was saved, just before it went live
	Since      time.Time // when the pinned set was created
}

// InspectPinned reads what is pinned under pinPath without changing it.
func InspectPinned(pinPath, stateDir string) (PinnedState, error) {
	var s PinnedState
	links, _ := os.ReadDir(filepath.Join(pinPath, pinLinksDir))
	maps, _ := os.ReadDir(filepath.Join(pinPath, pinMapsDir))
	if len(links) == 0 && len(maps) == 0 {
		return s, nil
	}
	s.Present, s.Maps = true, len(maps)
	for _, l := range links {
		s.Links = append(s.Links, l.Name())
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, pinMapsDir, "config_map"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return s, fmt.Errorf("read the pinned configuration: %w", err)
	}
	defer m.Close()
	var cfg bpfobj.ProbeCdConfig
	if err := m.Lookup(uint32(0), &cfg); err != nil {
		return s, fmt.Errorf("read the pinned configuration: %w", err)
	}
	s.Generation, s.Enforcing = cfg.Generation, cfg.Enforce != 0
	if stateDir != "" {
		if sp, err := readSavedPolicy(stateDir, cfg.Generation); err == nil {
			s.Policy, s.PolicyAt = sp.Name, sp.At
		}
		var st pinState
		if b, err := os.ReadFile(filepath.Join(stateDir, stateFile)); err == nil && json.Unmarshal(b, &st) == nil {
			s.Since = st.Since
		}
	}
	return s, nil
}

// RemovePinned detaches and removes the pinned enforcement under pinPath and its
// state in stateDir, and reports how many links and maps it removed. It refuses
// while a daemon runs with pinPath (its own descriptors would keep its programs
// attached until it exits).
func RemovePinned(pinPath, stateDir string) (links, maps int, err error) {
	if _, err := os.Stat(pinPath); os.IsNotExist(err) {
		return 0, 0, nil
	}
	lock, err := lockPinPath(pinPath)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: stop it first", err)
	}
	defer lock.Close()
	var errs []error
	linksDir, mapsDir := filepath.Join(pinPath, pinLinksDir), filepath.Join(pinPath, pinMapsDir)
	files, _ := os.ReadDir(linksDir)
	for _, f := range files {
		path := filepath.Join(linksDir, f.Name())
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			// Unpin, then close the last descriptor: that detaches.
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
			}
			l.Close()
		} else if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		}
		links++
	}
	files, _ = os.ReadDir(mapsDir)
	for _, f := range files {
		if err := os.Remove(filepath.Join(mapsDir, f.Name())); err != nil {
			errs = append(errs, err)
		}
		maps++
	}
	for _, d := range []string{linksDir, mapsDir, pinPath} {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	if stateDir != "" {
		clearState(stateDir)
		if err := os.Remove(stateDir); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return links, maps, errors.Join(errs...)
}

// findPinned opens what is pinned under opts.PinPath and decides whether its maps
// can be reused. It returns nil when nothing is pinned (or pinning is off), after
// clearing a previous boot's state.
func (e *Engine) findPinned(spec *ebpf.CollectionSpec, opts Options) (old *pinned, reuse bool, err error) {
	if opts.PinPath == "" {
		return nil, false, nil
	}
	if err := ensureBPFFS(opts.PinPath); err != nil {
		return nil, false, err
	}
	if e.lock, err = lockPinPath(opts.PinPath); err != nil {
		return nil, false, err
	}
	if old, err = loadPinned(opts.PinPath, opts.StateDir); err != nil {
		return nil, false, err
	}
	if old == nil {
		clearState(opts.StateDir)
		return nil, false, nil
	}
	e.adoption.Adopted = true
	reuse, e.adoption.Reason = reusable(spec, old)
	if reuse && opts.ReplacePinnedMaps {
		reuse, e.adoption.Reason = false, "replacing the pinned maps was asked for"
	}
	e.adoption.FreshMaps = !reuse
	return old, reuse, nil
}

// lockPinPath takes the pin directory for this engine's lifetime: two daemons
// adopting one pinned state would share its ring and race on its generations.
func lockPinPath(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pin path: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("pin path: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("pin path %s is in use by another running cloud-defend", dir)
		}
		return nil, fmt.Errorf("lock pin path %s: %w", dir, err)
	}
	return f, nil
}
