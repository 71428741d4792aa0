//! E1: instantiate an experiment from a baseline run.

use coach_coaching::{CheckedOutput, ExperimentProposal};
use coach_store::RecordId;
use coach_store::tables::{
    self, Change, EventType, ExperimentStatus, ExperimentUpdate, RunStatus, RunType, UserUpdate,
    queries,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{check_finished, run_output};
use crate::scenarios::transcripts::{read, upsert};
use crate::scenarios::{Deps, ScenarioError, known_id};

/// What E1 needs about the baseline run (what A2/S3 hands its chained E1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E1Facts {
    pub user: Vec<RecordId>,
    pub baseline_pack: Option<RecordId>,
    pub finished_at: Option<String>,
    /// The typed parts of the run's output (the journal's rows hold the whole output; the rest of it
    /// is not read here).
    pub output: CheckedOutput,
}

/// E1's request (and the `e1` job's facts): the baseline run, and what its build already read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instantiate {
    pub run_id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<E1Facts>,
}

/// What E1 did (the hook's 201 body and the `e1` job's result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instantiated {
    pub experiment_id: String,
    pub event_id: String,
    pub experiment_status: ExperimentStatus,
    pub completed_previous: Option<String>,
}

async fn read_e1_facts(deps: &Deps, run_id: &RecordId) -> Result<E1Facts, ScenarioError> {
    let run: tables::Run = read(deps, run_id).await?;
    if run.run_type != Some(RunType::BaselinePack) {
        return Err(ScenarioError::unprocessable(
            "WRONG_RUN_TYPE",
            format!("run {run_id} is not a baseline_pack run; E1 starts experiments from baseline runs only"),
        )
        .with_pointer("/run_id"));
    }
    check_finished(&run, run_id)?;
    if run.status != Some(RunStatus::Succeeded) {
        return Err(ScenarioError::unprocessable(
            "RUN_FAILED",
            format!("run {run_id} failed; replay it before starting an experiment"),
        )
        .with_pointer("/run_id"));
    }
    Ok(E1Facts {
        user: run.user.clone(),
        baseline_pack: run.baseline_pack.first().cloned(),
        finished_at: run.finished_at.clone(),
        output: run_output(&run),
    })
}

/// E1: creates the Experiment from the run's `experiment_proposal`, makes it the user's active one
/// (completing a previous active one first) and records an `instantiated` event.
///
/// `fresh` is true for the first E1 job of a baseline run. Anything else (the hook, a replay, a job
/// after one that succeeded) first looks the experiment up by its Key, and leaves one that has been
/// completed or abandoned since as it is instead of making it active again.
pub async fn instantiate(
    deps: &Deps,
    request: &Instantiate,
    fresh: bool,
) -> Result<Instantiated, ScenarioError> {
    let span = tracing::info_span!(
        "instantiate",
        scenario = "e1",
        run_record_id = %request.run_id,
        chained = request.run.is_some(),
        experiment_id = tracing::field::Empty,
    );
    instantiate_in(deps, request, fresh).instrument(span).await
}

async fn instantiate_in(
    deps: &Deps,
    request: &Instantiate,
    fresh: bool,
) -> Result<Instantiated, ScenarioError> {
    let run_id = &request.run_id;
    let facts = match &request.run {
        Some(f) => f.clone(),
        None => read_e1_facts(deps, run_id).await?,
    };
    let proposal: ExperimentProposal = facts.output.experiment_proposal.ok_or_else(|| {
        ScenarioError::unprocessable(
            "NO_EXPERIMENT_PROPOSAL",
            format!("run {run_id} has no experiment_proposal in its output"),
        )
    })?;
    let key = format!("e1:{run_id}");
    let user_id = facts.user.first().cloned();
    let existing = match fresh {
        true => None,
        false => deps
            .store
            .find::<tables::Experiment>(&queries::by_key(&key))
            .await?
            .into_iter()
            .next(),
    };
    let settled = existing
        .as_ref()
        .filter(|e| e.status != Some(ExperimentStatus::Active));
    let mut completed_previous = None;
    let experiment_id = match settled {
        Some(e) => e.id.clone(),
        None => {
            if let Some(uid) = &user_id {
                completed_previous = complete_previous(deps, uid, &key).await?;
            }
            let experiment = tables::Experiment {
                key: Some(key.clone()),
                title: Some(proposal.title.clone()),
                user: user_id.iter().cloned().collect(),
                baseline_pack: facts.baseline_pack.iter().cloned().collect(),
                source_run: vec![run_id.clone()],
                behavior: Some(proposal.behavior.clone()),
                success_signal: Some(proposal.success_signal.clone()),
                target_meetings: Some(proposal.target_meetings),
                status: Some(ExperimentStatus::Active),
                started_at: facts.finished_at.clone(),
                ..Default::default()
            };
            let id = upsert(deps, &experiment).await?.id;
            if existing.is_none() {
                // A new experiment has no attempts yet: D1 can count from zero without a read.
                deps.journal.start_attempt_tally(id.clone()).await?;
            }
            id
        }
    };
    tracing::Span::current().record("experiment_id", experiment_id.as_str());
    let experiment_link = known_id(&experiment_id)?;
    let event = tables::ExperimentEvent {
        key: Some(format!("{key}:instantiated")),
        experiment: vec![experiment_link.clone()],
        run: vec![run_id.clone()],
        event_type: Some(EventType::Instantiated),
        evidence: Some(proposal.behavior.clone()),
        occurred_at: facts.finished_at.clone(),
        ..Default::default()
    };
    let event_id = upsert(deps, &event).await?.id;
    if let (Some(uid), None) = (&user_id, settled) {
        let active = UserUpdate {
            active_experiment: Change::Set(vec![experiment_link.clone()]),
        };
        deps.store.patch(uid, &active).await?;
    }
    if let Some(pack) = &facts.baseline_pack {
        let linked = tables::BaselinePackUpdate {
            experiment: Change::Set(vec![experiment_link]),
            ..Default::default()
        };
        deps.store.patch(pack, &linked).await?;
    }
    let status = settled
        .and_then(|e| e.status)
        .unwrap_or(ExperimentStatus::Active);
    Ok(Instantiated {
        experiment_id,
        event_id,
        experiment_status: status,
        completed_previous,
    })
}

/// Completes the user's active experiment unless it is the one with `key`; returns its id if it did.
async fn complete_previous(
    deps: &Deps,
    user_id: &RecordId,
    key: &str,
) -> Result<Option<String>, ScenarioError> {
    let user: tables::User = read(deps, user_id).await?;
    let Some(prev) = user.active_experiment.first() else {
        return Ok(None);
    };
    let prev_id = prev.clone();
    let previous: tables::Experiment = read(deps, &prev_id).await?;
    if previous.key.as_deref() == Some(key) || previous.status != Some(ExperimentStatus::Active) {
        return Ok(None);
    }
    let completed = ExperimentUpdate {
        status: Change::Set(ExperimentStatus::Completed),
    };
    deps.store.patch(&prev_id, &completed).await?;
    Ok(Some(prev_id.into_string()))
}
