package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Severity tells an error (the policy is rejected) from a warning (it is accepted,
// but probably not what the author meant).
type Severity uint8

const (
	SeverityError Severity = iota
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// MarshalText makes JSON diagnostics read "error"/"warning".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Origin says what a policy's text is, and so how a diagnostic names a place.
type Origin uint8

const (
	// OriginFile: the text the user wrote (a file, stdin). Diagnostics give
	// FILE:LINE:COL.
	OriginFile Origin = iota
	// OriginConfig: a re-rendering of structured config, as the policy reaches
	// us from the agent (a unit's config, keys sorted). Line and column exist
	// in nothing the user wrote, so diagnostics name the place by its path.
	OriginConfig
)

// Diagnostic is one problem found in a policy, located in its source both by
// position and by path; String chooses by Origin.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file"`
	Line     int      `json:"line"`
	// Line and Column count from 1, columns in characters (a tab is one), as
	// yaml.v3 counts them. Every diagnostic Parse returns has both: YAML syntax
	// errors, for which yaml.v3 reports a line only, are located in the
	// source by locateYAMLError; diagnostics about the document as a whole
	// are at 1:1.
	Column int `json:"column"`
	// Path names the place in the document's structure, as a user finds it in
	// whatever they edited: file.selectors[name=a].targetFilePath[0],
	// process.responses[1].actions, selectors[3] (a selector by its name when
	// it has a usable one, else by index; indexes count from 0). Empty for the
	// document as a whole.
	Path string `json:"path"`
	// Origin is how the policy was given; it decides how String locates.
	Origin Origin `json:"-"`
	// Type is "file", "process" or "network" when the problem is inside a section.
	Type string `json:"type,omitempty"`
	// Selector names the selector (or "#N" when it has no usable name).
	Selector string `json:"selector,omitempty"`
	// Response is the 1-based index of the response within its section.
	Response int    `json:"response,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
}

// String renders FILE:LINE:COL: [warning: ]<type> selector "<name>": <field>: <message>
// for a file, and [NAME: ][warning: ]<path>: <message> for config (NAME is File,
// left out when empty).
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Origin == OriginConfig {
		if d.File != "" {
			b.WriteString(d.File + ": ")
		}
		if d.Severity == SeverityWarning {
			b.WriteString("warning: ")
		}
		if d.Path != "" {
			b.WriteString(d.Path + ": ")
		}
		b.WriteString(d.Message)
		return b.String()
	}
	b.WriteString(d.File)
	fmt.Fprintf(&b, ":%d:", d.Line)
	if d.Column > 0 {
		fmt.Fprintf(&b, "%d:", d.Column)
	}
	b.WriteByte(' ')
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	switch {
	case d.Selector != "":
		if strings.HasPrefix(d.Selector, "#") {
			fmt.Fprintf(&b, "%s selector %s: ", d.Type, d.Selector)
		} else {
			fmt.Fprintf(&b, "%s selector %q: ", d.Type, d.Selector)
		}
	case d.Response > 0:
		if d.Type != "" {
			b.WriteString(d.Type + " ")
		}
		fmt.Fprintf(&b, "response #%d: ", d.Response)
	case d.Type != "":
		fmt.Fprintf(&b, "%s: ", d.Type)
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Errors is every error found in an invalid policy. It is the error Parse returns
// when a policy is rejected; nothing of such a policy is usable.
type Errors []Diagnostic

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, d := range e {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

func sortDiagnostics(ds []Diagnostic) {
	if len(ds) > 0 && ds[0].Origin == OriginConfig {
		// The rendering's order is ours (keys sorted: responses before
		// selectors); lists keep the user's order. Selectors come first, as
		// policies are written.
		sort.SliceStable(ds, func(i, j int) bool { return configRank(ds[i].Path) < configRank(ds[j].Path) })
		return
	}
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].Line != ds[j].Line {
			return ds[i].Line < ds[j].Line
		}
		return ds[i].Column < ds[j].Column
	})
}

// UnmarshalText reads what MarshalText writes.
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "error":
		*s = SeverityError
	case "warning":
		*s = SeverityWarning
	default:
		return fmt.Errorf("unknown severity %q", b)
	}
	return nil
}

// configRank orders a config diagnostic's path: the document's own keys, then
// each section's (file, network, process, as the rendering has them: keys
// sorted) selectors before its responses.
func configRank(path string) int {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "security-policy"), ".")
	sec, rest, _ := strings.Cut(path, ".")
	if i := strings.IndexByte(sec, '['); i >= 0 {
		sec = sec[:i]
	}
	rank := 0
	switch sec {
	case "file":
		rank = 10
	case "network":
		rank = 20
	case "process":
		rank = 30
	case "selectors", "responses": // first-version top-level lists
		rest = sec
	}
	switch {
	case strings.HasPrefix(rest, "selectors"):
		rank++
	case strings.HasPrefix(rest, "responses"):
		rank += 2
	}
	return rank
}
