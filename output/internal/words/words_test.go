package words

import "testing"

func TestBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"}, {256 << 20, "256 MiB"}, {3 << 30, "3 GiB"}} {
		if got := Bytes(c.n); got != c.want {
			t.Errorf("Bytes(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestPlural(t *testing.T) {
	if Plural(1, "document") != "1 document" || Plural(0, "document") != "0 documents" || Plural(3, "file") != "3 files" {
		t.Error(Plural(1, "document"), Plural(0, "document"), Plural(3, "file"))
	}
}
