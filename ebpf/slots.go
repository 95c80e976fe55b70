package ebpf

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// A superseded policy is kept, to name the selectors of its decisions, until the
// reader has passed events stamped retireAfter after the swap: a program reads the
// generation microseconds before it stamps its event, so by then every decision
// the old policy made has been read, however many swaps came in between or however
// long the ring's backlog was. maxRetiring bounds what a stalled reader keeps.
const (
	retireAfter = time.Second
	maxRetiring = 1024
)

// superseded is a generation that is no longer live, and since when.
type superseded struct {
	generation uint32
	at         time.Duration
}

// slots owns the policy in the kernel: two generation slots in every policy
// map, the generation counter that says which is live, the policies' sources
// (history, and on disk in the state directory), the containers' metadata the
// container masks are compiled from, and the entries written to each slot.
type slots struct {
	tables   *bpfobj.ProbeMaps // the loader's maps
	dryRun   bool
	stateDir string

	mu         sync.Mutex
	generation uint32 // counter; slot = generation & 1
	live       *compiled
	history    map[uint32]*policy.Policy
	retiring   []superseded // oldest first
	// retireAt is when the oldest of retiring may go (event clock), read by the
	// reader on every event without the lock.
	retireAt   atomic.Int64
	written    [2][]slotKey // hash and trie entries of each slot, to clear before reuse
	containers map[uint64]*policy.Operation
	// slotLive: the current slot holds a policy in the kernel, though live may be
	// nil (adopted from pinned maps without its source).
	slotLive bool
}

// slotKey is an entry a slot wrote to a map it clears.
type slotKey struct {
	m   slotMap
	key any
}

// init readies empty slots over the loader's maps.
func (s *slots) init(maps *bpfobj.ProbeMaps, dryRun bool, stateDir string) {
	s.tables, s.dryRun, s.stateDir = maps, dryRun, stateDir
	s.history, s.containers = map[uint32]*policy.Policy{}, map[uint64]*policy.Operation{}
	s.retireAt.Store(math.MaxInt64)
}

// table is the kernel map a slot map names.
func (s *slots) table(m slotMap) *ebpf.Map {
	switch m {
	case slotNames:
		return s.tables.Names
	case slotPaths:
		return s.tables.Paths
	case slotFilePaths:
		return s.tables.FilePaths
	case slotFileTrees:
		return s.tables.FileTrees
	case slotContainers:
		return s.tables.Containers
	case slotFileContainers:
		return s.tables.FileContainers
	case slotPolicies:
		return s.tables.Policies
	case slotFilePolicies:
		return s.tables.FilePolicies
	case slotNetPrefixes:
		return s.tables.NetPrefixes
	case slotNetNames:
		return s.tables.NetNames
	case slotNetPaths:
		return s.tables.NetPaths
	case slotNetContainers:
		return s.tables.NetContainers
	case slotNetPolicies:
		return s.tables.NetPolicies
	}
	panic(fmt.Sprintf("slot map %d", m))
}

func (s *slots) setConfig() error {
	cfg := bpfobj.ProbeCdConfig{Generation: s.generation}
	if !s.dryRun {
		cfg.Enforce = 1
	}
	if err := s.tables.ConfigMap.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Swap compiles p and makes it the enforced policy in one step. On error the
// previous policy stays in force.
func (s *slots) Swap(p *policy.Policy) error {
	c, err := compile(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.generation + 1
	if s.live == nil && !s.slotLive {
		next = s.generation // the first policy goes into the empty current slot
	}
	slot := next & 1
	if err := s.clearSlot(slot); err != nil {
		return err
	}
	if err := s.write(slot, c.entries(slot, s.containers)); err != nil {
		return err
	}
	if err := s.savePolicy(next, p); err != nil {
		return err
	}
	prev := s.generation
	s.generation = next
	if err := s.setConfig(); err != nil {
		s.generation = prev
		return err
	}
	s.slotLive = true
	s.prunePolicies()
	if s.live != nil {
		s.retiring = append(s.retiring, superseded{prev, event.Now()})
		if len(s.retiring) > maxRetiring {
			delete(s.history, s.retiring[0].generation)
			s.retiring = s.retiring[1:]
		}
		s.scheduleRetire()
	}
	s.live = c
	s.history[next] = p
	return nil
}

// retire forgets the superseded policies whose decisions were all read before
// an event stamped t.
func (s *slots) retire(t time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.retiring) > 0 && s.retiring[0].at+retireAfter < t {
		delete(s.history, s.retiring[0].generation)
		s.retiring = s.retiring[1:]
	}
	s.scheduleRetire()
}

// scheduleRetire sets retireAt from the oldest superseded policy. Under mu.
func (s *slots) scheduleRetire() {
	next := int64(math.MaxInt64)
	if len(s.retiring) > 0 {
		next = int64(s.retiring[0].at + retireAfter)
	}
	s.retireAt.Store(next)
}

func (s *slots) clearSlot(slot uint32) error {
	for _, k := range s.written[slot] {
		if err := s.table(k.m).Delete(k.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear %s: %w", k.m, err)
		}
	}
	s.written[slot] = nil
	return nil
}

// write puts a slot's entries in their maps and remembers the ones clearSlot
// deletes.
func (s *slots) write(slot uint32, entries []slotEntry) error {
	for _, en := range entries {
		if err := s.table(en.m).Put(en.key, en.value); err != nil {
			return fmt.Errorf("write %s: %w", en.m, err)
		}
		if en.m.cleared() {
			s.written[slot] = append(s.written[slot], slotKey{en.m, en.key})
		}
	}
	return nil
}

// SetContainer records a container's image and Kubernetes metadata (the container
// and Kubernetes fields of meta) for the cgroup its processes run in, so selectors
// with container conditions apply to it.
func (s *slots) SetContainer(cgroupID uint64, meta policy.Operation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.containers[cgroupID] = &meta
	if s.live == nil {
		return nil
	}
	slot := s.generation & 1
	return s.write(slot, s.live.containerEntries(slot, cgroupID, &meta))
}

// RemoveContainer forgets a container that is gone.
func (s *slots) RemoveContainer(cgroupID uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.containers, cgroupID)
	for slot := range uint32(2) {
		k := bpfobj.ProbeContainerKey{CgroupId: cgroupID, Generation: slot}
		for _, m := range []*ebpf.Map{s.tables.Containers, s.tables.FileContainers, s.tables.NetContainers} {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
		}
	}
	return nil
}

// PolicyOf returns the policy that generation decided with, if still known.
func (s *slots) PolicyOf(generation uint32) *policy.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history[generation]
}

// Live is the live policy and its generation, read together under one lock: a
// swap in between cannot pair one generation with another's policy. p is nil
// before the first Swap.
func (s *slots) Live() (generation uint32, p *policy.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generation, s.history[s.generation]
}

// Generation is the live policy's generation counter.
func (s *slots) Generation() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generation
}

// liveFor reads, under one lock, the live policy's generation and policy and the
// container and Kubernetes metadata of a cgroup: what user-space detection
// evaluates an operation against.
func (s *slots) liveFor(cgroupID uint64) (uint32, *policy.Policy, policy.Operation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var meta policy.Operation
	if m := s.containers[cgroupID]; m != nil {
		meta = *m
	}
	return s.generation, s.history[s.generation], meta
}
