//! The scenarios called as plain functions: typed requests in, typed outcomes and errors out, with
//! no HTTP server, over the embedded store, the rules analyzer and a journal in a temporary folder.
//! One test goes through HTTP on purpose: the request id a delivery came with is stored with its job
//! and appears on the job's logs.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use coach_coaching::Analyzer;
use coach_store::tables::{self, RunStatus, RunType, TableRecord};
use coach_store::{RecordId, Store};
use coach_transcript::Format;
use coach_worker::jobs::{JobContext, JobOptions};
use coach_worker::journal::{Journal, NewJob};
use coach_worker::scenarios::baseline::{self, BuildPack, NewPack};
use coach_worker::scenarios::experiments::{self, D1Facts, D1Outcome, RecordAttempt};
use coach_worker::scenarios::gate1::{self, CheckRequest, TranscriptSource};
use coach_worker::scenarios::{Delivery, Deps, JobSpec, ScenarioError};
use serde_json::json;

struct Fixture {
    deps: Arc<Deps>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::sqlite(&dir.path().join("store.db")).unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    Fixture {
        deps: Arc::new(Deps::new(store, Analyzer::Rules, journal)),
        _dir: dir,
    }
}

async fn create<T: TableRecord>(deps: &Deps, record: &T) -> RecordId {
    let written = deps
        .store
        .create(T::TABLE, vec![record.to_fields()])
        .await
        .unwrap();
    RecordId::parse(&written[0].id).unwrap()
}

async fn user(deps: &Deps, name: &str) -> RecordId {
    create(
        deps,
        &tables::User {
            name: Some(name.into()),
            ..Default::default()
        },
    )
    .await
}

async fn transcript(deps: &Deps, owner: &RecordId, title: &str) -> RecordId {
    create(
        deps,
        &tables::Transcript {
            title: Some(title.into()),
            user: vec![owner.clone()],
            transcript: Some(
                "Ilse Varga: Shall we start with the roadmap?\nTobin Reyes: Yes.\n".into(),
            ),
            ..Default::default()
        },
    )
    .await
}

/// The journaled job with this id, as the runner hands it to a handler.
async fn job(deps: &Deps, id: &str) -> JobContext {
    JobContext {
        job: deps.journal.get_job(id.to_owned()).await.unwrap(),
        max_attempts: 3,
    }
}

#[tokio::test]
async fn a1_writes_the_pack_and_queues_its_build_with_the_request_id() {
    let f = fixture();
    let owner = user(&f.deps, "Ilse Varga").await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        ids.push(transcript(&f.deps, &owner, title).await);
    }
    let delivery = Delivery {
        key: "a1:delivery-41".into(),
        request_id: Some("req-41".into()),
    };
    let request = NewPack {
        user_id: owner.clone(),
        transcript_ids: ids.clone(),
        name: Some("Spring baseline".into()),
        build: true,
    };
    let created = baseline::create_pack(&f.deps, &delivery, &request)
        .await
        .unwrap();

    assert_eq!(created.pack.key.as_deref(), Some("a1:a1:delivery-41"));
    assert_eq!(created.pack.name.as_deref(), Some("Spring baseline"));
    assert_eq!(
        created.pack.status,
        Some(tables::BaselinePackStatus::Queued)
    );
    let linked: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(created.pack.transcripts, linked);

    // The build job carries the delivery and its request id, and reads back as the typed spec.
    let run_id = created.build_run_id.expect("build was asked for");
    let ctx = job(&f.deps, &run_id).await;
    assert_eq!(ctx.job.kind, "baseline");
    assert_eq!(ctx.job.request_id.as_deref(), Some("req-41"));
    assert_eq!(ctx.job.delivery_key.as_deref(), Some("a1:delivery-41"));
    assert_eq!(
        ctx.job.dedupe_key,
        Some(format!("baseline:{}", created.pack.id))
    );
    assert_eq!(
        ctx.job.payload,
        json!({ "baseline_pack_id": created.pack.id })
    );
    assert_eq!(
        JobSpec::parse(&ctx).unwrap(),
        JobSpec::Baseline(BuildPack {
            baseline_pack_id: RecordId::parse(&created.pack.id).unwrap()
        })
    );
}

