//! The job runner: takes due jobs from the journal and runs them with bounded concurrency.
//!
//! Jobs run on the main multi-thread tokio runtime (actix's workers are single-threaded runtimes, so
//! the HTTP side only writes to the journal and pokes the runner). The journal is the queue: the
//! runner holds nothing that is not also on disk, which is what makes recovery a single statement —
//! on start every job left `running` by a dead process goes back to `queued`.
//!
//! Errors marked transient are retried with exponential backoff and full jitter (from `backon`'s
//! builder; the delay is computed per attempt because the schedule is persisted in the journal, not
//! held in a loop), never sooner than a `Retry-After` the error carries. After the last attempt, or at
//! once for a permanent error, the job fails and its handler's `on_failed` writes the error where the
//! operator looks (the record in the store).
//!
//! Shutdown: stop claiming, give running jobs until the deadline, then put the unfinished ones back in
//! the queue for the next start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::journal::{Job, Journal, NewJob, now_ms};

/// How a job attempt failed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobError {
    pub code: String,
    pub message: String,
    pub transient: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl JobError {
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            code: code.into(),
            message: message.into(),
            transient: false,
            retry_after_ms: None,
            details: Value::Null,
        }
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            code: code.into(),
            message: message.into(),
            transient: true,
            retry_after_ms: None,
            details: Value::Null,
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> JobError {
        self.retry_after_ms = after.map(|d| d.as_millis() as u64);
        self
    }

    pub fn with_details(mut self, details: Value) -> JobError {
        self.details = details;
        self
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| json!({"code": self.code, "message": self.message}))
    }
}

/// The options a job carries besides its facts, stored in the journal's `options` column. Admin
/// replays set them; a job enqueued by a delivery, a chain or the poller has none (`{}`).
///
/// The serde names are the journal's keys, so rows written before these were typed read the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// The Run record the replayed job wrote (a replay's Run links it through `Replay Of`).
    #[serde(default)]
    pub replay_of_record: Option<coach_store::RecordId>,
    /// The first Run record of the chain of replays this job belongs to: D1 keys a meeting's attempt
    /// on it, so replaying a run updates its attempt event instead of counting the meeting twice.
    #[serde(default)]
    pub replay_root_record: Option<coach_store::RecordId>,
    /// Skip the analysis cache (an admin replay may ask for a fresh answer).
    #[serde(default)]
    pub bypass_cache: bool,
}

impl JobOptions {
    /// Reads a job's options; a row without options (`{}` or null) has the defaults.
    pub fn of(job: &Job) -> Result<JobOptions, JobError> {
        if job.options.is_null() {
            return Ok(JobOptions::default());
        }
        serde_json::from_value(job.options.clone()).map_err(|e| {
            JobError::permanent(
                "JOB_OPTIONS_INVALID",
                format!(
                    "the options of job {} do not read as job options: {e}",
                    job.id
                ),
            )
        })
    }

    /// The options as the journal stores them.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// What a successful attempt produced.
#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    pub result: Value,
    /// Jobs to enqueue atomically with this job's success (the chained scenarios).
    pub follow_ups: Vec<NewJob>,
}

/// What a handler sees of the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub job: Job,
    pub max_attempts: u32,
}

impl JobContext {
    pub fn is_last_attempt(&self) -> bool {
        self.job.attempts >= self.max_attempts
    }
}

/// A kind of job.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, ctx: &JobContext) -> Result<JobOutcome, JobError>;

    /// Called once when the job has failed for good (permanent error or attempts used up), to write
    /// the error where its users look. May return a result to keep with the job.
    async fn on_failed(&self, _ctx: &JobContext, _error: &JobError) -> Option<Value> {
        None
    }
}

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Run no jobs at all (they stay queued).
    pub paused: bool,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// The handle the rest of the worker keeps to the runner.
#[derive(Clone)]
pub struct RunnerHandle {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    settled: watch::Receiver<u64>,
}

