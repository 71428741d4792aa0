//! Retention: the journal keeps what is still useful and gives the rest back to the disk.
//!
//! What is deleted, oldest first, by a background sweep ([`run`]):
//! - succeeded and cancelled jobs (and their attempts) finished more than `COACH_RETENTION_DAYS` ago;
//! - failed jobs once they are that old *and* an admin has replayed them, or, replayed or not, once
//!   they are twice that old (a failure nobody looked at stays inspectable and replayable longer);
//! - answered deliveries older than the retention whose job is gone (a delivery is the input an admin
//!   sees next to its run, so it lives as long as the run). A reservation being worked on is never
//!   touched. After the retention a repeat of a delivery id is no longer recognised, which is long past
//!   the 5 minutes a signed timestamp is accepted for;
//! - analysis cache entries older than their own TTL (`COACH_CACHE_TTL_DAYS`; reads ignore older
//!   entries even before the sweep reaches them);
//! - admin audit entries older than twice the retention (as long as the failed runs they refer to).
//!
//! The dedupe key of a swept succeeded job is kept in `succeeded_keys` (a few dozen bytes), so that
//! "this work succeeded before" (see `tally`) stays true after the job's row is gone; those keys go
//! after ten times the retention (a Run Request delivered again a year later runs again).
//!
//! Every delete is a small batch (`LIMIT`) in its own journal operation. The journal runs operations in
//! arrival order, so deliveries arriving during a sweep wait for at most one batch, never for the whole
//! sweep. Freed pages are returned with `PRAGMA incremental_vacuum`, in bounded steps for the same
//! reason; that needs `auto_vacuum = INCREMENTAL`, which a database created before it gets once, with a
//! full `VACUUM` at the first start ([`incremental_vacuum_mode`]).

use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::watch;

use super::{Journal, JournalError, now_ms};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How long finished work is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days finished deliveries and jobs are kept; 0 keeps everything.
    pub days: u64,
    /// Days a cached analysis is served and kept.
    pub cache_ttl_days: u64,
    /// Rows deleted per journal operation.
    pub batch: usize,
    /// Pages returned to the file system per journal operation.
    pub vacuum_pages: u32,
    /// Least pause between two batches. The pause is also at least four times the last batch's
    /// round trip, so the sweep takes at most a fifth of the journal's time and backs off by itself
    /// when intake keeps the journal busy. Zero: no pause at all (tests, simulations).
    pub pause: Duration,
    /// Time between two sweeps.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            days: 30,
            cache_ttl_days: 7,
            batch: 200,
            vacuum_pages: 500,
            pause: Duration::from_millis(10),
            interval: Duration::from_secs(600),
        }
    }
}

impl Retention {
    pub fn cache_ttl_ms(&self) -> i64 {
        days_ms(self.cache_ttl_days)
    }
}

fn days_ms(days: u64) -> i64 {
    i64::try_from(days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_MS)
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub jobs: u64,
    pub deliveries: u64,
    pub cache: u64,
    /// Audit entries and remembered dedupe keys.
    pub audit: u64,
    /// Pages given back to the file system.
    pub pages: u64,
}

impl SweepCounts {
    pub fn rows(&self) -> u64 {
        self.jobs + self.deliveries + self.cache + self.audit
    }
}

/// Switches a database to `auto_vacuum = INCREMENTAL`. A new (empty) file takes the mode at once; an
/// existing one only through a `VACUUM`, which rewrites the file, so that is done once, at open.
pub(super) fn incremental_vacuum_mode(conn: &Connection) -> Result<(), JournalError> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables > 0 {
        tracing::info!("switching the journal to incremental auto-vacuum (one full VACUUM)");
        // Best effort: the VACUUM needs about the file's size again in free space and time in
        // proportion to it. If it fails the worker still starts; the sweep still deletes old rows
        // (their pages are reused, just not given back) and the switch is tried at the next start.
        if let Err(e) = conn.execute_batch("VACUUM") {
            tracing::warn!(error = %e, "the journal keeps its vacuum mode for now: the one-time VACUUM failed");
        }
    }
    Ok(())
}

/// The kinds of rows a sweep deletes, each with its batch statement.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Jobs,
    Deliveries,
    Cache,
    Audit,
    SucceededKeys,
}

