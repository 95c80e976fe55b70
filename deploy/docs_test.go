package deploy

import (
	"os"
	"regexp"
	"testing"

	"github.com/cloud-defend/cloud-defend/policy"
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
