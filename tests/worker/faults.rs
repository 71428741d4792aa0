//! Fault suite (issue 8): the real worker, with the real scenarios, against the Airtable and OpenAI
//! fakes while they misbehave.
//!
//! - **Airtable storm**: ~20 % of Airtable calls answered 500/502/503 and bursts of 429 while 20 R1
//!   requests run; every request must end `Done` with exactly one Run, and no second may carry more
//!   requests than the fake's 5/s limit. Figures (calls, failures, retries, elapsed) are printed; run
//!   with `--nocapture` to see them.
//! - **OpenAI faults**, one test each, on the SQLite store: timeouts, 429 with `retry-after-ms`, 5xx
//!   (all absorbed by the client's own retries, so the job succeeds on its first attempt), then
//!   `insufficient_quota` (fails fast, the error written on the Run and the Run Request) and three
//!   answers failing Gate-1 (the run fails and keeps the Gate-1 report).
//!
//! The world is the shared one (`common/world.rs`); what these tests adjust on it is the
//! number of job attempts and the OpenAI client's timeouts and backoffs.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coach_coaching::OpenAiConfig;
use coach_coaching::fake::Scripted;
use coach_store::tables::{self, TableRecord};
use common::world::{World, WorldBuilder, follow_ups};
use serde_json::{Value, json};

/// A worker on the OpenAI fake with `max_attempts` job attempts and 20 ms job retries (SQLite unless
/// the caller adds `.airtable()`); `openai` adjusts the client settings.
fn world(
    max_attempts: u32,
    openai: impl FnOnce(&mut OpenAiConfig) + Send + 'static,
) -> WorldBuilder {
    World::builder().openai_with(openai).serve(move |c| {
        c.max_attempts = max_attempts;
        c.retry_base_ms = 20;
    })
}

