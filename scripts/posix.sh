#!/usr/bin/env bash
# pjdfstest (the POSIX conformance suite) against a fresh strata mount: builds pjdfstest from
# test/posix/ (or $PJDFSTEST_TARBALL), starts a throw-away local cluster, mounts it with
# --allow-other (so the kernel checks permission bits, as pjdfstest switches users), runs
# `prove` on the tests as root inside the mount, prints the pass count per test directory and
# in total (also as `name value unit` lines), and removes everything it made.
#
#   npm run posix                              # every test, embedded LevelDB metadata
#   POSIX_ENGINE=etcd npm run posix            # metadata in a throw-away etcd
#   POSIX_TESTS="chown link mkfifo" npm run posix   # some directories (or dir/NN.t files)
#   POSIX_JOBS=2 POSIX_MIN_PASS=100 ...        # directories run at once; fail below this pass %
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ENGINE=${POSIX_ENGINE:-embedded}
JOBS=${POSIX_JOBS:-1}
FILE_TIMEOUT=${POSIX_FILE_TIMEOUT:-300}

[ "$(id -u)" = 0 ] || { echo "posix: pjdfstest switches users and makes device nodes: run as root" >&2; exit 2; }
case "$ENGINE" in embedded|etcd) ;; *) echo "posix: POSIX_ENGINE must be embedded or etcd, not '$ENGINE'" >&2; exit 2 ;; esac

need=()
command -v prove >/dev/null || need+=(perl)
command -v autoreconf >/dev/null || need+=(autoconf)
command -v automake >/dev/null || need+=(automake)
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
[ "$ENGINE" = etcd ] && ! command -v etcd >/dev/null && need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "posix: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

