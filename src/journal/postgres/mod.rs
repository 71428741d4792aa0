//! The journal on Postgres: the same contract as the SQLite journal, for several instances sharing
//! one database (`COACH_DATABASE_URL=postgres://…`).
//!
//! ## Connections and group commit
//! A pool (`deadpool-postgres`, 16 connections) serves reads and single-statement writes, each in its
//! own implicit transaction. Intake (deliveries, enqueues) goes through [`WRITERS`] *writer tasks*
//! per instance, an operation to the writer its delivery (or dedupe) key hashes to. A writer drains
//! whatever operations have queued up for it, runs them on one connection inside one transaction,
//! commits once, and only then answers each caller — the SQLite journal's group commit, with a round
//! trip's worth of deliveries per commit instead of one commit each.
//!
//! Round trips, not statements, are what a batch costs on a busy machine (each one is a wake-up of
//! the server and of the writer), so the common operation, a delivery with its job, is journaled
//! *per batch* rather than per delivery ([`deliveries::accept_batch`]): one statement looks up the
//! keys already journaled and inserts the jobs of the others (`INSERT … SELECT FROM unnest(…) ON
//! CONFLICT DO NOTHING RETURNING id`), sent with `BEGIN` and the lookup of the active job of each
//! dedupe key; then, with the answers built from the job ids, one statement inserts the deliveries
//! (deleting the job made for a key another instance journaled meanwhile), sent with `COMMIT`. A
//! batch of deliveries is two round trips and one WAL flush, whatever its size. Rows go in key order,
//! so two batches meeting on the same keys wait for each other in one direction only and do not
//! deadlock. A batch holding other operations gives each of those a savepoint (sent with its first
//! statement), and each run of consecutive deliveries one, so that a failing operation does not undo
//! its neighbours; operations keep their order within a batch. One key always goes to the same
//! writer, so its operations keep their order (a guard's detached release comes before the retry
//! that follows it), and while one writer waits for its commit (the WAL flush) the other fills its
//! next batch. Two writers measured faster than four on two cores: fewer, larger batches cost the
//! server less per delivery, and one flush in flight hides the other's.
//!
//! The heartbeat has a connection of its own, outside the pool, opened again when it breaks: a pool
//! starved by intake or held by long work never delays a lease renewal.

//! ## Several instances
//! - **Identical deliveries** reaching different instances meet at the primary key of `deliveries`
//!   and the partial unique index of active dedupe keys on `jobs`: every insert is
//!   `ON CONFLICT DO NOTHING`, and the loser of a race (its insert waited for the winner's commit)
//!   deletes the job it made for the key and answers with the winner's answer.
//! - **Claims** take due jobs with `FOR UPDATE SKIP LOCKED`, so two runners never claim one job and
//!   never wait for each other. A claimed job holds a *lease* (`lease_owner` = the instance's
//!   incarnation, `lease_until`); a heartbeat task renews, every [`LEASE_MS`]/3, the leases of the
//!   jobs a task of this instance is still running (the runner reports each task's start and end),
//!   so a job whose task ended without writing its outcome (a lost claim answer, a failed outcome
//!   write, a panic) is not kept alive by a living instance. A running job whose lease expired (its
//!   instance died or hung, or its task is gone) is claimed again by whoever sees it first, except
//!   by an instance whose own task still runs it; the interrupted attempt does not count against it.
//!   When a heartbeat finds that a job this instance's task runs is no longer leased to it (another
//!   instance took it over, or the lease ran out before the renewal), it aborts that task through the
//!   handle the runner registered ([`PgJournal::job_started`]) and logs it: the job may be running
//!   elsewhere now, and this copy's side effects must not happen twice.
//!   Lease times come from each instance's clock, so the instances' clocks must agree to well
//!   within a lease (NTP). Start-up
//!   re-queues only expired leases, never the jobs of a live neighbour. A late completion from an
//!   instance that lost its lease is dropped (every finishing update checks `lease_owner`).
//! - **Reservations** of synchronous hooks carry the incarnation too. Live instances keep a row in
//!   `instances` fresh with the same heartbeat, and a reservation whose instance has not been seen
//!   for a lease period is released (by the heartbeat of any instance and at start-up).
//! - **Serialisation by key** (one active job per Run Request or Baseline Pack) is a row-level fact:
//!   the unique index of active dedupe keys. **D1s of one experiment one at a time** need mutual
//!   exclusion over work that is mostly outside the database (Airtable calls), so it is a *session
//!   advisory lock* on `hashtext('experiment:' || id)` held on a pooled connection for as long as the
//!   D1 runs ([`PgJournal::lock_key`]). A row lock would need a transaction open for the whole D1
//!   (seconds of Airtable latency holding a snapshot and a connection in `idle in transaction`), and
//!   a row to lock for every key; an advisory lock needs neither, and the server drops it when the
//!   holder's session ends, so a dead instance never leaves it behind.
//! - **One poller**: the instance that holds the session advisory lock [`POLLER_LOCK`] polls; the
//!   others try again every poll interval and take over when the holder's session ends.
//!
//! ## Migrations
//! A table of applied versions (`journal_migrations`) and a list of SQL scripts, applied at start in
//! one transaction under a transaction advisory lock, so instances starting together apply each
//! version once. About ten statements did not seem worth a migration crate (and its macros and
//! dependencies) on 2-core builds; the SQLite side works the same way with `user_version`.

