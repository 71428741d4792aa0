//! Jobs and their attempts.
//!
//! States: `queued → running → succeeded | failed`, with `retry_scheduled` between attempts and
//! `cancelled` for a job an admin stopped before it ran. A job's `dedupe_key` is unique among the jobs
//! that are still active, so the poller can offer the same Run Request every cycle and only one job
//! runs it, while a request an operator sets back to `Queued` after a failure gets a fresh job.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::{Journal, JournalError, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    RetryScheduled,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::RetryScheduled => "retry_scheduled",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "retry_scheduled" => JobStatus::RetryScheduled,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: String,
    pub scenario: String,
    pub payload: Value,
    /// The delivery that made the job. For a job journaled with its delivery
    /// ([`Journal::accept_signed_delivery`](super::Journal::accept_signed_delivery)), any `Some`
    /// asks for it, and the journal fills in the key the delivery is decided under.
    pub delivery_key: Option<String>,
    pub dedupe_key: Option<String>,
    pub parent_id: Option<String>,
    pub replay_of: Option<String>,
    /// Free-form options for the handler (e.g. `{"bypass_cache": true}`).
    pub options: Value,
    pub run_at: i64,
    /// The request id of the delivery that created the job (its logs carry it).
    pub request_id: Option<String>,
}

impl NewJob {
    pub fn new(kind: &str, scenario: &str, payload: Value) -> NewJob {
        NewJob {
            id: new_job_id(),
            kind: kind.to_owned(),
            scenario: scenario.to_owned(),
            payload,
            delivery_key: None,
            dedupe_key: None,
            parent_id: None,
            replay_of: None,
            options: Value::Object(Default::default()),
            run_at: now_ms(),
            request_id: None,
        }
    }
}

/// A new job id: a UUIDv7 with a `run_` prefix, time-ordered to the millisecond. The 74 bits after
/// the timestamp are all random: `Uuid::now_v7` spends some of them on a counter that makes ids of
/// one millisecond consecutive, which would let anyone holding one id of a burst (a bulk replay) guess
/// its neighbours, and the id is the only key to the unauthenticated run view.
pub fn new_job_id() -> String {
    let millis = u64::try_from(now_ms()).unwrap_or(0);
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut text = String::with_capacity(4 + uuid::fmt::Simple::LENGTH);
    text.push_str("run_");
    text.push_str(id.simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
    text
}

/// A journaled job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub scenario: String,
    pub payload: Value,
    pub status: JobStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<Value>,
    pub result: Option<Value>,
    pub delivery_key: Option<String>,
    pub dedupe_key: Option<String>,
    pub parent_id: Option<String>,
    pub replay_of: Option<String>,
    pub options: Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The request id of the delivery that created the job.
    pub request_id: Option<String>,
}

/// One attempt of a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobAttempt {
    pub attempt: u32,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub error: Option<Value>,
}

/// Filter for listing jobs (admin).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub statuses: Vec<JobStatus>,
    pub scenario: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub ids: Vec<String>,
}

const JOB_COLUMNS: &str = "id, kind, scenario, payload, status, attempts, next_attempt_at, last_error, result, \
     delivery_key, dedupe_key, parent_id, replay_of, options, created_at, updated_at, started_at, finished_at, request_id";

fn json_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(idx)?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))))
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(4)?;
    Ok(Job {
        id: row.get(0)?,
        kind: row.get(1)?,
        scenario: row.get(2)?,
        payload: json_col(row, 3)?.unwrap_or(Value::Null),
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        attempts: row.get(5)?,
        next_attempt_at: row.get(6)?,
        last_error: json_col(row, 7)?,
        result: json_col(row, 8)?,
        delivery_key: row.get(9)?,
        dedupe_key: row.get(10)?,
        parent_id: row.get(11)?,
        replay_of: row.get(12)?,
        options: json_col(row, 13)?.unwrap_or(Value::Null),
        created_at: row.get(14)?,
        updated_at: row.get(15)?,
        started_at: row.get(16)?,
        finished_at: row.get(17)?,
        request_id: row.get(18)?,
    })
}

/// The JSON columns of a new job, serialised before its operation reaches the writer thread.
pub(super) struct JobText {
    payload: String,
    options: String,
}

impl JobText {
    pub(super) fn of(job: &NewJob) -> Result<JobText, JournalError> {
        Ok(JobText {
            payload: serde_json::to_string(&job.payload)?,
            options: serde_json::to_string(&job.options)?,
        })
    }
}

/// Inserts a job; with a `dedupe_key` that an active job holds, inserts nothing and returns that
/// job's id instead.
pub(super) fn insert_job(conn: &Connection, job: &NewJob) -> Result<(String, bool), JournalError> {
    insert_job_text(conn, job, &JobText::of(job)?)
}

