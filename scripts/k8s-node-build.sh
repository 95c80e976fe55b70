#!/usr/bin/env bash
# k8s-node-build.sh builds what internal/k8snode needs to run a real single-node
# Kubernetes for tests, into a cache directory outside the repository:
#
#   $K8S_CACHE/v1.35.4/bin/{kube-apiserver,kubelet,kubectl}
#       built from the Go module proxy (k8s.io/kubernetes v1.35.4) in a scratch
#       module whose replace lines pin every k8s.io/* staging module to v0.35.4.
#   $K8S_CACHE/v1.35.4/images/{pause,busybox}.tar
#       OCI image archives made from Debian's busybox-static (no registry), for
#       `ctr -n k8s.io image import`.
#
# Idempotent: what exists is not built again. Cold build: several minutes and
# about 2 GB of RAM (kube-apiserver's link). internal/k8snode runs this script
# when a binary is missing; it makes its own copies of the images, so the
# archives here are for using the images elsewhere (podman load, ctr import).
#
# Environment: K8S_CACHE (default /var/cache/cloud-defend-k8s), GO (default go).
set -euo pipefail

K8S_VERSION=v1.35.4
STAGING_VERSION=v0.35.4
CACHE=${K8S_CACHE:-/var/cache/cloud-defend-k8s}/$K8S_VERSION
BIN=$CACHE/bin
IMAGES=$CACHE/images
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
repo=$(cd "$(dirname "$0")/.." && pwd)

log() { echo "k8s-node-build: $*" >&2; }

mkdir -p "$BIN" "$IMAGES"
# One build at a time (tests in several packages may start nodes at once).
exec 9>"$CACHE/.lock"
flock 9

# --- Kubernetes binaries -----------------------------------------------------
missing=()
for b in kube-apiserver kubelet kubectl; do
	[ -x "$BIN/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
	start=$(date +%s)
	src=$CACHE/src
	mkdir -p "$src"
	cd "$src"
	export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} GO111MODULE=on
	if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
		log "resolving k8s.io/kubernetes@$K8S_VERSION from the module proxy"
		rm -f go.mod go.sum
		"$GO" mod init cloud-defend-k8s-build >/dev/null 2>&1
		# k8s.io/kubernetes' own go.mod replaces every staging module with a
		# directory inside its repository; mirror those as version pins.
		gomod=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
			sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
		[ -f "$gomod" ] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION's go.mod"; exit 1; }
		staging=$(grep -oE 'k8s\.io/[A-Za-z0-9._-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u)
		[ -n "$staging" ] || { log "no staging replace lines in $gomod"; exit 1; }
		{
			echo
			echo "require k8s.io/kubernetes $K8S_VERSION"
			echo
			echo "replace ("
			for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
			echo ")"
		} >>go.mod
		log "pinned $(echo "$staging" | wc -l) staging modules to $STAGING_VERSION"
	fi
	pkgs=()
	for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	log "downloading modules"
	if ! "$GO" get "${pkgs[@]/%/@$K8S_VERSION}" >"$CACHE/go-get.log" 2>&1; then
		cat "$CACHE/go-get.log" >&2
		exit 1
	fi
	ver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
	ver+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35"
	ver+=" -X k8s.io/component-base/version.gitTreeState=clean"
	ver+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
	ver+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=35"
	for b in "${missing[@]}"; do
		t=$(date +%s)
		log "building $b (this takes minutes)"
		CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w $ver" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
		mv "$BIN/$b.tmp" "$BIN/$b"
		log "built $b in $(($(date +%s) - t))s"
	done
	log "Kubernetes binaries built in $(($(date +%s) - start))s"
fi

# --- Images --------------------------------------------------------------------
if [ ! -f "$IMAGES/pause.tar" ] || [ ! -f "$IMAGES/busybox.tar" ]; then
	# Debian's busybox-static: one static binary, so the image needs nothing else.
	if ! dpkg -s busybox-static >/dev/null 2>&1; then
		log "busybox-static is not installed (apt-get install busybox-static)"
		exit 1
	fi
	bb=/bin/busybox
	log "making OCI images from $bb"
	(cd "$repo" && GOFLAGS=-buildvcs=false "$GO" run ./internal/k8snode/cmd/mkimage -busybox "$bb" -out "$IMAGES")
fi
log "ready: $BIN, $IMAGES"
