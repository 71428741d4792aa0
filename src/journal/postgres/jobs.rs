//! Jobs on Postgres: claims with `FOR UPDATE SKIP LOCKED` and leases (see the module doc of
//! `journal::postgres`).

use deadpool_postgres::ClientWrapper;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{LEASE_MS, PgJournal, execute, op, query, query_opt};
use crate::journal::{
    Job, JobAttempt, JobFilter, JobStatus, Journal, JournalError, NewJob, now_ms,
};

const JOB_COLUMNS: &str = "id, kind, scenario, payload, status, attempts, next_attempt_at, last_error, result, \
     delivery_key, dedupe_key, parent_id, replay_of, options, created_at, updated_at, started_at, finished_at, request_id";

fn json_col(row: &Row, idx: usize) -> Option<Value> {
    row.get::<_, Option<String>>(idx)
        .map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn job_from_row(row: &Row) -> Job {
    let status: String = row.get(4);
    Job {
        id: row.get(0),
        kind: row.get(1),
        scenario: row.get(2),
        payload: json_col(row, 3).unwrap_or(Value::Null),
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
        next_attempt_at: row.get(6),
        last_error: json_col(row, 7),
        result: json_col(row, 8),
        delivery_key: row.get(9),
        dedupe_key: row.get(10),
        parent_id: row.get(11),
        replay_of: row.get(12),
        options: json_col(row, 13).unwrap_or(Value::Null),
        created_at: row.get(14),
        updated_at: row.get(15),
        started_at: row.get(16),
        finished_at: row.get(17),
        request_id: row.get(18),
    }
}

/// Inserts a job; with a `dedupe_key` an active job holds, inserts nothing and returns that job's id.
pub(super) async fn insert_job(
    c: &ClientWrapper,
    job: &NewJob,
) -> Result<(String, bool), JournalError> {
    let now = now_ms();
    let payload = serde_json::to_string(&job.payload)?;
    let options = serde_json::to_string(&job.options)?;
    let inserted = execute(
        c,
        "INSERT INTO jobs (id, kind, scenario, payload, status, attempts, next_attempt_at, delivery_key,
             dedupe_key, parent_id, replay_of, options, created_at, updated_at, request_id)
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $8, $9, $10, $11, $11, $12)
         ON CONFLICT DO NOTHING",
        &[
            &job.id,
            &job.kind,
            &job.scenario,
            &payload,
            &job.run_at,
            &job.delivery_key,
            &job.dedupe_key,
            &job.parent_id,
            &job.replay_of,
            &options,
            &now,
            &job.request_id,
        ],
    )
    .await?;
    if inserted == 1 {
        return Ok((job.id.clone(), true));
    }
    let existing = query_opt(
        c,
        "SELECT id FROM jobs WHERE dedupe_key = $1 AND status IN ('queued', 'running', 'retry_scheduled')",
        &[&job.dedupe_key],
    )
    .await?;
    existing
        .map(|r| (r.get(0), false))
        .ok_or_else(|| JournalError::Corrupt(format!("job {} could not be inserted", job.id)))
}

async fn finish_attempt(
    c: &ClientWrapper,
    id: &str,
    outcome: &str,
    error: Option<&str>,
) -> Result<(), JournalError> {
    execute(
        c,
        "UPDATE job_attempts SET finished_at = $2, outcome = $3, error = $4
         WHERE job_id = $1 AND attempt = (SELECT attempts FROM jobs WHERE id = $1) AND finished_at IS NULL",
        &[&id, &now_ms(), &outcome, &error],
    )
    .await?;
    Ok(())
}

