//! The journal conformance suite: every contract test is written once and run against both
//! backends — the embedded SQLite file and Postgres (a throwaway cluster started by the test, see
//! `common/postgres.rs`). Then the Postgres-only tests: two journal handles on one database behave as
//! two instances of the worker (claims, leases, reservations, locks, the poller, the shared pacer).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::postgres::PgCluster;
use coach_worker::journal::retention::Retention;
use coach_worker::journal::{
    DeliveryOutcome, JobFilter, JobStatus, Journal, NewAudit, NewDelivery, NewJob, now_ms,
};
use serde_json::{Value, json};

const DAY: i64 = 24 * 60 * 60 * 1000;

/// Where a test's journal lives; opens handles on it.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PgCluster),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Backend {
        Backend::Postgres(PgCluster::start())
    }

    async fn open(&self) -> Journal {
        match self {
            Backend::Sqlite(dir) => Journal::open(&dir.path().join("journal.db")).unwrap(),
            Backend::Postgres(cluster) => Journal::connect(&cluster.url()).await.unwrap(),
        }
    }

    /// The handle of the next process after `old` stopped.
    async fn restart(&self, old: Journal) -> Journal {
        assert!(old.shutdown(Duration::from_secs(10)).await);
        drop(old);
        self.open().await
    }
}

fn delivery(key: &str, hash: &str) -> NewDelivery {
    NewDelivery {
        key: key.into(),
        scenario: "r1".into(),
        body_hash: hash.into(),
        body: json!({ "key": key }).to_string(),
    }
}

fn job(dedupe: Option<&str>) -> NewJob {
    let mut job = NewJob::new("single", "r1", json!({ "run_request_id": "recA" }));
    job.dedupe_key = dedupe.map(str::to_owned);
    job.delivery_key = Some(String::new());
    job.request_id = Some("req-1".into());
    job
}

fn answer(id: &str) -> String {
    json!({ "run_id": id, "status": "queued" }).to_string()
}

async fn accept(j: &Journal, key: &str, hash: &str, dedupe: Option<&str>) -> DeliveryOutcome {
    j.accept_delivery(delivery(key, hash), job(dedupe), 202, answer)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The contract, once.
// ---------------------------------------------------------------------------------------------

async fn a_delivery_is_journaled_once_and_answered_the_same_again(b: &Backend) {
    let j = b.open().await;
    assert_eq!(accept(&j, "r1:d1", "h1", None).await, DeliveryOutcome::New);
    let again = accept(&j, "r1:d1", "h1", None).await;
    let DeliveryOutcome::Replayed { status, body } = again else {
        panic!("a repeat is replayed: {again:?}");
    };
    assert_eq!(status, 202);
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        accept(&j, "r1:d1", "other", None).await,
        DeliveryOutcome::KeyReused
    );
    assert_eq!(j.delivery_count().await.unwrap(), 1);
    let job = j.get_job(run_id.clone()).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.delivery_key.as_deref(), Some("r1:d1"));
    let d = j.delivery_for_job(run_id).await.unwrap().unwrap();
    assert_eq!((d.key.as_str(), d.response_status), ("r1:d1", Some(202)));
    assert_eq!(d.body, json!({ "key": "r1:d1" }));
    assert_eq!(j.count_jobs(JobFilter::default()).await.unwrap(), 1);
}

