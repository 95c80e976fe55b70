package output

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The spool is a write-ahead log of documents not yet acknowledged by
// Elasticsearch: every published document is appended before it is sent, so a
// crash (even SIGKILL) loses nothing that Publish accepted; the sender reads it
// back in order and commits a cursor once Elasticsearch has answered.
//
// Files, under dir: seg-<n>.log segments of records
//
//	[length uint32][crc32c of payload uint32][payload: stream \x00 id \x00 body]
//
// and "cursor", the position (segment, offset) of the first unacknowledged
// record, replaced atomically. A torn record at the tail (a crash mid-write) fails
// its length or checksum and is cut off when the spool reopens.

const (
	segmentSize = 16 << 20 // rotate segments at this size
	recordHdr   = 8
	maxRecord   = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one spooled document.
type record struct {
	Stream, ID string
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
	dropped int64 // records lost to the size cap
	torn    int64 // torn records cut off at open
	pending int64 // records written and not committed

	rd       *os.File // reader state: only the sender goroutine reads
	rdr      *bufio.Reader
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
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return record{}, 0, errTorn
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
		return record{}, 0, errTorn
	}
	parts := strings.SplitN(string(payload[:min(len(payload), 4096)]), "\x00", 3)
	if len(parts) < 3 {
		return record{}, 0, errTorn
	}
	head := len(parts[0]) + len(parts[1]) + 2
	return record{Stream: parts[0], ID: parts[1], Body: payload[head:]}, int64(recordHdr + n), nil
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
	var hdr [recordHdr]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(n))
	crc := crc32.Update(0, crcTable, []byte(stream))
	crc = crc32.Update(crc, crcTable, []byte{0})
	crc = crc32.Update(crc, crcTable, []byte(id))
	crc = crc32.Update(crc, crcTable, []byte{0})
	crc = crc32.Update(crc, crcTable, body)
	binary.LittleEndian.PutUint32(hdr[4:], crc)
	s.bw.Write(hdr[:])
	s.bw.WriteString(stream)
	s.bw.WriteByte(0)
	s.bw.WriteString(id)
	s.bw.WriteByte(0)
	s.bw.Write(body)
	// Hand the record to the OS now: once Publish returns, a crash of this
	// process (SIGKILL, OOM kill) cannot lose it; only the kernel going down
	// before the next sync can. One write per document is cheap next to
	// building it.
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
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
	f.Seek(off, io.SeekStart)
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
		return s.w.Sync()
	}
	return nil
}

// next reads up to max records (or maxBytes) after the last read position. Only
// the sender calls it.
func (s *spool) next(max int, maxBytes int) ([]record, error) {
	s.flush(false)
	var out []record
	size := 0
	for len(out) < max && size < maxBytes {
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
				return out, fmt.Errorf("spool: %w", err)
			}
			f.Seek(s.rpos.off, io.SeekStart)
			s.rd, s.rdr = f, bufio.NewReaderSize(f, 1<<16)
		}
		rec, n, err := readRecord(s.rdr)
		if err == nil {
			s.mu.Lock()
			s.inflight = position{seg: s.rpos.seg, off: s.rpos.off + n}
			s.mu.Unlock()
		}
		if err != nil {
			if s.rpos.seg < last {
				// A finished segment: move to the next one.
				s.closeReader()
				s.rpos = position{seg: s.rpos.seg + 1}
				continue
			}
			// The tail of the segment being written: nothing more yet. Reopen next
			// time, from the last whole record.
			s.closeReader()
			break
		}
		s.rpos.off += n
		rec.seg, rec.end = s.rpos.seg, s.rpos.off
		out = append(out, rec)
		size += len(rec.Body)
	}
	return out, nil
}

func (s *spool) closeReader() {
	if s.rd != nil {
		s.rd.Close()
		s.rd, s.rdr = nil, nil
	}
}

// rewind makes the next read start again at the commit point (a batch failed).
func (s *spool) rewind() {
	s.closeReader()
	s.mu.Lock()
	s.rpos, s.inflight = s.commit, s.commit
	s.mu.Unlock()
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

func (s *spool) writeCursor() error {
	tmp := filepath.Join(s.dir, "cursor.tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", s.commit.seg, s.commit.off), 0o600); err != nil {
		return fmt.Errorf("spool cursor: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.dir, "cursor"))
}

func (s *spool) readCursor() position {
	data, err := os.ReadFile(filepath.Join(s.dir, "cursor"))
	if err != nil {
		return position{}
	}
	var p position
	fmt.Sscanf(string(data), "%d %d", &p.seg, &p.off)
	return p
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
	s.bw.Flush()
	s.w.Sync()
	return s.w.Close()
}
