// Package bpfobj holds the compiled BPF objects and the Go that bpf2go generates
// for them. Everything here but this file is generated: run `go run mage.go
// generate` (needs clang-19) after changing the C source.
//
//   - Probe (../../bpf/cloud_defend.bpf.c) is the production object the engine
//     loads; its record types and enums (-type) are the Go twins of the C.
//   - Bench (../../bpf/bench.bpf.c) holds the benchmarks' programs (empty
//     baseline hooks, the ring producer bench_emit); only tests load it.
package bpfobj

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target amd64 -no-global-types -type event_header -type proc_info -type fork_event -type exit_event -type setsid_event -type file_event -type file_policy -type responses -type exec_event -type decision_event -type policy -type path_key -type path_val -type name_key -type container_key -type cd_config -type sysfile_event -type tree_key -type verdict -type event_type -type file_op -type hook_point -type action -type cd_stat -type layer -type process_op -type sys_op -type net_op -type net_kind -type net_policy -type net_key -type net_event -type endpoint Probe ../../bpf/cloud_defend.bpf.c -- -I../../bpf
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86" -target amd64 -no-global-types Bench ../../bpf/bench.bpf.c -- -I../../bpf
