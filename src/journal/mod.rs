//! The journal: the worker's own SQLite database (WAL) of deliveries, jobs, attempts, the admin audit
//! log, the analysis cache and the experiment attempt tally.
//!
//! One OS thread owns the connection and every operation is a closure sent to it over a channel. The
//! thread drains whatever has queued up, runs the batch inside one transaction (each operation in a
//! savepoint, so one failing operation does not undo its neighbours) and commits once; a second
//! thread flushes the write-ahead log to disk and only then answers each caller ([`writer`]). That is
//! group commit: under load a single flush covers many deliveries, and no caller is ever told "done"
//! before its write is durable against power loss as well as a crash of the process. Serialising every
//! write through one thread is also what makes "100 identical deliveries at once give one job" a plain
//! read-then-insert.
//!
//! Each opened handle has an *incarnation* id. A synchronous hook's reservation is stamped with it, so
//! the worker that starts after a crash can tell reservations nobody is working on any more (every
//! one not its own) from its own, and release them (see [`deliveries`]).
//!
//! Nothing is kept forever: [`retention`] deletes finished work in small batches and gives the space
//! back with `auto_vacuum = INCREMENTAL`.

mod audit;
mod cluster;
mod deliveries;
mod frame_vfs;
mod inbox;
mod jobs;
pub mod postgres;
pub mod retention;
mod tally;
mod writer;

pub use audit::{AuditEntry, NewAudit};
pub use deliveries::{Delivery, DeliveryOutcome, NewDelivery};
pub use jobs::{Job, JobAttempt, JobFilter, JobStatus, NewJob};
pub use retention::{Retention, SweepCounts};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Errors of the journal. `Unavailable` maps to 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the journal is unavailable ({0}); retry shortly")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("journal data is corrupt: {0}")]
    Corrupt(String),
}

impl JournalError {
    pub fn code(&self) -> &'static str {
        match self {
            JournalError::Unavailable(_) => "JOURNAL_UNAVAILABLE",
            JournalError::NotFound(_) => "NOT_FOUND",
            JournalError::Corrupt(_) => "JOURNAL_CORRUPT",
        }
    }
}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => JournalError::NotFound("row".into()),
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => JournalError::Corrupt(e.to_string()),
            other => JournalError::Unavailable(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for JournalError {
    fn from(e: serde_json::Error) -> Self {
        JournalError::Corrupt(e.to_string())
    }
}

use writer::{Op, Reply};

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
    closed: Arc<AtomicBool>,
    /// Notified after a commit that queued a job, so the runner starts it at once.
    jobs_queued: Arc<tokio::sync::Notify>,
    /// This handle's incarnation: stamped on the reservations it makes.
    incarnation: Arc<str>,
    /// Age (ms) after which a cached analysis is no longer served (and is swept).
    cache_ttl_ms: Arc<AtomicI64>,
}

/// Where the journal lives: the embedded SQLite file (one thread owns the connection), or a Postgres
/// database shared by several instances (see [`postgres`]). Each public method of the SQLite
/// implementation starts with one line that hands a Postgres journal over to [`postgres::PgJournal`].
#[derive(Clone)]
enum Backend {
    Sqlite {
        tx: mpsc::UnboundedSender<Op>,
        alive: Arc<AtomicBool>,
    },
    Postgres(Arc<postgres::PgJournal>),
}

