package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/proto"

	"github.com/cloud-defend/cloud-defend/output/estest"
)

// TestAgentFaults runs the real binary under a stub agent while container
// execs flow, and makes Elasticsearch refuse writes for a minute, then answer
// 429, then restart. Every alert produced must arrive (duplicates are counted,
// losses fail), the output unit must go DEGRADED and back to HEALTHY, and
// memory must stay bounded. It also measures how long a new policy revision
// takes from the agent's push to the unit reporting it in force.
func TestAgentFaults(t *testing.T) {
	refuseFor := time.Minute
	if testing.Short() {
		refuseFor = 10 * time.Second
	}
	h := startAgentManaged(t)
	h.configureOutput()
	policy := func(name string) string {
		// Delivery is what is tested: every alert must arrive, so the alert
		// throttle (a setting of the alerts stream, beside the policy) is off.
		return "process:\n  selectors:\n    - name: " + name + "\n      operation: [exec]\n      processName: [true]\n  responses:\n    - match: [" + name + "]\n      actions: [alert]\nalert_throttle:\n  rate: 0\n"
	}
	h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputUnit(t, 1, policy("rev1")))
	h.agent.Wait(t, inputID, proto.State_DEGRADED, "policy revision 1 in force", 30*time.Second)
	h.agent.Wait(t, outputID, proto.State_HEALTHY, "", 10*time.Second)

	// Policy push → in force, as the agent sees it (parse, validate, compile,
	// swap the kernel maps, report).
	var lat []time.Duration
	for rev := uint64(2); rev <= 21; rev++ {
		start := time.Now()
		h.agent.SetUnit(inputID, proto.UnitType_INPUT, proto.State_HEALTHY, proto.UnitLogLevel_INFO, inputUnit(t, rev, policy("rev"+strconv.FormatUint(rev, 10))))
		h.agent.Wait(t, inputID, proto.State_DEGRADED, fmt.Sprintf("policy revision %d in force", rev), 10*time.Second)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("policy push to in force, %d revisions: p50 %v, p99 (max) %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])

	// Container execs, each with a unique argument, while Elasticsearch fails.
	var produced atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if err := exec.Command("/bin/busybox", "unshare", "-p", "-m", "-f", "--", "/bin/true", "m-"+strconv.Itoa(i)).Run(); err != nil {
				t.Errorf("container: %v", err)
				return
			}
			produced.Add(1)
		}
	}()
	// Resident memory, and its anonymous part (heap, stacks: what grows with
	// queued events); the rest is the binary's pages and the ring buffer.
	var maxRSS, maxAnon atomic.Int64
	sample := func() {
		pid := h.cmd.Process.Pid
		if kb := procStatusKB(pid, "VmRSS"); kb > maxRSS.Load() {
			maxRSS.Store(kb)
		}
		if kb := procStatusKB(pid, "RssAnon"); kb > maxAnon.Load() {
			maxAnon.Store(kb)
		}
	}
	time.Sleep(2 * time.Second)
	h.es.SetFault(estest.Refuse)
	h.agent.Wait(t, outputID, proto.State_DEGRADED, "Elasticsearch", 30*time.Second)
	for end := time.Now().Add(refuseFor); time.Now().Before(end); time.Sleep(time.Second) {
		sample()
	}
	h.es.SetFault(estest.Throttle)
	time.Sleep(5 * time.Second)
	h.es.SetFault(estest.None)
	if err := h.es.Restart(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	n := int(produced.Load())

	// Every produced exec arrives, however often.
	const stream = "logs-cloud_defend.alerts-e2e"
	var seen map[string]int
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		sample()
		seen = map[string]int{}
		for _, d := range h.es.Docs(stream) {
			if a, _ := field(d, "process.args").([]any); len(a) == 2 {
				if m, _ := a[1].(string); strings.HasPrefix(m, "m-") {
					seen[m]++
				}
			}
		}
		if len(seen) >= n {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if len(seen) < n {
		var missing []string
		for i := 0; i < n && len(missing) < 10; i++ {
			if seen["m-"+strconv.Itoa(i)] == 0 {
				missing = append(missing, "m-"+strconv.Itoa(i))
			}
		}
		t.Errorf("%d of %d alerts arrived; missing e.g. %v", len(seen), n, missing)
	}
	h.agent.Wait(t, outputID, proto.State_HEALTHY, "", 60*time.Second)
	t.Logf("faults: %d alerts produced over %v of refused writes, 5s of 429s and a restart; all arrived, %d duplicates; peak RSS %d MiB (anonymous %d MiB)",
		n, refuseFor, dups, maxRSS.Load()/1024, maxAnon.Load()/1024)
	if maxAnon.Load() > 100*1024 {
		t.Errorf("peak anonymous memory %d KiB over 100 MiB", maxAnon.Load())
	}
	states := h.agent.States(outputID)
	if !slices.Contains(states, proto.State_DEGRADED) || states[len(states)-1] != proto.State_HEALTHY {
		t.Errorf("output unit states %v, want DEGRADED then HEALTHY", states)
	}
}

// procStatusKB reads a KiB figure (VmRSS, RssAnon, …) of /proc/<pid>/status.
func procStatusKB(pid int, key string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
