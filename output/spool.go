package output

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The spool is a write-ahead log of documents not yet acknowledged by
// Elasticsearch: every published document is appended before it is sent, and
// handed to the OS at the publisher's next flush (once per batch of events it
// read), so a crash (even SIGKILL) loses nothing flushed; the sender reads it
// back in order and commits a cursor once Elasticsearch has answered.
//
// Files, under dir: seg-<n>.log segments of records
//
//	[length uint32][crc32c of payload uint32][payload: stream \x00 id \x00 body]
//
// and "cursor", the position (segment, offset) of the first unacknowledged
// record, with its checksum, overwritten in place. A torn record at the tail (a crash mid-write) fails
// its length or checksum and is cut off when the spool reopens.

const (
	segmentSize = 16 << 20 // rotate segments at this size
	recordHdr   = 8
	maxRecord   = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one spooled document. Read back, its fields point into the
// sender's read buffer, valid until its next call to next.
type record struct {
	Stream, ID []byte
	Body       []byte
	seg        uint64 // where it ends, for committing
	end        int64
}

type position struct {
	seg uint64
	off int64
}

type spool struct {
	dir      string
	maxBytes int64

	mu      sync.Mutex
	segs    []uint64         // segment numbers, oldest first
	sizes   map[uint64]int64 // bytes per segment
	counts  map[uint64]int64 // records per segment
	w       *os.File
	bw      *bufio.Writer
	wseg    uint64
	dropped int64  // records lost to the size cap
	torn    int64  // torn records cut off at open
	pending int64  // records written and not committed
	head    []byte // append's record head, reused

	cur      *os.File // the cursor file, written in place
	rd       *os.File // reader state: only the sender goroutine reads
	rbuf     []byte   // what next read, reused: the records it returns point into it
	batch    []record // what next returned, reused
	rpos     position
	inflight position // rpos as of the last batch read, for the cap (under mu)
	commit   position
}

func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, sizes: map[uint64]int64{}, counts: map[uint64]int64{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		if n, ok := segNumber(e.Name()); ok {
			s.segs = append(s.segs, n)
		}
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i] < s.segs[j] })
	s.commit = s.readCursor()
	// Drop segments before the cursor, scan the rest (counting records, cutting a
	// torn tail).
	var keep []uint64
	for _, n := range s.segs {
		if n < s.commit.seg {
			os.Remove(s.segPath(n))
			continue
		}
		from := int64(0)
		if n == s.commit.seg {
			from = s.commit.off
		}
		count, size, err := s.scan(n, from)
		if err != nil {
			return nil, err
		}
		s.counts[n], s.sizes[n] = count, size
		s.pending += count
		keep = append(keep, n)
	}
	s.segs = keep
	if len(s.segs) == 0 {
		s.segs = []uint64{s.commit.seg}
		if s.segs[0] == 0 {
			s.segs[0] = 1
			s.commit = position{seg: 1}
		}
	}
	if s.commit.seg < s.segs[0] {
		s.commit = position{seg: s.segs[0]}
	}
	s.rpos, s.inflight = s.commit, s.commit
	if err := s.openWriter(s.segs[len(s.segs)-1]); err != nil {
		return nil, err
	}
	return s, nil
}

func segNumber(name string) (uint64, bool) {
	if !strings.HasPrefix(name, "seg-") || !strings.HasSuffix(name, ".log") {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "seg-"), ".log"), 10, 64)
	return n, err == nil
}

func (s *spool) segPath(n uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("seg-%012d.log", n))
}

// scan counts the records of segment n from offset from, and truncates it after
// the last whole record.
func (s *spool) scan(n uint64, from int64) (count, size int64, err error) {
	f, err := os.OpenFile(s.segPath(n), os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReaderSize(f, 1<<16)
	off := from
	for {
		_, n, err := readRecord(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.torn++
			}
			break
		}
		off += n
		count++
	}
	if err := f.Truncate(off); err != nil {
		return 0, 0, fmt.Errorf("spool: cut a torn record: %w", err)
	}
	return count, off, nil
}

func readRecord(r *bufio.Reader) (record, int64, error) {
	var hdr [recordHdr]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return record{}, 0, errTorn
		}
		return record{}, 0, err
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n > maxRecord {
		return record{}, 0, errTorn
	}
	buf := make([]byte, recordHdr+n)
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[recordHdr:]); err != nil {
		return record{}, 0, errTorn
	}
	rec, used, err := parseRecord(buf)
	return rec, int64(used), err
}

// errShort: the buffer ends inside a record.
var errShort = errors.New("partial spool record")

