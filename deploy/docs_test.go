package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/requirements"
)

// TestCookbook parses every policy in docs/cookbook.md: a recipe that does
// not validate, or draws a warning, fails here rather than for a user.
func TestCookbook(t *testing.T) {
	data, err := os.ReadFile("../docs/cookbook.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 5 {
		t.Fatalf("%d policies in the cookbook", len(blocks))
	}
	for i, b := range blocks {
		_, warnings, err := policy.Parse("cookbook.md", []byte(b[1]))
		if err != nil {
			t.Errorf("recipe %d: %v", i+1, err)
		}
		for _, w := range warnings {
			t.Errorf("recipe %d: %v", i+1, w)
		}
	}
}

// TestCapabilityDocs holds the documents that list cloud-defend's capabilities
// to requirements.Capabilities, the list the code checks and the manifests add.
func TestCapabilityDocs(t *testing.T) {
	var want []string
	for _, c := range requirements.Capabilities() {
		want = append(want, c.Name)
	}
	backticked := regexp.MustCompile("`([A-Z_]+)`")
	names := func(s string) []string {
		var out []string
		for _, m := range backticked.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		return out
	}
	for _, d := range []struct{ file, from, to string }{
		{"../docs/deploy.md", "the capabilities ", "(the one list"},
		{"../package/cloud_defend/docs/README.md", "with the capabilities ", ", and these host paths"},
	} {
		data, err := os.ReadFile(d.file)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(data), d.from)
		prose, _, ok2 := strings.Cut(rest, d.to)
		if !ok || !ok2 {
			t.Errorf("%s: no list between %q and %q", d.file, d.from, d.to)
			continue
		}
		if got := names(prose); !slices.Equal(got, want) {
			t.Errorf("%s lists the capabilities %v, want %v", d.file, got, want)
		}
	}

	// The Fleet package's example securityContext.
	data, err := os.ReadFile("../package/cloud_defend/docs/README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		var doc struct {
			SecurityContext *struct {
				Capabilities struct{ Add []string }
			} `yaml:"securityContext"`
		}
		if yaml.Unmarshal([]byte(b[1]), &doc) != nil || doc.SecurityContext == nil {
			continue
		}
		found = true
		if got := doc.SecurityContext.Capabilities.Add; !slices.Equal(got, want) {
			t.Errorf("package README's securityContext adds %v, want %v", got, want)
		}
	}
	if !found {
		t.Error("package README has no securityContext example")
	}
}
