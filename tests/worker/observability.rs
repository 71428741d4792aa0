//! Logs and metrics across a whole story (A1 build → A2 → E1, R1 → D1, D1/E1/S1 by hand) against the
//! Airtable fake with the OpenAI fake, plus failures: refused signatures and bodies, an unparseable
//! transcript, OpenAI 503 / invented quote / insufficient quota, an Airtable 503, a wrong admin token.
//!
//! Log hygiene: every log line of the worker (JSON, `debug` for the project's crates) is captured in
//! memory and searched for the webhook secrets, the admin token, the Airtable token, the OpenAI key
//! and sentences of the transcripts. It also has to contain `delivery_key` and `run_id` fields, so a
//! logging setup that silently logs nothing fails the test too.
//!
//! Metrics: `/metrics` is read after the story and must expose deliveries by scenario, jobs by
//! state, job durations, Airtable and OpenAI calls with latency histograms, retries, tokens and cost.
//!
//! The tracing subscriber and the Prometheus recorder are process-wide, so this suite holds exactly
//! one test function, and it needs a process of its own (nextest gives every test one; see
//! `main.rs`).

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coach_coaching::fake::Scripted;
use coach_store::tables;
use common::world::{SAMPLES, World, sample_text};
use common::*;
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;

const ADMIN_TOKEN: &str = "adm-observability-7f3c9a1e5b2d4086";
const WRONG_ADMIN_TOKEN: &str = "adm-guessed-wrong-0e8d6c4b2a9f7153";
const OPENAI_KEY: &str = "sk-observability-test-key-4b7e1d9c2a6f8035";

/// Sentences sent in this test (inline S1 text, an unparseable transcript); none may be logged.
const SENT_PHRASES: [&str; 3] = [
    "the quarterly zebra migration plan slipped again",
    "ORANGE HELICOPTER BUDGET NEEDS A SECOND REVIEWER",
    "could we revisit the lighthouse rollout before Thursday",
];

/// The in-memory log sink: a `MakeWriter` over a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
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

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self.0.clone())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Installs the capture as the process's subscriber, configured like production (JSON, flattened
/// events, current span) but at `debug` for the project's crates.
fn capture_logs() -> Capture {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,coach_worker=debug,coach_store=debug,coach_coaching=debug,coach_transcript=debug",
        ))
        .with_writer(capture.clone())
        .try_init()
        .expect("the first subscriber of this process");
    capture
}

/// The story's world: the Airtable fake without its rate limit (the 5 requests/s pacing is the
/// benchmarks' business; here it would only make the story slow), the OpenAI fake under a key of
/// this test's, two job attempts and the admin API.
async fn start_world() -> World {
    World::builder()
        .airtable_unlimited()
        .openai_with(|c| c.api_key = OPENAI_KEY.into())
        .serve(|c| c.max_attempts = 2)
        .admin_token(ADMIN_TOKEN)
        .start()
        .await
}

impl World {
    /// A queued Run Request from Make, created through the worker's store client.
    async fn queue_request(&self, key: &str, user: &str, transcript: &str) -> String {
        self.create(&tables::RunRequest {
            key: Some(key.into()),
            user: vec![common::rid(user)],
            transcript: vec![common::rid(transcript)],
            status: Some(tables::RunRequestStatus::Queued),
            source: Some(tables::RunRequestSource::Make),
            ..Default::default()
        })
        .await
    }
}