#[tokio::test]
async fn a1_names_a_missing_user_and_a_foreign_transcript_by_pointer() {
    let f = fixture();
    let owner = user(&f.deps, "Ilse Varga").await;
    let other = user(&f.deps, "Tobin Reyes").await;
    let mine = transcript(&f.deps, &owner, "mine").await;
    let theirs = transcript(&f.deps, &other, "theirs").await;
    let also_mine = transcript(&f.deps, &owner, "also mine").await;
    let delivery = Delivery {
        key: "a1:delivery-42".into(),
        request_id: None,
    };

    let missing = NewPack {
        user_id: RecordId::generate(),
        transcript_ids: vec![mine.clone(), theirs.clone(), also_mine.clone()],
        name: None,
        build: false,
    };
    match baseline::create_pack(&f.deps, &delivery, &missing).await {
        Err(ScenarioError::NotFound { code, pointer, .. }) => {
            assert_eq!(code, "USER_NOT_FOUND");
            assert_eq!(pointer.as_deref(), Some("/user_id"));
        }
        other => panic!("expected USER_NOT_FOUND, got {other:?}"),
    }

    let foreign = NewPack {
        user_id: owner,
        ..missing
    };
    let err = baseline::create_pack(&f.deps, &delivery, &foreign)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "TRANSCRIPT_NOT_OWNED");
    assert_eq!(err.pointer(), Some("/transcript_ids/1"));
    assert!(!err.is_transient());
    assert!(
        f.deps
            .store
            .list(tables::BASELINE_PACKS, &Default::default())
            .await
            .unwrap()
            .is_empty(),
        "a refused A1 writes no pack"
    );
}

#[tokio::test]
async fn s1_checks_an_inline_transcript_and_reports_failures_in_the_outcome() {
    let f = fixture();
    let request = CheckRequest {
        transcript: TranscriptSource::Inline {
            text: "Ilse Varga: Shall we start with the roadmap?\nTobin Reyes: Yes, go ahead.\n"
                .into(),
            format: Format::Auto,
        },
        coachee_speaker: Some("Ilse Varga".into()),
        experiment_active: false,
        output: json!({ "schema_version": "gate1.v1" }),
    };
    let checked = gate1::check(&f.deps, request).await.unwrap();
    assert!(!checked.passed);
    assert!(!checked.failures.is_empty());
    assert_eq!(checked.coachee_speaker, "Ilse Varga");
    assert_eq!(checked.segments, 2);
}

#[tokio::test]
async fn d1_skips_a_run_that_did_not_succeed_without_reading_the_store() {
    let f = fixture();
    let run_id = RecordId::generate();
    let request = RecordAttempt {
        run_id: run_id.clone(),
        known: Some(D1Facts {
            run_type: RunType::SingleMeeting,
            run_status: Some(RunStatus::Failed),
            user_id: None,
            experiment: None,
            meeting_date: None,
            attempt: None,
            finished_at: None,
            attempt_run: None,
        }),
    };
    // The run does not exist in the store: the chained facts alone decide.
    let outcome = experiments::record_attempt(&f.deps, &request)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        D1Outcome::Skipped {
            reason: format!("run {run_id} did not succeed, so it is not an attempt")
        }
    );
}

