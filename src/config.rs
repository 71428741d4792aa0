//! Configuration of `coach-worker serve`.
//!
//! Every setting is an environment variable (the names of ARCHITECTURE §9) and, through clap's `env`
//! support, also a flag of `serve`, so `--help` documents each one with its variable and default.
//! Values that parse but make no sense together (no webhook secret, an Airtable token without a base)
//! are refused by [`ServeConfig::validate`] with a message naming the variable, before anything starts.
//!
//! Where the values come from ([`load_environment`], called first thing in `main`): the process
//! environment, then a `.env` file in the working directory for variables the environment does not
//! set (dotenvy parses it). An empty variable counts as unset, so `.env.example` — which leaves the
//! optional values empty — can be copied or sourced as it is. Clap reads the environment itself, so the
//! `.env` values and the removal of empty ones are applied to the process environment before clap
//! runs, while the process still has one thread.
//!
//! Secrets (webhook secrets, tokens, API keys) are [`SecretString`]s: their `Debug` is redacted by the
//! type, and code has to call `expose_secret` to read one.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::webhook::Secret;

/// Settings of the running worker. Field docs are the `--help` text.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(
        long = "listen",
        env = "COACH_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Folder for the journal (journal.db) and the embedded SQLite record store (store.db).
    #[arg(long = "data-dir", env = "COACH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Comma-separated webhook secrets: `whsec_<base64>` for Standard Webhooks, any text for the
    /// Make scheme (X-Coach-Signature). Several secrets are accepted at once, for rotation.
    #[arg(
        long = "webhook-secrets",
        env = "COACH_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_secrets: Vec<SecretString>,

    /// Bearer token for /v1/admin and /admin. Unset: the admin routes do not exist.
    #[arg(
        long = "admin-token",
        env = "COACH_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<SecretString>,

    /// Mark the admin session cookie `Secure` (set it when the worker is served over https).
    #[arg(
        long = "cookie-secure",
        env = "COACH_COOKIE_SECURE",
        default_value_t = false
    )]
    pub cookie_secure: bool,

    /// How far (seconds) a signed timestamp may be from now, in either direction.
    #[arg(
        long = "timestamp-tolerance-secs",
        env = "COACH_TIMESTAMP_TOLERANCE_SECS",
        default_value_t = 300
    )]
    pub timestamp_tolerance_secs: u64,

    /// Largest accepted webhook body in bytes; larger bodies get 413.
    #[arg(
        long = "max-body-bytes",
        env = "COACH_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,

    /// Jobs that may run at the same time.
    #[arg(
        long = "max-concurrency",
        env = "COACH_MAX_CONCURRENCY",
        default_value_t = 8
    )]
    pub max_concurrency: usize,

    /// Attempts a job gets before it fails for good (transient errors only are retried).
    #[arg(long = "max-attempts", env = "COACH_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,

    /// First retry delay in milliseconds; later ones double (with jitter) up to 5 minutes.
    #[arg(
        long = "retry-base-ms",
        env = "COACH_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,

    /// Accept and journal deliveries but run no jobs (for maintenance of the base: the queue is kept
    /// and runs when the worker starts without it).
    #[arg(long = "pause-jobs", env = "COACH_PAUSE_JOBS", default_value_t = false)]
    pub pause_jobs: bool,

    /// Seconds between two polls of Run Requests with Status = Queued (0 = no polling).
    #[arg(
        long = "poll-interval-secs",
        env = "COACH_POLL_INTERVAL_SECS",
        default_value_t = 30
    )]
    pub poll_interval_secs: u64,

    /// Seconds the worker gets on SIGTERM to finish in-flight requests and running jobs, both at
    /// once; unfinished jobs are left queued. Keep it under the platform's kill timeout (fly.toml).
    #[arg(long = "drain-secs", env = "COACH_DRAIN_SECS", default_value_t = 25)]
    pub drain_secs: u64,

    /// Airtable personal access token. Unset: the embedded SQLite store is used.
    #[arg(
        long = "airtable-token",
        env = "AIRTABLE_TOKEN",
        hide_env_values = true
    )]
    pub airtable_token: Option<SecretString>,

    /// Airtable base id (`app…`), required with AIRTABLE_TOKEN.
    #[arg(long = "airtable-base-id", env = "AIRTABLE_BASE_ID")]
    pub airtable_base_id: Option<String>,

    /// Airtable API URL (tests point it at a fake).
    #[arg(
        long = "airtable-api-url",
        env = "AIRTABLE_API_URL",
        default_value = "https://api.airtable.com"
    )]
    pub airtable_api_url: String,

    /// Seconds to wait after an Airtable 429 before trying again (Airtable asks for 30).
    #[arg(
        long = "airtable-rate-limit-wait-secs",
        env = "AIRTABLE_RATE_LIMIT_WAIT_SECS",
        default_value_t = 30
    )]
    pub airtable_rate_limit_wait_secs: u64,

    /// `macSecretBase64` of an Airtable webhook whose pings trigger an immediate poll
    /// (POST /v1/airtable/ping). Unset: the ping route answers 404.
    #[arg(
        long = "airtable-webhook-mac-secret",
        env = "AIRTABLE_WEBHOOK_MAC_SECRET",
        hide_env_values = true
    )]
    pub airtable_webhook_mac_secret: Option<SecretString>,

    /// OpenAI (or compatible) API key. Unset: the offline `rules` analyzer is used.
    #[arg(
        long = "openai-api-key",
        env = "OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub openai_api_key: Option<SecretString>,

    /// OpenAI-compatible base URL.
    #[arg(
        long = "openai-base-url",
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub openai_base_url: String,

    /// Model asked for coaching.
    #[arg(
        long = "openai-model",
        env = "OPENAI_MODEL",
        default_value = "gpt-4o-mini"
    )]
    pub openai_model: String,

    /// `rules` or `openai`, overriding the choice made from OPENAI_API_KEY.
    #[arg(long = "provider", env = "COACH_PROVIDER")]
    pub provider: Option<String>,

    /// Log format: `json` or `pretty`.
    #[arg(long = "log-format", env = "COACH_LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    // Journal retention (see `journal::retention`).
    /// Days finished deliveries and jobs are kept in the journal (failed runs not replayed: twice
    /// as long); 0 keeps everything.
    #[arg(
        long = "retention-days",
        env = "COACH_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub retention_days: u64,

    /// Days a cached analysis is reused for identical input (and kept in the journal).
    #[arg(
        long = "cache-ttl-days",
        env = "COACH_CACHE_TTL_DAYS",
        default_value_t = 7
    )]
    pub cache_ttl_days: u64,
}

