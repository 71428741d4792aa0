//! The seven blueprint scenarios (ARCHITECTURE §2) as plain async functions over the record store, the
//! analyzer and the journal, plus the thin [`Hook`]/[`JobHandler`] adapters that put them on HTTP and
//! in the job runner.
//!
//! | hook | mode | work |
//! |---|---|---|
//! | a1 | synchronous, 201 | [`baseline::create_pack`] |
//! | a2, s3 | job `baseline` | [`baseline::build_pack`], then job `e1` |
//! | r1 | job `single` | [`single::run_request`], then job `d1` |
//! | s1 | synchronous, 200 | [`gate1::check`] |
//! | d1 | synchronous or job `d1` | [`experiments::record_attempt`] |
//! | e1 | synchronous or job `e1` | [`experiments::instantiate`] |
//!
//! Every record is written with an upsert on a deterministic `Key` (`run:{job}`, `e1:{run}`,
//! `d1:{experiment}:{run}`, …), so re-running a job after a crash, a retry or a replay updates what it
//! wrote before instead of writing it twice. Timestamps written to records come from the job or the
//! source record, not from the clock at write time, so a re-run writes the same values.

pub mod baseline;
pub mod experiments;
pub mod gate1;
mod input;
pub mod poller;
pub mod single;
pub mod transcripts;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use coach_coaching::{Analysis, AnalysisError, AnalysisInput, Analyzer};
use coach_store::attachment::AttachmentPolicy;
use coach_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jobs::{JobContext, JobError, JobHandler, JobOutcome};
use crate::journal::{Journal, JournalError};
use crate::startup::Registry;

pub use input::{optional_bool, optional_str, record_id_field};

