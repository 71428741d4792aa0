#!/usr/bin/env bash
# Runs every benchmark and writes BENCHMARKS.md: webhook intake under load (distinct Run Requests, the
# repeated case as one labelled row, and side by side with the Python peer), end-to-end throughput against
# the Airtable fake (5 requests/s enforced), parse + metrics, Gate-1 and rules analysis (criterion), and
# start-up time and idle memory. Medians of several runs throughout.
# Usage: bench/run.sh            (about 10 minutes on 2 cores, after the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
out=BENCHMARKS.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cargo build --release --bin coach-worker --example intake_load --example e2e_throughput --example journal_intake --example http_floor

echo "intake..." >&2
target/release/examples/intake_load --worker target/release/coach-worker --requests distinct \
  --connections 1,16,64,256 --seconds 8 --runs 3 > "$tmp/intake.md"
# The repeated-request case (every delivery names the same Run Request, so all but the first join one
# job) is a cheaper path; one row for comparison, never the headline.
target/release/examples/intake_load --worker target/release/coach-worker --requests repeated \
  --jobs paused --connections 64 --seconds 8 --runs 3 | tail -n +3 > "$tmp/intake-repeated.md"

echo "journal alone..." >&2
target/release/examples/journal_intake --tasks 64 --seconds 5 --runs 5 | tail -1 > "$tmp/journal.txt"

echo "HTTP floor..." >&2
# The same generator against a bare actix-web server that answers 202 and journals nothing.
target/release/examples/intake_load --worker target/release/examples/http_floor --requests distinct \
  --jobs paused --connections 64 --seconds 8 --runs 3 > "$tmp/floor.md"

echo "side by side with the peer..." >&2
bench/side_by_side.sh 8 3 64 > "$tmp/peer.md"

echo "end to end..." >&2
target/release/examples/e2e_throughput --requests 60 > "$tmp/e2e.md"

echo "criterion..." >&2
cargo bench -p coach-transcript --bench parse_metrics -- --noplot 2>/dev/null > "$tmp/transcript.txt"
cargo bench -p coach-coaching --bench gate1 -- --noplot 2>/dev/null > "$tmp/coaching.txt"
# criterion prints "name  time:   [low median high]"; keep the name and the median. Against a saved
# baseline it also prints "change:" and then a "time:" line of percentages, which is skipped.
medians() {
  awk '/change:|%/ { next } /time:/ { name=prev; if ($1 != "time:") name=$1; gsub(/\[/, "", $0);
         for (i=1;i<=NF;i++) if ($i=="time:") { print "| " name " | " $(i+3) " " $(i+4) " |" } }
       { if ($0 !~ /time:/ && NF==1) prev=$1 }' "$1"
}

echo "idle memory..." >&2
data=$(mktemp -d)
port=18999
COACH_LISTEN=127.0.0.1:$port COACH_DATA_DIR="$data" COACH_WEBHOOK_SECRETS="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" \
  COACH_POLL_INTERVAL_SECS=0 RUST_LOG=warn target/release/coach-worker serve >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.02; done
sleep 2
idle_rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid" || true
rm -rf "$data"

# The journal retention section is measured by bench/retention.sh (about ten minutes more); it is
# carried over from the current file unless BENCH_RETENTION=1 asks for a new measurement.
if [ "${BENCH_RETENTION:-0}" = 1 ]; then
  bench/retention.sh > "$tmp/retention-tables.md"
  {
    echo "## Journal retention (\`examples/journal_retention.rs\`, \`bench/retention.sh\`)"
    echo
    cat "$tmp/retention-tables.md"
  } > "$tmp/retention.md"
else
  awk '/^## Journal retention/ {p=1} p' "$out" > "$tmp/retention.md" 2>/dev/null || true
fi

