//! E1 (instantiate an experiment from a baseline run) and D1 (record an attempt event after a
//! qualifying single-meeting run).
//!
//! Both run as synchronous hooks (Make or an admin calls them alone, and reads them from the Run
//! record) and as chained jobs (after A2/S3 and R1). A chained job carries what its parent already
//! read, which saves the reads the hook has to make; the writes are the same upserts either way:
//! `e1:{run}` for the Experiment, `e1:{run}:instantiated`, `d1:{experiment}:{run}` and
//! `d1:{experiment}:completed` for the events — so each exists once however often it is asked for.

use std::sync::Arc;

use actix_web::http::StatusCode;
use coach_store::tables::{
    self, Attempted, EventType, ExperimentStatus, RunStatus, RunType, TableRecord,
};
use coach_store::{Filter, ListQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::input::{object, record_id_field};
use super::transcripts::typed;
use super::{Deps, HookResult, Scenario, ScenarioError, fields};
use crate::error::ApiError;
use crate::http::Hook;
use crate::jobs::{JobContext, JobOutcome};

/// What D1 needs to know about an experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// D1's input once everything is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct D1Facts {
    run_type: String,
    run_status: String,
    user_id: Option<String>,
    experiment: Option<ExperimentFacts>,
    meeting_date: Option<String>,
    attempt: Value,
    finished_at: Option<String>,
    /// The run the attempt is keyed on: the first Run of a chain of replays (else the run itself).
    #[serde(default)]
    attempt_run: Option<String>,
}

/// What D1 did.
#[derive(Debug, Clone, PartialEq)]
pub enum D1Outcome {
    Recorded {
        event_id: String,
        experiment_id: String,
        attempts: usize,
        target: i64,
        completed: bool,
    },
    Skipped {
        reason: String,
    },
}

impl D1Outcome {
    fn to_answer(&self) -> (StatusCode, Value) {
        match self {
            D1Outcome::Recorded {
                event_id,
                experiment_id,
                attempts,
                target,
                completed,
            } => (
                StatusCode::CREATED,
                json!({ "event_id": event_id, "experiment_id": experiment_id, "attempts": attempts, "target_meetings": target, "experiment_completed": completed }),
            ),
            D1Outcome::Skipped { reason } => {
                (StatusCode::OK, json!({ "skipped": true, "reason": reason }))
            }
        }
    }
}

fn run_output(run: &tables::Run) -> Value {
    run.output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or(Value::Null)
}