// parseRecord reads the record at the start of b without copying: errShort when
// b holds only part of it, errTorn when it is damaged.
func parseRecord(b []byte) (record, int, error) {
	if len(b) < recordHdr {
		return record{}, 0, errShort
	}
	n := binary.LittleEndian.Uint32(b[:4])
	if n > maxRecord {
		return record{}, 0, errTorn
	}
	if len(b) < recordHdr+int(n) {
		return record{}, 0, errShort
	}
	payload := b[recordHdr : recordHdr+int(n)]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(b[4:8]) {
		return record{}, 0, errTorn
	}
	i := bytes.IndexByte(payload, 0)
	if i < 0 {
		return record{}, 0, errTorn
	}
	j := bytes.IndexByte(payload[i+1:], 0)
	if j < 0 {
		return record{}, 0, errTorn
	}
	j += i + 1
	return record{Stream: payload[:i], ID: payload[i+1 : j], Body: payload[j+1:]}, recordHdr + int(n), nil
}

var errTorn = errors.New("torn spool record")

func (s *spool) openWriter(n uint64) error {
	f, err := os.OpenFile(s.segPath(n), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if s.w != nil {
		s.bw.Flush()
		s.w.Close()
	}
	s.w, s.bw, s.wseg = f, bufio.NewWriterSize(f, 1<<16), n
	s.sizes[n] = st.Size()
	if len(s.segs) == 0 || s.segs[len(s.segs)-1] != n {
		s.segs = append(s.segs, n)
	}
	return nil
}

// append writes one document; past the size cap the oldest segment goes first.
func (s *spool) append(stream, id string, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(stream) + len(id) + 2 + len(body)
	// The header, stream and id go out of one reused buffer: the checksum
	// covers them without converting each to a slice of its own.
	h := append(s.head[:0], make([]byte, recordHdr)...)
	h = append(append(append(append(h, stream...), 0), id...), 0)
	binary.LittleEndian.PutUint32(h[:4], uint32(n))
	crc := crc32.Update(crc32.Update(0, crcTable, h[recordHdr:]), crcTable, body)
	binary.LittleEndian.PutUint32(h[4:], crc)
	s.head = h
	if _, err := s.bw.Write(h); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := s.bw.Write(body); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// The record reaches the OS at the next flush: callers flush once per batch
	// of events, not once per document.
	s.sizes[s.wseg] += int64(recordHdr + n)
	s.counts[s.wseg]++
	s.pending++
	if s.sizes[s.wseg] >= segmentSize {
		if err := s.openWriter(s.wseg + 1); err != nil {
			return err
		}
	}
	s.enforceCap()
	return nil
}

// pendingCount is how many records wait to be sent.
func (s *spool) pendingCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// enforceCap drops whole segments, oldest first, while the spool is over its cap;
// never the one being written. Caller holds mu.
func (s *spool) enforceCap() {
	for s.maxBytes > 0 && len(s.segs) > 1 && s.total() > s.maxBytes {
		old := s.segs[0]
		// Records the sender holds (commit..inflight) will still be delivered;
		// what lies past them in this segment is lost.
		var lost int64
		switch {
		case s.inflight.seg > old:
		case s.inflight.seg == old:
			lost = s.countFrom(old, s.inflight.off)
		default:
			lost = s.counts[old]
		}
		s.dropped += lost
		s.pending -= lost
		os.Remove(s.segPath(old))
		delete(s.sizes, old)
		delete(s.counts, old)
		s.segs = s.segs[1:]
		s.commit = position{seg: s.segs[0]}
	}
}

func (s *spool) countFrom(n uint64, off int64) int64 {
	f, err := os.Open(s.segPath(n))
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0
	}
	r := bufio.NewReader(f)
	var c int64
	for {
		if _, _, err := readRecord(r); err != nil {
			return c
		}
		c++
	}
}

func (s *spool) total() int64 {
	var t int64
	for _, n := range s.segs {
		t += s.sizes[n]
	}
	return t
}

// flush hands buffered records to the OS (readers see them); sync also makes
// them durable.
func (s *spool) flush(sync bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if sync {
		// Data, and the size that reaches it: not the times fsync would also journal.
		return unix.Fdatasync(int(s.w.Fd()))
	}
	return nil
}

// readChunk is how much next reads at a time.
const readChunk = 1 << 20

