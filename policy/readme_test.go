package policy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestReadmeExamples keeps the README honest: every YAML policy in it is valid and
// warning-free, the worked example is the one TestResponseSemantics checks, and the
// default policy shown is the embedded one.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlock.FindAllSubmatch(readme, -1)
	if len(blocks) < 2 {
		t.Fatalf("README has %d yaml blocks", len(blocks))
	}
	var sawExample, sawDefault, sawNetwork bool
	for _, b := range blocks {
		src := string(b[1])
		_, warns, err := Parse("README.md", b[1])
		if err != nil || len(warns) > 0 {
			t.Errorf("README policy:\n%s\nerr: %v\nwarnings: %v", src, err, warns)
		}
		sawExample = sawExample || src == readmeExample
		sawDefault = sawDefault || src == string(DefaultYAML)
		if err == nil {
			p := mustParse(t, src)
			if sels := p.Selectors(Network); len(sels) > 0 {
				sawNetwork = true
				for _, r := range p.Responses(Network) {
					if !strings.Contains(string(readme), "`"+r.String()+"`") && r.Actions.Has(ActionBlock) {
						t.Errorf("README does not quote the network example's blocking rule as explain prints it: %q", r)
					}
				}
			}
		}
	}
	if !sawExample {
		t.Error("README no longer shows the example TestResponseSemantics checks (readmeExample)")
	}
	if !sawDefault {
		t.Error("README's default policy differs from default.yaml")
	}
	rule := mustParse(t, readmeExample).Responses(File)[0].String()
	if !strings.Contains(string(readme), rule) {
		t.Errorf("README does not quote the example's rule as explain prints it: %q", rule)
	}
	if !sawNetwork {
		t.Error("README shows no policy with a network section")
	}
}

// TestCookbookEgress: docs/cookbook.md's egress recipe is cookbookEgress, the
// policy TestNetworkResponses checks.
func TestCookbookEgress(t *testing.T) {
	data, err := os.ReadFile("../docs/cookbook.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "```yaml\n"+cookbookEgress+"```") {
		t.Error("docs/cookbook.md no longer shows cookbookEgress")
	}
}
