//! R1: one `single_meeting` Run for a Run Request — `Processing` while it runs, `Done` with the Run
//! linked, or `Failed` with the error on the request — then D1 when the user has an active experiment.

use std::sync::Arc;

use coach_coaching::{ActiveExperiment, AnalysisInput, RunType as CoachingRunType};
use coach_store::tables::{self, ExperimentStatus, RunRequestStatus, RunType};
use serde_json::{Value, json};

use super::baseline::{analysis_run, failed_run, upsert_run};
use super::input::{object, record_id_field};
use super::transcripts::{self, coachee_label, typed};
use super::{Deps, JOB_D1, JOB_SINGLE, Scenario, ScenarioError, fields, long_text};
use crate::error::ApiError;
use crate::http::Hook;
use crate::jobs::{JobContext, JobError, JobOutcome};
use crate::journal::NewJob;

/// The R1 hook: queue the run of one request.
pub struct R1Hook;

#[async_trait::async_trait]
impl Hook for R1Hook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        object(body)?;
        Ok(json!({ "run_request_id": record_id_field(body, "run_request_id")? }))
    }

    fn job_kind(&self) -> Option<&str> {
        Some(JOB_SINGLE)
    }

    fn dedupe_key(&self, payload: &Value) -> Option<String> {
        payload["run_request_id"].as_str().map(dedupe_key)
    }
}

/// One active R1 job per request, whoever asks (Make, the poller, an admin).
pub fn dedupe_key(run_request_id: &str) -> String {
    format!("r1:{run_request_id}")
}

/// The `single` job.
pub struct SingleJob(pub Arc<Deps>);