#[tokio::test]
async fn d1_refuses_a_baseline_run_with_a_pointer_to_the_run_id() {
    let f = fixture();
    let run = create(
        &f.deps,
        &tables::Run {
            key: Some("run:baseline".into()),
            run_type: Some(RunType::BaselinePack),
            status: Some(RunStatus::Succeeded),
            ..Default::default()
        },
    )
    .await;
    let err = experiments::record_attempt(
        &f.deps,
        &RecordAttempt {
            run_id: run,
            known: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "WRONG_RUN_TYPE");
    assert_eq!(err.pointer(), Some("/run_id"));
}

#[tokio::test]
async fn journal_rows_of_the_untyped_shape_read_as_typed_jobs_and_options() {
    let f = fixture();
    // A chained D1 and a replay's options as an earlier worker wrote them.
    let mut d1 = NewJob::new(
        "d1",
        "r1",
        json!({
            "run_id": "recRUNxxxxxxxxx01",
            "known": {
                "run_type": "single_meeting",
                "run_status": "Succeeded",
                "user_id": "recUSERxxxxxxxxx1",
                "experiment": {
                    "id": "recEXPxxxxxxxxxx1",
                    "key": "e1:recRUNxxxxxxxxx00",
                    "started_at": "2026-01-05T09:00:00Z",
                    "target_meetings": 3,
                    "active": true
                },
                "meeting_date": "2026-01-09",
                "attempt": {
                    "attempted": "yes",
                    "evidence": [{"span_id": "S3", "quote": "let me summarise"}],
                    "note": "summarised before deciding"
                },
                "finished_at": "2026-01-09T10:00:00Z"
            }
        }),
    );
    d1.options = json!({
        "replay_of_record": null,
        "replay_root_record": "recRUNxxxxxxxxx00",
        "bypass_cache": true
    });
    let (id, _) = f.deps.journal.enqueue(d1).await.unwrap();
    let ctx = job(&f.deps, &id).await;
    let JobSpec::D1(request) = JobSpec::parse(&ctx).unwrap() else {
        panic!("a d1 row reads as a D1 job");
    };
    let facts = request
        .known
        .expect("the chained facts are read, not dropped");
    assert_eq!(facts.run_status, Some(RunStatus::Succeeded));
    assert_eq!(facts.attempt_run, None);
    let attempt = facts.attempt.expect("the judgement is typed");
    assert_eq!(attempt.attempted, coach_coaching::Judgement::Yes);
    assert_eq!(attempt.evidence[0].span_id, "S3");
    assert_eq!(facts.experiment.unwrap().target_meetings, 3);
    let options = JobOptions::of(&ctx.job).unwrap();
    assert!(options.bypass_cache);
    assert_eq!(options.replay_of_record, None);
    assert_eq!(
        options.replay_root_record.as_ref().map(RecordId::as_str),
        Some("recRUNxxxxxxxxx00")
    );

    // A payload that drifted from its kind's shape fails the job loudly instead of skipping the
    // chained facts.
    let drifted = NewJob::new(
        "d1",
        "r1",
        json!({ "run_id": "recRUNxxxxxxxxx01", "known": { "run_type": "weekly" } }),
    );
    let (id, _) = f.deps.journal.enqueue(drifted).await.unwrap();
    let err = JobSpec::parse(&job(&f.deps, &id).await).unwrap_err();
    assert_eq!(err.code, "JOB_PAYLOAD_INVALID");
    assert!(!err.transient);
}

/// An in-memory log sink.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_deliverys_request_id_is_stored_with_its_job_and_on_the_jobs_logs() {
    let logs = Logs::default();
    let sink = logs.clone();
    // This test's runtime runs the job runner on this thread, so a thread-local subscriber sees it.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .json()
            .with_span_list(true)
            .with_writer(move || sink.clone())
            .finish(),
    );
    let w = common::world::World::builder().start().await;
    let (user, transcripts) = w.seed().await;
    let request = w.run_request("rr-request-id", &user, &transcripts[0]).await;
    let body = serde_json::to_vec(&json!({ "run_request_id": request })).unwrap();
    let mut headers = common::standard_headers("delivery-request-id", common::now(), &body);
    headers.push(("X-Request-Id".into(), "req-joins-17".into()));
    let resp = w.app.post_raw("r1", body, headers).await;
    assert_eq!(resp.status(), 202);
    let queued: serde_json::Value = resp.json().await.unwrap();
    let run_id = queued["run_id"].as_str().unwrap().to_owned();
    let run = w.app.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let job = w.app.journal.get_job(run_id).await.unwrap();
    assert_eq!(job.request_id.as_deref(), Some("req-joins-17"));
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let done = text
        .lines()
        .find(|line| line.contains("job succeeded"))
        .unwrap_or_else(|| panic!("no job log line:\n{text}"));
    assert!(done.contains("req-joins-17"), "{done}");
    assert!(done.contains("r1:delivery-request-id"), "{done}");
}

/// A link Airtable returns in a shape no record id has (the embedded store refuses to write one) is
/// an error of that record when a scenario reads it, with a code and a message that name the record
/// and the bad id, never a link silently dropped.
#[tokio::test]
async fn a_malformed_link_from_airtable_fails_the_read_that_follows_it() {
    common::install_tls();
    let fake = coach_store::fake::FakeAirtable::builder()
        .rate_limit(None)
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let deps = Deps::new(
        Store::airtable(fake.config()).unwrap(),
        Analyzer::Rules,
        Journal::open(&dir.path().join("journal.db")).unwrap(),
    );
    let owner = fake.insert(
        tables::USERS,
        tables::User {
            name: Some("Ilse Varga".into()),
            ..Default::default()
        }
        .to_fields(),
    );
    let mut ids = Vec::new();
    for (title, link) in [("one", "recNOTANID"), ("two", owner.id.as_str())] {
        let mut fields = coach_store::Fields::new();
        fields.insert("Title".into(), json!(title));
        fields.insert("User".into(), json!([link]));
        ids.push(RecordId::parse(&fake.insert(tables::TRANSCRIPTS, fields).id).unwrap());
    }
    ids.push(ids[1].clone());
    let request = NewPack {
        user_id: RecordId::parse(&owner.id).unwrap(),
        transcript_ids: ids.clone(),
        name: None,
        build: false,
    };
    let delivery = Delivery {
        key: "a1:broken".into(),
        request_id: None,
    };
    let err = baseline::create_pack(&deps, &delivery, &request)
        .await
        .expect_err("the first transcript's link is malformed");
    assert_eq!(err.code(), "STORE_DECODE");
    let message = err.to_string();
    assert!(message.contains(ids[0].as_str()), "{message}");
    assert!(message.contains("recNOTANID"), "{message}");
}

#[tokio::test]
async fn a_request_without_a_request_id_is_given_a_random_v4_uuid() {
    let w = common::world::World::builder().start().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let response = w
            .app
            .client
            .get(format!("{}/healthz", w.app.address))
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let uuid = uuid::Uuid::try_parse(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(uuid.get_version_num(), 4, "{id}");
        assert_eq!(id, uuid.simple().to_string(), "32 lowercase hex digits");
        assert!(seen.insert(id), "every request gets its own id");
    }
}
