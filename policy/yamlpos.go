package policy

import (
	"regexp"
	"strconv"
	"strings"
)

// Locating YAML syntax errors.
//
// gopkg.in/yaml.v3 reports a syntax error as text only, "yaml: line N: problem",
// and N is not always the line of the problem:
//
//   - the line comes from the error's context mark (where the construct being
//     parsed starts: the opening quote of an unclosed string, the [ of an
//     unclosed list) when that is not on the first line, else from the problem
//     mark (where parsing failed); for an error with both on the first line
//     there is no "line N:" at all;
//   - for scanner errors (bad characters, quotes, tabs, indicators) N counts from
//     1; for parser errors (the structure: lists, mappings, flow collections) N
//     is the mark's 0-based line, one less than the line in the file;
//   - no column is given, and errors raised while composing the tree (an unknown
//     alias) have no line either.
//
// The marks themselves are not exported, and switching to a parser that
// reports them (github.com/goccy/go-yaml) would replace the yaml.Node tree that
// all of parse.go and compile.go walk, and accept and reject a different set of
// documents. So locateYAMLError knows, for each of yaml.v3's messages, which
// mark its line is from and which character that mark is at (both as in
// yaml.v3's scannerc.go and parserc.go), corrects the line, and finds the
// column by reading the source: the offending character (a tab, an @ or a
// second ':' on the line), or the start of the construct the message is about
// (the unclosed quote or bracket, the collection that an entry does not fit).
// What it finds is checked against the line yaml.v3 gave; when nothing on that
// line fits the message, the column is that of the line's first non-blank
// character, the most yaml.v3's report supports.

var (
	yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlAnchor  = regexp.MustCompile(`^(?:unknown anchor|anchor) '([^']*)' (?:referenced|value contains itself)$`)
)

// yamlParserErrors are the problems yaml.v3's parser (not its scanner) raises:
// their line is 0-based.
var yamlParserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// yamlSource is a document's text as yaml.v3 counts positions: lines from 1,
// columns in characters from 1 (a tab is one).
type yamlSource struct {
	lines [][]rune
	// code[l][c] is false for the characters of quoted scalars and comments,
	// where indicators are text.
	code   [][]bool
	quotes []quotedScalar
}

type quotedScalar struct {
	line, col int // the opening quote
	closed    bool
	// badLine, badCol: the backslash of the first escape yaml.v3 rejects in a
	// double-quoted scalar, or 0.
	badLine, badCol int
}

// validEscapes are the characters yaml.v3 accepts after a backslash in a
// double-quoted scalar; x, u and U take 2, 4 and 8 hex digits.
const validEscapes = "0abt\tnvfre \"/\\N_LP"

func newYAMLSource(data []byte) *yamlSource {
	s := &yamlSource{}
	for _, l := range strings.Split(string(data), "\n") {
		s.lines = append(s.lines, []rune(strings.TrimSuffix(l, "\r")))
	}
	s.code = make([][]bool, len(s.lines))
	var q *quotedScalar
	var quote rune
	for li, line := range s.lines {
		s.code[li] = make([]bool, len(line))
		for ci := 0; ci < len(line); ci++ {
			r := line[ci]
			if q != nil { // inside a quoted scalar
				switch {
				case quote == '\'' && r == '\'' && ci+1 < len(line) && line[ci+1] == '\'':
					ci++
				case r == quote:
					q.closed = true
					s.quotes = append(s.quotes, *q)
					q = nil
				case quote == '"' && r == '\\':
					if ci+1 == len(line) {
						break // an escaped line break
					}
					n, ok := 0, strings.ContainsRune(validEscapes, line[ci+1])
					switch line[ci+1] {
					case 'x':
						n, ok = 2, true
					case 'u':
						n, ok = 4, true
					case 'U':
						n, ok = 8, true
					}
					for k := 0; ok && k < n; k++ {
						ok = ci+2+k < len(line) && strings.ContainsRune("0123456789abcdefABCDEF", line[ci+2+k])
					}
					if !ok && q.badLine == 0 {
						q.badLine, q.badCol = li+1, ci+1
					}
					ci++
				}
				continue
			}
			if r == '#' && (ci == 0 || line[ci-1] == ' ' || line[ci-1] == '\t') {
				break // a comment, to the end of the line
			}
			if (r == '\'' || r == '"') && tokenStart(line, ci) {
				q, quote = &quotedScalar{line: li + 1, col: ci + 1}, r
				continue
			}
			s.code[li][ci] = true
		}
	}
	if q != nil {
		s.quotes = append(s.quotes, *q)
	}
	return s
}

// tokenStart tells whether a token can start at line[i]: at the start of the
// line's content, or after a blank, a flow indicator or an indicator that ends
// with a blank ("- ", ": ", "? ").
func tokenStart(line []rune, i int) bool {
	j := i - 1
	for j >= 0 && (line[j] == ' ' || line[j] == '\t') {
		j--
	}
	if j < 0 {
		return true
	}
	if strings.ContainsRune("[{,", line[j]) {
		return true
	}
	return j < i-1 && strings.ContainsRune("-:?", line[j]) && (j == 0 || line[j-1] == ' ' || line[j-1] == '\t' || strings.ContainsRune("[{,", line[j-1]) || line[j] == ':')
}

