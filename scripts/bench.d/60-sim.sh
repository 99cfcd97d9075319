# shellcheck shell=bash
# Cases 6 and 7: vixfs against the vCenter simulator of tests/vcsim (scripts/vcsim), which keeps
# its datastore under TMPDIR: here the work folder on tmpfs.

# sim_start ENV SAMPLES_DIR ARGS...: starts a simulator whose VMs get SAMPLES_DIR/plan applied.
sim_start() {
  local env=$1 samples=$2
  shift 2
  VCSIM_ENVS+=("$env")
  TMPDIR="$W" VIXFS_VCSIM_CACHE="$BUILD/vcsim" sh "$ROOT/scripts/vcsim" start "$env" -user bench:bench \
    -samples "$samples" "$@" || return 1
  # shellcheck source=/dev/null
  . "$env"
}
sim_stop() { sh "$ROOT/scripts/vcsim" stop "$1" 2>/dev/null || true; }
sim_mount() {  # sim_mount MNT WANT [vixfs args]
  local mnt=$1 want=$2
  shift 2
  VIXFS_PASSWORD=bench vixfs_up "$mnt" "$want" --server "$VCSIM_URL" --user bench \
    --thumbprint "$VCSIM_SHA1" --name sim "$@"
}

c6_vixfs() {
  local rc=0 img="$W/mnt/sim/$C6_VM/current/scsi0-0.img"
  # shellcheck disable=SC2086  # C6_VIXFS_ARGS: e.g. "--config FILE" to try a setting; words wanted
  sim_mount "$W/mnt" "$img" --transports https ${C6_VIXFS_ARGS:-} || { SKIP_WHY="vixfs --server did not mount (see the log)"; return 1; }
  timed dd if="$img" of=/dev/null bs=1M || rc=1
  vixfs_down "$W/mnt"
  return $rc
}
# The same through the vCenter's /folder (vixfs.https.direct = 0).
c6_vixfs_vc() { C6_VIXFS_ARGS="${C6_VIXFS_ARGS:-} --config $W/s6-vc.conf" c6_vixfs; }
c6_curl() { timed curl -sS --fail --cacert "$VCSIM_CERT" -o /dev/null "$C6_URL"; }
# host.log lines of one path ("host GET" or "vcenter GET").
c6_requests() {
  local n
  n=$(grep -c "^$1 " "$VCSIM_HOST_HTTPS_DIR/host.log" 2>/dev/null) || true
  echo "${n:-0}"
}

