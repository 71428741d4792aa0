//! `serve --demo`: seeds the store with a coachee and six sample transcripts (written for this
//! project, in `samples/`), then runs the whole story through the worker's own signed webhooks, as
//! Make would: A1 (with `build`) → A2 → E1, then R1 × 3 → D1 × 3 with the rules analyzer. It prints
//! where to look. Seeding is idempotent, so a second `--demo` start reuses the records.
//!
//! What it says about the experiment is read back from the store, never assumed from the story: on a
//! second start with the same data dir the deliveries are answered from the journal, and the
//! experiment the first start completed is reported as completed (with when), not as active.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use coach_store::tables::{
    self, RunRequestSource, RunRequestStatus, TableRecord, TranscriptFormat, queries,
};
use coach_store::{ListQuery, RecordId};
use serde_json::{Value, json};

use crate::journal::now_ms;
use crate::scenarios::Deps;
use crate::webhook::{Secret, signature};

const COACHEE: &str = "Maya Chen";

/// (title, format, days before today, text)
const SAMPLES: [(&str, TranscriptFormat, i64, &str); 6] = [
    (
        "Sprint planning",
        TranscriptFormat::Vtt,
        21,
        include_str!("../samples/transcripts/baseline-1-sprint-planning.vtt"),
    ),
    (
        "Incident review",
        TranscriptFormat::Srt,
        14,
        include_str!("../samples/transcripts/baseline-2-incident-review.srt"),
    ),
    (
        "Roadmap sync",
        TranscriptFormat::Text,
        7,
        include_str!("../samples/transcripts/baseline-3-roadmap-sync.md"),
    ),
    (
        "Design review",
        TranscriptFormat::Json,
        0,
        include_str!("../samples/transcripts/followup-1-design-review.json"),
    ),
    (
        "One-on-one",
        TranscriptFormat::Text,
        0,
        include_str!("../samples/transcripts/followup-2-one-on-one.txt"),
    ),
    (
        "Team retro",
        TranscriptFormat::Vtt,
        0,
        include_str!("../samples/transcripts/followup-3-team-retro.vtt"),
    ),
];

fn date_days_ago(days: i64) -> String {
    let ms = now_ms() - days * 86_400_000;
    crate::journal::rfc3339(ms)[..10].to_owned()
}

/// Finds a record by a query or creates it (Users and Transcripts have no `Key` to upsert on).
async fn find_or_create<T: TableRecord>(
    deps: &Deps,
    query: ListQuery,
    create: T,
) -> anyhow::Result<RecordId> {
    let found = deps.store.find::<T>(&query).await?;
    let record = match found.into_iter().next() {
        Some(r) => r,
        None => deps
            .store
            .create_records(&[create])
            .await?
            .pop()
            .context("the store created no record")?,
    };
    Ok(RecordId::parse(record.id())?)
}

struct Client {
    http: reqwest::Client,
    base: String,
    secret: Secret,
}

