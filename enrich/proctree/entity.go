package proctree

import (
	"encoding/base64"
	"strconv"
	"time"
)

// Tick is USER_HZ, the unit of start times in /proc/<pid>/stat. The kernel fixes
// it at 100 per second on every architecture Go supports, whatever CONFIG_HZ is.
const Tick = 10 * time.Millisecond

// TruncStart truncates a boot-relative start time to the tick /proc reports it
// in: the part of a start time that the kernel's events and /proc agree on.
func TruncStart(start time.Duration) time.Duration { return start - start%Tick }

// EntityID is Elastic's process.entity_id: base64 of "<agentID>-<pid>-<start>",
// start being TruncStart(start) in nanoseconds (see the package documentation).
func EntityID(agentID string, pid uint32, start time.Duration) string {
	// Built on the stack for ids of usual length: one allocation, the
	// string, per new process.
	var raw [96]byte
	b := append(raw[:0], agentID...)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(TruncStart(start)), 10)
	var enc [128]byte
	return string(base64.StdEncoding.AppendEncode(enc[:0], b))
}

// sameStart says whether two start times are the same process's, one of them
// possibly only known to the tick.
func sameStart(a, b time.Duration) bool { return TruncStart(a) == TruncStart(b) }