/// Runs `f` in a transaction of its own on a pooled connection (work that must not wait behind
/// intake in the writer's batch, and that is never a delivery's acknowledgement).
async fn in_transaction<T>(
    pg: &PgJournal,
    j: &Journal,
    f: impl for<'a> FnOnce(&'a ClientWrapper) -> super::BoxFut<'a, Result<T, JournalError>>,
) -> Result<T, JournalError> {
    j.check_open()?;
    let tx = Tx(Some(pg.client().await?));
    let client = tx.client()?;
    client.batch_execute("BEGIN").await.map_err(super::pg_err)?;
    match f(client).await {
        Ok(value) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(super::pg_err)?;
            tx.finish();
            Ok(value)
        }
        Err(e) => {
            if client.batch_execute("ROLLBACK").await.is_ok() {
                tx.finish();
            }
            Err(e)
        }
    }
}

/// A pooled connection inside a transaction. Unless [`Tx::finish`] says the transaction ended, the
/// connection is closed rather than returned to the pool when this is dropped (the caller's future
/// was dropped half-way, or COMMIT/ROLLBACK failed): the server then rolls the transaction back and
/// frees its row locks, and no later user of the pool finds itself inside a stranger's transaction.
struct Tx(Option<deadpool_postgres::Client>);

impl Tx {
    fn client(&self) -> Result<&ClientWrapper, JournalError> {
        self.0
            .as_deref()
            .ok_or_else(|| JournalError::Unavailable("the connection was closed".into()))
    }

