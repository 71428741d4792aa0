//! The seven blueprint scenarios (ARCHITECTURE §2) as plain async functions over typed requests, the
//! record store, the analyzer and the journal. Nothing here knows HTTP: a request arrives already
//! parsed (record ids as [`RecordId`]s), an outcome leaves as a typed value, and a failure is a
//! [`ScenarioError`] that says what kind of failure it is. The web layer (`crate::http::hooks`) parses
//! bodies into these requests and maps outcomes and errors to status codes; [`jobs`] puts the
//! asynchronous ones in the job runner; `crate::app` wires both.
//!
//! | hook | request | mode | function |
//! |---|---|---|---|
//! | a1 | [`baseline::NewPack`] | synchronous, 201 | [`baseline::create_pack`] |
//! | a2, s3 | [`baseline::BuildPack`] | job `baseline` | [`baseline::build_pack`], then job `e1` |
//! | r1 | [`single::RunRequestRef`] | job `single` | [`single::run_request`], then job `d1` |
//! | s1 | [`gate1::CheckRequest`] | synchronous, 200 | [`gate1::check`] |
//! | d1 | [`experiments::RecordAttempt`] | synchronous or job `d1` | [`experiments::record_attempt`] |
//! | e1 | [`experiments::Instantiate`] | synchronous or job `e1` | [`experiments::instantiate`] |
//!
//! A job is a [`jobs::JobSpec`]: one variant per kind with its typed facts, serialised once into the
//! journal. A chained job carries what its parent already read ([`experiments::D1Facts`],
//! [`experiments::E1Facts`]), which saves the reads the hook path has to make.
//!
//! Every record is written with an upsert on a deterministic `Key` (`run:{job}`, `e1:{run}`,
//! `d1:{experiment}:{run}`, …), so re-running a job after a crash, a retry or a replay updates what it
//! wrote before instead of writing it twice. Timestamps written to records come from the job or the
//! source record, not from the clock at write time, so a re-run writes the same values.
//!
//! Each scenario function runs in a span named after it carrying the scenario, the job (run) id, the
//! delivery key and the record ids it works on, under the runner's `job` span (which carries the
//! request id of the delivery that created the job), so one grep joins a delivery to its records.
//!
//! `serde_json::Value` appears here only where the data is JSON by contract, each place documented:
//! the coaching output S1 checks ([`gate1::CheckRequest::output`]; the analysis output a Run keeps is
//! read through `coach_coaching::CheckedOutput`, part by part from the parsed text in
//! `experiments::run_output`, so a malformed proposal does not hide a well-formed attempt), and in [`jobs`] the boundary with the runner and
//! the journal, whose API is JSON (`JobOutcome::result`, `JobError::details`, the payload column),
//! which the typed outcomes and specs are serialised into there, once.
//!
//! Record ids: requests hold [`RecordId`]s parsed at the edge, and link fields of typed records are
//! `Vec<RecordId>`, validated once when the store reads the record; scenarios follow links and write
//! them without parsing again. Only a record's own id (`id: String` of a typed record, which may be
//! empty before it is written) is read into a `RecordId` where a scenario links to it ([`known_id`]).

pub mod baseline;
pub mod experiments;
pub mod gate1;
pub mod jobs;
pub mod poller;
pub mod single;
pub mod transcripts;

use std::collections::HashMap;
use std::sync::Arc;

use coach_coaching::{Analysis, AnalysisError, AnalysisInput, Analyzer};
use coach_store::attachment::AttachmentPolicy;
use coach_store::{RecordId, Store, StoreError};

use crate::journal::{Journal, JournalError};

pub use jobs::{JOB_BASELINE, JOB_D1, JOB_E1, JOB_SINGLE, JobRun, JobSpec};

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

/// Invalid input: what is wrong, where (a JSON pointer into the request), under a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    pub code: &'static str,
    pub message: String,
    /// Where in the request the problem is (`/transcript_ids/1`), when it is in one place.
    pub pointer: Option<String>,
    /// True when the request is malformed (not a valid record id, …) rather than well-formed but
    /// unacceptable: the web layer answers 400 for the one and 422 for the other.
    pub malformed: bool,
}

/// The delivery a synchronous scenario answers: its journal key (records written for it are keyed on
/// it) and the request id it came with (stored with the jobs it queues, so their logs join up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub key: String,
    pub request_id: Option<String>,
}

/// An error of a scenario, typed by kind so that HTTP and jobs can each answer it properly.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The request or the records it names are wrong: 400/422 on HTTP, a permanent job failure.
    #[error("{}", .0.message)]
    Invalid(InvalidInput),
    /// A record the request names does not exist (422 on HTTP with its code and pointer).
    #[error("{message}")]
    NotFound {
        code: &'static str,
        message: String,
        pointer: Option<String>,
    },
    /// The request conflicts with the state of the records (a permanent job failure).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
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
    /// A well-formed request (or record) that cannot be processed.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid(InvalidInput {
            code,
            message: message.into(),
            pointer: None,
            malformed: false,
        })
    }

    /// A malformed request.
    pub fn malformed(code: &'static str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid(InvalidInput {
            code,
            message: message.into(),
            pointer: None,
            malformed: true,
        })
    }

    /// Points an input or not-found error at a place in the request.
    pub fn with_pointer(self, at: &str) -> ScenarioError {
        match self {
            ScenarioError::Invalid(mut input) => {
                input.pointer = Some(at.to_owned());
                ScenarioError::Invalid(input)
            }
            ScenarioError::NotFound { code, message, .. } => ScenarioError::NotFound {
                code,
                message,
                pointer: Some(at.to_owned()),
            },
            other => other,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ScenarioError::Invalid(input) => input.code,
            ScenarioError::NotFound { code, .. }
            | ScenarioError::Conflict { code, .. }
            | ScenarioError::Transient { code, .. } => code,
            ScenarioError::Store(StoreError::NotFound { .. }) => "RECORD_NOT_FOUND",
            ScenarioError::Store(e) => e.code(),
            ScenarioError::Analysis(e) => e.code(),
            ScenarioError::Journal(e) => e.code(),
        }
    }

    /// The JSON pointer of an input or not-found error.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            ScenarioError::Invalid(input) => input.pointer.as_deref(),
            ScenarioError::NotFound { pointer, .. } => pointer.as_deref(),
            _ => None,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            ScenarioError::Invalid(_)
            | ScenarioError::NotFound { .. }
            | ScenarioError::Conflict { .. } => false,
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
        if analysis.report.passed
            && let Ok(entry) = serde_json::to_value(&analysis)
        {
            self.journal.cache_put(key, &entry).await?;
        }
        Ok((analysis, false))
    }
}

/// Reads a record id that came from a trusted place (a record the store returned, a typed request):
/// a malformed one is an error of that record, not of the caller.
pub(crate) fn known_id(id: &str) -> Result<RecordId, ScenarioError> {
    RecordId::parse(id).map_err(ScenarioError::Store)
}

/// RFC 3339 (UTC, seconds) of a millisecond timestamp, for record fields.
pub fn record_time(ms: i64) -> String {
    crate::journal::rfc3339(ms - ms.rem_euclid(1000))
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
