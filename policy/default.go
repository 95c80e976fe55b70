package policy

import _ "embed"

// DefaultYAML is the integration package's default policy: log every fork and exec,
// alert on every new or modified executable (drift detection).
//
//go:embed default.yaml
var DefaultYAML []byte

// DefaultName is the name the default policy is parsed under in diagnostics.
const DefaultName = "default policy"

// Default returns the compiled default policy.
func Default() *Policy {
	p, _, err := Parse(DefaultName, DefaultYAML)
	if err != nil {
		panic("policy: the embedded default policy is invalid: " + err.Error())
	}
	return p
}
