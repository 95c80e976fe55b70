// Command mkimage writes the test node's OCI image archives (pause.tar and
// busybox.tar) from Debian's static busybox, for `ctr -n k8s.io image import`
// or `podman load`. scripts/k8s-node-build.sh runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloud-defend/cloud-defend/internal/k8snode/ociimage"
)

func main() {
	busybox := flag.String("busybox", ociimage.DefaultBusybox, "static busybox binary")
	out := flag.String("out", ".", "directory for pause.tar and busybox.tar")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for file, spec := range map[string]ociimage.Spec{
		"pause.tar":   ociimage.Pause(*busybox),
		"busybox.tar": ociimage.Busybox(*busybox),
	} {
		path := filepath.Join(*out, file)
		if err := ociimage.WriteFile(path, spec); err != nil {
			fmt.Fprintf(os.Stderr, "mkimage: %s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Printf("%s: %s\n", path, spec.Name)
	}
}
