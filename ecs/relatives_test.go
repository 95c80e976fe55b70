package ecs

import (
	"bytes"
	"regexp"
	"testing"
)

// TestRelativesReencoded: a relative's record is copied from its last
// encoding only while it is unchanged; each change shows in the next
// document exactly as a fresh encoder writes it.
func TestRelativesReencoded(t *testing.T) {
	varying := regexp.MustCompile(`"(created|ingested|id)":"[^"]*"`)
	e := testEncoder()
	ev, ctx := sessionContext()
	encode := func(e *Encoder) []byte {
		t.Helper()
		d, ok, err := e.Encode(ev, ctx, Meta{})
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		return varying.ReplaceAll(d.Body, nil)
	}
	v := ctx.Process
	parent, entry := *v.Parent, v.EntryLeader.Process
	for _, change := range []struct {
		name string
		do   func()
	}{
		{"none", func() {}},
		{"parent exec", func() { v.Parent.Executable, v.Parent.Name, v.Parent.Args = "/bin/ls", "ls", []string{"ls", "-l"} }},
		{"parent args emptied", func() { v.Parent.Args = []string{} }},
		{"parent args gone", func() { v.Parent.Args = nil }},
		{"parent cwd", func() { v.Parent.WorkingDirectory = "/tmp" }},
		{"parent setuid", func() { v.Parent.EUID, v.Parent.UID = 1000, 1000 }},
		{"parent setgid", func() { v.Parent.EGID, v.Parent.GID = 1000, 1000 }},
		{"parent lost its terminal", func() { v.Parent.Interactive = false }},
		{"pid reused", func() { v.Parent.Start++; v.Parent.EntityID = "other" }},
		{"another pid in the same slot", func() { v.Parent.PID += numRecords; v.Parent.EntityID = "third" }},
		{"and back", func() { v.Parent.PID -= numRecords; v.Parent.EntityID = "other" }},
		{"entry leader renamed", func() { v.EntryLeader.Name = "bash" }},
		{"session leader is the parent again", func() { *v.Parent = parent; v.SessionLeader.Process = parent }},
		{"entry leader back", func() { v.EntryLeader.Process = entry }},
	} {
		change.do()
		got, want := encode(e), encode(testEncoder())
		if !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got %s\nwant %s", change.name, got, want)
		}
	}
}
