# shellcheck shell=bash
# Cases 1, 2, 4, 5: local VMDKs through FUSE, vixfs --local against vmdkmount (libvmdk-utils).
# Every run mounts afresh and unmounts after, so neither daemon starts with anything cached; only
# the read is timed. The VMDK itself sits on tmpfs, read once before (warm).

# local_run TOOL DISK CMD...: mounts DISK with TOOL (vixfs|vmdkmount), runs CMD with @IMG@
# replaced by the disk's raw file in the mount, times it, unmounts.
local_run() {
  local tool=$1 disk=$2 mnt="$W/mnt" img
  shift 2
  if [ "$tool" = vixfs ]; then
    img="$mnt/$(basename "$disk" .vmdk).img"
    # shellcheck disable=SC2086  # "--config FILE", a path in the work folder: words wanted
    vixfs_up "$mnt" "$img" --local "$disk" ${VIXFS_LOCAL_ARGS:-} || { SKIP_WHY="vixfs --local did not mount"; return 1; }
  else
    command -v vmdkmount >/dev/null || { SKIP_WHY="vmdkmount is not installed (libvmdk-utils)"; return 1; }
    img="$mnt/vmdk1"
    vmdkmount_up "$disk" "$mnt" || { SKIP_WHY="vmdkmount did not mount"; return 1; }
  fi
  local args=() a rc=0
  for a in "$@"; do args+=("${a//@IMG@/$img}"); done
  timed "${args[@]}" || rc=1
  if [ "$tool" = vixfs ]; then vixfs_down "$mnt"; else fuse_down "$mnt"; fi
  return $rc
}

c1_vixfs() { local_run vixfs "$W/dense.vmdk" dd if=@IMG@ of=/dev/null bs="$C1_BS"; }
c1_vixfs_filecache() {
  VIXFS_LOCAL_ARGS="--config $W/filecache.conf" local_run vixfs "$W/dense.vmdk" dd if=@IMG@ of=/dev/null bs="$C1_BS"
}
c1_vmdkmount() { local_run vmdkmount "$W/dense.vmdk" dd if=@IMG@ of=/dev/null bs="$C1_BS"; }
c1_qemu() { timed qemu-img convert -n -f vmdk "$W/dense.vmdk" --target-image-opts "driver=null-co,size=$BYTES"; }

dd_case() {
  local bs=$1
  dense_vmdk
  cat "$W/dense.vmdk" >/dev/null
  printf 'vixfs.cache.fileTransport = 1\n' >"$W/filecache.conf"
  # Bytes first, through the mount.
  local sum
  if vixfs_up "$W/mnt" "$W/mnt/dense.img" --local "$W/dense.vmdk"; then
    sum=$(sha256sum <"$W/mnt/dense.img" | cut -d' ' -f1)
    vixfs_down "$W/mnt"
    [ "$sum" = "$DENSE_SHA" ] || { log "vixfs shows other bytes than the disk holds"; exit 1; }
  fi
  md "| tool | s | MB/s | vixfs ÷ |"
  md "|---|---|---|---|"
  C1_BS=$bs
  time_rows "$BYTES" "vixfs --local" c1_vixfs "vixfs --local, cache in front of the file" c1_vixfs_filecache \
    vmdkmount c1_vmdkmount "qemu-img convert -n" c1_qemu
  md
  md "Commands: \`vixfs --local DISK.vmdk -f MNT\` then \`dd if=MNT/dense.img of=/dev/null bs=$bs\`;"
  md "the same with \`--config C\`, C holding \`vixfs.cache.fileTransport = 1\` (the read-ahead cache,"
  md "which vixfs leaves out for local files by default, in front of the file);"
  md "\`vmdkmount DISK.vmdk MNT\` then \`dd if=MNT/vmdk1 of=/dev/null bs=$bs\`;"
  md "\`qemu-img convert -n -f vmdk DISK.vmdk --target-image-opts driver=null-co,size=$BYTES\`."
  if [ "$bs" = 1M ]; then
    md "Target: ≥ 3× vmdkmount, ≥ 1× qemu-img convert."
  else
    md "qemu-img convert has no block size to set: the same command as in case 1, for reference."
  fi
}

