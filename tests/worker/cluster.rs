//! Several instances of the real binary on one Postgres journal and one Airtable fake (5
//! requests/s, 429 above it):
//! - chaos: three instances, R1 deliveries round-robin with repeats sent to other instances, five
//!   `kill -9`s of a random instance, each restarted on its port; every Run Request ends `Done` with
//!   one Run, one attempt event per (experiment, run), every acknowledged delivery journaled, never
//!   more than 5 requests in any second at the fake, never two poller leaders;
//! - deploy: SIGTERM one of two instances under a steady load that a load balancer moves to the
//!   other; every delivery acknowledged by one of them, every run run once, a clean exit.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coach_store::fake::FakeAirtable;
use coach_store::tables::{self, ExperimentStatus, TableRecord};
use coach_store::{Fields, Store};
use common::instances::{Instance, most_in_any_second, post_to, sql_client};
use common::postgres::PgCluster;
use common::world::{COACHEE, follow_ups, sample_text};
use serde_json::{Value, json};

/// A coachee with the three follow-up transcripts and, when `experiment`, an active experiment
/// whose target is never reached (so every R1 of hers is followed by a D1 that records an attempt).
/// Returns the user, the transcripts and the experiment.
async fn seed_coachee(
    fake: &FakeAirtable,
    store: &Store,
    n: usize,
    experiment: bool,
) -> (String, Vec<String>, Option<String>) {
    let user = fake
        .insert(
            tables::USERS,
            tables::User {
                name: Some(format!("{COACHEE} {n}")),
                ..Default::default()
            }
            .to_fields(),
        )
        .id;
    let transcripts = follow_ups()
        .iter()
        .map(|s| {
            let t = tables::Transcript {
                title: Some(s.file.into()),
                user: vec![user.clone()],
                meeting_date: Some(s.date.into()),
                format: Some(s.format),
                transcript: Some(sample_text(s.file)),
                coachee_speaker: Some(COACHEE.into()),
                ..Default::default()
            };
            fake.insert(tables::TRANSCRIPTS, t.to_fields()).id
        })
        .collect();
    let mut experiment_id = None;
    if experiment {
        let id = fake
            .insert(
                tables::EXPERIMENTS,
                tables::Experiment {
                    key: Some(format!("hand:{user}")),
                    title: Some("Ask before answering".into()),
                    user: vec![user.clone()],
                    behavior: Some("Ask one open question before giving an answer".into()),
                    success_signal: Some("Others speak first".into()),
                    target_meetings: Some(100_000),
                    status: Some(ExperimentStatus::Active),
                    started_at: Some("2026-01-01T00:00:00.000Z".into()),
                    ..Default::default()
                }
                .to_fields(),
            )
            .id;
        let mut f = Fields::new();
        f.insert("Active Experiment".into(), json!([id]));
        store
            .update(tables::USERS, vec![(user.clone(), f)])
            .await
            .unwrap();
        experiment_id = Some(id);
    }
    (user, transcripts, experiment_id)
}

/// A queued Run Request inserted straight into the fake (no HTTP call, so it costs no rate budget).
fn run_request(fake: &FakeAirtable, key: &str, user: &str, transcript: &str) -> String {
    let r = tables::RunRequest {
        key: Some(key.into()),
        user: vec![user.into()],
        transcript: vec![transcript.into()],
        status: Some(tables::RunRequestStatus::Queued),
        source: Some(tables::RunRequestSource::Make),
        ..Default::default()
    };
    fake.insert(tables::RUN_REQUESTS, r.to_fields()).id
}

