//! Jobs as types: [`JobSpec`] (one variant per job kind, its facts typed) and the [`JobHandler`]
//! adapters that put the scenario functions in the job runner.
//!
//! A spec is serialised once, into the journal's `kind` and `payload` columns, and read back once,
//! when the job runs ([`JobSpec::parse`]); its serde names are the payload keys the journal has always
//! held (`baseline_pack_id`, `run_request_id`, `run_id`, `known`, `run`), so rows written before the
//! types existed read the same. A payload that does not read as its kind is a permanent failure
//! (`JOB_PAYLOAD_INVALID`), never a silently skipped shortcut.
//!
//! This is the one module of the scenarios that handles `serde_json::Value`: the runner's API is
//! JSON (`JobOutcome::result`, `JobError::details`, `JobHandler::on_failed`), so the typed outcomes
//! are serialised into it here.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::baseline::{self, BuildPack};
use super::experiments::{self, Instantiate, RecordAttempt};
use super::single::{self, RunRequestRef};
use super::{Deps, ScenarioError};
use crate::jobs::{JobContext, JobError, JobHandler, JobOptions, JobOutcome};
use crate::journal::NewJob;

/// The job kinds.
pub const JOB_BASELINE: &str = "baseline";
pub const JOB_SINGLE: &str = "single";
pub const JOB_E1: &str = "e1";
pub const JOB_D1: &str = "d1";

/// A job of the scenarios, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSpec {
    /// A2/S3 (and A1 with `build`): build a baseline pack.
    Baseline(BuildPack),
    /// R1: run one Run Request.
    Single(RunRequestRef),
    /// E1 after a baseline run.
    E1(Instantiate),
    /// D1 after a single-meeting run.
    D1(RecordAttempt),
}

impl JobSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Baseline(_) => JOB_BASELINE,
            JobSpec::Single(_) => JOB_SINGLE,
            JobSpec::E1(_) => JOB_E1,
            JobSpec::D1(_) => JOB_D1,
        }
    }

    /// The key under which at most one job doing this work may be active.
    pub fn dedupe_key(&self) -> Option<String> {
        match self {
            JobSpec::Baseline(b) => Some(format!("baseline:{}", b.baseline_pack_id)),
            JobSpec::Single(r) => Some(single::dedupe_key(r.run_request_id.as_str())),
            JobSpec::E1(e) => Some(format!("e1:{}", e.run_id)),
            JobSpec::D1(d) => d
                .known
                .as_ref()
                .and_then(|k| k.experiment.as_ref())
                .map(|e| format!("d1:{}:{}", e.id, d.run_id)),
        }
    }

    /// The job to insert: kind, payload and dedupe key from the spec.
    pub fn into_job(self, scenario: &str) -> NewJob {
        let kind = self.kind();
        let dedupe_key = self.dedupe_key();
        let payload = match &self {
            JobSpec::Baseline(b) => to_payload(b),
            JobSpec::Single(r) => to_payload(r),
            JobSpec::E1(e) => to_payload(e),
            JobSpec::D1(d) => to_payload(d),
        };
        let mut job = NewJob::new(kind, scenario, payload);
        job.dedupe_key = dedupe_key;
        job
    }

    /// A follow-up of the job `parent`: same scenario, linked to it, with its request id.
    pub fn follow_up_of(self, parent: &JobRun<'_>) -> NewJob {
        let mut job = self.into_job(&parent.ctx.job.scenario);
        job.parent_id = Some(parent.ctx.job.id.clone());
        job.request_id = parent.ctx.job.request_id.clone();
        job
    }

    /// Reads a journaled job's kind and payload.
    pub fn parse(ctx: &JobContext) -> Result<JobSpec, JobError> {
        let job = &ctx.job;
        Ok(match job.kind.as_str() {
            JOB_BASELINE => JobSpec::Baseline(from_payload(ctx)?),
            JOB_SINGLE => JobSpec::Single(from_payload(ctx)?),
            JOB_E1 => JobSpec::E1(from_payload(ctx)?),
            JOB_D1 => JobSpec::D1(from_payload(ctx)?),
            other => {
                return Err(JobError::permanent(
                    "UNKNOWN_JOB_KIND",
                    format!("no handler for job kind `{other}`"),
                ));
            }
        })
    }
}

fn to_payload<T: Serialize>(facts: &T) -> serde_json::Value {
    // The facts are plain data (strings, numbers, options): serialising them cannot fail.
    serde_json::to_value(facts).unwrap_or_default()
}

fn from_payload<T: DeserializeOwned>(ctx: &JobContext) -> Result<T, JobError> {
    serde_json::from_value(ctx.job.payload.clone()).map_err(|e| {
        JobError::permanent(
            "JOB_PAYLOAD_INVALID",
            format!(
                "the payload of job {} does not read as a `{}` job: {e}",
                ctx.job.id, ctx.job.kind
            ),
        )
    })
}