case_1() {
  md "## 1. Local dense ${SIZE_MB} MiB monolithicSparse VMDK, dd bs=1M"
  md
  dd_case 1M
}
case_2() {
  md "## 2. Local dense ${SIZE_MB} MiB monolithicSparse VMDK, dd bs=4k"
  md
  dd_case 4k
  local one=${RESULT_MEDIAN["1:vixfs --local"]:-} four=${RESULT_MEDIAN["2:vixfs --local"]:-}
  if [ -n "$one" ] && [ -n "$four" ]; then
    md
    md "vixfs with bs=4k reads at $(ratio "$one" "$four")× its bs=1M speed of case 1 (medians of this run;"
    md "target: ≥ 0.8×)."
  fi
}

# Case 4: a sparse disk, 16 GiB with 256 MiB of data at SIZE_MB=1024 (both scale with SIZE_MB),
# copied out with cp --sparse=always. vmdkmount reads every zero: one run of it is enough.
c4_copy() {
  local tool=$1 rc=0
  local_run "$tool" "$W/sparse.vmdk" cp --sparse=always @IMG@ "$W/copy.raw" || rc=1
  rm -f "$W/copy.raw"
  return $rc
}
c4_vixfs() { c4_copy vixfs; }
c4_vmdkmount() { c4_copy vmdkmount; }

case_4() {
  local disk_mb=$((16 * SIZE_MB)) data_mb=$((SIZE_MB / 4)) i
  local pieces=$((data_mb / 4))
  [ "$pieces" -ge 1 ] || pieces=1
  log "making a sparse ${disk_mb} MiB disk with ${data_mb} MiB of data"
  truncate -s "${disk_mb}M" "$W/sparse.raw"
  # 4 MiB pieces spread evenly over the disk.
  for ((i = 0; i < pieces; i++)); do
    dd if=/dev/urandom of="$W/sparse.raw" bs=4M count=1 seek=$((i * disk_mb / 4 / pieces)) conv=notrunc,sparse status=none
  done
  qemu-img convert -O vmdk -o subformat=monolithicSparse "$W/sparse.raw" "$W/sparse.vmdk"
  rm -f "$W/sparse.raw"
  cat "$W/sparse.vmdk" >/dev/null
  md "## 4. Sparse: ${disk_mb} MiB disk holding ${data_mb} MiB of data, cp --sparse=always"
  md
  md "| tool | s | MB/s (of the disk's size) | vixfs ÷ |"
  md "|---|---|---|---|"
  MAX_REPS["vmdkmount"]=1
  time_rows "$((disk_mb * 1024 * 1024))" "vixfs --local" c4_vixfs vmdkmount c4_vmdkmount
  unset 'MAX_REPS["vmdkmount"]'
  md
  md "Commands: \`cp --sparse=always MNT/sparse.img OUT\` (vixfs) and \`cp --sparse=always MNT/vmdk1 OUT\`"
  md "(vmdkmount, 1 run: it reads every zero), OUT on tmpfs, deleted after each run. Target:"
  md "≥ 30× vmdkmount."
  rm -f "$W/sparse.vmdk"
}

