//! Crash and shutdown behaviour of the real binary on the embedded store:
//! - acknowledged R1 deliveries survive `kill -9` at random moments (10 times); after restarts every
//!   request is Done with exactly one Run;
//! - baseline builds (A1 → A2 → E1) killed mid-way end with one Run, one Experiment and one
//!   `instantiated` event per pack;
//! - SIGTERM under load loses no acknowledged delivery;
//! - synchronous A1 deliveries cut off by `kill -9` are answered on their retries after the restart
//!   (no delivery id stays "in progress"), with one pack per delivery id;
//! - SIGTERM with slow requests in flight and long jobs running: one deadline for both, no job
//!   claimed after the signal, nothing acknowledged lost.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coach_store::fake::{FAKE_TOKEN, FakeAirtable};
use coach_store::tables::{self, TableRecord};
use coach_store::{ListQuery, Store};
use rand::Rng;
use serde_json::{Value, json};

struct Worker {
    child: Option<Child>,
    /// Start with `COACH_PAUSE_JOBS`: deliveries are journaled, nothing runs until a start without it.
    paused: bool,
    port: u16,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    /// Settings added to the defaults (e.g. the Airtable fake as the store).
    env: Vec<(String, String)>,
}

impl Worker {
    fn new() -> Worker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Worker {
            child: None,
            paused: false,
            port,
            dir: tempfile::tempdir().unwrap(),
            client: common::client(),
            env: Vec::new(),
        }
    }

    /// A worker whose store is the Airtable fake (paced by the worker at 5 requests/s, as the
    /// real base, and answering 429 above that).
    fn on_airtable(fake: &FakeAirtable) -> Worker {
        let mut w = Worker::new();
        w.env = vec![
            ("AIRTABLE_TOKEN".into(), FAKE_TOKEN.into()),
            ("AIRTABLE_BASE_ID".into(), fake.base_id().into()),
            ("AIRTABLE_API_URL".into(), fake.uri()),
            ("AIRTABLE_RATE_LIMIT_WAIT_SECS".into(), "1".into()),
        ];
        w
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn store(&self) -> Store {
        Store::sqlite(&self.dir.path().join("store.db")).unwrap()
    }

    async fn start(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_coach-worker"));
        command
            .arg("serve")
            .env("COACH_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("COACH_DATA_DIR", self.dir.path())
            .env("COACH_WEBHOOK_SECRETS", common::SECRET)
            .env("COACH_POLL_INTERVAL_SECS", "0")
            .env("COACH_MAX_CONCURRENCY", "2")
            .env("COACH_DRAIN_SECS", "10")
            .env("COACH_PAUSE_JOBS", self.paused.to_string())
            .env("RUST_LOG", "warn")
            .env_remove("AIRTABLE_TOKEN")
            .env_remove("OPENAI_API_KEY")
            .env_remove("COACH_PROVIDER")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start the worker");
        self.child = Some(child);
        let ready = common::until_ready(
            &self.client,
            &self.base(),
            Duration::from_secs(20),
            Duration::from_millis(10),
        )
        .await;
        assert!(ready, "worker not ready");
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }

    async fn post(
        &self,
        scenario: &str,
        id: &str,
        body: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let bytes = serde_json::to_vec(body).unwrap();
        let mut req = self
            .client
            .post(format!("{}/v1/hooks/{scenario}", self.base()))
            .body(bytes.clone());
        for (k, v) in common::standard_headers(id, common::now(), &bytes) {
            req = req.header(k, v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn run(&self, run_id: &str) -> Value {
        self.client
            .get(format!("{}/v1/runs/{run_id}", self.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits for runs (and what they chained) to succeed.
    async fn wait_succeeded(&self, run_ids: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut pending: Vec<String> = run_ids.to_vec();
        while let Some(id) = pending.pop() {
            loop {
                let run = self.run(&id).await;
                assert_ne!(run["status"], "failed", "{run}");
                if run["status"] == "succeeded" {
                    for f in run["follow_ups"].as_array().into_iter().flatten() {
                        pending.push(f["run_id"].as_str().unwrap().to_owned());
                    }
                    break;
                }
                assert!(Instant::now() < deadline, "run {id} did not finish: {run}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/samples/transcripts/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn seed_user(store: &Store, name: &str) -> String {
    store
        .create(
            tables::USERS,
            vec![
                tables::User {
                    name: Some(name.into()),
                    ..Default::default()
                }
                .to_fields(),
            ],
        )
        .await
        .unwrap()[0]
        .id
        .clone()
}

async fn seed_transcript(store: &Store, user: &str, file: &str, date: &str) -> String {
    let t = tables::Transcript {
        title: Some(file.into()),
        user: vec![common::rid(user)],
        meeting_date: Some(date.into()),
        transcript: Some(sample(file)),
        coachee_speaker: Some("Maya Chen".into()),
        ..Default::default()
    };
    store
        .create(tables::TRANSCRIPTS, vec![t.to_fields()])
        .await
        .unwrap()[0]
        .id
        .clone()
}

#[tokio::test]
async fn crash_loop_kill_9_ten_times_every_request_done_exactly_once() {
    let mut w = Worker::new();
    let store = w.store();
    let user = seed_user(&store, "Maya Chen").await;
    let transcript =
        seed_transcript(&store, &user, "followup-2-one-on-one.txt", "2099-01-01").await;
    const N: usize = 200;
    let mut requests = Vec::new();
    for i in 0..N {
        let r = tables::RunRequest {
            key: Some(format!("crash:{i}")),
            user: vec![common::rid(&user)],
            transcript: vec![common::rid(&transcript)],
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

    w.paused = true;
    w.start().await;
    let mut run_ids = Vec::new();
    for (i, id) in requests.iter().enumerate() {
        let (status, body) = w
            .post(
                "r1",
                &format!("crash-{i}"),
                &json!({ "run_request_id": id }),
            )
            .await
            .unwrap();
        assert_eq!(status, 202);
        run_ids.push(body["run_id"].as_str().unwrap().to_owned());
    }
    // Everything was acknowledged while jobs were paused: the first kill finds all 200 pending, and the
    // next ones land while the restarted worker works through them.
    assert_eq!(w.run(&run_ids[N - 1]).await["status"], "queued");
    w.kill9();
    w.paused = false;
    w.start().await;
    let mut rng = rand::rng();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..120))).await;
        if round == 0 {
            let last = w.run(&run_ids[N - 1]).await;
            assert_ne!(
                last["status"], "succeeded",
                "the first running kill must find work pending"
            );
        }
        w.kill9();
        w.start().await;
    }
    w.wait_succeeded(&run_ids).await;
    w.kill9();

    let all = store
        .list(tables::RUN_REQUESTS, &ListQuery::new())
        .await
        .unwrap();
    assert!(
        all.iter()
            .all(|r| r.fields.get("Status") == Some(&json!("Done")))
    );
    let runs = store.list(tables::RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(runs.len(), N, "exactly one Run per request");
    let mut linked: Vec<String> = all
        .iter()
        .map(|r| r.fields["Run"][0].as_str().unwrap().to_owned())
        .collect();
    linked.sort();
    linked.dedup();
    assert_eq!(linked.len(), N, "each request links its own Run");
}

#[tokio::test]
async fn baseline_builds_killed_mid_way_leave_one_run_experiment_and_event_per_pack() {
    let mut w = Worker::new();
    let store = w.store();
    const PACKS: usize = 12;
    let mut bodies = Vec::new();
    for p in 0..PACKS {
        let user = seed_user(&store, &format!("Maya Chen {p}")).await;
        let mut ids = Vec::new();
        for (file, date) in [
            ("baseline-1-sprint-planning.vtt", "2026-10-01"),
            ("baseline-2-incident-review.srt", "2026-10-08"),
            ("baseline-3-roadmap-sync.md", "2026-10-15"),
        ] {
            ids.push(seed_transcript(&store, &user, file, date).await);
        }
        bodies.push(json!({ "user_id": user, "transcript_ids": ids, "build": true }));
    }
    w.paused = true;
    w.start().await;
    let mut run_ids = Vec::new();
    for (p, body) in bodies.iter().enumerate() {
        let (status, answer) = w.post("a1", &format!("pack-{p}"), body).await.unwrap();
        assert_eq!(status, 201, "{answer}");
        run_ids.push(answer["run_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(w.run(&run_ids[PACKS - 1]).await["status"], "queued");
    w.kill9();
    w.paused = false;
    w.start().await;
    for delay in [10, 40, 25] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        w.kill9();
        w.start().await;
    }
    // A repeated A1 delivery after the crash: the same answer, no second pack.
    let (status, _) = w.post("a1", "pack-0", &bodies[0]).await.unwrap();
    assert_eq!(status, 201);
    w.wait_succeeded(&run_ids).await;
    w.kill9();

    let packs = store
        .list(tables::BASELINE_PACKS, &ListQuery::new())
        .await
        .unwrap();
    assert_eq!(packs.len(), PACKS);
    assert!(
        packs
            .iter()
            .all(|p| p.fields.get("Status") == Some(&json!("Ready")))
    );
    let runs = store.list(tables::RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(runs.len(), PACKS, "one Run per pack");
    assert_eq!(
        store
            .list(tables::EXPERIMENTS, &ListQuery::new())
            .await
            .unwrap()
            .len(),
        PACKS,
        "one Experiment per baseline run"
    );
    let events = store
        .list(tables::EXPERIMENT_EVENTS, &ListQuery::new())
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        PACKS,
        "one instantiated event per baseline run"
    );
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_delivery() {
    let mut w = Worker::new();
    let store = w.store();
    let user = seed_user(&store, "Maya Chen").await;
    let transcript =
        seed_transcript(&store, &user, "followup-1-design-review.json", "2099-01-01").await;
    // More requests than the senders can deliver before the SIGTERM, so the stop lands under load.
    const REQUESTS: usize = 3000;
    let mut requests = Vec::new();
    for chunk in (0..REQUESTS).collect::<Vec<_>>().chunks(100) {
        let batch = chunk
            .iter()
            .map(|i| {
                tables::RunRequest {
                    key: Some(format!("term:{i}")),
                    user: vec![common::rid(&user)],
                    transcript: vec![common::rid(&transcript)],
                    status: Some(tables::RunRequestStatus::Queued),
                    ..Default::default()
                }
                .to_fields()
            })
            .collect();
        requests.extend(
            store
                .upsert(tables::RUN_REQUESTS, batch)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id),
        );
    }
    w.start().await;

    // Four senders deliver as fast as they can; SIGTERM arrives in the middle.
    let w = std::sync::Arc::new(tokio::sync::Mutex::new(w));
    let (base, client) = {
        let g = w.lock().await;
        (g.base(), g.client.clone())
    };
    let mut senders = Vec::new();
    for s in 0..4 {
        let (base, client, requests) = (base.clone(), client.clone(), requests.clone());
        senders.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for (i, id) in requests.iter().enumerate().filter(|(i, _)| i % 4 == s) {
                let bytes = serde_json::to_vec(&json!({ "run_request_id": id })).unwrap();
                let mut req = client
                    .post(format!("{base}/v1/hooks/r1"))
                    .body(bytes.clone());
                for (k, v) in common::standard_headers(&format!("term-{i}"), common::now(), &bytes)
                {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(resp) if resp.status() == 202 => {
                        let body: Value = resp.json().await.unwrap();
                        acknowledged.push(body["run_id"].as_str().unwrap().to_owned());
                    }
                    // Refused or cut off during shutdown: not acknowledged, the sender would retry.
                    _ => {}
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let exit = w.lock().await.sigterm();
    assert!(exit.success(), "a SIGTERM stop exits cleanly: {exit:?}");
    let mut acknowledged = Vec::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < REQUESTS,
        "the stop happened under load ({} acknowledged)",
        acknowledged.len()
    );

    let mut w = std::sync::Arc::try_unwrap(w)
        .ok()
        .expect("only owner")
        .into_inner();
    w.start().await;
    for id in &acknowledged {
        let run = w.run(id).await;
        assert!(
            run["run_id"] == json!(id),
            "acknowledged delivery {id} is in the journal: {run}"
        );
    }
    w.wait_succeeded(&acknowledged).await;
    let runs = store.list(tables::RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(
        runs.len(),
        acknowledged.len(),
        "one Run per acknowledged delivery"
    );
}

/// A user named `name` and the three baseline sample transcripts (coachee "Maya Chen") in the fake
/// base: the user's id and the transcripts' ids.
async fn seed_baseline(fake: &FakeAirtable, name: &str) -> (String, Vec<String>) {
    let user = fake
        .insert(
            tables::USERS,
            tables::User {
                name: Some(name.to_owned()),
                ..Default::default()
            }
            .to_fields(),
        )
        .id;
    let mut ids = Vec::new();
    for (file, date) in [
        ("baseline-1-sprint-planning.vtt", "2026-10-01"),
        ("baseline-2-incident-review.srt", "2026-10-08"),
        ("baseline-3-roadmap-sync.md", "2026-10-15"),
    ] {
        let t = tables::Transcript {
            title: Some(file.into()),
            user: vec![common::rid(&user)],
            meeting_date: Some(date.into()),
            transcript: Some(sample(file)),
            coachee_speaker: Some("Maya Chen".into()),
            ..Default::default()
        };
        ids.push(fake.insert(tables::TRANSCRIPTS, t.to_fields()).id);
    }
    (user, ids)
}

#[tokio::test]
async fn a1_deliveries_cut_off_by_kill_9_are_answered_on_retry_with_one_pack_each() {
    let fake = FakeAirtable::start().await;
    const PACKS: usize = 12;
    let mut bodies = Vec::new();
    for p in 0..PACKS {
        let (user, ids) = seed_baseline(&fake, &format!("Maya Chen {p}")).await;
        bodies.push(json!({ "user_id": user, "transcript_ids": ids }));
    }
    let mut w = Worker::on_airtable(&fake);
    w.start().await;
    fake.reset_counters();

    // All twelve at once: each needs five Airtable calls, so at 5 calls/s most are still working
    // when the process is killed.
    let mut in_flight = Vec::new();
    for (p, body) in bodies.iter().enumerate() {
        let (base, client, body) = (w.base(), w.client.clone(), body.clone());
        in_flight.push(tokio::spawn(async move {
            post_to(&client, &base, "a1", &format!("pack-{p}"), &body).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.calls() < 6 {
        assert!(
            Instant::now() < deadline,
            "the A1 deliveries never reached Airtable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.kill9();
    let mut answered_before = 0;
    for task in in_flight {
        if task.await.unwrap().is_ok_and(|(status, _)| status == 201) {
            answered_before += 1;
        }
    }
    assert!(
        answered_before < PACKS,
        "the kill must cut deliveries off mid-way"
    );

    // Make's retries after the restart: each id ends with its final answer, not 409 for ever.
    w.start().await;
    let mut retries = Vec::new();
    for (p, body) in bodies.iter().enumerate() {
        let (base, client, body) = (w.base(), w.client.clone(), body.clone());
        retries.push(tokio::spawn(async move {
            let id = format!("pack-{p}");
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let answer = post_to(&client, &base, "a1", &id, &body).await;
                match answer {
                    Ok((201, body)) => return body,
                    Ok((409 | 503, _)) | Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    other => {
                        panic!("delivery {id} has no final answer after the restart: {other:?}")
                    }
                }
            }
        }));
    }
    let mut pack_ids = Vec::new();
    for task in retries {
        let answer = task.await.unwrap();
        pack_ids.push(answer["baseline_pack_id"].as_str().unwrap().to_owned());
    }
    // A further repeat is answered from the journal with the same pack.
    let (status, again) = w.post("a1", "pack-0", &bodies[0]).await.unwrap();
    assert_eq!(status, 201);
    assert_eq!(again["baseline_pack_id"], json!(pack_ids[0]));
    w.kill9();

    let packs = fake.records(tables::BASELINE_PACKS);
    let mut keys: Vec<String> = packs
        .iter()
        .map(|p| p.fields["Key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), PACKS, "a pack for every delivery id");
    assert_eq!(packs.len(), PACKS, "exactly one pack per delivery id");
    for id in &pack_ids {
        assert!(
            packs.iter().any(|p| &p.id == id),
            "the answer names the pack that exists ({id})"
        );
    }
}

/// A signed delivery to a worker at `base` (for concurrent senders that do not hold the worker).
async fn post_to(
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
    for (k, v) in common::standard_headers(id, common::now(), &bytes) {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn sigterm_drains_requests_and_jobs_under_one_deadline() {
    const DRAIN_SECS: u64 = 4;
    const REQUESTS: usize = 8;
    // Concurrent A1s' calls that wait for the rate limiter together leave as one request of up to
    // 10 records, so it takes this many for their calls to outlast the drain.
    const PACKS: usize = 80;
    let fake = FakeAirtable::start().await;
    let (user, transcripts) = seed_baseline(&fake, "Maya Chen").await;
    let mut requests = Vec::new();
    for i in 0..REQUESTS {
        let r = tables::RunRequest {
            key: Some(format!("term:{i}")),
            user: vec![common::rid(&user)],
            transcript: vec![common::rid(&transcripts[i % 3])],
            status: Some(tables::RunRequestStatus::Queued),
            ..Default::default()
        };
        requests.push(fake.insert(tables::RUN_REQUESTS, r.to_fields()).id);
    }
    let mut w = Worker::on_airtable(&fake);
    w.env
        .push(("COACH_DRAIN_SECS".into(), DRAIN_SECS.to_string()));
    w.start().await;

    // R1 jobs (each a dozen Airtable calls at 5/s, so long) and, on top, A1 deliveries that are
    // answered only after their own Airtable calls: slow requests in flight at the signal.
    let mut run_ids = Vec::new();
    for (i, id) in requests.iter().enumerate() {
        let (status, body) = w
            .post(
                "r1",
                &format!("term-r1-{i}"),
                &json!({ "run_request_id": id }),
            )
            .await
            .unwrap();
        assert_eq!(status, 202);
        run_ids.push(body["run_id"].as_str().unwrap().to_owned());
    }
    let a1 = json!({ "user_id": user, "transcript_ids": transcripts });
    let mut in_flight = Vec::new();
    for p in 0..PACKS {
        let (base, client, body) = (w.base(), w.client.clone(), a1.clone());
        in_flight.push(tokio::spawn(async move {
            post_to(&client, &base, "a1", &format!("term-a1-{p}"), &body).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled_at = coach_worker::journal::now_ms();
    let signalled = Instant::now();
    let exit = w.sigterm();
    let took = signalled.elapsed();
    assert!(exit.success(), "a SIGTERM stop exits cleanly: {exit:?}");
    assert!(
        took <= Duration::from_secs(DRAIN_SECS + 1),
        "requests and jobs drain under one deadline of {DRAIN_SECS} s; the exit took {took:?}"
    );
    let mut cut_off = Vec::new();
    for (p, task) in in_flight.into_iter().enumerate() {
        if !task.await.unwrap().is_ok_and(|(status, _)| status == 201) {
            cut_off.push(p);
        }
    }
    assert!(
        !cut_off.is_empty(),
        "the signal found A1 requests in flight"
    );

    // No job was claimed after the signal (a little slack for a claim already under way).
    let journal = coach_worker::journal::Journal::open(&w.dir.path().join("journal.db")).unwrap();
    let late = journal
        .call(move |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM job_attempts WHERE started_at > ?1",
                [signalled_at + 200],
                |r| r.get::<_, i64>(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(late, 0, "the runner stops claiming at the signal");
    drop(journal);

    // Nothing acknowledged is lost: every 202 runs to its end after the restart, and the A1s cut
    // off are answered on their retries.
    w.start().await;
    let retries: Vec<_> = cut_off
        .into_iter()
        .map(|p| {
            let (base, client, body) = (w.base(), w.client.clone(), a1.clone());
            tokio::spawn(async move {
                let sent = post_to(&client, &base, "a1", &format!("term-a1-{p}"), &body).await;
                (p, sent)
            })
        })
        .collect();
    for retry in retries {
        let (p, sent) = retry.await.unwrap();
        let (status, answer) = sent.unwrap();
        assert_eq!(status, 201, "A1 {p} after the restart: {answer}");
    }
    w.wait_succeeded(&run_ids).await;
    w.kill9();
    assert_eq!(
        fake.records(tables::RUNS).len(),
        REQUESTS,
        "one Run per acknowledged R1"
    );
    assert_eq!(fake.records(tables::BASELINE_PACKS).len(), PACKS);
}
