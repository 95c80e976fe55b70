//go:build ignore

// Zero-install mage: `go run mage.go <target>` builds and runs magefile.go with the
// mage version pinned in go.mod, so a fresh clone needs only Go.
package main

import (
	"os"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(mage.Main()) }