impl World {
    /// Queues Run Requests (one upsert per 10) and returns their ids in order.
    async fn queue(&self, keys: &[String], user: &str, transcripts: &[String]) -> Vec<String> {
        let fields = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                tables::RunRequest {
                    key: Some(key.clone()),
                    user: vec![common::rid(user)],
                    transcript: vec![common::rid(&transcripts[i % transcripts.len()])],
                    status: Some(tables::RunRequestStatus::Queued),
                    source: Some(tables::RunRequestSource::Make),
                    ..Default::default()
                }
                .to_fields()
            })
            .collect();
        let written = self
            .deps
            .store
            .upsert(tables::RUN_REQUESTS, fields)
            .await
            .unwrap();
        assert_eq!(written.len(), keys.len());
        written.into_iter().map(|r| r.id).collect()
    }

    /// Delivers R1 for a request over signed HTTP; returns the job id.
    async fn deliver(&self, delivery: &str, request_id: &str) -> String {
        let resp = self
            .app
            .post_signed("r1", delivery, &json!({ "run_request_id": request_id }))
            .await;
        assert_eq!(resp.status(), 202, "R1 delivery {delivery} not accepted");
        let queued: Value = resp.json().await.unwrap();
        queued["run_id"].as_str().unwrap().to_owned()
    }

    /// Polls a job until it is finished, for up to `limit`.
    async fn wait_run(&self, run_id: &str, limit: Duration) -> Value {
        let mut run = Value::Null;
        let finished = self
            .app
            .until(limit, async || {
                run = self.app.get_json(&format!("/v1/runs/{run_id}")).await.1;
                matches!(
                    run["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
                .then(|| run.clone())
            })
            .await;
        finished.unwrap_or_else(|| panic!("run {run_id} did not finish in {limit:?}: {run}"))
    }

    /// One R1 on SQLite: seed, queue, deliver, wait; returns the job view, the request id and how
    /// long the job took from delivery to its end.
    async fn one_r1(&self) -> (Value, String, Duration) {
        let (user, transcripts) = self.seed_samples_in_one_call(follow_ups()).await;
        let ids = self
            .queue(&["fault:1".to_owned()], &user, &transcripts[1..2])
            .await;
        let started = Instant::now();
        let job = self.deliver("r1-fault-1", &ids[0]).await;
        let run = self.wait_run(&job, Duration::from_secs(20)).await;
        (run, ids[0].clone(), started.elapsed())
    }
}

// ---------------------------------------------------------------------------------------------
// Airtable storm
// ---------------------------------------------------------------------------------------------

const STORM_REQUESTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airtable_storm_every_request_done_once_without_passing_the_rate_limit() {
    let w = world(8, |_| {}).airtable().start().await;
    let fake = w.airtable();

    // Seeded while Airtable is healthy: a coachee and the three follow-up samples.
    let (user, transcripts) = w.seed_samples_in_one_call(follow_ups()).await;
    let keys: Vec<String> = (0..STORM_REQUESTS).map(|i| format!("storm:{i}")).collect();
    let request_ids = w.queue(&keys, &user, &transcripts).await;
    fake.reset_counters();

    // The storm: one call in five fails, the status turning over 500 → 502 → 503; bursts of 429
    // (one of 7, more than the client's five 429 waits, so a call that drew them all would fall
    // back to the job's own retry); and one run of 10 straight 503s, long enough that some call
    // may use up its five 5xx retries and the job layer has to run the request again.
    let stop = AtomicBool::new(false);
    let storm = async {
        let statuses = [500u16, 502, 503];
        let bursts = [
            (5usize, 3usize, 429u16),
            (15, 4, 429),
            (30, 7, 429),
            (45, 3, 429),
            (60, 10, 503),
        ];
        let mut tick = 0usize;
        while !stop.load(Ordering::Relaxed) {
            fake.set_failure_ratio(0.2, statuses[tick % statuses.len()]);
            if let Some((_, n, status)) = bursts.iter().find(|(at, _, _)| *at == tick) {
                fake.fail_next(*n, *status);
            }
            tick += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fake.set_failure_ratio(0.0, 500);
    };
    let started = Instant::now();
    let work = async {
        let mut jobs = Vec::new();
        for (i, id) in request_ids.iter().enumerate() {
            jobs.push(w.deliver(&format!("storm-{i}"), id).await);
        }
        let mut views = Vec::new();
        for job in &jobs {
            views.push(w.wait_run(job, Duration::from_secs(120)).await);
        }
        stop.store(true, Ordering::Relaxed);
        views
    };
    let ((), views) = tokio::join!(storm, work);
    let elapsed = started.elapsed();

    // Figures first, so a failure below still shows them.
    let calls = fake.requests();
    let count = |pred: &dyn Fn(u16) -> bool| calls.iter().filter(|c| pred(c.status)).count();
    let failed_5xx = count(&|s| s >= 500);
    let injected_429 = count(&|s| s == 429) - fake.count_429();
    let runs_path = fake.table_path(tables::RUNS);
    let failed_run_upserts = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path == runs_path && c.status >= 500)
        .count();
    // What the client sent, as the server saw it: arrivals in any one second, refused ones included.
    let max_sent_per_second = (0..calls.len())
        .map(|i| {
            calls[..=i]
                .iter()
                .filter(|c| calls[i].at.duration_since(c.at) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let job_attempts: u64 = views
        .iter()
        .map(|v| v["attempts"].as_u64().unwrap_or(0))
        .sum();
    println!(
        "airtable storm: {STORM_REQUESTS} R1 requests in {:.1} s; {} Airtable calls ({:.2}/s), {failed_5xx} answered 5xx ({:.0} %), {injected_429} injected 429, {} rate-limit 429; client-level retries {} ({failed_run_upserts} of them Run upserts); job attempts {job_attempts} (job-level retries {}); max accepted in one second {}, max sent in one second {max_sent_per_second}",
        elapsed.as_secs_f64(),
        calls.len(),
        calls.len() as f64 / elapsed.as_secs_f64(),
        100.0 * failed_5xx as f64 / calls.len().max(1) as f64,
        fake.count_429(),
        failed_5xx + injected_429 + fake.count_429(),
        job_attempts - STORM_REQUESTS as u64,
        fake.max_rate_seen(),
    );

    for v in &views {
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    assert!(
        failed_5xx > 0 && injected_429 > 0,
        "the storm really happened ({failed_5xx} 5xx, {injected_429} 429)"
    );
    assert!(
        fake.max_rate_seen() <= 5,
        "{} requests in one second",
        fake.max_rate_seen()
    );
    // The client paces at 5/s less 5 % (coach_store's rate.rs), so a 429 from the fake's own limit
    // only happens when a sender wakes late and lands next to the following one. On this 2-core
    // machine that was measured at 0 per run when quiet and 1-3 per ~180 calls with a load average
    // near 6 (other builds running): the budget below tolerates that jitter and still fails at
    // once if pacing were lost (dozens of refusals then).
    assert!(
        fake.count_429() * 20 <= calls.len(),
        "{} of {} calls refused by the rate limit: the client is not pacing",
        fake.count_429(),
        calls.len()
    );

    // Every request Done, linked to its own Run; exactly one Run per request.
    let runs: Vec<tables::Run> = w.all().await;
    assert_eq!(
        runs.len(),
        STORM_REQUESTS,
        "one Run per request, no duplicates"
    );
    let keys: HashSet<_> = runs.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), STORM_REQUESTS);
    let linked: HashSet<_> = runs.iter().map(|r| r.run_request.clone()).collect();
    assert_eq!(
        linked.len(),
        STORM_REQUESTS,
        "each Run links a different request"
    );
    for id in &request_ids {
        let request: tables::RunRequest = w.record(id).await;
        assert_eq!(request.status, Some(tables::RunRequestStatus::Done), "{id}");
        assert_eq!(request.run.len(), 1, "{id}");
        let run = runs.iter().find(|r| r.id == request.run[0]).unwrap();
        assert_eq!(run.status, Some(tables::RunStatus::Succeeded));
        assert_eq!(run.run_request, vec![id.clone()]);
        assert_eq!(run.gate1_passed, Some(true));
    }
    assert_eq!(
        w.records(tables::RUN_REQUESTS).await.len(),
        STORM_REQUESTS,
        "no request written twice"
    );
    assert_eq!(
        w.records(tables::TRANSCRIPTS).await.len(),
        transcripts.len()
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAI faults (SQLite store, provider openai through the fake)
// ---------------------------------------------------------------------------------------------

/// Short client waits so that every retry costs milliseconds; `max_retries` is the default (4).
fn quick_openai(c: &mut OpenAiConfig) {
    c.timeout = Duration::from_millis(400);
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(20);
    c.max_retries = 4;
}

#[tokio::test]
async fn openai_timeouts_are_retried_by_the_client_and_the_run_succeeds() {
    let w = world(3, quick_openai).start().await;
    w.openai()
        .push_n(2, Scripted::Delay(Duration::from_millis(1500)));
    let (run, request_id, _) = w.one_r1().await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempts"], 1, "absorbed inside one job attempt");
    assert_eq!(
        w.openai().request_count().await,
        3,
        "two timed out, one answered"
    );
    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
}

#[tokio::test]
async fn openai_429_waits_for_retry_after_ms_then_succeeds() {
    let w = world(3, quick_openai).start().await;
    w.openai().push_n(
        2,
        Scripted::RateLimited {
            retry_after_ms: 400,
        },
    );
    let (run, request_id, took) = w.one_r1().await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempts"], 1);
    assert_eq!(w.openai().request_count().await, 3);
    // The backoff alone is at most 2 × 20 ms; only honouring the hint takes 800 ms.
    assert!(
        took >= Duration::from_millis(800),
        "the client did not wait as retry-after-ms asked: {took:?}"
    );
    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
}

#[tokio::test]
async fn openai_5xx_a_few_times_then_succeeds() {
    let w = world(3, quick_openai).start().await;
    w.openai().push(Scripted::Unavailable);
    w.openai().push(Scripted::Status(500));
    w.openai().push(Scripted::Status(502));
    let (run, request_id, _) = w.one_r1().await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempts"], 1);
    assert_eq!(w.openai().request_count().await, 4);
    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
    let run: tables::Run = w.record(&request.run[0]).await;
    assert_eq!(run.status, Some(tables::RunStatus::Succeeded));
}

#[tokio::test]
async fn openai_insufficient_quota_fails_fast_with_a_clear_error_on_run_and_request() {
    // Many attempts allowed: the failure must still be final on the first.
    let w = world(8, quick_openai).start().await;
    w.openai().push_n(5, Scripted::InsufficientQuota);
    let (run, request_id, took) = w.one_r1().await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["attempts"], 1, "not retried: {run}");
    assert_eq!(run["error"]["code"], "OPENAI_INSUFFICIENT_QUOTA", "{run}");
    assert_eq!(
        w.openai().request_count().await,
        1,
        "one paid call, no retry"
    );
    assert!(took < Duration::from_secs(5), "fails fast: {took:?}");

    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Failed));
    let error = request.error.clone().unwrap_or_default();
    assert!(error.contains("OPENAI_INSUFFICIENT_QUOTA"), "{error}");
    assert!(
        error.contains("add credit"),
        "the error says what to do: {error}"
    );
    assert_eq!(request.run.len(), 1, "the failed Run is linked");
    let record: tables::Run = w.record(&request.run[0]).await;
    assert_eq!(record.status, Some(tables::RunStatus::Failed));
    assert_eq!(record.error.as_deref(), Some(error.as_str()));
    assert_eq!(record.run_request, vec![request_id]);
    assert_eq!(w.records(tables::RUNS).await.len(), 1);
}

#[tokio::test]
async fn three_answers_failing_gate1_fail_the_run_and_keep_the_report() {
    let w = world(3, quick_openai).start().await;
    w.openai().push_n(3, Scripted::InventedQuote);
    let (run, request_id, _) = w.one_r1().await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "GATE1_FAILED", "{run}");
    assert_eq!(
        run["attempts"], 1,
        "a Gate-1 failure is not retried by the job"
    );
    assert_eq!(
        w.openai().request_count().await,
        3,
        "the first answer and two repairs"
    );

    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Failed));
    assert!(
        request
            .error
            .as_deref()
            .is_some_and(|e| e.contains("GATE1_FAILED")),
        "{:?}",
        request.error
    );
    let record: tables::Run = w.record(&request.run[0]).await;
    assert_eq!(record.status, Some(tables::RunStatus::Failed));
    assert_ne!(record.gate1_passed, Some(true));
    let report = record.gate1_report.clone().unwrap_or_default();
    assert!(!report.is_empty(), "the Run carries the Gate-1 report");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["passed"], false, "{report}");
    assert!(
        report.to_string().contains("/patterns/0/evidence/0"),
        "the report points at the invented quote: {report}"
    );
}

