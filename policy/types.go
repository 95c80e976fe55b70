package policy

import "strings"

// Type is the kind of operation a selector or response applies to. The process,
// file and network sections are separate namespaces: names, limits and references
// never cross them.
type Type uint8

const (
	Process Type = iota
	File
	// Network is cloud-defend's extension to D4C: the network: section, whose
	// operations are OpConnect, OpAccept and OpBind (see network.go).
	Network
	numTypes
)

func (t Type) String() string {
	switch t {
	case Process:
		return "process"
	case File:
		return "file"
	case Network:
		return "network"
	}
	return "unknown"
}

// Op is an operation a selector can name. The numeric values are part of the
// kernel ABI (the BPF programs' C enum mirrors them): new operations are appended,
// never inserted.
type Op uint8

const (
	OpFork Op = iota
	OpExec
	// OpExecMemfd is the first policy version's "execMemFd": an exec whose
	// executable is a memfd (fileless execution). Operations passed to Evaluate
	// never carry it; they carry OpExec with ExecutableIsMemfd set.
	OpExecMemfd
	OpCreateExecutable
	OpModifyExecutable
	OpCreateFile
	OpModifyFile
	OpDeleteFile
	// OpConnect is an outgoing connection: a TCP connect(2); for UDP, a
	// connect(2) and every send to an explicit destination on an unconnected
	// socket (see network.go for what is judged and what is reported).
	OpConnect
	// OpAccept is an incoming TCP connection accepted by a listening socket.
	OpAccept
	// OpBind is a TCP or UDP socket bound to a local address, whether it then
	// listens or not.
	OpBind
	numOps
)

var opNames = [numOps]string{
	OpFork:             "fork",
	OpExec:             "exec",
	OpExecMemfd:        "execMemFd",
	OpCreateExecutable: "createExecutable",
	OpModifyExecutable: "modifyExecutable",
	OpCreateFile:       "createFile",
	OpModifyFile:       "modifyFile",
	OpDeleteFile:       "deleteFile",
	OpConnect:          "connect",
	OpAccept:           "accept",
	OpBind:             "bind",
}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return "unknown"
}

// Type reports which section the operation belongs to.
func (o Op) Type() Type {
	switch {
	case o <= OpExecMemfd:
		return Process
	case o >= OpConnect:
		return Network
	}
	return File
}

// ParseOp returns the operation with the given policy name.
func ParseOp(name string) (Op, bool) {
	for i, n := range opNames {
		if n == name {
			return Op(i), true
		}
	}
	return 0, false
}

// OpSet is a set of operations. The zero set in a selector means "every operation
// of the selector's type".
type OpSet uint16

func (s OpSet) Has(o Op) bool { return s&(1<<o) != 0 }

func (s OpSet) With(o Op) OpSet { return s | 1<<o }

// Ops lists the members in declaration order.
func (s OpSet) Ops() []Op {
	var out []Op
	for o := Op(0); o < numOps; o++ {
		if s.Has(o) {
			out = append(out, o)
		}
	}
	return out
}

func (s OpSet) String() string {
	var b strings.Builder
	for _, o := range s.Ops() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(o.String())
	}
	return b.String()
}

// allOps is what a selector without an operation condition covers.
var allOps = [numTypes]OpSet{
	Process: OpSet(0).With(OpFork).With(OpExec),
	File: OpSet(0).With(OpCreateExecutable).With(OpModifyExecutable).
		With(OpCreateFile).With(OpModifyFile).With(OpDeleteFile),
	Network: OpSet(0).With(OpConnect).With(OpAccept).With(OpBind),
}

// writeOps are the file operations that, blocked without a path, would stop every
// write in a container.
var writeOps = OpSet(0).With(OpCreateFile).With(OpModifyFile).With(OpDeleteFile)

// Actions is a set of response actions.
type Actions uint8

const (
	ActionLog Actions = 1 << iota
	ActionAlert
	ActionBlock
)

var actionNames = []struct {
	a    Actions
	name string
}{{ActionLog, "log"}, {ActionAlert, "alert"}, {ActionBlock, "block"}}

func parseAction(name string) (Actions, bool) {
	for _, an := range actionNames {
		if an.name == name {
			return an.a, true
		}
	}
	return 0, false
}

func (a Actions) Has(x Actions) bool { return a&x == x && x != 0 }

func (a Actions) String() string {
	var b strings.Builder
	for _, an := range actionNames {
		if a&an.a != 0 {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(an.name)
		}
	}
	return b.String()
}
