//! A1 (create a Baseline Pack) and A2/S3 (build it: one `baseline_pack` Run over its three
//! transcripts, then E1).

use coach_coaching::AnalysisInput;
use coach_store::tables::{self, BaselinePackStatus, RunStatus, RunType};
use coach_store::{RecordId, StoreError};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::experiments::{E1Facts, Instantiate};
use super::jobs::{JobRun, JobSpec};
use super::transcripts::{self, coachee_label};
use super::{Delivery, Deps, ScenarioError, known_id, long_text, record_time};
use crate::jobs::JobError;
use crate::journal::{NewJob, now_ms};

/// A1's request: a user and exactly 3 distinct transcripts of that user.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPack {
    pub user_id: RecordId,
    /// Exactly 3, distinct (the web layer checks both before it builds the request).
    pub transcript_ids: Vec<RecordId>,
    pub name: Option<String>,
    /// Queue the build at once.
    pub build: bool,
}

/// What A1 did: the pack, and the build job when one was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct PackCreated {
    pub pack: tables::BaselinePack,
    pub build_run_id: Option<String>,
}

/// A2/S3's request (and the `baseline` job's facts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildPack {
    pub baseline_pack_id: RecordId,
}

/// What a build wrote (the `baseline` job's result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackBuilt {
    pub baseline_pack_id: RecordId,
    pub run_record_id: RecordId,
    pub gate1_passed: bool,
    pub provider: String,
    pub cached: bool,
}

/// The Run record a failed job wrote, if it could write one (the failed job's result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureWritten {
    pub run_record_id: Option<RecordId>,
}

/// A1: checks the user and transcripts, upserts the pack (`Key` = `a1:{delivery}`) and, with
/// `build`, queues its build under this delivery (the admin view shows it with the run).
pub async fn create_pack(
    deps: &Deps,
    delivery: &Delivery,
    request: &NewPack,
) -> Result<PackCreated, ScenarioError> {
    let delivery_key = delivery.key.as_str();
    let span = tracing::info_span!(
        "create_pack",
        scenario = "a1",
        delivery_key,
        request_id = delivery.request_id.as_deref(),
        user_id = %request.user_id,
        transcript_ids = ?request.transcript_ids.iter().map(RecordId::as_str).collect::<Vec<_>>(),
    );
    async move {
        let pack = write_pack(deps, delivery_key, request).await?;
        let mut build_run_id = None;
        if request.build {
            let mut job = JobSpec::Baseline(BuildPack {
                baseline_pack_id: known_id(&pack.id)?,
            })
            .into_job("a1");
            job.delivery_key = Some(delivery_key.to_owned());
            job.request_id = delivery.request_id.clone();
            let (run_id, _) = deps.journal.enqueue(job).await?;
            build_run_id = Some(run_id);
        }
        Ok(PackCreated { pack, build_run_id })
    }
    .instrument(span)
    .await
}

async fn write_pack(
    deps: &Deps,
    delivery_key: &str,
    request: &NewPack,
) -> Result<tables::BaselinePack, ScenarioError> {
    let user: tables::User = transcripts::read(deps, &request.user_id)
        .await
        .map_err(|e| not_found(e, "USER_NOT_FOUND", "/user_id"))?;
    for (i, id) in request.transcript_ids.iter().enumerate() {
        let pointer = format!("/transcript_ids/{i}");
        let transcript: tables::Transcript = transcripts::read(deps, id)
            .await
            .map_err(|e| not_found(e, "TRANSCRIPT_NOT_FOUND", &pointer))?;
        if !transcript.user.iter().any(|u| u.as_str() == user.id) {
            return Err(ScenarioError::unprocessable(
                "TRANSCRIPT_NOT_OWNED",
                format!(
                    "transcript {id} does not belong to user {}; choose transcripts of that user",
                    user.id
                ),
            )
            .with_pointer(&pointer));
        }
    }
    let name = request.name.clone().unwrap_or_else(|| {
        format!(
            "Baseline {} ({})",
            user.name.as_deref().unwrap_or("coachee"),
            &record_time(now_ms())[..10]
        )
    });
    let pack = tables::BaselinePack {
        key: Some(format!("a1:{delivery_key}")),
        name: Some(name),
        user: vec![known_id(&user.id)?],
        transcripts: request.transcript_ids.clone(),
        status: Some(BaselinePackStatus::Queued),
        ..Default::default()
    };
    transcripts::upsert(deps, &pack).await
}

