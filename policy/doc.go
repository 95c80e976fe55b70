// Package policy holds the D4C policy language: it parses the YAML users write in
// Kibana and elastic-agent.yml, validates it with positioned diagnostics, compiles it
// into an immutable Policy, and evaluates operations against it.
//
// Policy.Evaluate is the normative meaning of a policy. The kernel engine compiles
// the same Policy into BPF maps and is tested against this evaluator, so any change
// to matching semantics belongs here first.
package policy