/// A configuration error, naming the variable to fix.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn config_error(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// Which analysis provider the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    Rules,
    OpenAi,
}

impl ServeConfig {
    /// Checks the settings that parse one by one but can still be wrong, and returns the parsed
    /// webhook secrets.
    pub fn validate(&self) -> Result<Vec<Secret>, ConfigError> {
        let secrets = self
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret().trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                Secret::parse(s).map_err(|e| config_error("COACH_WEBHOOK_SECRETS", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(config_error(
                "COACH_WEBHOOK_SECRETS",
                "no webhook secret is set; set COACH_WEBHOOK_SECRETS to one or more comma-separated secrets \
                 (for example `whsec_` + base64 of 32 random bytes), or run `coach-worker serve --demo`",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(config_error(
                "COACH_MAX_BODY_BYTES",
                "must be at least 1024 bytes",
            ));
        }
        if self.max_concurrency == 0 {
            return Err(config_error("COACH_MAX_CONCURRENCY", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(config_error("COACH_MAX_ATTEMPTS", "must be at least 1"));
        }
        if self.log_format != "json" && self.log_format != "pretty" {
            return Err(config_error(
                "COACH_LOG_FORMAT",
                "must be `json` or `pretty`",
            ));
        }
        if let Some(token) = &self.admin_token
            && token.expose_secret().len() < 16
        {
            return Err(config_error(
                "COACH_ADMIN_TOKEN",
                "must be at least 16 characters (use a random token)",
            ));
        }
        if self.airtable_token.is_some() {
            match &self.airtable_base_id {
                None => {
                    return Err(config_error(
                        "AIRTABLE_BASE_ID",
                        "AIRTABLE_TOKEN is set but AIRTABLE_BASE_ID is not; set it to the base id (starts with `app`)",
                    ));
                }
                Some(base) if !base.starts_with("app") => {
                    return Err(config_error("AIRTABLE_BASE_ID", "must start with `app`"));
                }
                Some(_) => {}
            }
        }
        if !self.airtable_api_url.starts_with("http://")
            && !self.airtable_api_url.starts_with("https://")
        {
            return Err(config_error("AIRTABLE_API_URL", "must be an http(s) URL"));
        }
        if !self.openai_base_url.starts_with("http://")
            && !self.openai_base_url.starts_with("https://")
        {
            return Err(config_error("OPENAI_BASE_URL", "must be an http(s) URL"));
        }
        self.provider_choice()?;
        Ok(secrets)
    }

    /// `rules` unless an OpenAI key is set; `COACH_PROVIDER` overrides.
    pub fn provider_choice(&self) -> Result<ProviderChoice, ConfigError> {
        match self.provider.as_deref() {
            None => Ok(if self.openai_api_key.is_some() {
                ProviderChoice::OpenAi
            } else {
                ProviderChoice::Rules
            }),
            Some("rules") => Ok(ProviderChoice::Rules),
            Some("openai") if self.openai_api_key.is_some() => Ok(ProviderChoice::OpenAi),
            Some("openai") => Err(config_error(
                "OPENAI_API_KEY",
                "COACH_PROVIDER=openai needs OPENAI_API_KEY",
            )),
            Some(_) => Err(config_error(
                "COACH_PROVIDER",
                "must be `rules` or `openai`",
            )),
        }
    }

    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join("journal.db")
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.db")
    }

    /// The retention the settings select.
    pub fn retention(&self) -> crate::journal::Retention {
        crate::journal::Retention {
            days: self.retention_days,
            cache_ttl_days: self.cache_ttl_days,
            ..Default::default()
        }
    }

    pub fn timestamp_tolerance(&self) -> Duration {
        Duration::from_secs(self.timestamp_tolerance_secs)
    }
}

/// Applies `dotenv` (normally `./.env`) to the process environment for the variables the environment
/// does not already set to something, then removes every variable of `names` whose value is empty, so
/// that clap sees an empty variable as an unset one. Returns the `.env` path when one was read.
///
/// # Safety
///
/// Changes the process environment: call it before any other thread exists (first thing in `main`).
pub unsafe fn load_environment(
    dotenv: &Path,
    names: &[String],
) -> Result<Option<PathBuf>, ConfigError> {
    let is_unset = |k: &str| std::env::var_os(k).is_none_or(|v| v.is_empty());
    let read = match dotenvy::from_path_iter(dotenv) {
        Ok(iter) => {
            for item in iter {
                let (key, value) = item.map_err(|e| {
                    config_error(".env", format!("cannot read {}: {e}", dotenv.display()))
                })?;
                if is_unset(&key) && !value.is_empty() {
                    // SAFETY: the caller guarantees no other thread runs yet.
                    unsafe { std::env::set_var(&key, &value) };
                }
            }
            Some(dotenv.to_path_buf())
        }
        Err(e) if e.not_found() => None,
        Err(e) => {
            return Err(config_error(
                ".env",
                format!("cannot read {}: {e}", dotenv.display()),
            ));
        }
    };
    for name in names {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            // SAFETY: as above.
            unsafe { std::env::remove_var(name) };
        }
    }
    Ok(read)
}

/// Every environment variable a command line reads (its arguments' `env`, in every subcommand).
pub fn env_names(cmd: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for sub in cmd.get_subcommands() {
        names.extend(env_names(sub));
    }
    names.sort();
    names.dedup();
    names
}

/// Rewrites a clap error about a value that came from the environment so that it names the variable
/// (`COACH_MAX_CONCURRENCY: invalid value "abc": …`) instead of the flag the user never typed. `None`
/// when the error is not about a value, or the flag was given on the command line.
pub fn env_value_error(
    err: &clap::Error,
    cmd: &clap::Command,
    argv: &[OsString],
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let ContextValue::String(arg) = err.get(ContextKind::InvalidArg)? else {
        return None;
    };
    // "--max-concurrency <MAX_CONCURRENCY>" → "max-concurrency"
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let given_as_flag = argv.iter().any(|a| {
        a.to_str().is_some_and(|a| {
            a.strip_prefix("--")
                .is_some_and(|rest| rest == long || rest.starts_with(&format!("{long}=")))
        })
    });
    if given_as_flag {
        return None;
    }
    let variable = find_env(cmd, long)?;
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let why = std::error::Error::source(err)
        .map(|e| e.to_string())
        .unwrap_or_else(|| err.kind().to_string());
    Some(format!("{variable}: invalid value \"{value}\": {why}"))
}

fn find_env(cmd: &clap::Command, long: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .or_else(|| cmd.get_subcommands().find_map(|s| find_env(s, long)))
}
