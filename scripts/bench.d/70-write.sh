# shellcheck shell=bash
# Case 9: sequential write of SIZE_MB of random data, dd bs=1M conv=notrunc,fsync
# through a read-write vixfs --local mount onto a freshly made, empty monolithicSparse VMDK, vs
# qemu-img convert of the same raw file into a new VMDK. Every run starts from an empty disk (a
# disk that already holds grains would only overwrite them, which is not what is measured), the
# source is in the page cache, and both sides end with the data flushed to the file (dd's fsync is
# VixDiskLib_Flush; qemu-img closes with a flush and `sync OUT` adds an fsync). After each vixfs
# run, outside the timing, the VMDK must hold the source's bytes and check clean.

c9_vixfs() {
  local dir="$W/wdisk" mnt="$W/mnt" rc=0
  rm -rf "$dir"
  mkdir -p "$dir"
  qemu-img create -q -f vmdk -o subformat=monolithicSparse "$dir/w.vmdk" "$BYTES" ||
    { SKIP_WHY="qemu-img create failed"; return 1; }
  vixfs_up "$mnt" "$mnt/w.img" -o rw --local "$dir" || { SKIP_WHY="vixfs -o rw --local did not mount"; return 1; }
  timed dd if="$W/write.raw" of="$mnt/w.img" bs=1M conv=notrunc,fsync status=none || rc=1
  vixfs_down "$mnt"
  [ $rc = 0 ] || return 1
  # Bytes and metadata: a fast write of wrong bytes is worthless.
  if ! qemu-img compare -q -f raw -F vmdk "$W/write.raw" "$dir/w.vmdk" 2>>"$W/cmd.log"; then
    SKIP_WHY="the VMDK written through vixfs differs from the source (qemu-img compare)"
    return 1
  fi
  if ! qemu-img check -q "$dir/w.vmdk" >>"$W/cmd.log" 2>&1; then
    SKIP_WHY="qemu-img check of the VMDK written through vixfs is not clean"
    return 1
  fi
  rm -rf "$dir"
}

c9_qemu() {
  local out="$W/out.vmdk" rc=0
  rm -f "$out"
  timed sh -c 'qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$1" "$2" && sync "$2"' \
    sh "$W/write.raw" "$out" || rc=1
  rm -f "$out"
  return $rc
}

case_9() {
  md "## 9. Sequential write of ${SIZE_MB} MiB into an empty local monolithicSparse VMDK"
  md
  log "making ${SIZE_MB} MiB of random data for the write case"
  head -c "$BYTES" /dev/urandom >"$W/write.raw"
  cat "$W/write.raw" >/dev/null
  md "| tool | s | MB/s | vixfs ÷ |"
  md "|---|---|---|---|"
  time_rows "$BYTES" "vixfs -o rw --local, dd bs=1M" c9_vixfs "qemu-img convert -O vmdk" c9_qemu
  md
  md "Commands: \`qemu-img create -f vmdk -o subformat=monolithicSparse DIR/w.vmdk $BYTES\` (not timed),"
  md "\`vixfs -o rw --local DIR -f MNT\`, then timed \`dd if=SRC.raw of=MNT/w.img bs=1M conv=notrunc,fsync\`"
  md "(the fsync is VixDiskLib_Flush: it returns once the VMDK is flushed); vs timed"
  md "\`qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse SRC.raw OUT.vmdk && sync OUT.vmdk\`."
  md "SRC.raw is random data in the page cache; every run writes into a new, empty disk. After each"
  md "vixfs run (not timed) \`qemu-img compare SRC.raw DIR/w.vmdk\` and \`qemu-img check\` must pass,"
  md "else the row is reported as skipped with the reason. Files live on tmpfs, so the flushes are"
  md "cheap on both sides."
  if [ -n "${RSS_PEAK[9]:-}" ]; then
    md "Peak RSS (VmHWM) of the vixfs daemon: $(awk -v k="${RSS_PEAK[9]}" 'BEGIN { printf "%.1f MiB", k / 1024 }')."
  fi
  md "The ratio only (no target)."
  rm -f "$W/write.raw"
}
