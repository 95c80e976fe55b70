package ebpf

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/cloud-defend/cloud-defend/ebpf/internal/bpfobj"
	"github.com/cloud-defend/cloud-defend/event"
	"github.com/cloud-defend/cloud-defend/policy"
)

// enumTwin is a C enumerator, the constant bpf2go generated for it (-type), and
// the Go constant of package event or policy (or this package) that mirrors it.
type enumTwin struct {
	c         string
	gen, twin uint64
}

// enumTwins are the Go mirrors of the C enums, by C enum. The leaf packages
// event and policy cannot import bpfobj: this is what keeps them equal.
var enumTwins = map[string][]enumTwin{
	"event_type": {
		{"EVENT_FORK", uint64(bpfobj.ProbeEventTypeEVENT_FORK), uint64(event.Fork)},
		{"EVENT_EXEC", uint64(bpfobj.ProbeEventTypeEVENT_EXEC), uint64(event.Exec)},
		{"EVENT_EXIT", uint64(bpfobj.ProbeEventTypeEVENT_EXIT), uint64(event.Exit)},
		{"EVENT_DECISION", uint64(bpfobj.ProbeEventTypeEVENT_DECISION), uint64(event.ProcessDecision)},
		{"EVENT_SETSID", uint64(bpfobj.ProbeEventTypeEVENT_SETSID), uint64(event.Setsid)},
		{"EVENT_FILE", uint64(bpfobj.ProbeEventTypeEVENT_FILE), uint64(event.FileDecision)},
		{"EVENT_SYSFILE", uint64(bpfobj.ProbeEventTypeEVENT_SYSFILE), uint64(kindSysfile)},
		{"EVENT_NETWORK", uint64(bpfobj.ProbeEventTypeEVENT_NETWORK), uint64(event.NetworkDecision)},
	},
	"hook_point": {
		{"HOOK_FILE_OPEN", uint64(bpfobj.ProbeHookPointHOOK_FILE_OPEN), uint64(event.HookFileOpen)},
		{"HOOK_PATH_MKNOD", uint64(bpfobj.ProbeHookPointHOOK_PATH_MKNOD), uint64(event.HookPathMknod)},
		{"HOOK_PATH_UNLINK", uint64(bpfobj.ProbeHookPointHOOK_PATH_UNLINK), uint64(event.HookPathUnlink)},
		{"HOOK_PATH_CHMOD", uint64(bpfobj.ProbeHookPointHOOK_PATH_CHMOD), uint64(event.HookPathChmod)},
		{"HOOK_PATH_TRUNCATE", uint64(bpfobj.ProbeHookPointHOOK_PATH_TRUNCATE), uint64(event.HookPathTruncate)},
		{"HOOK_PATH_RENAME", uint64(bpfobj.ProbeHookPointHOOK_PATH_RENAME), uint64(event.HookPathRename)},
		{"HOOK_PATH_LINK", uint64(bpfobj.ProbeHookPointHOOK_PATH_LINK), uint64(event.HookPathLink)},
		{"HOOK_FILE_PERMISSION", uint64(bpfobj.ProbeHookPointHOOK_FILE_PERMISSION), uint64(event.HookFilePermission)},
		{"HOOK_INODE_SETXATTR", uint64(bpfobj.ProbeHookPointHOOK_INODE_SETXATTR), uint64(event.HookInodeSetxattr)},
		{"HOOK_INODE_REMOVEXATTR", uint64(bpfobj.ProbeHookPointHOOK_INODE_REMOVEXATTR), uint64(event.HookInodeRemovexattr)},
		{"HOOK_MMAP_FILE", uint64(bpfobj.ProbeHookPointHOOK_MMAP_FILE), uint64(event.HookMmapFile)},
		{"HOOK_FILE_MPROTECT", uint64(bpfobj.ProbeHookPointHOOK_FILE_MPROTECT), uint64(event.HookFileMprotect)},
		{"HOOK_INODE_SET_ACL", uint64(bpfobj.ProbeHookPointHOOK_INODE_SET_ACL), uint64(event.HookInodeSetACL)},
		{"HOOK_SOCKET_CONNECT", uint64(bpfobj.ProbeHookPointHOOK_SOCKET_CONNECT), uint64(event.HookSocketConnect)},
		{"HOOK_SOCKET_ACCEPT", uint64(bpfobj.ProbeHookPointHOOK_SOCKET_ACCEPT), uint64(event.HookSocketAccept)},
		{"HOOK_SOCKET_BIND", uint64(bpfobj.ProbeHookPointHOOK_SOCKET_BIND), uint64(event.HookSocketBind)},
		{"HOOK_SOCKET_SENDMSG", uint64(bpfobj.ProbeHookPointHOOK_SOCKET_SENDMSG), uint64(event.HookSocketSendmsg)},
	},
	"layer": {
		{"LAYER_NONE", uint64(bpfobj.ProbeLayerLAYER_NONE), uint64(event.LayerNone)},
		{"LAYER_LOWER", uint64(bpfobj.ProbeLayerLAYER_LOWER), uint64(event.LayerImage)},
		{"LAYER_UPPER", uint64(bpfobj.ProbeLayerLAYER_UPPER), uint64(event.LayerModified)},
		{"LAYER_UPPER_ONLY", uint64(bpfobj.ProbeLayerLAYER_UPPER_ONLY), uint64(event.LayerAdded)},
		{"LAYER_UNKNOWN", uint64(bpfobj.ProbeLayerLAYER_UNKNOWN), uint64(event.LayerUnknown)},
	},
	"file_op": { // numbered as policy.Op: file_policy.ops is indexed by it
		{"FOP_CREATE_EXECUTABLE", uint64(bpfobj.ProbeFileOpFOP_CREATE_EXECUTABLE), uint64(policy.OpCreateExecutable)},
		{"FOP_MODIFY_EXECUTABLE", uint64(bpfobj.ProbeFileOpFOP_MODIFY_EXECUTABLE), uint64(policy.OpModifyExecutable)},
		{"FOP_CREATE_FILE", uint64(bpfobj.ProbeFileOpFOP_CREATE_FILE), uint64(policy.OpCreateFile)},
		{"FOP_MODIFY_FILE", uint64(bpfobj.ProbeFileOpFOP_MODIFY_FILE), uint64(policy.OpModifyFile)},
		{"FOP_DELETE_FILE", uint64(bpfobj.ProbeFileOpFOP_DELETE_FILE), uint64(policy.OpDeleteFile)},
	},
	"action": {
		{"ACTION_LOG", uint64(bpfobj.ProbeActionACTION_LOG), uint64(policy.ActionLog)},
		{"ACTION_ALERT", uint64(bpfobj.ProbeActionACTION_ALERT), uint64(policy.ActionAlert)},
		{"ACTION_BLOCK", uint64(bpfobj.ProbeActionACTION_BLOCK), uint64(policy.ActionBlock)},
	},
}

