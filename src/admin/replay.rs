//! Replaying jobs: the part of the admin that changes things, kept apart from HTTP so the rules sit
//! in one place.
//!
//! Rules: only a finished job (succeeded, failed, cancelled) is replayed — replaying one that may
//! still run would race with it. The new job copies the old one's kind, scenario, payload, delivery
//! and dedupe key. Copying the dedupe key matters: when the same work is already active (say the
//! poller re-queued the Run Request meanwhile) the journal hands back that job instead of a second
//! one, and the replay is reported as skipped.
//!
//! A bulk replay skips a run that some job already replays (reason `ALREADY_REPLAYED`) unless asked
//! to include such runs: a failed original stays `failed` after its replay, so without this rule
//! running `replay --status failed` twice would replay everything twice. A replay that failed again is
//! itself not yet replayed, so the same command picks up exactly the newest failure of each chain.
//! Replaying one run by its id always goes ahead: that is an explicit request.
//!
//! A bulk replay enqueues its jobs concurrently, so the journal's group commit writes a batch of them
//! in one transaction instead of one fsync each.

use std::collections::HashSet;

use coach_store::RecordId;
use tokio::task::JoinSet;

use crate::jobs::JobOptions;
use crate::journal::{Job, Journal, JournalError, NewJob};

/// What became of one run asked to be replayed.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Replayed as `new_run_id` (or would be, on a dry run: then the id is `None`).
    Replayed { new_run_id: Option<String> },
    /// Not replayed, with a stable reason code.
    Skipped { reason: &'static str },
}

/// Why a job cannot be replayed, if it cannot.
pub fn refusal(job: &Job) -> Option<&'static str> {
    (!job.status.is_finished()).then_some("RUN_NOT_FINISHED")
}

/// The job that replays `old`.
pub fn replay_job(old: &Job, bypass_cache: bool) -> NewJob {
    let mut job = NewJob::new(&old.kind, &old.scenario, old.payload.clone());
    job.delivery_key = old.delivery_key.clone();
    job.dedupe_key = old.dedupe_key.clone();
    job.replay_of = Some(old.id.clone());
    let old_record = old
        .result
        .as_ref()
        .and_then(|r| r.get("run_record_id"))
        .and_then(|v| v.as_str())
        .and_then(|id| RecordId::parse(id).ok());
    // The first Run of a chain of replays: D1 keys a meeting's attempt on it, so replaying a run
    // that succeeded updates its attempt event instead of counting the meeting twice. Options that
    // do not read (a row from an older worker) count as none.
    let root_record = JobOptions::of(old)
        .ok()
        .and_then(|o| o.replay_root_record)
        .or_else(|| old_record.clone());
    job.options = JobOptions {
        replay_of_record: old_record,
        replay_root_record: root_record,
        bypass_cache,
    }
    .to_value();
    job
}

/// Replays (or, with `dry_run`, only checks) one job.
pub async fn replay_one(
    journal: &Journal,
    old: &Job,
    bypass_cache: bool,
    dry_run: bool,
) -> Result<Outcome, JournalError> {
    if let Some(reason) = refusal(old) {
        return Ok(Outcome::Skipped { reason });
    }
    if dry_run {
        return Ok(Outcome::Replayed { new_run_id: None });
    }
    let (id, created) = journal.enqueue(replay_job(old, bypass_cache)).await?;
    Ok(if created {
        Outcome::Replayed {
            new_run_id: Some(id),
        }
    } else {
        Outcome::Skipped {
            reason: "RUN_ALREADY_ACTIVE",
        }
    })
}

/// Replays many jobs, enqueueing them concurrently; outcomes come back in the order of `jobs`.
pub async fn replay_many(
    journal: &Journal,
    jobs: Vec<Job>,
    bypass_cache: bool,
    dry_run: bool,
) -> Result<Vec<(String, Outcome)>, JournalError> {
    let mut set = JoinSet::new();
    for (index, job) in jobs.into_iter().enumerate() {
        let journal = journal.clone();
        set.spawn(async move {
            let outcome = replay_one(&journal, &job, bypass_cache, dry_run).await;
            (index, job.id, outcome)
        });
    }
    let mut out: Vec<(usize, String, Outcome)> = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        let (index, id, outcome) =
            joined.map_err(|e| JournalError::Unavailable(format!("a replay task stopped: {e}")))?;
        // A failed enqueue is reported against its run, so the caller learns exactly which runs were
        // replayed and can retry the rest.
        let outcome = outcome.unwrap_or_else(|e| Outcome::Skipped { reason: e.code() });
        out.push((index, id, outcome));
    }
    out.sort_by_key(|(index, _, _)| *index);
    Ok(out.into_iter().map(|(_, id, o)| (id, o)).collect())
}

/// The ids among `ids` that some job already replays (in any state).
pub async fn already_replayed(
    journal: &Journal,
    ids: Vec<String>,
) -> Result<HashSet<String>, JournalError> {
    journal.replayed_among(ids).await
}
