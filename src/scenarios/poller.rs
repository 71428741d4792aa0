//! The R1 poller: every N seconds, list Run Requests with `Status = Queued` and enqueue one job per
//! request (the job's dedupe key makes offering the same request every cycle harmless). An operator
//! who sets a failed request back to `Queued` gets it re-run at the next poll. An Airtable webhook
//! ping (`POST /v1/airtable/ping`) wakes the poller at once.
//!
//! A poll reads one page (the first 100 queued requests in the table's order): a backlog larger than that is more work
//! than the runner finishes before the next poll (Airtable's 5 requests/s allow one request of
//! five calls per second), so listing it all every cycle would only spend the rate budget the jobs
//! need; the rest is picked up page by page as the first ones leave `Queued`.
//!
//! With several instances on a Postgres journal one of them polls: the one holding the poller's
//! advisory lock ([`crate::journal::Journal::lead_poller`]). The others ask again at each interval
//! and one of them takes over when the leader's database session ends (it stopped or died).

use std::sync::Arc;
use std::time::Duration;

use coach_store::tables::{self, queries};
use tokio::sync::{Notify, watch};

use super::jobs::JobSpec;
use super::single::RunRequestRef;
use super::{Deps, ScenarioError, known_id};
use crate::jobs::RunnerHandle;

/// The most requests one poll reads: one page of Airtable's list.
pub const POLL_PAGE: usize = 100;

/// One poll: returns how many new jobs were enqueued.
pub async fn poll_once(deps: &Deps) -> Result<usize, ScenarioError> {
    let query = queries::queued_run_requests().max_records(POLL_PAGE);
    let queued: Vec<tables::RunRequest> = deps.store.find(&query).await?;
    let mut created = 0;
    for record in queued {
        let job = JobSpec::Single(RunRequestRef {
            run_request_id: known_id(&record.id)?,
        })
        .into_job("r1");
        if deps.journal.enqueue(job).await?.1 {
            created += 1;
        }
    }
    Ok(created)
}

/// Polls until stopped.
pub async fn run(
    deps: Arc<Deps>,
    interval: Duration,
    ping: Option<Arc<Notify>>,
    runner: RunnerHandle,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let ping = ping.unwrap_or_else(|| Arc::new(Notify::new()));
    let mut leadership = None;
    loop {
        let polled = match deps.journal.lead_poller(&mut leadership).await {
            true => poll_once(&deps).await,
            false => Ok(0),
        };
        match polled {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(enqueued = n, "queued run requests picked up");
                runner.wake();
            }
            Err(e) => tracing::warn!(code = e.code(), error = %e, "polling run requests failed"),
        }
        let wait = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ping.notified() => {}
            _ = stop.changed() => return Ok(()),
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}
