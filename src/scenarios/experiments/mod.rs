//! E1 (instantiate an experiment from a baseline run) and D1 (record an attempt event after a
//! qualifying single-meeting run).
//!
//! Both run as synchronous hooks (Make or an admin calls them alone, and reads them from the Run
//! record) and as chained jobs (after A2/S3 and R1). A chained job carries what its parent already
//! read ([`E1Facts`], [`D1Facts`]), which saves the reads the hook has to make; the writes are the
//! same upserts either way: `e1:{run}` for the Experiment, `e1:{run}:instantiated`,
//! `d1:{experiment}:{run}` and `d1:{experiment}:completed` for the events — so each exists once
//! however often it is asked for.
//!
//! [`attempt`] holds D1, [`instantiate`] E1; what both read of a Run or an Experiment is here.

mod attempt;
mod instantiate;

pub use attempt::{D1Facts, D1Outcome, RecordAttempt, record_attempt};
pub use instantiate::{E1Facts, Instantiate, Instantiated, instantiate};

use coach_coaching::CheckedOutput;
use coach_store::RecordId;
use coach_store::tables::{self, ExperimentStatus, RunStatus};
use serde::{Deserialize, Serialize};

use super::ScenarioError;

/// What D1 needs to know about an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentFacts {
    pub id: String,
    pub key: String,
    pub started_at: Option<String>,
    pub target_meetings: i64,
    pub active: bool,
}

impl ExperimentFacts {
    pub fn from_record(e: &tables::Experiment) -> ExperimentFacts {
        ExperimentFacts {
            id: e.id.clone(),
            key: e.key.clone().unwrap_or_default(),
            started_at: e.started_at.clone(),
            target_meetings: e.target_meetings.unwrap_or(3).max(1),
            active: e.status == Some(ExperimentStatus::Active),
        }
    }
}

/// The typed parts of a Run's `Output` (none when it is empty or not an output).
pub(super) fn run_output(run: &tables::Run) -> CheckedOutput {
    run.output
        .as_deref()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
        // Part by part, so that a malformed proposal does not hide a well-formed attempt.
        .map(|o| CheckedOutput::read(&o))
        .unwrap_or_default()
}

pub(super) fn check_finished(run: &tables::Run, id: &RecordId) -> Result<(), ScenarioError> {
    match run.status {
        Some(RunStatus::Succeeded) | Some(RunStatus::Failed) => Ok(()),
        _ => Err(ScenarioError::unprocessable(
            "RUN_NOT_FINISHED",
            format!(
                "run {id} has not finished (status {}); call again once it has succeeded",
                run.status.map(|s| s.as_str()).unwrap_or("empty")
            ),
        )
        .with_pointer("/run_id")),
    }
}
