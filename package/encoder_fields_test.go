package pkg_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloud-defend/cloud-defend/enrich"
	"github.com/cloud-defend/cloud-defend/event"
	pkg "github.com/cloud-defend/cloud-defend/package"

	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/enrich/host"
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
	host := host.Host{Hostname: "node-1", Name: "node-1", ID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Architecture: "x86_64",
		BootID: "6f1c9a52-3b7e-4c1d-9a8e-2b5f7c0d1e23", PIDNamespace: 4026531836, IPs: []string{"10.0.1.17"}, MACs: []string{"02-42-AC-11-00-02"},
		OS: host.OS{Family: "debian", Full: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0-26-cloud-amd64", Name: "Debian GNU/Linux", Platform: "debian", Version: "12"}}
	enc := ecs.NewEncoder(ecs.Agent{ID: "agent-1", Version: "0.1.0"}, host,
		&enrich.Cloud{Provider: "aws", Region: "eu-west-1", AvailabilityZone: "eu-west-1a", AccountID: "1", AccountName: "acct",
			ProjectID: "p", ProjectName: "pn", InstanceID: "i-1", InstanceName: "node-1"},
		time.Now(), func(*event.Event) ([]string, error) { return []string{"sel"}, nil })
	rec := func(pid uint32, exe string) proctree.Process {
		return proctree.Process{PID: pid, PPID: 1, Start: time.Second, EntityID: proctree.EntityID("agent-1", pid, time.Second),
			Executable: exe, Name: exe[strings.LastIndexByte(exe, '/')+1:], Args: []string{exe, "-x"}, WorkingDirectory: "/",
			Interactive: true, TTYMajor: 136, TTYMinor: 1, EntryMetaType: proctree.EntryContainer,
			Previous: []proctree.Exec{{Executable: "/bin/sh", Args: []string{"sh"}}}, Exited: true, ExitKnown: true, End: 2 * time.Second,
			ArgsTruncated: true, PathTruncated: true}
	}
	self, parent := rec(10, "/bin/cat"), rec(9, "/bin/sh")
	view := &proctree.View{Process: self, Parent: &parent,
		GroupLeader: &proctree.Leader{Process: self, SameAsProcess: true}, SessionLeader: &proctree.Leader{Process: parent},
		EntryLeader: &proctree.Leader{Process: parent}}
	ctx := &enrich.Context{Process: view,
		Container: &enrich.Container{ID: "c1", Runtime: "containerd", ImageName: "nginx", ImageTag: "1", Privileged: &priv},
		Pod: &enrich.Pod{ClusterID: "cid", ClusterName: "cn", Namespace: "ns", Name: "pod", IP: "10.0.0.1", ParentType: "ReplicaSet",
			Labels: []string{"app:x"}, Annotations: []string{"a:b"}}}
	meta := ecs.Meta{Namespace: "default", PackagePolicyID: "pp", Revision: 3}
	proc := event.Process{PID: 10, TID: 10, PPID: 9, Start: time.Second, Comm: "cat", TTYMajor: 136}
	events := []event.Event{
		{Kind: event.ProcessDecision, Op: policy.OpExec, Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock, Blocked: true,
			Path: "/bin/cat", Layer: event.LayerAdded, UserSpace: true, Process: proc},
		{Kind: event.ProcessDecision, Op: policy.OpFork, Actions: policy.ActionLog, Path: "/bin/cat", Process: proc},
		{Kind: event.Exit, Op: policy.OpExec, Actions: policy.ActionLog, ExitCode: 9, Process: proc},
		{Kind: event.FileDecision, Op: policy.OpCreateExecutable, Hook: 6, Actions: policy.ActionLog | policy.ActionAlert, Path: "/usr/bin/x.sh", Process: proc},
		// The network stream's sample is the logged connect; the blocked
		// one puts every network field on the alerts stream.
		{Kind: event.NetworkDecision, Op: policy.OpConnect, Hook: event.HookSocketConnect, Actions: policy.ActionLog,
			Protocol: event.ProtocolTCP, Source: netip.MustParseAddrPort("10.0.0.1:40312"), Destination: netip.MustParseAddrPort("203.0.113.9:443"),
			Direction: event.DirectionEgress, Process: proc},
		{Kind: event.NetworkDecision, Op: policy.OpConnect, Hook: event.HookSocketConnect, Actions: policy.ActionLog | policy.ActionAlert | policy.ActionBlock,
			Blocked: true, Protocol: event.ProtocolTCP, Source: netip.MustParseAddrPort("[2001:db8::1]:40312"), Destination: netip.MustParseAddrPort("[2001:db8::9]:443"),
			Direction: event.DirectionEgress, Layer: event.LayerAdded, Process: proc},
	}
	docs := 0
	first := map[string][]byte{} // data stream → its first document
	check := func(d ecs.Doc) {
		t.Helper()
		docs++
		ds := d.Stream[strings.IndexByte(d.Stream, '.')+1 : strings.LastIndexByte(d.Stream, '-')]
		if _, ok := first[ds]; !ok {
			first[ds] = slices.Clone(d.Body) // EncodeAll reuses its buffer
		}
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
	if docs != 11 {
		t.Errorf("%d documents checked, want 11 (exec alert+log, fork log, end log, file alert+log, connect log, connect alert+log, heartbeat, metrics)", docs)
	}
	checkSamples(t, first)
}

var updateSamples = flag.Bool("update-samples", false, "rewrite each data stream's sample_event.json from the encoder's output (then run -update for docs/README.md)")

// checkSamples keeps each data stream's sample_event.json the encoder's own
// output: -update-samples writes them; otherwise a sample must have exactly
// the fields the encoder writes for that stream.
func checkSamples(t *testing.T, docs map[string][]byte) {
	for ds, body := range docs {
		file := filepath.Join("cloud_defend", "data_stream", strings.TrimPrefix(ds, "cloud_defend."), "sample_event.json")
		if *updateSamples {
			var out bytes.Buffer
			if err := json.Indent(&out, body, "", "  "); err != nil {
				t.Fatal(err)
			}
			out.WriteByte('\n')
			if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		sample, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got, want := flatKeys(t, sample), flatKeys(t, body)
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v, the encoder writes %v: run go test ./package -run EncoderFields -update-samples, then -run README -update", file, got, want)
		}
	}
}

func flatKeys(t *testing.T, doc []byte) []string {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if o, ok := v.(map[string]any); ok {
			for k, x := range o {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
			return
		}
		keys = append(keys, prefix)
	}
	walk("", m)
	slices.Sort(keys)
	return keys
}