mod deliveries;
mod jobs;
mod locks;
mod misc;
pub mod pacer;

pub use locks::KeyLock;
pub use pacer::PgPacer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::{Journal, JournalError, now_ms};

/// How long a claimed job's lease lasts without a heartbeat.
pub const LEASE_MS: i64 = 30_000;
/// Advisory lock key of the migrations (any constant: the ASCII of `coacmig`).
const MIGRATION_LOCK: i64 = 0x0063_6f61_636d_6967;
/// Advisory lock key of the poller's leadership (the ASCII of `coacpol`).
pub const POLLER_LOCK: i64 = 0x0063_6f61_6370_6f6c;
/// Largest number of operations committed in one transaction.
const MAX_BATCH: usize = 256;
/// Writer tasks per instance: while one waits for its commit, the other runs its batch (two beat
/// four on two cores: larger batches, less server work per delivery).
const WRITERS: usize = 2;

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Reply = Box<dyn FnOnce(bool) + Send>;
type Step = Box<dyn for<'a> FnOnce(&'a ClientWrapper) -> BoxFut<'a, (bool, Reply)> + Send>;

/// What a writer runs inside its batch's transaction.
pub(crate) enum Op {
    /// Any operation, in a savepoint of its own.
    Step(Step),
    /// A delivery with its job: consecutive ones are journaled together by a few multi-row
    /// statements ([`deliveries::accept_batch`]).
    Intake(Box<deliveries::Intake>),
}

/// True for the URLs that select this backend.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The Postgres side of a [`Journal`].
pub struct PgJournal {
    pool: Pool,
    /// One channel per writer task; an operation goes to the writer its key hashes to.
    writers: Vec<mpsc::UnboundedSender<Op>>,
    incarnation: Arc<str>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    writer_alive: Arc<AtomicBool>,
    /// Poked when this instance queued a job, so that the other instances hear of it.
    announce: Arc<Notify>,
    /// The jobs a task of this instance is running right now (the runner says when one starts and
    /// ends). Only their leases are renewed, so a job whose task is gone without writing its outcome
    /// (a lost claim answer, an outcome that could not be written, a panic) loses its lease and is
    /// taken over; and a claim never takes over one of them, so no job runs twice here.
    live: LiveJobs,
}

/// The jobs this instance's tasks are running, with the handle that stops a task (when the runner
/// gave one) should its job's lease be lost.
pub(crate) type LiveJobs =
    Arc<std::sync::Mutex<std::collections::HashMap<String, Option<tokio::task::AbortHandle>>>>;

