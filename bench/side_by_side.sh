#!/usr/bin/env bash
# The worker and the FastAPI + uvicorn + SQLite peer (../shared/peers) loaded in one run by the same
# generator with the same pre-signed file: distinct deliveries, each with its own Run Request,
# Make-scheme headers (`X-Coach-Delivery`, `X-Coach-Timestamp`, `X-Coach-Signature`), which both
# servers accept. Prints a Markdown table (median of RUNS runs) and the ratio.
# The generator is `intake_load --replay` (one event loop for every connection); the peers'
# `replay-load` (a thread per connection) is also run against the worker once per run, and the CPU
# each generator used per request is printed, so the cheaper one is shown to be cheaper.
# Usage: bench/side_by_side.sh [SECONDS] [RUNS] [CONNECTIONS]
# Builds and installs under target/ only: ../shared is read-only in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
runs=${2:-3}
conns=${3:-64}
peers=../shared/peers
secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
lines=${BENCH_LINES:-400000}

cargo build --release --bin coach-worker --example intake_load >&2
cargo build --release --locked --manifest-path "$peers/replay-load/Cargo.toml" --target-dir target/replay-load >&2
replay_load=target/replay-load/release/replay-load
if [ ! -x target/peer-venv/bin/uvicorn ]; then
  python3 -m venv target/peer-venv >&2
  target/peer-venv/bin/pip install -q 'uvicorn[standard]' fastapi >&2
fi

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

wait_ok() { # URL
  for _ in $(seq 1 500); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.02; done
  echo "no answer from $1" >&2; return 1
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

# The generator: FILE, PORT -> a RESULT line. GENERATOR=replay-load runs the peers' generator instead.
# The CPU the generator process used (user + system, file loading included) is written to $tmp/cpu.
generate() {
  local file=$1 port=$2
  local TIMEFORMAT='%U %S'
  if [ "${GENERATOR:-intake_load}" = replay-load ]; then
    { time "$replay_load" "127.0.0.1:$port" "$file" "$conns" "$seconds" > "$tmp/generated" ; } 2> "$tmp/cpu"
  else
    { time target/release/examples/intake_load --replay "$file" --target "127.0.0.1:$port" \
        --connections "$conns" --seconds "$seconds" > "$tmp/generated" ; } 2> "$tmp/cpu"
  fi
  grep '^RESULT' "$tmp/generated"
}

# One measurement: server (worker-paused | worker-running | peer), request file, port -> RESULT line
# followed by a consistency verdict.
measure() {
  local server=$1 file=$2 port=$3 data
  data=$(mktemp -d -p "$tmp")
  case $server in
    worker-*)
      COACH_LISTEN=127.0.0.1:$port COACH_DATA_DIR="$data" COACH_WEBHOOK_SECRETS=$secret \
        COACH_POLL_INTERVAL_SECS=0 COACH_MAX_CONCURRENCY=2 RUST_LOG=warn \
        COACH_PAUSE_JOBS=$([ "$server" = worker-paused ] && echo true || echo false) \
        env -u AIRTABLE_TOKEN -u OPENAI_API_KEY target/release/coach-worker serve >/dev/null 2>&1 &
      pid=$!
      wait_ok "http://127.0.0.1:$port/readyz" ;;
    peer)
      COACH_WEBHOOK_SECRETS=$secret COACH_DB="$data/peer.db" target/peer-venv/bin/uvicorn intake_fastapi:app \
        --app-dir "$peers" --workers 2 --log-level warning --no-access-log --host 127.0.0.1 --port "$port" \
        >/dev/null 2>&1 &
      pid=$!
      wait_ok "http://127.0.0.1:$port/healthz" ;;
  esac
  local result
  result=$(generate "$file" "$port")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
  local sent non2xx acked check=
  sent=$(field sent <<<"$result"); non2xx=$(field non2xx <<<"$result"); acked=$((sent - non2xx))
  case $server in
    worker-*)
      # Every acknowledged delivery journaled, one job each (each line names its own Run Request).
      local counts d j
      counts=$(target/release/examples/intake_load --check "$data")
      d=$(field deliveries <<<"$counts"); j=$(field jobs <<<"$counts")
      if [ "$d" = "$acked" ] && [ "$j" = "$acked" ]; then check="yes $d/$acked deliveries, $j jobs"
      else check="NO $d/$acked deliveries, $j jobs"; fi ;;
    peer)
      local d j
      d=$(sqlite3 "$data/peer.db" 'SELECT COUNT(*) FROM deliveries'); j=$(sqlite3 "$data/peer.db" 'SELECT COUNT(*) FROM jobs')
      if [ "$d" = "$acked" ] && [ "$j" = "$acked" ]; then check="yes $d/$acked deliveries, $j jobs"
      else check="NO $d/$acked deliveries, $j jobs"; fi ;;
  esac
  local cpu
  cpu=$(awk -v n="$(field sent <<<"$result")" '{ printf "%.1f", ($1 + $2) * 1e6 / (n > 0 ? n : 1) }' "$tmp/cpu")
  echo "$result cpu_us=$cpu|$check"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A rps p99 checks cpu