case_6() {
  md "## 6. HTTPS: ${SIZE_MB} MiB straight from the host, through the vCenter, and curl"
  md
  command -v go >/dev/null || { md "skipped: no Go toolchain for the simulator (scripts/install-deps)"; return; }
  dense_vmdk
  mkdir -p "$W/s6/disks/DC0_H0_VM0"
  cp "$W/dense.vmdk" "$W/s6/disks/DC0_H0_VM0/disk1.vmdk"
  echo "DC0_H0_VM0 disk disk1.vmdk $BYTES" >"$W/s6/plan"
  if ! sim_start "$W/s6.env" "$W/s6" -host-https; then
    md "skipped: the simulator did not start"
    return
  fi
  rm -rf "$W/s6"
  echo 'vixfs.https.direct = "0"' >"$W/s6-vc.conf"
  C6_VM=$VCSIM_VM_DC0_H0_VM0
  C6_URL="https://$VCSIM_HOST:$VCSIM_PORT/folder/DC0_H0_VM0/disk1.vmdk?dcPath=DC0&dsName=LocalDS_0"
  local vmdk_bytes
  # shellcheck disable=SC2154  # from the env file
  vmdk_bytes=$(stat -c %s "$VCSIM_DS_LocalDS_0/DC0_H0_VM0/disk1.vmdk")
  cat "$VCSIM_DS_LocalDS_0/DC0_H0_VM0/disk1.vmdk" >/dev/null
  # Bytes first, on both paths, and each path the one its requests went to.
  local ok=1 host0 host1 vc0 vc1 img="$W/mnt/sim/$C6_VM/current/scsi0-0.img"
  host0=$(c6_requests host) vc0=$(c6_requests vcenter)
  if sim_mount "$W/mnt" "$img" --transports https; then
    [ "$(sha256sum <"$img" | cut -d' ' -f1)" = "$DENSE_SHA" ] || ok=0
    vixfs_down "$W/mnt"
  fi
  host1=$(c6_requests host)
  if sim_mount "$W/mnt" "$img" --transports https --config "$W/s6-vc.conf"; then
    [ "$(sha256sum <"$img" | cut -d' ' -f1)" = "$DENSE_SHA" ] || ok=0
    vixfs_down "$W/mnt"
  fi
  vc1=$(c6_requests vcenter)
  [ "$host1" -gt "$host0" ] && [ "$vc1" -gt "$vc0" ] || ok=0
  md "| tool | s | MB/s | from the host ÷ |"
  md "|---|---|---|---|"
  if [ "$ok" = 1 ]; then
    time_rows "$BYTES" "vixfs https from the host" c6_vixfs "vixfs https through the vCenter" c6_vixfs_vc \
      "curl (vCenter /folder)" c6_curl
  else
    md "| vixfs --transports https | skipped: wrong bytes, or a path not used (host requests $host0 -> $host1, vCenter $vc0 -> $vc1) | | |"
  fi
  md
  md "The disk is the dense monolithicSparse VMDK of case 1 ($vmdk_bytes bytes as a file) placed on VM"
  md "DC0_H0_VM0 through the API (tests/vcsim -samples), the simulator started with -host-https: its"
  md "hosts' /folder is a second listener of the same process that wants a generic service ticket per"
  md "file. vixfs: \`VIXFS_PASSWORD=P vixfs --server \$VCSIM_URL --user U --thumbprint SHA1 --name sim"
  md "--transports https -f MNT\` (from the host, the default), the same with a config file saying"
  md "\`vixfs.https.direct = 0\` (through the vCenter), then"
  md "\`dd if=MNT/sim/$C6_VM/current/scsi0-0.img of=/dev/null bs=1M\`; curl: \`curl -sS --fail --cacert"
  md "CERT -o /dev/null 'https://HOST:PORT/folder/DC0_H0_VM0/disk1.vmdk?dcPath=DC0&dsName=LocalDS_0'\`"
  md "(the VMDK file itself, the bytes vixfs's https transport fetches; the simulator's vCenter /folder"
  md "needs no session cookie without -folder-auth). The ratios are the host path's speed over each"
  md "row's; both simulator paths are one process on this machine, so host ÷ vCenter measures the"
  md "tickets' cost, not a network's. MB/s is of the ${SIZE_MB} MiB disk for all. Target: ≥ 0.8× curl."
  sim_stop "$W/s6.env"
}