TARBALL=${PJDFSTEST_TARBALL:-$(ls "$ROOT"/test/posix/pjdfstest-*.tar.gz 2>/dev/null | head -1 || true)}
[ -f "$TARBALL" ] || { echo "posix: no pjdfstest source (set PJDFSTEST_TARBALL to pjdfstest-*.tar.gz)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/strata-posix.XXXXXX)
MNT=$WORK/mnt
PIDS=()
cleanup() {
  set +e
  cd /
  if grep -q " $MNT " /proc/mounts; then fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  grep -q " $MNT " /proc/mounts && umount -l "$MNT"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "posix: building pjdfstest from $(basename "$TARBALL")"
mkdir -p "$WORK/pjd" && tar xzf "$TARBALL" -C "$WORK/pjd"
(cd "$WORK/pjd" && autoreconf -ifs >/dev/null 2>&1 && ./configure -q >/dev/null && make -s pjdfstest >/dev/null 2>&1) \
  || { echo "posix: building pjdfstest failed" >&2; exit 1; }
[ -f build/Release/strata_fuse3.node ] || npm run build:native --silent
npm run build --silent

# A random base port (coordinator, data nodes after it; etcd well apart).
PORT=$((20000 + RANDOM % 30000))
META=()
if [ "$ENGINE" = etcd ]; then
  EP=$((PORT + 100))
  etcd --name posix --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
    --listen-peer-urls "http://127.0.0.1:$((EP + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((EP + 1))" \
    --initial-cluster "posix=http://127.0.0.1:$((EP + 1))" >"$WORK/etcd.log" 2>&1 &
  PIDS+=($!)
  META=(--meta "etcd://127.0.0.1:$EP")
fi
node dist/cli/main.js cluster up --data-dir "$WORK/data" --port "$PORT" --datanodes 1 --replication 1 --chunk-size 1MiB "${META[@]}" >"$WORK/cluster.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do grep -q 'strata nodes' "$WORK/cluster.log" && break; kill -0 "${PIDS[-1]}" 2>/dev/null || break; sleep 0.1; done
grep -q 'strata nodes' "$WORK/cluster.log" || { echo "posix: the cluster did not start:" >&2; tail -20 "$WORK/cluster.log" >&2; exit 1; }
mkdir -p "$MNT"
node dist/cli/main.js mount --coordinator "127.0.0.1:$PORT" --allow-other --log-level warn "$MNT" >"$WORK/mount.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do grep -q " $MNT " /proc/mounts && break; sleep 0.1; done
grep -q " $MNT " /proc/mounts || { echo "posix: the mount did not come up:" >&2; tail -20 "$WORK/mount.log" >&2; exit 1; }
echo "posix: cluster on 127.0.0.1:$PORT ($ENGINE metadata), mounted at $MNT"

TESTS=$WORK/pjd/tests
SELECTION=${POSIX_TESTS:-$(cd "$TESTS" && ls -d */ | tr -d / | tr '\n' ' ')}
mkdir -p "$MNT/posix" "$WORK/logs"
run_dir() {
  local sel=$1 log="$WORK/logs/${1//\//_}.log"
  (cd "$MNT/posix" && prove -r -v --exec "timeout $FILE_TIMEOUT sh" "$TESTS/$sel" >"$log" 2>&1) || true
}
export -f run_dir
export WORK MNT TESTS FILE_TIMEOUT
started=$(date +%s)
printf '%s\n' $SELECTION | xargs -P "$JOBS" -I{} bash -c 'run_dir "$@"' _ {}
elapsed=$(( $(date +%s) - started ))

# Counts from the TAP streams: a file's plan (1..N) is its test count, "ok N" lines its passes
# (and "not ok N # TODO", which TAP and prove count as passed: pjdfstest marks so what POSIX allows).
per_file() {
  awk '
    function done() { if (file != "") print sel, file, p + 0, t + 0 }
    /^\/[^ ]*\.t \.\. / { done(); file = $1; sub(".*/tests/", "", file); p = 0; t = 0 }
    /(^|\.\. )1\.\.[0-9]+$/ { n = $0; sub(/.*1\.\./, "", n); t += n }
    /^ok [0-9]/ || /^not ok [0-9]+ # TODO/ { p++ }
    END { done() }' sel="$1" "$WORK/logs/${1//\//_}.log"
}
for sel in $SELECTION; do per_file "$sel"; done >"$WORK/files.txt"
awk -v engine="$ENGINE" -v secs="$elapsed" '
  { pass[$1] += $3; tests[$1] += $4; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } P += $3; T += $4 }
  $3 < $4 { failing = failing sprintf("posix: failing: %s (%d of %d)\n", $2, $3, $4) }
  END {
    printf "\n%-20s %8s %8s\n", "directory", "passed", "tests"
    for (i = 1; i <= n; i++) printf "%-20s %8d %8d\n", order[i], pass[order[i]], tests[order[i]]
    printf "%-20s %8d %8d\n\n", "total", P, T
    for (i = 1; i <= n; i++) { d = order[i]; gsub("/", "_", d); printf "posix_%s_%s_passed %d tests\n", engine, d, pass[order[i]] }
    printf "posix_%s_passed %d tests\nposix_%s_total %d tests\nposix_%s_seconds %d s\n", engine, P, engine, T, engine, secs
    printf "%s", failing
  }' "$WORK/files.txt" | head -n "${POSIX_SHOW_LINES:-200}"
read -r total_pass total_tests < <(awk '{ p += $3; t += $4 } END { print p + 0, t + 0 }' "$WORK/files.txt")
[ -n "${POSIX_KEEP_LOGS:-}" ] && cp -r "$WORK/logs" "$POSIX_KEEP_LOGS"
if [ -n "${POSIX_MIN_PASS:-}" ] && [ $((total_pass * 100)) -lt $((POSIX_MIN_PASS * total_tests)) ]; then
  echo "posix: $total_pass of $total_tests passed, below ${POSIX_MIN_PASS}%" >&2
  exit 1
fi
[ "$total_tests" -gt 0 ]