impl Journal {
    /// Deletes everything `policy` says is due at `now` (ms), batch by batch, then gives the freed
    /// pages back. `now` is a parameter so tests (and the benchmark) can sweep at any date.
    pub async fn sweep(&self, policy: &Retention, now: i64) -> Result<SweepCounts, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.sweep(self, policy, now).await;
        }
        let mut counts = SweepCounts::default();
        let batch = policy.batch.max(1);
        for kind in [
            Kind::Jobs,
            Kind::Deliveries,
            Kind::Cache,
            Kind::Audit,
            Kind::SucceededKeys,
        ] {
            if policy.days == 0 && !matches!(kind, Kind::Cache) {
                continue;
            }
            loop {
                let policy = *policy;
                let started = std::time::Instant::now();
                let deleted = self
                    .call(move |conn| delete_batch(conn, kind, &policy, now, batch))
                    .await?;
                let took = started.elapsed();
                match kind {
                    Kind::Jobs => counts.jobs += deleted,
                    Kind::Deliveries => counts.deliveries += deleted,
                    Kind::Cache => counts.cache += deleted,
                    Kind::Audit | Kind::SucceededKeys => counts.audit += deleted,
                }
                if deleted < batch as u64 {
                    break;
                }
                pause(policy.pause, took).await;
            }
        }
        counts.pages = self
            .give_back_space(policy.vacuum_pages, policy.pause)
            .await?;
        Ok(counts)
    }

    /// Returns free pages to the file system, `step` pages per journal operation.
    pub async fn give_back_space(&self, step: u32, between: Duration) -> Result<u64, JournalError> {
        if self.pg().is_some() {
            // The server's autovacuum gives space back on Postgres.
            return Ok(0);
        }
        let step = step.max(1);
        let mut total = 0;
        loop {
            let started = std::time::Instant::now();
            let freed = self
                .call(move |conn| {
                    let before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    if before == 0 {
                        return Ok(0);
                    }
                    // The pragma frees one page per step: run it to its end.
                    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({step})"))?;
                    let mut rows = stmt.query([])?;
                    while rows.next()?.is_some() {}
                    let after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    Ok(u64::try_from(before - after).unwrap_or(0))
                })
                .await?;
            total += freed;
            if freed < u64::from(step) {
                return Ok(total);
            }
            pause(between, started.elapsed()).await;
        }
    }

    /// Bytes the journal takes on disk: the database file and its write-ahead log.
    pub async fn size_on_disk(&self) -> Result<u64, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.size_on_disk(self).await;
        }
        self.call(|conn| {
            let path = conn.path().unwrap_or_default().to_owned();
            let len = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            Ok(len(&path) + len(&format!("{path}-wal")))
        })
        .await
    }
}

async fn pause(least: Duration, last_batch: Duration) {
    if !least.is_zero() {
        tokio::time::sleep(least.max(last_batch * 4)).await;
    }
}

fn delete_batch(
    conn: &Connection,
    kind: Kind,
    policy: &Retention,
    now: i64,
    batch: usize,
) -> Result<u64, JournalError> {
    let cutoff = now.saturating_sub(days_ms(policy.days));
    let long_cutoff = now.saturating_sub(days_ms(policy.days).saturating_mul(2));
    let limit = batch as i64;
    let deleted = match kind {
        Kind::Jobs => {
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM jobs WHERE status IN ('succeeded', 'cancelled') AND finished_at < ?1
                     UNION ALL
                     SELECT id FROM (SELECT id FROM jobs j WHERE status = 'failed' AND finished_at < ?1
                         AND (finished_at < ?2 OR EXISTS (SELECT 1 FROM jobs r WHERE r.replay_of = j.id)))
                     LIMIT ?3",
                )?
                .query_map(params![cutoff, long_cutoff, limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO succeeded_keys (dedupe_key, at)
                     SELECT dedupe_key, finished_at FROM jobs
                     WHERE id = ?1 AND status = 'succeeded' AND dedupe_key IS NOT NULL",
                )?
                .execute([id])?;
                conn.prepare_cached("DELETE FROM job_attempts WHERE job_id = ?1")?
                    .execute([id])?;
                conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                    .execute([id])?;
            }
            ids.len()
        }
        Kind::Deliveries => conn
            .prepare_cached(
                "DELETE FROM deliveries WHERE rowid IN (
                     SELECT d.rowid FROM deliveries d
                     WHERE d.received_at < ?1 AND d.response_status IS NOT NULL
                       AND (d.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.job_id))
                     LIMIT ?2)",
            )?
            .execute(params![cutoff, limit])?,
        Kind::Cache => conn
            .prepare_cached(
                "DELETE FROM analysis_cache WHERE rowid IN (
                     SELECT rowid FROM analysis_cache WHERE created_at < ?1 LIMIT ?2)",
            )?
            .execute(params![now.saturating_sub(policy.cache_ttl_ms()), limit])?,
        Kind::Audit => conn
            .prepare_cached(
                "DELETE FROM audit_log WHERE id IN (
                     SELECT id FROM audit_log WHERE at < ?1 ORDER BY id LIMIT ?2)",
            )?
            .execute(params![long_cutoff, limit])?,
        Kind::SucceededKeys => conn
            .prepare_cached(
                "DELETE FROM succeeded_keys WHERE dedupe_key IN (
                     SELECT dedupe_key FROM succeeded_keys WHERE at < ?1 LIMIT ?2)",
            )?
            .execute(params![
                now.saturating_sub(days_ms(policy.days).saturating_mul(10)),
                limit
            ])?,
    };
    Ok(deleted as u64)
}