impl Drop for PgJournal {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

const MIGRATIONS: &[&str] = &[
    // 1: the SQLite journal's tables as of its migration 3, with leases and the instances table.
    r#"
    CREATE TABLE deliveries (
        key TEXT PRIMARY KEY,
        scenario TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        response_status INTEGER,
        response_body TEXT,
        job_id TEXT,
        owner TEXT
    );
    CREATE INDEX deliveries_reserved ON deliveries(owner) WHERE response_status IS NULL;
    CREATE INDEX deliveries_received ON deliveries(received_at);
    CREATE INDEX deliveries_job ON deliveries(job_id);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq BIGSERIAL NOT NULL,
        kind TEXT NOT NULL,
        scenario TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        last_error TEXT,
        result TEXT,
        delivery_key TEXT,
        dedupe_key TEXT,
        parent_id TEXT,
        replay_of TEXT,
        options TEXT NOT NULL DEFAULT '{}',
        request_id TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        lease_owner TEXT,
        lease_until BIGINT
    );
    CREATE INDEX jobs_due ON jobs(status, next_attempt_at);
    CREATE INDEX jobs_created ON jobs(created_at, seq);
    CREATE INDEX jobs_parent ON jobs(parent_id);
    CREATE INDEX jobs_dedupe ON jobs(dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE UNIQUE INDEX jobs_active_dedupe ON jobs(dedupe_key)
        WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running', 'retry_scheduled');
    CREATE INDEX jobs_finished ON jobs(status, finished_at);
    CREATE INDEX jobs_replay_of ON jobs(replay_of) WHERE replay_of IS NOT NULL;
    CREATE INDEX jobs_lease ON jobs(lease_until) WHERE status = 'running';
    CREATE INDEX jobs_delivery ON jobs(delivery_key) WHERE delivery_key IS NOT NULL;
    CREATE TABLE job_attempts (
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        outcome TEXT,
        error TEXT,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE audit_log (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        count BIGINT NOT NULL DEFAULT 0,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE analysis_cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX analysis_cache_created ON analysis_cache(created_at);
    CREATE TABLE experiment_attempts (
        experiment_id TEXT PRIMARY KEY,
        runs TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE succeeded_keys (
        dedupe_key TEXT PRIMARY KEY,
        at BIGINT NOT NULL
    );
    CREATE INDEX succeeded_keys_at ON succeeded_keys(at);
    CREATE TABLE instances (
        incarnation TEXT PRIMARY KEY,
        seen_at BIGINT NOT NULL
    );
    "#,
    // 2: the pacing state of rate-limited APIs shared by every instance (one row per base).
    r#"
    CREATE TABLE api_pace (
        bucket TEXT PRIMARY KEY,
        tat BIGINT NOT NULL
    );
    "#,
];

/// Applies the migrations not applied yet. Safe to run from several instances at once: the first
/// takes the lock and applies them, the others wait for it and find nothing left to do.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<usize, JournalError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    // "already exists, skipping" notices of the second instance are not worth a log line.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS journal_migrations (
             version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(pg_err)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM journal_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    let mut applied = 0;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        if version <= current {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            JournalError::Unavailable(format!("journal migration {version} failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO journal_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .await
        .map_err(pg_err)?;
        applied += 1;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(applied)
}

/// Connects once and applies the migrations (for `coach-worker journal migrate`).
pub async fn migrate_url(url: &str) -> Result<usize, JournalError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| JournalError::Unavailable(format!("COACH_DATABASE_URL is not valid: {e}")))?;
    let (mut client, conn) = config.connect(NoTls).await.map_err(pg_err)?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let applied = migrate(&mut client).await;
    drop(client);
    let _ = task.await;
    applied
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> JournalError {
    match e.code() {
        Some(code) if code.code().starts_with("22") => JournalError::Corrupt(e.to_string()),
        _ => JournalError::Unavailable(format!("{e}")),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> JournalError {
    JournalError::Unavailable(format!("no database connection: {e}"))
}

impl PgJournal {
    pub(super) async fn connect(
        url: &str,
        incarnation: Arc<str>,
        jobs_queued: Arc<Notify>,
    ) -> Result<PgJournal, JournalError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            JournalError::Unavailable(format!("COACH_DATABASE_URL is not valid: {e}"))
        })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| JournalError::Unavailable(format!("cannot build the pool: {e}")))?;
        {
            let mut client = pool.get().await.map_err(pool_err)?;
            let client: &mut tokio_postgres::Client = &mut client;
            migrate(client).await?;
        }

        let writer_alive = Arc::new(AtomicBool::new(true));
        let mut writers = Vec::with_capacity(WRITERS);
        let mut tasks = Vec::with_capacity(WRITERS + 1);
        for _ in 0..WRITERS {
            let (writer, rx) = mpsc::unbounded_channel::<Op>();
            let alive = writer_alive.clone();
            let writer_pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                writer_loop(writer_pool, rx).await;
                alive.store(false, Ordering::SeqCst);
            }));
            writers.push(writer);
        }
        let live = LiveJobs::default();
        tasks.push(tokio::spawn(heartbeat_loop(
            config.clone(),
            incarnation.clone(),
            live.clone(),
        )));
        let announce = Arc::new(Notify::new());
        tasks.push(tokio::spawn(announce_loop(pool.clone(), announce.clone())));
        tasks.push(tokio::spawn(listen_loop(config.clone(), jobs_queued)));
        let pg = PgJournal {
            pool,
            writers,
            incarnation,
            tasks,
            writer_alive,
            announce,
            live,
        };
        // Alive from the start; reservations of dead instances are released by the start-up's
        // `release_orphaned` (which reports how many) and then by every heartbeat.
        pg.client()
            .await?
            .execute(
                "INSERT INTO instances (incarnation, seen_at) VALUES ($1, $2)
                 ON CONFLICT (incarnation) DO UPDATE SET seen_at = excluded.seen_at",
                &[&&*pg.incarnation, &now_ms()],
            )
            .await
            .map_err(pg_err)?;
        Ok(pg)
    }

