// Package proctree keeps the node's process table: what every process is
// (executable, args, ids, credentials, tty, cgroup, pid namespace) and how it
// relates to others (parent, group, session and entry leaders), fed by the
// kernel's fork, exec, exit and setsid events and seeded from /proc for processes
// that were running before the agent started. Documents are built from its
// snapshots (Lookup).
//
// # Entity ids
//
// process.entity_id is base64 (standard encoding) of "<agent.id>-<pid>-<start>",
// where start is the process's start time since boot (CLOCK_BOOTTIME, the
// kernel's task->start_boottime) truncated to a multiple of 10 ms and written in
// nanoseconds. 10 ms is USER_HZ: /proc/<pid>/stat gives the start as
// start_boottime/10ms rounded down, so truncating the kernel's nanoseconds the
// same way gives the same number for a process whether it was seen being forked
// or found by a scan. Boot-relative rather than wall-clock time keeps ids stable
// across agent restarts: the wall time of boot is re-derived from CLOCK_REALTIME
// at every start and moves with NTP steps. Within a boot the pair cannot recur (a
// pid is reused only after the pid space wraps); across reboots a pid started at
// the same 10 ms after boot would repeat, which only early-boot processes risk.
//
// # Entry leaders
//
// The entry leader is the process through which a line of work entered the node
// or a container (Session View groups sessions by it):
//   - Container: a process in a pid namespace other than the host's whose parent
//     is in another pid namespace: a container's init (the first process of its
//     namespace) or a process that entered from outside (runc exec / kubectl exec,
//     nsenter: the fork crosses from the host into the container's namespace).
//     entry_meta.type is "container". Found by scanning, a process counts when
//     its parent is in another namespace or it is its namespace's pid 1.
//   - Host init: pid 1 of the host namespace is its own entry leader, "init".
//   - Remote login on the host: a host process that starts a new session (setsid)
//     while its parent is sshd (or sshd-session, teleport, ssm-session-worker)
//     becomes its own entry leader of type "sshd" ("teleport", "ssm").
//   - Otherwise a process inherits its parent's entry leader at fork; reparenting
//     does not change it. Kernel threads and orphans of unknown parents have none.
//
// # Parents and leaders
//
// The parent is the process's real parent as the kernel last reported it: the
// forking process at first, the reaper (init or a subreaper such as a
// containerd shim) after its parent exits and the process is next seen. Group and
// session leaders follow the process's pgid and sid.
//
// # Memory
//
// An exited process stays resolvable for Config.Grace (late events, the exit
// document) and after that for as long as a live process links to it as parent
// or leader; then it leaves the table. Exited processes hold no links once their
// grace ends, so chains of dead ancestors are never kept, and at most
// Config.MaxExited processes wait out their grace at once. Table size is thus
// bounded by the live processes, not by how many ever ran.
//
// # Concurrency
//
// One goroutine writes (Apply, Scan, Reconcile: the event loop); any number read
// (Lookup, LookupPID, Stats) concurrently. Readers get copies; the slices in them
// (Args, Previous) are shared and never modified by the table.
package proctree
