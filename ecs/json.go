package ecs

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// jw appends JSON to a buffer. It is hand-written rather than encoding/json
// because documents are built on the event path: a map per document costs
// hundreds of allocations, this costs none beyond the buffer's growth. Commas
// follow from the previous byte, so callers write keys and values in order and
// never track them.
type jw struct{ b []byte }

func (w *jw) sep() {
	if n := len(w.b); n > 0 {
		if c := w.b[n-1]; c != '{' && c != '[' && c != ':' {
			w.b = append(w.b, ',')
		}
	}
}

func (w *jw) open()  { w.sep(); w.b = append(w.b, '{') }
func (w *jw) close() { w.b = append(w.b, '}') }

// obj writes a key and opens its object.
func (w *jw) obj(k string) { w.key(k); w.b = append(w.b, '{') }

// arr writes a key and opens its array.
func (w *jw) arr(k string) { w.key(k); w.b = append(w.b, '[') }

func (w *jw) end() { w.b = append(w.b, ']') }

// key writes a key that needs no escaping (all of ours).
func (w *jw) key(k string) {
	w.sep()
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *jw) str(k, v string) { w.key(k); w.b = appendString(w.b, v) }

// strIf writes a string field only when it is not empty.
func (w *jw) strIf(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *jw) elem(v string) { w.sep(); w.b = appendString(w.b, v) }

func (w *jw) uint(k string, v uint64) { w.key(k); w.b = strconv.AppendUint(w.b, v, 10) }
func (w *jw) int(k string, v int64)   { w.key(k); w.b = strconv.AppendInt(w.b, v, 10) }

// id writes a numeric id as a string, as ECS types user.id and group.id.
func (w *jw) id(k string, v uint32) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = strconv.AppendUint(w.b, uint64(v), 10)
	w.b = append(w.b, '"')
}

func (w *jw) bool(k string, v bool) { w.key(k); w.b = strconv.AppendBool(w.b, v) }

// time writes an ISO-8601 UTC timestamp with nanoseconds.
func (w *jw) time(k string, t time.Time) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = appendTime(w.b, t)
	w.b = append(w.b, '"')
}

// appendTime appends t in UTC as 2006-01-02T15:04:05.000000000Z, what
// AppendFormat writes with that layout, at a fraction of its cost: a document
// carries a time for each process record in it.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mo), 2)
	b = append(b, '-')
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	b = appendDigits(b, s, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond(), 9)
	return append(b, 'Z')
}

// appendDigits appends v zero-padded to width digits (v >= 0).
func appendDigits(b []byte, v, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v > 0 || width > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, buf[i:]...)
}

func (w *jw) strs(k string, vs []string) {
	w.arr(k)
	for _, v := range vs {
		w.elem(v)
	}
	w.end()
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does, except that it leaves <, > and
// & alone (nothing here is embedded in HTML): control characters escaped, and
// invalid UTF-8 (argv and paths are bytes) replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	return append(appendEscaped(b, s), '"')
}

// appendEscaped appends the inside of s's JSON string.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
