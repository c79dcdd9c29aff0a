#!/bin/sh
# What the tests need besides node_modules, run first by `npm test` (and so by .ci/run):
#   nats-server; qemu-img and qemu-io (qemu-utils); sfdisk (fdisk); mkfs.ext4 (e2fsprogs); unzip;
#   the AWS CLI (awscli); g++ and make, to build the sparse-file addon (toolkit/native);
#   python3 with boto3; for guest inspection's test disks dosfstools, mtools, xfsprogs, ntfs-3g,
#   fuse3 and cryptsetup-bin; for dynamic validation qemu-system-x86 and, for its test disk that
#   really boots, busybox-static, syslinux, syslinux-common, cpio and linux-image-cloud-amd64.
# On Debian as root it installs what is missing (apt-get; boto3 with pip). Otherwise it prints
# exactly what to run and exits non-zero. With everything present it only looks, in well under a
# second.
set -eu
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/sbin:/sbin"

have() { command -v "$1" >/dev/null 2>&1; }
has_boto3() { python3 -c 'import boto3' >/dev/null 2>&1; }

missing_packages() {
  packages=""
  have nats-server || packages="$packages nats-server"
  { have qemu-img && have qemu-io; } || packages="$packages qemu-utils"
  have sfdisk || packages="$packages fdisk"
  have mkfs.ext4 || packages="$packages e2fsprogs"
  have unzip || packages="$packages unzip"
  # AWS CLI v2 is the Debian package (/usr/bin/aws); a pip-installed v1 on PATH does not count.
  [ -x /usr/bin/aws ] || packages="$packages awscli"
  have g++ || packages="$packages g++"
  have make || packages="$packages make"
  have python3 || packages="$packages python3"
  # Guest inspection builds test disks with these (toolkit/inspect, test/helpers/guest-images.ts).
  have mkfs.vfat || packages="$packages dosfstools"
  have mcopy || packages="$packages mtools"
  have mkfs.xfs || packages="$packages xfsprogs"
  { have mkfs.ntfs && have ntfs-3g; } || packages="$packages ntfs-3g"
  have fusermount3 || packages="$packages fuse3"
  have cryptsetup || packages="$packages cryptsetup-bin"
  # Dynamic validation boots disks under qemu (toolkit/inspect/boot-check.ts); its test disk
  # (test/helpers/boot-disk.ts) is SYSLINUX + a Debian kernel + a busybox initramfs made with cpio.
  have qemu-system-x86_64 || packages="$packages qemu-system-x86"
  has_static_busybox || packages="$packages busybox-static"
  have syslinux || packages="$packages syslinux"
  [ -f /usr/lib/syslinux/mbr/mbr.bin ] || packages="$packages syslinux-common"
  have cpio || packages="$packages cpio"
  ls /boot/vmlinuz-* >/dev/null 2>&1 || packages="$packages linux-image-cloud-amd64"
  echo "$packages"
}

# The busybox package's binary is dynamic and cannot run alone in an initramfs; busybox-static's can.
has_static_busybox() {
  [ -x /bin/busybox ] || return 1
  have dpkg-query || return 0
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'
}

can_install() { [ "$(id -u)" = 0 ] && have apt-get; }

packages=$(missing_packages)
if [ -n "$packages" ]; then
  if ! can_install; then
    echo "test set-up: missing Debian packages:$packages" >&2
    echo "  run: sudo apt-get update && sudo apt-get install -y$packages" >&2
    echo "  then run the tests again" >&2
    exit 1
  fi
  echo "test set-up: installing$packages" >&2
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  packages=$(missing_packages)
  if [ -n "$packages" ]; then
    echo "test set-up: still missing after apt-get install:$packages" >&2
    exit 1
  fi
fi

if ! has_boto3; then
  python=$(command -v python3)
  if [ "$python" = /usr/bin/python3 ]; then
    # Debian's own python3 refuses pip installs outside a virtual environment (PEP 668); its
    # python3-boto3 package is the way there.
    how="sudo apt-get install -y python3-boto3"
    if can_install; then
      echo "test set-up: installing python3-boto3" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-boto3 >/dev/null
    fi
  else
    how="$python -m pip install boto3"
    echo "test set-up: installing boto3 for $python" >&2
    $how --quiet || true # judged by the import below
  fi
  if ! has_boto3; then
    echo "test set-up: $python cannot import boto3" >&2
    echo "  run: $how" >&2
    exit 1
  fi
fi

# `npm install` builds the addon only when g++ and make were already there.
if [ ! -f build/Release/sparse_ranges.node ]; then
  echo "test set-up: building the sparse-file addon (npm run build:native)" >&2
  npm run build:native --silent
fi