impl Client {
    async fn post(
        &self,
        scenario: &str,
        delivery: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let bytes = serde_json::to_vec(body)?;
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = signature::sign_standard(&self.secret, delivery, ts, &bytes)?;
        let resp = self
            .http
            .post(format!("{}/v1/hooks/{scenario}", self.base))
            .header("content-type", "application/json")
            .header("webhook-id", delivery)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(bytes)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Waits for a run and every follow-up it chained.
    async fn wait(&self, run_id: &str) -> anyhow::Result<Value> {
        for _ in 0..1200 {
            let run: Value = self
                .http
                .get(format!("{}/v1/runs/{run_id}", self.base))
                .send()
                .await?
                .json()
                .await?;
            let finished = |r: &Value| {
                matches!(
                    r["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
            };
            if finished(&run)
                && run["follow_ups"]
                    .as_array()
                    .is_none_or(|f| f.iter().all(finished))
            {
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("run {run_id} did not finish in time")
    }
}

/// Seeds the store and runs the story.
/// `store_location` says where the records are (the store file, or the Airtable base).
pub async fn run(
    deps: Arc<Deps>,
    port: u16,
    secret: Secret,
    store_location: String,
) -> anyhow::Result<()> {
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: format!("http://127.0.0.1:{port}"),
        secret,
    };
    for _ in 0..100 {
        if client
            .http
            .get(format!("{}/readyz", client.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let user_id = find_or_create(
        &deps,
        queries::user_named(COACHEE),
        tables::User {
            name: Some(COACHEE.into()),
            email: Some("maya.chen@example.com".into()),
            role: Some(tables::Role::Coachee),
            ..Default::default()
        },
    )
    .await?;
    let mut transcript_ids = Vec::new();
    for (title, format, days, text) in SAMPLES {
        let title = format!("Demo: {title}");
        let record = tables::Transcript {
            title: Some(title.clone()),
            user: vec![user_id.clone()],
            meeting_date: Some(date_days_ago(days)),
            format: Some(format),
            transcript: Some(text.to_owned()),
            coachee_speaker: Some(COACHEE.into()),
            ..Default::default()
        };
        transcript_ids
            .push(find_or_create(&deps, queries::transcript_titled(&title), record).await?);
    }
    println!(
        "demo: seeded user {user_id} and {} transcripts",
        transcript_ids.len()
    );

    let (status, pack) = client
        .post(
            "a1",
            &format!("demo-a1-{user_id}"),
            &json!({
                "user_id": user_id,
                "transcript_ids": &transcript_ids[..3],
                "name": "Demo baseline",
                "build": true,
            }),
        )
        .await?;
    if status != 201 && status != 200 {
        bail!("A1 answered {status}: {pack}");
    }
    let build = client
        .wait(
            pack["run_id"]
                .as_str()
                .context("A1 did not queue the build")?,
        )
        .await?;
    let experiment = match build["follow_ups"][0]["run_id"].as_str() {
        Some(e1) => client.wait(e1).await?["result"]["experiment_id"]
            .as_str()
            .unwrap_or("not created")
            .to_owned(),
        None => "not started".to_owned(),
    };
    println!(
        "demo: A1 → A2 → E1: baseline pack {} built by run {} ({}); {}",
        pack["baseline_pack_id"].as_str().unwrap_or("?"),
        build["run_id"].as_str().unwrap_or("?"),
        build["status"].as_str().unwrap_or("?"),
        experiment_state(&deps, &experiment).await,
    );

    for (i, transcript_id) in transcript_ids[3..].iter().enumerate() {
        let request = tables::RunRequest {
            key: Some(format!("demo:r1:{transcript_id}")),
            user: vec![user_id.clone()],
            transcript: vec![transcript_id.clone()],
            status: Some(RunRequestStatus::Queued),
            source: Some(RunRequestSource::Admin),
            ..Default::default()
        };
        let written = deps.store.upsert_records(&[request]).await?;
        let request_id = written
            .first()
            .map(|r| r.id.clone())
            .context("no run request written")?;
        let (status, queued) = client
            .post(
                "r1",
                &format!("demo-r1-{request_id}"),
                &json!({ "run_request_id": request_id }),
            )
            .await?;
        if status != 202 {
            bail!("R1 answered {status}: {queued}");
        }
        let run = client
            .wait(queued["run_id"].as_str().context("R1 gave no run id")?)
            .await?;
        let d1 = &run["follow_ups"][0];
        println!(
            "demo: R1 #{} → D1: request {request_id} {}, attempt event {}",
            i + 1,
            run["status"].as_str().unwrap_or("?"),
            d1["status"].as_str().unwrap_or("not chained"),
        );
    }
    println!(
        "demo: after the meetings: {}",
        experiment_state(&deps, &experiment).await
    );
    println!(
        "demo: done. Look at the runs with `coach-worker runs list` (with the admin token above; `cargo install --path .` \
         installs `coach-worker`, or use `cargo run --release -- runs list` in the checkout), in a browser at \
         {}/admin, or with GET {}/v1/runs/<run_id>; the records are in {store_location}.",
        client.base, client.base,
    );
    Ok(())
}

/// What the store holds about the experiment, in one sentence: active with its progress, or
/// completed with when and the completion's evidence.
async fn experiment_state(deps: &Deps, experiment_id: &str) -> String {
    // "not created" / "not started" are no ids: then there is nothing to read.
    let Ok(id) = RecordId::parse(experiment_id) else {
        return format!("experiment {experiment_id}");
    };
    let Ok(experiment) = deps.store.read::<tables::Experiment>(&id).await else {
        return format!("experiment {experiment_id}");
    };
    let events: Vec<tables::ExperimentEvent> = deps
        .store
        .find(&queries::experiment_events(
            experiment.key.as_deref().unwrap_or(experiment_id),
        ))
        .await
        .unwrap_or_default();
    let attempts = events
        .iter()
        .filter(|e| e.event_type == Some(tables::EventType::Attempt))
        .count();
    let target = experiment.target_meetings.unwrap_or(3);
    match experiment.status {
        Some(tables::ExperimentStatus::Completed) => {
            match events
                .iter()
                .find(|e| e.event_type == Some(tables::EventType::Completed))
            {
                Some(done) => format!(
                    "experiment {experiment_id} completed at {}: {}",
                    done.occurred_at.as_deref().unwrap_or("an unrecorded time"),
                    done.evidence.as_deref().unwrap_or("no evidence recorded"),
                ),
                None => format!("experiment {experiment_id} is completed"),
            }
        }
        Some(tables::ExperimentStatus::Abandoned) => {
            format!("experiment {experiment_id} was abandoned")
        }
        _ => format!(
            "experiment {experiment_id} is active: {attempts} of {target} target meetings observed"
        ),
    }
}
