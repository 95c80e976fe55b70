package rollout

import "github.com/cloud-defend/cloud-defend/policy"

// RecordingPolicyYAML is what a live recording enforces (in dry run): every
// operation a learned policy can allow is logged, so the recording holds
// each exec, fork and file change of every container.
const RecordingPolicyYAML = `# cloud-defend policy learn --duration: log everything a learned policy can allow.
process:
  selectors:
    - name: everyProcess
      operation: [fork, exec]
  responses:
    - match: [everyProcess]
      actions: [log]
file:
  selectors:
    - name: everyFileChange
      operation: [createFile, createExecutable, modifyFile, modifyExecutable, deleteFile]
  responses:
    - match: [everyFileChange]
      actions: [log]
`

// RecordingPolicy is RecordingPolicyYAML, parsed.
func RecordingPolicy() *policy.Policy {
	p, _, err := policy.Parse("live recording", []byte(RecordingPolicyYAML))
	if err != nil {
		panic("rollout: the recording policy is invalid: " + err.Error()) // a test holds it valid
	}
	return p
}
