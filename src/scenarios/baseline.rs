//! A1 (create a Baseline Pack) and A2/S3 (build it: one `baseline_pack` Run over its three
//! transcripts, then E1).

use std::sync::Arc;

use coach_coaching::{AnalysisInput, RunType as CoachingRunType};
use coach_store::Fields;
use coach_store::tables::{self, BaselinePackStatus, RunStatus, RunType, TableRecord};
use serde_json::{Value, json};

use super::input::{object, optional_bool, optional_str, record_id, record_id_field};
use super::transcripts::{self, coachee_label};
use super::{
    Deps, HookResult, JOB_BASELINE, JOB_E1, Scenario, ScenarioError, created, long_text,
    record_time, run_key,
};
use crate::error::ApiError;
use crate::http::Hook;
use crate::jobs::{JobContext, JobError, JobOutcome};
use crate::journal::{NewJob, now_ms};

/// A1: validates a user and exactly 3 distinct transcripts of that user, creates the pack.
pub struct A1Hook(pub Arc<Deps>);

#[derive(Debug, Clone)]
pub struct A1Request {
    pub user_id: String,
    pub transcript_ids: Vec<String>,
    pub name: Option<String>,
    pub build: bool,
}

impl A1Request {
    pub fn parse(body: &Value) -> Result<A1Request, ApiError> {
        object(body)?;
        let user_id = record_id_field(body, "user_id")?;
        let ids = match body.get("transcript_ids") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => {
                return Err(ApiError::unprocessable(
                    "MISSING_FIELD",
                    "`transcript_ids` is required: a list of 3 transcript record ids",
                )
                .with_details(json!({"pointer": "/transcript_ids"})));
            }
            Some(_) => {
                return Err(ApiError::unprocessable(
                    "WRONG_TYPE",
                    "`transcript_ids` must be a list of 3 transcript record ids",
                )
                .with_details(json!({"pointer": "/transcript_ids"})));
            }
        };
        if ids.len() != 3 {
            return Err(ApiError::unprocessable(
                "WRONG_TRANSCRIPT_COUNT",
                format!(
                    "a baseline pack takes exactly 3 transcripts; {} were given",
                    ids.len()
                ),
            )
            .with_details(json!({"pointer": "/transcript_ids", "count": ids.len()})));
        }
        let mut transcript_ids = Vec::with_capacity(3);
        for (i, id) in ids.iter().enumerate() {
            let pointer = format!("/transcript_ids/{i}");
            let id = id.as_str().ok_or_else(|| {
                ApiError::unprocessable("WRONG_TYPE", "each transcript id must be a string")
                    .with_details(json!({"pointer": pointer}))
            })?;
            let id = record_id(id, &pointer)?;
            if transcript_ids.contains(&id) {
                return Err(ApiError::unprocessable(
                    "DUPLICATE_TRANSCRIPT",
                    "the 3 transcripts must be distinct",
                )
                .with_details(json!({"pointer": pointer})));
            }
            transcript_ids.push(id);
        }
        let name = optional_str(body, "name")?.map(str::to_owned);
        let build = optional_bool(body, "build")?.unwrap_or(false);
        Ok(A1Request {
            user_id,
            transcript_ids,
            name,
            build,
        })
    }
}

#[async_trait::async_trait]
impl Hook for A1Hook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        A1Request::parse(body)?;
        Ok(body.clone())
    }

    fn job_kind(&self) -> Option<&str> {
        None
    }

    async fn respond(&self, delivery_key: &str, payload: Value) -> HookResult {
        let request = A1Request::parse(&payload)?;
        let pack = create_pack(&self.0, delivery_key, &request).await?;
        let mut body =
            json!({ "baseline_pack_id": pack.id, "status": BaselinePackStatus::Queued.as_str() });
        if request.build {
            let mut job = NewJob::new(JOB_BASELINE, "a1", json!({ "baseline_pack_id": pack.id }));
            job.dedupe_key = Some(format!("baseline:{}", pack.id));
            // The build's delivery is this A1 delivery: the admin view shows it with the run.
            job.delivery_key = Some(delivery_key.to_owned());
            let (run_id, _) = self.0.journal.enqueue(job).await?;
            body["run_id"] = json!(run_id);
            body["status_url"] = json!(format!("/v1/runs/{run_id}"));
        }
        created(body)
    }
}

