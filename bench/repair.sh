#!/usr/bin/env bash
# bench/repair.sh (npm run bench:repair) - time to heal after kill -9 of one of 4 data nodes,
# strata and MooseFS in one run, same machine, loopback only. Prints "name value unit" lines:
#   repair_seconds_strata, repair_mb_per_s_strata, repair_seconds_moosefs, repair_ratio, and
#   repair_detect_seconds_strata / repair_first_copy_seconds_strata / repair_copy_phase_seconds_strata
#   (kill to the leader's node-dead event, kill to its first 'repaired' event, and from then to
#   the end: detection and scheduling vs copying; the events carry the leader's clock, so these do
#   not depend on how slowly the polls answer), repair_last_copy_seconds_strata (kill to the last
#   copy recorded, by the same clock; repair_seconds_strata ends at the poll that saw it healed)
#   (ratio = MooseFS seconds / strata seconds: above 1 means strata healed faster).
#
# strata: `cluster up --datanodes 4` (embedded metadata, RF=3), SIZE written with `strata put`,
#         wait until `strata health` shows every chunk at 3 copies, kill -9 data node dn1, poll
#         `strata health --json` until nothing is under-replicated or missing. The coordinator
#         learns of the death as MooseFS does, from the node's dropped connection (its NodeLink
#         stream) and a refused probe; the grace period (STRATA_DEAD_AFTER_MS, 5000 by default)
#         is only the fallback for silent nodes.
# MooseFS: ../shared/bench/moosefs-up.sh 4, then moosefs-repair.sh (kill -9 of cs1), moosefs-down.sh.
# Env: SIZE (1G), SKIP=strata|moosefs, PORT (7450: the coordinator; data nodes take the next 4), PEER (/tmp/peer-repair, recreated), MAXWAIT (s, 900), STRATA_DEAD_AFTER_MS.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
SIZE=${SIZE:-1G}; SKIP=${SKIP:-}; MAXWAIT=${MAXWAIT:-900}
export PEER=${PEER:-/tmp/peer-repair} STRATA_DEAD_AFTER_MS=${STRATA_DEAD_AFTER_MS:-5000}
PORT=${PORT:-7450}; COORD=127.0.0.1:$PORT
CLI=(node "$ROOT/dist/cli/main.js")
log() { echo "[bench:repair $(date -u +%H:%M:%S)] $*" >&2; }
[ -f "$ROOT/dist/cli/main.js" ] || { log "dist/cli/main.js missing: run npm run build first"; exit 1; }

WORK=$(mktemp -d /tmp/strata-repairbench.XXXXXX); S_PID=; MFS_STARTED=0
cleanup() {
  if [ -n "$S_PID" ] && kill -0 "$S_PID" 2>/dev/null; then
    kill -TERM "$S_PID"; for _ in $(seq 60); do kill -0 "$S_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$S_PID" 2>/dev/null
  fi
  [ "$MFS_STARTED" = 1 ] && bash "$SHARED/moosefs-down.sh" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT; trap 'exit 130' INT TERM

# "<under-replicated + missing> <chunks> <node-dead event ms> <earliest 'repaired' event ms>" from
# `strata health --json` (exits non-zero while missing); 0 for an event not (or no longer) listed.
health() {
  "${CLI[@]}" health --json -c "$COORD" 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      try { const h = JSON.parse(s); const n = (k) => Number(h[k] ?? h[k.replace(/_(.)/g, (_, c) => c.toUpperCase())] ?? 0);
        const at = (kind) => Math.min(...(h.events ?? []).filter((e) => e.kind === kind).map((e) => Number(e.atMs ?? e.at_ms)), Infinity);
        const ms = (v) => (Number.isFinite(v) ? v : 0);
        const last = Math.max(...(h.events ?? []).filter((e) => e.kind === "repaired").map((e) => Number(e.atMs ?? e.at_ms)), 0);
        console.log(n("under_replicated") + n("missing"), n("chunks"), ms(at("node-dead")), ms(at("repaired")), last); } catch { console.log("? 0 0 0 0"); } });'
}

