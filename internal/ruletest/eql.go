// Package ruletest evaluates the subset of EQL and KQL that Elastic's
// detection rules for Defend for Containers use, against decoded documents, so
// tests can show mechanically that our documents trigger those rules. It is
// test support, not a query engine: it knows event queries (`process where
// …`), two-or-more-stage sequences joined `by` fields `with maxspan`, the
// comparison operators ==, !=, :, in, in~, like, like~ with wildcards, and/or/not,
// and KQL's `field:value` with and/or/not. Anything else is a parse error, so
// a rule it cannot read is never counted as matched.
package ruletest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Doc is a decoded document (JSON objects as map[string]any).
type Doc = map[string]any

// Query is a parsed rule query.
type Query struct {
	stages  []stage // one for an event query
	by      []string
	maxspan time.Duration
}

type stage struct {
	category string // process, file, any
	cond     node
	by       []string // the stage's own join fields, after the sequence's
}

// Match says whether the documents trigger the query: an event query when
// one document matches; a sequence when its stages match in @timestamp
// order, sharing the `by` fields, within maxspan. It returns the matching
// documents.
func (q *Query) Match(docs []Doc) ([]Doc, bool) {
	if len(q.stages) == 1 {
		for _, d := range docs {
			if q.stages[0].matches(d) {
				return []Doc{d}, true
			}
		}
		return nil, false
	}
	sorted := sortByTime(docs)
	for i, first := range sorted {
		if !q.stages[0].matches(first) {
			continue
		}
		key, ok := joinKey(first, append(q.by, q.stages[0].by...))
		if !ok {
			continue
		}
		chain := []Doc{first}
		start := timestamp(first)
		next := 1
		for _, d := range sorted[i+1:] {
			if q.maxspan > 0 && timestamp(d).Sub(start) > q.maxspan {
				break
			}
			if k, ok := joinKey(d, append(q.by, q.stages[next].by...)); !ok || k != key {
				continue
			}
			if q.stages[next].matches(d) {
				chain = append(chain, d)
				next++
				if next == len(q.stages) {
					return chain, true
				}
			}
		}
	}
	return nil, false
}

