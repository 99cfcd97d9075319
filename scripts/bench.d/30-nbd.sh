# shellcheck shell=bash
# Case 3: a raw disk of SIZE_MB exported by `nbdkit file`, plain and behind
# `--filter=delay rdelay=2ms`, read with dd bs=128k: vixfs (a local connection with
# vixfs.nbd.server, --transports nbd) vs nbdfuse vs nbdfuse over nbdkit's readahead and cache
# filters vs nbdcopy to null:. Every run starts a fresh nbdkit, so no server-side cache is warm
# either (the raw file itself is on tmpfs and warm).

# nbd_server FILTERS...: starts nbdkit with those filter/param words; sets NBD_PORT, NBD_PID.
nbd_server() {
  local pre=() post=() a
  for a in "$@"; do
    case "$a" in --filter=*) pre+=("$a") ;; *) post+=("$a") ;; esac
  done
  NBD_PORT=$(free_port)
  bg_server "$W/nbdkit.log" nbdkit -f -i 127.0.0.1 -p "$NBD_PORT" "${pre[@]}" file file="$W/nbd/disk.vmdk" "${post[@]}"
  NBD_PID=$SERVER_PID
  wait_for port_open "$NBD_PORT" || { SKIP_WHY="nbdkit did not start: $(tail -n 1 "$W/nbdkit.log")"; stop_pid "$NBD_PID"; return 1; }
}

c3_vixfs() {
  nbd_server ${C3_DELAY[@]+"${C3_DELAY[@]}"} || return 1
  printf 'vixfs.nbd.server = 127.0.0.1:%s\nvixfs.nbd.export = "{file}"\n' "$NBD_PORT" >"$W/nbd.conf"
  local rc=0
  if vixfs_up "$W/mnt" "$W/mnt/disk.img" --local "$W/nbddesc/disk.vmdk" --transports nbd --config "$W/nbd.conf"; then
    timed dd if="$W/mnt/disk.img" of=/dev/null bs=128k || rc=1
    vixfs_down "$W/mnt"
  else
    SKIP_WHY="vixfs --transports nbd did not mount (nbd transport missing? see $W/vixfs.log)"
    rc=1
  fi
  stop_pid "$NBD_PID"
  return $rc
}

c3_nbdfuse_on() {
  local rc=0 mnt="$W/mnt"
  nbd_server "$@" || return 1
  mkdir -p "$mnt"
  MOUNTS+=("$mnt")
  bg_server "$W/nbdfuse.log" nbdfuse "$mnt/x" "nbd://127.0.0.1:$NBD_PORT"
  local fpid=$SERVER_PID
  if wait_for test -s "$mnt/x"; then
    timed dd if="$mnt/x" of=/dev/null bs=128k || rc=1
  else
    SKIP_WHY="nbdfuse did not mount: $(tail -n 1 "$W/nbdfuse.log")"
    rc=1
  fi
  fuse_down "$mnt"
  stop_pid "$fpid"
  stop_pid "$NBD_PID"
  return $rc
}
c3_nbdfuse() { c3_nbdfuse_on ${C3_DELAY[@]+"${C3_DELAY[@]}"}; }
c3_nbdfuse_cache() {
  c3_nbdfuse_on --filter=readahead --filter=cache ${C3_DELAY[@]+"${C3_DELAY[@]}"} cache-min-block-size=1M
}
c3_nbdcopy() {
  nbd_server ${C3_DELAY[@]+"${C3_DELAY[@]}"} || return 1
  local rc=0
  timed nbdcopy "nbd://127.0.0.1:$NBD_PORT" null: || rc=1
  stop_pid "$NBD_PID"
  return $rc
}

case_3() {
  md "## 3. NBD: ${SIZE_MB} MiB from nbdkit, dd bs=128k"
  md
  local t
  for t in nbdkit nbdfuse nbdcopy; do
    command -v "$t" >/dev/null || { md "skipped: $t is not installed"; return; }
  done
  mkdir -p "$W/nbd" "$W/nbddesc"
  head -c "$BYTES" /dev/urandom >"$W/nbd/disk.vmdk"
  local sum
  sum=$(sha256sum <"$W/nbd/disk.vmdk" | cut -d' ' -f1)
  # vixfs --local wants a .vmdk with a descriptor to list; through --transports nbd its bytes come
  # from the export named by the template ({file} = disk.vmdk; nbdkit's file= ignores the name).
  printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW %s FLAT "disk-flat.vmdk" 0\n' \
    $((BYTES / 512)) >"$W/nbddesc/disk.vmdk"
  # Bytes first: the mount must show what nbdkit serves.
  C3_DELAY=()
  local vixfs_ok=1
  if nbd_server; then
    printf 'vixfs.nbd.server = 127.0.0.1:%s\nvixfs.nbd.export = "{file}"\n' "$NBD_PORT" >"$W/nbd.conf"
    if vixfs_up "$W/mnt" "$W/mnt/disk.img" --local "$W/nbddesc/disk.vmdk" --transports nbd --config "$W/nbd.conf"; then
      [ "$(sha256sum <"$W/mnt/disk.img" | cut -d' ' -f1)" = "$sum" ] || { log "vixfs over nbd shows other bytes"; vixfs_ok=0; }
      vixfs_down "$W/mnt"
    fi
    stop_pid "$NBD_PID"
  fi
  local label
  for label in plain delay; do
    C3_DELAY=()
    [ "$label" = delay ] && C3_DELAY=(--filter=delay rdelay=2ms)
    md "### $([ "$label" = delay ] && echo 'with `--filter=delay rdelay=2ms`' || echo plain)"
    md
    md "| tool | s | MB/s | vixfs ÷ |"
    md "|---|---|---|---|"
    if [ "$vixfs_ok" = 0 ]; then
      md "| vixfs --transports nbd | skipped: read other bytes than nbdkit serves | | |"
      continue
    fi
    time_rows "$BYTES" "vixfs --transports nbd" c3_vixfs "nbdfuse" c3_nbdfuse \
      "nbdfuse, nbdkit readahead+cache" c3_nbdfuse_cache "nbdcopy to null:" c3_nbdcopy
    md
  done
  local d='[--filter=delay]'
  md "Server, fresh for every run: \`nbdkit -f -i 127.0.0.1 -p PORT $d file file=RAW [rdelay=2ms]\`;"
  md "for the third row \`nbdkit ... --filter=readahead --filter=cache $d file file=RAW cache-min-block-size=1M\`."
  md "Clients: \`vixfs --local DESC.vmdk --transports nbd --config C -f MNT\` (C: \`vixfs.nbd.server ="
  md "127.0.0.1:PORT\`, \`vixfs.nbd.export = \"{file}\"\`; DESC.vmdk a descriptor naming the disk) then"
  md "\`dd if=MNT/disk.img of=/dev/null bs=128k\`; \`nbdfuse MNT/x nbd://127.0.0.1:PORT\` then"
  md "\`dd if=MNT/x of=/dev/null bs=128k\`; \`nbdcopy nbd://127.0.0.1:PORT null:\`."
  md "Targets: with delay ≥ 8× nbdfuse and ≥ 2× nbdfuse over readahead+cache; plain ≥ 0.8× nbdcopy."
  rm -rf "$W/nbd" "$W/nbddesc"
}
