#!/usr/bin/env bash
# bench/fuse.sh (npm run bench:fuse) - ../shared/bench/fsbench.sh on a strata FUSE mount and on
# a MooseFS mount, in one run, same machine, loopback only. Prints
#   name strata_value moosefs_value ratio      (ratio = strata / MooseFS)
# then each side's raw "name value unit" lines.
#
# strata: `node dist/cli/main.js cluster up` (1 coordinator + 3 data nodes on 127.0.0.1, RF=3,
#         embedded metadata) with --mount, in a fresh temp dir. dist/ must be built.
# MooseFS: ../shared/bench/moosefs-up.sh 3 (master + 3 chunkservers, goal 3, mount $PEER/mnt),
#          then moosefs-down.sh.
# Env passed to fsbench.sh: REPS SIZE FILES NMETA ONLY (FIO_EXTRA too); defaults are fsbench's.
# Env for this script: FSBENCH_TIMEOUT (s per fsbench run, default 2400), SKIP=strata|moosefs,
#   PEER (/tmp/peer), STRATA_BENCH_KEEP=1 (keep strata's temp dir, e.g. to read its logs),
#   STRATA_UP_ARGS (extra `cluster up` flags for the strata pass, split on spaces; e.g. --tls).
# Everything it starts it stops (by PID), unmounts and removes, also on Ctrl-C or a timeout.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
FSBENCH=$SHARED/fsbench.sh
PEER=${PEER:-/tmp/peer}; export PEER
MFS_MNT=$PEER/mnt
TO=${FSBENCH_TIMEOUT:-2400}
SKIP=${SKIP:-}
STRATA_UP_ARGS=${STRATA_UP_ARGS:-}
export REPS=${REPS:-3} SIZE=${SIZE:-1G} FILES=${FILES:-10000} NMETA=${NMETA:-5000} ONLY=${ONLY:-}
[ -n "${FIO_EXTRA:-}" ] && export FIO_EXTRA

log() { echo "[bench:fuse $(date -u +%H:%M:%S)] $*" >&2; }
die() { log "$*"; exit 1; }

[ -f "$ROOT/dist/cli/main.js" ] || die "dist/cli/main.js missing: run npm run build first"
[ -x "$FSBENCH" ] || [ -f "$FSBENCH" ] || die "$FSBENCH not found"
command -v fio >/dev/null || log "fio missing; moosefs-up.sh installs it (apt-get) - strata runs after it"

WORK=$(mktemp -d /tmp/strata-fusebench.XXXXXX)
S_DATA=$WORK/data; S_MNT=$WORK/mnt; mkdir -p "$S_MNT"
S_PID=; S_MOUNT_PID=; MFS_STARTED=0; PEER_EXISTED=0; [ -e "$PEER" ] && PEER_EXISTED=1

alive() { [ -n "$1" ] && [ -d /proc/$1 ] && ! grep -q '^State:.*Z' /proc/$1/status 2>/dev/null; }

stop_strata() {
  [ -n "$S_PID" ] || return 0
  if alive "$S_PID"; then   # cluster up unmounts (stores buffered writes), then stops its nodes
    kill -TERM "$S_PID" 2>/dev/null
    for _ in $(seq 180); do alive "$S_PID" || break; sleep 0.5; done
    if alive "$S_PID"; then log "strata cluster ($S_PID) ignored TERM; killing its process group"
      kill -KILL -- "-$S_PID" 2>/dev/null; fi
  fi
  # the mount runs in its own process group; normally gone by now
  if alive "$S_MOUNT_PID" && grep -q "mount" /proc/$S_MOUNT_PID/cmdline 2>/dev/null; then
    kill -TERM "$S_MOUNT_PID"; for _ in $(seq 40); do alive "$S_MOUNT_PID" || break; sleep 0.5; done
    alive "$S_MOUNT_PID" && kill -KILL "$S_MOUNT_PID"
  fi
  if mountpoint -q "$S_MNT" 2>/dev/null; then
    fusermount -u "$S_MNT" 2>/dev/null || fusermount3 -u "$S_MNT" 2>/dev/null || umount -l "$S_MNT"
  fi
  # data nodes/coordinator are in S_PID's process group: make sure none outlived it
  kill -KILL -- "-$S_PID" 2>/dev/null
  S_PID=
}

stop_moosefs() {
  [ "$MFS_STARTED" = 1 ] || return 0
  timeout 120 bash "$SHARED/moosefs-down.sh" >&2
  mountpoint -q "$MFS_MNT" 2>/dev/null && umount -l "$MFS_MNT"
  [ "$PEER_EXISTED" = 0 ] && rm -rf "$PEER"
  MFS_STARTED=0
}

