//! The whole story over HTTP with signed requests — A1 → A2 → E1, then R1 × 3 → D1 × 3 — against the
//! Airtable fake and again against the SQLite store, with the OpenAI fake as the provider; then
//! repeated deliveries, bad input, and the Airtable calls each scenario made.

use crate::common;

use std::time::Duration;

use coach_store::tables::{self, TableRecord};
use common::WAIT_LIMIT;
use common::world::{World, WorldBuilder};
use serde_json::{Value, json};

/// The OpenAI fake as the provider and two job attempts, on the Airtable fake or on SQLite.
fn world(airtable: bool) -> WorldBuilder {
    let builder = World::builder().openai().serve(|c| c.max_attempts = 2);
    if airtable {
        builder.airtable()
    } else {
        builder
    }
}

async fn story(airtable: bool) {
    story_with(world(airtable), airtable).await;
}

async fn story_with(builder: WorldBuilder, airtable: bool) {
    let w = builder.start().await;
    let (user_id, transcripts) = w.seed().await;

    // A1 with build: the pack, then A2 → E1 in the worker.
    w.reset_calls();
    let resp = w
        .app
        .post_signed(
            "a1",
            "a1-1",
            &json!({"user_id": user_id, "transcript_ids": &transcripts[..3], "build": true}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let a1: Value = resp.json().await.unwrap();
    let a1_calls = w.calls();
    let pack_id = a1["baseline_pack_id"].as_str().unwrap().to_owned();
    w.reset_calls();
    let build = w.wait_all(a1["run_id"].as_str().unwrap()).await;
    let a2_calls = w.calls();
    let a2_trace = w.call_trace();
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["follow_ups"][0]["kind"], "e1");

    let pack: tables::BaselinePack = w.record(&pack_id).await;
    assert_eq!(pack.status, Some(tables::BaselinePackStatus::Ready));
    let run: tables::Run = w.record(&pack.run[0]).await;
    assert_eq!(run.run_type, Some(tables::RunType::BaselinePack));
    assert_eq!(run.status, Some(tables::RunStatus::Succeeded));
    assert_eq!(run.provider.as_deref(), Some("openai"));
    assert!(run.model.is_some() && run.prompt_version.is_some());
    assert_eq!(run.gate1_passed, Some(true));
    assert_eq!(run.attempt, Some(1));
    assert!(run.input_tokens.unwrap() > 0 && run.output_tokens.unwrap() > 0);
    assert!(run.cost_usd.is_some() && run.duration_ms.is_some());
    assert!(run.started_at.is_some() && run.finished_at.is_some());
    let output: Value = serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
    assert!(output["experiment_proposal"].is_object());
    assert!(run.coaching_card.as_deref().unwrap().contains("[^1]"));
    assert!(run.metrics.as_deref().unwrap().starts_with('['));
    assert_eq!(run.transcripts, transcripts[..3].to_vec());
    for t in &transcripts[..3] {
        let t: tables::Transcript = w.record(t).await;
        assert_eq!(t.parse_status, Some(tables::ParseStatus::Parsed));
        assert!(t.segments.unwrap() > 5 && t.words.unwrap() > 200);
    }
    let experiments = w.records(tables::EXPERIMENTS).await;
    assert_eq!(experiments.len(), 1);
    let experiment = tables::Experiment::from_record(&experiments[0]).unwrap();
    assert_eq!(experiment.status, Some(tables::ExperimentStatus::Active));
    assert_eq!(experiment.source_run, vec![run.id.clone()]);
    let user: tables::User = w.record(&user_id).await;
    assert_eq!(user.active_experiment, vec![experiment.id.clone()]);
    let pack: tables::BaselinePack = w.record(&pack_id).await;
    assert_eq!(pack.experiment, vec![experiment.id.clone()]);

    // R1 × 3, each chaining D1.
    let mut r1_calls = Vec::new();
    let mut r1_traces = Vec::new();
    for (i, t) in transcripts[3..].iter().enumerate() {
        let request_id = w.run_request(&format!("test:{i}"), &user_id, t).await;
        w.reset_calls();
        let resp = w
            .app
            .post_signed(
                "r1",
                &format!("r1-{i}"),
                &json!({"run_request_id": request_id}),
            )
            .await;
        assert_eq!(resp.status(), 202);
        let queued: Value = resp.json().await.unwrap();
        let done = w.wait_all(queued["run_id"].as_str().unwrap()).await;
        r1_calls.push(w.calls());
        r1_traces.push(w.call_trace());
        assert_eq!(done["status"], "succeeded", "{done}");
        let request: tables::RunRequest = w.record(&request_id).await;
        assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
        let run: tables::Run = w.record(&request.run[0]).await;
        assert_eq!(run.run_type, Some(tables::RunType::SingleMeeting));
        assert_eq!(run.run_request, vec![request_id.clone()]);
        assert_eq!(done["follow_ups"][0]["kind"], "d1");
        assert_eq!(done["follow_ups"][0]["status"], "succeeded");

        // The same delivery again: the same answer, nothing new.
        let again = w
            .app
            .post_signed(
                "r1",
                &format!("r1-{i}"),
                &json!({"run_request_id": request_id}),
            )
            .await;
        assert_eq!(again.json::<Value>().await.unwrap(), queued);
    }
    let events: Vec<tables::ExperimentEvent> = w.all().await;
    let attempts = events
        .iter()
        .filter(|e| e.event_type == Some(tables::EventType::Attempt))
        .count();
    let instantiated = events
        .iter()
        .filter(|e| e.event_type == Some(tables::EventType::Instantiated))
        .count();
    assert_eq!(attempts, 3);
    assert_eq!(instantiated, 1);
    let experiment: tables::Experiment = w.record(&experiment.id).await;
    if experiment.target_meetings.unwrap_or(99) <= 3 {
        assert_eq!(experiment.status, Some(tables::ExperimentStatus::Completed));
        assert_eq!(
            events
                .iter()
                .filter(|e| e.event_type == Some(tables::EventType::Completed))
                .count(),
            1
        );
    }

    // D1 and E1 called again by hand: the same records, no duplicates.
    let runs = w.records(tables::RUNS).await;
    let single = runs
        .iter()
        .find(|r| r.fields.get("Type") == Some(&json!("single_meeting")))
        .unwrap();
    let d1 = w
        .app
        .post_signed("d1", "d1-manual", &json!({"run_id": single.id}))
        .await;
    assert!(d1.status().is_success(), "{}", d1.status());
    let e1 = w
        .app
        .post_signed("e1", "e1-manual", &json!({"run_id": pack.run[0]}))
        .await;
    assert_eq!(e1.status(), 201);
    assert_eq!(w.records(tables::EXPERIMENTS).await.len(), 1);
    let after: tables::Experiment = w.record(&experiment.id).await;
    assert_eq!(
        after.status, experiment.status,
        "E1 again leaves a completed experiment completed"
    );
    let user: tables::User = w.record(&user_id).await;
    if experiment.status == Some(tables::ExperimentStatus::Completed) {
        assert!(
            user.active_experiment.is_empty(),
            "and does not make it active again"
        );
    }
    assert_eq!(
        w.records(tables::EXPERIMENT_EVENTS).await.len(),
        events.len(),
        "a manual D1/E1 for runs already handled writes nothing new"
    );
    assert_eq!(w.records(tables::RUNS).await.len(), 4);
    if airtable {
        println!("Airtable calls: A1 {a1_calls}, A2+E1 {a2_calls}, R1+D1 {r1_calls:?}");
        println!("A2+E1: {}", a2_trace.join(", "));
        for (i, t) in r1_traces.iter().enumerate() {
            println!("R1+D1 #{}: {}", i + 1, t.join(", "));
        }
        // The budgets: A2 with E1 at most 12 calls; R1 with D1 at most 8 (the D1 that
        // completes the experiment writes three records more).
        assert!(a2_calls <= 12, "A2+E1 made {a2_calls} calls");
        for (i, n) in r1_calls.iter().enumerate() {
            let budget = if i + 1 == r1_calls.len() { 11 } else { 8 };
            assert!(*n <= budget, "R1+D1 #{} made {n} calls", i + 1);
        }
        let fake = w.airtable();
        assert_eq!(
            fake.count_429(),
            0,
            "the client's pacing never trips the rate limit"
        );
    }
}

#[tokio::test]
async fn whole_story_against_the_airtable_fake() {
    story(true).await;
}

#[tokio::test]
async fn whole_story_against_the_sqlite_store() {
    story(false).await;
}

/// The same story with the journal on Postgres (a throwaway cluster), as several instances run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_story_with_the_journal_on_postgres() {
    let cluster = crate::common::postgres::PgCluster::start();
    let url = cluster.url();
    story_with(
        world(true).serve(move |c| c.database_url = Some(url.into())),
        true,
    )
    .await;
    cluster.stop();
}