const MIGRATIONS: &[&str] = &[
    // 1: deliveries, jobs, attempts, audit log, analysis cache.
    r#"
    CREATE TABLE deliveries (
        key TEXT PRIMARY KEY,
        scenario TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        response_status INTEGER,
        response_body TEXT,
        job_id TEXT
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        scenario TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        last_error TEXT,
        result TEXT,
        delivery_key TEXT,
        dedupe_key TEXT,
        parent_id TEXT,
        replay_of TEXT,
        options TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER
    );
    CREATE INDEX jobs_due ON jobs(status, next_attempt_at);
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE INDEX jobs_parent ON jobs(parent_id);
    CREATE UNIQUE INDEX jobs_active_dedupe ON jobs(dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running', 'retry_scheduled');
    CREATE TABLE job_attempts (
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        outcome TEXT,
        error TEXT,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        count INTEGER NOT NULL DEFAULT 0,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE analysis_cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 2: finished jobs looked up by dedupe key; the runs each experiment has an attempt event for.
    r#"
    CREATE INDEX jobs_dedupe ON jobs(dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE TABLE experiment_attempts (
        experiment_id TEXT PRIMARY KEY,
        runs TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // 3: the incarnation that holds a reservation; what the retention sweep walks; the dedupe keys of
    // swept succeeded jobs (so `succeeded_before` stays true after their rows are gone).
    r#"
    ALTER TABLE deliveries ADD COLUMN owner TEXT;
    CREATE INDEX deliveries_reserved ON deliveries(owner) WHERE response_status IS NULL;
    CREATE INDEX deliveries_received ON deliveries(received_at);
    CREATE INDEX jobs_finished ON jobs(status, finished_at);
    CREATE INDEX jobs_replay_of ON jobs(replay_of) WHERE replay_of IS NOT NULL;
    CREATE INDEX analysis_cache_created ON analysis_cache(created_at);
    CREATE TABLE succeeded_keys (
        dedupe_key TEXT PRIMARY KEY,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX succeeded_keys_at ON succeeded_keys(at);
    "#,
    // 4: the request id of the delivery that created a job (its logs carry it).
    r#"
    ALTER TABLE jobs ADD COLUMN request_id TEXT;
    "#,
    // 5: indexes that a new job no longer writes to. Intake inserts a queued job with no parent and
    // no finish time; only the unique active-dedupe index must see it then. "Succeeded before" reads
    // succeeded jobs only, and the parent and finish-time lookups never ask for NULL, so those indexes
    // hold just the rows they can return, and an intake touches two random index pages instead of
    // three (the other indexes append).
    r#"
    DROP INDEX jobs_dedupe;
    CREATE INDEX jobs_succeeded ON jobs(dedupe_key) WHERE status = 'succeeded' AND dedupe_key IS NOT NULL;
    DROP INDEX jobs_parent;
    CREATE INDEX jobs_parent ON jobs(parent_id) WHERE parent_id IS NOT NULL;
    DROP INDEX jobs_finished;
    CREATE INDEX jobs_finished ON jobs(status, finished_at) WHERE finished_at IS NOT NULL;
    "#,
];

impl Journal {
    /// Opens (creating if needed) the journal at `path`, applies migrations, and starts its thread.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Self::open_gated(path, None)
    }

    fn open_gated(path: &Path, gate: Option<writer::FlushGate>) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                JournalError::Unavailable(format!(
                    "cannot create the data folder {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let conn = frame_vfs::open_connection(path)?;
        conn.busy_handler(Some(writer::busy_retry))?;
        retention::incremental_vacuum_mode(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Commits write the WAL without waiting for the disk; the flusher thread syncs the WAL before
        // any caller is answered, which is as durable as FULL (see `writer`).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Each operation runs in a savepoint; its statement journal (the pages to restore if the
        // operation fails) is scratch that dies with the transaction, so it is kept in memory rather
        // than in a temporary file opened, written and closed by many batches.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints are the checkpointer thread's (see `writer`); the writer checkpoints by itself
        // only if that thread falls far behind. Durability is the WAL's and its flush before each
        // answer, whatever the checkpoint interval. https://www.sqlite.org/wal.html
        conn.pragma_update(None, "wal_autocheckpoint", writer::WRITER_CHECKPOINT_FRAMES)?;
        // Truncate a WAL grown past this after a checkpoint resets it, so it does not keep its peak size.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        migrate(&conn)?;
        frame_vfs::write_held_frames(&conn)?;

        let (tx, rx) = mpsc::unbounded_channel::<Op>();
        let alive = Arc::new(AtomicBool::new(true));
        writer::start(conn, path, rx, alive.clone(), gate)?;
        Ok(Journal::with_backend(Backend::Sqlite { tx, alive }))
    }

    /// Opens the journal the settings name: Postgres for a `postgres://` (or `postgresql://`) URL in
    /// `database_url`, else the SQLite file at `path`.
    pub async fn open_for(
        database_url: Option<&str>,
        path: &Path,
    ) -> Result<Journal, JournalError> {
        match database_url {
            Some(url) if postgres::is_postgres_url(url) => Journal::connect(url).await,
            _ => Journal::open(path),
        }
    }

    /// Connects to a Postgres journal, applies its migrations and starts its writer and lease tasks.
    pub async fn connect(url: &str) -> Result<Journal, JournalError> {
        let incarnation: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
        let jobs_queued = Arc::new(tokio::sync::Notify::new());
        let pg =
            postgres::PgJournal::connect(url, incarnation.clone(), jobs_queued.clone()).await?;
        let mut journal = Journal::with_backend(Backend::Postgres(Arc::new(pg)));
        journal.incarnation = incarnation;
        journal.jobs_queued = jobs_queued;
        Ok(journal)
    }

    fn with_backend(backend: Backend) -> Journal {
        Journal {
            backend,
            closed: Arc::new(AtomicBool::new(false)),
            jobs_queued: Arc::new(tokio::sync::Notify::new()),
            incarnation: uuid::Uuid::now_v7().simple().to_string().into(),
            cache_ttl_ms: Arc::new(AtomicI64::new(Retention::default().cache_ttl_ms())),
        }
    }

    /// The Postgres backend, when the journal is on Postgres.
    pub(crate) fn pg(&self) -> Option<&postgres::PgJournal> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite { .. } => None,
        }
    }

    /// The backend's name, for logs: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The current cache TTL in milliseconds.
    pub(crate) fn cache_ttl(&self) -> i64 {
        self.cache_ttl_ms.load(Ordering::SeqCst)
    }

    /// Refuses an operation once the journal is closed (both backends).
    pub(crate) fn check_open(&self) -> Result<(), JournalError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(JournalError::Unavailable("the journal is closed".into()));
        }
        Ok(())
    }

    /// The incarnation id of this handle (stamped on its reservations).
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Runs `f` on the journal thread inside the current batch's transaction and returns its result
    /// once the transaction is committed. An `Err` from `f` rolls back only `f`'s own writes.
    ///
    /// SQLite only (tests and tools reach into the file with it); on Postgres it answers
    /// `Unavailable`. Code of the worker uses the named methods, which both backends implement.
    pub async fn call<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        self.send_call(f, true).await
    }

    /// [`Journal::call`] for an operation whose every check that can fail comes before its first
    /// write (intake: look the key up, then insert). It runs without a savepoint of its own, which
    /// spares the writer a copy of every page the operation touches; each statement is atomic by
    /// itself. Should it fail after writing all the same (an I/O error), the whole batch is rolled
    /// back and every caller in it is told to retry (see `writer`).
    pub(crate) async fn call_checks_first<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        self.send_call(f, false).await
    }

    async fn send_call<T, F>(&self, f: F, savepoint: bool) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        self.check_open()?;
        let Backend::Sqlite { tx: sender, .. } = &self.backend else {
            return Err(JournalError::Unavailable(
                "a raw SQLite operation was sent to a Postgres journal".into(),
            ));
        };
        let (tx, rx) = oneshot::channel();
        let op = Op::new(savepoint, move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let answer = match result {
                    Ok(_) if !committed => {
                        Err(JournalError::Unavailable("the commit failed".into()))
                    }
                    other => other,
                };
                let _ = tx.send(answer);
            });
            (ok, reply)
        });
        sender
            .send(op)
            .map_err(|_| JournalError::Unavailable("the journal thread has stopped".into()))?;
        rx.await
            .map_err(|_| JournalError::Unavailable("the journal thread has stopped".into()))?
    }

    /// The notification the job runner waits on: poked after every commit that queued a job.
    pub fn job_notify(&self) -> Arc<tokio::sync::Notify> {
        self.jobs_queued.clone()
    }

    pub(crate) fn jobs_queued(&self) {
        self.jobs_queued.notify_one();
        if let Some(pg) = self.pg() {
            pg.announce_jobs();
        }
    }

    /// True while the journal thread (SQLite) or writer task (Postgres) runs (for `/readyz`).
    pub fn is_alive(&self) -> bool {
        let running = match &self.backend {
            Backend::Sqlite { tx, alive } => alive.load(Ordering::SeqCst) && !tx.is_closed(),
            Backend::Postgres(pg) => pg.is_alive(),
        };
        running && !self.closed.load(Ordering::SeqCst)
    }

    /// Refuses every later operation (for every clone of this handle); operations already sent still
    /// complete. Used at the end of a shutdown, and by tests to see how the worker behaves when its
    /// journal is gone.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// The last step of a shutdown: refuses new operations (for every clone) and waits, up to
    /// `wait`, until every operation already sent is committed. Returns false when the wait ran out.
    pub async fn shutdown(&self, wait: std::time::Duration) -> bool {
        self.close();
        let sender = match &self.backend {
            Backend::Sqlite { tx, .. } => tx,
            Backend::Postgres(pg) => return pg.shutdown(self, wait).await,
        };
        // The writer works in arrival order: once this no-op is answered, all before it are durable.
        let (tx, rx) = oneshot::channel();
        let op = Op::new(false, move |_| {
            let reply: Reply = Box::new(move |committed| {
                let _ = tx.send(committed);
            });
            (true, reply)
        });
        if sender.send(op).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(true)))
    }

    /// Sends an operation without waiting for its answer (for use where nothing can await, such as
    /// `Drop`). Refused, like every operation, once the journal is closed.
    pub(crate) fn send_detached(&self, f: impl FnOnce(&Connection) -> bool + Send + 'static) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let Backend::Sqlite { tx, .. } = &self.backend else {
            return;
        };
        let op = Op::new(true, move |conn| (f(conn), Box::new(|_| {}) as Reply));
        let _ = tx.send(op);
    }

    /// Sets how long a cached analysis is served.
    pub fn set_cache_ttl(&self, ttl: std::time::Duration) {
        self.cache_ttl_ms.store(
            ttl.as_millis().min(i64::MAX as u128) as i64,
            Ordering::SeqCst,
        );
    }

    /// A cheap round trip through the journal thread.
    pub async fn ping(&self) -> Result<(), JournalError> {
        if let Some(pg) = self.pg() {
            return pg.ping(self).await;
        }
        self.call(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Looks up a cached analysis answer younger than the cache TTL.
    pub async fn cache_get(&self, key: String) -> Result<Option<serde_json::Value>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.cache_get(self, key).await;
        }
        let ttl = self.cache_ttl_ms.load(Ordering::SeqCst);
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT value FROM analysis_cache WHERE key = ?1 AND created_at >= ?2",
            )?;
            let mut rows = stmt.query(rusqlite::params![&key, now_ms().saturating_sub(ttl)])?;
            match rows.next()? {
                Some(row) => {
                    let text: String = row.get(0)?;
                    Ok(Some(serde_json::from_str(&text)?))
                }
                None => Ok(None),
            }
        })
        .await
    }

    /// Stores an analysis answer under its cache key.
    pub async fn cache_put(
        &self,
        key: String,
        value: &serde_json::Value,
    ) -> Result<(), JournalError> {
        let text = serde_json::to_string(value)?;
        if let Some(pg) = self.pg() {
            return pg.cache_put(self, key, text).await;
        }
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO analysis_cache (key, value, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
            )?
            .execute(rusqlite::params![key, text, now_ms()])?;
            Ok(())
        })
        .await
    }
}

fn migrate(conn: &Connection) -> Result<(), JournalError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(version).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied = conn
            .execute_batch(sql)
            .and_then(|_| conn.pragma_update(None, "user_version", (index + 1) as i64));
        match applied {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(JournalError::Unavailable(format!(
                    "migration {} failed: {e}",
                    index + 1
                )));
            }
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 text of a millisecond timestamp, for API answers.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