cleanup() {
  trap - EXIT INT TERM HUP
  stop_strata; stop_moosefs
  if [ "${STRATA_BENCH_KEEP:-}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM HUP

free_ports() {  # N consecutive free ports on 127.0.0.1 -> first one
  node -e '
    const net = require("net"), n = +process.argv[1];
    const free = (p) => new Promise((r) => { const s = net.createServer().once("error", () => r(false))
      .listen(p, "127.0.0.1", () => s.close(() => r(true))); });
    (async () => { for (let t = 0; t < 200; t++) { const b = 20000 + Math.floor(Math.random() * 40000);
      let ok = true; for (let i = 0; i < n && ok; i++) ok = await free(b + i);
      if (ok) { console.log(b); return; } } process.exit(1); })();' "$1"
}

peer_running() {  # a MooseFS from $PEER/pids is already up (someone else's): leave it alone
  local n p; [ -s "$PEER/pids" ] || return 1
  while read -r n p; do alive "$p" && return 0; done < "$PEER/pids"; return 1
}

run_fsbench() {  # label mountpoint -> $WORK/label.out (stdout), .err (per-run values)
  log "fsbench on $1 ($2), timeout ${TO}s"
  local t0=$SECONDS
  timeout --kill-after=30 "$TO" bash "$FSBENCH" "$2" > "$WORK/$1.out" 2> >(tee "$WORK/$1.err" >&2)
  local rc=$?; log "fsbench $1 done in $((SECONDS - t0)) s (rc=$rc)"; return $rc
}

log "fsbench settings: REPS=$REPS SIZE=$SIZE FILES=$FILES NMETA=$NMETA ONLY=${ONLY:-both} FIO_EXTRA=${FIO_EXTRA:-}"
: > "$WORK/moosefs.out"; : > "$WORK/strata.out"; MFS_NOTE=

# ---- MooseFS first (its setup installs fio if missing) ----
if [ "$SKIP" != moosefs ]; then
  if peer_running; then
    MFS_NOTE="MooseFS already running from $PEER/pids (not ours): not touched, not measured"
    log "$MFS_NOTE"
  else
    log "starting MooseFS (moosefs-up.sh 3)"
    MFS_STARTED=1
    if timeout 900 bash "$SHARED/moosefs-up.sh" 3 > "$WORK/moosefs-up.log" 2>&1 && mountpoint -q "$MFS_MNT"; then
      run_fsbench moosefs "$MFS_MNT" || MFS_NOTE="fsbench on MooseFS failed or timed out (see stderr)"
    else
      MFS_NOTE="MooseFS did not start"
      log "$MFS_NOTE; moosefs-up.sh said:"; tail -20 "$WORK/moosefs-up.log" >&2
      for f in "$PEER"/log/*.log; do [ -f "$f" ] && { log "--- $f"; tail -10 "$f" >&2; }; done
    fi
    stop_moosefs
  fi
fi

# ---- strata ----
if [ "$SKIP" != strata ]; then
  command -v fio >/dev/null || die "fio is not installed (apt-get install fio)"
  PORT=$(free_ports 4) || die "no 4 consecutive free ports on 127.0.0.1"
  log "starting strata: cluster up --data-dir $S_DATA --port $PORT --mount $S_MNT${STRATA_UP_ARGS:+ $STRATA_UP_ARGS}"
  setsid node "$ROOT/dist/cli/main.js" cluster up --data-dir "$S_DATA" --port "$PORT" \
    --datanodes 3 --replication 3 --mount "$S_MNT" $STRATA_UP_ARGS > "$WORK/cluster.log" 2>&1 < /dev/null &
  S_PID=$!
  for _ in $(seq 120); do mountpoint -q "$S_MNT" && break; alive "$S_PID" || break; sleep 0.5; done
  if mountpoint -q "$S_MNT"; then
    for c in $(pgrep -P "$S_PID"); do grep -q "mount" /proc/$c/cmdline 2>/dev/null && S_MOUNT_PID=$c; done
    run_fsbench strata "$S_MNT" || log "fsbench on strata failed or timed out"
  else
    log "strata did not mount; cluster log:"; tail -20 "$WORK/cluster.log" >&2
    for f in "$S_DATA"/logs/*.log; do [ -f "$f" ] && { log "--- $f"; tail -10 "$f" >&2; }; done
  fi
  stop_strata
fi

# ---- report ----
echo "# fsbench: REPS=$REPS SIZE=$SIZE FILES=$FILES NMETA=$NMETA ONLY=${ONLY:-both}${FIO_EXTRA:+ FIO_EXTRA=$FIO_EXTRA}${STRATA_UP_ARGS:+ STRATA_UP_ARGS=$STRATA_UP_ARGS} (median of REPS)"
echo "# ratio = strata/MooseFS; every figure is higher-is-better (MiB/s or ops/s); drop_caches is a flag, no ratio"
[ -n "$MFS_NOTE" ] && echo "# MooseFS: $MFS_NOTE"
printf '%-16s %12s %12s %8s\n' name strata moosefs ratio
awk 'FNR==1{f++} f==1{s[$1]=$2; u[$1]=$3; if(!($1 in o)){o[$1]=++n;k[n]=$1}}
     f==2{m[$1]=$2; u[$1]=$3; if(!($1 in o)){o[$1]=++n;k[n]=$1}}
     END{for(i=1;i<=n;i++){x=k[i]; a=(x in s)?s[x]:"n/a"; b=(x in m)?m[x]:"n/a"
       r=(u[x]!="bool" && a!="n/a" && b!="n/a" && b+0>0)?sprintf("%.2f",a/b):"-"
       printf "%-16s %12s %12s %8s\n", x, a, b, r}}' "$WORK/strata.out" "$WORK/moosefs.out"
echo "# raw strata"; cat "$WORK/strata.out"
echo "# raw moosefs"; cat "$WORK/moosefs.out"
