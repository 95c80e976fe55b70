package ruletest

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Rule is a detection rule file's name, language and parsed query.
type Rule struct {
	File, Name, Language string
	Index                []string // index patterns the rule reads
	Query                *Query
}

// Reads says whether the rule reads a data stream (its index patterns, with
// * wildcards).
func (r *Rule) Reads(stream string) bool {
	for _, p := range r.Index {
		if wildcard(p, false).MatchString(stream) {
			return true
		}
	}
	return false
}

var (
	nameRe  = regexp.MustCompile(`(?m)^name = "(.*)"$`)
	langRe  = regexp.MustCompile(`(?m)^language = "(.*)"$`)
	queryRe = regexp.MustCompile(`(?s)\nquery = '''\n?(.*?)'''`)
	indexRe = regexp.MustCompile(`(?m)^index = \[(.*)\]$`)
	quoted  = regexp.MustCompile(`"([^"]*)"`)
)

// Load reads a rule's TOML file. Only the keys we need are read, so no TOML
// library: the rule files write them on one line each, and the query as a
// literal multi-line string.
func Load(path string) (*Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Rule{File: path}
	if m := nameRe.FindSubmatch(b); m != nil {
		r.Name = string(m[1])
	}
	if m := langRe.FindSubmatch(b); m != nil {
		r.Language = string(m[1])
	}
	if m := indexRe.FindSubmatch(b); m != nil {
		for _, q := range quoted.FindAllSubmatch(m[1], -1) {
			r.Index = append(r.Index, string(q[1]))
		}
	}
	m := queryRe.FindSubmatch(b)
	if m == nil {
		return nil, fmt.Errorf("%s: no query", path)
	}
	switch r.Language {
	case "eql":
		r.Query, err = ParseEQL(string(m[1]))
	case "kuery":
		r.Query, err = ParseKQL(string(m[1]))
	default:
		err = fmt.Errorf("language %q", r.Language)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// ParseKQL parses KQL's `field:value` terms joined by and, or, not and
// parentheses. Values may be bare words or quoted, with * wildcards.
func ParseKQL(src string) (*Query, error) {
	p := &parser{toks: lex(src)}
	n, err := p.kqlOr()
	if err != nil {
		return nil, err
	}
	if !p.done() {
		return nil, fmt.Errorf("unexpected %q", p.peek())
	}
	return &Query{stages: []stage{{category: "any", cond: n}}}, nil
}

func (p *parser) kqlOr() (node, error) {
	l, err := p.kqlAnd()
	if err != nil {
		return nil, err
	}
	for p.accept("or") {
		r, err := p.kqlAnd()
		if err != nil {
			return nil, err
		}
		l = or{l, r}
	}
	return l, nil
}

func (p *parser) kqlAnd() (node, error) {
	l, err := p.kqlUnary()
	if err != nil {
		return nil, err
	}
	for p.accept("and") {
		r, err := p.kqlUnary()
		if err != nil {
			return nil, err
		}
		l = and{l, r}
	}
	return l, nil
}

func (p *parser) kqlUnary() (node, error) {
	if p.accept("not") {
		n, err := p.kqlUnary()
		return not{n}, err
	}
	if p.accept("(") {
		n, err := p.kqlOr()
		if err != nil {
			return nil, err
		}
		return n, p.expect(")")
	}
	field := p.next()
	if !isField(field) {
		return nil, fmt.Errorf("expected a field, found %q", field)
	}
	if err := p.expect(":"); err != nil {
		return nil, err
	}
	v := p.next()
	if strings.HasPrefix(v, `"`) {
		v = strings.Trim(v, `"`)
	}
	return &cmp{field: field, op: ":", values: []any{v}, res: []*regexp.Regexp{wildcard(v, false)}}, nil
}
