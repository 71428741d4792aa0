#!/usr/bin/env bash
# Journal retention: size after 1,000,000 deliveries with and without COACH_RETENTION_DAYS=30, and the
# sweep's effect on intake journal-write latency (examples/journal_retention.rs). Prints Markdown tables.
# Usage: bench/retention.sh [deliveries] [latency runs]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example journal_retention
# The size of a simulated history is deterministic: one run; the latencies: median of several.
target/release/examples/journal_retention --parts size --deliveries "${1:-1000000}" --days 100 --runs 1
target/release/examples/journal_retention --parts latency --runs "${2:-3}" --latency-secs 5