fn not_found(e: ScenarioError, code: &'static str, pointer: &str) -> ScenarioError {
    match e {
        ScenarioError::Store(StoreError::NotFound { table, id }) => ScenarioError::NotFound {
            code,
            message: format!("record {id} does not exist in \"{table}\""),
            pointer: Some(pointer.to_owned()),
        },
        other => other,
    }
}

/// Writes a build's final failure: a failed Run, and the pack `Failed` with the error.
pub async fn record_failure(
    deps: &Deps,
    request: &BuildPack,
    job: &JobRun<'_>,
    error: &JobError,
) -> FailureWritten {
    let pack_id = request.baseline_pack_id.clone();
    let message = long_text(&format!("[{}] {}", error.code, error.message));
    let mut run = failed_run(job, error);
    run.run_type = Some(RunType::BaselinePack);
    run.baseline_pack = vec![pack_id.clone()];
    if let Ok(pack) =
        transcripts::read::<tables::BaselinePack>(deps, &request.baseline_pack_id).await
    {
        run.user = pack.user;
        run.transcripts = pack.transcripts;
    }
    let run_id = upsert_run(deps, &run).await.ok();
    let update = tables::BaselinePackUpdate {
        status: tables::Change::Set(BaselinePackStatus::Failed),
        error: tables::Change::Set(message),
        run: match &run_id {
            Some(id) => tables::Change::Set(vec![id.clone()]),
            None => tables::Change::Keep,
        },
        ..Default::default()
    };
    if let Err(e) = deps.store.patch(&request.baseline_pack_id, &update).await {
        tracing::error!(
            code = e.code(),
            "could not write the failure onto the baseline pack"
        );
    }
    FailureWritten {
        run_record_id: run_id,
    }
}

/// A Run record for a job that failed for good.
pub fn failed_run(job: &JobRun<'_>, error: &JobError) -> tables::Run {
    tables::Run {
        key: Some(job.run_key()),
        status: Some(RunStatus::Failed),
        attempt: Some(i64::from(job.attempts())),
        replay_of: replay_of(job),
        error: Some(long_text(&format!("[{}] {}", error.code, error.message))),
        gate1_passed: Some(false),
        gate1_report: error.details.get("gate1_report").map(|r| r.to_string()),
        started_at: job.started_at().map(record_time),
        finished_at: Some(record_time(now_ms())),
        ..Default::default()
    }
}

fn replay_of(job: &JobRun<'_>) -> Vec<RecordId> {
    job.options.replay_of_record.iter().cloned().collect()
}

/// Upserts a Run on its Key; returns its record id.
pub async fn upsert_run(deps: &Deps, run: &tables::Run) -> Result<RecordId, ScenarioError> {
    known_id(&transcripts::upsert(deps, run).await?.id)
}

/// The Run fields an analysis fills.
pub fn analysis_run(
    job: &JobRun<'_>,
    analysis: &coach_coaching::Analysis,
    cached: bool,
    duration_ms: i64,
) -> tables::Run {
    tables::Run {
        key: Some(job.run_key()),
        status: Some(RunStatus::Succeeded),
        attempt: Some(i64::from(job.attempts())),
        replay_of: replay_of(job),
        provider: Some(analysis.provider.clone()),
        model: Some(analysis.model.clone()),
        prompt_version: Some(analysis.prompt_version.clone()),
        // A cached answer cost nothing this time.
        input_tokens: Some(if cached {
            0
        } else {
            analysis.input_tokens as i64
        }),
        output_tokens: Some(if cached {
            0
        } else {
            analysis.output_tokens as i64
        }),
        cost_usd: Some(if cached { 0.0 } else { analysis.cost_usd }),
        duration_ms: Some(duration_ms),
        gate1_passed: Some(analysis.report.passed),
        gate1_report: Some(long_text(
            &serde_json::to_string(&analysis.report).unwrap_or_default(),
        )),
        output: Some(long_text(&analysis.output.to_string())),
        coaching_card: Some(long_text(&analysis.card_markdown)),
        metrics: Some(long_text(&analysis.metrics.to_string())),
        started_at: job.started_at().map(record_time),
        finished_at: Some(record_time(now_ms())),
        ..Default::default()
    }
}