#[tokio::test]
async fn bad_input_gets_stable_codes_and_writes_nothing() {
    let w = world(false).start().await;
    let (user_id, transcripts) = w.seed().await;
    let other = w
        .create(&tables::User {
            name: Some("Someone Else".into()),
            ..Default::default()
        })
        .await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "a1",
            json!({"user_id": "rec123", "transcript_ids": &transcripts[..3]}),
            400,
            "INVALID_RECORD_ID",
        ),
        (
            "a1",
            json!({"user_id": user_id, "transcript_ids": &transcripts[..2]}),
            422,
            "WRONG_TRANSCRIPT_COUNT",
        ),
        (
            "a1",
            json!({"user_id": user_id, "transcript_ids": &transcripts[..4]}),
            422,
            "WRONG_TRANSCRIPT_COUNT",
        ),
        (
            "a1",
            json!({"user_id": user_id, "transcript_ids": [&transcripts[0], &transcripts[0], &transcripts[1]]}),
            422,
            "DUPLICATE_TRANSCRIPT",
        ),
        (
            "a1",
            json!({"user_id": "recAAAAAAAAAAAAAA", "transcript_ids": &transcripts[..3]}),
            422,
            "USER_NOT_FOUND",
        ),
        (
            "a1",
            json!({"user_id": other, "transcript_ids": &transcripts[..3]}),
            422,
            "TRANSCRIPT_NOT_OWNED",
        ),
        (
            "a1",
            json!({"user_id": user_id, "transcript_ids": ["recAAAAAAAAAAAAAA", &transcripts[1], &transcripts[2]]}),
            422,
            "TRANSCRIPT_NOT_FOUND",
        ),
        (
            "r1",
            json!({"run_request_id": "x\", \"\"=\""}),
            400,
            "INVALID_RECORD_ID",
        ),
        ("r1", json!({}), 422, "MISSING_FIELD"),
        ("a2", json!({"baseline_pack_id": 12}), 422, "WRONG_TYPE"),
        (
            "d1",
            json!({"run_id": "recAAAAAAAAAAAAAA"}),
            422,
            "RECORD_NOT_FOUND",
        ),
        (
            "e1",
            json!({"run_id": "rec'; DROP TABLE"}),
            400,
            "INVALID_RECORD_ID",
        ),
        (
            "s1",
            json!({"transcript": {"text": "hello"}}),
            422,
            "MISSING_FIELD",
        ),
        (
            "s1",
            json!({"transcript": {"text": "A: hi", "format": "docx"}, "output": {}}),
            422,
            "UNKNOWN_FORMAT",
        ),
        (
            "s1",
            json!({"transcript": {"text": "A: hi"}, "output": {}}),
            422,
            "MISSING_FIELD",
        ),
    ];
    for (i, (hook, body, status, code)) in cases.into_iter().enumerate() {
        let resp = w.app.post_signed(hook, &format!("bad-{i}"), &body).await;
        assert_eq!(resp.status().as_u16(), status, "{hook} {body}");
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["code"], code, "{hook} {body}: {json}");
    }
    assert!(w.records(tables::BASELINE_PACKS).await.is_empty());
    assert!(w.records(tables::RUNS).await.is_empty());

    // D1 on an unfinished run, E1 on a single-meeting run.
    let queued_run = w
        .create(&tables::Run {
            key: Some("k1".into()),
            run_type: Some(tables::RunType::SingleMeeting),
            status: Some(tables::RunStatus::Running),
            ..Default::default()
        })
        .await;
    let resp = w
        .app
        .post_signed("d1", "d1-unfinished", &json!({"run_id": queued_run}))
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "RUN_NOT_FINISHED"
    );
    let resp = w
        .app
        .post_signed("e1", "e1-single", &json!({"run_id": queued_run}))
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "WRONG_RUN_TYPE"
    );
    assert!(w.records(tables::EXPERIMENT_EVENTS).await.is_empty());

    // An unparseable transcript: the error lands on the Transcript and on the Run Request.
    let bad = w.unlabelled_transcript(&user_id).await;
    let request_id = w.run_request("bad", &user_id, &bad).await;
    let run = w.r1("r1-bad", &request_id).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "NO_SPEAKER_LABELS");
    assert_eq!(run["attempts"], 1, "a bad transcript is not retried");
    let t: tables::Transcript = w.record(&bad).await;
    assert_eq!(t.parse_status, Some(tables::ParseStatus::Failed));
    assert!(t.parse_error.unwrap().contains("NO_SPEAKER_LABELS"));
    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Failed));
    assert!(request.error.unwrap().contains("NO_SPEAKER_LABELS"));
    let failed_run: tables::Run = w.record(&request.run[0]).await;
    assert_eq!(failed_run.status, Some(tables::RunStatus::Failed));
}

