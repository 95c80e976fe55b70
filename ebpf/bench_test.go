package ebpf

import (
	"encoding/binary"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

func BenchmarkDecodeExecEvent(b *testing.B) {
	var r bpfobj.ProbeExecEvent
	r.Hdr.Type = uint32(event.Exec)
	copy(r.Filename[:], []int8{'/', 'b', 'i', 'n', '/', 's', 'h'})
	args := "/bin/sh\x00-c\x00echo hello\x00"
	exe, cwd := "/bin/busybox", "/root"
	r.ArgsLen, r.ArgsCap, r.PathCap = uint32(len(args)), 1024, 256
	r.ExeLen, r.CwdLen = uint32(len(exe)), uint32(len(cwd))
	raw, err := binary.Append(nil, binary.NativeEndian, &r)
	if err != nil {
		b.Fatal(err)
	}
	// argv, exe and cwd follow the fixed part, in the smallest record size (1 KiB
	// of args, 256 bytes per path).
	at := int(unsafe.Offsetof(r.Args))
	raw = append(raw[:at], make([]byte, 1024+2*256)...)
	copy(raw[at:], args)
	copy(raw[at+1024:], exe)
	copy(raw[at+1024+256:], cwd)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEvent(raw, names{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRingbufDrain measures how fast user space drains kernel events into a Go
// channel (decoded, as the enricher will consume them): a BPF producer run through
// BPF_PROG_RUN writes exec-sized events in bursts of 64 on one CPU while the reader
// drains on the other, never more than 4096 events ahead of it. It reports the
// events/s delivered and the events the ring dropped (zero when the reader keeps up).
func BenchmarkRingbufDrain(b *testing.B) {
	// bench_emit writes into the production object's ring and counters.
	var maps bpfobj.ProbeMaps
	prod, err := bpfobj.LoadProbe()
	if err != nil {
		b.Fatal(err)
	}
	if err := prod.LoadAndAssign(&maps, nil); err != nil {
		b.Fatal(err)
	}
	defer maps.Close()
	var emit struct {
		BenchEmit *ebpf.Program `ebpf:"bench_emit"`
	}
	_, closeBench := loadBench(b, &emit, map[string]*ebpf.Map{bpfobj.ProbeMapEvents: maps.Events, bpfobj.ProbeMapStats: maps.Stats})
	defer closeBench()
	reader, err := ringbuf.NewReader(maps.Events)
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan event.Event, 4096)
	var consumed atomic.Int64
	go func() {
		for range ch {
			consumed.Add(1)
		}
	}()
	go func() {
		defer close(ch)
		for {
			rec, err := reader.Read()
			if err != nil {
				return
			}
			ev, err := decodeEvent(rec.RawSample, names{}, nil)
			if err != nil {
				b.Error(err)
				return
			}
			ch <- ev
		}
	}()
	prog := emit.BenchEmit
	start := time.Now()
	produced := int64(0)
	for produced < int64(b.N) {
		// Keep at most 4096 events (about 6 MiB of the 16 MiB ring) in flight: the
		// rate measured is what the reader sustains without loss.
		for produced-consumed.Load() > 4096 {
			runtime.Gosched()
		}
		if _, err := prog.Run(&ebpf.RunOptions{}); err != nil {
			b.Fatalf("run producer: %v", err)
		}
		produced += 64
	}
	var drops uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		var per []uint64
		if err := maps.Stats.Lookup(uint32(0), &per); err != nil {
			b.Fatal(err)
		}
		drops = 0
		for _, v := range per {
			drops += v
		}
		if consumed.Load()+int64(drops) >= produced || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reader.Close()
	b.ReportMetric(float64(consumed.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(drops), "dropped")
	if consumed.Load()+int64(drops) != produced {
		b.Fatalf("%d produced, %d consumed, %d counted as dropped: events vanished", produced, consumed.Load(), drops)
	}
}

// loadBench loads programs of the benchmark object (bpfobj Bench, never the
// production one) into set, a struct of *ebpf.Program fields tagged with their
// names, with the production maps replacing the benchmark object's own where
// given (bench_emit writes the production ring).
func loadBench(tb testing.TB, set any, prodMaps map[string]*ebpf.Map) (*ebpf.CollectionSpec, func()) {
	spec, err := bpfobj.LoadBench()
	if err != nil {
		tb.Fatal(err)
	}
	if err := spec.LoadAndAssign(set, &ebpf.CollectionOptions{MapReplacements: prodMaps}); err != nil {
		tb.Fatal(err)
	}
	return spec, func() { closeSet(set) }
}

// emptyHooks are the benchmark object's empty programs on the engine's hooks:
// the baseline of "our hook vs an empty hook".
type emptyHooks struct {
	EmptyBprmCheck        *ebpf.Program `ebpf:"empty_bprm_check"`
	EmptyExec             *ebpf.Program `ebpf:"empty_exec"`
	EmptyExit             *ebpf.Program `ebpf:"empty_exit"`
	EmptyFileMprotect     *ebpf.Program `ebpf:"empty_file_mprotect"`
	EmptyFileOpen         *ebpf.Program `ebpf:"empty_file_open"`
	EmptyFilePermission   *ebpf.Program `ebpf:"empty_file_permission"`
	EmptyFork             *ebpf.Program `ebpf:"empty_fork"`
	EmptyInodeRemovexattr *ebpf.Program `ebpf:"empty_inode_removexattr"`
	EmptyInodeSetxattr    *ebpf.Program `ebpf:"empty_inode_setxattr"`
	EmptyMmapFile         *ebpf.Program `ebpf:"empty_mmap_file"`
	EmptyPathChmod        *ebpf.Program `ebpf:"empty_path_chmod"`
	EmptyPathLink         *ebpf.Program `ebpf:"empty_path_link"`
	EmptyPathMknod        *ebpf.Program `ebpf:"empty_path_mknod"`
	EmptyPathRename       *ebpf.Program `ebpf:"empty_path_rename"`
	EmptyPathTruncate     *ebpf.Program `ebpf:"empty_path_truncate"`
	EmptyPathUnlink       *ebpf.Program `ebpf:"empty_path_unlink"`
	EmptyTaskAlloc        *ebpf.Program `ebpf:"empty_task_alloc"`
	EmptySocketConnect    *ebpf.Program `ebpf:"empty_socket_connect"`
	EmptySocketBind       *ebpf.Program `ebpf:"empty_socket_bind"`
	EmptySocketSendmsg    *ebpf.Program `ebpf:"empty_socket_sendmsg"`
	EmptySocketRecvmsg    *ebpf.Program `ebpf:"empty_socket_recvmsg"`
	EmptyAccept           *ebpf.Program `ebpf:"empty_accept"`
}

// swapPolicies are the two policies the swap benchmarks alternate between: 63
// process selectors alerting on every container exec, and 63 file selectors.
func swapPolicies(tb testing.TB) [2]*policy.Policy {
	src := strings.Replace(sel64Policy(), "actions: [log]", "actions: [alert]", 1) + fileSel64Policy(false)
	return [2]*policy.Policy{mustParse(tb, src), mustParse(tb, src)}
}

// BenchmarkSwap measures a policy push into the kernel engine: compiling both
// 64-selector policies' maps and flipping the generation. It runs on the host
// (the maps load there without BPF LSM) and, as BenchmarkVMSwap, in the VM, so
// their ratio is the emulation factor of the policy path.
func BenchmarkSwap(b *testing.B) { benchSwap(b) }

func benchSwap(b *testing.B) {
	e, err := Open(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ps := swapPolicies(b)
	i := 0
	for b.Loop() {
		if err := e.Swap(ps[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
