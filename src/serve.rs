//! `coach-worker serve`: opens the journal and the store, picks the analyzer, registers the
//! scenarios, and runs the worker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coach_coaching::{Analyzer, OpenAiClient};
use coach_store::{AirtableConfig, Store};
use secrecy::ExposeSecret;

use crate::config::{ProviderChoice, ServeConfig};
use crate::journal::Journal;
use crate::scenarios::Deps;
use crate::startup::{Application, Registry};
use crate::webhook::Secret;

/// The record store the settings select: Airtable when `AIRTABLE_TOKEN` is set, else SQLite.
pub fn store(config: &ServeConfig) -> anyhow::Result<Store> {
    match (&config.airtable_token, &config.airtable_base_id) {
        (Some(token), Some(base)) => {
            let mut cfg = AirtableConfig::new(token.expose_secret(), base.clone());
            cfg.api_url = config.airtable_api_url.trim_end_matches('/').to_owned();
            cfg.rate_limit_wait = Duration::from_secs(config.airtable_rate_limit_wait_secs);
            Store::airtable(cfg).context("AIRTABLE_TOKEN: cannot set up the Airtable store")
        }
        _ => {
            prepare_data_dir(config)?;
            #[cfg(unix)]
            secure_db(&config.store_path(), true).with_context(|| {
                format!(
                    "COACH_DATA_DIR: cannot create {}",
                    config.store_path().display()
                )
            })?;
            Store::sqlite(&config.store_path())
                .context("COACH_DATA_DIR: cannot open the embedded store")
        }
    }
}

/// Creates `COACH_DATA_DIR` readable by the worker's user only (0700) and the journal 0600, and
/// tightens the folder and both databases when an older version left them open to everyone: they
/// hold raw deliveries and transcripts.
pub fn prepare_data_dir(config: &ServeConfig) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    let fail = |e: std::io::Error| {
        anyhow::anyhow!("COACH_DATA_DIR: cannot prepare {}: {e}", dir.display())
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        secure_db(&config.journal_path(), true).map_err(fail)?;
        secure_db(&config.store_path(), false).map_err(fail)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(fail)?;
    Ok(())
}

/// Makes a database file (and its `-wal` and `-shm` files) 0600, creating it empty first when
/// `create` is set: SQLite gives the files it creates beside a database the database's permissions,
/// so a file that starts 0600 keeps its sidecars 0600 too.
#[cfg(unix)]
fn secure_db(db: &std::path::Path, create: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if create {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// The analyzer the settings select.
pub fn analyzer(config: &ServeConfig) -> anyhow::Result<Analyzer> {
    match config.provider_choice()? {
        ProviderChoice::Rules => Ok(Analyzer::Rules),
        ProviderChoice::OpenAi => {
            let cfg = config
                .openai
                .client_config()?
                .context("OPENAI_API_KEY: no OpenAI-compatible provider is configured")?;
            tracing::info!(
                model = %cfg.model,
                host = %cfg.provider_host(),
                azure = cfg.azure.is_some(),
                "coaching with an OpenAI-compatible provider"
            );
            Ok(Analyzer::OpenAi(
                OpenAiClient::new(cfg).map_err(|e| anyhow::anyhow!("OPENAI_API_KEY: {e}"))?,
            ))
        }
    }
}

/// The journal the settings select: Postgres for a `postgres://` `COACH_DATABASE_URL` (with the
/// Airtable pacing shared through it), else the SQLite file in `COACH_DATA_DIR`.
pub async fn open_journal(config: &ServeConfig) -> anyhow::Result<Journal> {
    let url = config.database_url.as_ref().map(|u| u.expose_secret());
    let journal = Journal::open_for(url, &config.journal_path())
        .await
        .context(match url {
            Some(_) => "COACH_DATABASE_URL: cannot open the journal",
            None => "COACH_DATA_DIR: cannot open the journal",
        })?;
    if journal.pg().is_some() {
        let shared = journal.clone();
        coach_store::rate::install_shared_pacer(Arc::new(move |bucket, rate| {
            match shared.shared_pacer(bucket, rate) {
                Some(pacer) => Arc::new(pacer) as Arc<dyn coach_store::rate::Pacer>,
                None => unreachable_pacer(),
            }
        }));
    }
    tracing::info!(backend = journal.backend_name(), "journal open");
    Ok(journal)
}

/// A pacer that always defers to the in-process limiter.
fn unreachable_pacer() -> Arc<dyn coach_store::rate::Pacer> {
    struct InProcess;
    impl coach_store::rate::Pacer for InProcess {
        fn acquire(
            &self,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
            Box::pin(async { false })
        }
    }
    Arc::new(InProcess)
}

/// Everything a running worker needs, built from settings.
pub struct Built {
    pub app: Application,
    pub deps: Arc<Deps>,
}

/// Builds the worker with the real scenarios.
pub async fn build(config: &ServeConfig, secrets: Vec<Secret>) -> anyhow::Result<Built> {
    prepare_data_dir(config)?;
    let journal = open_journal(config).await?;
    let deps = Arc::new(Deps::new(
        store(config)?,
        analyzer(config)?,
        journal.clone(),
    ));
    let registry = worker_registry(config, deps.clone());
    let app = Application::build_with(config, secrets, journal, registry).await?;
    Ok(Built { app, deps })
}

/// The real scenarios plus the optional Airtable ping route and, when a token is set, the admin.
pub fn worker_registry(config: &ServeConfig, deps: Arc<Deps>) -> Registry {
    let ping = config
        .airtable_webhook_mac_secret
        .as_ref()
        .map(|_| Arc::new(tokio::sync::Notify::new()));
    let mut registry = crate::app::registry(
        deps.clone(),
        Duration::from_secs(config.poll_interval_secs),
        ping.clone(),
    );
    if let (Some(secret), Some(ping)) = (&config.airtable_webhook_mac_secret, ping) {
        registry.routes.push(crate::http::airtable_ping::routes(
            secret.expose_secret().to_owned(),
            ping,
        ));
    }
    if let Some(token) = config
        .admin_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
    {
        registry.routes.push(crate::admin::routes_with_store(
            token.clone(),
            Some(deps.store.clone()),
        ));
        registry.routes.push(crate::admin::page::routes_with_store(
            token,
            config.cookie_secure,
            Some(deps.store.clone()),
        ));
    }
    registry
}

/// Builds and runs the worker until it is told to stop.
pub async fn run(config: ServeConfig, secrets: Vec<Secret>, demo: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let demo_secret = secrets.first().cloned();
    let built = build(&config, secrets).await?;
    let port = built.app.port();
    tracing::info!(
        port,
        store = built.deps.store.backend_name(),
        provider = built.deps.analyzer.provider(),
        startup_ms = started.elapsed().as_millis() as u64,
        "coach-worker listening"
    );
    if demo && let Some(secret) = demo_secret {
        let deps = built.deps.clone();
        let store_location = match &config.airtable_base_id {
            Some(base) if config.airtable_token.is_some() => format!("the Airtable base {base}"),
            _ => format!(
                "the embedded store {}",
                std::path::absolute(config.store_path())
                    .unwrap_or_else(|_| config.store_path())
                    .display()
            ),
        };
        tokio::spawn(async move {
            if let Err(e) = crate::demo::run(deps, port, secret, store_location).await {
                tracing::error!(error = %e, "the demo story failed");
                eprintln!("demo failed: {e:#}");
            }
        });
    }
    built.app.run_until_stopped().await
}