fn check_finished(run: &tables::Run, id: &str) -> Result<(), ScenarioError> {
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

/// Reads what D1 needs from the store (the hook path).
async fn read_d1_facts(deps: &Deps, run_id: &str) -> Result<D1Facts, ScenarioError> {
    let run: tables::Run = typed(&deps.store.get(tables::RUNS, run_id).await?)?;
    if run.run_type != Some(RunType::SingleMeeting) {
        return Err(ScenarioError::unprocessable(
            "WRONG_RUN_TYPE",
            format!("run {run_id} is not a single_meeting run; D1 records attempts for single meetings only"),
        )
        .with_pointer("/run_id"));
    }
    check_finished(&run, run_id)?;
    let mut facts = D1Facts {
        run_type: "single_meeting".into(),
        run_status: run
            .status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        user_id: run.user.first().cloned(),
        experiment: None,
        meeting_date: None,
        attempt: run_output(&run)
            .get("experiment_attempt")
            .cloned()
            .unwrap_or(Value::Null),
        finished_at: run.finished_at.clone(),
        attempt_run: None,
    };
    if run.status != Some(RunStatus::Succeeded) {
        return Ok(facts);
    }
    facts.attempt_run = Some(replay_root(deps, &run).await?);
    if let Some(uid) = &facts.user_id {
        let user: tables::User = typed(&deps.store.get(tables::USERS, uid).await?)?;
        if let Some(eid) = user.active_experiment.first() {
            let e: tables::Experiment = typed(&deps.store.get(tables::EXPERIMENTS, eid).await?)?;
            facts.experiment = Some(ExperimentFacts::from_record(&e));
        }
    }
    if facts.experiment.is_some()
        && let Some(tid) = run.transcripts.first()
    {
        let t: tables::Transcript = typed(&deps.store.get(tables::TRANSCRIPTS, tid).await?)?;
        facts.meeting_date = t.meeting_date;
    }
    Ok(facts)
}

/// The first Run of the chain of replays `run` ends (followed through `Replay Of`, at most 20 back).
async fn replay_root(deps: &Deps, run: &tables::Run) -> Result<String, ScenarioError> {
    let mut root = run.id.clone();
    let mut previous = run.replay_of.first().cloned();
    for _ in 0..20 {
        let Some(id) = previous else { break };
        let earlier: tables::Run = typed(&deps.store.get(tables::RUNS, &id).await?)?;
        previous = earlier.replay_of.first().cloned();
        root = id;
    }
    Ok(root)
}

/// The evidence text of an attempt judgement: each quote with its span id, then the note.
fn evidence_text(attempt: &Value) -> String {
    let mut out = String::new();
    for e in attempt
        .get("evidence")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let span = e.get("span_id").and_then(Value::as_str).unwrap_or("?");
        let quote = e.get("quote").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("[{span}] \"{quote}\"\n"));
    }
    if let Some(note) = attempt.get("note").and_then(Value::as_str) {
        out.push_str(note);
    }
    out.trim().to_owned()
}

/// The Key of the attempt event of a run (the first run of its chain of replays) in an experiment.
fn attempt_key(experiment_id: &str, attempt_run: &str) -> String {
    format!("d1:{experiment_id}:{attempt_run}")
}

/// The runs the experiment's `attempt` events in the store are keyed on (an event made by hand,
/// with another Key, counts once under its own id), each with its `Attempted` judgement.
async fn listed_attempts(
    deps: &Deps,
    experiment: &ExperimentFacts,
) -> Result<Vec<(String, String)>, ScenarioError> {
    let events = deps
        .store
        .list(
            tables::EXPERIMENT_EVENTS,
            &ListQuery::new()
                .filter(Filter::and([
                    Filter::link_contains("Experiment", &experiment.key),
                    Filter::eq("Type", EventType::Attempt.as_str()),
                ]))
                .fields(["Key", "Attempted"]),
        )
        .await?;
    let prefix = attempt_key(&experiment.id, "");
    Ok(events
        .iter()
        .map(|e| {
            let run = e
                .text("Key")
                .and_then(|k| k.strip_prefix(&prefix))
                .filter(|run| !run.is_empty())
                .map_or_else(|| format!("event:{}", e.id), str::to_owned);
            let attempted = e
                .text("Attempted")
                .unwrap_or(Attempted::Unclear.as_str())
                .to_owned();
            (run, attempted)
        })
        .collect())
}

/// The completion event's evidence. `Target Meetings` counts the meetings observed since the
/// experiment started — every attempt event, whatever its judgement — so the wording says
/// "observed" and gives the judgements apart.
fn completion_text(judgements: &[&str], target: i64) -> String {
    let count = |j: Attempted| judgements.iter().filter(|a| **a == j.as_str()).count();
    format!(
        "{} of {target} target meetings observed since the experiment started: attempted in {} (yes), \
         not attempted in {} (no), unclear in {}",
        judgements.len(),
        count(Attempted::Yes),
        count(Attempted::No),
        judgements.len() - count(Attempted::Yes) - count(Attempted::No),
    )
}

