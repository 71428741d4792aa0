//! Test harness: starts a real worker on a random port and talks to it over HTTP with signed requests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use coach_worker::config::ServeConfig;
use coach_worker::journal::Journal;
use coach_worker::startup::{Application, Registry};
use coach_worker::webhook::{Secret, signature};
use serde_json::Value;

pub mod browser;
pub mod world;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const MAKE_SECRET: &str = "make-scenario-secret-0001";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub journal: Journal,
    pub data_dir: tempfile::TempDir,
}

/// Installs the TLS crypto provider, as the worker's `main` does; the libraries never install
/// one. Every test reaches it through [`test_config`] or [`client`] before building a client.
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

/// Starts a worker with the given scenarios; `tweak` adjusts the settings first.
pub async fn spawn_app_with(registry: Registry, tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path().to_path_buf());
    tweak(&mut config);
    let secrets = config.validate().unwrap();
    let journal = Journal::open(&config.journal_path()).unwrap();
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

    /// Polls a run until it is finished (succeeded, failed or cancelled).
    pub async fn wait_run(&self, run_id: &str) -> Value {
        for _ in 0..600 {
            let (_, run) = self.get_json(&format!("/v1/runs/{run_id}")).await;
            if matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run_id} did not finish");
    }
}
