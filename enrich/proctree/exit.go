package proctree

// Exit is how a process ended.
type Exit struct {
	// Code is process.exit_code: the status it exited with, or 128+signal when a
	// signal killed it, as shells report it ($? after kill -9 is 137).
	Code       int32
	Signal     uint8 // the signal that killed it; 0 when it exited
	CoreDumped bool
}

// DecodeWaitStatus decodes the raw wait status the kernel keeps in
// task->exit_code (what wait(2) returns): the exit status in bits 8-15, or the
// killing signal in bits 0-6 with bit 7 set when it dumped core.
func DecodeWaitStatus(status uint32) Exit {
	sig := status & 0x7f
	if sig == 0 {
		return Exit{Code: int32(status >> 8 & 0xff)}
	}
	return Exit{Code: 128 + int32(sig), Signal: uint8(sig), CoreDumped: status&0x80 != 0}
}