/// D1: one `attempt` event per (experiment, run) for a succeeded single-meeting run on or after the
/// experiment's start; completes the experiment when the attempts reach its target.
pub async fn record_attempt(
    deps: &Deps,
    run_id: &str,
    known: Option<&Value>,
) -> Result<D1Outcome, ScenarioError> {
    let facts = match known.and_then(|k| serde_json::from_value::<D1Facts>(k.clone()).ok()) {
        Some(f) => f,
        None => read_d1_facts(deps, run_id).await?,
    };
    if facts.run_status != RunStatus::Succeeded.as_str() {
        return Ok(D1Outcome::Skipped {
            reason: format!("run {run_id} did not succeed, so it is not an attempt"),
        });
    }
    let Some(experiment) = facts.experiment.filter(|e| e.active) else {
        return Ok(D1Outcome::Skipped {
            reason: "the user has no active experiment".into(),
        });
    };
    let Some(meeting_date) = facts.meeting_date.as_deref().filter(|d| d.len() >= 10) else {
        return Ok(D1Outcome::Skipped { reason: "the transcript has no Meeting Date, so it cannot be placed after the experiment's start".into() });
    };
    if let Some(start) = experiment.started_at.as_deref().filter(|s| s.len() >= 10)
        && meeting_date[..10] < start[..10]
    {
        return Ok(D1Outcome::Skipped {
            reason: format!(
                "the meeting ({}) is before the experiment started ({})",
                &meeting_date[..10],
                &start[..10]
            ),
        });
    }
    let attempted = match facts.attempt.get("attempted").and_then(Value::as_str) {
        Some("yes") => Attempted::Yes,
        Some("no") => Attempted::No,
        _ => Attempted::Unclear,
    };
    let evidence = if facts.attempt.is_null() {
        "the run's coaching did not judge the experiment".to_owned()
    } else {
        evidence_text(&facts.attempt)
    };
    let attempt_run = facts.attempt_run.as_deref().unwrap_or(run_id);
    let event = tables::ExperimentEvent {
        key: Some(attempt_key(&experiment.id, attempt_run)),
        experiment: vec![experiment.id.clone()],
        run: vec![run_id.to_owned()],
        event_type: Some(EventType::Attempt),
        attempted: Some(attempted),
        evidence: Some(super::long_text(&evidence)),
        occurred_at: facts.finished_at.clone(),
        ..Default::default()
    };
    // D1s of one experiment count one at a time, so two meetings finishing together cannot both
    // miss (or both pass) the target.
    let _serial = deps.lock_experiment(&experiment.id).await?;
    let target = usize::try_from(experiment.target_meetings).unwrap_or(1);
    // The journal's tally answers "not yet at the target" without a read; reaching the target, or
    // not knowing the experiment, is decided on the events Airtable holds.
    let known = deps
        .journal
        .attempt_tally(experiment.id.clone())
        .await?
        .filter(|runs| runs.len() + usize::from(!runs.iter().any(|r| r == attempt_run)) < target);
    // Judgements are known only when the events were listed, which they always are when this meeting
    // reaches the target (the tally alone never completes an experiment).
    let (mut runs, mut judgements) = match known {
        Some(runs) => (runs, Vec::new()),
        None => listed_attempts(deps, &experiment)
            .await?
            .into_iter()
            .unzip::<_, _, Vec<String>, Vec<String>>(),
    };
    // This meeting's judgement is the one just made (its event may already be listed from an
    // earlier try of this D1).
    match runs.iter().position(|r| r == attempt_run) {
        Some(i) => {
            if let Some(j) = judgements.get_mut(i) {
                *j = attempted.as_str().to_owned();
            }
        }
        None => {
            runs.push(attempt_run.to_owned());
            judgements.push(attempted.as_str().to_owned());
        }
    }
    let attempts = runs.len();
    let completed = attempts >= target;
    // This run's attempt is the one that reaches the target (also when this D1 runs again after a
    // crash); attempts after it are recorded without completing the experiment a second time.
    let completes = completed && attempts - 1 < target;
    let mut events = vec![event.to_fields()];
    if completes {
        let done = tables::ExperimentEvent {
            key: Some(format!("d1:{}:completed", experiment.id)),
            experiment: vec![experiment.id.clone()],
            run: vec![run_id.to_owned()],
            event_type: Some(EventType::Completed),
            evidence: Some(completion_text(
                &judgements.iter().map(String::as_str).collect::<Vec<_>>(),
                experiment.target_meetings,
            )),
            occurred_at: facts.finished_at.clone(),
            ..Default::default()
        };
        events.push(done.to_fields());
    }
    let written = deps.store.upsert(tables::EXPERIMENT_EVENTS, events).await?;
    let event_id = written.first().map(|r| r.id.clone()).unwrap_or_default();
    if completes {
        deps.store
            .update(
                tables::EXPERIMENTS,
                vec![(
                    experiment.id.clone(),
                    fields(json!({ "Status": ExperimentStatus::Completed.as_str() })),
                )],
            )
            .await?;
        if let Some(uid) = &facts.user_id {
            deps.store
                .update(
                    tables::USERS,
                    vec![(uid.clone(), fields(json!({ "Active Experiment": [] })))],
                )
                .await?;
        }
    }
    deps.journal
        .set_attempt_tally(experiment.id.clone(), runs)
        .await?;
    Ok(D1Outcome::Recorded {
        event_id,
        experiment_id: experiment.id,
        attempts,
        target: experiment.target_meetings,
        completed,
    })
}

