//! Building and running the worker: journal, store, analyzer, job runner, HTTP server, poller.
//!
//! [`Application::build`] does everything that can fail before the first request (open the journal,
//! requeue jobs a dead process left running, bind the port), so a test gets a worker on a random port
//! (`COACH_LISTEN=127.0.0.1:0`) and its address, the zero2prod way.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::config::ServeConfig;
use crate::http::{AppState, Hooks, futures_ready::ReadyFuture};
use crate::jobs::{JobHandler, Runner, RunnerConfig, RunnerHandle};
use crate::journal::Journal;
use crate::webhook::Secret;

/// A task that runs beside the server (the poller), given the runner and a stop signal.
pub type BackgroundTask =
    Box<dyn FnOnce(RunnerHandle, tokio::sync::watch::Receiver<bool>) -> ReadyFuture + Send>;
/// Extra routes (the admin API and page).
pub type Routes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// The scenarios a worker serves: its hooks, job handlers, readiness check and background tasks.
pub struct Registry {
    pub hooks: Hooks,
    pub handlers: Vec<(String, Arc<dyn JobHandler>)>,
    pub ready: Arc<dyn Fn() -> ReadyFuture + Send + Sync>,
    /// Tasks that run beside the server (the poller); given the runner handle, stopped on shutdown.
    pub background: Vec<BackgroundTask>,
    /// Extra routes (the admin API and page).
    pub routes: Vec<Routes>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry {
            hooks: Hooks::new(),
            handlers: Vec::new(),
            ready: Arc::new(|| Box::pin(async { Ok(()) })),
            background: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// A built, bound, not yet running worker.
pub struct Application {
    port: u16,
    server: Server,
    runner: Runner,
    runner_handle: RunnerHandle,
    journal: Journal,
    drain: Duration,
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

        let state = web::Data::new(AppState {
            journal: journal.clone(),
            runner: runner_handle.clone(),
            hooks: Arc::new(registry.hooks),
            secrets: Arc::new(secrets),
            tolerance_secs: config.timestamp_tolerance_secs,
            max_body: config.max_body_bytes,
            prometheus: crate::telemetry::prometheus(),
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
                .configure(crate::http::configure);
            for route in &routes {
                let route = route.clone();
                app = app.configure(move |cfg| route(cfg));
            }
            app.default_service(web::to(crate::http::no_route))
        })
        .disable_signals()
        .max_connections(crate::http::MAX_CONNECTIONS_PER_WORKER)
        .client_request_timeout(crate::http::CLIENT_REQUEST_TIMEOUT)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            runner,
            runner_handle,
            journal,
            drain: Duration::from_secs(config.drain_secs),
            background: registry.background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting, drains running jobs up to the deadline
    /// and leaves the rest queued.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let server_handle = self.server.handle();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runner_task = tokio::spawn(self.runner.run(self.drain));
        let mut background = Vec::new();
        for task in self.background {
            background.push(tokio::spawn(task(
                self.runner_handle.clone(),
                stop_rx.clone(),
            )));
        }
        let server_task = tokio::spawn(self.server);
        self.runner_handle.wake();

        shutdown_signal().await;
        tracing::info!("shutdown requested: no new deliveries, draining running jobs");
        let _ = stop_tx.send(true);
        server_handle.stop(true).await;
        self.runner_handle.stop();
        let _ = runner_task.await;
        for task in background {
            let _ = task.await;
        }
        let _ = server_task.await;
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
