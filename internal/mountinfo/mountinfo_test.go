package mountinfo

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `25 20 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate
50 20 0:40 /sub /host\040fs/a\134b rw - ext4 /dev/vda rw
malformed line
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{Root: "/", Point: "/sys/fs/cgroup", FSType: "cgroup2"}, {Root: "/sub", Point: `/host fs/a\b`, FSType: "ext4"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
}

// TestUnder reads this process's real table: the root is a mount, and a
// directory that nothing is mounted below has none.
func TestUnder(t *testing.T) {
	if got := Under("/"); !slices.Contains(got, "/") {
		t.Errorf("Under(/) = %v", got)
	}
	if got := Under(t.TempDir()); len(got) != 0 {
		t.Errorf("mounts under a fresh directory: %v", got)
	}
}
