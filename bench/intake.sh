#!/usr/bin/env bash
# Webhook intake load: builds the release worker and the load generator, then sends signed deliveries
# from a second process over loopback at 1, 16, 64 and 256 connections (3 runs each, median reported).
# Each delivery names its own Run Request (a new job each); `repeated` as third argument sends one Run
# Request in every delivery instead (the cheaper join-the-active-job path).
# Usage: bench/intake.sh [SECONDS_PER_RUN] [RUNS] [distinct|repeated]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin coach-worker --example intake_load
target/release/examples/intake_load --worker target/release/coach-worker --requests "${3:-distinct}" \
  --connections 1,16,64,256 --seconds "${1:-8}" --runs "${2:-3}"