{
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr). The load generators run on the same machine."
  echo
  echo "## Webhook intake (\`examples/intake_load.rs\`, median of 3 runs of 8 s)"
  echo
  echo "Signed deliveries (Standard Webhooks headers) over keep-alive HTTP/1.1 from a second process. \`distinct\`: each delivery has its own \`webhook-id\` and its own Run Request, whose id is shaped and spread like Airtable's (random-looking), so each is a new journaled delivery and a new R1 job written at a random place in the dedupe index (the real case). The generator runs every connection on one event loop; its own CPU per delivery is a column. \`one, repeated\`: every delivery names the same Run Request, so after the first each is a new delivery row that joins the one active job and creates none (a cheaper path, shown for comparison only). \`paused\`: jobs paused (\`COACH_PAUSE_JOBS\`), intake alone; \`running\`: the R1 jobs run at the same time on the same cores. The last column is read back from the journal after each run: deliveries journaled / acknowledged, and the jobs created (one per distinct Run Request)."
  echo
  cat "$tmp/intake.md"
  cat "$tmp/intake-repeated.md"
  echo
  echo "## The journal alone (\`examples/journal_intake.rs\`, median of 5 runs of 5 s)"
  echo
  echo "The intake's journal operation (\`Journal::accept_delivery\` of a distinct R1 delivery: its row, its new job, group commit and the flush before the answer) from 64 tasks at once, with no HTTP in front. The writer thread is the journal's serial stage; its CPU per delivery is the figure to watch, as it is steadier than throughput on a shared machine."
  echo
  echo "$(cat "$tmp/journal.txt")"
  echo
  # Fields of an intake_load row: 6 deliveries/s, 10 worker CPU µs, 11 generator CPU µs.
  row() { awk -F'|' -v f="$2" '/^\| distinct \| paused \| 1 \| 64 \|/ { gsub(/ /, "", $f); print $f }' "$1"; }
  journal_us=$(sed -n 's/.*the journal.s three threads \([0-9.]*\) µs.*/\1/p' "$tmp/journal.txt")
  floor_us=$(awk -v a="$(row "$tmp/floor.md" 10)" -v b="$(row "$tmp/floor.md" 11)" -v c="$journal_us" 'BEGIN { printf "%.0f", a + b + c }')
  echo "## The floors under the worker (64 connections, median of 3 runs of 8 s)"
  echo
  echo "What each delivery costs in the parts every intake goes through, each measured on its own on the same cores with the same generator: the HTTP server and the kernel's loopback TCP (\`examples/http_floor.rs\`: actix-web configured as the worker, answering every delivery with a 202 of the same size, with no signature check, parsing or journal), and the journal alone (above: its writer, flusher and checkpointer threads). Their sum bounds intake from above: with both cores busy all the time, no build of the worker could journal more than 2 s of CPU per second divided by it. The last row is what the worker and its generator spend above that sum: the worker's own work (signature check, parsing, validation, the body hash, handing each delivery to the journal and its answer back), the journal's smaller batches under HTTP load, and the generator's fewer deliveries per wake-up at a lower rate."
  echo
  echo "| what | deliveries/s | CPU µs per delivery |"
  echo "|---|---|---|"
  echo "| the worker: distinct, jobs paused (table above) | $(row "$tmp/intake.md" 6) | worker $(row "$tmp/intake.md" 10) + generator $(row "$tmp/intake.md" 11) |"
  echo "| HTTP floor: \`http_floor\`, same generator | $(row "$tmp/floor.md" 6) | server $(row "$tmp/floor.md" 10) + generator $(row "$tmp/floor.md" 11) |"
  echo "| the journal alone, 64 tasks (above) | $(sed -n 's/.* \([0-9]*\) deliveries\/s.*/\1/p' "$tmp/journal.txt") | $journal_us |"
  echo "| floor: HTTP server + its generator + journal | at most $(awk -v s="$floor_us" 'BEGIN { printf "%.0f", 2e6 / s }') with both cores always busy | $floor_us |"
  echo "| the worker and its generator above the floor | — | $(awk -v a="$(row "$tmp/intake.md" 10)" -v b="$(row "$tmp/intake.md" 11)" -v c="$floor_us" 'BEGIN { printf "%.0f", a + b - c }') |"
  echo
  echo "## Side by side with the Python peer (\`bench/side_by_side.sh\`, median of 3 runs of 8 s, 64 connections)"
  echo
  echo "The FastAPI + uvicorn + SQLite intake in \`../shared/peers\` (two uvicorn processes, \`synchronous=NORMAL\`; the worker answers only after the write-ahead log holding the delivery is flushed to disk, the durability of \`FULL\`) and the worker, loaded in the same run by the same generator (\`intake_load --replay\`, one event loop for all connections; the peers' \`replay-load\`, a thread per connection, is run against the worker too, to show which costs less) replaying the same file of pre-signed Make-scheme deliveries (\`gen_requests.py\`: each with its own delivery id and its own Run Request). The worker also journals each delivery's signed content (the Make scheme does not sign the delivery id)."
  echo
  cat "$tmp/peer.md"
  echo
  echo "## End to end against the Airtable fake (\`examples/e2e_throughput.rs\`)"
  echo
  echo "Queued Run Requests picked up by one poll and run by the worker's runner (rules analyzer) against the stateful Airtable fake, which answers 429 above 5 requests per second. The share of 5/s is the achieved fraction of the physical ceiling for one base."
  echo
  cat "$tmp/e2e.md"
  echo
  echo "## Parsing, metrics, Gate-1 and rules analysis (criterion medians)"
  echo
  echo "A two-hour meeting (~20,000 words). \`cargo bench -p coach-transcript --bench parse_metrics\`, \`cargo bench -p coach-coaching --bench gate1\`."
  echo
  echo "| benchmark | median |"
  echo "|---|---|"
  medians "$tmp/transcript.txt"
  medians "$tmp/coaching.txt"
  echo
  echo "## Start-up and idle memory"
  echo
  echo "Start to \`/readyz\` OK: see the start→ready column above. Idle RSS of the release worker 2 s after start (SQLite store, no load): ${idle_rss} MB."
  if [ -s "$tmp/retention.md" ]; then
    echo
    cat "$tmp/retention.md"
  fi
} > "$out"
echo "wrote $out" >&2
