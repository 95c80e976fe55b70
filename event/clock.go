package event

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now is the kernel's event clock: time since boot, counting suspend
// (CLOCK_BOOTTIME), as Event.Time.
func Now() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
