# shellcheck shell=bash
# scripts/bench.d/lib.sh: helpers shared by the cases (sourced by scripts/bench).
# Everything started here is registered so that the EXIT trap of scripts/bench can undo it:
# MOUNTS (mount points), PIDS (servers and daemons), VCSIM_ENVS (simulators).

MOUNTS=()
PIDS=()
VCSIM_ENVS=()

log() { echo "bench: $*" >&2; }

cleanup() {
  local m p e
  for m in "${MOUNTS[@]}"; do
    mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || fusermount -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
  done
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  for e in "${VCSIM_ENVS[@]}"; do
    if [ -e "$e.pid" ] || [ -e "$e.pid.start" ]; then
      sh "$ROOT/scripts/vcsim" stop "$e" 2>/dev/null || true
    fi
  done
  # Anything still mounted under the work folder (a mount made by a helper that failed early).
  if [ -n "${W:-}" ]; then
    awk -v w="$W" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
      fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  fi
  [ -n "${W:-}" ] && [ -d "$W" ] && rm -rf "$W"
}

forget_pid() {
  local p=$1 i
  for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$p" ] && unset 'PIDS[i]'; done
  return 0
}

# stats "v1 v2 ...": "median min max"
stats() {
  tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f", m, v[1], v[NR] }'
}
mbps() { awk -v s="$1" -v b="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
# ratio A B: A / B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for TEST_CMD... : up to 30 s
wait_for() {
  local i
  for i in $(seq 300); do
    "$@" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- vixfs mounts -------------------------------------------------------------------------------
# vixfs_up MNT FILE_IN_MOUNT ARGS...: starts vixfs in the foreground (so its PID is ours), waits
# until FILE_IN_MOUNT exists. Sets VIXFS_PID. The log goes to $W/vixfs.log.
vixfs_up() {
  local mnt=$1 want=$2
  shift 2
  mkdir -p "$mnt"
  MOUNTS+=("$mnt")
  "$VIXFS" "$@" -f "$mnt" >>"$W/vixfs.log" 2>&1 &
  VIXFS_PID=$!
  PIDS+=("$VIXFS_PID")
  # Stop waiting as soon as the daemon is gone (a mount error), not only after the timeout.
  # or has mounted without that file (a disk left out: the log says why).
  wait_for sh -c 'test -e "$1" || ! kill -0 "$2" || grep -q "vixfs\[$2\]: mounted " "$3"' \
    sh "$want" "$VIXFS_PID" "$W/vixfs.log" || true
  sleep 0.2
  if ! test -e "$want" || ! kill -0 "$VIXFS_PID" 2>/dev/null; then
    log "vixfs did not show $want; log tail:"
    tail -n 5 "$W/vixfs.log" >&2
    vixfs_down "$mnt"
    return 1
  fi
}
# vixfs_down MNT: records the daemon's peak RSS (VmHWM, KiB) in VIXFS_HWM_KB, unmounts, waits.
vixfs_down() {
  local mnt=$1
  VIXFS_HWM_KB=$(awk '/^VmHWM/ { print $2 }' "/proc/$VIXFS_PID/status" 2>/dev/null || echo 0)
  [ -n "$VIXFS_HWM_KB" ] || VIXFS_HWM_KB=0
  # The mount's own account of the run (stats.json), the last run's per case, when it has one.
  if [ -f "$mnt/.vixfs/stats.json" ]; then
    mkdir -p "$W/stats"
    cp "$mnt/.vixfs/stats.json" "$W/stats/${CUR_CASE:-x}.json" 2>/dev/null || true
  fi
  fusermount3 -u "$mnt" 2>/dev/null || fusermount -u "$mnt" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$VIXFS_PID" 2>/dev/null || break; sleep 0.1; done
  kill "$VIXFS_PID" 2>/dev/null || true
  wait "$VIXFS_PID" 2>/dev/null || true
  forget_pid "$VIXFS_PID"
  note_rss "$VIXFS_HWM_KB"
}
# Peak RSS per case (case 8).
declare -A RSS_PEAK=()
note_rss() {
  local k=${CUR_CASE:-?}
  [ "${RSS_PEAK[$k]:-0}" -lt "$1" ] && RSS_PEAK[$k]=$1
  return 0
}

# --- vmdkmount ----------------------------------------------------------------------------------
vmdkmount_up() {
  local disk=$1 mnt=$2
  mkdir -p "$mnt"
  MOUNTS+=("$mnt")
  vmdkmount "$disk" "$mnt" >>"$W/vmdkmount.log" 2>&1 || { log "vmdkmount failed: $(tail -n 3 "$W/vmdkmount.log")"; return 1; }
  wait_for test -e "$mnt/vmdk1" || { log "vmdkmount: no $mnt/vmdk1"; return 1; }
}
fuse_down() {
  fusermount3 -u "$1" 2>/dev/null || fusermount -u "$1" 2>/dev/null || true
  wait_for sh -c "! mountpoint -q '$1'" || true
}

# --- servers ------------------------------------------------------------------------------------
# bg_server LOG CMD...: starts CMD in the background; sets SERVER_PID.
bg_server() {
  local logf=$1
  shift
  "$@" >>"$logf" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
}
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- result rows --------------------------------------------------------------------------------
# Each case appends markdown to $W/md/<case>.md; scripts/bench concatenates them.
md() { printf '%s\n' "$*" >>"$W/md/$CUR_CASE.md"; }

# time_rows BYTES NAME1 FN1 NAME2 FN2 ...: runs every FN once per repetition, alternating,
# REPS times (MAX_REPS[NAME] caps a slow competitor). FN sets RUN_T (seconds) and returns 0, or
# sets SKIP_WHY and returns 1 (then that competitor is reported as skipped, not retried). FNs
# run in this shell, not a subshell, so what they start is known to the EXIT trap. The first pair
# is vixfs: the ratio column is its speed over each competitor's (above 1: vixfs is faster).
# ROW_BYTES[NAME] gives a row that reads another amount than BYTES (a prefix of the disk): its
# MB/s and the ratio are then of bytes per second, not of times.
declare -A TIMES=() FAILED=() MAX_REPS=() ROW_BYTES=()
time_rows() {
  local bytes=$1
  shift
  local names=() fns=() i r
  while [ $# -gt 0 ]; do names+=("$1"); fns+=("$2"); shift 2; done
  TIMES=() FAILED=()
  for ((r = 1; r <= REPS; r++)); do
    for i in "${!fns[@]}"; do
      [ -n "${FAILED[$i]:-}" ] && continue
      [ "$r" -gt "${MAX_REPS[${names[$i]}]:-$REPS}" ] && continue
      SKIP_WHY="" RUN_T=""
      if "${fns[$i]}" && [ -n "$RUN_T" ]; then
        TIMES[$i]+=" $RUN_T"
        log "case $CUR_CASE: ${names[$i]} run $r: ${RUN_T}s"
      else
        FAILED[$i]=${SKIP_WHY:-failed, see the logs}
        log "case $CUR_CASE: ${names[$i]}: ${FAILED[$i]}"
      fi
    done
  done
  local vm="" vb=${ROW_BYTES[${names[0]}]:-$bytes} m mn mx n rat b
  [ -z "${FAILED[0]:-}" ] && read -r vm _ _ <<<"$(stats "${TIMES[0]}")"
  for i in "${!fns[@]}"; do
    if [ -n "${FAILED[$i]:-}" ]; then
      md "| ${names[$i]} | skipped: ${FAILED[$i]} | | |"
      continue
    fi
    read -r m mn mx <<<"$(stats "${TIMES[$i]}")"
    b=${ROW_BYTES[${names[$i]}]:-$bytes}
    rat="—"
    # vixfs's bytes per second over this row's: the ratio of the times when both read as much.
    [ "$i" -gt 0 ] && [ -n "$vm" ] &&
      rat="$(awk -v m="$m" -v vm="$vm" -v vb="$vb" -v b="$b" \
        'BEGIN { if (vm * b == 0) print "n/a"; else printf "%.2f", m * vb / (vm * b) }')×"
    n=$(wc -w <<<"${TIMES[$i]}")
    md "| ${names[$i]} | $m ($mn–$mx), n=$n | $(mbps "$m" "$b") | $rat |"
    RESULT_MEDIAN[${CUR_CASE}:${names[$i]}]=$m
  done
}
declare -A RESULT_MEDIAN=()
# timed CMD...: runs CMD with its output discarded, RUN_T = its wall time; fails with SKIP_WHY.
timed() {
  local t0=$EPOCHREALTIME
  if ! "$@" >/dev/null 2>>"$W/cmd.log"; then
    SKIP_WHY="\`$*\` failed: $(tail -n 1 "$W/cmd.log")"
    return 1
  fi
  RUN_T=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f", b - a }')
}
