# shellcheck shell=bash
# Case 10: nbd and nbdssl as VMware's NFC (no vixfs.nbd.server: a ticket from the simulator, then
# the NFC test server `vcsim nfc-serve`, whose bytes come from qemu-nbd) against nbdcopy from a
# qemu-nbd serving the same VMDK file: plain, and with delay_ms=2 in the NFC server's faults file
# against one request in flight. The disk is case 1's dense monolithicSparse VMDK on DC0_H0_VM0.

# The prefix the slow baselines of the delayed part read (MiB).
C10_PREFIX_MB=${C10_PREFIX_MB:-64}

# c10_vixfs TRANSPORT DD_ARGS... : a fresh mount (C10_ARGS: more vixfs arguments), dd of its image.
c10_vixfs() {
  local transport=$1 rc=0 img="$W/mnt/sim/$C10_VM/current/scsi0-0.img"
  shift
  sim_mount "$W/mnt" "$img" --transports "$transport" ${C10_ARGS[@]+"${C10_ARGS[@]}"} ||
    { SKIP_WHY="vixfs --server --transports $transport did not mount (see $W/vixfs.log)"; return 1; }
  timed dd if="$img" of=/dev/null "$@" || rc=1
  vixfs_down "$W/mnt"
  return $rc
}
c10_nbd() { C10_ARGS=(); c10_vixfs nbd bs=1M; }
c10_nbdssl() { C10_ARGS=(); c10_vixfs nbdssl bs=1M; }
# The baselines: one connection, 64 KiB requests, no read-ahead cache; the first over the
# kernel's read-ahead (960 KiB FUSE reads, each 15 requests in flight at once on the connection),
# the second O_DIRECT 64 KiB reads: exactly one request in flight.
c10_one_conn() { C10_ARGS=(--config "$W/nfc-one.conf"); c10_vixfs nbd bs=1M count="$C10_PREFIX_MB"; }
c10_one_req() {
  C10_ARGS=(--config "$W/nfc-one.conf")
  c10_vixfs nbd iflag=direct bs=64k count=$((C10_PREFIX_MB * 16))
}

# A fresh qemu-nbd per run (--shared=4: nbdcopy's 4 connections), -t so that the port probe
# does not end it.
c10_nbdcopy() {
  local port rc=0 pid
  port=$(free_port)
  bg_server "$W/qemu-nbd.log" qemu-nbd -r -f vmdk -t --shared=4 -b 127.0.0.1 -p "$port" "$C10_VMDK"
  pid=$SERVER_PID
  if wait_for port_open "$port"; then
    timed nbdcopy "nbd://127.0.0.1:$port" null: || rc=1
  else
    # shellcheck disable=SC2034  # read by time_rows (lib.sh)
    SKIP_WHY="qemu-nbd did not start: $(tail -n 1 "$W/qemu-nbd.log")"
    rc=1
  fi
  stop_pid "$pid"
  return $rc
}

# c10_speedup ROW_A ROW_B: how many times faster (bytes per second) row A was than row B.
c10_speedup() {
  local a=${RESULT_MEDIAN[10:$1]:-} b=${RESULT_MEDIAN[10:$2]:-}
  if [ -z "$a" ] || [ -z "$b" ]; then echo "n/a"; return; fi
  awk -v a="$a" -v b="$b" -v ab="${ROW_BYTES[$1]:-$BYTES}" -v bb="${ROW_BYTES[$2]:-$BYTES}" \
    'BEGIN { if (a * bb == 0) print "n/a"; else printf "%.2f×", ab * b / (a * bb) }'
}