fn request_id(ctx: &JobContext) -> String {
    ctx.job.payload["run_request_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[async_trait::async_trait]
impl Scenario for SingleJob {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, ScenarioError> {
        run_request(&self.0, ctx).await
    }

    async fn record_failure(&self, ctx: &JobContext, error: &JobError) -> Option<Value> {
        let deps = &self.0;
        let id = request_id(ctx);
        let request = deps
            .store
            .get(tables::RUN_REQUESTS, &id)
            .await
            .ok()
            .and_then(|r| typed::<tables::RunRequest>(&r).ok());
        let mut run = failed_run(ctx, error);
        run.run_type = Some(RunType::SingleMeeting);
        let mut run_id = None;
        if let Some(request) = &request {
            run.run_request = vec![id.clone()];
            run.user = request.user.clone();
            run.transcripts = request.transcript.clone();
            run_id = upsert_run(deps, &run).await.ok();
        }
        let mut update = json!({
            "Status": RunRequestStatus::Failed.as_str(),
            "Error": long_text(&format!("[{}] {}", error.code, error.message)),
        });
        if let Some(run_id) = &run_id {
            update["Run"] = json!([run_id]);
        }
        if request.is_some()
            && let Err(e) = deps
                .store
                .update(tables::RUN_REQUESTS, vec![(id, fields(update))])
                .await
        {
            tracing::error!(
                code = e.code(),
                "could not write the failure onto the run request"
            );
        }
        Some(json!({ "run_record_id": run_id }))
    }
}

/// Sets the request `Processing` and returns it as written, in one call: Airtable answers an update
/// with the whole record (the official airtable.js client's `Record.patchUpdate` replaces the record's
/// fields with that answer). Read again only if the answer lacks the transcript link.
async fn claim(
    deps: &Deps,
    id: &str,
    processing: coach_store::Fields,
) -> Result<coach_store::Record, ScenarioError> {
    let written = deps
        .store
        .update(tables::RUN_REQUESTS, vec![(id.to_owned(), processing)])
        .await?;
    match written.into_iter().next() {
        Some(record) if record.fields.contains_key("Transcript") => Ok(record),
        _ => Ok(deps.store.get(tables::RUN_REQUESTS, id).await?),
    }
}

/// Runs one request end to end.
pub async fn run_request(deps: &Deps, ctx: &JobContext) -> Result<JobOutcome, ScenarioError> {
    let started = std::time::Instant::now();
    let id = request_id(ctx);
    let processing =
        || fields(json!({ "Status": RunRequestStatus::Processing.as_str(), "Error": Value::Null }));
    let request: tables::RunRequest = if super::earlier_success(deps, ctx).await? == Some(true) {
        // An R1 for this request succeeded already: a second delivery changes nothing unless an
        // operator set the request back to `Queued` since.
        let request: tables::RunRequest = typed(&deps.store.get(tables::RUN_REQUESTS, &id).await?)?;
        if request.status == Some(RunRequestStatus::Done) {
            return Ok(JobOutcome {
                result: json!({ "run_request_id": id, "skipped": "the run request is already Done", "run_record_id": request.run.first() }),
                follow_ups: vec![],
            });
        }
        deps.store
            .update(tables::RUN_REQUESTS, vec![(id.clone(), processing())])
            .await?;
        request
    } else {
        typed(&claim(deps, &id, processing()).await?)?
    };

    let transcript_id = request.transcript.first().cloned().ok_or_else(|| {
        ScenarioError::unprocessable(
            "NO_TRANSCRIPT",
            format!("run request {id} links no transcript; link one in `Transcript`"),
        )
    })?;
    let record = transcripts::get(deps, &transcript_id).await?;
    let user_id = request.user.first().or(record.user.first()).cloned();
    let user = match &user_id {
        Some(uid) => Some(typed::<tables::User>(
            &deps.store.get(tables::USERS, uid).await?,
        )?),
        None => None,
    };
    let experiment = match user.as_ref().and_then(|u| u.active_experiment.first()) {
        Some(eid) => {
            let e: tables::Experiment = typed(&deps.store.get(tables::EXPERIMENTS, eid).await?)?;
            (e.status == Some(ExperimentStatus::Active)).then_some(e)
        }
        None => None,
    };

    let mut parsed = vec![transcripts::Parsed {
        outcome: transcripts::parse_record(deps, &record).await,
        record,
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
        run_type: CoachingRunType::SingleMeeting,
        coachee,
        meetings: vec![meeting],
        active_experiment,
    };
    let (analysis, cached) = deps.analyze(&input, super::bypass_cache(ctx)).await?;

    let mut run = analysis_run(ctx, &analysis, cached, started.elapsed().as_millis() as i64);
    run.run_type = Some(RunType::SingleMeeting);
    run.user = user_id.iter().cloned().collect();
    run.run_request = vec![id.clone()];
    run.transcripts = vec![transcript_id.clone()];
    let run_record_id = upsert_run(deps, &run).await?;
    deps.store
        .update(
            tables::RUN_REQUESTS,
            vec![(id.clone(), fields(json!({ "Status": RunRequestStatus::Done.as_str(), "Run": [run_record_id], "Error": Value::Null })))],
        )
        .await?;

    let mut follow_ups = Vec::new();
    if let (Some(e), Some(uid)) = (&experiment, &user_id) {
        let mut d1 = NewJob::new(
            JOB_D1,
            &ctx.job.scenario,
            json!({
                "run_id": run_record_id,
                "known": {
                    "run_type": "single_meeting",
                    "run_status": "Succeeded",
                    "user_id": uid,
                    "experiment": super::experiments::ExperimentFacts::from_record(e),
                    "meeting_date": parsed.record.meeting_date,
                    "attempt": analysis.output.get("experiment_attempt").cloned().unwrap_or(Value::Null),
                    "finished_at": run.finished_at,
                    "attempt_run": super::replay_root_record(ctx).unwrap_or_else(|| run_record_id.clone()),
                }
            }),
        );
        d1.parent_id = Some(ctx.job.id.clone());
        d1.dedupe_key = Some(format!("d1:{}:{run_record_id}", e.id));
        follow_ups.push(d1);
    }
    Ok(JobOutcome {
        result: json!({
            "run_request_id": id,
            "run_record_id": run_record_id,
            "gate1_passed": analysis.report.passed,
            "provider": analysis.provider,
            "cached": cached,
        }),
        follow_ups,
    })
}