func (s stage) matches(d Doc) bool {
	if s.category != "any" {
		cats := values(d, "event.category")
		found := false
		for _, c := range cats {
			if c == s.category {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return s.cond.eval(d)
}

func joinKey(d Doc, by []string) (string, bool) {
	var parts []string
	for _, f := range by {
		v := values(d, f)
		if len(v) != 1 {
			return "", false
		}
		parts = append(parts, fmt.Sprint(v[0]))
	}
	return strings.Join(parts, "\x00"), true
}

func timestamp(d Doc) time.Time {
	s, _ := d["@timestamp"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func sortByTime(docs []Doc) []Doc {
	out := append([]Doc(nil), docs...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && timestamp(out[j]).Before(timestamp(out[j-1])); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// values returns a dotted field's values: an array's elements, or the one
// value; none when missing.
func values(d Doc, field string) []any {
	v, ok := lookup(d, strings.Split(field, "."))
	if !ok || v == nil {
		return nil
	}
	if a, ok := v.([]any); ok {
		return a
	}
	return []any{v}
}

// lookup walks a field's dotted parts through nested objects. A key may hold
// dots itself (Kubernetes audit documents keep user.extra's
// "authentication.kubernetes.io/pod-name" as one key), which Elasticsearch
// reads as the same path, so each level tries the shortest key first.
func lookup(v any, parts []string) (any, bool) {
	if len(parts) == 0 {
		return v, true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	for i := 1; i <= len(parts); i++ {
		if next, ok := m[strings.Join(parts[:i], ".")]; ok {
			if r, ok := lookup(next, parts[i:]); ok {
				return r, true
			}
		}
	}
	return nil, false
}

// node is a boolean expression.
type node interface{ eval(Doc) bool }

type and struct{ l, r node }
type or struct{ l, r node }
type not struct{ n node }

func (n and) eval(d Doc) bool { return n.l.eval(d) && n.r.eval(d) }
func (n or) eval(d Doc) bool  { return n.l.eval(d) || n.r.eval(d) }
func (n not) eval(d Doc) bool { return !n.n.eval(d) }

// cmp compares a field with values: true when any of the field's values
// matches any of them (EQL's semantics for array fields).
type cmp struct {
	field  string
	op     string // ==, !=, in, in~, like, like~, :
	values []any
	res    []*regexp.Regexp // for like, like~ and : with wildcards
}

func (c *cmp) eval(d Doc) bool {
	vs := values(d, c.field)
	if (c.op == "==" || c.op == "!=") && c.values[0] == nil {
		return (len(vs) == 0) == (c.op == "==")
	}
	if c.op == "!=" {
		if len(vs) == 0 {
			return false
		}
		for _, v := range vs {
			if equal(v, c.values[0], false) {
				return false
			}
		}
		return true
	}
	for _, v := range vs {
		for i, want := range c.values {
			switch c.op {
			case "==", "in":
				if equal(v, want, false) {
					return true
				}
			case "in~":
				if equal(v, want, true) {
					return true
				}
			case "like", "like~", ":":
				s, ok := v.(string)
				if !ok {
					if equal(v, want, false) {
						return true
					}
					continue
				}
				if c.res[i].MatchString(s) {
					return true
				}
			}
		}
	}
	return false
}

func equal(v, want any, fold bool) bool {
	switch w := want.(type) {
	case string:
		s, ok := v.(string)
		if !ok {
			return false
		}
		if fold {
			return strings.EqualFold(s, w)
		}
		return s == w
	case float64:
		f, ok := v.(float64)
		return ok && f == w
	case bool:
		b, ok := v.(bool)
		return ok && b == w
	}
	return false
}

// wildcard compiles an EQL/KQL wildcard pattern (* and ?).
func wildcard(p string, fold bool) *regexp.Regexp {
	var b strings.Builder
	if fold {
		b.WriteString("(?i)")
	}
	b.WriteString("^")
	for _, r := range p {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile("(?s)" + b.String())
}

// ParseEQL parses an EQL query of the supported subset.
func ParseEQL(src string) (*Query, error) {
	p := &parser{toks: lex(src)}
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	if !p.done() {
		return nil, fmt.Errorf("unexpected %q", p.peek())
	}
	return q, nil
}

type parser struct {
	toks []string
	pos  int
}

func (p *parser) done() bool   { return p.pos >= len(p.toks) }
func (p *parser) peek() string { return p.at(0) }
func (p *parser) at(i int) string {
	if p.pos+i < len(p.toks) {
		return p.toks[p.pos+i]
	}
	return ""
}
func (p *parser) next() string { t := p.peek(); p.pos++; return t }
func (p *parser) accept(t string) bool {
	if strings.EqualFold(p.peek(), t) {
		p.pos++
		return true
	}
	return false
}
func (p *parser) expect(t string) error {
	if !p.accept(t) {
		return fmt.Errorf("expected %q, found %q", t, p.peek())
	}
	return nil
}

func (p *parser) query() (*Query, error) {
	q := &Query{}
	if !p.accept("sequence") {
		s, err := p.eventQuery()
		if err != nil {
			return nil, err
		}
		q.stages = []stage{s}
		return q, nil
	}
	if p.accept("by") {
		q.by = p.fieldList()
	}
	if p.accept("with") {
		if err := p.expect("maxspan"); err != nil {
			return nil, err
		}
		if err := p.expect("="); err != nil {
			return nil, err
		}
		d, err := parseSpan(p.next())
		if err != nil {
			return nil, err
		}
		q.maxspan = d
	}
	for p.accept("[") {
		s, err := p.eventQuery()
		if err != nil {
			return nil, err
		}
		if err := p.expect("]"); err != nil {
			return nil, err
		}
		if p.accept("by") {
			s.by = p.fieldList()
		}
		q.stages = append(q.stages, s)
	}
	if len(q.stages) < 2 {
		return nil, fmt.Errorf("a sequence needs two stages or more")
	}
	return q, nil
}

func (p *parser) fieldList() []string {
	var fs []string
	for {
		f, _ := fieldName(p.next())
		fs = append(fs, f)
		if !p.accept(",") {
			return fs
		}
	}
}

func parseSpan(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			if v, err := strconv.Atoi(n); err == nil {
				return time.Duration(v) * unit, nil
			}
		}
	}
	return 0, fmt.Errorf("bad maxspan %q", s)
}

func (p *parser) eventQuery() (stage, error) {
	cat := strings.ToLower(p.next())
	switch cat {
	case "process", "file", "any", "network":
	default:
		return stage{}, fmt.Errorf("unknown event category %q", cat)
	}
	if err := p.expect("where"); err != nil {
		return stage{}, err
	}
	n, err := p.or()
	return stage{category: cat, cond: n}, err
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.accept("or") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = or{l, r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.accept("and") {
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = and{l, r}
	}
	return l, nil
}

func (p *parser) unary() (node, error) {
	if p.accept("not") {
		n, err := p.unary()
		return not{n}, err
	}
	if p.accept("(") {
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		return n, p.expect(")")
	}
	return p.comparison()
}

func (p *parser) comparison() (node, error) {
	tok := p.next()
	field, ok := fieldName(tok)
	if !ok {
		return nil, fmt.Errorf("expected a field, found %q", tok)
	}
	negate := p.accept("not")
	op := strings.ToLower(p.next())
	c := &cmp{field: field, op: op}
	switch op {
	case "==", "!=", ":":
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		c.values = []any{v}
	case "in", "in~", "like", "like~":
		vs, err := p.valueList()
		if err != nil {
			return nil, err
		}
		c.values = vs
	default:
		return nil, fmt.Errorf("unsupported operator %q after %s", op, field)
	}
	if op == "like" || op == "like~" || op == ":" {
		for _, v := range c.values {
			s, _ := v.(string)
			c.res = append(c.res, wildcard(s, op != "like"))
		}
	}
	if negate {
		if op != "in" && op != "in~" && op != "like" && op != "like~" {
			return nil, fmt.Errorf("unsupported 'not %s'", op)
		}
		return not{c}, nil
	}
	return c, nil
}

// valueList reads one value or a parenthesized list.
func (p *parser) valueList() ([]any, error) {
	if !p.accept("(") {
		v, err := p.value()
		return []any{v}, err
	}
	var vs []any
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
		if p.accept(")") {
			return vs, nil
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
	}
}

func (p *parser) value() (any, error) {
	t := p.next()
	switch {
	case strings.HasPrefix(t, `"`):
		return strconv.Unquote(t)
	case t == "true" || t == "false":
		return t == "true", nil
	case t == "null":
		return nil, nil
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil {
		return f, nil
	}
	return nil, fmt.Errorf("expected a value, found %q", t)
}

// fieldName reads a field token: a plain name, or one in backticks (names
// with other characters, such as
// `kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name`).
func fieldName(t string) (string, bool) {
	if len(t) >= 2 && t[0] == '`' && t[len(t)-1] == '`' {
		return t[1 : len(t)-1], len(t) > 2
	}
	return t, t != "" && isField(t)
}

func isField(t string) bool {
	for _, r := range t {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '@') {
			return false
		}
	}
	return true
}

// lex splits EQL into tokens, dropping comments.
func lex(src string) []string {
	var toks []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return toks
			}
			i += end + 4
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				toks = append(toks, src[i:]) // unterminated: not a field
				return toks
			}
			toks = append(toks, src[i:i+j+2])
			i += j + 2
		case c == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			toks = append(toks, src[i:min(j+1, len(src))])
			i = j + 1
		case strings.ContainsRune("()[],:", rune(c)):
			toks = append(toks, string(c))
			i++
		case c == '=' || c == '!':
			if i+1 < len(src) && src[i+1] == '=' {
				toks = append(toks, src[i:i+2])
				i += 2
			} else {
				toks = append(toks, string(c))
				i++
			}
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\n\r()[],\"=!:", rune(src[j])) {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		}
	}
	return toks
}