# Case 5: fio random 4 KiB reads, 4 jobs, FIO_SECONDS; IOPS and p99 completion latency.
c5_fio() {
  local tool=$1 disk=$2 mnt="$W/mnt" img out="$W/fio.json"
  if [ "$tool" = vixfs ]; then
    img="$mnt/$(basename "$disk" .vmdk).img"
    # shellcheck disable=SC2086  # C5_VIXFS_ARGS: e.g. "--config FILE" to try a setting; words wanted
    vixfs_up "$mnt" "$img" --local "$disk" ${C5_VIXFS_ARGS:-} || { SKIP_WHY="vixfs --local did not mount"; return 1; }
  else
    command -v vmdkmount >/dev/null || { SKIP_WHY="vmdkmount is not installed (libvmdk-utils)"; return 1; }
    img="$mnt/vmdk1"
    vmdkmount_up "$disk" "$mnt" || { SKIP_WHY="vmdkmount did not mount"; return 1; }
  fi
  local rc=0
  fio --name=rand --filename="$img" --readonly --rw=randread --bs=4k --numjobs=4 --ioengine=psync \
    --direct="${C5_DIRECT:-0}" --time_based --runtime="$FIO_SECONDS" --group_reporting --output-format=json >"$out" 2>>"$W/cmd.log" || rc=1
  if [ "$tool" = vixfs ]; then vixfs_down "$mnt"; else fuse_down "$mnt"; fi
  [ $rc = 0 ] || { SKIP_WHY="fio failed: $(tail -n 1 "$W/cmd.log")"; return 1; }
  C5_OUT=$(jq -r '.jobs[0].read | "\(.iops) \(.clat_ns.percentile["99.000000"] // 0)"' "$out")
}

case_5() {
  md "## 5. Random 4 KiB reads (fio, 4 jobs, ${FIO_SECONDS} s)"
  md
  if ! command -v fio >/dev/null; then
    md "skipped: fio is not installed (scripts/install-deps installs it)"
    return
  fi
  dense_vmdk
  cat "$W/dense.vmdk" >/dev/null
  # Page-cached reads mostly measure the kernel's page cache (fio drops it between passes, and
  # vmdkmount's pages are not kept at all); O_DIRECT sends every 4 KiB read to the daemon.
  local r tool a b mode
  declare -A I=() L=()
  for ((r = 1; r <= REPS; r++)); do
    for mode in 0 1; do
      for tool in vixfs vmdkmount; do
        SKIP_WHY=""
        if C5_DIRECT=$mode c5_fio "$tool" "$W/dense.vmdk"; then
          read -r a b <<<"$C5_OUT"
          I[$mode$tool]+=" $(awk -v n="$a" 'BEGIN { printf "%.0f", n }')"
          L[$mode$tool]+=" $(awk -v n="$b" 'BEGIN { printf "%.3f", n / 1e6 }')"
          log "case 5: $tool direct=$mode run $r: $a IOPS, p99 $b ns"
        else
          log "case 5: $tool direct=$mode run $r failed"
        fi
      done
    done
  done
  md "| reads | tool | IOPS | p99 latency ms | vixfs IOPS ÷ |"
  md "|---|---|---|---|---|"
  local vi m mn mx lm lmn lmx label
  for mode in 0 1; do
    vi=""
    label="page cache"
    [ "$mode" = 1 ] && label="O_DIRECT"
    for tool in vixfs vmdkmount; do
      if [ -z "${I[$mode$tool]:-}" ]; then
        md "| $label | $tool | skipped: fio through $tool failed (see the log) | | |"
        continue
      fi
      read -r m mn mx <<<"$(stats "${I[$mode$tool]}")"
      read -r lm lmn lmx <<<"$(stats "${L[$mode$tool]}")"
      [ "$tool" = vixfs ] && vi=$m
      local rat="—"
      [ "$tool" != vixfs ] && [ -n "$vi" ] && rat="$(ratio "$vi" "$m")×"
      md "| $label | $tool | $(printf '%.0f (%.0f–%.0f)' "$m" "$mn" "$mx") | $lm ($lmn–$lmx) | $rat |"
    done
  done
  md
  md "Command: \`fio --name=rand --filename=IMG --readonly --rw=randread --bs=4k --numjobs=4"
  md "--ioengine=psync --direct=D --time_based --runtime=$FIO_SECONDS --group_reporting --output-format=json\`,"
  md "D = 0 (page cache) or 1 (O_DIRECT), IMG ="
  md "MNT/dense.img (vixfs --local) or MNT/vmdk1 (vmdkmount), a fresh mount per run; p99 is fio's"
  md "completion latency percentile. Target: ≥ 1.5× vmdkmount's IOPS."
}