/// Six-word phrases from the sample transcripts: the last six words of every sentence of eight
/// words or more (the end of a sentence is never a speaker label or a timestamp), kept only when
/// they are plain words, so that JSON escaping in the logs cannot hide them.
fn transcript_phrases() -> Vec<String> {
    let mut phrases = Vec::new();
    for sample in SAMPLES {
        let text = sample_text(sample.file);
        for sentence in text.split(['.', '?', '!', '\n', '"', '<', '>', '*']) {
            let words: Vec<&str> = sentence.split_whitespace().collect();
            if words.len() < 8 {
                continue;
            }
            let tail = &words[words.len() - 6..];
            let plain = tail.iter().all(|w| {
                w.chars()
                    .all(|c| c.is_alphabetic() || matches!(c, ',' | '\'' | '’' | '-'))
            });
            if plain {
                phrases.push(tail.join(" "));
            }
        }
    }
    phrases.sort();
    phrases.dedup();
    phrases
}

/// The value of the first sample of `series` (a metric name with its labels, as rendered).
fn sample_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample of a metric, whatever its labels.
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secret_or_transcript_and_metrics_cover_the_story() {
    let logs = capture_logs();
    let started = std::time::Instant::now();
    let w = start_world().await;
    let (user_id, transcripts) = w.seed().await;

    // A1 with build (A2 and E1 run in the worker). The first OpenAI call gets a 503 and is retried.
    w.openai().push(Scripted::Unavailable);
    let resp = w
        .app
        .post_signed(
            "a1",
            "obs-a1",
            &json!({"user_id": user_id, "transcript_ids": &transcripts[..3], "build": true}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let a1: Value = resp.json().await.unwrap();
    let answered = std::time::Instant::now();
    let build = w.wait_all(a1["run_id"].as_str().unwrap()).await;
    assert_eq!(build["status"], "succeeded", "{build}");
    let build_latency = answered.elapsed();
    assert_eq!(build["follow_ups"][0]["kind"], "e1");

    // R1 → D1, once over each scheme; the second answer first quotes something never said (Gate-1
    // fails, the client asks for a repair) and meets one Airtable 503.
    let request = w.queue_request("obs:1", &user_id, &transcripts[3]).await;
    let done = w.r1("obs-r1-1", &request).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["follow_ups"][0]["kind"], "d1");
    w.openai().push(Scripted::InventedQuote);
    let request = w.queue_request("obs:2", &user_id, &transcripts[4]).await;
    w.airtable().fail_next(1, 503);
    let body = serde_json::to_vec(&json!({ "run_request_id": request })).unwrap();
    let resp = w
        .app
        .post_raw(
            "r1",
            body.clone(),
            make_headers(Some("obs-r1-2"), now(), &body),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let queued: Value = resp.json().await.unwrap();
    let done = w.wait_all(queued["run_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // D1 and E1 by hand, S1 over an inline transcript.
    let runs = w.airtable().records(tables::RUNS);
    let single = runs
        .iter()
        .find(|r| r.fields.get("Type") == Some(&json!("single_meeting")))
        .unwrap();
    let baseline = runs
        .iter()
        .find(|r| r.fields.get("Type") == Some(&json!("baseline_pack")))
        .unwrap();
    let d1 = w
        .app
        .post_signed("d1", "obs-d1", &json!({"run_id": single.id}))
        .await;
    assert!(d1.status().is_success(), "{}", d1.status());
    let e1 = w
        .app
        .post_signed("e1", "obs-e1", &json!({"run_id": baseline.id}))
        .await;
    assert!(e1.status().is_success(), "{}", e1.status());
    let inline = format!(
        "Maya Chen: Honestly {}.\nTom Okafor: Sure, {} is fine.\nMaya Chen: What do you think, {}?\n",
        SENT_PHRASES[0], SENT_PHRASES[2], SENT_PHRASES[1]
    );
    let output = json!({
        "schema_version": "gate1.v1", "run_type": "single_meeting", "coachee_speaker": "Maya Chen",
        "summary": "Short.",
        "patterns": [{"id": "P1", "kind": "strength", "category": "questions", "title": "Asks",
            "observation": "Asked.", "impact": "Invites.",
            "evidence": [{"span_id": "S1", "quote": SENT_PHRASES[0]}]}],
        "coaching_card": {"headline": "h", "keep_doing": ["ask"], "try_next": ["wait"]},
        "experiment_proposal": null, "experiment_attempt": null
    });
    let s1 = w
        .app
        .post_signed(
            "s1",
            "obs-s1",
            &json!({"transcript": {"text": inline, "format": "text"}, "coachee_speaker": "Maya Chen", "output": output}),
        )
        .await;
    assert_eq!(s1.status(), 200);

    // Failures: refused requests, an unparseable transcript, no OpenAI quota, a wrong admin token.
    let resp = w
        .app
        .post_raw(
            "r1",
            body.clone(),
            standard_headers("obs-bad-sig", now(), b"{}"),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let truncated = br#"{"user_id": "recAAAA"#.to_vec();
    let resp = w
        .app
        .post_raw(
            "a1",
            truncated.clone(),
            standard_headers("obs-bad-json", now(), &truncated),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = w
        .app
        .post_signed(
            "a1",
            "obs-a1-missing",
            &json!({"user_id": "recAAAAAAAAAAAAAA", "transcript_ids": &transcripts[..3]}),
        )
        .await;
    assert_eq!(resp.status(), 422);
    let resp = w.app.post_signed("r1", "obs-r1-empty", &json!({})).await;
    assert_eq!(resp.status(), 422);
    let unparseable = w
        .create(&tables::Transcript {
            title: Some("no speakers".into()),
            user: vec![common::rid(&user_id)],
            transcript: Some(format!(
                "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n>> {}\n",
                SENT_PHRASES[1]
            )),
            ..Default::default()
        })
        .await;
    let request = w.queue_request("obs:bad", &user_id, &unparseable).await;
    let failed = w.r1("obs-r1-bad", &request).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "NO_SPEAKER_LABELS");
    w.openai().push_n(10, Scripted::InsufficientQuota);
    let request = w
        .queue_request("obs:quota", &user_id, &transcripts[5])
        .await;
    let failed = w.r1("obs-r1-quota", &request).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    for (token, status) in [(WRONG_ADMIN_TOKEN, 401), (ADMIN_TOKEN, 200)] {
        let bearer = format!("Bearer {token}");
        let (got, _) = w.call("GET", "/v1/admin/runs", None, Some(&bearer)).await;
        assert_eq!(got, status);
    }

    // /metrics after the story.
    let metrics = w
        .app
        .client
        .get(format!("{}/metrics", w.app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for scenario in ["a1", "r1", "s1", "d1", "e1"] {
        let series = format!(r#"deliveries_total{{scenario="{scenario}",outcome="accepted"}}"#);
        assert!(
            sample_value(&metrics, &series).is_some_and(|v| v >= 1.0),
            "{series} missing in\n{metrics}"
        );
    }
    // Every outcome of every hook is a series from the start (at 0); the refused deliveries of the
    // story are counted in theirs.
    for outcome in ["unauthorized", "invalid"] {
        let label = format!(r#"outcome="{outcome}"}}"#);
        let refused: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("deliveries_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            refused >= 1.0,
            "{outcome} deliveries are counted: {metrics}"
        );
    }
    assert_eq!(
        sample_value(
            &metrics,
            r#"deliveries_total{scenario="r1",outcome="key_reused"}"#
        ),
        Some(0.0),
        "a hook's outcomes are series before they happen: {metrics}"
    );
    assert!(
        sample_value(&metrics, r#"jobs{state="succeeded"}"#).is_some_and(|v| v > 0.0),
        "{metrics}"
    );
    assert!(
        sample_value(&metrics, r#"jobs{state="failed"}"#).is_some_and(|v| v >= 2.0),
        "{metrics}"
    );
    for histogram in [
        "job_duration_seconds",
        "airtable_request_duration_seconds",
        "openai_request_duration_seconds",
    ] {
        assert!(
            metrics.contains(&format!("{histogram}_bucket{{")),
            "{histogram} buckets missing in\n{metrics}"
        );
        assert!(
            metric_sum(&metrics, &format!("{histogram}_count")) > 0.0,
            "{histogram} counted nothing"
        );
    }
    assert!(
        metric_sum(&metrics, "airtable_requests_total") > 10.0,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "openai_requests_total") >= 4.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"openai_requests_total{status="503"}"#),
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "openai_retries_total") >= 1.0,
        "{metrics}"
    );
    // Calls by outcome and provider host (the fake listens on 127.0.0.1).
    for outcome in ["ok", "transient"] {
        assert!(
            metrics.lines().any(|l| l.starts_with("openai_calls_total{")
                && l.contains(&format!(r#"outcome="{outcome}""#))
                && l.contains(r#"host="127.0.0.1:"#)),
            "openai_calls_total for {outcome} missing in\n{metrics}"
        );
    }
    assert!(
        metric_sum(&metrics, "airtable_retries_total") >= 1.0,
        "{metrics}"
    );
    for kind in ["input", "output"] {
        assert!(
            sample_value(
                &metrics,
                &format!(r#"openai_tokens_total{{kind="{kind}"}}"#)
            )
            .is_some_and(|v| v > 0.0),
            "{kind} tokens missing in\n{metrics}"
        );
    }
    assert!(
        sample_value(&metrics, "openai_cost_usd_total").is_some_and(|v| v > 0.0),
        "cost missing in\n{metrics}"
    );
    assert!(
        metric_sum(&metrics, "jobs_finished_total") >= 6.0,
        "{metrics}"
    );

    // Log hygiene.
    let text = logs.text();
    assert!(
        text.lines().count() > 20,
        "almost nothing was logged:\n{text}"
    );
    assert!(
        text.contains("\"delivery_key\""),
        "no delivery_key field in the logs"
    );
    assert!(text.contains("\"run_id\""), "no run_id field in the logs");
    assert!(
        text.contains("NO_SPEAKER_LABELS"),
        "the failed job is not in the logs"
    );
    let mut forbidden: Vec<(String, &str)> = vec![
        (SECRET.into(), "the Standard Webhooks secret"),
        (
            SECRET.trim_start_matches("whsec_").into(),
            "the Standard Webhooks secret without its prefix",
        ),
        (MAKE_SECRET.into(), "the Make secret"),
        (ADMIN_TOKEN.into(), "the admin token"),
        (WRONG_ADMIN_TOKEN.into(), "a presented admin token"),
        (w.airtable().config().token, "the Airtable token"),
        (OPENAI_KEY.into(), "the OpenAI key"),
    ];
    let phrases = transcript_phrases();
    assert!(
        phrases.len() >= 20,
        "only {} phrases found in the samples",
        phrases.len()
    );
    for phrase in &phrases {
        forbidden.push((phrase.clone(), "a sentence of a sample transcript"));
    }
    for phrase in SENT_PHRASES {
        forbidden.push((phrase.into(), "a sentence sent in a transcript"));
    }
    let leaks: Vec<String> = forbidden
        .iter()
        .filter_map(|(needle, what)| {
            let line = text.lines().find(|l| l.contains(needle.as_str()))?;
            Some(format!("{what} ({needle:?}) in: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "leaked into the logs:\n{}",
        leaks.join("\n")
    );
    println!(
        "observability: {} log lines ({} bytes) checked against {} secrets and phrases; {} metric lines; {:.1} s",
        text.lines().count(),
        text.len(),
        forbidden.len(),
        metrics.lines().count(),
        started.elapsed().as_secs_f64()
    );

    // A job queued by a synchronous hook (A1 with `"build": true`) starts at once: the journal wakes
    // the runner after every commit that queues a job (it once waited for the runner's 5 s idle poll).
    assert!(
        build_latency < Duration::from_secs(3),
        "the A1 build took {:?} to finish after the A1 answer",
        build_latency
    );
}
