//! Crash recovery with the real binary: acknowledged R1 deliveries survive `kill -9` while their jobs
//! run; after a restart every job finishes exactly once and the store holds one Run per request.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coach_store::tables::{self, TableRecord};
use coach_store::{ListQuery, Store};
use serde_json::{Value, json};

fn start(data_dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_coach-worker"))
        .arg("serve")
        .env("COACH_LISTEN", format!("127.0.0.1:{port}"))
        .env("COACH_DATA_DIR", data_dir)
        .env("COACH_WEBHOOK_SECRETS", common::SECRET)
        .env("COACH_POLL_INTERVAL_SECS", "0")
        .env("COACH_MAX_CONCURRENCY", "2")
        .env("RUST_LOG", "warn")
        .env_remove("AIRTABLE_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .env_remove("COACH_PROVIDER")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the worker")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("worker not ready");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn kill_9_while_jobs_run_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = common::client();

    // Seed the embedded store the worker will open.
    let store = Store::sqlite(&dir.path().join("store.db")).unwrap();
    let user = store
        .create(
            tables::USERS,
            vec![
                tables::User {
                    name: Some("Maya Chen".into()),
                    ..Default::default()
                }
                .to_fields(),
            ],
        )
        .await
        .unwrap()[0]
        .id
        .clone();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/transcripts/followup-2-one-on-one.txt"
    ))
    .unwrap();
    let transcript = store
        .create(
            tables::TRANSCRIPTS,
            vec![
                tables::Transcript {
                    title: Some("1:1".into()),
                    user: vec![user.clone()],
                    transcript: Some(text),
                    coachee_speaker: Some("Maya Chen".into()),
                    ..Default::default()
                }
                .to_fields(),
            ],
        )
        .await
        .unwrap()[0]
        .id
        .clone();
    const N: usize = 200;
    let mut requests = Vec::new();
    for i in 0..N {
        let r = tables::RunRequest {
            key: Some(format!("crash:{i}")),
            user: vec![user.clone()],
            transcript: vec![transcript.clone()],
            status: Some(tables::RunRequestStatus::Queued),
            ..Default::default()
        };
        requests.push(
            store
                .upsert(tables::RUN_REQUESTS, vec![r.to_fields()])
                .await
                .unwrap()[0]
                .id
                .clone(),
        );
    }

    let mut child = start(dir.path(), port);
    wait_ready(&client, &base).await;
    let mut run_ids = Vec::new();
    for (i, id) in requests.iter().enumerate() {
        let body = serde_json::to_vec(&json!({ "run_request_id": id })).unwrap();
        let mut req = client
            .post(format!("{base}/v1/hooks/r1"))
            .body(body.clone());
        for (k, v) in common::standard_headers(&format!("crash-{i}"), common::now(), &body) {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 202);
        run_ids.push(
            resp.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Kill it several times while the queue drains; the first kill must find work unfinished.
    let last: Value = client
        .get(format!("{base}/v1/runs/{}", run_ids[N - 1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        last["status"], "succeeded",
        "the kill must happen while jobs are pending"
    );
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(40 + round * 60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = start(dir.path(), port);
        wait_ready(&client, &base).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for run_id in &run_ids {
        loop {
            let run: Value = client
                .get(format!("{base}/v1/runs/{run_id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if run["status"] == "succeeded" {
                break;
            }
            assert_ne!(run["status"], "failed", "{run}");
            assert!(
                Instant::now() < deadline,
                "run {run_id} did not finish: {run}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let all_requests = store
        .list(tables::RUN_REQUESTS, &ListQuery::new())
        .await
        .unwrap();
    assert!(
        all_requests
            .iter()
            .all(|r| r.fields.get("Status") == Some(&json!("Done")))
    );
    let runs = store.list(tables::RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(runs.len(), N, "exactly one Run per request");
    let mut linked: Vec<&Value> = all_requests.iter().map(|r| &r.fields["Run"][0]).collect();
    linked.sort_by_key(|v| v.as_str().map(str::to_owned));
    linked.dedup();
    assert_eq!(linked.len(), N, "each request links its own Run");
}