    /// The transaction is over: the connection goes back to the pool.
    fn finish(mut self) {
        self.0.take();
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl PgJournal {
    pub(crate) async fn enqueue(
        &self,
        j: &Journal,
        job: NewJob,
    ) -> Result<(String, bool), JournalError> {
        let route = job.dedupe_key.clone().unwrap_or_else(|| job.id.clone());
        let queued = self
            .write(
                j,
                &route,
                op(move |c| Box::pin(async move { insert_job(c, &job).await })),
            )
            .await?;
        if queued.1 {
            j.jobs_queued();
        }
        Ok(queued)
    }

    /// Claims due jobs and running jobs whose lease expired, skipping rows another instance is
    /// claiming at the same moment, and leases them to this instance.
    pub(crate) async fn claim_due(
        &self,
        j: &Journal,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<i64>), JournalError> {
        let me = self.incarnation().to_owned();
        let live = self.live_ids();
        in_transaction(self, j, move |c| {
            Box::pin(async move {
                let now = now_ms();
                let limit = limit as i64;
                let sql = format!(
                    "WITH due AS (
                         SELECT id, status AS was FROM jobs
                         WHERE (status IN ('queued', 'retry_scheduled') AND next_attempt_at <= $1)
                            OR (status = 'running' AND lease_until < $1 AND NOT (id = ANY($5)))
                         ORDER BY COALESCE(next_attempt_at, lease_until), seq
                         LIMIT $2 FOR UPDATE SKIP LOCKED)
                     UPDATE jobs j SET status = 'running',
                         attempts = CASE WHEN due.was = 'running' THEN j.attempts ELSE j.attempts + 1 END,
                         started_at = $1, updated_at = $1, next_attempt_at = NULL,
                         lease_owner = $3, lease_until = $4
                     FROM due WHERE j.id = due.id
                     RETURNING {}, j.seq",
                    JOB_COLUMNS
                        .split(", ")
                        .map(|c| format!("j.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let rows = query(c, &sql, &[&now, &limit, &me, &(now + LEASE_MS), &live]).await?;
                let mut rows: Vec<(i64, Job)> =
                    rows.iter().map(|r| (r.get(19), job_from_row(r))).collect();
                rows.sort_by_key(|(seq, _)| *seq);
                let jobs: Vec<Job> = rows.into_iter().map(|(_, job)| job).collect();
                // A job taken over from a dead instance keeps its attempt number: the interrupted
                // attempt's row is started again, as a start-up requeue does on SQLite.
                for job in &jobs {
                    execute(
                        c,
                        "INSERT INTO job_attempts (job_id, attempt, started_at) VALUES ($1, $2, $3)
                         ON CONFLICT (job_id, attempt) DO UPDATE SET started_at = excluded.started_at,
                             finished_at = NULL, outcome = NULL, error = NULL",
                        &[&job.id, &(job.attempts as i32), &now],
                    )
                    .await?;
                }
                let next: Option<i64> = query(
                    c,
                    "SELECT MIN(next_attempt_at) FROM jobs WHERE status IN ('queued', 'retry_scheduled')",
                    &[],
                )
                .await?[0]
                    .get(0);
                Ok((jobs, next))
            })
        })
        .await
    }

    pub(crate) async fn complete_job(
        &self,
        j: &Journal,
        id: String,
        text: String,
        follow_ups: Vec<NewJob>,
    ) -> Result<(), JournalError> {
        let me = self.incarnation().to_owned();
        let queued = !follow_ups.is_empty();
        in_transaction(self, j, move |c| {
            Box::pin(async move {
                let now = now_ms();
                let changed = execute(
                    c,
                    "UPDATE jobs SET status = 'succeeded', result = $2, last_error = NULL, finished_at = $3,
                         updated_at = $3, lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND status = 'running' AND lease_owner = $4",
                    &[&id, &text, &now, &me],
                )
                .await?;
                if changed == 0 {
                    // Cancelled, requeued or taken over meanwhile: this attempt's outcome is dropped.
                    return Ok(());
                }
                finish_attempt(c, &id, "succeeded", None).await?;
                for job in &follow_ups {
                    insert_job(c, job).await?;
                }
                Ok(())
            })
        })
        .await?;
        if queued {
            j.jobs_queued();
        }
        Ok(())
    }

    pub(crate) async fn fail_job(
        &self,
        j: &Journal,
        id: String,
        text: String,
        result_text: Option<String>,
    ) -> Result<(), JournalError> {
        let me = self.incarnation().to_owned();
        in_transaction(self, j, move |c| {
            Box::pin(async move {
                let now = now_ms();
                let changed = execute(
                    c,
                    "UPDATE jobs SET status = 'failed', last_error = $2, result = COALESCE($4, result),
                         finished_at = $3, updated_at = $3, lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND status = 'running' AND lease_owner = $5",
                    &[&id, &text, &now, &result_text, &me],
                )
                .await?;
                if changed > 0 {
                    finish_attempt(c, &id, "failed", Some(&text)).await?;
                }
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn retry_job(
        &self,
        j: &Journal,
        id: String,
        text: String,
        at: i64,
    ) -> Result<(), JournalError> {
        let me = self.incarnation().to_owned();
        in_transaction(self, j, move |c| {
            Box::pin(async move {
                let changed = execute(
                    c,
                    "UPDATE jobs SET status = 'retry_scheduled', last_error = $2, next_attempt_at = $3,
                         updated_at = $4, lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND status = 'running' AND lease_owner = $5",
                    &[&id, &text, &at, &now_ms(), &me],
                )
                .await?;
                if changed > 0 {
                    finish_attempt(c, &id, "retry_scheduled", Some(&text)).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// `Some(ids)`: this instance's own running jobs (a drain deadline). `None` (start-up): only
    /// running jobs whose lease expired — a live neighbour's jobs keep running.
    pub(crate) async fn requeue_running(
        &self,
        j: &Journal,
        ids: Option<Vec<String>>,
    ) -> Result<usize, JournalError> {
        let me = self.incarnation().to_owned();
        in_transaction(self, j, move |c| {
            Box::pin(async move {
                let now = now_ms();
                let ids: Vec<String> = match ids {
                    Some(ids) => {
                        let rows = query(
                            c,
                            "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'running' AND lease_owner = $2
                             FOR UPDATE",
                            &[&ids, &me],
                        )
                        .await?;
                        rows.iter().map(|r| r.get(0)).collect()
                    }
                    None => {
                        let rows = query(
                            c,
                            "SELECT id FROM jobs WHERE status = 'running' AND lease_until < $1
                             FOR UPDATE SKIP LOCKED",
                            &[&now],
                        )
                        .await?;
                        rows.iter().map(|r| r.get(0)).collect()
                    }
                };
                if ids.is_empty() {
                    return Ok(0);
                }
                execute(
                    c,
                    "UPDATE job_attempts SET finished_at = $2, outcome = 'interrupted'
                     WHERE job_id = ANY($1) AND finished_at IS NULL",
                    &[&ids, &now],
                )
                .await?;
                let n = execute(
                    c,
                    "UPDATE jobs SET status = 'queued', attempts = GREATEST(attempts - 1, 0), next_attempt_at = $2,
                         updated_at = $2, lease_owner = NULL, lease_until = NULL
                     WHERE id = ANY($1) AND status = 'running'",
                    &[&ids, &now],
                )
                .await?;
                Ok(n as usize)
            })
        })
        .await
    }

    pub(crate) async fn cancel_job(&self, j: &Journal, id: String) -> Result<bool, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let now = now_ms();
        let changed = execute(
            &client,
            "UPDATE jobs SET status = 'cancelled', finished_at = $2, updated_at = $2, next_attempt_at = NULL
             WHERE id = $1 AND status IN ('queued', 'retry_scheduled')",
            &[&id, &now],
        )
        .await?;
        Ok(changed > 0)
    }

    pub(crate) async fn get_job(&self, j: &Journal, id: String) -> Result<Job, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|r| job_from_row(&r))
        .ok_or_else(|| JournalError::NotFound(format!("run {id}")))
    }

    pub(crate) async fn job_attempts(
        &self,
        j: &Journal,
        id: String,
    ) -> Result<Vec<JobAttempt>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT attempt, started_at, finished_at, outcome, error FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
            &[&id],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|row| JobAttempt {
                attempt: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
                started_at: row.get(1),
                finished_at: row.get(2),
                outcome: row.get(3),
                error: json_col(row, 4),
            })
            .collect())
    }

    pub(crate) async fn child_jobs(
        &self,
        j: &Journal,
        id: String,
    ) -> Result<Vec<Job>, JournalError> {
        self.list_jobs_where(
            j,
            "parent_id = $1 ORDER BY created_at, seq",
            vec![Value::String(id)],
            100,
            0,
        )
        .await
    }

    pub(crate) async fn list_jobs(
        &self,
        j: &Journal,
        filter: JobFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Job>, JournalError> {
        let (clause, args) = crate::journal::jobs::filter_clause(&filter, '$');
        self.list_jobs_where(
            j,
            &format!("{clause} ORDER BY created_at DESC, seq DESC"),
            args,
            limit,
            offset,
        )
        .await
    }

    pub(crate) async fn count_jobs(
        &self,
        j: &Journal,
        filter: JobFilter,
    ) -> Result<u64, JournalError> {
        j.check_open()?;
        let (clause, args) = crate::journal::jobs::filter_clause(&filter, '$');
        let client = self.client().await?;
        let params = sql_params(&args);
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = query(
            &client,
            &format!("SELECT COUNT(*) FROM jobs WHERE {clause}"),
            &refs,
        )
        .await?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    pub(crate) async fn job_counts(&self, j: &Journal) -> Result<Vec<(String, u64)>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT status, COUNT(*) FROM jobs GROUP BY status",
            &[],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn list_jobs_where(
        &self,
        j: &Journal,
        clause: &str,
        args: Vec<Value>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Job>, JournalError> {
        j.check_open()?;
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} LIMIT {limit} OFFSET {offset}");
        let client = self.client().await?;
        let params = sql_params(&args);
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = query(&client, &sql, &refs).await?;
        Ok(rows.iter().map(job_from_row).collect())
    }

    /// The ids among `ids` that some job replays (`replay_of`).
    pub(crate) async fn replayed_among(
        &self,
        j: &Journal,
        ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT DISTINCT replay_of FROM jobs WHERE replay_of = ANY($1)",
            &[&ids],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn sql_params(args: &[Value]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    args.iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Value::Number(n) => Box::new(n.as_i64().unwrap_or(0)),
                Value::String(s) => Box::new(s.clone()),
                other => Box::new(other.to_string()),
            }
        })
        .collect()
}