/// Checks the user and transcripts and upserts the pack (`Key` = `a1:{delivery}`).
pub async fn create_pack(
    deps: &Deps,
    delivery_key: &str,
    request: &A1Request,
) -> Result<tables::BaselinePack, ScenarioError> {
    let user: tables::User = transcripts::typed(
        &deps
            .store
            .get(tables::USERS, &request.user_id)
            .await
            .map_err(|e| not_found(e, "USER_NOT_FOUND", "/user_id"))?,
    )?;
    for (i, id) in request.transcript_ids.iter().enumerate() {
        let pointer = format!("/transcript_ids/{i}");
        let record = deps
            .store
            .get(tables::TRANSCRIPTS, id)
            .await
            .map_err(|e| not_found(e, "TRANSCRIPT_NOT_FOUND", &pointer))?;
        let transcript: tables::Transcript = transcripts::typed(&record)?;
        if !transcript.user.iter().any(|u| u == &user.id) {
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
        user: vec![user.id.clone()],
        transcripts: request.transcript_ids.clone(),
        status: Some(BaselinePackStatus::Queued),
        ..Default::default()
    };
    let written = deps
        .store
        .upsert(tables::BASELINE_PACKS, vec![pack.to_fields()])
        .await?;
    let record = written.first().ok_or_else(|| {
        ScenarioError::unprocessable("STORE_EMPTY_ANSWER", "the store returned no record")
    })?;
    transcripts::typed(record)
}

fn not_found(e: coach_store::StoreError, code: &'static str, pointer: &str) -> ScenarioError {
    match e {
        coach_store::StoreError::NotFound { table, id } => {
            ScenarioError::unprocessable(code, format!("record {id} does not exist in \"{table}\""))
                .with_pointer(pointer)
        }
        other => ScenarioError::Store(other),
    }
}

/// A2 and S3: queue the build of a pack.
pub struct BuildHook;

#[async_trait::async_trait]
impl Hook for BuildHook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        object(body)?;
        Ok(json!({ "baseline_pack_id": record_id_field(body, "baseline_pack_id")? }))
    }

    fn job_kind(&self) -> Option<&str> {
        Some(JOB_BASELINE)
    }

    fn dedupe_key(&self, payload: &Value) -> Option<String> {
        payload["baseline_pack_id"]
            .as_str()
            .map(|id| format!("baseline:{id}"))
    }
}

/// The `baseline` job.
pub struct BuildJob(pub Arc<Deps>);

#[async_trait::async_trait]
impl Scenario for BuildJob {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, ScenarioError> {
        build_pack(&self.0, ctx).await
    }

    async fn record_failure(&self, ctx: &JobContext, error: &JobError) -> Option<Value> {
        let pack_id = ctx.job.payload["baseline_pack_id"].as_str()?.to_owned();
        let message = long_text(&format!("[{}] {}", error.code, error.message));
        let mut run = failed_run(ctx, error);
        run.run_type = Some(RunType::BaselinePack);
        run.baseline_pack = vec![pack_id.clone()];
        if let Ok(pack) = self.0.store.get(tables::BASELINE_PACKS, &pack_id).await
            && let Ok(pack) = tables::BaselinePack::from_record(&pack)
        {
            run.user = pack.user;
            run.transcripts = pack.transcripts;
        }
        let run_id = upsert_run(&self.0, &run).await.ok();
        let mut fields = json!({ "Status": BaselinePackStatus::Failed.as_str(), "Error": message });
        if let Some(id) = &run_id {
            fields["Run"] = json!([id]);
        }
        if let Value::Object(fields) = fields
            && let Err(e) = self
                .0
                .store
                .update(tables::BASELINE_PACKS, vec![(pack_id, fields)])
                .await
        {
            tracing::error!(
                code = e.code(),
                "could not write the failure onto the baseline pack"
            );
        }
        Some(json!({ "run_record_id": run_id }))
    }
}

