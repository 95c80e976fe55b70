package pkg_test

import (
	"strings"
	"testing"
	"time"

	pkg "github.com/cloud-defend/cloud-defend/package"

	"github.com/cloud-defend/cloud-defend/ebpf"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich/proctree"
	"github.com/cloud-defend/cloud-defend/policy"
)

// TestEncoderFieldsDeclared encodes every kind of document with every part
// of the context filled in (process tree, container, pod, cloud, host) and
// checks each field is declared, with the package's own resolution of ECS
// types, in the data stream the document goes to. The alerts stream maps
// nothing dynamically, so an undeclared field there would be silently
// unsearchable.
func TestEncoderFieldsDeclared(t *testing.T) {
	priv := true
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "0.1.0"}, ecs.LocalHost("/proc", "/etc"),
		&ecs.Cloud{Provider: "aws", Region: "eu-west-1", AvailabilityZone: "eu-west-1a", AccountID: "1", AccountName: "acct",
			ProjectID: "p", ProjectName: "pn", InstanceID: "i-1", InstanceName: "node-1"},
		time.Now(), func(*ebpf.Event) ([]string, error) { return []string{"sel"}, nil })
	rec := func(pid uint32, exe string) proctree.Process {
		return proctree.Process{PID: pid, PPID: 1, Start: time.Second, EntityID: proctree.EntityID("agent-1", pid, time.Second),
			Executable: exe, Name: exe[strings.LastIndexByte(exe, '/')+1:], Args: []string{exe, "-x"}, WorkingDirectory: "/",
			Interactive: true, TTYMajor: 136, TTYMinor: 1, EntryMetaType: proctree.EntryContainer,
			Previous: []proctree.Exec{{Executable: "/bin/sh", Args: []string{"sh"}}}, Exited: true, ExitKnown: true, End: 2 * time.Second}
	}
	self, parent := rec(10, "/bin/cat"), rec(9, "/bin/sh")
	view := &proctree.View{Process: self, Parent: &parent,
		GroupLeader: &proctree.Leader{Process: self, SameAsProcess: true}, SessionLeader: &proctree.Leader{Process: parent},
		EntryLeader: &proctree.Leader{Process: parent}}
	ctx := &ecs.Context{Process: view,
		Container: &ecs.Container{ID: "c1", Runtime: "containerd", ImageName: "nginx", ImageTag: "1", Privileged: &priv},
		Pod: &ecs.Pod{ClusterID: "cid", ClusterName: "cn", Namespace: "ns", Name: "pod", IP: "10.0.0.1", ParentType: "ReplicaSet",
			Labels: []string{"app:x"}, Annotations: []string{"a:b"}}}
	meta := ecs.Meta{Namespace: "default", PackagePolicyID: "pp", Revision: 3}
	proc := ebpf.Process{PID: 10, TID: 10, PPID: 9, Start: time.Second, Comm: "cat", TTYMajor: 136}
	events := []ebpf.Event{
		{Kind: ebpf.EventDecision, Op: policy.OpExec, Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock, Blocked: true,
			Path: "/bin/cat", Layer: ebpf.LayerAdded, UserSpace: true, Process: proc},
		{Kind: ebpf.EventDecision, Op: policy.OpFork, Actions: policy.ActionLog, Path: "/bin/cat", Process: proc},
		{Kind: ebpf.EventFile, Op: policy.OpCreateExecutable, Hook: 6, Actions: policy.ActionLog | policy.ActionAlert, Path: "/usr/bin/x.sh", Process: proc},
	}
	docs := 0
	check := func(d ecs.Doc) {
		t.Helper()
		docs++
		ds := d.Stream[strings.IndexByte(d.Stream, '.')+1 : strings.LastIndexByte(d.Stream, '-')]
		missing, err := pkg.Undeclared(ds, d.Body)
		if err != nil {
			t.Fatalf("%s: %v", d.Stream, err)
		}
		for _, f := range missing {
			t.Errorf("%s: field %s is not declared in data stream %s", d.Stream, f, ds)
		}
	}
	for i := range events {
		if err := enc.EncodeAll(&events[i], ctx, meta, check); err != nil {
			t.Fatal(err)
		}
	}
	check(enc.Heartbeat(meta, true, time.Now()))
	check(enc.Metrics(meta, ecs.Counters{Events: 1}, time.Now()))
	if docs != 7 {
		t.Errorf("%d documents checked, want 7 (exec alert+log, fork log, file alert+log, heartbeat, metrics)", docs)
	}
}
