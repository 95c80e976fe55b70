package vmtest

import (
	"fmt"
	"io"
	"sort"
)

// An initramfs is a "newc" cpio archive. The format is a fixed ASCII header per
// entry, a few lines of code; writing it here spares the harness a cpio tool or a
// dependency for one function.

// entry is one initramfs file, directory or symlink.
type entry struct {
	mode uint32 // type and permission bits, as in stat(2)
	data []byte // file contents, or a symlink's target
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
)

// writeCpio writes entries in name order (parents before children) and the trailer.
func writeCpio(w io.Writer, files map[string]entry) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	for _, n := range names {
		if err := writeEntry(w, ino, n, files[n]); err != nil {
			return err
		}
		ino++
	}
	return writeEntry(w, 0, "TRAILER!!!", entry{})
}

func writeEntry(w io.Writer, ino uint32, name string, e entry) error {
	nlink := 1
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, 0, 0, len(name)+1, 0)
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, e.data...)
	buf = pad4(buf)
	_, err := w.Write(buf)
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