servers="worker-paused worker-running peer"
port=18700
for run in $(seq 1 "$runs"); do
  echo "side by side, run $run of $runs: signing $lines deliveries..." >&2
  python3 "$peers/gen_requests.py" "$lines" "$secret" > "$tmp/requests.jsonl"
  for server in $servers; do
    port=$((port + 1))
    line=$(measure "$server" "$tmp/requests.jsonl" "$port")
    result=${line%%|*}
    rps[$server]+="$(field rps <<<"$result") "
    p99[$server]+="$(field p99_ms <<<"$result") "
    checks[$server]+="${line#*|}; "
    if [ "$server" = worker-paused ]; then cpu[intake_load]+="$(field cpu_us <<<"$result") "; fi
    if [ "$(field exhausted <<<"$result")" = true ]; then echo "warning: $server used up the request file" >&2; fi
  done
  # The peers' generator against the same worker, for its cost per request and the rate it reaches.
  python3 "$peers/gen_requests.py" "$lines" "$secret" > "$tmp/requests.jsonl"
  port=$((port + 1))
  line=$(GENERATOR=replay-load measure worker-paused "$tmp/requests.jsonl" "$port")
  result=${line%%|*}
  cpu[replay-load]+="$(field cpu_us <<<"$result") "
  rps[replay-load]+="$(field rps <<<"$result") "
done

echo "| server | deliveries/s | p99 ms | journaled = acknowledged, jobs = Run Requests (each run) |"
echo "|---|---|---|---|"
declare -A med
for server in $servers; do
  med[$server]=$(tr ' ' '\n' <<<"${rps[$server]}" | grep . | median)
  m99=$(tr ' ' '\n' <<<"${p99[$server]}" | grep . | median)
  case $server in
    worker-paused) label="worker, jobs paused" ;;
    worker-running) label="worker, R1 jobs running" ;;
    peer) label="peer (FastAPI + uvicorn --workers 2 + SQLite)" ;;
  esac
  echo "| $label | ${med[$server]} | $m99 | ${checks[$server]%; } |"
done
echo
gen_cpu() { tr ' ' '\n' <<<"${cpu[$1]}" | grep . | median; }
echo "Generator CPU per request against the worker with jobs paused (user + system of the generator's process, \
loading the file included, median of the runs): \`intake_load --replay\` $(gen_cpu intake_load) µs; the peers' \
\`replay-load\` $(gen_cpu replay-load) µs, which loaded the worker to \
$(tr ' ' '\n' <<<"${rps[replay-load]}" | grep . | median) deliveries/s."
echo
awk -v w="${med[worker-paused]}" -v r="${med[worker-running]}" -v p="${med[peer]}" \
  'BEGIN { printf "Ratio to the peer in this run: %.1f× with jobs paused, %.1f× with the R1 jobs running.\n", w / p, r / p }'