/// Builds a pack: parse the 3 transcripts, analyse them together, write the Run, set the pack
/// `Ready`, and chain E1.
pub async fn build_pack(
    deps: &Deps,
    request: &BuildPack,
    job: &JobRun<'_>,
) -> Result<(PackBuilt, Vec<NewJob>), ScenarioError> {
    let span = tracing::info_span!(
        "build_pack",
        scenario = %job.ctx.job.scenario,
        run_id = job.id(),
        delivery_key = job.delivery_key(),
        baseline_pack_id = %request.baseline_pack_id,
        run_record_id = tracing::field::Empty,
    );
    build_pack_in(deps, request, job)
        .instrument(span.clone())
        .await
        .inspect(|(built, _)| {
            span.record("run_record_id", built.run_record_id.as_str());
        })
}

async fn build_pack_in(
    deps: &Deps,
    request: &BuildPack,
    job: &JobRun<'_>,
) -> Result<(PackBuilt, Vec<NewJob>), ScenarioError> {
    let started = std::time::Instant::now();
    let pack_id = &request.baseline_pack_id;
    let pack: tables::BaselinePack = transcripts::read(deps, pack_id).await?;
    if pack.transcripts.len() != 3 {
        return Err(ScenarioError::unprocessable(
            "WRONG_TRANSCRIPT_COUNT",
            format!(
                "baseline pack {pack_id} links {} transcripts; it needs exactly 3",
                pack.transcripts.len()
            ),
        ));
    }
    let parsed = transcripts::load_and_parse(deps, &pack.transcripts).await?;
    let needs_user = parsed.iter().any(|p| {
        p.record
            .coachee_speaker
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
    });
    let user = match (needs_user, pack.user.first()) {
        (true, Some(id)) => Some(transcripts::read::<tables::User>(deps, id).await?),
        _ => None,
    };
    // The coachee label of each meeting; a parse or label failure lands on that transcript.
    let mut labelled = Vec::with_capacity(3);
    let mut parsed = parsed;
    for p in parsed.iter_mut() {
        if let Ok(t) = &p.outcome {
            match coachee_label(t, &p.record, user.as_ref()) {
                Ok(label) => labelled.push(label),
                Err(e) => p.outcome = Err(e),
            }
        }
    }
    transcripts::write_parse_results(deps, &parsed).await?;
    let mut meetings = Vec::with_capacity(3);
    for p in parsed {
        meetings.push(p.outcome?);
    }
    // The pack's meetings must share one coachee label for the analysis; use the first meeting's and
    // require the others to have it too.
    let coachee = labelled.first().cloned().unwrap_or_default();
    if labelled.iter().any(|l| l != &coachee) {
        return Err(ScenarioError::unprocessable(
            "COACHEE_LABEL_MISMATCH",
            format!(
                "the coachee is labelled differently across the 3 transcripts ({}); set the same `Coachee Speaker` label",
                labelled.join(", ")
            ),
        ));
    }
    let input = AnalysisInput {
        run_type: RunType::BaselinePack,
        coachee,
        meetings,
        active_experiment: None,
    };
    let (analysis, cached) = deps.analyze(&input, job.options.bypass_cache).await?;

    let mut run = analysis_run(job, &analysis, cached, started.elapsed().as_millis() as i64);
    run.run_type = Some(RunType::BaselinePack);
    run.user = pack.user.clone();
    run.baseline_pack = vec![pack_id.clone()];
    run.transcripts = pack.transcripts.clone();
    let run_record_id = upsert_run(deps, &run).await?;

    let update = tables::BaselinePackUpdate {
        status: tables::Change::Set(BaselinePackStatus::Ready),
        run: tables::Change::Set(vec![run_record_id.clone()]),
        error: tables::Change::Clear,
        ..Default::default()
    };
    deps.store.patch(pack_id, &update).await?;

    let e1 = JobSpec::E1(Instantiate {
        run_id: run_record_id.clone(),
        run: Some(E1Facts {
            user: pack.user.clone(),
            baseline_pack: Some(pack_id.clone()),
            finished_at: run.finished_at.clone(),
            output: coach_coaching::CheckedOutput::read(&analysis.output),
        }),
    })
    .follow_up_of(job);
    Ok((
        PackBuilt {
            baseline_pack_id: pack_id.clone(),
            run_record_id,
            gate1_passed: analysis.report.passed,
            provider: analysis.provider.clone(),
            cached,
        },
        vec![e1],
    ))
}
