//! R1: one `single_meeting` Run for a Run Request — `Processing` while it runs, `Done` with the Run
//! linked, or `Failed` with the error on the request — then D1 when the user has an active experiment.

use coach_coaching::{ActiveExperiment, AnalysisInput, CheckedOutput};
use coach_store::RecordId;
use coach_store::tables::{
    self, Change, ExperimentStatus, RunRequestStatus, RunRequestUpdate, RunStatus, RunType,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::baseline::{FailureWritten, analysis_run, failed_run, upsert_run};
use super::experiments::{D1Facts, ExperimentFacts, RecordAttempt};
use super::jobs::{JobRun, JobSpec};
use super::transcripts::{self, coachee_label};
use super::{Deps, ScenarioError, long_text};
use crate::jobs::JobError;
use crate::journal::NewJob;

/// R1's request (and the `single` job's facts): the Run Request to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequestRef {
    pub run_request_id: RecordId,
}

/// What R1 did (the `single` job's result).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RequestDone {
    Ran {
        run_request_id: RecordId,
        run_record_id: RecordId,
        gate1_passed: bool,
        provider: String,
        cached: bool,
    },
    /// An earlier R1 of this request succeeded and nobody set it back to `Queued` since.
    Skipped {
        run_request_id: RecordId,
        skipped: &'static str,
        run_record_id: Option<RecordId>,
    },
}

/// One active R1 job per request, whoever asks (Make, the poller, an admin).
pub fn dedupe_key(run_request_id: &str) -> String {
    format!("r1:{run_request_id}")
}

/// Writes a final failure: a failed Run (when the request exists), and the request `Failed` with the
/// error and the Run linked.
pub async fn record_failure(
    deps: &Deps,
    request: &RunRequestRef,
    job: &JobRun<'_>,
    error: &JobError,
) -> FailureWritten {
    let id = &request.run_request_id;
    let record = transcripts::read::<tables::RunRequest>(deps, id).await.ok();
    let mut run = failed_run(job, error);
    run.run_type = Some(RunType::SingleMeeting);
    let mut run_id = None;
    if let Some(record) = &record {
        run.run_request = vec![id.clone()];
        run.user = record.user.clone();
        run.transcripts = record.transcript.clone();
        run_id = upsert_run(deps, &run).await.ok();
    }
    let update = RunRequestUpdate {
        status: Change::Set(RunRequestStatus::Failed),
        error: Change::Set(long_text(&format!("[{}] {}", error.code, error.message))),
        run: match &run_id {
            Some(run_id) => Change::Set(vec![run_id.clone()]),
            None => Change::Keep,
        },
    };
    if record.is_some()
        && let Err(e) = deps.store.patch(id, &update).await
    {
        tracing::error!(
            code = e.code(),
            "could not write the failure onto the run request"
        );
    }
    FailureWritten {
        run_record_id: run_id,
    }
}

fn processing() -> RunRequestUpdate {
    RunRequestUpdate {
        status: Change::Set(RunRequestStatus::Processing),
        error: Change::Clear,
        ..Default::default()
    }
}

/// Sets the request `Processing` and returns it as written, in one call: Airtable answers an update
/// with the whole record (the official airtable.js client's `Record.patchUpdate` replaces the record's
/// fields with that answer). Read again only if the answer lacks the transcript link.
async fn claim(deps: &Deps, id: &RecordId) -> Result<tables::RunRequest, ScenarioError> {
    let written = deps.store.patch(id, &processing()).await?;
    if written.transcript.is_empty() {
        return transcripts::read(deps, id).await;
    }
    Ok(written)
}

/// Runs one request end to end.
pub async fn run_request(
    deps: &Deps,
    request: &RunRequestRef,
    job: &JobRun<'_>,
) -> Result<(RequestDone, Vec<NewJob>), ScenarioError> {
    let span = tracing::info_span!(
        "run_request",
        scenario = %job.ctx.job.scenario,
        run_id = job.id(),
        delivery_key = job.delivery_key(),
        run_request_id = %request.run_request_id,
        transcript_id = tracing::field::Empty,
        run_record_id = tracing::field::Empty,
    );
    run_request_in(deps, request, job).instrument(span).await
}

