//! Admin: see what failed and run it again safely (ARCHITECTURE §8).
//!
//! * [`api`] — the `/v1/admin` JSON routes behind a bearer token, registered only when
//!   `COACH_ADMIN_TOKEN` is set ([`api::routes`]).
//! * [`page`] — the server-rendered `/admin` page (login into a signed session cookie, CSRF tokens,
//!   maud templates that escape every value by construction, no JavaScript), registered with the API ([`page::routes`]).
//! * `coach-worker runs list|show|replay|cancel` (in the binary's `cli::admin`) is a thin HTTP client
//!   of those routes, so the CLI needs no access to the worker's disk and works against a remote
//!   worker the same way.
//!
//! A replay never re-runs the old job in place: it enqueues a *new* job with the same kind and payload,
//! `replay_of` pointing at the old one and the old Run record id in its options. The scenarios write
//! every record with an upsert on a deterministic `Key`, and the Run's key is `run:{job_id}`, so a
//! replay adds exactly one Run (linked through `Replay Of`) and updates everything else in place.

pub mod api;
mod auth;
pub mod page;
mod replay;
mod view;

pub use api::{routes, routes_with_store};