#[tokio::test]
async fn s1_reports_gate1_for_inline_and_stored_transcripts() {
    let w = world(false).start().await;
    let (_, transcripts) = w.seed().await;
    let text = "Maya Chen: What do you think about the plan?\nTom Okafor: I like it.\nMaya Chen: Good, let's ship.\n";
    let output = json!({
        "schema_version": "gate1.v1", "run_type": "single_meeting", "coachee_speaker": "Maya Chen",
        "summary": "Short.",
        "patterns": [{"id": "P1", "kind": "strength", "category": "questions", "title": "Asks", "observation": "Asked.",
            "impact": "Invites.", "evidence": [{"span_id": "S1", "quote": "what do you think"}]}],
        "coaching_card": {"headline": "h", "keep_doing": ["ask"], "try_next": ["wait"]},
        "experiment_proposal": null, "experiment_attempt": null
    });
    let resp = w.app.post_signed("s1", "s1-ok", &json!({"transcript": {"text": text, "format": "text"}, "coachee_speaker": "maya chen", "output": output})).await;
    let status = resp.status();
    let report: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");

    let mut renumbered = output.clone();
    renumbered["patterns"][0]["evidence"][0]["span_id"] = json!("S2");
    let report: Value = w
        .app
        .post_signed("s1", "s1-bad", &json!({"transcript": {"text": text}, "coachee_speaker": "Maya Chen", "output": renumbered}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["passed"], false);
    assert!(
        report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["pointer"] == "/patterns/0/evidence/0/quote"
                || f["pointer"] == "/patterns/0/evidence/0")
    );

    let resp = w
        .app
        .post_signed(
            "s1",
            "s1-record",
            &json!({"transcript_id": transcripts[0], "output": output}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(
        report["passed"], false,
        "S1 from another transcript is not grounded"
    );
    assert_eq!(report["coachee_speaker"], "Maya Chen");
}

/// A queued Run Request as an operator would add it in Airtable.
async fn queue_request(w: &World, key: &str, user: &str, transcript: &str) -> String {
    w.run_request_from(tables::RunRequestSource::Airtable, key, user, transcript)
        .await
}

async fn wait_status(w: &World, id: &str, want: tables::RunRequestStatus) {
    let reached = w
        .app
        .until(WAIT_LIMIT, async || {
            let r: tables::RunRequest = w.record(id).await;
            (r.status == Some(want)).then_some(())
        })
        .await;
    if reached.is_none() {
        panic!("run request {id} never became {want}");
    }
}

#[tokio::test]
async fn the_poller_runs_queued_requests_once_and_reruns_what_an_operator_requeues() {
    let w = world(false).poll(Duration::from_millis(200)).start().await;
    let (user, transcripts) = w.seed().await;
    let id = queue_request(&w, "poll-1", &user, &transcripts[4]).await;
    wait_status(&w, &id, tables::RunRequestStatus::Done).await;
    // Several more polls pass; the request is not run again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(w.records(tables::RUNS).await.len(), 1);
    // An operator sets it back to Queued: it runs again, as a new Run.
    let mut f = coach_store::Fields::new();
    f.insert("Status".into(), json!("Queued"));
    w.deps
        .store
        .update(tables::RUN_REQUESTS, vec![(id.clone(), f)])
        .await
        .unwrap();
    wait_status(&w, &id, tables::RunRequestStatus::Done).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.records(tables::RUNS).await.len(), 2);
}

#[tokio::test]
async fn the_same_analysis_is_answered_from_the_cache_without_a_second_paid_call() {
    let w = world(false).start().await;
    let (user, transcripts) = w.seed().await;
    for (i, key) in ["cache-1", "cache-2"].iter().enumerate() {
        let id = queue_request(&w, key, &user, &transcripts[4]).await;
        let run = w.r1(&format!("cache-{i}"), &id).await;
        assert_eq!(run["result"]["cached"], i == 1, "{run}");
    }
    assert_eq!(
        w.openai().request_count().await,
        1,
        "one paid call for two identical analyses"
    );
    let runs: Vec<tables::Run> = w.all().await;
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().any(|r| r.cost_usd == Some(0.0)),
        "the cached run records no new cost"
    );
}

