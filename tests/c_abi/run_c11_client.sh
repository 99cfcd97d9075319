#!/bin/sh
# Makes the fixture the C11 client expects (an 8 MiB monolithicSparse VMDK with 0xab in sectors
# 0..127 and 0xcd in 2048..2175, written by qemu-io), runs the client against the VDDK-style
# tree, and cleans up.   usage: run_c11_client.sh <c11_client> <vddk libdir>
set -eu
client=$1
libdir=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/vixfs-c11-XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
qemu-img create -q -f vmdk "$dir/disk.vmdk" 8M
qemu-io -f vmdk -c 'write -q -P 0xab 0 64k' -c 'write -q -P 0xcd 1M 64k' "$dir/disk.vmdk"
"$client" "$libdir" "$dir/disk.vmdk"
