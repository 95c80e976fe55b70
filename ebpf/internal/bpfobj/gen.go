// Package bpfobj holds the compiled BPF object and the Go that bpf2go generates for
// it from ../../bpf/cloud_defend.bpf.c. Everything here but this file is generated:
// run `go run mage.go generate` (needs clang-19) after changing the C source.
package bpfobj

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target amd64 -type event_header -type proc_info -type fork_event -type exit_event -type setsid_event -type file_event -type file_policy -type responses -type exec_event -type decision_event -type policy -type path_key -type path_val -type name_key -type container_key -type cd_config -type sysfile_event Probe ../../bpf/cloud_defend.bpf.c -- -I../../bpf