// next reads up to max records (or maxBytes) after the last read position, a
// chunk at a time, into a buffer it reuses: the records point into it until the
// next call. Only the sender calls it.
func (s *spool) next(maxRecs int, maxBytes int) ([]record, error) {
	s.flush(false)
	s.rbuf = s.rbuf[:0]
	out := s.batch[:0]
	size := 0
	want := readChunk
	for len(out) < maxRecs && size < maxBytes {
		s.mu.Lock()
		if s.rpos.seg < s.commit.seg { // the cap dropped what we were reading
			s.rpos = s.commit
			s.closeReader()
		}
		last := s.segs[len(s.segs)-1]
		s.mu.Unlock()
		if s.rd == nil {
			f, err := os.Open(s.segPath(s.rpos.seg))
			if err != nil {
				s.batch = out
				return out, fmt.Errorf("spool: %w", err)
			}
			s.rd = f
		}
		// Read what follows the read position onto the buffer's free end; records
		// already returned keep pointing at the old array if it grows.
		from := len(s.rbuf)
		s.rbuf = slices.Grow(s.rbuf, want)[:from+want]
		got, err := s.rd.ReadAt(s.rbuf[from:], s.rpos.off)
		if err != nil && !errors.Is(err, io.EOF) {
			s.rbuf = s.rbuf[:from]
			s.batch = out
			return out, fmt.Errorf("spool: %w", err)
		}
		s.rbuf = s.rbuf[:from+got]
		chunk, short := s.rbuf[from:], got < want
		for len(out) < maxRecs && size < maxBytes {
			rec, n, perr := parseRecord(chunk)
			if perr != nil {
				if errors.Is(perr, errShort) && !short {
					// A record past what was read: read again from it, enough to hold it.
					if len(chunk) >= recordHdr {
						want = max(readChunk, recordHdr+int(binary.LittleEndian.Uint32(chunk[:4])))
					}
					break
				}
				// The end of what is written (or damage a finished segment ends with).
				if s.rpos.seg < last {
					s.closeReader()
					s.rpos = position{seg: s.rpos.seg + 1}
					break
				}
				s.batch = out
				return out, nil
			}
			chunk = chunk[n:]
			s.rpos.off += int64(n)
			rec.seg, rec.end = s.rpos.seg, s.rpos.off
			s.mu.Lock()
			s.inflight = s.rpos
			s.mu.Unlock()
			out = append(out, rec)
			size += len(rec.Body)
		}
	}
	s.batch = out
	return out, nil
}

func (s *spool) closeReader() {
	if s.rd != nil {
		s.rd.Close()
		s.rd = nil
	}
}

// ack commits through the end of rec (everything before it was answered), and
// removes segments wholly behind the commit point.
func (s *spool) ack(last record, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last.seg < s.commit.seg {
		// The cap dropped the segment under this batch, which it did not count
		// as lost: the batch was delivered.
		s.pending = max(0, s.pending-n)
		return nil
	}
	s.commit = position{seg: last.seg, off: last.end}
	s.pending -= n
	if s.pending < 0 {
		s.pending = 0
	}
	for len(s.segs) > 1 && s.segs[0] < s.commit.seg {
		os.Remove(s.segPath(s.segs[0]))
		delete(s.sizes, s.segs[0])
		delete(s.counts, s.segs[0])
		s.segs = s.segs[1:]
	}
	return s.writeCursor()
}

// writeCursor overwrites the cursor file in place, one small write at offset 0
// of a file kept open: the commit runs once per batch, and a write-then-rename
// costs several file system operations each time. The record carries its own
// checksum; a damaged one reads as "from the start", which replays documents
// Elasticsearch already has (counted as duplicates), never loses any.
func (s *spool) writeCursor() error {
	if s.cur == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, "cursor"), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("spool cursor: %w", err)
		}
		s.cur = f
	}
	var rec [cursorSize]byte
	binary.LittleEndian.PutUint64(rec[0:], s.commit.seg)
	binary.LittleEndian.PutUint64(rec[8:], uint64(s.commit.off))
	binary.LittleEndian.PutUint32(rec[16:], crc32.Checksum(rec[:16], crcTable))
	if _, err := s.cur.WriteAt(rec[:], 0); err != nil {
		return fmt.Errorf("spool cursor: %w", err)
	}
	return nil
}

// cursorSize: segment, offset, checksum of both.
const cursorSize = 20

func (s *spool) readCursor() position {
	data, err := os.ReadFile(filepath.Join(s.dir, "cursor"))
	if err != nil || len(data) < cursorSize {
		return position{}
	}
	if crc32.Checksum(data[:16], crcTable) != binary.LittleEndian.Uint32(data[16:20]) {
		return position{}
	}
	return position{seg: binary.LittleEndian.Uint64(data[0:]), off: int64(binary.LittleEndian.Uint64(data[8:]))}
}

// stats reports spooled bytes, unacknowledged records, and losses.
func (s *spool) stats() (bytes, pending, dropped, torn int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total(), s.pending, s.dropped, s.torn
}

func (s *spool) close() error {
	s.closeReader()
	s.mu.Lock()
	defer s.mu.Unlock()
	// The first failure is the one to report; the rest still run, so the
	// files are closed whatever happened.
	err := s.bw.Flush()
	if e := s.w.Sync(); err == nil {
		err = e
	}
	if s.cur != nil {
		s.cur.Close()
	}
	if e := s.w.Close(); err == nil {
		err = e
	}
	return err
}
