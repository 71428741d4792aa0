//! The worker's integration tests as one binary, so the worker is linked once rather than once per
//! suite. Each module is one suite (what used to be `tests/<suite>.rs`); `common` is the shared
//! harness (`common/world.rs`: a real worker on a random port with the Airtable and OpenAI fakes).
//!
//! A test's name starts with its suite: `cargo nextest run -p coach-worker --test worker
//! -E 'test(/^crash::/)'` runs one suite, `… --test worker scenarios::whole_story` one test.
//!
//! Process isolation: the README's command runs the tests with nextest, one process per test, and
//! some tests rely on it. `observability` installs the process's tracing subscriber (its test
//! expects to be the first) and judges every log line the process writes, and reads the
//! process-wide Prometheus recorder; among other tests' threads in one process (`cargo test`) it
//! would capture their logs and metrics too. Everything else shares a process safely: the rustls
//! provider is installed idempotently, the Airtable rate limiters are keyed by the fake's URL (a
//! random port each), and the suites that need a process of their own (`airtable_cli`, `config`,
//! `crash`, `demo`, parts of `admin` and `signatures`) start the real binary
//! (`CARGO_BIN_EXE_coach-worker`) as a child.

mod common;

mod admin;
mod airtable_cli;
mod attempts;
mod bad_input;
mod blueprints;
mod browser;
mod cluster;
mod config;
mod crash;
mod demo;
mod faults;
mod journal;
mod observability;
mod readme;
mod scenario_functions;
mod scenarios;
mod security;
mod signatures;
mod spine;
