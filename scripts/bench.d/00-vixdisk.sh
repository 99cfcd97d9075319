# shellcheck shell=bash
# Case 0: vixdisk cat against qemu-img convert, reading a whole VMDK out as raw bytes (no FUSE):
#   to a file:  vixdisk cat DISK -o OUT      vs  qemu-img convert -O raw DISK OUT
#   to nowhere: vixdisk cat DISK > /dev/null vs  qemu-img convert -n -f vmdk DISK --target-image-opts
#                                                driver=null-co,size=N
# (qemu-img cannot convert to /dev/null itself: "Cannot grow device files".)

c0_vix_file() { timed "$VIXDISK" cat "$C0_DISK" -o "$W/out.raw"; local r=$?; rm -f "$W/out.raw"; return $r; }
c0_qemu_file() { timed qemu-img convert -O raw "$C0_DISK" "$W/out.raw"; local r=$?; rm -f "$W/out.raw"; return $r; }
c0_vix_null() { timed "$VIXDISK" cat "$C0_DISK"; }
c0_qemu_null() { timed qemu-img convert -n -f vmdk "$C0_DISK" --target-image-opts "driver=null-co,size=$BYTES"; }

case_0() {
  dense_vmdk
  qemu-img convert -O vmdk -o subformat=streamOptimized "$W/dense.vmdk" "$W/stream.vmdk"
  md "## 0. vixdisk cat vs qemu-img convert (no FUSE)"
  md
  md "A dense ${SIZE_MB} MiB disk of random data read out whole. Commands (N = size in bytes):"
  md '`vixdisk cat DISK -o OUT` vs `qemu-img convert -O raw DISK OUT` (OUT on tmpfs, deleted after'
  md 'each run); `vixdisk cat DISK >/dev/null` vs `qemu-img convert -n -f vmdk DISK --target-image-opts'
  md 'driver=null-co,size=N`.'
  md
  md "| disk, output: tool | s | MB/s | vixdisk ÷ |"
  md "|---|---|---|---|"
  local d
  for d in dense stream; do
    # Bytes first: a benchmark of wrong output is worthless.
    [ "$("$VIXDISK" cat "$W/$d.vmdk" | sha256sum | cut -d' ' -f1)" = "$DENSE_SHA" ] ||
      { log "vixdisk cat $d.vmdk gives other bytes than went in"; exit 1; }
    C0_DISK="$W/$d.vmdk"
    cat "$C0_DISK" >/dev/null
    local name=monolithicSparse
    [ "$d" = stream ] && name=streamOptimized
    time_rows "$BYTES" "$name, file: vixdisk" c0_vix_file "$name, file: qemu-img" c0_qemu_file
    time_rows "$BYTES" "$name, discarded: vixdisk" c0_vix_null "$name, discarded: qemu-img" c0_qemu_null
  done
  rm -f "$W/stream.vmdk"
}