async fn concurrent_identical_deliveries_give_one_job_and_one_answer(b: &Backend) {
    let j = b.open().await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            accept(&j, "r1:same", "h", Some("r1:recA")).await
        }));
    }
    let mut new = 0;
    let mut answers = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            DeliveryOutcome::New => new += 1,
            DeliveryOutcome::Replayed { body, .. } => {
                answers.insert(body["run_id"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(new, 1);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(j.count_jobs(JobFilter::default()).await.unwrap(), 1);
    assert_eq!(j.delivery_count().await.unwrap(), 1);
}

/// Deliveries arriving together are journaled together (on Postgres, by multi-row statements):
/// each still answers as if journaled one after the other — repeats of a key share its answer,
/// deliveries with one active dedupe key share its job, distinct ones get a job each.
async fn a_burst_of_deliveries_answers_as_one_by_one(b: &Backend) {
    let j = b.open().await;
    let mut tasks = Vec::new();
    for i in 0..90 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            let (kind, key, dedupe) = match i % 3 {
                0 => ("distinct", format!("r1:burst-{i}"), format!("r1:rec{i}")),
                1 => (
                    "same key",
                    "r1:burst-same".to_owned(),
                    "r1:recSame".to_owned(),
                ),
                _ => (
                    "shared job",
                    format!("r1:burst-{i}"),
                    "r1:recShared".to_owned(),
                ),
            };
            (kind, accept(&j, &key, "h", Some(&dedupe)).await)
        }));
    }
    let mut new: std::collections::HashMap<&str, usize> = Default::default();
    let mut answers: std::collections::HashMap<&str, HashSet<String>> = Default::default();
    for t in tasks {
        match t.await.unwrap() {
            (kind, DeliveryOutcome::New) => *new.entry(kind).or_default() += 1,
            (kind, DeliveryOutcome::Replayed { body, .. }) => {
                answers
                    .entry(kind)
                    .or_default()
                    .insert(body["run_id"].as_str().unwrap().to_owned());
            }
            (kind, other) => panic!("{kind}: unexpected {other:?}"),
        }
    }
    assert_eq!(new["distinct"], 30);
    assert!(!answers.contains_key("distinct"));
    for kind in ["same key", "shared job"] {
        assert_eq!(new[kind], 1, "{kind}");
        assert_eq!(answers[kind].len(), 1, "{kind}: one answer for all repeats");
    }
    assert_eq!(
        j.count_jobs(JobFilter::default()).await.unwrap(),
        30 + 1 + 1
    );
    assert_eq!(j.delivery_count().await.unwrap(), 30 + 1 + 30);
}

async fn an_active_dedupe_key_shares_its_job_and_a_finished_one_does_not(b: &Backend) {
    let j = b.open().await;
    assert_eq!(
        accept(&j, "r1:a", "h", Some("r1:recA")).await,
        DeliveryOutcome::New
    );
    let DeliveryOutcome::Replayed { body, .. } = accept(&j, "r1:b", "h", Some("r1:recA")).await
    else {
        panic!("a second delivery for an active key is answered with its job");
    };
    let first = body["run_id"].as_str().unwrap().to_owned();
    // The second delivery's own row names the shared job: its retry is answered the same.
    let DeliveryOutcome::Replayed { body, .. } = accept(&j, "r1:b", "h", Some("r1:recA")).await
    else {
        panic!("a retried delivery is answered again");
    };
    assert_eq!(body["run_id"], first.as_str());
    let (same, created) = j.enqueue(job(Some("r1:recA"))).await.unwrap();
    assert_eq!((same.as_str(), created), (first.as_str(), false));
    let (claimed, _) = j.claim_due(10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    j.complete_job(first.clone(), json!({}), vec![])
        .await
        .unwrap();
    assert!(
        j.succeeded_before("r1:recA".into(), "x".into())
            .await
            .unwrap()
    );
    let (next, created) = j.enqueue(job(Some("r1:recA"))).await.unwrap();
    assert!(created && next != first);
}

async fn a_reservation_is_in_progress_until_completed_or_released(b: &Backend) {
    let j = b.open().await;
    let d = || delivery("a1:x", "h");
    assert_eq!(j.reserve_delivery(d()).await.unwrap(), DeliveryOutcome::New);
    assert_eq!(
        j.reserve_delivery(d()).await.unwrap(),
        DeliveryOutcome::InProgress
    );
    j.complete_delivery("a1:x".into(), 201, json!({"ok": 1}))
        .await
        .unwrap();
    assert_eq!(
        j.reserve_delivery(d()).await.unwrap(),
        DeliveryOutcome::Replayed {
            status: 201,
            body: json!({"ok": 1})
        }
    );
    let e = || delivery("a1:y", "h");
    assert_eq!(j.reserve_delivery(e()).await.unwrap(), DeliveryOutcome::New);
    j.release_delivery("a1:y".into()).await.unwrap();
    assert_eq!(j.reserve_delivery(e()).await.unwrap(), DeliveryOutcome::New);
    // A guard's detached release is ordered before anything sent after it.
    j.release_delivery_detached("a1:y".into());
    assert_eq!(j.reserve_delivery(e()).await.unwrap(), DeliveryOutcome::New);
}

async fn reservations_of_a_stopped_process_are_released_at_the_next_start(b: &Backend) {
    let j = b.open().await;
    assert_eq!(
        j.reserve_delivery(delivery("a1:dead", "h")).await.unwrap(),
        DeliveryOutcome::New
    );
    let next = b.restart(j).await;
    assert_eq!(next.release_orphaned().await.unwrap(), 1);
    assert_eq!(
        next.reserve_delivery(delivery("a1:dead", "h"))
            .await
            .unwrap(),
        DeliveryOutcome::New
    );
    // Its own reservations are not orphans.
    assert_eq!(next.release_orphaned().await.unwrap(), 0);
}

async fn signed_content_is_decided_under_its_first_delivery_key(b: &Backend) {
    let j = b.open().await;
    let (outcome, key) = j
        .accept_signed_delivery(
            delivery("r1:k1", "h"),
            Some("r1:signed:abc".into()),
            job(None),
            202,
            answer,
        )
        .await
        .unwrap();
    assert_eq!((outcome, key.as_str()), (DeliveryOutcome::New, "r1:k1"));
    let (outcome, key) = j
        .accept_signed_delivery(
            delivery("r1:k2", "h"),
            Some("r1:signed:abc".into()),
            job(None),
            202,
            answer,
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        DeliveryOutcome::Replayed { status: 202, .. }
    ));
    assert_eq!(key, "r1:k1");
    // The synchronous variant.
    let (outcome, key) = j
        .reserve_signed_delivery(delivery("a1:k1", "h"), Some("a1:signed:def".into()))
        .await
        .unwrap();
    assert_eq!((outcome, key.as_str()), (DeliveryOutcome::New, "a1:k1"));
    let (outcome, key) = j
        .reserve_signed_delivery(delivery("a1:k2", "h"), Some("a1:signed:def".into()))
        .await
        .unwrap();
    assert_eq!(
        (outcome, key.as_str()),
        (DeliveryOutcome::InProgress, "a1:k1")
    );
    assert_eq!(j.count_jobs(JobFilter::default()).await.unwrap(), 1);
}

