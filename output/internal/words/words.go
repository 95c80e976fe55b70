// Package words renders counts and sizes for the outputs' health messages, so
// every output says them the same way.
package words

import (
	"fmt"
	"strings"
)

// Plural is "1 document", "3 documents".
func Plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Bytes renders a size in the largest binary unit that keeps it >= 1
// ("1023 B", "1.5 KiB", "256 MiB").
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return strings.Replace(fmt.Sprintf("%.1f %ciB", v, "KMGT"[i]), ".0 ", " ", 1)
}