/// What the scenarios work with.
pub struct Deps {
    pub store: Store,
    pub analyzer: Analyzer,
    pub journal: Journal,
    pub attachments: AttachmentPolicy,
    /// One lock per experiment, so that D1s for the same experiment count its attempts one at a time.
    experiment_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What [`Deps::lock_experiment`] holds.
pub(crate) type ExperimentGuard = (
    tokio::sync::OwnedMutexGuard<()>,
    Option<crate::journal::postgres::KeyLock>,
);

/// An error of a scenario, typed so that HTTP and jobs can each answer it properly.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The request or the records it names are wrong: 400/422 on HTTP, a permanent job failure.
    #[error("{message}")]
    Input {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Value,
    },
    /// Worth retrying later (e.g. a download that timed out).
    #[error("{message}")]
    Transient { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl ScenarioError {
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Input {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    pub fn with_pointer(self, pointer: &str) -> ScenarioError {
        match self {
            ScenarioError::Input {
                status,
                code,
                message,
                ..
            } => ScenarioError::Input {
                status,
                code,
                message,
                details: json!({ "pointer": pointer }),
            },
            other => other,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ScenarioError::Input { code, .. } | ScenarioError::Transient { code, .. } => code,
            ScenarioError::Store(StoreError::NotFound { .. }) => "RECORD_NOT_FOUND",
            ScenarioError::Store(e) => e.code(),
            ScenarioError::Analysis(e) => e.code(),
            ScenarioError::Journal(e) => e.code(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            ScenarioError::Input { .. } => false,
            ScenarioError::Transient { .. } => true,
            ScenarioError::Store(e) => e.is_transient(),
            ScenarioError::Analysis(e) => e.is_transient(),
            ScenarioError::Journal(JournalError::Unavailable(_)) => true,
            ScenarioError::Journal(_) => false,
        }
    }

    /// The message written onto records: what failed and what to do.
    pub fn user_message(&self) -> String {
        format!("[{}] {}", self.code(), self)
    }
}

impl From<ScenarioError> for ApiError {
    fn from(e: ScenarioError) -> Self {
        match e {
            ScenarioError::Input {
                status,
                code,
                message,
                details,
            } => ApiError::new(status, code, message).with_details(details),
            ScenarioError::Store(StoreError::NotFound { table, id }) => ApiError::unprocessable(
                "RECORD_NOT_FOUND",
                format!("record {id} does not exist in \"{table}\"; check the id"),
            )
            .with_details(json!({ "table": table, "id": id })),
            ref other if other.is_transient() => {
                tracing::warn!(code = other.code(), error = %other, "transient failure in a synchronous hook");
                ApiError::unavailable(other.code(), format!("{other}; retry later"))
            }
            ScenarioError::Store(e) if e.is_client_error() => {
                ApiError::unprocessable(e.code(), e.to_string())
            }
            other => {
                tracing::error!(code = other.code(), error = %other, "hook failed");
                ApiError::new(StatusCode::BAD_GATEWAY, other.code(), other.to_string())
            }
        }
    }
}

impl From<ScenarioError> for JobError {
    fn from(e: ScenarioError) -> Self {
        let retry_after = match &e {
            ScenarioError::Analysis(a) => a.retry_after(),
            _ => None,
        };
        let details = match &e {
            ScenarioError::Input { details, .. } => details.clone(),
            ScenarioError::Analysis(AnalysisError::Gate1Failed { report, .. }) => {
                json!({ "gate1_report": report })
            }
            _ => Value::Null,
        };
        let base = if e.is_transient() {
            JobError::transient(e.code(), e.to_string())
        } else {
            JobError::permanent(e.code(), e.to_string())
        };
        base.with_retry_after(retry_after).with_details(details)
    }
}

impl Deps {
    pub fn new(store: Store, analyzer: Analyzer, journal: Journal) -> Deps {
        Deps {
            store,
            analyzer,
            journal,
            attachments: AttachmentPolicy::default(),
            experiment_locks: Default::default(),
        }
    }

    /// The lock of one experiment (locks nobody holds are dropped on the way).
    pub(crate) fn experiment_lock(&self, experiment_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .experiment_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(experiment_id.to_owned()).or_default().clone()
    }

    /// Holds one experiment for a D1: the in-process lock, then, on a Postgres journal, the
    /// experiment's advisory lock, so that D1s of one experiment count one at a time across
    /// instances too (see `journal::postgres`). Both are released when the guard is dropped.
    pub(crate) async fn lock_experiment(
        &self,
        experiment_id: &str,
    ) -> Result<ExperimentGuard, crate::journal::JournalError> {
        let local = self.experiment_lock(experiment_id).lock_owned().await;
        let shared = self
            .journal
            .lock_across_instances(&format!("experiment:{experiment_id}"))
            .await?;
        Ok((local, shared))
    }

    /// Runs the analysis, answering from the journal's cache when the same input (transcripts,
    /// run type, prompt version, provider, model, experiment) was answered before.
    pub async fn analyze(
        &self,
        input: &AnalysisInput,
        bypass_cache: bool,
    ) -> Result<(Analysis, bool), ScenarioError> {
        let key = self.analyzer.cache_key(input);
        if !bypass_cache
            && let Some(hit) = self.journal.cache_get(key.clone()).await?
            && let Ok(analysis) = serde_json::from_value::<Analysis>(hit)
        {
            metrics::counter!("analysis_cache_hits_total").increment(1);
            return Ok((analysis, true));
        }
        let analysis = self.analyzer.analyze(input).await?;
        metrics::counter!("analysis_runs_total", "provider" => analysis.provider.clone())
            .increment(1);
        if analysis.report.passed {
            self.journal
                .cache_put(key, &serde_json::to_value(&analysis).unwrap_or(Value::Null))
                .await?;
        }
        Ok((analysis, false))
    }
}

/// The job kinds.
pub const JOB_BASELINE: &str = "baseline";
pub const JOB_SINGLE: &str = "single";
pub const JOB_E1: &str = "e1";
pub const JOB_D1: &str = "d1";

/// The worker's scenarios: hooks, job handlers, readiness check and the R1 poller.
pub fn registry(
    deps: Arc<Deps>,
    poll_interval: std::time::Duration,
    ping: Option<Arc<tokio::sync::Notify>>,
) -> Registry {
    let mut registry = Registry::empty();
    registry
        .hooks
        .insert("a1".into(), Arc::new(baseline::A1Hook(deps.clone())));
    registry
        .hooks
        .insert("a2".into(), Arc::new(baseline::BuildHook));
    registry
        .hooks
        .insert("s3".into(), Arc::new(baseline::BuildHook));
    registry.hooks.insert("r1".into(), Arc::new(single::R1Hook));
    registry
        .hooks
        .insert("s1".into(), Arc::new(gate1::S1Hook(deps.clone())));
    registry
        .hooks
        .insert("d1".into(), Arc::new(experiments::D1Hook(deps.clone())));
    registry
        .hooks
        .insert("e1".into(), Arc::new(experiments::E1Hook(deps.clone())));
    registry.handlers.push((
        JOB_BASELINE.into(),
        Arc::new(baseline::BuildJob(deps.clone())),
    ));
    registry
        .handlers
        .push((JOB_SINGLE.into(), Arc::new(single::SingleJob(deps.clone()))));
    registry
        .handlers
        .push((JOB_E1.into(), Arc::new(experiments::E1Job(deps.clone()))));
    registry
        .handlers
        .push((JOB_D1.into(), Arc::new(experiments::D1Job(deps.clone()))));
    let store = deps.store.clone();
    registry.ready = Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.ready().await.map_err(|e| e.to_string()) })
    });
    if !poll_interval.is_zero() || ping.is_some() {
        let deps = deps.clone();
        registry.background.push(Box::new(move |runner, stop| {
            Box::pin(poller::run(deps, poll_interval, ping, runner, stop))
        }));
    }
    registry
}

