//! The service spine over HTTP: signatures, idempotency, errors, jobs and retries, with job kinds
//! defined here.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::http::StatusCode;
use coach_worker::error::ApiError;
use coach_worker::http::Hook;
use coach_worker::jobs::{JobContext, JobError, JobHandler, JobOutcome};
use coach_worker::journal::NewJob;
use coach_worker::startup::Registry;
use common::*;
use serde_json::{Value, json};

/// An asynchronous hook whose body must carry a `value`.
struct AsyncHook(&'static str);

#[async_trait::async_trait]
impl Hook for AsyncHook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        match body.get("value") {
            Some(v) => Ok(json!({ "value": v })),
            None => Err(
                ApiError::unprocessable("MISSING_FIELD", "`value` is required")
                    .with_details(json!({"pointer": "/value"})),
            ),
        }
    }
    fn job_kind(&self) -> Option<&str> {
        Some(self.0)
    }
}

/// A synchronous hook that counts how often it really ran.
struct SyncHook(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Hook for SyncHook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        Ok(body.clone())
    }
    fn job_kind(&self) -> Option<&str> {
        None
    }
    async fn respond(&self, _key: &str, payload: Value) -> Result<(StatusCode, Value), ApiError> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        if payload.get("reject").is_some() {
            return Err(ApiError::unprocessable("REJECTED", "asked to reject"));
        }
        Ok((StatusCode::CREATED, json!({ "created": n })))
    }
}

/// Echoes its payload; chains a `child` job when asked.
struct Echo(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl JobHandler for Echo {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let mut follow_ups = Vec::new();
        if ctx.job.payload["value"] == "chain" {
            let mut child = NewJob::new("echo", "child", json!({"value": "child"}));
            child.parent_id = Some(ctx.job.id.clone());
            follow_ups.push(child);
        }
        Ok(JobOutcome {
            result: json!({ "echo": ctx.job.payload["value"] }),
            follow_ups,
        })
    }
}

/// Fails transiently until its third attempt.
struct Flaky;

#[async_trait::async_trait]
impl JobHandler for Flaky {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, JobError> {
        if ctx.job.attempts < 3 {
            return Err(JobError::transient("UPSTREAM_503", "upstream unavailable"));
        }
        Ok(JobOutcome {
            result: json!({"attempts": ctx.job.attempts}),
            follow_ups: vec![],
        })
    }
}

/// Always fails for good; records that `on_failed` ran.
struct Broken(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl JobHandler for Broken {
    async fn run(&self, _ctx: &JobContext) -> Result<JobOutcome, JobError> {
        Err(JobError::permanent("BAD_INPUT", "the input is wrong"))
    }
    async fn on_failed(&self, _ctx: &JobContext, error: &JobError) -> Option<Value> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Some(json!({"written_error": error.code}))
    }
}