case_10() {
  md "## 10. NFC: ${SIZE_MB} MiB through the simulator's NFC server, dd bs=1M"
  md
  command -v go >/dev/null || { md "skipped: no Go toolchain for the simulator (scripts/install-deps)"; return; }
  local t
  for t in qemu-nbd nbdcopy; do
    command -v "$t" >/dev/null || { md "skipped: $t is not installed"; return; }
  done
  dense_vmdk
  mkdir -p "$W/s10/disks/DC0_H0_VM0"
  cp "$W/dense.vmdk" "$W/s10/disks/DC0_H0_VM0/disk1.vmdk"
  echo "DC0_H0_VM0 disk disk1.vmdk $BYTES" >"$W/s10/plan"
  if ! sim_start "$W/s10.env" "$W/s10" -nfc; then
    md "skipped: the simulator did not start with -nfc"
    return
  fi
  rm -rf "$W/s10"
  # shellcheck disable=SC2154  # from the env file
  C10_VM=$VCSIM_VM_DC0_H0_VM0
  # shellcheck disable=SC2154
  C10_VMDK="$VCSIM_DS_LocalDS_0/DC0_H0_VM0/disk1.vmdk"
  # shellcheck disable=SC2154
  local faults="$VCSIM_NFC_DIR/faults" vmdk_bytes
  vmdk_bytes=$(stat -c %s "$C10_VMDK")
  cat "$C10_VMDK" >/dev/null
  printf 'vixfs.nfc.connections = 1\nvixfs.nfc.maxRequestKB = 64\nvixDiskLib.disklib.EnableCache = 0\n' \
    >"$W/nfc-one.conf"
  rm -f "$faults"

  # Bytes first, through both transports.
  local ok=1 tr img="$W/mnt/sim/$C10_VM/current/scsi0-0.img"
  for tr in nbd nbdssl; do
    if sim_mount "$W/mnt" "$img" --transports "$tr"; then
      [ "$(sha256sum <"$img" | cut -d' ' -f1)" = "$DENSE_SHA" ] || { log "case 10: $tr shows other bytes"; ok=0; }
      grep -q "\"transport\": \"$tr (nfc)\"" "$W/mnt/sim/$C10_VM/current/snapshot.json" 2>/dev/null ||
        log "case 10: snapshot.json does not name transport $tr"
      vixfs_down "$W/mnt"
    else
      ok=0
    fi
  done

  [ "$C10_PREFIX_MB" -le "$SIZE_MB" ] || C10_PREFIX_MB=$SIZE_MB
  local nbd="vixfs --transports nbd (NFC)" ssl="vixfs --transports nbdssl (NFC, TLS)"
  local copy="nbdcopy from qemu-nbd -r -f vmdk"
  local one="vixfs nbd, 1 connection, 64 KiB requests, no cache: dd bs=1M, first ${C10_PREFIX_MB} MiB"
  local req="the same, dd iflag=direct bs=64k (one request in flight), first ${C10_PREFIX_MB} MiB"
  local prefix_bytes=$((C10_PREFIX_MB << 20))
  ROW_BYTES=(["$one"]=$prefix_bytes ["$req"]=$prefix_bytes)

  md "### plain"
  md
  md "| tool | s | MB/s | vixfs ÷ |"
  md "|---|---|---|---|"
  if [ "$ok" = 1 ]; then
    time_rows "$BYTES" "$nbd" c10_nbd "$ssl" c10_nbdssl "$copy" c10_nbdcopy
    md
    md "Speed over nbdcopy's (target ≥ 0.8×): nbd $(c10_speedup "$nbd" "$copy"), nbdssl $(c10_speedup "$ssl" "$copy")."
  else
    md "| vixfs over NFC | skipped: did not mount or read other bytes than the disk holds (see the log) | | |"
  fi
  md
  md "### with \`delay_ms=2\` in the NFC server's faults file (2 ms of latency per IO request)"
  md
  md "| tool | s | MB/s | vixfs ÷ |"
  md "|---|---|---|---|"
  if [ "$ok" = 1 ]; then
    echo "delay_ms=2" >"$faults"
    time_rows "$BYTES" "$nbd" c10_nbd "$ssl" c10_nbdssl "$one" c10_one_conn "$req" c10_one_req
    rm -f "$faults"
    md
    md "Speed of nbd with the defaults over the baselines (target ≥ 8× one request in flight):"
    md "$(c10_speedup "$nbd" "$req") over one request in flight, $(c10_speedup "$nbd" "$one") over one connection"
    md "with 64 KiB requests and no cache behind the kernel's read-ahead. The test server sleeps 2 ms"
    md "once per request, before its reply (a read's first fragment); requests in flight wait at the"
    md "same time."
  else
    md "| vixfs over NFC | skipped: see the plain part | | |"
  fi
  ROW_BYTES=()
  md
  md "The disk is the dense monolithicSparse VMDK of case 1 ($vmdk_bytes bytes as a file) placed on VM"
  md "DC0_H0_VM0 (tests/vcsim -samples); the simulator runs with \`-nfc\`: vixfs asks its NfcService for"
  md "a ticket and reads from \`vcsim nfc-serve\` on 127.0.0.1, whose bytes come from one \`qemu-nbd -f vmdk"
  md "--shared=16 -r\` per disk file that all its NFC connections share (started at the first OPEN_FILE,"
  md "on a Unix socket), over a pool of up to 8 NBD connections. vixfs:"
  md "\`VIXFS_PASSWORD=P vixfs --server \$VCSIM_URL --user U --thumbprint SHA1 --name sim --transports"
  md "nbd|nbdssl [--config C] -f MNT\` (no vixfs.nbd.server: NFC; defaults vixfs.nfc.connections 2,"
  md "vixfs.nfc.maxRequestKB 2048, the read-ahead cache on), then \`dd if=MNT/sim/$C10_VM/current/scsi0-0.img"
  md "of=/dev/null bs=1M\`. The baselines' C: \`vixfs.nfc.connections = 1\`, \`vixfs.nfc.maxRequestKB = 64\`,"
  md "\`vixDiskLib.disklib.EnableCache = 0\`; they read the first ${C10_PREFIX_MB} MiB only (\`count=\`), so"
  md "their rows and ratios compare bytes per second. nbdcopy: \`qemu-nbd -r -f vmdk -t --shared=4 -b"
  md "127.0.0.1 -p PORT VMDK\` (fresh for every run) and \`nbdcopy nbd://127.0.0.1:PORT null:\`: what the"
  md "NFC server's own source delivers without NFC, TCP or FUSE. Every vixfs run gets a fresh mount and"
  md "fresh NFC connections (and so a fresh qemu-nbd behind them). The"
  md "server side of the NFC rows (that qemu-nbd and \`vcsim nfc-serve\`) runs on the same"
  md "cores as vixfs: on a small machine it takes most of the CPU time of these rows."
  sim_stop "$W/s10.env"
}