# Case 7: INVENTORY_VMS VMs with 3 snapshots each; find MNT -maxdepth 4 right after mounting
# (cold) and again (warm); the SOAP requests are the "Request:" lines of the simulator's -trace
# output written from the mount on.
case_7() {
  local n=$INVENTORY_VMS per=$((INVENTORY_VMS / 2)) i vm
  md "## 7. Inventory: $((per * 2)) VMs × 3 snapshots"
  md
  command -v go >/dev/null || { md "skipped: no Go toolchain for the simulator (scripts/install-deps)"; return; }
  mkdir -p "$W/s7/disks"
  {
    for ((i = 0; i < per; i++)); do
      for vm in "DC0_H0_VM$i" "DC0_C0_RP0_VM$i"; do
        echo "$vm snapshot s1"
        echo "$vm snapshot s2"
        echo "$vm snapshot s3"
      done
    done
  } >"$W/s7/plan"
  log "case 7: starting a simulator with $((per * 2)) VMs and taking $((per * 6)) snapshots"
  local t0=$EPOCHREALTIME
  if ! sim_start "$W/s7.env" "$W/s7" -vm "$per" -trace; then
    md "skipped: the simulator did not start"
    return
  fi
  log "case 7: simulator ready after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
  local trace="$W/s7.env.log" before after cold="" warm="" entries="" rc=0 snaps off
  # Requests from byte offset $off of the trace on; the setup's own requests come before it.
  off=$(stat -c %s "$trace")
  reqs_since() { tail -c +$((off + 1)) "$trace" | grep -c '^Request: ' || true; }
  before=0
  t0=$EPOCHREALTIME
  if sim_mount "$W/mnt" "$W/mnt/sim"; then
    local t1=$EPOCHREALTIME
    local mount_s
    mount_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    local mid
    mid=$(reqs_since)
    t0=$EPOCHREALTIME
    entries=$(find "$W/mnt" -maxdepth 4 | wc -l) || rc=1
    cold=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    after=$(reqs_since)
    t0=$EPOCHREALTIME
    find "$W/mnt" -maxdepth 4 >/dev/null || rc=1
    warm=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    local after2
    after2=$(reqs_since)
    snaps=$(find "$W/mnt/sim" -mindepth 2 -maxdepth 2 -type d -path '*/vm-*/*' | wc -l)
    vixfs_down "$W/mnt"
    local kinds
    kinds=$(tail -c +$((off + 1)) "$trace" | grep -A1 '^Request: ' | grep -oE '<(soapenv:)?Body><[A-Za-z_]+' |
      sed 's/.*Body><//' | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? ", " : ""), $2, $1 }' || true)
    [ -n "${BENCH_KEEP_TRACE:-}" ] && cp "$trace" "$BENCH_KEEP_TRACE"
    md "| what | value |"
    md "|---|---|"
    md "| mount until MNT/sim exists | ${mount_s} s, $((mid - before)) SOAP requests |"
    md "| \`find MNT -maxdepth 4\` cold (first after mounting) | ${cold} s, $entries entries, $((after - mid)) SOAP requests |"
    md "| \`find MNT -maxdepth 4\` warm (again) | ${warm} s, $((after2 - after)) SOAP requests |"
    md "| snapshot folders seen (current + snapshots) | $snaps |"
    md
    md "SOAP requests counted as the \"Request:\" lines the simulator's \`-trace\` writes (its tracing"
    md "itself costs the simulator some time). Requests by method over the whole mount: $kinds."
  else
    md "skipped: vixfs --server did not mount"
  fi
  [ $rc = 0 ] || md "(find reported an error: the numbers above may be incomplete)"
  md
  md "Setup: \`scripts/vcsim start ENV -user U:P -vm $per -trace -samples DIR\`, DIR/plan taking 3 snapshots"
  md "of every VM through the API (CreateSnapshot_Task); mount as in case 6, without --transports."
  md "Target: cold ≤ 2 s with a constant number of SOAP requests per tree level, warm ≤ 0.1 s."
  sim_stop "$W/s7.env"
  rm -rf "$W/s7"
}

# Case 8: the peak RSS (VmHWM, read from /proc/PID/status just before each unmount) of every vixfs
# daemon of cases 1-5, largest per case.
case_8() {
  md "## 8. Peak RSS of vixfs"
  md
  md "| case | peak VmHWM of a vixfs daemon |"
  md "|---|---|"
  local c any=0
  for c in 1 2 3 4 5 6 7; do
    [ -n "${RSS_PEAK[$c]:-}" ] || continue
    any=1
    md "| $c | $(awk -v k="${RSS_PEAK[$c]}" 'BEGIN { printf "%.1f MiB", k / 1024 }') |"
  done
  [ "$any" = 1 ] || md "| — | skipped: none of cases 1–7 ran in this run |"
  md
  md "VmHWM of /proc/PID/status, read just before each unmount (the peak over the daemon's life)."
  md "Case 7's daemon holds the inventory rather than disk data. Target: at most"
  md "vixfs.cache.maxMB (default 256) + 48 MiB."
}
