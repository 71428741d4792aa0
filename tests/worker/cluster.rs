//! Several instances of the real binary on one Postgres journal and one Airtable fake (5
//! requests/s, 429 above it):
//! - chaos: three instances, R1 deliveries round-robin with repeats sent to other instances, five
//!   `kill -9`s of a random instance, each restarted on its port; every Run Request ends `Done` with
//!   one Run, one attempt event per (experiment, run), every acknowledged delivery journaled, never
//!   more than 5 requests in any second at the fake, never two poller leaders;
//! - deploy: SIGTERM one of two instances under a steady load that a load balancer moves to the
//!   other; every delivery acknowledged by one of them, every run run once, a clean exit.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coach_store::fake::FakeAirtable;
use coach_store::tables::{self, EventType, ExperimentStatus, TableRecord};
use coach_store::{Fields, Store};
use common::instances::{
    Instance, most_in_any_second, poller_leader, poller_lock_holders, post_to, sql_client,
    tightest_span, wait_new_poller_leader,
};
use common::postgres::PgCluster;
use common::world::{COACHEE, follow_ups, sample_text};
use rand::Rng;
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
                user: vec![common::rid(&user)],
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
                    user: vec![common::rid(&user)],
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
        user: vec![common::rid(user)],
        transcript: vec![common::rid(transcript)],
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
    let deadline = Instant::now() + Duration::from_secs(480);
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
    if most > 5 {
        // The gaps (ms) around the fullest second, to tell a bunched burst from a slow drift.
        let start = (0..times.len())
            .find(|&i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < Duration::from_secs(1))
                    .count()
                    == most
            })
            .unwrap_or(0);
        let gaps: Vec<u128> = times[start..]
            .windows(2)
            .take(most + 2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        panic!(
            "{most} requests within one second at the Airtable fake (limit 5), across all \
             instances; gaps from the first of them in ms: {gaps:?}; 429s: {}",
            fake.count_429()
        );
    }
    assert_eq!(fake.count_429(), 0, "no request was refused with 429");
}

/// Starts `instance` and returns its incarnation (the row it added to the journal's `instances`).
async fn start_and_name(instance: &mut Instance, db: &tokio_postgres::Client) -> String {
    let known = incarnations(db).await;
    instance.start().await;
    let new: Vec<String> = incarnations(db).await.difference(&known).cloned().collect();
    assert_eq!(new.len(), 1, "one new incarnation per start: {new:?}");
    new[0].clone()
}

/// The incarnations in the journal's `instances` (none before the first start has migrated it).
async fn incarnations(db: &tokio_postgres::Client) -> HashSet<String> {
    match db.query("SELECT incarnation FROM instances", &[]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => HashSet::new(),
    }
}

