// Package ociimage writes small OCI image archives (an OCI image layout in a tar)
// from a static busybox, with no registry and no container engine: what
// `ctr image import` (containerd) and `podman load` accept. The test node uses
// them for its pause image and its test image.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Image names the test node's containerd knows after import.
const (
	// PauseImage is the sandbox (pause) image containerd is configured with.
	PauseImage = "localhost/cloud-defend/pause:1"
	// BusyboxImage is the test image: busybox with every applet in /bin.
	BusyboxImage = "localhost/cloud-defend/busybox:1"
)

// DefaultBusybox is where Debian's busybox-static installs its binary.
const DefaultBusybox = "/bin/busybox"

// Spec describes one image.
type Spec struct {
	// Name is the full reference, e.g. PauseImage.
	Name string
	// Busybox is the static busybox binary to put at /bin/busybox.
	Busybox string
	// Entrypoint and Cmd are the image's defaults.
	Entrypoint []string
	Cmd        []string
}

// Pause is the pause image: busybox sleeping for ever (containerd stops
// sandboxes with SIGKILL, so it needs no signal handling).
func Pause(busybox string) Spec {
	return Spec{Name: PauseImage, Busybox: busybox, Entrypoint: []string{"/bin/sleep", "2147483647"}}
}

// Busybox is the test image: a shell by default.
func Busybox(busybox string) Spec {
	return Spec{Name: BusyboxImage, Busybox: busybox, Cmd: []string{"/bin/sh"}}
}

// fixed time for every entry, so an image's digests depend only on its content.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteFile writes spec's OCI archive to path.
func WriteFile(path string, spec Spec) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := Write(f, spec); err != nil {
		f.Close()
		os.Remove(path + ".tmp")
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// Write writes spec's OCI archive (oci-layout, index.json, blobs) to w.
func Write(w io.Writer, spec Spec) error {
	if spec.Busybox == "" {
		spec.Busybox = DefaultBusybox
	}
	layer, err := rootfs(spec.Busybox)
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Entrypoint": spec.Entrypoint,
			"Cmd":        spec.Cmd,
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history": []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "cloud-defend ociimage from " + spec.Busybox}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config, nil),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer, nil)},
	})
	if err != nil {
		return err
	}
	tag := spec.Name[strings.LastIndex(spec.Name, ":")+1:]
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{descriptor("application/vnd.oci.image.manifest.v1+json", manifest, map[string]string{
			// containerd names the image from this one; podman and others from the ref name.
			"io.containerd.image.name":          spec.Name,
			"org.opencontainers.image.ref.name": tag,
		})},
	})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(layer), layer},
		{blobPath(config), config},
		{blobPath(manifest), manifest},
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func blobPath(b []byte) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:")
}

func descriptor(mediaType string, b []byte, annotations map[string]string) map[string]any {
	d := map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
	if annotations != nil { // the index's entry for the manifest
		d["annotations"] = annotations
		d["platform"] = map[string]string{"architecture": "amd64", "os": "linux"}
	}
	return d
}

// rootfs is the single layer: /bin/busybox, a symlink per applet, the usual
// empty directories and a minimal /etc.
func rootfs(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "var"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return nil, err
	}
	if err := file("bin/busybox", 0o755, bin); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, f := range [][2]string{
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/hosts", "127.0.0.1 localhost\n"},
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
	} {
		if err := file(f[0], 0o644, []byte(f[1])); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
