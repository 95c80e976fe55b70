package proctree

// remoteEntries name the host services whose sessions are entries onto the
// node, by the name of the parent that starts the session.
var remoteEntries = map[string]string{
	"sshd":               EntrySSHD,
	"sshd-session":       EntrySSHD,
	"teleport":           EntryTeleport,
	"ssm-session-worker": EntrySSM,
}

// onHost says whether a pid namespace is the host's. With the host's unknown,
// every namespace counts as a container's.
func (t *Table) onHost(ns uint32) bool {
	return t.cfg.HostPIDNamespace != 0 && ns == t.cfg.HostPIDNamespace
}

// classify decides p's entry leader when it appears (see the package
// documentation for the rules).
func (t *Table) classify(p, parent *proc) {
	switch {
	case !t.onHost(p.PIDNamespace) && p.PIDNamespace != 0 &&
		(parent != nil && parent.PIDNamespace != p.PIDNamespace || parent == nil && p.nsInit):
		t.becomeEntry(p, EntryContainer)
	case p.PID == 1 && p.PPID == 0 && t.onHost(p.PIDNamespace):
		t.becomeEntry(p, EntryInit)
	case parent == nil: // nothing to inherit
	case p.SID == p.PID && t.remoteType(p, parent) != "":
		t.becomeEntry(p, t.remoteType(p, parent))
	default:
		t.setLink(p, &p.entry, parent.entry)
	}
}

// sessionEntry applies the remote-login rule to a process that has just
// started a session.
func (t *Table) sessionEntry(p *proc) {
	if p.parent != nil && p.EntryMetaType == "" {
		if typ := t.remoteType(p, p.parent); typ != "" {
			t.becomeEntry(p, typ)
		}
	}
}

// remoteType is the entry type of a host session started by parent, empty when
// parent is no remote-login service.
func (t *Table) remoteType(p, parent *proc) string {
	if !t.onHost(p.PIDNamespace) {
		return ""
	}
	return remoteEntries[parent.Name]
}

func (t *Table) becomeEntry(p *proc, typ string) {
	p.EntryMetaType = typ
	t.setLink(p, &p.entry, p)
}
