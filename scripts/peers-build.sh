#!/usr/bin/env bash
# peers-build.sh builds or installs the peer agents that `go run mage.go benchPeers`
# measures beside cloud-defend, into a cache outside the repository. Nothing it
# makes is committed.
#
#   auditd   Debian's package (apt-get install auditd; bookworm 1:3.0.9): its
#            binaries stay where Debian puts them (/sbin/auditd, /sbin/auditctl);
#            $PEERS_CACHE/auditd-<version>/READY records the version.
#   tetragon built from source, $TETRAGON_SRC (a tetragon source tree with
#            vendor/, or a bare git directory of one; default: the read-only
#            mirror /work/.mirror/cilium+tetragon/repo when present). The Go
#            module proxy refuses github.com/cilium/tetragon, so there is no
#            other way to get it here.
#            $PEERS_CACHE/tetragon-<version>/bin/tetragon   (CGO_ENABLED=0, -mod=vendor)
#            $PEERS_CACHE/tetragon-<version>/lib/*.o        (its BPF objects, clang-19)
#   sysdig   Debian's sysdig (0.29) and its kernel module, falcosecurity-scap-dkms,
#            built by DKMS against the VM kernel's headers
#            (linux-headers-<release of /boot/vmlinuz-*-cloud-amd64>); Debian's
#            sysdig has no eBPF probe, so the module is the only driver.
#            $PEERS_CACHE/sysdig-<version>/READY names the module.
#
# Idempotent: what exists is not built again. Each peer is attempted on its own;
# one that cannot be had is reported with the exact reason and the script goes
# on. Exit status: 0 when every requested peer is ready, 1 otherwise.
#
# Usage: scripts/peers-build.sh [auditd] [tetragon] [sysdig]   (default: all)
# Environment: PEERS_CACHE (default /var/cache/cloud-defend-peers), TETRAGON_SRC,
#              GO (default go), CLANG (default clang-19), LLC (default llc-19).
set -uo pipefail

CACHE=${PEERS_CACHE:-/var/cache/cloud-defend-peers}
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
CLANG=${CLANG:-clang-19}
LLC=${LLC:-llc-19}
MIRROR=/work/.mirror/cilium+tetragon/repo