async fn a_job_goes_through_claim_retry_fail_and_its_attempts_are_kept(b: &Backend) {
    let j = b.open().await;
    let (id, created) = j.enqueue(job(None)).await.unwrap();
    assert!(created);
    let (claimed, next) = j.claim_due(5).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].status, claimed[0].attempts),
        (JobStatus::Running, 1)
    );
    assert_eq!(
        claimed[0].request_id.as_deref(),
        Some("req-1"),
        "the request id of the delivery that created the job is kept with it"
    );
    assert_eq!(next, None);
    assert!(
        !j.cancel_job(id.clone()).await.unwrap(),
        "a running job is not cancelled"
    );
    let later = now_ms() + 60_000;
    j.retry_job(id.clone(), json!({"code": "T"}), later)
        .await
        .unwrap();
    let (none, next) = j.claim_due(5).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(next, Some(later));
    j.retry_job(id.clone(), json!({"code": "ignored"}), 0)
        .await
        .unwrap();
    assert_eq!(
        j.get_job(id.clone()).await.unwrap().status,
        JobStatus::RetryScheduled
    );
    // Due again: make it due now through a requeue-free path (a retry at 0 is only accepted for a
    // running job, so schedule a new one and claim both).
    let (other, _) = j.enqueue(job(None)).await.unwrap();
    let (claimed, _) = j.claim_due(5).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, other);
    j.fail_job(
        other.clone(),
        json!({"code": "P"}),
        Some(json!({"partial": true})),
    )
    .await
    .unwrap();
    let failed = j.get_job(other.clone()).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.last_error, Some(json!({"code": "P"})));
    assert_eq!(failed.result, Some(json!({"partial": true})));
    assert!(failed.finished_at.is_some());
    let attempts = j.job_attempts(id.clone()).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("retry_scheduled"));
    assert_eq!(attempts[0].error, Some(json!({"code": "T"})));
    // The waiting job can be cancelled; a cancelled job is finished.
    assert!(j.cancel_job(id.clone()).await.unwrap());
    assert_eq!(j.get_job(id).await.unwrap().status, JobStatus::Cancelled);
    assert!(matches!(
        j.get_job("run_missing".into()).await,
        Err(coach_worker::journal::JournalError::NotFound(_))
    ));
}

async fn success_enqueues_follow_ups_atomically(b: &Backend) {
    let j = b.open().await;
    let (id, _) = j.enqueue(job(None)).await.unwrap();
    j.claim_due(1).await.unwrap();
    let mut child = NewJob::new("e1", "e1", json!({}));
    child.parent_id = Some(id.clone());
    j.complete_job(id.clone(), json!({"done": true}), vec![child])
        .await
        .unwrap();
    let done = j.get_job(id.clone()).await.unwrap();
    assert_eq!(
        (done.status, done.result),
        (JobStatus::Succeeded, Some(json!({"done": true})))
    );
    let children = j.child_jobs(id.clone()).await.unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].status, JobStatus::Queued);
    let attempts = j.job_attempts(id).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("succeeded"));
}

