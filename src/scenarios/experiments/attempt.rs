//! D1: record an attempt event after a qualifying single-meeting run.

use coach_coaching::{ExperimentAttempt, Judgement};
use coach_store::RecordId;
use coach_store::tables::{
    self, Attempted, Change, EventType, ExperimentStatus, ExperimentUpdate, RunStatus, RunType,
    UserUpdate, queries,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::{ExperimentFacts, check_finished, run_output};
use crate::scenarios::transcripts::read;
use crate::scenarios::{Deps, ScenarioError, known_id};

/// D1's input once everything is read (what R1 hands its chained D1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct D1Facts {
    pub run_type: RunType,
    pub run_status: Option<RunStatus>,
    pub user_id: Option<RecordId>,
    pub experiment: Option<ExperimentFacts>,
    pub meeting_date: Option<String>,
    /// The run's judgement of the experiment (`experiment_attempt` of its output).
    #[serde(default)]
    pub attempt: Option<ExperimentAttempt>,
    pub finished_at: Option<String>,
    /// The run the attempt is keyed on: the first Run of a chain of replays (else the run itself).
    #[serde(default)]
    pub attempt_run: Option<RecordId>,
}

/// D1's request (and the `d1` job's facts): the run, and what its R1 already read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordAttempt {
    pub run_id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<D1Facts>,
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

/// The answer body of D1 (the hook's 201/200 body and the `d1` job's result).
impl Serialize for D1Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            D1Outcome::Recorded {
                event_id,
                experiment_id,
                attempts,
                target,
                completed,
            } => {
                let mut m = s.serialize_map(Some(5))?;
                m.serialize_entry("event_id", event_id)?;
                m.serialize_entry("experiment_id", experiment_id)?;
                m.serialize_entry("attempts", attempts)?;
                m.serialize_entry("target_meetings", target)?;
                m.serialize_entry("experiment_completed", completed)?;
                m.end()
            }
            D1Outcome::Skipped { reason } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("skipped", &true)?;
                m.serialize_entry("reason", reason)?;
                m.end()
            }
        }
    }
}

/// Reads what D1 needs from the store (the hook path).
async fn read_d1_facts(deps: &Deps, run_id: &RecordId) -> Result<D1Facts, ScenarioError> {
    let run: tables::Run = read(deps, run_id).await?;
    if run.run_type != Some(RunType::SingleMeeting) {
        return Err(ScenarioError::unprocessable(
            "WRONG_RUN_TYPE",
            format!("run {run_id} is not a single_meeting run; D1 records attempts for single meetings only"),
        )
        .with_pointer("/run_id"));
    }
    check_finished(&run, run_id)?;
    let mut facts = D1Facts {
        run_type: RunType::SingleMeeting,
        run_status: run.status,
        user_id: run.user.first().cloned(),
        experiment: None,
        meeting_date: None,
        attempt: run_output(&run).experiment_attempt,
        finished_at: run.finished_at.clone(),
        attempt_run: None,
    };
    if run.status != Some(RunStatus::Succeeded) {
        return Ok(facts);
    }
    facts.attempt_run = Some(replay_root(deps, &run).await?);
    if let Some(uid) = &facts.user_id {
        let user: tables::User = read(deps, uid).await?;
        if let Some(eid) = user.active_experiment.first() {
            let e: tables::Experiment = read(deps, eid).await?;
            facts.experiment = Some(ExperimentFacts::from_record(&e));
        }
    }
    if facts.experiment.is_some()
        && let Some(tid) = run.transcripts.first()
    {
        let t: tables::Transcript = read(deps, tid).await?;
        facts.meeting_date = t.meeting_date;
    }
    Ok(facts)
}

/// The first Run of the chain of replays `run` ends (followed through `Replay Of`, at most 20 back).
async fn replay_root(deps: &Deps, run: &tables::Run) -> Result<RecordId, ScenarioError> {
    let mut root = known_id(&run.id)?;
    let mut previous = run.replay_of.first().cloned();
    for _ in 0..20 {
        let Some(id) = previous else { break };
        let earlier: tables::Run = read(deps, &id).await?;
        previous = earlier.replay_of.first().cloned();
        root = id;
    }
    Ok(root)
}