func (s *yamlSource) line(l int) []rune {
	if l < 1 || l > len(s.lines) {
		return nil
	}
	return s.lines[l-1]
}

func (s *yamlSource) isCode(l, c int) bool {
	return l >= 1 && l <= len(s.code) && c >= 1 && c <= len(s.code[l-1]) && s.code[l-1][c-1]
}

// firstNonBlank is the column of line l's first character that is not a space
// or tab, or 1.
func (s *yamlSource) firstNonBlank(l int) int {
	for i, r := range s.line(l) {
		if r != ' ' && r != '\t' {
			return i + 1
		}
	}
	return 1
}

// indicators lists the columns of line l where c is an indicator: outside
// quotes and comments, and followed by a blank or the end of the line.
func (s *yamlSource) indicators(l int, c rune) []int {
	var cols []int
	line := s.line(l)
	for i, r := range line {
		if r == c && s.isCode(l, i+1) && (i+1 == len(line) || line[i+1] == ' ' || line[i+1] == '\t') {
			cols = append(cols, i+1)
		}
	}
	return cols
}

// locateYAMLError turns one of yaml.v3's error texts into a position in data and
// a message. See the comment at the top of this file.
func locateYAMLError(data []byte, text string) (line, col int, msg string) {
	s := newYAMLSource(data)
	msg = strings.TrimPrefix(text, "yaml: ")
	line = 1 // no line given: both marks are on the first line, or none is known
	if n, ok := yamlLineOf(text); ok {
		line = n
		msg = yamlLineErr.FindStringSubmatch(text)[2]
		if yamlParserErrors[msg] {
			line++ // a 0-based line
		}
	}
	// A mark at the end of the stream can be past the last line.
	pastEnd := line > len(s.lines)
	line = max(1, min(line, len(s.lines)))

	at := func(l, c int, m string) (int, int, string) { return l, c, m }
	switch {
	case msg == "found character that cannot start any token":
		// The mark is the character: a tab where a token would start (in
		// indentation, or after "key:" or "- "), or one of @ ` % which YAML
		// reserves.
		text := s.line(line)
		for i, r := range text {
			if !s.isCode(line, i+1) {
				continue
			}
			if r == '\t' && (i == 0 || strings.ContainsRune(" \t:-", text[i-1])) {
				return at(line, i+1, "invalid YAML: found a tab character that cannot start any token: indent with spaces, and separate a value from its key or '-' with spaces")
			}
			if strings.ContainsRune("@`%", r) && tokenStart(text, i) {
				return at(line, i+1, "invalid YAML: found character "+strconv.QuoteRune(r)+" that cannot start any token: quote a value that starts with it")
			}
		}
	case msg == "found a tab character where an indentation space is expected" || msg == "found a tab character that violates indentation":
		// The line is the scalar's start (its context) when that is not
		// the first line, so the tab is on it or below.
		for l := line; l <= len(s.lines); l++ {
			for i, r := range s.line(l) {
				if r == '\t' {
					return at(l, i+1, "invalid YAML: "+msg+": indent with spaces")
				}
				if r != ' ' {
					break
				}
			}
		}
	case msg == "found unexpected end of stream" || msg == "found unexpected document indicator":
		// Raised scanning a quoted scalar; the context is its opening quote.
		for _, q := range s.quotes {
			if !q.closed && (q.line == line || q.line == 1) {
				return at(q.line, q.col, "invalid YAML: "+msg+": the quoted string that starts here is not closed")
			}
		}
	case msg == "found unknown escape character" || msg == "did not find expected hexdecimal number" || msg == "found invalid Unicode character escape code":
		// The context is the scalar's opening quote; point at the escape.
		for _, q := range s.quotes {
			if q.badLine != 0 && (q.line == line || q.line == 1) {
				return at(q.badLine, q.badCol, "invalid YAML: "+msg+" in a double-quoted string: escape a backslash as \\\\, or use single quotes")
			}
		}
	case msg == "could not find expected ':'":
		// The context is the start of a would-be key: this line's content,
		// after any "- ".
		text, c := s.line(line), s.firstNonBlank(line)
		for c+1 <= len(text) && text[c-1] == '-' && (text[c] == ' ' || text[c] == '\t') {
			c++
			for c <= len(text) && (text[c-1] == ' ' || text[c-1] == '\t') {
				c++
			}
		}
		return at(line, c, "invalid YAML: could not find expected ':' after this key (a plain value cannot go on over lines at a key's indentation)")
	case msg == "mapping values are not allowed in this context":
		// The mark is the ':' that is not allowed: on a line holding a
		// key, the second; else (a plain value continued on a line of its
		// own) the only one.
		if cols := s.indicators(line, ':'); len(cols) > 0 {
			c := cols[0]
			if len(cols) > 1 {
				c = cols[1]
			}
			return at(line, c, "invalid YAML: mapping values are not allowed in this context: a key's value cannot be a mapping on the same line, nor a plain value go on to a line with a ':' (quote it, or put a nested mapping on lines of its own)")
		}
	case msg == "block sequence entries are not allowed in this context":
		// The mark is the "- ": one after "key: " if there is one.
		if cols := s.indicators(line, '-'); len(cols) > 0 {
			return at(line, cols[len(cols)-1], "invalid YAML: block sequence entries are not allowed in this context: start a list on the line after its key, or write it [a, b]")
		}
	case msg == "did not find expected ',' or ']'" || msg == "did not find expected ',' or '}'":
		// The context is the opening bracket of the flow collection.
		open, what := '[', "list"
		if strings.HasSuffix(msg, "'}'") {
			open, what = '{', "mapping"
		}
		if l, c, ok := s.unclosed(open); ok && (l == line || l == 1) {
			return at(l, c, "invalid YAML: "+msg+": the "+what+" opened here is not closed, or its items are not separated by commas")
		}
		text := s.line(line)
		for i, r := range text {
			if r == open && s.isCode(line, i+1) {
				return at(line, i+1, "invalid YAML: "+msg+": the "+what+" opened here is not closed, or its items are not separated by commas")
			}
		}
	case msg == "did not find expected key" || msg == "did not find expected '-' indicator":
		// The context is the collection's first entry, the problem the
		// entry that does not fit it; yaml.v3 gives the context's line
		// unless that is the first. A line that starts a nested block is
		// the context.
		c := s.firstNonBlank(line)
		what, entries := "mapping", "its keys"
		if msg == "did not find expected '-' indicator" {
			what, entries = "list", "its items' '-'"
		} else {
			// A mapping in a list item starts after the "- ".
			text := s.line(line)
			for c < len(text) && text[c-1] == '-' && text[c] == ' ' {
				c++
				for c <= len(text) && text[c-1] == ' ' {
					c++
				}
			}
		}
		if line > 1 && s.startsBlock(line) {
			return at(line, c, "invalid YAML: "+msg+" in the "+what+" that starts here: an entry below it is not in line with "+entries+" (column "+strconv.Itoa(c)+")")
		}
		if _, given := yamlLineOf(text); given {
			return at(line, s.firstNonBlank(line), "invalid YAML: "+msg+": an entry on this line is not in line with the entries of the "+what+" it is in")
		}
	default:
		if m := yamlAnchor.FindStringSubmatch(msg); m != nil {
			// Raised composing the tree, with no line; find the alias
			// (or the anchor).
			sigil := "*"
			if strings.HasPrefix(msg, "anchor") {
				sigil = "&"
			}
			for l := 1; l <= len(s.lines); l++ {
				text := string(s.line(l))
				for i := strings.Index(text, sigil+m[1]); i >= 0; {
					c := len([]rune(text[:i])) + 1
					end := i + len(sigil+m[1])
					if s.isCode(l, c) && (end == len(text) || strings.ContainsRune(" \t,]}", rune(text[end]))) {
						if sigil == "*" {
							return at(l, c, "invalid YAML: unknown anchor '"+m[1]+"' referenced: an alias *"+m[1]+" needs an anchor &"+m[1]+" before it")
						}
						return at(l, c, "invalid YAML: "+msg)
					}
					next := strings.Index(text[i+1:], sigil+m[1])
					if next < 0 {
						break
					}
					i += 1 + next
				}
			}
		}
	}
	if pastEnd {
		return line, len(s.line(line)) + 1, "invalid YAML: " + msg + " at the end of the document"
	}
	return line, s.firstNonBlank(line), "invalid YAML: " + msg
}