/// What a scenario sees of the job it runs: the journaled job and its typed options.
pub struct JobRun<'a> {
    pub ctx: &'a JobContext,
    pub options: JobOptions,
}

impl<'a> JobRun<'a> {
    pub fn new(ctx: &'a JobContext) -> Result<JobRun<'a>, JobError> {
        Ok(JobRun {
            ctx,
            options: JobOptions::of(&ctx.job)?,
        })
    }

    /// The Key of the Run record the job writes: stable across its retries and restarts; a replay is
    /// a new job and so a new Run (linked to the old one through `Replay Of`).
    pub fn run_key(&self) -> String {
        format!("run:{}", self.ctx.job.id)
    }

    pub fn id(&self) -> &str {
        &self.ctx.job.id
    }

    pub fn attempts(&self) -> u32 {
        self.ctx.job.attempts
    }

    pub fn started_at(&self) -> Option<i64> {
        self.ctx.job.started_at
    }

    pub fn delivery_key(&self) -> Option<&str> {
        self.ctx.job.delivery_key.as_deref()
    }

    /// Whether another job doing this job's work (the same dedupe key) has already succeeded, by the
    /// journal; `None` for a replay or a job without a dedupe key, where the journal cannot tell.
    pub async fn earlier_success(&self, deps: &Deps) -> Result<Option<bool>, ScenarioError> {
        match (&self.ctx.job.replay_of, &self.ctx.job.dedupe_key) {
            (None, Some(key)) => Ok(Some(
                deps.journal
                    .succeeded_before(key.clone(), self.ctx.job.id.clone())
                    .await?,
            )),
            _ => Ok(None),
        }
    }
}

/// Maps a scenario error to a job error: transient ones are retried, the rest fail the job.
impl From<ScenarioError> for JobError {
    fn from(e: ScenarioError) -> Self {
        let retry_after = match &e {
            ScenarioError::Analysis(a) => a.retry_after(),
            _ => None,
        };
        let details = match &e {
            ScenarioError::Invalid(_) | ScenarioError::NotFound { .. } => {
                let mut details = serde_json::Map::new();
                if let Some(pointer) = e.pointer() {
                    details.insert("pointer".into(), pointer.into());
                }
                serde_json::Value::Object(details)
            }
            ScenarioError::Analysis(coach_coaching::AnalysisError::Gate1Failed {
                report, ..
            }) => serde_json::json!({ "gate1_report": report }),
            _ => serde_json::Value::Null,
        };
        let base = if e.is_transient() {
            JobError::transient(e.code(), e.to_string())
        } else {
            JobError::permanent(e.code(), e.to_string())
        };
        base.with_retry_after(retry_after).with_details(details)
    }
}

fn outcome<T: Serialize>(result: &T, follow_ups: Vec<NewJob>) -> JobOutcome {
    JobOutcome {
        result: to_payload(result),
        follow_ups,
    }
}

/// The job handlers of the scenarios, by kind.
pub fn handlers(deps: Arc<Deps>) -> Vec<(String, Arc<dyn JobHandler>)> {
    vec![
        (JOB_BASELINE.into(), Arc::new(ScenarioJobs(deps.clone()))),
        (JOB_SINGLE.into(), Arc::new(ScenarioJobs(deps.clone()))),
        (JOB_E1.into(), Arc::new(ScenarioJobs(deps.clone()))),
        (JOB_D1.into(), Arc::new(ScenarioJobs(deps))),
    ]
}

/// One adapter for every kind: the spec says which scenario function runs.
struct ScenarioJobs(Arc<Deps>);

#[async_trait::async_trait]
impl JobHandler for ScenarioJobs {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, JobError> {
        let spec = JobSpec::parse(ctx)?;
        let job = JobRun::new(ctx)?;
        let deps = &self.0;
        Ok(match spec {
            JobSpec::Baseline(request) => {
                let (built, follow_ups) = baseline::build_pack(deps, &request, &job).await?;
                outcome(&built, follow_ups)
            }
            JobSpec::Single(request) => {
                let (done, follow_ups) = single::run_request(deps, &request, &job).await?;
                outcome(&done, follow_ups)
            }
            JobSpec::E1(request) => {
                let fresh = job.earlier_success(deps).await? == Some(false);
                outcome(
                    &experiments::instantiate(deps, &request, fresh).await?,
                    vec![],
                )
            }
            JobSpec::D1(request) => {
                outcome(&experiments::record_attempt(deps, &request).await?, vec![])
            }
        })
    }

    async fn on_failed(&self, ctx: &JobContext, error: &JobError) -> Option<serde_json::Value> {
        let spec = JobSpec::parse(ctx).ok()?;
        let job = JobRun::new(ctx).ok()?;
        let written = match spec {
            JobSpec::Baseline(request) => {
                baseline::record_failure(&self.0, &request, &job, error).await
            }
            JobSpec::Single(request) => {
                single::record_failure(&self.0, &request, &job, error).await
            }
            JobSpec::E1(_) | JobSpec::D1(_) => return None,
        };
        Some(to_payload(&written))
    }
}