    pub(super) fn is_alive(&self) -> bool {
        self.writer_alive.load(Ordering::SeqCst) && self.writers.iter().all(|w| !w.is_closed())
    }

    /// Tells the other instances' runners (through `NOTIFY`) that a job was queued.
    pub(crate) fn announce_jobs(&self) {
        self.announce.notify_one();
    }

    pub(crate) fn pacer(&self, bucket: &str, rate_per_sec: f64) -> PgPacer {
        PgPacer::new(self.pool.clone(), bucket, rate_per_sec)
    }

    pub(crate) fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, JournalError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// The runner started (`true`) or finished (`false`) running job `id` in this instance.
    pub(crate) fn job_live(&self, id: &str, live: bool) {
        let mut set = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live {
            set.insert(id.to_owned(), None);
        } else {
            set.remove(id);
        }
    }

    /// The runner started job `id` in the task `task`; the task is aborted if the job's lease is
    /// found lost.
    pub(crate) fn job_started(&self, id: &str, task: tokio::task::AbortHandle) {
        let mut set = self.live.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_owned(), Some(task));
    }

    /// Renews the leases of the jobs this instance runs now (on a pooled connection), and stops
    /// the tasks of those whose lease was lost. Returns how many tasks were stopped.
    pub(crate) async fn renew_leases(&self, j: &Journal) -> Result<usize, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        renew_leases(&client, &self.incarnation, &self.live).await
    }

    pub(crate) fn live_ids(&self) -> Vec<String> {
        live_ids(&self.live)
    }

    /// Runs `f` through the writer: inside the current batch's transaction, in its own savepoint,
    /// answered once the batch is committed.
    pub(crate) async fn write<T, F>(
        &self,
        j: &Journal,
        route: &str,
        f: F,
    ) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a ClientWrapper) -> BoxFut<'a, Result<T, JournalError>>
            + Send
            + 'static,
    {
        j.check_open()?;
        let (tx, rx) = oneshot::channel();
        let op: Step = Box::new(move |client| {
            Box::pin(async move {
                let result = f(client).await;
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
            })
        });
        self.writer_for(route)
            .send(Op::Step(op))
            .map_err(|_| JournalError::Unavailable("the journal writer has stopped".into()))?;
        rx.await
            .map_err(|_| JournalError::Unavailable("the journal writer has stopped".into()))?
    }

    /// Sends an intake operation to the writer of its delivery key.
    pub(crate) fn send_intake(
        &self,
        j: &Journal,
        intake: deliveries::Intake,
    ) -> Result<(), JournalError> {
        j.check_open()?;
        let route = intake.delivery.key.clone();
        self.writer_for(&route)
            .send(Op::Intake(Box::new(intake)))
            .map_err(|_| JournalError::Unavailable("the journal writer has stopped".into()))
    }

    /// Sends an operation to the writer without waiting (for `Drop`).
    pub(crate) fn write_detached(
        &self,
        route: &str,
        f: impl for<'a> FnOnce(&'a ClientWrapper) -> BoxFut<'a, bool> + Send + 'static,
    ) {
        let op: Step = Box::new(move |client| {
            Box::pin(async move {
                let ok = f(client).await;
                let reply: Reply = Box::new(|_| {});
                (ok, reply)
            })
        });
        let _ = self.writer_for(route).send(Op::Step(op));
    }

    /// The writer of operations on `route` (a delivery or dedupe key): one key always goes to the
    /// same writer, so its operations keep their order and two batches of one instance never wait
    /// for each other on the same key.
    fn writer_for(&self, route: &str) -> &mpsc::UnboundedSender<Op> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        route.hash(&mut hasher);
        &self.writers[(hasher.finish() % self.writers.len() as u64) as usize]
    }

    /// Waits until every operation sent to the writers so far is committed.
    pub(super) async fn shutdown(&self, _j: &Journal, wait: Duration) -> bool {
        let mut waits = Vec::with_capacity(self.writers.len());
        for writer in &self.writers {
            let (tx, rx) = oneshot::channel();
            let op: Step = Box::new(move |_| {
                Box::pin(async move {
                    let reply: Reply = Box::new(move |committed| {
                        let _ = tx.send(committed);
                    });
                    (true, reply)
                })
            });
            if writer.send(Op::Step(op)).is_err() {
                return false;
            }
            waits.push(rx);
        }
        let all = async {
            for rx in waits {
                if !matches!(rx.await, Ok(true)) {
                    return false;
                }
            }
            true
        };
        let drained = tokio::time::timeout(wait, all).await.unwrap_or(false);
        // The instance leaves: its row goes, so its reservations are released at once by others.
        if let Ok(client) = self.client().await {
            let _ = client
                .execute(
                    "DELETE FROM instances WHERE incarnation = $1",
                    &[&&*self.incarnation],
                )
                .await;
        }
        drained
    }

    pub(super) async fn ping(&self, j: &Journal) -> Result<(), JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(pg_err)?;
        Ok(())
    }
}

