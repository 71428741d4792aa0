//! Test harness: starts a real worker on a random port and talks to it over HTTP with signed requests.
//!
//! Waiting for the worker's jobs is driven by the runner, not by a clock: the harness holds the
//! runner's settle signal (`RunnerHandle::settled`, which changes each time a job task ends) and
//! re-checks what it waits for after each change ([`TestApp::until`]), up to [`WAIT_LIMIT`].
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use coach_worker::config::ServeConfig;
use coach_worker::jobs::RunnerHandle;
use coach_worker::journal::{JobFilter, JobStatus, Journal, now_ms};
use coach_worker::startup::{Application, BackgroundTask, Registry};
use coach_worker::webhook::{Secret, signature};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

pub mod browser;
pub mod instances;
pub mod postgres;
pub mod world;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const MAKE_SECRET: &str = "make-scenario-secret-0001";

/// How long a test waits for the worker's jobs at most: far beyond what any suite needs, so
/// reaching it means a hang, and the wait fails saying what it waited for.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub journal: Journal,
    pub data_dir: tempfile::TempDir,
    /// The runner's settle signal; `None` until the worker runs.
    pub settled: Option<watch::Receiver<u64>>,
}

/// Installs the TLS crypto provider, as the worker's `main` does; the libraries never install
/// one. Every test reaches it through [`test_config`] or [`client`] before building a client.
/// A record id the test knows is well formed (links of typed records are `RecordId`s).
pub fn rid(id: &str) -> coach_store::RecordId {
    coach_store::RecordId::parse(id).expect("a well-formed record id")
}

pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Default settings for a test worker: random port, fast retries, both secrets.
pub fn test_config(data_dir: PathBuf) -> ServeConfig {
    install_tls();
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: ServeConfig,
    }
    let mut config = Wrapper::parse_from(["test"]).config;
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir;
    config.webhook_secrets = vec![SECRET.into(), MAKE_SECRET.into()];
    config.retry_base_ms = 20;
    config.max_attempts = 3;
    config.poll_interval_secs = 0;
    config
}

pub fn client() -> reqwest::Client {
    install_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Adds a background task that hands the runner's settle signal to the test once the worker runs:
/// the harness reaches the runner the way the poller does, so `Application` needs no test accessor.
/// Asks `{base}/readyz` every `every` until it answers 2xx (true) or `within` has passed (false):
/// how a test waits for a worker it started as a child process.
pub async fn until_ready(
    client: &reqwest::Client,
    base: &str,
    within: std::time::Duration,
    every: std::time::Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

pub fn tap_runner(registry: &mut Registry) -> oneshot::Receiver<watch::Receiver<u64>> {
    let (tx, rx) = oneshot::channel();
    let task: BackgroundTask = Box::new(move |runner: RunnerHandle, _stop| {
        let _ = tx.send(runner.settled());
        Box::pin(async { Ok(()) })
    });
    registry.background.push(task);
    rx
}

/// Starts a worker with the given scenarios; `tweak` adjusts the settings first.
pub async fn spawn_app_with(
    mut registry: Registry,
    tweak: impl FnOnce(&mut ServeConfig),
) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path().to_path_buf());
    tweak(&mut config);
    let secrets = config.validate().unwrap();
    let journal = Journal::open(&config.journal_path()).unwrap();
    let tap = tap_runner(&mut registry);
    let app = Application::build_with(&config, secrets, journal.clone(), registry)
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: client(),
        journal,
        data_dir,
        settled: Some(tap.await.expect("the worker starts its background tasks")),
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Standard Webhooks headers for a body.
pub fn standard_headers(id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let secret = Secret::parse(SECRET).unwrap();
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        (
            "webhook-signature".into(),
            signature::sign_standard(&secret, id, timestamp, body).unwrap(),
        ),
    ]
}

/// Make-scheme headers for a body.
pub fn make_headers(delivery: Option<&str>, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let secret = Secret::parse(MAKE_SECRET).unwrap();
    let mut headers = vec![
        ("X-Coach-Timestamp".into(), timestamp.to_string()),
        (
            "X-Coach-Signature".into(),
            signature::sign_make(&secret, timestamp, body),
        ),
    ];
    if let Some(d) = delivery {
        headers.push(("X-Coach-Delivery".into(), d.into()));
    }
    headers
}

impl TestApp {
    pub async fn post_raw(
        &self,
        scenario: &str,
        body: Vec<u8>,
        headers: Vec<(String, String)>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/v1/hooks/{scenario}", self.address))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    }

    /// Posts a body signed with the Standard Webhooks scheme under delivery id `id`.
    pub async fn post_signed(&self, scenario: &str, id: &str, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).unwrap();
        let headers = standard_headers(id, now(), &bytes);
        self.post_raw(scenario, bytes, headers).await
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until a run is finished (succeeded, failed or cancelled).
    pub async fn wait_run(&self, run_id: &str) -> Value {
        self.until(WAIT_LIMIT, async || {
            let (_, run) = self.get_json(&format!("/v1/runs/{run_id}")).await;
            matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
            .then_some(run)
        })
        .await
        .unwrap_or_else(|| panic!("run {run_id} did not finish within {WAIT_LIMIT:?}"))
    }

    /// Checks `done` now and again each time a job task of the worker ends, until it gives a value;
    /// `None` when `limit` passes first (the caller says what did not happen). For what the worker's
    /// jobs bring about: nothing else wakes the wait.
    pub async fn until<T>(
        &self,
        limit: Duration,
        mut done: impl AsyncFnMut() -> Option<T>,
    ) -> Option<T> {
        let mut settled = self.settled.clone().expect("the worker is running");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Marked seen before the check, so a job ending between the check and the wait still
            // wakes the wait.
            settled.borrow_and_update();
            if let Some(value) = done().await {
                return Some(value);
            }
            match tokio::time::timeout_at(deadline, settled.changed()).await {
                Ok(Ok(())) => {}
                // Out of time, or the runner is gone and nothing changes any more: a last look.
                Ok(Err(_)) | Err(_) => return done().await,
            }
        }
    }

    /// Runs the worker until it is idle: no job running, and none queued or waiting for a retry
    /// that falls due within [`WAIT_LIMIT`] (a job parked further ahead does not count). A paused
    /// worker never gets there.
    pub async fn run_until_idle(&self) {
        let horizon = now_ms() + WAIT_LIMIT.as_millis() as i64;
        let mut busy = Vec::new();
        let idle = self
            .until(WAIT_LIMIT, async || {
                busy = self.busy_jobs(horizon).await;
                busy.is_empty().then_some(())
            })
            .await;
        if idle.is_none() {
            panic!("the worker was not idle within {WAIT_LIMIT:?}; still to run: {busy:#?}");
        }
    }

    /// The jobs that are running or fall due before `horizon` (ms since the epoch).
    async fn busy_jobs(&self, horizon: i64) -> Vec<String> {
        let pending = JobFilter {
            statuses: vec![
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::RetryScheduled,
            ],
            ..Default::default()
        };
        self.journal
            .list_jobs(pending, 1_000, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| {
                j.status == JobStatus::Running || j.next_attempt_at.is_none_or(|at| at <= horizon)
            })
            .map(|j| format!("{} ({}, {})", j.id, j.kind, j.status.as_str()))
            .collect()
    }
}