/// Sends a delivery to `bases[first]`; when that instance is down (connection refused, cut off, or
/// 503 while it stops), to the next one, as a load balancer would. `None` if no instance answered
/// with a success within the deadline.
async fn deliver(
    client: &reqwest::Client,
    bases: &[String],
    first: usize,
    id: &str,
    body: &Value,
) -> Option<(usize, Value)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut target = first;
    while Instant::now() < deadline {
        match post_to(client, &bases[target], "r1", id, body).await {
            Ok((202, answer)) => return Some((target, answer)),
            Ok((status, answer)) if status < 500 && status != 409 => {
                panic!("delivery {id} refused with {status}: {answer}")
            }
            _ => {
                target = (target + 1) % bases.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    None
}

/// Waits until every Run Request in the fake is `Done` and the journal has no unfinished job.
async fn wait_all_done(fake: &FakeAirtable, db: &tokio_postgres::Client, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let requests = fake.records(tables::RUN_REQUESTS);
        let done = requests
            .iter()
            .filter(|r| r.fields.get("Status") == Some(&json!("Done")))
            .count();
        let open: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if requests.len() == expected && done == expected && open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not finished: {done}/{expected} requests Done, {open} jobs open"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asserts one Run per request (each request links its own Run, every Run names its request).
fn assert_one_run_per_request(fake: &FakeAirtable, expected: usize) {
    let requests = fake.records(tables::RUN_REQUESTS);
    assert_eq!(requests.len(), expected);
    let runs = fake.records(tables::RUNS);
    assert_eq!(runs.len(), expected, "exactly one Run per Run Request");
    let mut by_request: HashMap<String, usize> = HashMap::new();
    for run in &runs {
        let request = run.fields["Run Request"][0].as_str().unwrap().to_owned();
        *by_request.entry(request).or_default() += 1;
    }
    for r in &requests {
        assert_eq!(r.fields["Status"], json!("Done"), "{r:?}");
        assert_eq!(
            by_request.get(&r.id),
            Some(&1),
            "request {} has exactly one Run",
            r.id
        );
        let linked = r.fields["Run"].as_array().unwrap();
        assert_eq!(linked.len(), 1, "request {} links one Run", r.id);
    }
}

/// Asserts the Airtable fake never saw more than 5 requests within one second, and no 429.
fn assert_paced(fake: &FakeAirtable) {
    let calls = fake.requests();
    let times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    let most = most_in_any_second(&times);
    assert!(
        most <= 5,
        "{most} requests within one second at the Airtable fake (limit 5), across all instances"
    );
    assert_eq!(fake.count_429(), 0, "no request was refused with 429");
}

/// Two instances serving; a steady load of distinct R1 deliveries alternating between them; SIGTERM
/// to A in the middle. Deliveries that A refuses or cannot take any more go to B, as a load balancer
/// would retry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_sigterm_one_of_two_every_delivery_acknowledged_and_run_once() {
    const REQUESTS: usize = 24;
    let pg = PgCluster::start();
    let url = pg.create_database("deploy");
    let fake = FakeAirtable::start().await;
    common::install_tls();
    let store = Store::airtable(fake.config()).unwrap();
    let (user, transcripts, _) = seed_coachee(&fake, &store, 0, false).await;
    drop(store);
    let requests: Vec<String> = (0..REQUESTS)
        .map(|i| run_request(&fake, &format!("deploy:{i}"), &user, &transcripts[i % 3]))
        .collect();

    let mut a = Instance::new(&fake, &url, 0);
    let mut b = Instance::new(&fake, &url, 0);
    a.start().await;
    b.start().await;
    let bases = vec![a.base(), b.base()];
    let db = sql_client(&url).await;
    fake.reset_counters();

    let sender = {
        let (bases, requests) = (bases.clone(), requests.clone());
        let client = common::client();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for (i, request) in requests.iter().enumerate() {
                let body = json!({ "run_request_id": request });
                let id = format!("deploy-{i}");
                let answer = deliver(&client, &bases, i % 2, &id, &body).await;
                let (by, answer) = answer.unwrap_or_else(|| panic!("{id} not acknowledged"));
                acknowledged.push((id, by, answer["run_id"].as_str().unwrap().to_owned()));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let exit = a.sigterm();
    assert!(
        exit.success(),
        "A exits 0 after draining: {exit:?}\n{}",
        a.log()
    );
    let acknowledged = sender.await.unwrap();

    assert_eq!(acknowledged.len(), REQUESTS, "every delivery acknowledged");
    let by_a = acknowledged.iter().filter(|(_, by, _)| *by == 0).count();
    assert!(
        by_a > 0 && by_a < REQUESTS / 2,
        "A took deliveries before the stop and none after ({by_a})"
    );

    wait_all_done(&fake, &db, REQUESTS).await;
    b.kill9();
    assert_one_run_per_request(&fake, REQUESTS);
    for (id, _, run_id) in &acknowledged {
        let key = format!("r1:{id}");
        let job: Option<String> = db
            .query_one("SELECT job_id FROM deliveries WHERE key = $1", &[&key])
            .await
            .unwrap_or_else(|e| panic!("delivery {id} is not in the journal: {e}"))
            .get(0);
        assert_eq!(job.as_deref(), Some(run_id.as_str()));
    }
    // Each job ran once: one job per request, one attempt each, and it succeeded.
    let rows = db
        .query(
            "SELECT j.dedupe_key, COUNT(DISTINCT j.id), COUNT(a.attempt), MIN(j.status)
               FROM jobs j LEFT JOIN job_attempts a ON a.job_id = j.id
              WHERE j.kind = 'single' GROUP BY j.dedupe_key",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), REQUESTS, "one job per Run Request");
    for row in rows {
        let (key, jobs, attempts, status): (Option<String>, i64, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            (jobs, attempts, status.as_str()),
            (1, 1, "succeeded"),
            "{key:?} ran once"
        );
    }
    assert_paced(&fake);
}
