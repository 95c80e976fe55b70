package ebpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
)

// privateBPFFS mounts a BPF filesystem of the test's own (each bpffs mount is a
// separate instance), so nothing is pinned where other processes look.
func privateBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount bpffs: %v: pinning cannot be tested", err)
		}
		t.Skipf("mount bpffs (needs root and CONFIG_BPF_SYSCALL): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return filepath.Join(dir, "cloud-defend")
}

func namePolicy(t testing.TB, comm string) string {
	return fmt.Sprintf("process:\n  selectors:\n    - name: sel_%s\n      operation: [exec]\n      processName: [%s]\n  responses:\n    - match: [sel_%s]\n      actions: [alert]\n", comm, comm, comm)
}

// namesInKernel lists the names map's entries as "slot:comm".
func namesInKernel(t *testing.T, e *Engine) []string {
	t.Helper()
	var out []string
	var k bpfobj.ProbeNameKey
	var v uint64
	it := e.maps.Names.Iterate()
	for it.Next(&k, &v) {
		out = append(out, fmt.Sprintf("%d:%s", k.Generation, cstring(k.Comm[:])))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func linkIDs(t *testing.T, e *Engine) []link.ID {
	t.Helper()
	var ids []link.ID
	for _, l := range e.attached {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	return ids
}

// gone waits until no link or map has the ids: the kernel frees them once the
// last reference goes, a little after.
func gone(t *testing.T, what string, exists func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for exists() {
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func marker(t *testing.T) string {
	t.Helper()
	m := fmt.Sprintf("pin-marker-%d", time.Now().UnixNano())
	if err := exec.Command("/bin/sh", "-c", "exit 0", m).Run(); err != nil {
		t.Fatal(err)
	}
	return m
}

func waitMarker(t *testing.T, ch <-chan event.Event, m string) event.Event {
	t.Helper()
	return waitFor(t, ch, "exec "+m, func(ev *event.Event) bool { return ev.Kind == event.Exec && slices.Contains(ev.Args, m) })
}

// TestPinnedAdoption runs the engine's whole pinned life on the host's kernel
// (telemetry only: LSM programs cannot load here): links stay attached and the
// ring fills while no engine is open; the next Open reuses the maps, reads what
// was written meanwhile, continues the generations with the saved policies,
// clears the idle slot it did not write, and releases the old links; a dry run
// writes its own enforce setting; a different ring size gets new maps with the
// policy recompiled and the unread records counted as drops; RemovePinned
// leaves nothing attached.
func TestPinnedAdoption(t *testing.T) {
	pin, state := privateBPFFS(t), t.TempDir()
	opts := Options{DisableLSM: true, PinPath: pin, StateDir: state, FlushInterval: 2 * time.Millisecond}

	e1, _ := openEngine(t, opts)
	if e1.Adoption().Adopted {
		t.Fatalf("nothing was pinned, yet %+v", e1.Adoption())
	}
	for _, comm := range []string{"aaa", "bbb"} {
		if err := e1.Swap(mustParse(t, namePolicy(t, comm))); err != nil {
			t.Fatal(err)
		}
	}
	if g := e1.Generation(); g != 1 {
		t.Fatalf("generation %d after two swaps", g)
	}
	// A counter the kernel would bump (PathErrors), to see it survive.
	per := make([]uint64, ebpf.MustPossibleCPU())
	per[0] = 7
	if err := e1.maps.Stats.Update(uint32(1), per, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	old := linkIDs(t, e1)
	e1.Close()

	st, err := InspectPinned(pin, state)
	if err != nil || !st.Present || st.Generation != 1 || !st.Enforcing || st.Policy != "p.yaml" || !slices.Contains(st.Links, bpfobj.ProbeProgOnExec) {
		t.Fatalf("InspectPinned %+v %v", st, err)
	}
	m := marker(t) // no engine open: the pinned links write into the pinned ring

	e2, ch := openEngine(t, opts)
	a := e2.Adoption()
	if !a.Adopted || a.FreshMaps || a.Generation != 1 || a.Policy != "p.yaml" || a.OldLinks != len(old) {
		t.Fatalf("adoption %+v, want generation 1 and %d old links", a, len(old))
	}
	// At once: the previous generation retires retireAfter after the adoption,
	// and releasing the old links (one per program) can take longer here.
	if e2.PolicyOf(1) == nil || e2.PolicyOf(0) == nil {
		t.Fatal("the saved policies were not restored")
	}
	waitMarker(t, ch, m)
	if other, err := Open(opts); err == nil || !strings.Contains(err.Error(), "in use by another running cloud-defend") {
		if other != nil {
			other.Close()
		}
		t.Fatalf("a second engine on the same pin path: %v", err)
	}
	if _, _, err := RemovePinned(pin, state); err == nil {
		t.Fatal("RemovePinned went ahead while an engine held the pin path")
	}
	for _, id := range old {
		gone(t, fmt.Sprintf("old link %d", id), func() bool {
			l, err := link.NewFromID(id)
			if err == nil {
				l.Close()
			}
			return err == nil
		})
	}
	if s, err := e2.Stats(); err != nil || s.PathErrors < 7 {
		t.Fatalf("stats after adoption %+v %v", s, err)
	}
	if err := e2.Swap(mustParse(t, namePolicy(t, "ccc"))); err != nil {
		t.Fatal(err)
	}
	if g := e2.Generation(); g != 2 {
		t.Fatalf("generation %d after adopting 1 and swapping", g)
	}
	// Slot 0 held aaa, written by e1: the swap into it cleared it.
	if got, want := namesInKernel(t, e2), []string{"0:ccc", "1:bbb"}; !slices.Equal(got, want) {
		t.Fatalf("names in the kernel %v, want %v", got, want)
	}
	if gens := savedGenerations(state); !slices.Equal(gens, []uint32{1, 2}) {
		t.Fatalf("saved policies %v, want generations 1 and 2", gens)
	}
	e2.Close()

	// A dry run adopting a blocking configuration says so and writes its own.
	e3, _ := openEngine(t, Options{DisableLSM: true, DryRun: true, PinPath: pin, StateDir: state})
	if a := e3.Adoption(); !a.Enforcing || a.Generation != 2 {
		t.Fatalf("dry run adoption %+v", a)
	}
	var cfg bpfobj.ProbeCdConfig
	if err := e3.maps.ConfigMap.Lookup(uint32(0), &cfg); err != nil || cfg.Enforce != 0 || cfg.Generation != 2 {
		t.Fatalf("config after a dry run adopted: %+v %v", cfg, err)
	}
	e3.Close()

	// Records the next engine cannot read as they are: a ring of another size.
	for range 5 {
		marker(t)
	}
	e4, _ := openEngine(t, Options{DisableLSM: true, RingBufferSize: 1 << 20, PinPath: pin, StateDir: state, FlushInterval: 2 * time.Millisecond})
	a = e4.Adoption()
	if !a.Adopted || !a.FreshMaps || a.Generation != 2 || a.Unread < 5 || a.Policy != "p.yaml" {
		t.Fatalf("upgrade adoption %+v", a)
	}
	t.Logf("upgrade: %s; %d unread records counted as dropped", a.Reason, a.Unread)
	if s, err := e4.Stats(); err != nil || s.RingbufDrops < a.Unread || s.PathErrors < 7 {
		t.Fatalf("stats after the upgrade %+v %v", s, err)
	}
	if got := namesInKernel(t, e4); !slices.Equal(got, []string{"0:ccc"}) {
		t.Fatalf("names in the new maps %v, want the live policy recompiled", got)
	}
	if err := e4.Swap(mustParse(t, namePolicy(t, "ddd"))); err != nil || e4.Generation() != 3 {
		t.Fatalf("swap after the upgrade: generation %d, %v", e4.Generation(), err)
	}
	ringInfo, _ := e4.maps.Events.Info()
	ringID, _ := ringInfo.ID()
	pinnedRing, err := ebpf.LoadPinnedMap(filepath.Join(pin, pinMapsDir, "events"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pinnedInfo, _ := pinnedRing.Info()
	if id, _ := pinnedInfo.ID(); id != ringID {
		t.Fatalf("pinned ring %d is not the new one %d", id, ringID)
	}
	pinnedRing.Close()
	e4.Close()

	links, maps, err := RemovePinned(pin, state)
	if err != nil || links == 0 || maps == 0 {
		t.Fatalf("RemovePinned: %d links, %d maps, %v", links, maps, err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin path after removal: %v", err)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir after removal: %v", err)
	}
	gone(t, "the ring (nothing may hold it once the programs are detached)", func() bool {
		m, err := ebpf.NewMapFromID(ringID)
		if err == nil {
			m.Close()
		}
		return err == nil
	})
	if st, err := InspectPinned(pin, state); err != nil || st.Present {
		t.Fatalf("InspectPinned after removal %+v %v", st, err)
	}
}
