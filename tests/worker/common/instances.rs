//! Several instances of the real binary (`coach-worker serve`) on one Postgres journal and one
//! Airtable fake, for the cluster suite: each instance keeps its port, data folder and settings
//! across `kill -9` and restarts, as a machine behind a load balancer would. Also the measures the
//! suite asserts on (requests in any one-second window, SQL against the shared journal).
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use coach_store::fake::{FAKE_TOKEN, FakeAirtable};
use serde_json::Value;

use super::{SECRET, client, now, standard_headers};

pub struct Instance {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub client: reqwest::Client,
}

impl Instance {
    /// An instance (not started) journaling in `database_url` with `fake` as its store. The poller
    /// runs every `poll_secs` (0: no poller).
    pub fn new(fake: &FakeAirtable, database_url: &str, poll_secs: u64) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Instance {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            env: vec![
                ("COACH_DATABASE_URL".into(), database_url.into()),
                ("COACH_POLL_INTERVAL_SECS".into(), poll_secs.to_string()),
                ("AIRTABLE_TOKEN".into(), FAKE_TOKEN.into()),
                ("AIRTABLE_BASE_ID".into(), fake.base_id().into()),
                ("AIRTABLE_API_URL".into(), fake.uri()),
                ("AIRTABLE_RATE_LIMIT_WAIT_SECS".into(), "1".into()),
            ],
            client: client(),
        }
    }

    /// Adds or replaces a setting for the next starts.
    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the binary and waits for `/readyz`.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "instance already running");
        let log = std::fs::File::create(self.dir.path().join("worker.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_coach-worker"));
        command
            .arg("serve")
            .env("COACH_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("COACH_DATA_DIR", self.dir.path())
            .env("COACH_WEBHOOK_SECRETS", SECRET)
            .env("COACH_MAX_CONCURRENCY", "2")
            .env("COACH_DRAIN_SECS", "15")
            .env("RUST_LOG", "warn")
            .env_remove("OPENAI_API_KEY")
            .env_remove("COACH_PROVIDER")
            .env_remove("COACH_PAUSE_JOBS")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("start the worker"));
        let ready = super::until_ready(
            &self.client,
            &self.base(),
            Duration::from_secs(30),
            Duration::from_millis(50),
        )
        .await;
        if !ready {
            panic!("instance on port {} not ready:\n{}", self.port, self.log());
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }

    /// What the instance wrote to stderr (its warnings), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A signed delivery (Standard Webhooks, delivery id `id`) to the instance at `base`.
pub async fn post_to(
    client: &reqwest::Client,
    base: &str,
    scenario: &str,
    id: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = client
        .post(format!("{base}/v1/hooks/{scenario}"))
        .body(bytes.clone());
    for (k, v) in standard_headers(id, now(), &bytes) {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The largest number of `times` inside any window of one second (a window starting at each time:
/// the fullest window of any start begins at some request).
pub fn most_in_any_second(times: &[Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut end = 0;
    for start in 0..sorted.len() {
        while end < sorted.len() && sorted[end] - sorted[start] < Duration::from_secs(1) {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

/// The shortest time that `limit + 1` consecutive `times` span: the margin a pacer kept under
/// "`limit` in any second" (under one second, the limit was broken). `None` with fewer times.
pub fn tightest_span(times: &[Instant], limit: usize) -> Option<Duration> {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.windows(limit + 1).map(|w| w[limit] - w[0]).min()
}

/// A connection to the shared journal's database, for the test's own queries.
pub async fn sql_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    client
}

/// How many sessions hold the poller's advisory lock now (`pg_locks` shows a bigint advisory key
/// as its high half in `classid` and its low half in `objid`, with `objsubid` 1).
pub async fn poller_lock_holders(db: &tokio_postgres::Client) -> i64 {
    let key = coach_worker::journal::postgres::POLLER_LOCK;
    db.query_one(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND classid::text::bigint = $1 AND objid::text::bigint = $2 AND objsubid = 1",
        &[&(key >> 32), &(key & 0xffff_ffff)],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}

/// The server process id of the session holding the poller's advisory lock, if any.
pub async fn poller_leader(db: &tokio_postgres::Client) -> Option<i32> {
    let key = coach_worker::journal::postgres::POLLER_LOCK;
    db.query_opt(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND classid::text::bigint = $1 AND objid::text::bigint = $2 AND objsubid = 1",
        &[&(key >> 32), &(key & 0xffff_ffff)],
    )
    .await
    .ok()
    .flatten()
    .map(|r| r.get(0))
}

/// Waits (up to `limit`) for a session other than `old` to hold the poller's lock.
pub async fn wait_new_poller_leader(
    db: &tokio_postgres::Client,
    old: Option<i32>,
    limit: Duration,
) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(pid) = poller_leader(db).await
            && Some(pid) != old
        {
            return Some(pid);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
