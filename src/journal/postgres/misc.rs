//! The audit log, the analysis cache, the experiment tally and retention on Postgres (see their
//! SQLite counterparts for the contract). Space is given back by the server's autovacuum, so
//! `give_back_space` has nothing to do here.

use serde_json::Value;

use super::{PgJournal, execute, query, query_opt};
use crate::journal::retention::{Retention, SweepCounts};
use crate::journal::{AuditEntry, Journal, JournalError, NewAudit, now_ms};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn days_ms(days: u64) -> i64 {
    i64::try_from(days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_MS)
}

impl PgJournal {
    pub(crate) async fn audit(&self, j: &Journal, entry: NewAudit) -> Result<i64, JournalError> {
        j.check_open()?;
        let details = serde_json::to_string(&entry.details)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "INSERT INTO audit_log (at, actor, action, target, count, details) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id",
            &[
                &now_ms(),
                &entry.actor,
                &entry.action,
                &entry.target,
                &(entry.count as i64),
                &details,
            ],
        )
        .await?;
        Ok(rows[0].get(0))
    }

    pub(crate) async fn audit_entries(
        &self,
        j: &Journal,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<AuditEntry>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT id, at, actor, action, target, count, details FROM audit_log ORDER BY id DESC LIMIT $1 OFFSET $2",
            &[&(limit as i64), &(offset as i64)],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let details: String = row.get(6);
                AuditEntry {
                    id: row.get(0),
                    at: row.get(1),
                    actor: row.get(2),
                    action: row.get(3),
                    target: row.get(4),
                    count: row.get::<_, i64>(5) as u64,
                    details: serde_json::from_str(&details).unwrap_or(Value::Null),
                }
            })
            .collect())
    }

    pub(crate) async fn cache_get(
        &self,
        j: &Journal,
        key: String,
    ) -> Result<Option<Value>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT value FROM analysis_cache WHERE key = $1 AND created_at >= $2",
            &[&key, &now_ms().saturating_sub(j.cache_ttl())],
        )
        .await?;
        match row {
            Some(row) => Ok(Some(serde_json::from_str(&row.get::<_, String>(0))?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn cache_put(
        &self,
        j: &Journal,
        key: String,
        text: String,
    ) -> Result<(), JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO analysis_cache (key, value, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
            &[&key, &text, &now_ms()],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn succeeded_before(
        &self,
        j: &Journal,
        dedupe_key: String,
        except_job: String,
    ) -> Result<bool, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        Ok(query_opt(
            &client,
            "SELECT 1 FROM jobs WHERE dedupe_key = $1 AND id <> $2 AND status = 'succeeded'
             UNION ALL SELECT 1 FROM succeeded_keys WHERE dedupe_key = $1 LIMIT 1",
            &[&dedupe_key, &except_job],
        )
        .await?
        .is_some())
    }

    pub(crate) async fn attempt_tally(
        &self,
        j: &Journal,
        experiment_id: String,
    ) -> Result<Option<Vec<String>>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT runs FROM experiment_attempts WHERE experiment_id = $1",
            &[&experiment_id],
        )
        .await?;
        match row {
            Some(row) => Ok(Some(serde_json::from_str(&row.get::<_, String>(0))?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn set_attempt_tally(
        &self,
        j: &Journal,
        experiment_id: String,
        text: String,
    ) -> Result<(), JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO experiment_attempts (experiment_id, runs, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (experiment_id) DO UPDATE SET runs = excluded.runs, updated_at = excluded.updated_at",
            &[&experiment_id, &text, &now_ms()],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn start_attempt_tally(
        &self,
        j: &Journal,
        experiment_id: String,
    ) -> Result<(), JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO experiment_attempts (experiment_id, runs, updated_at) VALUES ($1, '[]', $2)
             ON CONFLICT (experiment_id) DO NOTHING",
            &[&experiment_id, &now_ms()],
        )
        .await?;
        Ok(())
    }

    /// The retention sweep: the SQLite journal's rules, batch by batch, each batch one statement.
    pub(crate) async fn sweep(
        &self,
        j: &Journal,
        policy: &Retention,
        now: i64,
    ) -> Result<SweepCounts, JournalError> {
        let mut counts = SweepCounts::default();
        let batch = policy.batch.max(1) as i64;
        let cutoff = now.saturating_sub(days_ms(policy.days));
        let long_cutoff = now.saturating_sub(days_ms(policy.days).saturating_mul(2));
        let keys_cutoff = now.saturating_sub(days_ms(policy.days).saturating_mul(10));
        let cache_cutoff = now.saturating_sub(policy.cache_ttl_ms());
        for kind in 0..5 {
            if policy.days == 0 && kind != 2 {
                continue;
            }
            loop {
                j.check_open()?;
                let started = std::time::Instant::now();
                let client = self.client().await?;
                let deleted = match kind {
                    0 => {
                        query(
                            &client,
                            "WITH due AS (
                                 SELECT id FROM jobs WHERE status IN ('succeeded', 'cancelled') AND finished_at < $1
                                 UNION ALL
                                 SELECT id FROM (SELECT id FROM jobs j WHERE status = 'failed' AND finished_at < $1
                                     AND (finished_at < $2 OR EXISTS (SELECT 1 FROM jobs r WHERE r.replay_of = j.id))) f
                                 LIMIT $3),
                             gone AS (DELETE FROM jobs WHERE id IN (SELECT id FROM due)
                                 RETURNING id, status, dedupe_key, finished_at),
                             kept AS (INSERT INTO succeeded_keys (dedupe_key, at)
                                 SELECT DISTINCT ON (dedupe_key) dedupe_key, finished_at FROM gone
                                 WHERE status = 'succeeded' AND dedupe_key IS NOT NULL
                                 ON CONFLICT (dedupe_key) DO NOTHING),
                             attempts AS (DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM gone))
                             SELECT COUNT(*) FROM gone",
                            &[&cutoff, &long_cutoff, &batch],
                        )
                        .await?[0]
                            .get::<_, i64>(0) as u64
                    }
                    1 => execute(
                        &client,
                        "DELETE FROM deliveries WHERE key IN (
                             SELECT d.key FROM deliveries d
                             WHERE d.received_at < $1 AND d.response_status IS NOT NULL
                               AND (d.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.job_id))
                             LIMIT $2)",
                        &[&cutoff, &batch],
                    )
                    .await?,
                    2 => execute(
                        &client,
                        "DELETE FROM analysis_cache WHERE key IN (
                             SELECT key FROM analysis_cache WHERE created_at < $1 LIMIT $2)",
                        &[&cache_cutoff, &batch],
                    )
                    .await?,
                    3 => execute(
                        &client,
                        "DELETE FROM audit_log WHERE id IN (
                             SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
                        &[&long_cutoff, &batch],
                    )
                    .await?,
                    _ => execute(
                        &client,
                        "DELETE FROM succeeded_keys WHERE dedupe_key IN (
                             SELECT dedupe_key FROM succeeded_keys WHERE at < $1 LIMIT $2)",
                        &[&keys_cutoff, &batch],
                    )
                    .await?,
                };
                drop(client);
                match kind {
                    0 => counts.jobs += deleted,
                    1 => counts.deliveries += deleted,
                    2 => counts.cache += deleted,
                    _ => counts.audit += deleted,
                }
                if deleted < batch as u64 {
                    break;
                }
                if !policy.pause.is_zero() {
                    tokio::time::sleep(policy.pause.max(started.elapsed() * 4)).await;
                }
            }
        }
        Ok(counts)
    }

    /// Bytes the journal's database takes on the server.
    pub(crate) async fn size_on_disk(&self, j: &Journal) -> Result<u64, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let rows = query(&client, "SELECT pg_database_size(current_database())", &[]).await?;
        Ok(u64::try_from(rows[0].get::<_, i64>(0)).unwrap_or(0))
    }
}