/// What E1 needs about the baseline run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct E1Facts {
    user: Vec<String>,
    baseline_pack: Option<String>,
    finished_at: Option<String>,
    output: Value,
}

async fn read_e1_facts(deps: &Deps, run_id: &str) -> Result<E1Facts, ScenarioError> {
    let run: tables::Run = typed(&deps.store.get(tables::RUNS, run_id).await?)?;
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
    run_id: &str,
    known: Option<&Value>,
    fresh: bool,
) -> Result<Value, ScenarioError> {
    let facts = match known.and_then(|k| serde_json::from_value::<E1Facts>(k.clone()).ok()) {
        Some(f) => f,
        None => read_e1_facts(deps, run_id).await?,
    };
    let proposal = facts
        .output
        .get("experiment_proposal")
        .filter(|p| p.is_object())
        .cloned()
        .ok_or_else(|| {
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
            .list(
                tables::EXPERIMENTS,
                &ListQuery::new()
                    .filter(Filter::eq("Key", key.as_str()))
                    .max_records(1),
            )
            .await?
            .first()
            .map(typed::<tables::Experiment>)
            .transpose()?,
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
                title: proposal_text(&proposal, "title"),
                user: user_id.iter().cloned().collect(),
                baseline_pack: facts.baseline_pack.iter().cloned().collect(),
                source_run: vec![run_id.to_owned()],
                behavior: proposal_text(&proposal, "behavior"),
                success_signal: proposal_text(&proposal, "success_signal"),
                target_meetings: proposal.get("target_meetings").and_then(Value::as_i64),
                status: Some(ExperimentStatus::Active),
                started_at: facts.finished_at.clone(),
                ..Default::default()
            };
            let written = deps
                .store
                .upsert(tables::EXPERIMENTS, vec![experiment.to_fields()])
                .await?;
            let id = written.first().map(|r| r.id.clone()).unwrap_or_default();
            if existing.is_none() {
                // A new experiment has no attempts yet: D1 can count from zero without a read.
                deps.journal.start_attempt_tally(id.clone()).await?;
            }
            id
        }
    };
    let event = tables::ExperimentEvent {
        key: Some(format!("{key}:instantiated")),
        experiment: vec![experiment_id.clone()],
        run: vec![run_id.to_owned()],
        event_type: Some(EventType::Instantiated),
        evidence: proposal_text(&proposal, "behavior"),
        occurred_at: facts.finished_at.clone(),
        ..Default::default()
    };
    let written = deps
        .store
        .upsert(tables::EXPERIMENT_EVENTS, vec![event.to_fields()])
        .await?;
    let event_id = written.first().map(|r| r.id.clone()).unwrap_or_default();
    if let (Some(uid), None) = (&user_id, settled) {
        deps.store
            .update(
                tables::USERS,
                vec![(
                    uid.clone(),
                    fields(json!({ "Active Experiment": [experiment_id] })),
                )],
            )
            .await?;
    }
    if let Some(pack) = &facts.baseline_pack {
        deps.store
            .update(
                tables::BASELINE_PACKS,
                vec![(
                    pack.clone(),
                    fields(json!({ "Experiment": [experiment_id] })),
                )],
            )
            .await?;
    }
    let status = settled
        .and_then(|e| e.status)
        .unwrap_or(ExperimentStatus::Active);
    Ok(json!({
        "experiment_id": experiment_id,
        "event_id": event_id,
        "experiment_status": status.as_str(),
        "completed_previous": completed_previous,
    }))
}