#[tokio::test]
async fn a_new_delivery_for_a_done_request_changes_nothing_until_an_operator_requeues_it() {
    let w = World::builder().airtable_unlimited().start().await;
    let (user, transcripts) = w.seed().await;
    let id = w.run_request("done-1", &user, &transcripts[4]).await;
    let first = w.r1("done-a", &id).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert!(
        w.call_trace()
            .iter()
            .all(|c| !c.starts_with("GET Run Requests")),
        "a first run claims the request with its Processing update, without reading it first"
    );

    // Another delivery (Make ran the scenario again): one read, nothing written.
    w.reset_calls();
    let second = w.r1("done-b", &id).await;
    assert_eq!(
        second["result"]["skipped"],
        "the run request is already Done"
    );
    assert_eq!(w.call_trace(), vec![format!("GET Run Requests/{id}")]);
    assert_eq!(w.records(tables::RUNS).await.len(), 1);

    // An operator sets it back to Queued: the next delivery runs it again, as a new Run.
    let mut f = coach_store::Fields::new();
    f.insert("Status".into(), json!("Queued"));
    w.deps
        .store
        .update(tables::RUN_REQUESTS, vec![(id.clone(), f)])
        .await
        .unwrap();
    let third = w.r1("done-c", &id).await;
    assert_eq!(third["status"], "succeeded", "{third}");
    assert!(third["result"]["skipped"].is_null(), "{third}");
    assert_eq!(w.records(tables::RUNS).await.len(), 2);
    let request: tables::RunRequest = w.record(&id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
}

/// A Teams `.docx` attached to the record's `File` (its `Format` left at `text`): R1 reads the
/// Word document, measures the same turns the CLI prints for that file, and writes the lines it
/// could not attribute to anyone to `Parse Warnings`; a damaged one fails with its code.
#[tokio::test]
async fn r1_reads_a_docx_file_and_writes_parse_warnings() {
    use coach_store::attachment::AttachmentPolicy;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let docx = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/transcript/tests/fixtures/layouts/teams.docx"
    ))
    .unwrap();
    let files = MockServer::start().await;
    for (name, body) in [
        ("/teams.docx", docx.clone()),
        ("/broken.docx", docx[..docx.len() / 2].to_vec()),
    ] {
        Mock::given(method("GET"))
            .and(path(name))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(body))
            .mount(&files)
            .await;
    }
    let mut w = World::builder().prepare().await;
    std::sync::Arc::get_mut(&mut w.deps)
        .expect("nothing shares the dependencies before launch")
        .attachments = AttachmentPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        allow_insecure_http: true,
        ..Default::default()
    };
    w.launch().await;
    let user = w.user().await;
    let attached = |file: &str| tables::Transcript {
        title: Some(file.into()),
        user: vec![common::rid(&user)],
        format: Some(tables::TranscriptFormat::Text),
        file: vec![tables::Attachment {
            url: format!("{}/{file}", files.uri()),
            filename: Some(file.into()),
            ..Default::default()
        }],
        coachee_speaker: Some("Mei Tan".into()),
        ..Default::default()
    };

    let id = w.create(&attached("teams.docx")).await;
    let request = w.run_request("docx", &user, &id).await;
    let run = w.r1("r1-docx", &request).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let t: tables::Transcript = w.record(&id).await;
    assert_eq!(t.parse_status, Some(tables::ParseStatus::Parsed));
    let cli = coach_transcript::parse(&docx, coach_transcript::Format::Auto).unwrap();
    assert_eq!(t.segments, Some(cli.segments.len() as i64));
    assert_eq!(t.words, Some(cli.word_count() as i64));
    assert_eq!((t.segments, t.words), (Some(3), Some(17)));
    let warnings = t.parse_warnings.expect("Parse Warnings written");
    let lines: Vec<&str> = warnings.lines().collect();
    assert_eq!(lines.len(), 3, "{warnings}");
    assert!(
        lines[0].starts_with("line 1 UNATTRIBUTED_TEXT: ") && lines[0].contains("Migration sync"),
        "{warnings}"
    );

    let id = w.create(&attached("broken.docx")).await;
    let request = w.run_request("docx-broken", &user, &id).await;
    let run = w.r1("r1-docx-broken", &request).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "DOCX_UNREADABLE");
    let t: tables::Transcript = w.record(&id).await;
    assert_eq!(t.parse_status, Some(tables::ParseStatus::Failed));
    assert!(t.parse_error.unwrap().contains("DOCX_UNREADABLE"));
    assert_eq!(t.parse_warnings, None);
}