async fn requeued_jobs_do_not_count_the_interrupted_attempt(b: &Backend) {
    let j = b.open().await;
    let (a, _) = j.enqueue(job(None)).await.unwrap();
    let (c, _) = j.enqueue(job(None)).await.unwrap();
    j.claim_due(5).await.unwrap();
    assert_eq!(j.requeue_running(Some(vec![a.clone()])).await.unwrap(), 1);
    let requeued = j.get_job(a.clone()).await.unwrap();
    assert_eq!((requeued.status, requeued.attempts), (JobStatus::Queued, 0));
    let attempts = j.job_attempts(a).await.unwrap();
    assert_eq!(attempts[0].outcome.as_deref(), Some("interrupted"));
    assert_eq!(j.get_job(c).await.unwrap().status, JobStatus::Running);
}

async fn listings_are_newest_first_and_filtered(b: &Backend) {
    let j = b.open().await;
    let mut ids = Vec::new();
    for scenario in ["r1", "a2", "r1"] {
        let (id, _) = j
            .enqueue(NewJob::new("single", scenario, json!({})))
            .await
            .unwrap();
        ids.push(id);
    }
    let all = j.list_jobs(JobFilter::default(), 10, 0).await.unwrap();
    let listed: Vec<&str> = all.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        listed,
        vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );
    let r1 = JobFilter {
        scenario: Some("r1".into()),
        ..Default::default()
    };
    assert_eq!(j.count_jobs(r1.clone()).await.unwrap(), 2);
    let page = j.list_jobs(r1, 1, 1).await.unwrap();
    assert_eq!(page[0].id, ids[0]);
    let by_id = JobFilter {
        ids: vec![ids[1].clone()],
        statuses: vec![JobStatus::Queued, JobStatus::Running],
        since: Some(0),
        until: Some(now_ms() + 1000),
        ..Default::default()
    };
    assert_eq!(j.list_jobs(by_id.clone(), 10, 0).await.unwrap().len(), 1);
    assert_eq!(j.count_jobs(by_id).await.unwrap(), 1);
    j.claim_due(1).await.unwrap();
    let mut counts = j.job_counts().await.unwrap();
    counts.sort();
    assert_eq!(counts, vec![("queued".into(), 2), ("running".into(), 1)]);
}

async fn the_audit_log_lists_newest_first(b: &Backend) {
    let j = b.open().await;
    for action in ["replay", "cancel"] {
        j.audit(NewAudit {
            actor: "admin".into(),
            action: action.into(),
            target: Some("run_x".into()),
            count: 2,
            details: json!({"why": action}),
        })
        .await
        .unwrap();
    }
    let entries = j.audit_entries(10, 0).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].action, "cancel");
    assert!(entries[0].id > entries[1].id);
    assert_eq!(
        (entries[1].count, &entries[1].details),
        (2, &json!({"why": "replay"}))
    );
    assert_eq!(j.audit_entries(10, 1).await.unwrap().len(), 1);
}