/// Renews the leases of the jobs this instance's tasks are running, and aborts the task of each
/// job whose lease is no longer this instance's: another instance took the job over, or the lease
/// ran out before this renewal (a heartbeat starved or cut off from the database for a whole lease,
/// after which any instance may take the job). Either way the job may now run elsewhere, so this
/// copy stops — its outcome would be dropped anyway, but its side effects (Airtable writes) would
/// not. A job no longer `running` (finished, cancelled) is left to its task, which is ending.
async fn renew_leases(
    client: &tokio_postgres::Client,
    me: &str,
    live: &LiveJobs,
) -> Result<usize, JournalError> {
    let ids = live_ids(live);
    if ids.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    // The final SELECT sees the rows as they were before the renewal (one snapshot): a row whose
    // lease was ours and valid then, but which the renewal skipped because our own task finished it
    // meanwhile, is not reported lost.
    let lost = client
        .query(
            "WITH renewed AS (
                 UPDATE jobs SET lease_until = $2
                 WHERE status = 'running' AND lease_owner = $1 AND lease_until >= $3 AND id = ANY($4)
                 RETURNING id)
             SELECT id, lease_owner FROM jobs
             WHERE id = ANY($4) AND id NOT IN (SELECT id FROM renewed) AND status = 'running'
               AND (lease_owner IS DISTINCT FROM $1 OR lease_until < $3)",
            &[&me, &(now + LEASE_MS), &now, &ids],
        )
        .await
        .map_err(pg_err)?;
    let mut stopped = 0;
    let set = live.lock().unwrap_or_else(|p| p.into_inner());
    for row in &lost {
        let id: String = row.get(0);
        let owner: Option<String> = row.get(1);
        if let Some(Some(task)) = set.get(&id) {
            task.abort();
            stopped += 1;
            tracing::warn!(job_id = %id, taken_over = owner.as_deref().is_some_and(|o| o != me),
                "the job's lease is no longer this instance's; its task here is stopped");
        }
    }
    Ok(stopped)
}

