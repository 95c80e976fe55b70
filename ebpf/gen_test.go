package ebpf

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/cloud-defend/cloud-defend/policy"
)

// Vocabularies for random process policies and operations. Small, so random
// selectors and operations meet often; the paths exercise exact, /* and /** at
// several depths, the root, and a near-miss prefix (/usr/binx).
var (
	genDirs  = []string{"", "/sbin", "/usr", "/usr/bin", "/usr/bin/x", "/tmp", "/tmp/a", "/usr/binx"}
	genFiles = []string{"/sbin/sh", "/sbin/busybox", "/usr/bin/env", "/usr/bin/x/y", "/usr/bin/x/w/z", "/tmp/c", "/tmp/a/b", "/usr/binx/env", "/usr/bin/sh"}
	genNames = []string{"sh", "busybox", "env", "y", "z", "c", "b"}
	genImgs  = []string{"nginx", "redis"}
)

// genPolicy writes a random, valid process policy of up to maxSel selectors.
func genPolicy(r *rand.Rand, maxSel int) string {
	n := 1 + r.IntN(maxSel)
	var b strings.Builder
	b.WriteString("process:\n  selectors:\n")
	for i := range n {
		fmt.Fprintf(&b, "    - name: s%d\n", i)
		conds := 0
		if r.IntN(3) > 0 {
			ops := [][]string{{"exec"}, {"fork", "exec"}, {"fork"}, {"execMemFd"}, {"exec", "execMemFd"}}[r.IntN(5)]
			fmt.Fprintf(&b, "      operation: [%s]\n", strings.Join(ops, ", "))
			conds++
		}
		if r.IntN(2) == 0 {
			var vals []string
			for range 1 + r.IntN(3) {
				switch r.IntN(3) {
				case 0:
					vals = append(vals, genFiles[r.IntN(len(genFiles))])
				case 1:
					vals = append(vals, genDirs[r.IntN(len(genDirs))]+"/*")
				case 2:
					vals = append(vals, genDirs[r.IntN(len(genDirs))]+"/**")
				}
			}
			fmt.Fprintf(&b, "      processExecutable: [%s]\n", strings.Join(dedup(vals), ", "))
			conds++
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "      processName: [%s]\n", strings.Join(dedup(pick(r, genNames, 1+r.IntN(2))), ", "))
			conds++
		}
		if r.IntN(4) == 0 {
			fmt.Fprintf(&b, "      sessionLeaderInteractive: %t\n", r.IntN(2) == 0)
			conds++
		}
		if r.IntN(5) == 0 {
			fmt.Fprintf(&b, "      executableLayer: [%s]\n", strings.Join(dedup(pick(r, policy.Layers, 1+r.IntN(2))), ", "))
			conds++
		}
		if r.IntN(4) == 0 || conds == 0 {
			fmt.Fprintf(&b, "      containerImageName: [%s]\n", genImgs[r.IntN(len(genImgs))])
		}
	}
	genResponses(&b, r, "s", n)
	return b.String()
}

// genOp is a random exec or fork in a random container.
func genOp(r *rand.Rand) policy.Operation {
	exe := genFiles[r.IntN(len(genFiles))]
	op := policy.Operation{
		Op:                       []policy.Op{policy.OpExec, policy.OpExec, policy.OpFork}[r.IntN(3)],
		ProcessExecutable:        exe,
		ProcessName:              exe[strings.LastIndexByte(exe, '/')+1:],
		SessionLeaderInteractive: r.IntN(2) == 0,
		ExecutableIsMemfd:        r.IntN(5) == 0,
		ExecutableLayer:          append([]string{""}, policy.Layers...)[r.IntN(len(policy.Layers)+1)],
	}
	if op.Op == policy.OpFork {
		op.ExecutableIsMemfd = false
	}
	if i := r.IntN(len(genImgs) + 1); i < len(genImgs) {
		op.ContainerImageName = genImgs[i]
	}
	return op
}