// goOnly are Go constants of the mirrored types with no C twin: hook points
// user space reports (file syscalls, detected without BPF LSM).
var goOnly = map[event.HookPoint]bool{event.HookSysOpen: true, event.HookSysUnlink: true, event.HookSysRename: true, event.HookSysChmod: true,
	event.HookSysLink: true, event.HookSysTruncate: true, event.HookSysMknod: true,
	event.HookSysConnect: true, event.HookSysAccept: true, event.HookSysBind: true, event.HookInetSockSetState: true}

// TestEnumTwins: every Go mirror equals its generated constant, the generated
// constants are the object's (BTF), and every enumerator of a mirrored C enum
// has a Go twin, so a value added on either side fails here.
func TestEnumTwins(t *testing.T) {
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		t.Fatal(err)
	}
	for name, twins := range enumTwins {
		var en *btf.Enum
		if err := spec.Types.TypeByName(name, &en); err != nil {
			t.Errorf("enum %s: %v", name, err)
			continue
		}
		inC := map[string]uint64{}
		for _, v := range en.Values {
			inC[v.Name] = v.Value
		}
		seen := map[string]bool{}
		for _, tw := range twins {
			seen[tw.c] = true
			if tw.gen != tw.twin {
				t.Errorf("%s: the Go twin is %d, the C value %d", tw.c, tw.twin, tw.gen)
			}
			if v, ok := inC[tw.c]; !ok || v != tw.gen {
				t.Errorf("%s: generated %d, the object has %d (present %v): run go run mage.go generate", tw.c, tw.gen, v, ok)
			}
		}
		for c := range inC {
			if !seen[c] {
				t.Errorf("enum %s: %s has no Go twin", name, c)
			}
		}
	}
	// The other way: every named Go value has a C twin.
	hooks := map[uint64]bool{}
	for _, tw := range enumTwins["hook_point"] {
		hooks[tw.twin] = true
	}
	for h := event.HookPoint(0); h < 256; h++ {
		if !strings.HasPrefix(h.String(), "hook(") && !hooks[uint64(h)] && !goOnly[h] {
			t.Errorf("event.%v (%d) has no C twin in enum hook_point", h, h)
		}
	}
	kinds := map[uint64]bool{}
	for _, tw := range enumTwins["event_type"] {
		kinds[tw.twin] = true
	}
	for k := event.Kind(1); k < 64; k++ {
		if !kinds[uint64(k)] && !strings.HasPrefix(k.String(), "kind(") {
			t.Errorf("event kind %v (%d) has no C twin in enum event_type", k, k)
		}
	}
	layers := map[uint64]bool{}
	for _, tw := range enumTwins["layer"] {
		layers[tw.twin] = true
	}
	for l := event.LayerNone; !strings.HasPrefix(l.String(), "layer("); l++ {
		if !layers[uint64(l)] {
			t.Errorf("event layer %v (%d) has no C twin in enum layer", l, l)
		}
	}
	// Process ops are numbered apart from policy.Op (decision_event.op).
	if processOp(bpfobj.ProbeProcessOpOP_FORK) != policy.OpFork || processOp(bpfobj.ProbeProcessOpOP_EXEC) != policy.OpExec {
		t.Error("processOp does not map enum process_op onto policy.OpFork and policy.OpExec")
	}
	var po *btf.Enum
	if err := spec.Types.TypeByName("process_op", &po); err != nil {
		t.Errorf("enum process_op: %v", err)
	} else if len(po.Values) != 2 {
		t.Errorf("enum process_op has %d values; processOp maps two", len(po.Values))
	}
}