/// One heartbeat: this instance is alive, the leases of the jobs its tasks are running are renewed
/// (and the tasks of lost ones stopped), and the reservations of instances not seen for a lease
/// period are released.
async fn beat(
    client: &tokio_postgres::Client,
    me: &str,
    live: &LiveJobs,
) -> Result<(), JournalError> {
    let now = now_ms();
    client
        .execute(
            "INSERT INTO instances (incarnation, seen_at) VALUES ($1, $2)
             ON CONFLICT (incarnation) DO UPDATE SET seen_at = excluded.seen_at",
            &[&me, &now],
        )
        .await
        .map_err(pg_err)?;
    renew_leases(client, me, live).await?;
    release_dead_reservations(client, me, now).await?;
    client
        .execute(
            "DELETE FROM instances WHERE seen_at < $1",
            &[&(now - 10 * LEASE_MS)],
        )
        .await
        .map_err(pg_err)?;
    Ok(())
}

/// Deletes the reservations whose instance is gone (not `me`, not seen for a lease period).
pub(crate) async fn release_dead_reservations(
    client: &tokio_postgres::Client,
    me: &str,
    now: i64,
) -> Result<u64, JournalError> {
    client
        .execute(
            "DELETE FROM deliveries d WHERE d.response_status IS NULL
               AND (d.owner IS NULL OR (d.owner <> $1 AND NOT EXISTS (
                   SELECT 1 FROM instances i WHERE i.incarnation = d.owner AND i.seen_at >= $2)))",
            &[&me, &(now - LEASE_MS)],
        )
        .await
        .map_err(pg_err)
}

fn live_ids(live: &LiveJobs) -> Vec<String> {
    let set = live.lock().unwrap_or_else(|p| p.into_inner());
    set.keys().cloned().collect()
}

/// A connection of the heartbeat's own, outside the pool: a pool starved by intake or by long
/// transactions never delays a lease renewal.
struct Session {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn open_session(config: &tokio_postgres::Config) -> Result<Session, JournalError> {
    let (client, conn) = config.connect(NoTls).await.map_err(pg_err)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Session { client, driver })
}