impl RunnerHandle {
    /// Tells the runner that a job may be due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming jobs; running ones continue until the runner's drain deadline.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// How many job tasks have ended; it changes once each one's outcome is in the journal, so
    /// the test harness waits on it ("run until idle") instead of polling the journal.
    pub fn settled(&self) -> watch::Receiver<u64> {
        self.settled.clone()
    }
}

/// The job runner.
pub struct Runner {
    journal: Journal,
    handlers: Arc<HashMap<String, Arc<dyn JobHandler>>>,
    config: RunnerConfig,
    wake: Arc<Notify>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    settled: watch::Sender<u64>,
}

impl Runner {
    pub fn new(journal: Journal, config: RunnerConfig) -> Runner {
        let (stop_tx, stop_rx) = watch::channel(false);
        // The journal pokes this whenever it queues a job, whoever queued it.
        let wake = journal.job_notify();
        Runner {
            journal,
            handlers: Arc::new(HashMap::new()),
            config,
            wake,
            stop_tx,
            stop_rx,
            settled: watch::channel(0).0,
        }
    }

    /// Registers the handler of a job kind.
    pub fn register(&mut self, kind: &str, handler: Arc<dyn JobHandler>) {
        Arc::make_mut(&mut self.handlers).insert(kind.to_owned(), handler);
    }

    pub fn handle(&self) -> RunnerHandle {
        RunnerHandle {
            wake: self.wake.clone(),
            stop: self.stop_tx.clone(),
            settled: self.settled.subscribe(),
        }
    }

    /// Runs until stopped, then drains running jobs for up to `drain`; whatever is still running
    /// then goes back to the queue.
    pub async fn run(self, drain: Duration) {
        let mut stop = self.stop_rx.clone();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut running_ids: HashMap<tokio::task::Id, String> = HashMap::new();
        if self.config.paused {
            tracing::warn!(
                "jobs are paused (COACH_PAUSE_JOBS): deliveries are journaled, nothing runs"
            );
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        }
        loop {
            if *stop.borrow() {
                break;
            }
            while let Some(done) = running.try_join_next_with_id() {
                self.forget(&mut running_ids, done);
                self.settled.send_modify(|n| *n += 1);
            }
            let free = self.config.concurrency.saturating_sub(running.len());
            let mut next_due = None;
            if free > 0 {
                match self.journal.claim_due(free).await {
                    Ok((jobs, next)) => {
                        next_due = next;
                        for job in jobs {
                            let job_id = job.id.clone();
                            // Registered before this loop can reap the task: a lease found lost
                            // (the job taken over by another instance) aborts it through this
                            // handle; the claim's fresh lease covers the moment in between.
                            let handle = running.spawn(run_one(
                                self.journal.clone(),
                                self.handlers.clone(),
                                self.config.clone(),
                                self.wake.clone(),
                                job,
                            ));
                            running_ids.insert(handle.id(), job_id.clone());
                            self.journal.job_started(&job_id, handle);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "claiming jobs failed"),
                }
            }
            let sleep_for = match next_due {
                Some(at) if running.len() < self.config.concurrency => {
                    Duration::from_millis((at - now_ms()).clamp(0, 5_000) as u64)
                }
                _ => Duration::from_secs(5),
            };
            if sleep_for.is_zero() && running.len() < self.config.concurrency {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    self.forget(&mut running_ids, done);
                    self.settled.send_modify(|n| *n += 1);
                }
                _ = stop.changed() => {}
            }
        }

        tracing::info!(running = running.len(), "job runner draining");
        let deadline = tokio::time::Instant::now() + drain;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.join_next_with_id()).await {
                Ok(Some(done)) => {
                    self.forget(&mut running_ids, done);
                }
                Ok(None) => break,
                Err(_) => {
                    running.abort_all();
                    let left: Vec<String> = running_ids.values().cloned().collect();
                    match self.journal.requeue_running(Some(left)).await {
                        Ok(n) => tracing::warn!(
                            requeued = n,
                            "drain deadline passed; unfinished jobs left queued"
                        ),
                        Err(e) => tracing::error!(error = %e, "could not requeue unfinished jobs"),
                    }
                    break;
                }
            }
        }
    }
}