/// [`insert_job`] with the job's JSON columns already serialised.
pub(super) fn insert_job_text(
    conn: &Connection,
    job: &NewJob,
    text: &JobText,
) -> Result<(String, bool), JournalError> {
    let now = now_ms();
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO jobs (id, kind, scenario, payload, status, attempts, next_attempt_at, delivery_key,
                 dedupe_key, parent_id, replay_of, options, created_at, updated_at, request_id)
             VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
        )?
        .execute(params![
            job.id,
            job.kind,
            job.scenario,
            text.payload,
            job.run_at,
            job.delivery_key,
            job.dedupe_key,
            job.parent_id,
            job.replay_of,
            text.options,
            now,
            job.request_id
        ])?;
    if inserted == 1 {
        return Ok((job.id.clone(), true));
    }
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE dedupe_key = ?1 AND status IN ('queued', 'running', 'retry_scheduled')",
        )?
        .query_row([&job.dedupe_key], |r| r.get(0))
        .optional()?;
    existing
        .map(|id| (id, false))
        .ok_or_else(|| JournalError::Corrupt(format!("job {} could not be inserted", job.id)))
}

fn finish_attempt(
    conn: &Connection,
    id: &str,
    outcome: &str,
    error: Option<&str>,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "UPDATE job_attempts SET finished_at = ?2, outcome = ?3, error = ?4
         WHERE job_id = ?1 AND attempt = (SELECT attempts FROM jobs WHERE id = ?1) AND finished_at IS NULL",
    )?
    .execute(params![id, now_ms(), outcome, error])?;
    Ok(())
}

impl Journal {
    /// Enqueues a job. Returns its id and whether it was created (false: an active job with the same
    /// dedupe key already exists, and its id is returned).
    pub async fn enqueue(&self, job: NewJob) -> Result<(String, bool), JournalError> {
        if let Some(pg) = self.pg() {
            return pg.enqueue(self, job).await;
        }
        let queued = self.call(move |conn| insert_job(conn, &job)).await?;
        if queued.1 {
            self.jobs_queued();
        }
        Ok(queued)
    }

    /// Claims up to `limit` jobs that are due, marking them running and starting an attempt, and
    /// tells when the next waiting job becomes due (one round trip for the runner's loop).
    /// The runner tells the journal when a task of this process starts (`live`) and stops running
    /// job `id`, however it stopped. On Postgres only live jobs keep their lease, so a job whose task
    /// ended without writing its outcome is taken over once its lease runs out, and a live one is
    /// never claimed again by this instance. The SQLite journal has one process, which requeues such
    /// jobs at its next start.
    pub fn job_live(&self, id: &str, live: bool) {
        if let Some(pg) = self.pg() {
            pg.job_live(id, live);
        }
    }

    /// The runner started job `id` in `task`: on Postgres, a heartbeat that finds the job's lease
    /// lost aborts that task, so two instances never run one job at once.
    pub fn job_started(&self, id: &str, task: tokio::task::AbortHandle) {
        match self.pg() {
            Some(pg) => pg.job_started(id, task),
            None => drop(task),
        }
    }

    /// Renews at once the leases of the jobs this instance runs (the heartbeat does it every
    /// third of a lease) and stops the tasks whose lease was lost; returns how many it stopped.
    pub async fn renew_leases(&self) -> Result<usize, JournalError> {
        match self.pg() {
            Some(pg) => pg.renew_leases(self).await,
            None => Ok(0),
        }
    }

    pub async fn claim_due(&self, limit: usize) -> Result<(Vec<Job>, Option<i64>), JournalError> {
        if let Some(pg) = self.pg() {
            return pg.claim_due(self, limit).await;
        }
        self.call(move |conn| {
            let now = now_ms();
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM jobs WHERE status IN ('queued', 'retry_scheduled') AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, rowid LIMIT ?2",
                )?
                .query_map(params![now, limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut jobs = Vec::with_capacity(ids.len());
            for id in ids {
                conn.prepare_cached(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?2, updated_at = ?2,
                         next_attempt_at = NULL WHERE id = ?1",
                )?
                .execute(params![id, now])?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO job_attempts (job_id, attempt, started_at)
                     SELECT id, attempts, ?2 FROM jobs WHERE id = ?1",
                )?
                .execute(params![id, now])?;
                jobs.push(get_job(conn, &id)?);
            }
            Ok((jobs, next_due(conn)?))
        })
        .await
    }