strata_run() {
  log "strata: cluster up (4 data nodes, RF=3) in $WORK"
  setsid "${CLI[@]}" cluster up --data-dir "$WORK/data" --port "$PORT" --datanodes 4 --chunk-size 8MiB \
    > "$WORK/up.log" 2>&1 &
  S_PID=$!
  for _ in $(seq 120); do grep -q "cluster is up" "$WORK/up.log" && break; sleep 0.5; done
  grep -q "cluster is up" "$WORK/up.log" || { log "cluster did not start"; cat "$WORK/up.log" >&2; return 1; }
  head -c "$SIZE" /dev/urandom > "$WORK/repair.dat" 2>/dev/null ||
    dd if=/dev/urandom of="$WORK/repair.dat" bs=1M count=$(( $(numfmt --from=iec "$SIZE") / 1048576 )) status=none
  local bytes; bytes=$(stat -c %s "$WORK/repair.dat")
  "${CLI[@]}" put -c "$COORD" "$WORK/repair.dat" /bench/repair.dat >/dev/null || { log "put failed"; return 1; }
  rm -f "$WORK/repair.dat"
  local h
  for _ in $(seq 120); do h=$(health); [ "${h%% *}" = 0 ] && break; sleep 1; done
  log "strata: health before the kill: $h (under+missing, chunks)"
  # Only this cluster's dn1 (other clusters on the machine name their nodes dn1 too).
  local victim; victim=$(pgrep -f -- "--data-dir $WORK/data/dn1 " | head -1)
  [ -n "$victim" ] || { log "data node dn1 not found"; return 1; }
  local held; held=$(du -sb "$WORK/data/dn1" | cut -f1)
  log "strata: kill -9 dn1 (pid $victim, $held bytes on disk)"
  local t0; t0=$(date +%s.%N); kill -KILL "$victim"
  local t peak=0 t_copy= dead_ms=0 copy_ms=0 last_ms=0 f g l
  while :; do
    sleep 0.2; h=$(health); t=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.1f", a-b}')
    # When copies start landing (the count of under-replicated chunks first falls): what came
    # before was detection (grace period) and scheduling (the coordinator's scan), not copying.
    local n=${h%% *}
    if [[ "$n" =~ ^[0-9]+$ ]]; then
      (( n > peak )) && peak=$n
      [ -z "$t_copy" ] && (( peak > 0 && n < peak )) && t_copy=$t
    fi
    read -r _ _ f g l <<<"$h"
    [[ "$f" =~ ^[0-9]+$ ]] && (( dead_ms == 0 && f > 0 )) && dead_ms=$f
    [[ "$g" =~ ^[0-9]+$ ]] && (( g > 0 && (copy_ms == 0 || g < copy_ms) )) && copy_ms=$g
    [[ "$l" =~ ^[0-9]+$ ]] && (( l > last_ms )) && last_ms=$l
    # Done once the kill registered (chunks were under-replicated) and healed; or, should no poll
    # have caught it under-replicated, once nothing is wrong after the whole grace period.
    if [ "${h%% *}" = 0 ] && { (( peak > 0 )) || awk -v t="$t" -v g="$STRATA_DEAD_AFTER_MS" 'BEGIN{exit !(t*1000 > g)}'; }; then break; fi
    (( ${t%.*} >= MAXWAIT )) && { log "strata: still '$h' after $MAXWAIT s"; return 1; }
  done
  "${CLI[@]}" health -c "$COORD" >&2
  echo "repair_seconds_strata $t s"
  # The last copy's record update, by the leader's clock (the polls above end up to a poll later).
  (( last_ms > 0 )) && awk -v l="$last_ms" -v k="$t0" 'BEGIN{printf "repair_last_copy_seconds_strata %.2f s\n", l/1000-k}'
  (( dead_ms > 0 )) && awk -v d="$dead_ms" -v k="$t0" 'BEGIN{printf "repair_detect_seconds_strata %.2f s\n", d/1000-k}'
  if (( copy_ms > 0 )); then
    awk -v t="$t" -v c="$copy_ms" -v k="$t0" 'BEGIN{printf "repair_first_copy_seconds_strata %.2f s\nrepair_copy_phase_seconds_strata %.1f s\n", c/1000-k, t-(c/1000-k)}'
  elif [ -n "$t_copy" ]; then
    awk -v t="$t" -v c="$t_copy" 'BEGIN{printf "repair_first_copy_seconds_strata %.1f s\nrepair_copy_phase_seconds_strata %.1f s\n", c, t-c}'
  fi
  # dn1 held about 3/4 of the file's copies; that much was copied again.
  awk -v b="$bytes" -v t="$t" 'BEGIN{printf "repair_mb_per_s_strata %.1f MB/s\n", b*3/4/1e6/t}'
  STRATA_SECONDS=$t
}

moosefs_run() {
  # A fresh peer: space of earlier runs is freed lazily and would skew the timing.
  [ -f "$PEER/pids" ] && bash "$SHARED/moosefs-down.sh" >/dev/null 2>&1
  rm -rf "$PEER"
  log "MooseFS: moosefs-up.sh 4 in $PEER"
  MFS_STARTED=1
  bash "$SHARED/moosefs-up.sh" 4 >&2 || { log "moosefs-up failed"; return 1; }
  local out; out=$(SIZE=$SIZE MAXWAIT=$MAXWAIT bash "$SHARED/moosefs-repair.sh") || { log "moosefs-repair failed: $out"; return 1; }
  echo "$out"
  MFS_SECONDS=$(awk '/^repair_seconds/{print $2}' <<<"$out")
  echo "repair_seconds_moosefs $MFS_SECONDS s"
}

STRATA_SECONDS=; MFS_SECONDS=
[ "$SKIP" != strata ] && strata_run
[ "$SKIP" != moosefs ] && moosefs_run
if [ -n "$STRATA_SECONDS" ] && [ -n "$MFS_SECONDS" ]; then
  awk -v s="$STRATA_SECONDS" -v m="$MFS_SECONDS" 'BEGIN{printf "repair_ratio %.2f x\n", m/s}'
fi
