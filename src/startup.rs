//! Building and running the worker: journal, store, analyzer, job runner, HTTP server, poller.
//! With [`crate::app`] (what the worker serves) this is the composition root: nothing below imports
//! either.
//!
//! [`Application::build`] does everything that can fail before the first request (open the journal,
//! requeue jobs a dead process left running, release the synchronous deliveries it was answering,
//! bind the port), so a test gets a worker on a random port (`COACH_LISTEN=127.0.0.1:0`) and its
//! address, the zero2prod way.
//!
//! Shutdown has one deadline (`COACH_DRAIN_SECS`, under the platform's kill timeout): on SIGTERM the
//! server stops accepting connections and the runner stops claiming jobs at the same instant, then
//! in-flight requests and running jobs drain side by side until the deadline. Jobs still running then
//! are put back in the queue; the journal is closed last, after everything that writes to it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::config::ServeConfig;
use crate::http::AppState;
use crate::jobs::{Runner, RunnerConfig, RunnerHandle};
use crate::journal::Journal;
use crate::webhook::Secret;

pub use crate::app::{BackgroundTask, Registry};
pub use crate::http::Routes;

/// A built, bound, not yet running worker.
pub struct Application {
    port: u16,
    server: Server,
    runner: Runner,
    runner_handle: RunnerHandle,
    journal: Journal,
    drain: Duration,
    retention: crate::journal::Retention,
    background: Vec<BackgroundTask>,
}

impl Application {
    /// Builds a worker with the given scenarios. `journal` is opened by the caller because scenarios
    /// (the analysis cache, the admin) use it too.
    pub async fn build_with(
        config: &ServeConfig,
        secrets: Vec<Secret>,
        journal: Journal,
        registry: Registry,
    ) -> anyhow::Result<Application> {
        let requeued = journal
            .requeue_running(None)
            .await
            .context("recovering unfinished jobs")?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "jobs interrupted by the previous stop were put back in the queue"
            );
        }
        let released = journal
            .release_orphaned()
            .await
            .context("releasing interrupted deliveries")?;
        if released > 0 {
            tracing::warn!(
                released,
                "synchronous deliveries interrupted by the previous stop were released; their retries run them again"
            );
        }
        let retention = config.retention();
        journal.set_cache_ttl(Duration::from_millis(
            u64::try_from(retention.cache_ttl_ms()).unwrap_or(u64::MAX),
        ));

        let mut runner = Runner::new(
            journal.clone(),
            RunnerConfig {
                paused: config.pause_jobs,
                concurrency: config.max_concurrency,
                max_attempts: config.max_attempts,
                retry_base: Duration::from_millis(config.retry_base_ms),
                retry_max: Duration::from_secs(300),
            },
        );
        for (kind, handler) in registry.handlers {
            runner.register(&kind, handler);
        }
        let runner_handle = runner.handle();

        // The recorder goes in before the delivery counters are registered with it.
        let prometheus = crate::telemetry::prometheus();
        let state = web::Data::new(AppState {
            journal: journal.clone(),
            runner: runner_handle.clone(),
            delivery_counters: crate::http::hooks::DeliveryCounters::new(&registry.hooks),
            hooks: Arc::new(registry.hooks),
            secrets: Arc::new(secrets),
            tolerance_secs: config.timestamp_tolerance_secs,
            max_body: config.max_body_bytes,
            prometheus,
            ready: registry.ready,
            public_limit: Arc::new(crate::http::public_view_limiter()),
        });
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("COACH_LISTEN: cannot listen on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let routes = registry.routes;
        let server = HttpServer::new(move || {
            let mut app = App::new()
                .wrap(actix_web::middleware::from_fn(crate::http::harden))
                .wrap(actix_web::middleware::from_fn(crate::http::request_id))
                .app_data(state.clone())
                .configure(|cfg| crate::http::configure(cfg, &state.hooks));
            for route in &routes {
                let route = route.clone();
                app = app.configure(move |cfg| route(cfg));
            }
            app.default_service(web::to(crate::http::no_route))
        })
        .disable_signals()
        .max_connections(crate::http::MAX_CONNECTIONS_PER_WORKER)
        .client_request_timeout(crate::http::CLIENT_REQUEST_TIMEOUT)
        // The same deadline as the runner's: both drain at once (see the module docs).
        .shutdown_timeout(config.drain_secs)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            runner,
            runner_handle,
            journal,
            drain: Duration::from_secs(config.drain_secs),
            retention,
            background: registry.background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting and claiming, drains requests and jobs
    /// together up to the deadline, leaves unfinished jobs queued and closes the journal.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// [`Application::run_until_stopped`] with the stop signal given (tests use their own).
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let server_handle = self.server.handle();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runner_task = tokio::spawn(self.runner.run(self.drain));
        let sweeper = tokio::spawn(crate::journal::retention::run(
            self.journal.clone(),
            self.retention,
            stop_rx.clone(),
        ));
        let mut background = Vec::new();
        for task in self.background {
            background.push(tokio::spawn(task(
                self.runner_handle.clone(),
                stop_rx.clone(),
            )));
        }
        let server_task = tokio::spawn(self.server);
        self.runner_handle.wake();

        signal.await;
        tracing::info!(
            drain_secs = self.drain.as_secs(),
            "shutdown requested: no new connections or jobs; draining requests and running jobs"
        );
        let deadline = tokio::time::Instant::now() + self.drain;
        // Stop claiming before anything else: a job claimed now would only be cut off at the deadline.
        self.runner_handle.stop();
        let _ = stop_tx.send(true);
        let ((), _) = tokio::join!(server_handle.stop(true), runner_task);
        // The poller may be inside a slow Airtable call: it gets what is left of the deadline.
        for mut task in background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        let mut sweeper = sweeper;
        if tokio::time::timeout_at(deadline, &mut sweeper)
            .await
            .is_err()
        {
            sweeper.abort();
        }
        let _ = server_task.await;
        if !self.journal.shutdown(Duration::from_secs(1)).await {
            tracing::warn!("the journal did not confirm its last writes before the exit");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
