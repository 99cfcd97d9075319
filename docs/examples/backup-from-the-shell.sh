#!/bin/sh
# A backup of a running VM with nothing but the file system vixfs mounts: a snapshot made with
# mkdir, its disks copied sparse with cp, the snapshot removed with rmdir. Then one file restored
# from the copy by loop-mounting the disk's first partition (needs root for losetup and mount).
#
#   backup-from-the-shell.sh VM_FOLDER DEST [FILE]
#
# VM_FOLDER is a VM's folder in a vixfs mount (MOUNT/SERVER/<vm moRef>); DEST gets every disk as
# <slot>.img, the snapshot's snapshot.json and SHA256SUMS; FILE, a path inside the first
# partition of scsi0-0.img (an ext2/3/4 file system), is restored as DEST/restored/FILE.
# tests/integration/docs_examples_test.cc runs this script against the simulator's sample VMs.
set -eu

vm=$1
dest=$2
file=${3-}
snapshot="$vm/@backup-$(date -u +%Y%m%dT%H%M%SZ)"

# mkdir returns once vCenter has made the snapshot and its disks are readable. Storage vMotion of
# the VM stays blocked until rmdir; a failed copy still removes the snapshot.
mkdir "$snapshot"
trap 'rmdir "$snapshot"' EXIT
mkdir -p "$dest"
cp --sparse=always "$snapshot"/*.img "$snapshot/snapshot.json" "$dest/"
rmdir "$snapshot"
trap - EXIT
(cd "$dest" && sha256sum ./*.img >SHA256SUMS)

[ -n "$file" ] || exit 0
image="$dest/scsi0-0.img"
start=$(sfdisk --dump "$image" | sed -n 's/^.*start= *\([0-9][0-9]*\),.*$/\1/p' | head -n 1)
[ -n "$start" ] || { echo "$image: no partition table" >&2; exit 1; }
loop=$(losetup --read-only --show --find --offset $((start * 512)) "$image")
where=$(mktemp -d)
trap 'umount "$where" 2>/dev/null; losetup -d "$loop"; rmdir "$where"' EXIT
# noload: a snapshot of a running VM may hold a journal that a read-only mount cannot replay.
mount -o ro,noload "$loop" "$where"
mkdir -p "$dest/restored/$(dirname "$file")"
cp -p "$where/$file" "$dest/restored/$file"
echo "restored $file into $dest/restored"