async fn run_request_in(
    deps: &Deps,
    request: &RunRequestRef,
    job: &JobRun<'_>,
) -> Result<(RequestDone, Vec<NewJob>), ScenarioError> {
    let started = std::time::Instant::now();
    let id = &request.run_request_id;
    let record: tables::RunRequest = if job.earlier_success(deps).await? == Some(true) {
        // An R1 for this request succeeded already: a second delivery changes nothing unless an
        // operator set the request back to `Queued` since.
        let record: tables::RunRequest = transcripts::read(deps, id).await?;
        if record.status == Some(RunRequestStatus::Done) {
            return Ok((
                RequestDone::Skipped {
                    run_request_id: id.clone(),
                    skipped: "the run request is already Done",
                    run_record_id: record.run.first().cloned(),
                },
                vec![],
            ));
        }
        deps.store.patch(id, &processing()).await?;
        record
    } else {
        claim(deps, id).await?
    };

    let transcript_id = record.transcript.first().cloned().ok_or_else(|| {
        ScenarioError::unprocessable(
            "NO_TRANSCRIPT",
            format!("run request {id} links no transcript; link one in `Transcript`"),
        )
    })?;
    tracing::Span::current().record("transcript_id", transcript_id.as_str());
    let transcript: tables::Transcript = transcripts::read(deps, &transcript_id).await?;
    let user_id = record.user.first().or(transcript.user.first()).cloned();
    let user = match &user_id {
        Some(uid) => Some(transcripts::read::<tables::User>(deps, uid).await?),
        None => None,
    };
    let experiment = match user.as_ref().and_then(|u| u.active_experiment.first()) {
        Some(eid) => {
            let e: tables::Experiment = transcripts::read(deps, eid).await?;
            (e.status == Some(ExperimentStatus::Active)).then_some(e)
        }
        None => None,
    };

    let mut parsed = vec![transcripts::Parsed {
        outcome: transcripts::parse_record(deps, &transcript).await,
        record: transcript,
    }];
    let label = match &parsed[0].outcome {
        Ok(t) => coachee_label(t, &parsed[0].record, user.as_ref()),
        Err(_) => Ok(String::new()),
    };
    if let Err(e) = label.as_ref() {
        parsed[0].outcome = Err(ScenarioError::unprocessable(e.code(), e.to_string()));
    }
    transcripts::write_parse_results(deps, &parsed).await?;
    let Some(parsed) = parsed.pop() else {
        return Err(ScenarioError::unprocessable(
            "NO_TRANSCRIPT",
            "no transcript to analyse",
        ));
    };
    let meeting = parsed.outcome?;
    let coachee = label?;

    let active_experiment = experiment.as_ref().map(|e| ActiveExperiment {
        title: e.title.clone().unwrap_or_default(),
        behavior: e.behavior.clone().unwrap_or_default(),
        success_signal: e.success_signal.clone().unwrap_or_default(),
    });
    let input = AnalysisInput {
        run_type: RunType::SingleMeeting,
        coachee,
        meetings: vec![meeting],
        active_experiment,
    };
    let (analysis, cached) = deps.analyze(&input, job.options.bypass_cache).await?;

    let mut run = analysis_run(job, &analysis, cached, started.elapsed().as_millis() as i64);
    run.run_type = Some(RunType::SingleMeeting);
    run.user = user_id.iter().cloned().collect();
    run.run_request = vec![id.clone()];
    run.transcripts = vec![transcript_id.clone()];
    let run_record_id = upsert_run(deps, &run).await?;
    tracing::Span::current().record("run_record_id", run_record_id.as_str());
    let done = RunRequestUpdate {
        status: Change::Set(RunRequestStatus::Done),
        run: Change::Set(vec![run_record_id.clone()]),
        error: Change::Clear,
    };
    deps.store.patch(id, &done).await?;

    let mut follow_ups = Vec::new();
    if let (Some(e), Some(uid)) = (&experiment, &user_id) {
        let run_id = run_record_id.clone();
        let d1 = JobSpec::D1(RecordAttempt {
            run_id: run_id.clone(),
            known: Some(D1Facts {
                run_type: RunType::SingleMeeting,
                run_status: Some(RunStatus::Succeeded),
                user_id: Some(uid.clone()),
                experiment: Some(ExperimentFacts::from_record(e)),
                meeting_date: parsed.record.meeting_date.clone(),
                attempt: CheckedOutput::read(&analysis.output).experiment_attempt,
                finished_at: run.finished_at.clone(),
                attempt_run: Some(job.options.replay_root_record.clone().unwrap_or(run_id)),
            }),
        });
        follow_ups.push(d1.follow_up_of(job));
    }
    Ok((
        RequestDone::Ran {
            run_request_id: id.clone(),
            run_record_id,
            gate1_passed: analysis.report.passed,
            provider: analysis.provider.clone(),
            cached,
        },
        follow_ups,
    ))
}