    /// Marks a running job succeeded with its result and enqueues its follow-up jobs, atomically.
    pub async fn complete_job(
        &self,
        id: String,
        result: Value,
        follow_ups: Vec<NewJob>,
    ) -> Result<(), JournalError> {
        let text = serde_json::to_string(&result)?;
        if let Some(pg) = self.pg() {
            return pg.complete_job(self, id, text, follow_ups).await;
        }
        self.call(move |conn| {
            let now = now_ms();
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET status = 'succeeded', result = ?2, last_error = NULL, finished_at = ?3, updated_at = ?3
                     WHERE id = ?1 AND status = 'running'",
                )?
                .execute(params![id, text, now])?;
            if changed == 0 {
                // Cancelled or requeued meanwhile: the outcome of this attempt is dropped.
                return Ok(());
            }
            finish_attempt(conn, &id, "succeeded", None)?;
            for job in &follow_ups {
                insert_job(conn, job)?;
            }
            Ok(())
        })
        .await
    }

    /// Marks a running job failed for good.
    pub async fn fail_job(
        &self,
        id: String,
        error: Value,
        result: Option<Value>,
    ) -> Result<(), JournalError> {
        let text = serde_json::to_string(&error)?;
        let result_text = result.map(|r| serde_json::to_string(&r)).transpose()?;
        if let Some(pg) = self.pg() {
            return pg.fail_job(self, id, text, result_text).await;
        }
        self.call(move |conn| {
            let now = now_ms();
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET status = 'failed', last_error = ?2, result = COALESCE(?4, result), finished_at = ?3,
                         updated_at = ?3 WHERE id = ?1 AND status = 'running'",
                )?
                .execute(params![id, text, now, result_text])?;
            if changed > 0 {
                finish_attempt(conn, &id, "failed", Some(&text))?;
            }
            Ok(())
        })
        .await
    }

    /// Schedules another attempt of a running job at `at` (ms).
    pub async fn retry_job(&self, id: String, error: Value, at: i64) -> Result<(), JournalError> {
        let text = serde_json::to_string(&error)?;
        if let Some(pg) = self.pg() {
            return pg.retry_job(self, id, text, at).await;
        }
        self.call(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET status = 'retry_scheduled', last_error = ?2, next_attempt_at = ?3, updated_at = ?4
                     WHERE id = ?1 AND status = 'running'",
                )?
                .execute(params![id, text, at, now_ms()])?;
            if changed > 0 {
                finish_attempt(conn, &id, "retry_scheduled", Some(&text))?;
            }
            Ok(())
        })
        .await
    }

    /// Puts running jobs back in the queue: at start-up (the previous process died while they ran) or
    /// when a drain deadline passes. The interrupted attempt does not count against the job.
    pub async fn requeue_running(&self, ids: Option<Vec<String>>) -> Result<usize, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.requeue_running(self, ids).await;
        }
        self.call(move |conn| {
            let now = now_ms();
            let requeue = |id: &str| -> Result<usize, JournalError> {
                conn.prepare_cached(
                    "UPDATE job_attempts SET finished_at = ?2, outcome = 'interrupted'
                     WHERE job_id = ?1 AND finished_at IS NULL",
                )?
                .execute(params![id, now])?;
                Ok(conn
                    .prepare_cached(
                        "UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0), next_attempt_at = ?2,
                             updated_at = ?2 WHERE id = ?1 AND status = 'running'",
                    )?
                    .execute(params![id, now])?)
            };
            let ids: Vec<String> = match ids {
                Some(ids) => ids,
                None => conn
                    .prepare("SELECT id FROM jobs WHERE status = 'running'")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?,
            };
            let mut count = 0;
            for id in ids {
                count += requeue(&id)?;
            }
            Ok(count)
        })
        .await
    }

    /// Cancels a job that has not started (queued or waiting for a retry). Returns false otherwise.
    pub async fn cancel_job(&self, id: String) -> Result<bool, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.cancel_job(self, id).await;
        }
        self.call(move |conn| {
            let now = now_ms();
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?2, updated_at = ?2, next_attempt_at = NULL
                     WHERE id = ?1 AND status IN ('queued', 'retry_scheduled')",
                )?
                .execute(params![id, now])?;
            Ok(changed > 0)
        })
        .await
    }

    pub async fn get_job(&self, id: String) -> Result<Job, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.get_job(self, id).await;
        }
        self.call(move |conn| get_job(conn, &id)).await
    }

    pub async fn job_attempts(&self, id: String) -> Result<Vec<JobAttempt>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.job_attempts(self, id).await;
        }
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT attempt, started_at, finished_at, outcome, error FROM job_attempts WHERE job_id = ?1 ORDER BY attempt",
            )?;
            let rows = stmt.query_map([id], |row| {
                Ok(JobAttempt {
                    attempt: row.get(0)?,
                    started_at: row.get(1)?,
                    finished_at: row.get(2)?,
                    outcome: row.get(3)?,
                    error: json_col(row, 4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Jobs whose parent is `id` (follow-ups such as E1 after A2).
    pub async fn child_jobs(&self, id: String) -> Result<Vec<Job>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.child_jobs(self, id).await;
        }
        self.list_jobs_where(
            "parent_id = ?1 ORDER BY created_at, rowid",
            vec![Value::String(id)],
            100,
            0,
        )
        .await
    }

    /// Lists jobs matching a filter, newest first.
    pub async fn list_jobs(
        &self,
        filter: JobFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Job>, JournalError> {
        let (clause, args) = filter_clause(&filter, '?');
        if let Some(pg) = self.pg() {
            return pg.list_jobs(self, filter, limit, offset).await;
        }
        self.list_jobs_where(
            // Run ids carry random bits below the millisecond (they must be unguessable), so the
            // insertion order (rowid) breaks ties between jobs created in the same millisecond.
            &format!("{clause} ORDER BY created_at DESC, rowid DESC"),
            args,
            limit,
            offset,
        )
        .await
    }

    /// Counts jobs matching a filter.
    pub async fn count_jobs(&self, filter: JobFilter) -> Result<u64, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.count_jobs(self, filter).await;
        }
        let (clause, args) = filter_clause(&filter, '?');
        self.call(move |conn| {
            let sql = format!("SELECT COUNT(*) FROM jobs WHERE {clause}");
            let n: i64 = conn.query_row(
                &sql,
                rusqlite::params_from_iter(args.iter().map(sql_value)),
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    /// Number of jobs in each state (for /metrics).
    pub async fn job_counts(&self) -> Result<Vec<(String, u64)>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.job_counts(self).await;
        }
        self.call(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn list_jobs_where(
        &self,
        clause: &str,
        args: Vec<Value>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Job>, JournalError> {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} LIMIT {limit} OFFSET {offset}");
        self.call(move |conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(
                rusqlite::params_from_iter(args.iter().map(sql_value)),
                job_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// Builds a WHERE clause from fixed fragments and numbered parameters; no value is ever pasted in.
/// `mark` is the backend's parameter sign: `?` for SQLite (`?1`), `$` for Postgres (`$1`).
pub(super) fn filter_clause(filter: &JobFilter, mark: char) -> (String, Vec<Value>) {
    let mut parts: Vec<String> = vec!["1 = 1".into()];
    let mut args: Vec<Value> = Vec::new();
    let param = |v: Value, args: &mut Vec<Value>| {
        args.push(v);
        format!("{mark}{}", args.len())
    };
    if !filter.statuses.is_empty() {
        let list: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| param(Value::String(s.as_str().into()), &mut args))
            .collect();
        parts.push(format!("status IN ({})", list.join(", ")));
    }
    if let Some(scenario) = &filter.scenario {
        let p = param(Value::String(scenario.clone()), &mut args);
        parts.push(format!("scenario = {p}"));
    }
    if let Some(since) = filter.since {
        let p = param(Value::from(since), &mut args);
        parts.push(format!("created_at >= {p}"));
    }
    if let Some(until) = filter.until {
        let p = param(Value::from(until), &mut args);
        parts.push(format!("created_at < {p}"));
    }
    if !filter.ids.is_empty() {
        let list: Vec<String> = filter
            .ids
            .iter()
            .map(|id| param(Value::String(id.clone()), &mut args))
            .collect();
        parts.push(format!("id IN ({})", list.join(", ")));
    }
    (parts.join(" AND "), args)
}

fn sql_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap_or(0)),
        Value::String(s) => rusqlite::types::Value::Text(s.clone()),
        other => rusqlite::types::Value::Text(other.to_string()),
    }
}

fn next_due(conn: &Connection) -> Result<Option<i64>, JournalError> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE status IN ('queued', 'retry_scheduled')",
        )?
        .query_row([], |r| r.get::<_, Option<i64>>(0))?)
}

fn get_job(conn: &Connection, id: &str) -> Result<Job, JournalError> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], job_from_row)
        .optional()?
        .ok_or_else(|| JournalError::NotFound(format!("run {id}")))
}

#[cfg(test)]
mod tests {
    use super::new_job_id;

    #[test]
    fn a_job_id_is_run_and_a_v7_uuid_in_lowercase_hex_ordered_by_time() {
        let first = new_job_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_job_id();
        for id in [&first, &second] {
            let hex = id.strip_prefix("run_").expect("the run_ prefix");
            assert_eq!(hex.len(), 32, "{id}");
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
            let uuid = uuid::Uuid::parse_str(hex).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
        }
        assert!(first < second, "{first} then {second}");
        assert_ne!(new_job_id(), new_job_id());
    }
}