log() { echo "peers-build: $*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

failed=0

build_auditd() {
	if ! command -v auditctl >/dev/null 2>&1 && [ ! -x /sbin/auditctl ]; then
		if [ "$(id -u)" != 0 ]; then
			log "auditd: not installed and not root: run as root or apt-get install auditd"
			return 1
		fi
		log "auditd: installing Debian's package"
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq auditd >/dev/null 2>&1; then
			apt-get update -qq >/dev/null 2>&1
			if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq auditd; then
				log "auditd: apt-get install auditd failed (is Debian's mirror reachable?)"
				return 1
			fi
		fi
	fi
	# The package's service may have started on the host: the benchmark runs its
	# own auditd in the VM, not this one.
	local v
	v=$(dpkg-query -W -f='${Version}' auditd 2>/dev/null || echo unknown)
	v=${v#*:}
	mkdir -p "$CACHE/auditd-$v"
	{
		echo "version=$v"
		echo "auditd=$(command -v auditd || echo /sbin/auditd)"
		echo "auditctl=$(command -v auditctl || echo /sbin/auditctl)"
	} >"$CACHE/auditd-$v/READY"
	log "auditd: ready ($v): $CACHE/auditd-$v/READY"
}

# tetragon_src prints a directory holding the tetragon source tree (extracting a
# bare git directory into the cache) and sets TETRAGON_VERSION.
tetragon_src() {
	local src=${TETRAGON_SRC:-}
	if [ -z "$src" ]; then
		if [ -d "$MIRROR" ]; then
			src=$MIRROR
		else
			log "tetragon: no source: set TETRAGON_SRC to a tetragon source tree with vendor/ (or a bare git directory of one);" \
				"the default, the mirror $MIRROR, is absent, and the Go module proxy refuses github.com/cilium/tetragon (403)"
			return 1
		fi
	fi
	if [ ! -e "$src" ]; then
		log "tetragon: TETRAGON_SRC=$src does not exist"
		return 1
	fi
	if [ -f "$src/go.mod" ]; then
		if [ ! -d "$src/vendor" ]; then
			log "tetragon: $src has no vendor/ directory (the build is -mod=vendor; the module proxy refuses tetragon's own module)"
			return 1
		fi
		TETRAGON_VERSION=$(git -C "$src" describe --tags --always --exclude '*/*' 2>/dev/null || cat "$src/.version" 2>/dev/null || echo unknown)
		TETRAGON_TREE=$src
		return 0
	fi
	if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
		TETRAGON_VERSION=$(git -C "$src" describe --tags --always --exclude '*/*' 2>/dev/null || git -C "$src" rev-parse --short HEAD)
		TETRAGON_TREE=$CACHE/src/tetragon-$TETRAGON_VERSION
		if [ ! -f "$TETRAGON_TREE/go.mod" ]; then
			log "tetragon: extracting $src ($TETRAGON_VERSION) into $TETRAGON_TREE"
			rm -rf "$TETRAGON_TREE.tmp" && mkdir -p "$TETRAGON_TREE.tmp" &&
				git -C "$src" archive HEAD | tar -x -C "$TETRAGON_TREE.tmp" &&
				echo "$TETRAGON_VERSION" >"$TETRAGON_TREE.tmp/.version" &&
				mv "$TETRAGON_TREE.tmp" "$TETRAGON_TREE" || { log "tetragon: extracting $src failed"; return 1; }
		fi
		return 0
	fi
	log "tetragon: TETRAGON_SRC=$src is neither a source tree (no go.mod) nor a git directory"
	return 1
}

build_sysdig() {
	local kernel release
	kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | tail -1)
	if [ -z "$kernel" ]; then
		log "sysdig: no VM kernel (/boot/vmlinuz-*-cloud-amd64; apt-get install linux-image-cloud-amd64) to build its module for"
		return 1
	fi
	release=${kernel#/boot/vmlinuz-}
	if ! command -v sysdig >/dev/null 2>&1 || [ ! -d "/lib/modules/$release/build" ] || ! ls -d /usr/src/scap-* >/dev/null 2>&1; then
		if [ "$(id -u)" != 0 ]; then
			log "sysdig: needs sysdig falcosecurity-scap-dkms linux-headers-$release installed (root)"
			return 1
		fi
		log "sysdig: installing Debian's sysdig, falcosecurity-scap-dkms and linux-headers-$release"
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sysdig falcosecurity-scap-dkms "linux-headers-$release" >/dev/null; then
			log "sysdig: apt-get install failed"
			return 1
		fi
	fi
	local mod=/lib/modules/$release/updates/dkms/scap.ko
	if [ ! -f "$mod" ]; then
		local ver
		ver=$(basename "$(ls -d /usr/src/scap-* | tail -1)")
		ver=${ver#scap-}
		log "sysdig: dkms install scap/$ver -k $release"
		if ! dkms install "scap/$ver" -k "$release"; then
			log "sysdig: the scap module does not build against linux-headers-$release"
			return 1
		fi
	fi
	local v
	v=$(dpkg-query -W -f='${Version}' sysdig 2>/dev/null || echo unknown)
	mkdir -p "$CACHE/sysdig-$v"
	{
		echo "version=$v"
		echo "module=${mod#/lib/modules/$release/}"
		echo "release=$release"
	} >"$CACHE/sysdig-$v/READY"
	log "sysdig: ready ($v, module $mod)"
}

build_tetragon() {
	if ! tetragon_src; then
		local cached
		cached=$(ls -d "$CACHE"/tetragon-*/READY 2>/dev/null | tail -1)
		if [ -n "$cached" ]; then
			log "tetragon: using the build already in the cache: $(dirname "$cached")"
			return 0
		fi
		return 1
	fi
	local out=$CACHE/tetragon-$TETRAGON_VERSION
	mkdir -p "$out/bin" "$out/lib"
	if [ ! -x "$out/bin/tetragon" ]; then
		log "tetragon: go build ($TETRAGON_VERSION, CGO_ENABLED=0, -mod=vendor)"
		if ! (cd "$TETRAGON_TREE" && CGO_ENABLED=0 nice "$GO" build -mod=vendor -trimpath \
			-ldflags "-s -w -X github.com/cilium/tetragon/pkg/version.Version=$TETRAGON_VERSION -X github.com/cilium/tetragon/pkg/version.Name=tetragon" \
			-o "$out/bin/tetragon.tmp" ./cmd/tetragon); then
			log "tetragon: go build ./cmd/tetragon failed (see above)"
			return 1
		fi
		mv "$out/bin/tetragon.tmp" "$out/bin/tetragon"
	fi
	if ! ls "$out"/lib/bpf_execve_event_v511.o >/dev/null 2>&1; then
		for t in "$CLANG" "$LLC"; do
			if ! command -v "$t" >/dev/null 2>&1; then
				log "tetragon: $t not found: its BPF objects need clang (apt-get install clang-19 llvm-19)"
				return 1
			fi
		done
		log "tetragon: make -C bpf (CLANG=$CLANG LLC=$LLC)"
		if ! nice make -C "$TETRAGON_TREE/bpf" -j"$(nproc)" CLANG="$CLANG" LLC="$LLC" >"$out/bpf-build.log" 2>&1; then
			tail -30 "$out/bpf-build.log" >&2
			log "tetragon: make -C bpf failed; full log: $out/bpf-build.log"
			return 1
		fi
		cp "$TETRAGON_TREE"/bpf/objs/*.o "$out/lib/"
	fi
	echo "version=$TETRAGON_VERSION" >"$out/READY"
	log "tetragon: ready ($TETRAGON_VERSION): $out/bin/tetragon, $(ls "$out"/lib/*.o | wc -l) BPF objects in $out/lib"
}

peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(auditd tetragon sysdig)
for p in "${peers[@]}"; do
	case $p in
	auditd) build_auditd || failed=1 ;;
	tetragon) build_tetragon || failed=1 ;;
	sysdig) build_sysdig || failed=1 ;;
	*) log "unknown peer $p (known: auditd tetragon sysdig)"; failed=1 ;;
	esac
done
exit $failed
