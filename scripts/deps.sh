#!/usr/bin/env bash
# Installs what building, testing and demonstrating photon-init needs on a
# Debian (bookworm) machine, then downloads the Go modules. Idempotent: when
# everything is there it only checks, in about a second.
#
#   qemu-system-x86     boots the test VMs (q35, microvm)
#   socat               carries each guest connection to a host server (guestfwd)
#   linux-image-amd64   the guest kernel (/boot/vmlinuz-*) and its modules
#   busybox-static      a shell for debug images
#   cpio xz-utils lz4 zstd file
#                       initramfs and kernel image tools (xz extracts vmlinux)
#   iproute2 util-linux host network and mount tools used by tests
#   dnsmasq-base        a real DHCP server for pkg/net's tests (in test netns)
#   gcc libc6-dev make git libseccomp-dev pkg-config
#                       the static CGO build of bin/photon-init
#   umoci skopeo bzip2  test images (internal/testimage) and layer formats
#   docker-registry     a real registry (distribution 2.8) for pull tests,
#                       started by the tests on a port of their own
#   e2fsprogs xfsprogs dosfstools btrfs-progs fdisk
#                       filesystem and partition images for pkg/blockdev,
#                       pkg/mounts and the storage VM tests
#   runc                the benchmark's busybox + runc baseline (make bench)
set -euo pipefail

packages=(
	qemu-system-x86 linux-image-amd64 busybox-static socat
	cpio xz-utils lz4 zstd file
	iproute2 util-linux dnsmasq-base
	gcc libc6-dev make git ca-certificates libseccomp-dev pkg-config
	umoci skopeo bzip2
	docker-registry
	e2fsprogs xfsprogs dosfstools btrfs-progs fdisk
	runc
)

installed() {
	dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
		sudo=(sudo)
	fi
	# INITRD=No: the test VMs boot photon-init's own initramfs, so the
	# kernel package's hook must not spend a minute generating one for the
	# host (initramfs-tools' postinst.d hook honours INITRD=No).
	apt_env=(env DEBIAN_FRONTEND=noninteractive INITRD=No)
	"${sudo[@]}" "${apt_env[@]}" apt-get update -q
	"${sudo[@]}" "${apt_env[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! compgen -G '/boot/vmlinuz-*' >/dev/null; then
	echo "deps: no /boot/vmlinuz-* after installing linux-image-amd64" >&2
	exit 1
fi

if ! command -v go >/dev/null; then
	if [[ -x /usr/local/go/bin/go ]]; then
		export PATH=$PATH:/usr/local/go/bin
	else
		echo "deps: Go is not installed (see go.mod for the version)" >&2
		exit 1
	fi
fi

cd "$(dirname "$0")/.."
go mod download
echo "deps: ok (kernel $(ls -t /boot/vmlinuz-* | head -1), $(qemu-system-x86_64 --version | head -1))"