struct Counters {
    echo: Arc<AtomicUsize>,
    sync: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

fn registry() -> (Registry, Counters) {
    let counters = Counters {
        echo: Arc::new(AtomicUsize::new(0)),
        sync: Arc::new(AtomicUsize::new(0)),
        failed: Arc::new(AtomicUsize::new(0)),
    };
    let mut registry = Registry::empty();
    registry
        .hooks
        .insert("echo".into(), Arc::new(AsyncHook("echo")));
    registry
        .hooks
        .insert("flaky".into(), Arc::new(AsyncHook("flaky")));
    registry
        .hooks
        .insert("broken".into(), Arc::new(AsyncHook("broken")));
    registry
        .hooks
        .insert("sync".into(), Arc::new(SyncHook(counters.sync.clone())));
    registry
        .handlers
        .push(("echo".into(), Arc::new(Echo(counters.echo.clone()))));
    registry.handlers.push(("flaky".into(), Arc::new(Flaky)));
    registry
        .handlers
        .push(("broken".into(), Arc::new(Broken(counters.failed.clone()))));
    (registry, counters)
}

async fn spawn() -> (TestApp, Counters) {
    let (registry, counters) = registry();
    (spawn_app_with(registry, |_| {}).await, counters)
}

#[tokio::test]
async fn signed_delivery_is_accepted_and_its_job_runs() {
    let (app, counters) = spawn().await;
    let resp = app
        .post_signed("echo", "msg_1", &json!({"value": 42}))
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/v1/runs/{run_id}"));
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let run = app.wait_run(&run_id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["result"]["echo"], 42);
    assert_eq!(run["attempts"], 1);
    assert_eq!(counters.echo.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn make_scheme_delivery_is_accepted() {
    let (app, _) = spawn().await;
    let body = br#"{"value":"make"}"#.to_vec();
    let headers = make_headers(Some("make-1"), now(), &body);
    let resp = app.post_raw("echo", body, headers).await;
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn signature_failures_are_401_with_stable_codes() {
    let (app, counters) = spawn().await;
    let body = br#"{"value":1}"#.to_vec();
    type Case = (Vec<(String, String)>, Vec<u8>, &'static str);
    let cases: Vec<Case> = vec![
        (vec![], body.clone(), "SIGNATURE_MISSING"),
        (
            standard_headers("m", now(), b"{\"value\":2}"),
            body.clone(),
            "SIGNATURE_INVALID",
        ),
        (
            // Well past the 300 s tolerance: a clock second that ticks between signing and checking
            // must not bring a timestamp back inside it.
            standard_headers("m", now() - 330, &body),
            body.clone(),
            "SIGNATURE_STALE",
        ),
        (
            standard_headers("m", now() + 330, &body),
            body.clone(),
            "SIGNATURE_STALE",
        ),
        (
            vec![
                ("webhook-id".into(), "m".into()),
                ("webhook-timestamp".into(), now().to_string()),
                ("webhook-signature".into(), "v1,AAAA".into()),
            ],
            body.clone(),
            "SIGNATURE_INVALID",
        ),
        (
            vec![("webhook-signature".into(), "v1,AAAA".into())],
            body.clone(),
            "SIGNATURE_MALFORMED",
        ),
        (
            {
                // A Make signature made with a secret the worker does not know.
                let other =
                    coach_worker::webhook::Secret::parse("another-secret-entirely").unwrap();
                let ts = now();
                vec![
                    ("X-Coach-Timestamp".into(), ts.to_string()),
                    (
                        "X-Coach-Signature".into(),
                        coach_worker::webhook::signature::sign_make(&other, ts, &body),
                    ),
                ]
            },
            body.clone(),
            "SIGNATURE_INVALID",
        ),
    ];
    for (headers, body, code) in cases {
        let resp = app.post_raw("echo", body, headers).await;
        assert_eq!(resp.status(), 401, "{code}");
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["code"], code);
        assert!(json["error"]["message"].as_str().unwrap().len() > 20);
    }
    assert_eq!(
        app.journal.delivery_count().await.unwrap(),
        0,
        "nothing is journaled for a refused request"
    );
    assert_eq!(counters.echo.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_json_unknown_scenario_and_large_bodies_have_their_codes() {
    let (app, _) = spawn().await;
    let bad = b"{\"value\": tru}".to_vec();
    let resp = app
        .post_raw("echo", bad.clone(), standard_headers("j", now(), &bad))
        .await;
    assert_eq!(resp.status(), 400);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "INVALID_JSON");
    assert_eq!(json["error"]["details"]["line"], 1);
    assert!(json["error"]["details"]["position"].as_u64().unwrap() >= 10);

    let resp = app.post_signed("nope", "u", &json!({"value": 1})).await;
    assert_eq!(resp.status(), 404);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "UNKNOWN_SCENARIO");
    assert!(
        json["error"]["details"]["known"]
            .as_array()
            .unwrap()
            .contains(&json!("echo"))
    );

    let big = format!("{{\"value\":\"{}\"}}", "x".repeat(1_100_000)).into_bytes();
    let resp = app
        .post_raw("echo", big.clone(), standard_headers("big", now(), &big))
        .await;
    assert_eq!(resp.status(), 413);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "BODY_TOO_LARGE");

    let resp = app.post_signed("echo", "v", &json!({"other": 1})).await;
    assert_eq!(resp.status(), 422);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "MISSING_FIELD");
    assert_eq!(json["error"]["details"]["pointer"], "/value");
    assert_eq!(app.journal.delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn one_hundred_identical_deliveries_at_once_give_one_job_and_one_answer() {
    let (app, counters) = spawn().await;
    let body = serde_json::to_vec(&json!({"value": "same"})).unwrap();
    let headers = standard_headers("msg_same", now(), &body);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url, body, headers) = (
            app.client.clone(),
            format!("{}/v1/hooks/echo", app.address),
            body.clone(),
            headers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut req = client.post(url).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "all 100 answers are identical"
    );
    assert_eq!(answers[0].0, 202);
    let run_id = answers[0].1["run_id"].as_str().unwrap().to_owned();
    app.wait_run(&run_id).await;
    assert_eq!(app.journal.count_jobs(Default::default()).await.unwrap(), 1);
    assert_eq!(counters.echo.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idempotency_key_and_body_hash_deduplicate_and_a_reused_key_is_refused() {
    let (app, _) = spawn().await;
    // No delivery id: the body decides.
    let body = br#"{"value": 7}"#.to_vec();
    let first = app
        .post_raw("echo", body.clone(), make_headers(None, now(), &body))
        .await;
    let first_json: Value = first.json().await.unwrap();
    let again = br#"{ "value":7 }"#.to_vec();
    let second = app
        .post_raw("echo", again.clone(), make_headers(None, now(), &again))
        .await;
    assert_eq!(second.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(second.json::<Value>().await.unwrap(), first_json);

    // Same delivery id, different body.
    let r1 = app.post_signed("echo", "dup", &json!({"value": 1})).await;
    assert_eq!(r1.status(), 202);
    let r2 = app.post_signed("echo", "dup", &json!({"value": 2})).await;
    assert_eq!(r2.status(), 422);
    assert_eq!(
        r2.json::<Value>().await.unwrap()["error"]["code"],
        "IDEMPOTENCY_KEY_REUSED"
    );
}

#[tokio::test]
async fn synchronous_hooks_run_once_and_replay_their_answer_including_errors() {
    let (app, counters) = spawn().await;
    let a = app.post_signed("sync", "s1", &json!({"x": 1})).await;
    assert_eq!(a.status(), 201);
    let b = app.post_signed("sync", "s1", &json!({"x": 1})).await;
    assert_eq!(b.status(), 201);
    assert_eq!(b.json::<Value>().await.unwrap(), json!({"created": 1}));
    let c = app
        .post_signed("sync", "s2", &json!({"reject": true}))
        .await;
    assert_eq!(c.status(), 422);
    let d = app
        .post_signed("sync", "s2", &json!({"reject": true}))
        .await;
    assert_eq!(d.status(), 422);
    assert_eq!(
        d.json::<Value>().await.unwrap()["error"]["code"],
        "REJECTED"
    );
    assert_eq!(counters.sync.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn transient_errors_retry_with_backoff_and_permanent_ones_fail_at_once() {
    let (app, counters) = spawn().await;
    let resp: Value = app
        .post_signed("flaky", "f", &json!({"value": 1}))
        .await
        .json()
        .await
        .unwrap();
    let run = app.wait_run(resp["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempts"], 3);

    let resp: Value = app
        .post_signed("broken", "b", &json!({"value": 1}))
        .await
        .json()
        .await
        .unwrap();
    let run = app.wait_run(resp["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["error"]["code"], "BAD_INPUT");
    assert_eq!(run["result"]["written_error"], "BAD_INPUT");
    assert_eq!(counters.failed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn chained_jobs_show_as_follow_ups() {
    let (app, counters) = spawn().await;
    let resp: Value = app
        .post_signed("echo", "c", &json!({"value": "chain"}))
        .await
        .json()
        .await
        .unwrap();
    let run_id = resp["run_id"].as_str().unwrap();
    app.wait_run(run_id).await;
    app.run_until_idle().await;
    let (_, run) = app.get_json(&format!("/v1/runs/{run_id}")).await;
    let child = run["follow_ups"][0].clone();
    assert_eq!(child["status"], "succeeded");
    assert_eq!(counters.echo.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_run_is_404_and_health_endpoints_answer() {
    let (app, _) = spawn().await;
    let (status, body) = app.get_json("/v1/runs/run_missing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "RUN_NOT_FOUND");
    assert_eq!(app.get_json("/healthz").await.0, 200);
    assert_eq!(app.get_json("/readyz").await.0, 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("jobs{state=\"queued\"}"), "{metrics}");
}

#[tokio::test]
async fn journal_unavailable_is_503_with_retry_after() {
    let (app, _) = spawn().await;
    app.journal.close();
    let resp = app.post_signed("echo", "down", &json!({"value": 1})).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "JOURNAL_UNAVAILABLE"
    );
    assert_eq!(app.get_json("/readyz").await.0, 503);
}

#[tokio::test]
async fn paused_jobs_are_journaled_and_left_queued() {
    let (registry, counters) = registry();
    let app = spawn_app_with(registry, |c| c.pause_jobs = true).await;
    let resp: Value = app
        .post_signed("echo", "p1", &json!({"value": 1}))
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, run) = app
        .get_json(&format!("/v1/runs/{}", resp["run_id"].as_str().unwrap()))
        .await;
    assert_eq!(run["status"], "queued");
    assert_eq!(counters.echo.load(Ordering::SeqCst), 0);
}