/// The exact Airtable calls of one R1 and its D1, so that a change that adds one is seen. Each call
/// is one the work needs: the request is set `Processing` and read in one PATCH (the answer is the
/// whole record); the transcript, the user and the active experiment are three tables, so three
/// reads; the Run and the attempt event are upserted once each, and the request set `Done`. The
/// transcript's parse outcome is written the first time it is parsed only, and the experiment's
/// events are listed only while the journal does not know its tally. Calls of several jobs that wait
/// for the rate limiter together are merged (`coach_store`'s batching), which a single job never is.
#[tokio::test]
async fn one_r1_with_its_d1_makes_exactly_the_calls_the_work_needs() {
    let w = World::builder().airtable_unlimited().start().await;
    let (user, transcripts) = w.seed().await;
    let experiment = w
        .create(&tables::Experiment {
            key: Some(format!("hand:{user}")),
            title: Some("Ask before answering".into()),
            user: vec![common::rid(&user)],
            behavior: Some("Ask one open question before giving an answer".into()),
            success_signal: Some("Others speak first".into()),
            target_meetings: Some(100),
            status: Some(tables::ExperimentStatus::Active),
            started_at: Some("2026-01-01T00:00:00.000Z".into()),
            ..Default::default()
        })
        .await;
    let mut f = coach_store::Fields::new();
    f.insert("Active Experiment".into(), json!([experiment]));
    w.deps
        .store
        .update(tables::USERS, vec![(user.clone(), f)])
        .await
        .unwrap();
    let t = &transcripts[3];
    let reads = [
        format!("GET Transcripts/{t}"),
        format!("GET Users/{user}"),
        format!("GET Experiments/{experiment}"),
    ];

    let mut traces = Vec::new();
    for i in 0..2 {
        let request = w.run_request(&format!("exact:{i}"), &user, t).await;
        w.reset_calls();
        let run = w.r1(&format!("exact-{i}"), &request).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let d1 = w.follow_up_result(&run).await;
        assert_eq!(d1["attempts"], i + 1, "{d1}");
        traces.push(w.call_trace());
    }
    // The first meeting on this transcript writes its parse outcome, and the experiment (made by
    // hand) is unknown to the journal: its attempt events are listed once.
    let mut first = vec!["PATCH Run Requests".to_owned()];
    first.extend(reads.iter().cloned());
    first.extend(
        [
            "PATCH Transcripts",
            "PATCH Runs",
            "PATCH Run Requests",
            "GET Experiment Events",
            "PATCH Experiment Events",
        ]
        .map(String::from),
    );
    assert_eq!(traces[0], first);
    // Every later R1 + D1: 7 calls.
    let mut steady = vec!["PATCH Run Requests".to_owned()];
    steady.extend(reads.iter().cloned());
    steady.extend(
        [
            "PATCH Runs",
            "PATCH Run Requests",
            "PATCH Experiment Events",
        ]
        .map(String::from),
    );
    assert_eq!(traces[1], steady);
    assert_eq!(traces[1].len(), 7);
}
