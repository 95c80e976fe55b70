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

// The methods append to a local copy of w.b and store it once: a field
// written back at each append is a store (and, while the GC marks, a write
// barrier) per byte range.

// appendSep appends the comma a value needs after the one before it.
func appendSep(b []byte) []byte {
	if n := len(b); n > 0 {
		if c := b[n-1]; c != '{' && c != '[' && c != ':' {
			b = append(b, ',')
		}
	}
	return b
}

func (w *jw) open()  { w.b = append(appendSep(w.b), '{') }
func (w *jw) close() { w.b = append(w.b, '}') }

// obj writes a key and opens its object.
func (w *jw) obj(k string) { w.b = append(appendKey(w.b, k), '{') }

// arr writes a key and opens its array.
func (w *jw) arr(k string) { w.b = append(appendKey(w.b, k), '[') }

func (w *jw) end() { w.b = append(w.b, ']') }

// key writes a key that needs no escaping (all of ours).
func (w *jw) key(k string) { w.b = appendKey(w.b, k) }

func appendKey(b []byte, k string) []byte {
	b = appendSep(b)
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

func (w *jw) str(k, v string) { w.b = appendString(appendKey(w.b, k), v) }

// lit writes a string field whose value is one of our own identifiers
// (event.kind, a hook point's or an operation's name): nothing to escape,
// so it is copied, not scanned.
func (w *jw) lit(k, v string) {
	b := append(appendKey(w.b, k), '"')
	b = append(b, v...)
	w.b = append(b, '"')
}

// litElem is lit for an array element.
func (w *jw) litElem(v string) {
	b := append(appendSep(w.b), '"')
	b = append(b, v...)
	w.b = append(b, '"')
}

// strIf writes a string field only when it is not empty.
func (w *jw) strIf(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *jw) uint(k string, v uint64) { w.b = strconv.AppendUint(appendKey(w.b, k), v, 10) }
func (w *jw) int(k string, v int64)   { w.b = strconv.AppendInt(appendKey(w.b, k), v, 10) }

// id writes a numeric id as a string, as ECS types user.id and group.id.
func (w *jw) id(k string, v uint32) {
	b := append(appendKey(w.b, k), '"')
	b = strconv.AppendUint(b, uint64(v), 10)
	w.b = append(b, '"')
}

func (w *jw) bool(k string, v bool) {
	b := appendKey(w.b, k)
	if v {
		w.b = append(b, "true"...)
	} else {
		w.b = append(b, "false"...)
	}
}

// time writes an ISO-8601 UTC timestamp with nanoseconds.
func (w *jw) time(k string, t time.Time) {
	b := append(appendKey(w.b, k), '"')
	b = appendTime(b, t)
	w.b = append(b, '"')
}

// appendTime appends t in UTC as 2006-01-02T15:04:05.000000000Z, what
// AppendFormat writes with that layout, at a fraction of its cost: a document
// carries a time for each process record in it.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if y >= 0 && y <= 9999 {
		// Two digits at a time from a table, in one append: a document
		// carries several times, and this was a fifth of its encoding.
		ns := t.Nanosecond()
		hi, lo, n1 := y/100*2, y%100*2, ns/1e8
		n2, n3, n4, n5 := ns/1e6%100*2, ns/1e4%100*2, ns/100%100*2, ns%100*2
		return append(b, pairs[hi], pairs[hi+1], pairs[lo], pairs[lo+1], '-',
			pairs[int(mo)*2], pairs[int(mo)*2+1], '-', pairs[d*2], pairs[d*2+1], 'T',
			pairs[h*2], pairs[h*2+1], ':', pairs[mi*2], pairs[mi*2+1], ':', pairs[s*2], pairs[s*2+1], '.',
			byte('0'+n1), pairs[n2], pairs[n2+1], pairs[n3], pairs[n3+1], pairs[n4], pairs[n4+1], pairs[n5], pairs[n5+1], 'Z')
	}
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

// pairs holds 00 to 99, two bytes each.
const pairs = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" + "30313233343536373839" +
	"40414243444546474849" + "50515253545556575859" + "60616263646566676869" + "70717273747576777879" +
	"80818283848586878889" + "90919293949596979899"

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
	b := append(appendKey(w.b, k), '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	w.b = append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does, except that it leaves <, > and
// & alone (nothing here is embedded in HTML): control characters escaped, and
// invalid UTF-8 (argv and paths are bytes) replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	return append(appendEscaped(b, s), '"')
}

// SWAR constants: a byte of ones and a byte of high bits in each lane.
const (
	lanes1 = 0x0101010101010101
	lanes8 = 0x8080808080808080
)

// plain8 reports whether none of the 8 bytes at s[i:] needs a look: no
// control character, quote, backslash or non-ASCII byte. The tests for a
// byte below n, (x - n*lanes1) &^ x & lanes8, are exact for n <= 128.
func plain8(s string, i int) bool {
	x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
	q := x ^ ('"' * lanes1)   // zero where a quote is
	bs := x ^ ('\\' * lanes1) // zero where a backslash is
	return (x|(x-0x20*lanes1)&^x|(q-lanes1)&^q|(bs-lanes1)&^bs)&lanes8 == 0
}

// plainByte tells the bytes copied as they are: printable ASCII but for the
// quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendEscaped appends the inside of s's JSON string.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		// Most strings (paths, args, names) need no escape at all: skip
		// them eight bytes at a time.
		for i+8 <= len(s) && plain8(s, i) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
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
