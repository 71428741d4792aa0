//! # coach-worker
//!
//! Runs the Make scenarios of the Leadership Coach product as idempotent, signed webhook handlers:
//! transcripts in, grounded coaching out, Airtable (or an embedded SQLite store) as the system of
//! record. See the README for the picture; each module's doc comment explains its part.
//!
//! * [`webhook`] — signatures and delivery keys; [`http`] — routes and the hook adapters;
//!   [`scenarios`] — the scenarios as plain functions over typed requests; [`journal`] — the durable
//!   journal of deliveries and jobs; [`jobs`] — the runner; [`app`] and [`startup`] — the
//!   composition root (nothing below them imports them).
//! * `coach_transcript` (parsers and metrics), `coach_store` (records) and `coach_coaching` (analysis
//!   and Gate-1) are crates of this workspace.

pub mod admin;
pub mod app;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod jobs;
pub mod journal;
pub mod scenarios;
pub mod serve;
pub mod startup;
pub mod telemetry;
pub mod webhook;