/// Three instances, one Postgres, one Airtable fake; R1 deliveries round-robin, every fourth one
/// also sent (concurrently) to the next instance, five `kill -9`s (the first of the poller's leader,
/// the others of a random instance) each followed by its restart on the same port and settings.
/// The poller's leadership is read from `pg_locks` every 100 ms: never two holders, and another
/// session holds it after its holder was killed.
///
/// **Count: 300 Run Requests, as the issue asks.** Airtable's 5 requests/s is a limit on the base,
/// so the three instances together get ≈ 4.2 requests/s (the shared pacer spaces slots 240 ms
/// apart). Alone, an R1 with its D1 costs 7 calls (5 for the coachee without an experiment; see
/// `scenarios::one_r1_with_its_d1_makes_exactly_the_calls_the_work_needs`): ≈ 6.3 a request here
/// plus the poller's list every 2 s, which was ≈ 7.5 measured (447 calls for 60 requests) and
/// would make 300 requests take ≈ 9 minutes. With eight jobs per instance, the calls of jobs that
/// wait for a slot together leave as one request (`coach_store`'s batching: up to 10 records per
/// read or write), and the poller reads one page per poll: measured 2.3 to 2.8 calls a request
/// (681 and 829 calls for 300, of which ≈ 0.5/s are the poller's), 165 to 200 s at 4.2 calls/s,
/// which includes the lease period (30 s) after which the jobs a kill cut off are taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_three_instances_kill_9_five_times_every_request_done_once_airtable_paced() {
    const REQUESTS: usize = 300;
    const INSTANCES: usize = 3;
    const KILLS: usize = 5;
    let pg = PgCluster::start();
    let url = pg.create_database("chaos");
    let fake = Arc::new(FakeAirtable::start().await);
    common::install_tls();
    let store = Store::airtable(fake.config()).unwrap();
    let mut coachees = Vec::new();
    for n in 0..3 {
        coachees.push(seed_coachee(&fake, &store, n, n < 2).await);
    }
    drop(store);

    // The poller polls every 2 s (so its leadership changes hands when its holder dies); the Run
    // Requests are created just before their delivery, so most are started by deliveries.
    // Eight jobs at once per instance (the product's default): the calls of jobs that wait for the
    // shared pacer together leave as one request.
    let mut instances: Vec<Instance> = (0..INSTANCES)
        .map(|_| {
            let mut i = Instance::new(&fake, &url, 2);
            i.set("COACH_MAX_CONCURRENCY", "8");
            i
        })
        .collect();
    let db = sql_client(&url).await;
    let mut incarnation = Vec::new();
    for (n, i) in instances.iter_mut().enumerate() {
        incarnation.push(start_and_name(i, &db).await);
        if n == 0 {
            // The first instance leads the poller before the others start, so the first kill
            // knows whom to kill to see the leadership move.
            assert!(
                wait_new_poller_leader(&db, None, Duration::from_secs(10))
                    .await
                    .is_some(),
                "the first instance leads the poller"
            );
        }
    }
    let bases: Vec<String> = instances.iter().map(|i| i.base()).collect();
    // Seeding went through this process's own limiter; count only the instances' requests.
    fake.reset_counters();

    // Samples the poller's leadership while the test runs.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (url, sampling) = (url.clone(), sampling.clone());
        tokio::spawn(async move {
            let db = sql_client(&url).await;
            let (mut most, mut held) = (0, 0);
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let n = poller_lock_holders(&db).await;
                most = most.max(n);
                held += usize::from(n == 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (most, held)
        })
    };

    // The deliveries, one every 100 ms, with repeats to another instance at the same moment.
    let sender = {
        let (bases, fake, coachees) = (bases.clone(), fake.clone(), coachees.clone());
        let client = common::client();
        tokio::spawn(async move {
            let mut acknowledged: Vec<(String, String)> = Vec::new();
            let mut requests = Vec::new();
            for i in 0..REQUESTS {
                let (user, transcripts, _) = &coachees[i % coachees.len()];
                let request =
                    run_request(&fake, &format!("chaos:{i}"), user, &transcripts[i / 3 % 3]);
                requests.push(request.clone());
                let body = json!({ "run_request_id": request });
                let id = format!("chaos-{i}");
                let first = i % INSTANCES;
                if i % 4 == 0 {
                    let (a, b) = tokio::join!(
                        deliver(&client, &bases, first, &id, &body),
                        deliver(&client, &bases, (first + 1) % INSTANCES, &id, &body)
                    );
                    let (a, b) = (a.expect("delivered"), b.expect("delivered"));
                    assert_eq!(
                        a.1["run_id"], b.1["run_id"],
                        "one delivery id, one answer, whichever instance took it"
                    );
                    acknowledged.push((id.clone(), a.1["run_id"].as_str().unwrap().to_owned()));
                } else {
                    let (_, answer) = deliver(&client, &bases, first, &id, &body)
                        .await
                        .expect("delivered");
                    acknowledged.push((id, answer["run_id"].as_str().unwrap().to_owned()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (acknowledged, requests)
        })
    };

    let started = Instant::now();
    // Five kills at random moments while deliveries arrive and jobs run.
    let mut rng = rand::rng();
    let mut cut_off = 0;
    let mut leader_moved = false;
    for round in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..6000))).await;
        // The first kill is the poller's leader; the others a random instance.
        let victim = if round == 0 {
            0
        } else {
            rng.random_range(0..INSTANCES)
        };
        let leader = poller_leader(&db).await;
        let running: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND lease_owner = $1",
                &[&incarnation[victim]],
            )
            .await
            .unwrap()
            .get(0);
        instances[victim].kill9();
        cut_off += running;
        if round == 0 {
            // Another session takes the lock once the dead leader's session is gone (the
            // survivors ask every poll interval, 2 s).
            leader_moved = wait_new_poller_leader(&db, leader, Duration::from_secs(15))
                .await
                .is_some();
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
        incarnation[victim] = start_and_name(&mut instances[victim], &db).await;
    }
    let (acknowledged, requests) = sender.await.unwrap();
    assert_eq!(acknowledged.len(), REQUESTS);
    assert_eq!(requests.len(), REQUESTS);

    wait_all_done(&fake, &db, REQUESTS).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (most_leaders, samples_led) = sampler.await.unwrap();
    let open_leaders = poller_lock_holders(&db).await;
    for i in &mut instances {
        i.kill9();
    }

    assert_one_run_per_request(&fake, REQUESTS);

    // One attempt event per (experiment, run) for the coachees with an experiment.
    let runs = fake.records(tables::RUNS);
    let events: Vec<tables::ExperimentEvent> = fake
        .records(tables::EXPERIMENT_EVENTS)
        .into_iter()
        .map(|r| tables::ExperimentEvent::from_record(&r).unwrap())
        .filter(|e| e.event_type == Some(EventType::Attempt))
        .collect();
    let mut pairs = HashSet::new();
    for e in &events {
        assert!(
            pairs.insert((e.experiment.clone(), e.run.clone())),
            "a second attempt event for {:?}",
            (&e.experiment, &e.run)
        );
    }
    let with_experiment: HashSet<&str> = coachees
        .iter()
        .filter(|c| c.2.is_some())
        .map(|c| c.0.as_str())
        .collect();
    let runs_with_experiment = runs
        .iter()
        .filter(|r| {
            r.fields["User"]
                .as_array()
                .is_some_and(|u| with_experiment.contains(u[0].as_str().unwrap()))
        })
        .count();
    assert!(runs_with_experiment > 0);
    assert_eq!(
        events.len(),
        runs_with_experiment,
        "one attempt event per run of a coachee with an active experiment"
    );

    // Every acknowledged delivery is in the journal and names the job it answered with.
    for (id, run_id) in &acknowledged {
        let key = format!("r1:{id}");
        let row = db
            .query_opt(
                "SELECT response_status, job_id FROM deliveries WHERE key = $1",
                &[&key],
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged delivery {id} is not in the journal"));
        let status: Option<i32> = row.get(0);
        let job: Option<String> = row.get(1);
        assert_eq!(status, Some(202), "delivery {id}");
        assert_eq!(job.as_deref(), Some(run_id.as_str()), "delivery {id}");
    }
    // One R1 job per request: neither a repeat nor the poller made a second one.
    let duplicated: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM (SELECT dedupe_key FROM jobs WHERE kind = 'single'
               GROUP BY dedupe_key HAVING COUNT(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(duplicated, 0, "no Run Request got two R1 jobs");

    assert_paced(&fake);
    assert!(
        most_leaders <= 1,
        "{most_leaders} instances held the poller's lock at once"
    );
    assert!(samples_led > 0, "an instance led the poller");
    assert_eq!(open_leaders, 1, "a poller leads after the kills");
    assert!(
        leader_moved,
        "the poller's leadership moved when its holder was killed"
    );
    let times: Vec<Instant> = fake.requests().iter().map(|c| c.at).collect();
    eprintln!(
        "chaos: {REQUESTS} requests, {} Airtable calls ({:.2} per request; at most {} in one \
         second; six consecutive calls spanned at least {:?}) in {:?}; {cut_off} running jobs cut \
         off by the kills; poller lock held in {samples_led} samples, by at most {most_leaders} \
         session at once",
        fake.calls(),
        fake.calls() as f64 / REQUESTS as f64,
        most_in_any_second(&times),
        tightest_span(&times, 5),
        started.elapsed()
    );
    assert!(
        cut_off > 0,
        "the kills cut off running jobs (taken over when their leases expired)"
    );
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
    // The wait for A's exit blocks; the sender keeps sending from the other runtime thread.
    let exit = tokio::task::block_in_place(|| a.sigterm());
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

/// The pacing assertion's own measure.
#[test]
fn the_window_count_finds_the_fullest_second() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert_eq!(most_in_any_second(&[]), 0);
    assert_eq!(
        most_in_any_second(&[at(0), at(999), at(1000), at(1500), at(1999)]),
        3
    );
    assert_eq!(most_in_any_second(&[at(0), at(1000), at(2000)]), 1);
}