/// The background sweep: one sweep at start, then one every `policy.interval`, until `stop` is set.
/// Each batch is its own journal operation, so stopping between two loses nothing.
pub async fn run(journal: Journal, policy: Retention, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let started = std::time::Instant::now();
        tokio::select! {
            swept = journal.sweep(&policy, now_ms()) => match swept {
                Ok(counts) if counts.rows() > 0 || counts.pages > 0 => {
                    metrics::counter!("journal_swept_rows_total").increment(counts.rows());
                    tracing::info!(
                        jobs = counts.jobs,
                        deliveries = counts.deliveries,
                        cache = counts.cache,
                        audit = counts.audit,
                        pages = counts.pages,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "journal retention sweep"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "journal retention sweep failed; retried at the next one"),
            },
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.interval) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{DeliveryOutcome, NewDelivery, NewJob};
    use serde_json::json;

    fn policy() -> Retention {
        Retention {
            days: 30,
            cache_ttl_days: 7,
            batch: 3,
            pause: Duration::ZERO,
            ..Default::default()
        }
    }

    fn delivery(key: &str) -> NewDelivery {
        NewDelivery {
            key: key.into(),
            scenario: "r1".into(),
            body_hash: "h".into(),
            body: "x".repeat(4096),
        }
    }

    /// A job that ran once and ended in `status`, with its delivery.
    async fn finished(j: &Journal, key: &str, status: &str) -> String {
        let job = NewJob::new("single", "r1", json!({}));
        let outcome = j
            .accept_delivery(delivery(key), job, 202, |id| {
                json!({ "run_id": id }).to_string()
            })
            .await
            .unwrap();
        assert_eq!(outcome, DeliveryOutcome::New);
        let (claimed, _) = j.claim_due(1).await.unwrap();
        let id = claimed[0].id.clone();
        match status {
            "succeeded" => j.complete_job(id.clone(), json!({}), vec![]).await.unwrap(),
            _ => j
                .fail_job(id.clone(), json!({"code": "X"}), None)
                .await
                .unwrap(),
        }
        id
    }

    async fn exists(j: &Journal, sql: &'static str, arg: String) -> bool {
        j.call(move |conn| {
            Ok(conn
                .prepare(sql)?
                .query_row([arg], |_| Ok(()))
                .map(|_| true)
                .unwrap_or(false))
        })
        .await
        .unwrap()
    }

    const DAY: i64 = DAY_MS;

    async fn page_count(j: &Journal) -> i64 {
        j.call(|conn| Ok(conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn finished_work_goes_after_the_retention_failed_work_later() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        let ok = finished(&j, "r1:ok", "succeeded").await;
        let failed = finished(&j, "r1:failed", "failed").await;
        let replayed = finished(&j, "r1:replayed", "failed").await;
        let mut replay = NewJob::new("single", "r1", json!({}));
        replay.replay_of = Some(replayed.clone());
        let (replay_id, _) = j.enqueue(replay).await.unwrap();
        let active = j
            .enqueue(NewJob::new("single", "r1", json!({})))
            .await
            .unwrap()
            .0;
        j.reserve_delivery(NewDelivery {
            key: "a1:reserved".into(),
            ..delivery("a1:reserved")
        })
        .await
        .unwrap();
        let now = now_ms();
        let job = "SELECT 1 FROM jobs WHERE id = ?1";
        let delivery_row = "SELECT 1 FROM deliveries WHERE key = ?1";

        // Inside the retention nothing goes.
        let counts = j.sweep(&policy(), now + 29 * DAY).await.unwrap();
        assert_eq!(counts.rows(), 0);

        // After it: the succeeded job (its attempts and delivery with it) and the replayed failure.
        let counts = j.sweep(&policy(), now + 31 * DAY).await.unwrap();
        assert_eq!((counts.jobs, counts.deliveries), (2, 2), "{counts:?}");
        assert!(!exists(&j, job, ok.clone()).await);
        assert!(!exists(&j, "SELECT 1 FROM job_attempts WHERE job_id = ?1", ok).await);
        assert!(!exists(&j, delivery_row, "r1:ok".into()).await);
        assert!(!exists(&j, job, replayed).await);
        assert!(!exists(&j, delivery_row, "r1:replayed".into()).await);
        // The failure nobody replayed stays, with its delivery; so do work not finished and a
        // reservation being answered.
        assert!(exists(&j, job, failed.clone()).await);
        assert!(exists(&j, delivery_row, "r1:failed".into()).await);
        assert!(exists(&j, job, replay_id.clone()).await);
        assert!(exists(&j, job, active.clone()).await);
        assert!(exists(&j, delivery_row, "a1:reserved".into()).await);

        // Twice the retention: the failure goes too; active work and the reservation still stay.
        let counts = j.sweep(&policy(), now + 61 * DAY).await.unwrap();
        assert_eq!((counts.jobs, counts.deliveries), (1, 1), "{counts:?}");
        assert!(!exists(&j, job, failed).await);
        assert!(exists(&j, job, active).await);
        assert!(exists(&j, job, replay_id).await);
        assert!(exists(&j, delivery_row, "a1:reserved".into()).await);
    }

    #[tokio::test]
    async fn a_swept_success_is_still_known_by_its_dedupe_key() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        let mut job = NewJob::new("single", "r1", json!({}));
        job.dedupe_key = Some("r1:recX".into());
        let (id, _) = j.enqueue(job).await.unwrap();
        j.claim_due(1).await.unwrap();
        j.complete_job(id, json!({}), vec![]).await.unwrap();
        let counts = j.sweep(&policy(), now_ms() + 31 * DAY).await.unwrap();
        assert_eq!(counts.jobs, 1);
        assert!(
            j.succeeded_before("r1:recX".into(), "other".into())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_cache_has_its_own_ttl_and_the_audit_twice_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        j.cache_put("k".into(), &json!({"a": 1})).await.unwrap();
        j.audit(crate::journal::NewAudit {
            actor: "admin".into(),
            action: "replay".into(),
            target: None,
            count: 1,
            details: json!({}),
        })
        .await
        .unwrap();
        let now = now_ms();
        assert_eq!(j.sweep(&policy(), now + 6 * DAY).await.unwrap().cache, 0);
        let counts = j.sweep(&policy(), now + 8 * DAY).await.unwrap();
        assert_eq!((counts.cache, counts.audit), (1, 0));
        assert_eq!(j.cache_get("k".into()).await.unwrap(), None);
        assert_eq!(j.sweep(&policy(), now + 61 * DAY).await.unwrap().audit, 1);
    }

    #[tokio::test]
    async fn an_expired_cache_entry_is_not_served_before_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        j.cache_put("k".into(), &json!({"a": 1})).await.unwrap();
        assert_eq!(
            j.cache_get("k".into()).await.unwrap(),
            Some(json!({"a": 1}))
        );
        j.set_cache_ttl(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(j.cache_get("k".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn batches_are_small_and_every_due_row_goes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        for i in 0..10 {
            finished(&j, &format!("r1:{i}"), "succeeded").await;
        }
        // batch = 3: ten jobs take four batches, all in one sweep.
        let counts = j.sweep(&policy(), now_ms() + 31 * DAY).await.unwrap();
        assert_eq!((counts.jobs, counts.deliveries), (10, 10));
        assert_eq!(j.delivery_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn space_is_given_back_to_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(&path).unwrap();
        for i in 0..300 {
            finished(&j, &format!("r1:{i}"), "succeeded").await;
        }

        let before = page_count(&j).await;
        let counts = j
            .sweep(
                &Retention {
                    batch: 100,
                    ..policy()
                },
                now_ms() + 31 * DAY,
            )
            .await
            .unwrap();
        assert_eq!(counts.deliveries, 300);
        assert!(counts.pages > 0, "{counts:?}");
        let after = page_count(&j).await;
        assert!(
            after < before / 2,
            "the file shrinks: {before} pages before, {after} after"
        );
    }

    #[tokio::test]
    async fn retention_zero_keeps_finished_work() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        finished(&j, "r1:ok", "succeeded").await;
        let keep = Retention {
            days: 0,
            ..policy()
        };
        let counts = j.sweep(&keep, now_ms() + 3650 * DAY).await.unwrap();
        assert_eq!((counts.jobs, counts.deliveries), (0, 0));
    }

    #[test]
    fn an_existing_database_is_switched_to_incremental_vacuum_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        {
            // A journal created before retention existed: auto_vacuum off, tables present.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
            )
            .unwrap();
            let mode: i64 = conn
                .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, 0);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let j = Journal::open(&path).unwrap();
            let mode = j
                .call(|conn| Ok(conn.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))?))
                .await
                .unwrap();
            assert_eq!(mode, 2, "INCREMENTAL");
            let kept = j
                .call(|conn| Ok(conn.query_row("SELECT x FROM t", [], |r| r.get::<_, i64>(0))?))
                .await
                .unwrap();
            assert_eq!(kept, 1, "the data survives the switch");
        });
    }
}