/// A job handler over a scenario function, with the failure write-back of the scenario.
#[async_trait::async_trait]
pub trait Scenario: Send + Sync + 'static {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, ScenarioError>;
    /// Writes a final failure where the operator looks.
    async fn record_failure(&self, _ctx: &JobContext, _error: &JobError) -> Option<Value> {
        None
    }
}

#[async_trait::async_trait]
impl<T: Scenario> JobHandler for T {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, JobError> {
        Scenario::run(self, ctx).await.map_err(JobError::from)
    }

    async fn on_failed(&self, ctx: &JobContext, error: &JobError) -> Option<Value> {
        self.record_failure(ctx, error).await
    }
}

/// Whether a job's options ask to skip the analysis cache (admin replays may).
pub fn bypass_cache(ctx: &JobContext) -> bool {
    ctx.job
        .options
        .get("bypass_cache")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The Run record id a replayed job's original wrote, if this job is a replay.
pub fn replay_of_record(ctx: &JobContext) -> Option<String> {
    ctx.job
        .options
        .get("replay_of_record")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether another job doing this job's work (the same dedupe key) has already succeeded, by the
/// journal; `None` for a replay or a job without a dedupe key, where the journal cannot tell.
pub async fn earlier_success(deps: &Deps, ctx: &JobContext) -> Result<Option<bool>, ScenarioError> {
    match (&ctx.job.replay_of, &ctx.job.dedupe_key) {
        (None, Some(key)) => Ok(Some(
            deps.journal
                .succeeded_before(key.clone(), ctx.job.id.clone())
                .await?,
        )),
        _ => Ok(None),
    }
}

/// The first Run record of the chain of replays this job belongs to, if it is a replay.
pub fn replay_root_record(ctx: &JobContext) -> Option<String> {
    ctx.job
        .options
        .get("replay_root_record")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The Key of the Run record a job writes: stable across the job's retries and restarts; a replay
/// is a new job and so a new Run (linked to the old one through `Replay Of`).
pub fn run_key(ctx: &JobContext) -> String {
    format!("run:{}", ctx.job.id)
}

/// RFC 3339 (UTC, seconds) of a millisecond timestamp, for record fields.
pub fn record_time(ms: i64) -> String {
    crate::journal::rfc3339(ms - ms.rem_euclid(1000))
}

/// A JSON object literal as record fields.
pub(crate) fn fields(value: Value) -> coach_store::Fields {
    match value {
        Value::Object(m) => m,
        _ => coach_store::Fields::new(),
    }
}

/// Truncates text for a long-text field (Airtable holds at most 100,000 characters).
pub fn long_text(s: &str) -> String {
    const MAX: usize = 99_000;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n…(truncated)", &s[..end])
}

/// A synchronous hook adapter: validation plus a scenario function.
pub(crate) fn created(body: Value) -> Result<(StatusCode, Value), ApiError> {
    Ok((StatusCode::CREATED, body))
}

/// Convenience so that hooks can implement only what they need.
pub(crate) type HookResult = Result<(StatusCode, Value), ApiError>;