fn proposal_text(proposal: &Value, field: &str) -> Option<String> {
    proposal
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Completes the user's active experiment unless it is the one with `key`; returns its id if it did.
async fn complete_previous(
    deps: &Deps,
    user_id: &str,
    key: &str,
) -> Result<Option<String>, ScenarioError> {
    let user: tables::User = typed(&deps.store.get(tables::USERS, user_id).await?)?;
    let Some(prev) = user.active_experiment.first() else {
        return Ok(None);
    };
    let previous: tables::Experiment = typed(&deps.store.get(tables::EXPERIMENTS, prev).await?)?;
    if previous.key.as_deref() == Some(key) || previous.status != Some(ExperimentStatus::Active) {
        return Ok(None);
    }
    deps.store
        .update(
            tables::EXPERIMENTS,
            vec![(
                prev.clone(),
                fields(json!({ "Status": ExperimentStatus::Completed.as_str() })),
            )],
        )
        .await?;
    Ok(Some(prev.clone()))
}

fn run_id_body(body: &Value) -> Result<Value, ApiError> {
    object(body)?;
    Ok(json!({ "run_id": record_id_field(body, "run_id")? }))
}

/// The D1 hook.
pub struct D1Hook(pub Arc<Deps>);

#[async_trait::async_trait]
impl Hook for D1Hook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        run_id_body(body)
    }
    fn job_kind(&self) -> Option<&str> {
        None
    }
    async fn respond(&self, _key: &str, payload: Value) -> HookResult {
        let run_id = payload["run_id"].as_str().unwrap_or_default();
        Ok(record_attempt(&self.0, run_id, None).await?.to_answer())
    }
}

/// The E1 hook.
pub struct E1Hook(pub Arc<Deps>);

#[async_trait::async_trait]
impl Hook for E1Hook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        run_id_body(body)
    }
    fn job_kind(&self) -> Option<&str> {
        None
    }
    async fn respond(&self, _key: &str, payload: Value) -> HookResult {
        let run_id = payload["run_id"].as_str().unwrap_or_default();
        super::created(instantiate(&self.0, run_id, None, false).await?)
    }
}

/// The chained `d1` job.
pub struct D1Job(pub Arc<Deps>);

#[async_trait::async_trait]
impl Scenario for D1Job {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, ScenarioError> {
        let run_id = ctx.job.payload["run_id"].as_str().unwrap_or_default();
        let (_, answer) = record_attempt(&self.0, run_id, ctx.job.payload.get("known"))
            .await?
            .to_answer();
        Ok(JobOutcome {
            result: answer,
            follow_ups: vec![],
        })
    }
}

/// The chained `e1` job.
pub struct E1Job(pub Arc<Deps>);

#[async_trait::async_trait]
impl Scenario for E1Job {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, ScenarioError> {
        let run_id = ctx.job.payload["run_id"].as_str().unwrap_or_default();
        let fresh = super::earlier_success(&self.0, ctx).await? == Some(false);
        let result = instantiate(&self.0, run_id, ctx.job.payload.get("run"), fresh).await?;
        Ok(JobOutcome {
            result,
            follow_ups: vec![],
        })
    }
}