async fn the_cache_serves_answers_younger_than_its_ttl(b: &Backend) {
    let j = b.open().await;
    assert_eq!(j.cache_get("k".into()).await.unwrap(), None);
    j.cache_put("k".into(), &json!({"a": 1})).await.unwrap();
    j.cache_put("k".into(), &json!({"a": 2})).await.unwrap();
    assert_eq!(
        j.cache_get("k".into()).await.unwrap(),
        Some(json!({"a": 2}))
    );
    j.set_cache_ttl(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(j.cache_get("k".into()).await.unwrap(), None);
}

async fn the_tally_starts_empty_once_and_is_replaced_whole(b: &Backend) {
    let j = b.open().await;
    assert_eq!(j.attempt_tally("recE".into()).await.unwrap(), None);
    j.start_attempt_tally("recE".into()).await.unwrap();
    assert_eq!(j.attempt_tally("recE".into()).await.unwrap(), Some(vec![]));
    j.set_attempt_tally(
        "recE".into(),
        vec!["recB".into(), "recA".into(), "recB".into()],
    )
    .await
    .unwrap();
    j.start_attempt_tally("recE".into()).await.unwrap();
    assert_eq!(
        j.attempt_tally("recE".into()).await.unwrap(),
        Some(vec!["recA".to_owned(), "recB".to_owned()])
    );
}

async fn the_sweep_deletes_finished_work_after_the_retention(b: &Backend) {
    let j = b.open().await;
    assert_eq!(
        accept(&j, "r1:old", "h", Some("r1:recOld")).await,
        DeliveryOutcome::New
    );
    let (claimed, _) = j.claim_due(1).await.unwrap();
    j.complete_job(claimed[0].id.clone(), json!({}), vec![])
        .await
        .unwrap();
    let (active, _) = j.enqueue(job(None)).await.unwrap();
    j.reserve_delivery(delivery("a1:open", "h")).await.unwrap();
    j.cache_put("k".into(), &json!(1)).await.unwrap();
    j.audit(NewAudit {
        actor: "a".into(),
        action: "x".into(),
        target: None,
        count: 0,
        details: json!({}),
    })
    .await
    .unwrap();
    let policy = Retention {
        batch: 1,
        pause: Duration::ZERO,
        ..Default::default()
    };
    let now = now_ms();
    assert_eq!(j.sweep(&policy, now + 6 * DAY).await.unwrap().rows(), 0);
    let counts = j.sweep(&policy, now + 31 * DAY).await.unwrap();
    assert_eq!(
        (counts.jobs, counts.deliveries, counts.cache, counts.audit),
        (1, 1, 1, 0),
        "{counts:?}"
    );
    assert!(j.get_job(claimed[0].id.clone()).await.is_err());
    assert!(
        j.succeeded_before("r1:recOld".into(), "x".into())
            .await
            .unwrap()
    );
    assert_eq!(j.get_job(active).await.unwrap().status, JobStatus::Queued);
    assert_eq!(
        j.delivery_count().await.unwrap(),
        1,
        "the open reservation stays"
    );
    assert_eq!(j.sweep(&policy, now + 61 * DAY).await.unwrap().audit, 1);
    assert!(j.size_on_disk().await.unwrap() > 0);
}

async fn replays_are_found_among_ids(b: &Backend) {
    let j = b.open().await;
    let (original, _) = j.enqueue(job(None)).await.unwrap();
    let mut replay = job(None);
    replay.replay_of = Some(original.clone());
    j.enqueue(replay).await.unwrap();
    let found = j
        .replayed_among(vec![original.clone(), "run_other".into()])
        .await
        .unwrap();
    assert_eq!(found, HashSet::from([original]));
}

async fn a_closed_journal_refuses_work_and_says_so(b: &Backend) {
    let j = b.open().await;
    j.ping().await.unwrap();
    assert!(j.is_alive());
    assert!(j.shutdown(Duration::from_secs(5)).await);
    assert!(!j.is_alive());
    let err = j.enqueue(job(None)).await.unwrap_err();
    assert_eq!(err.code(), "JOURNAL_UNAVAILABLE");
    assert!(j.ping().await.is_err());
}

/// Instantiates each contract test for both backends.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::postgres()).await;
                }
            )*
        }
    };
}

conformance!(
    a_delivery_is_journaled_once_and_answered_the_same_again,
    concurrent_identical_deliveries_give_one_job_and_one_answer,
    a_burst_of_deliveries_answers_as_one_by_one,
    an_active_dedupe_key_shares_its_job_and_a_finished_one_does_not,
    a_reservation_is_in_progress_until_completed_or_released,
    reservations_of_a_stopped_process_are_released_at_the_next_start,
    signed_content_is_decided_under_its_first_delivery_key,
    a_job_goes_through_claim_retry_fail_and_its_attempts_are_kept,
    success_enqueues_follow_ups_atomically,
    requeued_jobs_do_not_count_the_interrupted_attempt,
    listings_are_newest_first_and_filtered,
    the_audit_log_lists_newest_first,
    the_cache_serves_answers_younger_than_its_ttl,
    the_tally_starts_empty_once_and_is_replaced_whole,
    the_sweep_deletes_finished_work_after_the_retention,
    replays_are_found_among_ids,
    a_closed_journal_refuses_work_and_says_so,
);

// ---------------------------------------------------------------------------------------------
// Several instances on one Postgres database.
// ---------------------------------------------------------------------------------------------