async fn heartbeat_loop(config: tokio_postgres::Config, me: Arc<str>, live: LiveJobs) {
    let period = Duration::from_millis((LEASE_MS / 3) as u64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; `connect` has just marked the instance alive.
    tick.tick().await;
    let mut session: Option<Session> = None;
    loop {
        tick.tick().await;
        // A beat that fails on an existing session (the server restarted, the connection broke)
        // is tried once more at once on a new one; a beat never outlasts its period.
        let mut result = Err(JournalError::Unavailable("no heartbeat connection".into()));
        for _ in 0..2 {
            let attempt = tokio::time::timeout(period, async {
                if session.as_ref().is_none_or(|s| s.client.is_closed()) {
                    session = Some(open_session(&config).await?);
                }
                match &session {
                    Some(s) => beat(&s.client, &me, &live).await,
                    None => Err(JournalError::Unavailable("no heartbeat connection".into())),
                }
            })
            .await
            .unwrap_or_else(|_| Err(JournalError::Unavailable("the heartbeat timed out".into())));
            result = attempt;
            if result.is_ok() {
                break;
            }
            session = None;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "journal heartbeat failed; leases are renewed at the next one");
        }
    }
}

/// The channel on which instances announce queued jobs.
const JOBS_CHANNEL: &str = "coach_jobs_queued";

/// Sends one `NOTIFY` for however many jobs were queued since the last one (a burst of intake costs
/// a notification per round trip, not one per job).
async fn announce_loop(pool: Pool, announce: Arc<Notify>) {
    loop {
        announce.notified().await;
        if let Ok(client) = pool.get().await {
            let _ = client
                .batch_execute(&format!("NOTIFY {JOBS_CHANNEL}"))
                .await;
        }
    }
}

/// Listens on a connection of its own and wakes this instance's runner when any instance queued a
/// job, so a job accepted by one instance starts at once on whichever has room. Without it (the
/// connection is down) runners still look for due jobs every few seconds.
async fn listen_loop(config: tokio_postgres::Config, jobs_queued: Arc<Notify>) {
    loop {
        if let Ok((client, mut conn)) = config.connect(NoTls).await {
            let driver = async {
                while let Some(message) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                            jobs_queued.notify_one()
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            };
            let listen = async {
                if client
                    .batch_execute(&format!("LISTEN {JOBS_CHANNEL}"))
                    .await
                    .is_err()
                {
                    return;
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                _ = driver => {}
                _ = listen => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn simple(client: &ClientWrapper, sql: &str) -> bool {
    client.batch_execute(sql).await.is_ok()
}

async fn writer_loop(pool: Pool, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let client = match pool.get().await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "journal writer has no connection; the batch's callers are told to retry");
                // The operations are dropped unrun; their callers see the answer channels close.
                batch.clear();
                continue;
            }
        };
        if batch.iter().all(|op| matches!(op, Op::Intake(_))) {
            // Only deliveries (the common case under load): no savepoint is needed, as they
            // succeed or fail together; BEGIN and COMMIT travel with the statements.
            let (requests, senders): (Vec<_>, Vec<_>) = batch
                .drain(..)
                .filter_map(|op| match op {
                    Op::Intake(intake) => Some((*intake).split()),
                    Op::Step(_) => None,
                })
                .unzip();
            let (results, committed) = match deliveries::accept_batch(
                &client,
                requests,
                "BEGIN",
                Some("COMMIT"),
            )
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "journaling a batch of deliveries failed; their senders are told to retry");
                    let _ = client.batch_execute("ROLLBACK").await;
                    (Vec::new(), false)
                }
            };
            drop(client);
            answer_intake(senders, results, committed);
            continue;
        }
        // BEGIN travels with the batch's first statement, and each savepoint with its operation's
        // first statement: they are queued on the connection before any answer is awaited, so a
        // batch costs a round trip per step, not two.
        // Statements to send ahead of the next one (BEGIN, the release of the last savepoint).
        let mut prefix: &str = "BEGIN; ";
        let mut healthy = true;
        let mut ops = batch.drain(..).peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::Step(op) => {
                    if !healthy {
                        continue;
                    }
                    let savepoint = format!("{prefix}SAVEPOINT op");
                    prefix = "RELEASE op; ";
                    let (opened, (ok, reply)) =
                        tokio::join!(simple(&client, &savepoint), op(&client));
                    healthy = opened && (ok || simple(&client, "ROLLBACK TO op").await);
                    replies.push(reply);
                }
                Op::Intake(intake) => {
                    // Consecutive deliveries go together; a step between them keeps its place, so
                    // a key's operations still run in the order they were sent.
                    let mut run = vec![intake];
                    while let Some(Op::Intake(_)) = ops.peek() {
                        if let Some(Op::Intake(next)) = ops.next() {
                            run.push(next);
                        }
                    }
                    if !healthy {
                        continue;
                    }
                    let savepoint = format!("{prefix}SAVEPOINT intake");
                    prefix = "RELEASE intake; ";
                    let (requests, senders): (Vec<_>, Vec<_>) =
                        run.into_iter().map(|intake| (*intake).split()).unzip();
                    let results =
                        deliveries::accept_batch(&client, requests, &savepoint, None).await;
                    let results = match results {
                        Ok((results, _)) => results,
                        Err(e) => {
                            // The statements failed as a whole (a deadlock with another
                            // instance, a lost connection): these deliveries are not journaled
                            // and their senders retry; the rest of the batch stands.
                            tracing::warn!(error = %e, deliveries = senders.len(), "journaling a run of deliveries failed; their senders are told to retry");
                            healthy = simple(&client, "ROLLBACK TO intake").await;
                            Vec::new()
                        }
                    };
                    let mut results = results.into_iter();
                    for sender in senders {
                        let result = results.next().unwrap_or_else(not_journaled);
                        replies.push(Box::new(move |committed| {
                            let _ = sender.send(after_commit(result, committed));
                        }));
                    }
                }
            }
        }
        drop(ops);
        // Nothing was sent when every operation was skipped (there is always a first one).
        let begun = prefix != "BEGIN; ";
        let committed = healthy && begun && simple(&client, "COMMIT").await;
        if !committed && begun {
            let _ = client.batch_execute("ROLLBACK").await;
            tracing::error!("journal commit failed; the batch's callers are told to retry");
        }
        drop(client);
        for reply in replies.drain(..) {
            reply(committed);
        }
    }
}