/// The evidence text of an attempt judgement: each quote with its span id, then the note.
fn evidence_text(attempt: &ExperimentAttempt) -> String {
    let mut out = String::new();
    for e in &attempt.evidence {
        out.push_str(&format!("[{}] \"{}\"\n", e.span_id, e.quote));
    }
    out.push_str(&attempt.note);
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
    let events: Vec<tables::ExperimentEvent> = deps
        .store
        .find(&queries::attempt_events(&experiment.key))
        .await?;
    let prefix = attempt_key(&experiment.id, "");
    Ok(events
        .iter()
        .map(|e| {
            let run = e
                .key
                .as_deref()
                .and_then(|k| k.strip_prefix(&prefix))
                .filter(|run| !run.is_empty())
                .map_or_else(|| format!("event:{}", e.id), str::to_owned);
            let attempted = e
                .attempted
                .unwrap_or(Attempted::Unclear)
                .as_str()
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
    request: &RecordAttempt,
) -> Result<D1Outcome, ScenarioError> {
    let span = tracing::info_span!(
        "record_attempt",
        scenario = "d1",
        run_record_id = %request.run_id,
        chained = request.known.is_some(),
        experiment_id = tracing::field::Empty,
    );
    record_attempt_in(deps, request).instrument(span).await
}

async fn record_attempt_in(
    deps: &Deps,
    request: &RecordAttempt,
) -> Result<D1Outcome, ScenarioError> {
    let run_id = request.run_id.as_str();
    let facts = match &request.known {
        Some(f) => f.clone(),
        None => read_d1_facts(deps, &request.run_id).await?,
    };
    if facts.run_status != Some(RunStatus::Succeeded) {
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
    tracing::Span::current().record("experiment_id", experiment.id.as_str());
    let experiment_link = known_id(&experiment.id)?;
    let attempted = match facts.attempt.as_ref().map(|a| a.attempted) {
        Some(Judgement::Yes) => Attempted::Yes,
        Some(Judgement::No) => Attempted::No,
        Some(Judgement::Unclear) | None => Attempted::Unclear,
    };
    let evidence = match &facts.attempt {
        None => "the run's coaching did not judge the experiment".to_owned(),
        Some(attempt) => evidence_text(attempt),
    };
    let attempt_run = facts.attempt_run.as_ref().map_or(run_id, RecordId::as_str);
    let event = tables::ExperimentEvent {
        key: Some(attempt_key(&experiment.id, attempt_run)),
        experiment: vec![experiment_link.clone()],
        run: vec![request.run_id.clone()],
        event_type: Some(EventType::Attempt),
        attempted: Some(attempted),
        evidence: Some(crate::scenarios::long_text(&evidence)),
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
    let mut events = vec![event];
    if completes {
        let done = tables::ExperimentEvent {
            key: Some(format!("d1:{}:completed", experiment.id)),
            experiment: vec![experiment_link.clone()],
            run: vec![request.run_id.clone()],
            event_type: Some(EventType::Completed),
            evidence: Some(completion_text(
                &judgements.iter().map(String::as_str).collect::<Vec<_>>(),
                experiment.target_meetings,
            )),
            occurred_at: facts.finished_at.clone(),
            ..Default::default()
        };
        events.push(done);
    }
    let written = deps.store.upsert_records(&events).await?;
    let event_id = written.first().map(|r| r.id.clone()).unwrap_or_default();
    if completes {
        let completed = ExperimentUpdate {
            status: Change::Set(ExperimentStatus::Completed),
        };
        deps.store.patch(&experiment_link, &completed).await?;
        if let Some(uid) = &facts.user_id {
            let no_experiment = UserUpdate {
                active_experiment: Change::Set(vec![]),
            };
            deps.store.patch(uid, &no_experiment).await?;
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