#[tokio::test]
async fn openai_rate_limit_window_beyond_the_client_wait_reschedules_the_job_after_the_window() {
    // A short window stands for OpenAI's `6m0s`: longer than the client sleeps in place (200 ms
    // here, 120 s by default), so the job scheduler holds the job until the window resets.
    let w = world(3, |c| {
        quick_openai(c);
        c.max_retry_after = Duration::from_millis(200);
    })
    .start()
    .await;
    w.openai().push(Scripted::RateLimitWindow {
        reset_requests: "1.5s".into(),
        reset_tokens: "0s".into(),
    });
    let (run, request_id, took) = w.one_r1().await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["attempts"], 2,
        "one attempt hit the window, the next passed: {run}"
    );
    assert_eq!(
        w.openai().request_count().await,
        2,
        "one refused call, one answered; no quick retries into the closed window"
    );
    // The job backoff alone is 20–40 ms; only the window's reset makes the job wait 1.5 s.
    assert!(
        took >= Duration::from_millis(1500),
        "the job ran again before the window reset: {took:?}"
    );
    let request: tables::RunRequest = w.record(&request_id).await;
    assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
}

#[tokio::test]
async fn openai_unreadable_answers_fail_the_job_after_two_calls_in_all() {
    // Many job attempts allowed: a body the client cannot read is deterministic, so it must not
    // be retried by the job (the client already tried once more).
    let w = world(8, quick_openai).start().await;
    w.openai().push_n(20, Scripted::Unreadable);
    let (run, _, _) = w.one_r1().await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["attempts"], 1, "{run}");
    assert_eq!(run["error"]["code"], "OPENAI_BAD_RESPONSE", "{run}");
    assert_eq!(w.openai().request_count().await, 2);
}
