package policy

import (
	"errors"
	"strings"
	"testing"
)

// TestYAMLSyntaxErrorPositions checks where each kind of YAML syntax error is
// placed: yaml.v3 gives a line only (and for structure errors one less than
// the line), so locateYAMLError finds the line and column; see yamlpos.go.
func TestYAMLSyntaxErrorPositions(t *testing.T) {
	cases := []struct {
		name, src string
		want      string // the whole diagnostic up to and including this prefix of its message
	}{
		// Tabs.
		{"tab indentation", "file:\n\tselectors: []\n",
			"p.yaml:2:1: invalid YAML: found a tab character that cannot start any token: indent with spaces"},
		{"tab after spaces", "file:\n  selectors:\n  \t- name: s\n",
			"p.yaml:3:3: invalid YAML: found a tab character that cannot start any token"},
		{"tab on the first line", "\tfile: {}\n",
			"p.yaml:1:1: invalid YAML: found a tab character that cannot start any token"},
		{"tab in a block scalar", "file:\n  selectors:\n    - name: |\n\t  s\n",
			"p.yaml:4:1: invalid YAML: found a tab character where an indentation space is expected: indent with spaces"},
		// Quotes.
		{"unclosed double quote", "file:\n  selectors:\n    - name: \"s\n      operation: [createFile]\n",
			"p.yaml:3:13: invalid YAML: found unexpected end of stream: the quoted string that starts here is not closed"},
		{"unclosed single quote on line 1", "version: '1\nfile: {}\n",
			"p.yaml:1:10: invalid YAML: found unexpected end of stream: the quoted string that starts here is not closed"},
		{"apostrophe in a plain value is not a quote", "file:\n  selectors:\n    - name: it's\n      targetFilePath: \"/tmp\n",
			"p.yaml:4:23: invalid YAML: found unexpected end of stream"},
		// \t is a valid escape (a tab); \d is not.
		{"bad escape", "file:\n  selectors:\n    - name: s\n      targetFilePath: [\"C:\\temp\", \"C:\\data\"]\n",
			"p.yaml:4:38: invalid YAML: found unknown escape character in a double-quoted string: escape a backslash as \\\\, or use single quotes"},
		// Flow collections.
		{"unclosed bracket", "file:\n  selectors:\n    - name: s\n      operation: [createFile\n  responses: []\n",
			"p.yaml:4:18: invalid YAML: did not find expected ',' or ']': the list opened here is not closed, or its items are not separated by commas"},
		{"unclosed bracket on line 1", "version: [1\nfile: {}\n",
			"p.yaml:1:10: invalid YAML: did not find expected ',' or ']'"},
		{"wrong closing bracket", "file:\n  selectors:\n    - {name: s, operation: [createFile}\n",
			"p.yaml:3:28: invalid YAML: did not find expected ',' or ']'"},
		{"unclosed brace", "file:\n  selectors:\n    - {name: s, operation: [createFile]\n  responses: []\n",
			"p.yaml:3:7: invalid YAML: did not find expected ',' or '}': the mapping opened here is not closed"},
		// Mappings and lists.
		{"mapping value on a key's line", "file:\n  selectors:\n    - name: s: t\n",
			"p.yaml:3:14: invalid YAML: mapping values are not allowed in this context"},
		{"plain value continued with a colon", "file:\n  selectors:\n    - name: s\n      operation: [createFile]\n      targetFilePath: /a\n        b: c\n",
			"p.yaml:6:10: invalid YAML: mapping values are not allowed in this context"},
		{"key without a colon", "file:\n  selectors: []\nresponses\n",
			"p.yaml:3:1: invalid YAML: could not find expected ':' after this key"},
		{"key less indented than its mapping", "file:\n  selectors:\n    - name: s\n      operation: [createFile]\n   responses: []\n",
			"p.yaml:2:3: invalid YAML: did not find expected key in the mapping that starts here: an entry below it is not in line with its keys (column 3)"},
		{"list item less indented", "file:\n  selectors:\n    - name: s\n   - name: t\n",
			"p.yaml:2:3: invalid YAML: did not find expected key in the mapping that starts here"}, // the - at column 4 ends the list at column 5 and is not a key of selectors' mapping
		{"mapping key among list items", "file:\n  selectors:\n    - name: s\n    name: t\n",
			"p.yaml:3:5: invalid YAML: did not find expected '-' indicator in the list that starts here: an entry below it is not in line with its items' '-' (column 5)"},
		{"list after a top-level mapping", "file: {}\n- process\n",
			"p.yaml:2:1: invalid YAML: did not find expected key: an entry on this line is not in line with the entries of the mapping it is in"},
		{"list entry as a key's value on its line", "file:\n  selectors: - name: s\n",
			"p.yaml:2:14: invalid YAML: block sequence entries are not allowed in this context"},
		// Aliases and the end of the document.
		{"unknown alias", "file:\n  selectors:\n    - name: s\n      operation: *ops\n",
			"p.yaml:4:18: invalid YAML: unknown anchor 'ops' referenced: an alias *ops needs an anchor &ops before it"},
		{"reserved character", "file:\n  selectors:\n    - name: @s\n",
			"p.yaml:3:13: invalid YAML: found character '@' that cannot start any token: quote a value that starts with it"},
		{"document ends inside a list", "file:\n  selectors: [a,",
			"p.yaml:2:17: invalid YAML: did not find expected node content at the end of the document"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Parse("p.yaml", []byte(c.src))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			if got := errs[0].String(); !strings.HasPrefix(got, c.want) {
				t.Errorf("got  %s\nwant %s...", got, c.want)
			}
			if !positionPrefix.MatchString(errs[0].String()) {
				t.Errorf("%q does not start FILE:LINE:COL: ", errs[0].String())
			}
		})
	}
}