impl Runner {
    /// A job task ended (returned or panicked): it no longer holds its job.
    fn forget(
        &self,
        running_ids: &mut HashMap<tokio::task::Id, String>,
        done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    ) {
        let stopped = matches!(&done, Err(e) if e.is_cancelled());
        if let Some(job_id) = running_ids.remove(&finished_task(done)) {
            if stopped {
                tracing::warn!(job_id = %job_id, "job task stopped: its lease was lost");
            }
            self.journal.job_live(&job_id, false);
        }
    }
}

/// The task id of a finished job task, whether it returned or panicked.
fn finished_task(done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match done {
        Ok((id, ())) => id,
        Err(e) => e.id(),
    }
}

/// The delay before attempt `attempt + 1`, from backon's exponential builder with jitter.
pub fn retry_delay(config: &RunnerConfig, attempt: u32) -> Duration {
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(config.retry_base)
        .with_max_delay(config.retry_max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(attempt as usize)
        .build();
    delays
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(config.retry_max)
}

async fn run_one(
    journal: Journal,
    handlers: Arc<HashMap<String, Arc<dyn JobHandler>>>,
    config: RunnerConfig,
    wake: Arc<Notify>,
    job: Job,
) {
    let ctx = JobContext {
        max_attempts: config.max_attempts,
        job,
    };
    let id = ctx.job.id.clone();
    // The request id of the delivery that created the job joins its logs to the delivery's.
    let span = tracing::info_span!(
        "job",
        job_id = %id,
        kind = %ctx.job.kind,
        attempt = ctx.job.attempts,
        request_id = ctx.job.request_id.as_deref(),
        delivery_key = ctx.job.delivery_key.as_deref(),
    );
    let Some(handler) = handlers.get(&ctx.job.kind).cloned() else {
        let err = JobError::permanent(
            "UNKNOWN_JOB_KIND",
            format!("no handler for job kind `{}`", ctx.job.kind),
        );
        let _ = journal.fail_job(id, err.to_value(), None).await;
        return;
    };
    let started = std::time::Instant::now();
    let outcome = {
        use tracing::Instrument;
        handler.run(&ctx).instrument(span.clone()).await
    };
    let elapsed = started.elapsed().as_secs_f64();
    metrics::histogram!("job_duration_seconds", "kind" => ctx.job.kind.clone()).record(elapsed);
    let recorded = match outcome {
        Ok(outcome) => {
            metrics::counter!("jobs_finished_total", "kind" => ctx.job.kind.clone(), "outcome" => "succeeded")
                .increment(1);
            tracing::info!(parent: &span, elapsed_ms = (elapsed * 1000.0) as u64, "job succeeded");
            journal
                .complete_job(id, outcome.result, outcome.follow_ups)
                .await
        }
        Err(err) if err.transient && !ctx.is_last_attempt() => {
            let backoff = retry_delay(&config, ctx.job.attempts);
            let wait = backoff.max(Duration::from_millis(err.retry_after_ms.unwrap_or(0)));
            metrics::counter!("job_retries_total", "kind" => ctx.job.kind.clone()).increment(1);
            tracing::warn!(parent: &span, code = %err.code, retry_in_ms = wait.as_millis() as u64, "job attempt failed; retry scheduled");
            journal
                .retry_job(id, err.to_value(), now_ms() + wait.as_millis() as i64)
                .await
        }
        Err(err) => {
            metrics::counter!("jobs_finished_total", "kind" => ctx.job.kind.clone(), "outcome" => "failed").increment(1);
            tracing::warn!(parent: &span, code = %err.code, "job failed");
            let result = {
                use tracing::Instrument;
                handler.on_failed(&ctx, &err).instrument(span.clone()).await
            };
            journal.fail_job(id, err.to_value(), result).await
        }
    };
    if let Err(e) = recorded {
        // The attempt's outcome could not be written: the job stays `running` and is requeued on the
        // next start, so it runs again rather than being lost.
        tracing::error!(parent: &span, error = %e, "could not record the job outcome");
    }
    wake.notify_one();
}
