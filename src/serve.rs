//! `coach-worker serve`: opens the journal and the store, registers the scenarios, runs the worker.

use crate::config::ServeConfig;
use crate::journal::Journal;
use crate::startup::{Application, Registry};
use crate::webhook::Secret;

/// Builds and runs the worker until it is told to stop.
pub async fn run(config: ServeConfig, secrets: Vec<Secret>, _demo: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let journal = Journal::open(&config.journal_path())?;
    let registry = Registry::empty();
    let app = Application::build_with(&config, secrets, journal, registry).await?;
    tracing::info!(
        port = app.port(),
        listen = %config.listen,
        startup_ms = started.elapsed().as_millis() as u64,
        "coach-worker listening"
    );
    app.run_until_stopped().await
}