/// A Run record for a job that failed for good.
pub fn failed_run(ctx: &JobContext, error: &JobError) -> tables::Run {
    tables::Run {
        key: Some(run_key(ctx)),
        status: Some(RunStatus::Failed),
        attempt: Some(i64::from(ctx.job.attempts)),
        replay_of: super::replay_of_record(ctx).into_iter().collect(),
        error: Some(long_text(&format!("[{}] {}", error.code, error.message))),
        gate1_passed: Some(false),
        gate1_report: error.details.get("gate1_report").map(|r| r.to_string()),
        started_at: ctx.job.started_at.map(record_time),
        finished_at: Some(record_time(now_ms())),
        ..Default::default()
    }
}

/// Upserts a Run on its Key; returns its record id.
pub async fn upsert_run(deps: &Deps, run: &tables::Run) -> Result<String, ScenarioError> {
    let written = deps
        .store
        .upsert(tables::RUNS, vec![run.to_fields()])
        .await?;
    written.first().map(|r| r.id.clone()).ok_or_else(|| {
        ScenarioError::unprocessable("STORE_EMPTY_ANSWER", "the store returned no record")
    })
}

/// The Run fields an analysis fills.
pub fn analysis_run(
    ctx: &JobContext,
    analysis: &coach_coaching::Analysis,
    cached: bool,
    duration_ms: i64,
) -> tables::Run {
    tables::Run {
        key: Some(run_key(ctx)),
        status: Some(RunStatus::Succeeded),
        attempt: Some(i64::from(ctx.job.attempts)),
        replay_of: super::replay_of_record(ctx).into_iter().collect(),
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
        started_at: ctx.job.started_at.map(record_time),
        finished_at: Some(record_time(now_ms())),
        ..Default::default()
    }
}

/// Builds a pack: parse the 3 transcripts, analyse them together, write the Run, set the pack
/// `Ready`, and chain E1.
pub async fn build_pack(deps: &Deps, ctx: &JobContext) -> Result<JobOutcome, ScenarioError> {
    let started = std::time::Instant::now();
    let pack_id = ctx.job.payload["baseline_pack_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pack: tables::BaselinePack =
        transcripts::typed(&deps.store.get(tables::BASELINE_PACKS, &pack_id).await?)?;
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
        (true, Some(id)) => Some(transcripts::typed::<tables::User>(
            &deps.store.get(tables::USERS, id).await?,
        )?),
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
        run_type: CoachingRunType::BaselinePack,
        coachee,
        meetings,
        active_experiment: None,
    };
    let (analysis, cached) = deps.analyze(&input, super::bypass_cache(ctx)).await?;

    let mut run = analysis_run(ctx, &analysis, cached, started.elapsed().as_millis() as i64);
    run.run_type = Some(RunType::BaselinePack);
    run.user = pack.user.clone();
    run.baseline_pack = vec![pack_id.clone()];
    run.transcripts = pack.transcripts.clone();
    let run_record_id = upsert_run(deps, &run).await?;

    let mut fields = Fields::new();
    fields.insert("Status".into(), json!(BaselinePackStatus::Ready.as_str()));
    fields.insert("Run".into(), json!([run_record_id]));
    fields.insert("Error".into(), Value::Null);
    deps.store
        .update(tables::BASELINE_PACKS, vec![(pack_id.clone(), fields)])
        .await?;

    let mut e1 = NewJob::new(
        JOB_E1,
        &ctx.job.scenario,
        json!({
            "run_id": run_record_id,
            "run": {
                "user": pack.user,
                "baseline_pack": pack_id,
                "finished_at": run.finished_at,
                "output": analysis.output,
            }
        }),
    );
    e1.parent_id = Some(ctx.job.id.clone());
    e1.dedupe_key = Some(format!("e1:{run_record_id}"));
    Ok(JobOutcome {
        result: json!({
            "baseline_pack_id": pack_id,
            "run_record_id": run_record_id,
            "gate1_passed": analysis.report.passed,
            "provider": analysis.provider,
            "cached": cached,
        }),
        follow_ups: vec![e1],
    })
}