func pick(r *rand.Rand, from []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = from[r.IntN(len(from))]
	}
	return out
}

// genResponses writes up to four random responses over selectors prefix0..prefix{n-1},
// keeping selectors plus responses within 64.
func genResponses(b *strings.Builder, r *rand.Rand, prefix string, n int) {
	b.WriteString("  responses:\n")
	for range 1 + r.IntN(min(4, 64-n)) {
		fmt.Fprintf(b, "    - match: [%s]\n", strings.Join(dedup(pickSel(r, prefix, n, 1+r.IntN(3))), ", "))
		if r.IntN(3) == 0 {
			fmt.Fprintf(b, "      exclude: [%s]\n", strings.Join(dedup(pickSel(r, prefix, n, 1)), ", "))
		}
		fmt.Fprintf(b, "      actions: [%s]\n", []string{"log", "alert", "alert, block", "log, alert, block"}[r.IntN(4)])
	}
}

// pickSel names n random selectors of prefix0..prefix{nsel-1}.
func pickSel(r *rand.Rand, prefix string, nsel, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, r.IntN(nsel))
	}
	return out
}

func dedup(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

var genFileOps = []policy.Op{policy.OpCreateExecutable, policy.OpModifyExecutable, policy.OpCreateFile, policy.OpModifyFile, policy.OpDeleteFile}

// genFilePolicy writes a random, valid file policy of up to maxSel selectors.
func genFilePolicy(r *rand.Rand, maxSel int) string {
	for {
		n := 1 + r.IntN(maxSel)
		var b strings.Builder
		b.WriteString("file:\n  selectors:\n")
		for i := range n {
			fmt.Fprintf(&b, "    - name: f%d\n", i)
			conds := 0
			if r.IntN(3) > 0 {
				var ops []string
				for _, op := range genFileOps {
					if r.IntN(3) == 0 {
						ops = append(ops, op.String())
					}
				}
				if len(ops) > 0 {
					fmt.Fprintf(&b, "      operation: [%s]\n", strings.Join(ops, ", "))
					conds++
				}
			}
			if r.IntN(3) > 0 {
				var vals []string
				for range 1 + r.IntN(3) {
					switch r.IntN(3) {
					case 0:
						vals = append(vals, genFiles[r.IntN(len(genFiles))])
					case 1:
						vals = append(vals, genDirs[r.IntN(len(genDirs))]+"/*")
					case 2:
						vals = append(vals, genDirs[r.IntN(len(genDirs))]+"/**")
					}
				}
				fmt.Fprintf(&b, "      targetFilePath: [%s]\n", strings.Join(dedup(vals), ", "))
				conds++
			}
			switch r.IntN(6) {
			case 0:
				b.WriteString("      ignoreVolumeMounts: true\n")
				conds++
			case 1:
				b.WriteString("      ignoreVolumeFiles: true\n")
				conds++
			}
			if r.IntN(4) == 0 || conds == 0 {
				fmt.Fprintf(&b, "      containerImageName: [%s]\n", genImgs[r.IntN(len(genImgs))])
			}
		}
		genResponses(&b, r, "f", n)
		src := b.String()
		// Blocking file writes without a path is refused by validation: draw again.
		if _, _, err := policy.Parse("gen.yaml", []byte(src)); err == nil {
			return src
		}
	}
}

// genFileOp is a random file operation in a random container. Paths under /tmp
// are on a volume (the VM mounts a tmpfs there).
func genFileOp(r *rand.Rand) policy.Operation {
	path := genFiles[r.IntN(len(genFiles))]
	op := policy.Operation{
		Op:            genFileOps[r.IntN(len(genFileOps))],
		TargetPath:    path,
		OnVolumeMount: strings.HasPrefix(path, "/tmp/"),
	}
	if i := r.IntN(len(genImgs) + 1); i < len(genImgs) {
		op.ContainerImageName = genImgs[i]
	}
	return op
}