/// Runs SQL on the cluster directly (to expire a lease, end a session).
async fn sql(cluster: &PgCluster, statement: &str) {
    let (client, conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(statement).await.unwrap();
    drop(client);
    let _ = task.await;
}

async fn two_instances() -> (PgCluster, Journal, Journal) {
    let cluster = PgCluster::start();
    // Started together: the migration lock lets one apply the schema while the other waits.
    let url = cluster.url();
    let (a, b) = tokio::join!(Journal::connect(&url), Journal::connect(&url));
    (cluster, a.unwrap(), b.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_deliveries_at_two_instances_give_one_job() {
    let (_cluster, a, b) = two_instances().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let j = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            accept(&j, "r1:both", "h", None).await
        }));
    }
    let mut new = 0;
    let mut answers = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            DeliveryOutcome::New => new += 1,
            DeliveryOutcome::Replayed { body, .. } => {
                answers.insert(body["run_id"].as_str().unwrap().to_owned());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((new, answers.len()), (1, 1));
    assert_eq!(a.count_jobs(JobFilter::default()).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_claim_the_same_job() {
    let (_cluster, a, b) = two_instances().await;
    for _ in 0..60 {
        a.enqueue(job(None)).await.unwrap();
    }
    let claim_all = |j: Journal| async move {
        let mut mine = Vec::new();
        loop {
            let (jobs, _) = j.claim_due(3).await.unwrap();
            if jobs.is_empty() {
                return mine;
            }
            mine.extend(jobs.into_iter().map(|job| job.id));
        }
    };
    let (from_a, from_b) = tokio::join!(claim_all(a.clone()), claim_all(b.clone()));
    let all: HashSet<&String> = from_a.iter().chain(&from_b).collect();
    assert_eq!(from_a.len() + from_b.len(), 60, "each job claimed once");
    assert_eq!(all.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_the_late_owner_is_ignored() {
    let (cluster, a, b) = two_instances().await;
    let (id, _) = a.enqueue(job(None)).await.unwrap();
    assert_eq!(a.claim_due(1).await.unwrap().0.len(), 1);
    // A live owner's running job is left alone, by claims and by a neighbour's start-up.
    assert!(b.claim_due(5).await.unwrap().0.is_empty());
    assert_eq!(b.requeue_running(None).await.unwrap(), 0);
    // The owner stops renewing (it died): its lease runs out.
    sql(&cluster, "UPDATE jobs SET lease_until = 0").await;
    let (taken, _) = b.claim_due(5).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        taken[0].attempts, 1,
        "the interrupted attempt does not count"
    );
    // The old owner's late answer is dropped; the new owner's stands.
    a.complete_job(id.clone(), json!({"by": "a"}), vec![])
        .await
        .unwrap();
    assert_eq!(
        a.get_job(id.clone()).await.unwrap().status,
        JobStatus::Running
    );
    b.complete_job(id.clone(), json!({"by": "b"}), vec![])
        .await
        .unwrap();
    let done = b.get_job(id.clone()).await.unwrap();
    assert_eq!(
        (done.status, done.result),
        (JobStatus::Succeeded, Some(json!({"by": "b"})))
    );
    assert_eq!(b.job_attempts(id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_never_takes_over_a_job_its_own_task_still_runs() {
    let (cluster, a, _b) = two_instances().await;
    let (running, _) = a.enqueue(job(None)).await.unwrap();
    let (orphan, _) = a.enqueue(job(None)).await.unwrap();
    assert_eq!(a.claim_due(5).await.unwrap().0.len(), 2);
    // One task runs on; the other ended without writing its outcome (it panicked, say).
    a.job_live(&running, true);
    a.job_live(&orphan, true);
    a.job_live(&orphan, false);
    // Both leases run out (a database outage longer than a lease, a starved heartbeat).
    sql(&cluster, "UPDATE jobs SET lease_until = 0").await;
    let (taken, _) = a.claim_due(5).await.unwrap();
    assert_eq!(
        taken.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec![orphan.as_str()],
        "the orphan is run again; the job a task still runs is not started twice"
    );
}

/// A job handler that runs until told to finish, and records whether it got there.
struct Slow {
    started: Arc<tokio::sync::Notify>,
    finish: Arc<tokio::sync::Notify>,
    stopped: Arc<tokio::sync::Notify>,
    side_effects: Arc<AtomicUsize>,
}

/// Set when the handler's future is dropped (its task aborted) before it finished.
struct OnDrop(Option<Arc<tokio::sync::Notify>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(stopped) = self.0.take() {
            stopped.notify_one();
        }
    }
}

#[async_trait::async_trait]
impl coach_worker::jobs::JobHandler for Slow {
    async fn run(
        &self,
        _ctx: &coach_worker::jobs::JobContext,
    ) -> Result<coach_worker::jobs::JobOutcome, coach_worker::jobs::JobError> {
        let mut guard = OnDrop(Some(self.stopped.clone()));
        self.started.notify_one();
        self.finish.notified().await;
        // Stands for the work a job does outside the journal (an Airtable write).
        self.side_effects.fetch_add(1, Ordering::SeqCst);
        guard.0 = None;
        Ok(coach_worker::jobs::JobOutcome {
            result: json!({"by": "a"}),
            follow_ups: vec![],
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_lease_was_taken_over_is_stopped_at_the_next_heartbeat() {
    let (cluster, a, b) = two_instances().await;
    let (id, _) = a.enqueue(job(None)).await.unwrap();
    let slow = Slow {
        started: Default::default(),
        finish: Default::default(),
        stopped: Default::default(),
        side_effects: Default::default(),
    };
    let (started, finish, stopped, side_effects) = (
        slow.started.clone(),
        slow.finish.clone(),
        slow.stopped.clone(),
        slow.side_effects.clone(),
    );
    let mut runner = coach_worker::jobs::Runner::new(
        a.clone(),
        coach_worker::jobs::RunnerConfig {
            paused: false,
            concurrency: 1,
            max_attempts: 3,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(60),
        },
    );
    runner.register("single", Arc::new(slow));
    let handle = runner.handle();
    let mut settled = handle.settled();
    let running = tokio::spawn(runner.run(Duration::from_secs(1)));
    let wait = Duration::from_secs(30);
    tokio::time::timeout(wait, started.notified())
        .await
        .expect("the job starts at a");

    // A's lease runs out while its task is slow (a heartbeat cut off from the database), and b
    // takes the job over.
    sql(&cluster, "UPDATE jobs SET lease_until = 0").await;
    assert_eq!(b.claim_due(1).await.unwrap().0.len(), 1);
    assert_eq!(a.renew_leases().await.unwrap(), 1, "a finds its lease lost");
    tokio::time::timeout(wait, stopped.notified())
        .await
        .expect("a's task is stopped");
    tokio::time::timeout(wait, settled.wait_for(|n| *n >= 1))
        .await
        .expect("the runner sees the task end")
        .unwrap();
    // Had a's copy run on, this would let it do its work a second time beside b's.
    finish.notify_waiters();
    assert_eq!(
        side_effects.load(Ordering::SeqCst),
        0,
        "a's copy did no work"
    );
    let job = a.get_job(id.clone()).await.unwrap();
    assert_eq!((job.status, job.result), (JobStatus::Running, None));
    // The owner now is b, whose outcome stands; a renews nothing more.
    b.complete_job(id.clone(), json!({"by": "b"}), vec![])
        .await
        .unwrap();
    assert_eq!(
        b.get_job(id).await.unwrap().result,
        Some(json!({"by": "b"}))
    );
    assert_eq!(a.renew_leases().await.unwrap(), 0);
    handle.stop();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_task_keeps_its_lease_at_each_heartbeat() {
    let (_cluster, a, b) = two_instances().await;
    a.enqueue(job(None)).await.unwrap();
    let (claimed, _) = a.claim_due(1).await.unwrap();
    let task = tokio::spawn(std::future::pending::<()>());
    a.job_started(&claimed[0].id, task.abort_handle());
    assert_eq!(a.renew_leases().await.unwrap(), 0);
    assert!(!task.is_finished());
    assert!(
        b.claim_due(1).await.unwrap().0.is_empty(),
        "the lease is a's"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_requeues_only_expired_leases() {
    let (cluster, a, b) = two_instances().await;
    let (id, _) = a.enqueue(job(None)).await.unwrap();
    a.claim_due(1).await.unwrap();
    assert_eq!(b.requeue_running(None).await.unwrap(), 0);
    sql(&cluster, "UPDATE jobs SET lease_until = 0").await;
    assert_eq!(b.requeue_running(None).await.unwrap(), 1);
    let job = b.get_job(id).await.unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_neighbours_reservation_is_kept_a_departed_ones_released() {
    let (_cluster, a, b) = two_instances().await;
    a.reserve_delivery(delivery("a1:busy", "h")).await.unwrap();
    assert_eq!(b.release_orphaned().await.unwrap(), 0);
    assert_eq!(
        b.reserve_delivery(delivery("a1:busy", "h")).await.unwrap(),
        DeliveryOutcome::InProgress
    );
    assert!(a.shutdown(Duration::from_secs(5)).await);
    assert_eq!(b.release_orphaned().await.unwrap(), 1);
    assert_eq!(
        b.reserve_delivery(delivery("a1:busy", "h")).await.unwrap(),
        DeliveryOutcome::New
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_lock_excludes_the_other_instance() {
    let (_cluster, a, b) = two_instances().await;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let j = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (inside, most) = (inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let guard = j.lock_across_instances("experiment:recX").await.unwrap();
            assert!(guard.is_some());
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "one D1 of the experiment at a time"
    );
    // Another experiment is not held up by it.
    let x = a.lock_across_instances("experiment:recX").await.unwrap();
    let y = b.lock_across_instances("experiment:recY").await.unwrap();
    assert!(x.is_some() && y.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poller_leads_and_another_takes_over_when_its_session_ends() {
    let (cluster, a, b) = two_instances().await;
    let (mut held_a, mut held_b) = (None, None);
    assert!(a.lead_poller(&mut held_a).await);
    assert!(!b.lead_poller(&mut held_b).await);
    assert!(a.lead_poller(&mut held_a).await, "the leader keeps leading");
    // The leader's session ends (its instance died or lost the network).
    sql(
        &cluster,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
    )
    .await;
    let mut took_over = false;
    for _ in 0..50 {
        if b.lead_poller(&mut held_b).await {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(took_over, "the other instance takes the poller over");
    assert!(
        !a.lead_poller(&mut held_a).await,
        "the old leader sees it lost"
    );
    assert!(held_a.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pacers_never_put_more_than_five_requests_into_one_second() {
    let cluster = PgCluster::start();
    let mut journals = Vec::new();
    for _ in 0..3 {
        journals.push(Journal::connect(&cluster.url()).await.unwrap());
    }
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for j in &journals {
        let pacer = j
            .shared_pacer("https://api.airtable.test|appBase", 5.0)
            .unwrap();
        for _ in 0..2 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                let mut slots = Vec::new();
                for _ in 0..3 {
                    let wait = pacer.reserve().await.unwrap();
                    let slot = tokio::time::Instant::now() + wait;
                    slots.push(slot);
                    tokio::time::sleep_until(slot).await;
                }
                slots
            }));
        }
    }
    let mut slots = Vec::new();
    for t in tasks {
        slots.extend(t.await.unwrap());
    }
    slots.sort();
    assert_eq!(slots.len(), 18);
    for w in slots.windows(6) {
        let span = w[5] - w[0];
        assert!(
            span >= Duration::from_millis(1000),
            "six requests within {span:?} (slots from the start: {:?})",
            slots.iter().map(|s| *s - start).collect::<Vec<_>>()
        );
    }
    // Another base has a budget of its own.
    let other = journals[0]
        .shared_pacer("https://api.airtable.test|appOther", 5.0)
        .unwrap();
    assert_eq!(other.reserve().await.unwrap(), Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_postgres_is_ready_while_its_database_answers() {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: coach_worker::config::ServeConfig,
    }
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Wrapper::parse_from(["test"]).config;
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.webhook_secrets = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()];
    config.database_url = Some(cluster.url().into());
    let secrets = config.validate().unwrap();
    let journal = coach_worker::serve::open_journal(&config).await.unwrap();
    assert_eq!(journal.backend_name(), "postgres");
    let app = coach_worker::startup::Application::build_with(
        &config,
        secrets,
        journal,
        coach_worker::startup::Registry::empty(),
    )
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}/readyz", app.port());
    tokio::spawn(app.run_until_stopped());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let ready = client.get(&url).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    cluster.stop();
    let gone = client.get(&url).send().await.unwrap();
    assert_eq!(gone.status(), 503);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "JOURNAL_UNAVAILABLE", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_at_one_instance_wakes_the_others_runner() {
    let (_cluster, a, b) = two_instances().await;
    let woken = b.job_notify();
    // The listener connects in the background; announce until it has heard one.
    let heard = async {
        loop {
            a.enqueue(job(None)).await.unwrap();
            tokio::select! {
                _ = woken.notified() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), heard)
        .await
        .expect("the other instance hears of the queued job");
    assert!(!b.claim_due(100).await.unwrap().0.is_empty());
}