// yamlLineOf is the line an error text of yaml.v3's gives, if it gives one.
func yamlLineOf(text string) (int, bool) {
	m := yamlLineErr.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// unclosed finds the flow collection opened with open ('[' or '{') that is
// never closed: the innermost one open where a closing bracket does not match,
// or at the end of the document.
func (s *yamlSource) unclosed(open rune) (line, col int, ok bool) {
	type mark struct {
		r         rune
		line, col int
	}
	var stack []mark
	find := func() (int, int, bool) {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].r == open {
				return stack[i].line, stack[i].col, true
			}
		}
		return 0, 0, false
	}
	for li, text := range s.lines {
		for ci, r := range text {
			if !s.code[li][ci] {
				continue
			}
			switch r {
			case '[', '{':
				stack = append(stack, mark{r, li + 1, ci + 1})
			case ']', '}':
				want := '['
				if r == '}' {
					want = '{'
				}
				if len(stack) == 0 || stack[len(stack)-1].r != want {
					return find()
				}
				stack = stack[:len(stack)-1]
			}
		}
	}
	return find()
}

// startsBlock tells whether line l starts a nested block collection: the last
// line with content before it is indented less, or it is a list item whose
// mapping starts after "- ".
func (s *yamlSource) startsBlock(l int) bool {
	ind := s.firstNonBlank(l)
	for p := l - 1; p >= 1; p-- {
		c := s.firstNonBlank(p)
		text := s.line(p)
		if c > len(text) || text[c-1] == '#' {
			continue // blank or a comment
		}
		return c < ind
	}
	return true
}