fn not_journaled<T>() -> Result<T, JournalError> {
    Err(JournalError::Unavailable(
        "the delivery could not be journaled; retry shortly".into(),
    ))
}

/// An operation's answer once its batch's commit is known.
fn after_commit<T>(result: Result<T, JournalError>, committed: bool) -> Result<T, JournalError> {
    match result {
        Ok(_) if !committed => Err(JournalError::Unavailable("the commit failed".into())),
        other => other,
    }
}

/// Answers the senders of a batch of deliveries (results in the same order; missing ones failed).
fn answer_intake(
    senders: Vec<oneshot::Sender<deliveries::Accepted>>,
    results: Vec<deliveries::Accepted>,
    committed: bool,
) {
    let mut results = results.into_iter();
    for sender in senders {
        let result = results.next().unwrap_or_else(not_journaled);
        let _ = sender.send(after_commit(result, committed));
    }
}

/// A statement through the connection's statement cache.
pub(crate) async fn query(
    client: &ClientWrapper,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, JournalError> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    client.query(&stmt, params).await.map_err(pg_err)
}

pub(crate) async fn query_opt(
    client: &ClientWrapper,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, JournalError> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    client.query_opt(&stmt, params).await.map_err(pg_err)
}

pub(crate) async fn execute(
    client: &ClientWrapper,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, JournalError> {
    let stmt = client.prepare_cached(sql).await.map_err(pg_err)?;
    client.execute(&stmt, params).await.map_err(pg_err)
}

/// Coerces a closure to the higher-ranked shape [`PgJournal::write`] takes.
pub(crate) fn op<T, F>(f: F) -> F
where
    F: for<'a> FnOnce(&'a ClientWrapper) -> BoxFut<'a, Result<T, JournalError>>,
{
    f
}
