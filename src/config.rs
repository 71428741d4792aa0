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

    /// A `postgres://…` URL puts the journal on Postgres, shared by several instances (see the
    /// README); without it the journal is `journal.db` in the data folder. Any other value is refused.
    /// Holds a password, so it is never logged.
    #[arg(
        long = "database-url",
        env = "COACH_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<SecretString>,

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

    /// The OpenAI-compatible provider (OPENAI_* and AZURE_OPENAI_* settings).
    #[command(flatten, next_help_heading = "OpenAI-compatible provider")]
    pub openai: OpenAiSettings,

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
        // A URL that does not select Postgres must not quietly give each instance a journal of its own
        // (two pollers, no shared idempotency): it is a configuration error.
        if let Some(url) = &self.database_url {
            let url = url.expose_secret().trim();
            if !url.is_empty() && !crate::journal::postgres::is_postgres_url(url) {
                return Err(config_error(
                    "COACH_DATABASE_URL",
                    "must be a Postgres URL starting with `postgres://` or `postgresql://` (for \
                     example `postgres://user:password@host:5432/coach`); leave it unset for the \
                     embedded SQLite journal",
                ));
            }
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
        self.openai.client_config()?;
        self.provider_choice()?;
        Ok(secrets)
    }

    /// `rules` unless an OpenAI key (or an Azure endpoint) is set; `COACH_PROVIDER` overrides.
    pub fn provider_choice(&self) -> Result<ProviderChoice, ConfigError> {
        match self.provider.as_deref() {
            None => Ok(if self.openai.is_configured() {
                ProviderChoice::OpenAi
            } else {
                ProviderChoice::Rules
            }),
            Some("rules") => Ok(ProviderChoice::Rules),
            Some("openai") if self.openai.is_configured() => Ok(ProviderChoice::OpenAi),
            Some("openai") => Err(config_error(
                "OPENAI_API_KEY",
                "COACH_PROVIDER=openai needs OPENAI_API_KEY (or AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY)",
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

// ------------------------------------------------------------------------------------------------
// The OpenAI-compatible provider. Every OPENAI_* / AZURE_OPENAI_* setting the worker reads is
// parsed here and nowhere else; the coaching crate receives the finished `OpenAiConfig`. The
// `analyze` command flattens the same struct, so both commands read the same variables.
// ------------------------------------------------------------------------------------------------

/// Settings of the OpenAI-compatible provider. Field docs are the `--help` text.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenAiSettings {
    /// OpenAI (or compatible) API key, sent as `Authorization: Bearer`. Unset (and no Azure
    /// endpoint): the offline `rules` analyzer is used. Local servers without keys (Ollama,
    /// vLLM, LM Studio) take any non-empty text.
    #[arg(
        long = "openai-api-key",
        env = "OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<SecretString>,

    /// OpenAI-compatible base URL, up to and without `/chat/completions` (e.g.
    /// `https://openrouter.ai/api/v1`, `http://127.0.0.1:11434/v1`). Ignored for Azure.
    #[arg(
        long = "openai-base-url",
        env = "OPENAI_BASE_URL",
        default_value = coach_coaching::openai::DEFAULT_BASE_URL
    )]
    pub base_url: String,

    /// Model asked for coaching (recorded on each run; prices are looked up by it).
    #[arg(
        long = "openai-model",
        env = "OPENAI_MODEL",
        default_value = coach_coaching::openai::DEFAULT_MODEL
    )]
    pub model: String,

    /// `OpenAI-Organization` header (OpenAI only).
    #[arg(long = "openai-organization", env = "OPENAI_ORGANIZATION")]
    pub organization: Option<String>,

    /// `OpenAI-Project` header (OpenAI only).
    #[arg(long = "openai-project", env = "OPENAI_PROJECT")]
    pub project: Option<String>,

    /// Seconds one HTTP call may take (local reasoning models can need several minutes).
    #[arg(
        long = "openai-timeout-secs",
        env = "OPENAI_TIMEOUT_SECS",
        default_value_t = 120.0
    )]
    pub timeout_secs: f64,

    /// Retries inside one job attempt for timeouts, connection errors, 408/409/429/5xx.
    #[arg(
        long = "openai-max-retries",
        env = "OPENAI_MAX_RETRIES",
        default_value_t = 4
    )]
    pub max_retries: u32,

    /// Extra answers asked for after one fails Gate-1 (each is a paid call).
    #[arg(
        long = "openai-max-repairs",
        env = "OPENAI_MAX_REPAIRS",
        default_value_t = 2
    )]
    pub max_repairs: u32,

    /// Longest server-requested wait (Retry-After, or a rate-limit window's reset) the client
    /// sleeps on in place. A longer one ends the attempt: `serve` schedules the job's next attempt
    /// after the wait; `analyze` stops and prints it.
    #[arg(
        long = "openai-max-wait-secs",
        env = "OPENAI_MAX_WAIT_SECS",
        default_value_t = 120
    )]
    pub max_wait_secs: u64,

    /// Price of the configured model in USD per 1M prompt tokens (default: the built-in table
    /// for OpenAI models, 0 for others).
    #[arg(long = "openai-price-input-per-1m", env = "OPENAI_PRICE_INPUT_PER_1M")]
    pub price_input_per_1m: Option<f64>,

    /// Price of the configured model in USD per 1M completion tokens.
    #[arg(
        long = "openai-price-output-per-1m",
        env = "OPENAI_PRICE_OUTPUT_PER_1M"
    )]
    pub price_output_per_1m: Option<f64>,

    /// Azure OpenAI resource endpoint (`https://<resource>.openai.azure.com`). Set: requests go
    /// to `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…` with an
    /// `api-key` header.
    #[arg(long = "azure-openai-endpoint", env = "AZURE_OPENAI_ENDPOINT")]
    pub azure_endpoint: Option<String>,

    /// Azure OpenAI key (the `api-key` header). Falls back to OPENAI_API_KEY.
    #[arg(
        long = "azure-openai-api-key",
        env = "AZURE_OPENAI_API_KEY",
        hide_env_values = true
    )]
    pub azure_api_key: Option<SecretString>,

    /// Azure OpenAI deployment name (default: OPENAI_MODEL, as the official clients use the
    /// model argument as the deployment).
    #[arg(long = "azure-openai-deployment", env = "AZURE_OPENAI_DEPLOYMENT")]
    pub azure_deployment: Option<String>,

    /// Azure OpenAI `api-version` (required with AZURE_OPENAI_ENDPOINT), e.g. `2024-10-21`.
    #[arg(long = "openai-api-version", env = "OPENAI_API_VERSION")]
    pub api_version: Option<String>,
}

/// Text that is set and not blank.
fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A secret that is set and not blank.
fn present_secret(v: &Option<SecretString>) -> Option<&str> {
    v.as_ref()
        .map(|s| s.expose_secret().trim())
        .filter(|v| !v.is_empty())
}

impl OpenAiSettings {
    /// Whether a provider is configured (a key, or an Azure endpoint).
    pub fn is_configured(&self) -> bool {
        present_secret(&self.api_key).is_some() || present(&self.azure_endpoint).is_some()
    }

    /// The client configuration these settings describe; `None` when no provider is configured.
    pub fn client_config(&self) -> Result<Option<coach_coaching::OpenAiConfig>, ConfigError> {
        use coach_coaching::{AzureDeployment, OpenAiConfig};
        if !self.is_configured() {
            return Ok(None);
        }
        let http = |variable: &'static str, url: &str| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(url.trim_end_matches('/').to_owned())
            } else {
                Err(config_error(
                    variable,
                    format!("`{url}` is not an http(s) URL"),
                ))
            }
        };
        let azure = match present(&self.azure_endpoint) {
            None => None,
            Some(endpoint) => {
                let endpoint = http("AZURE_OPENAI_ENDPOINT", endpoint)?;
                if endpoint.contains("/openai/deployments") {
                    return Err(config_error(
                        "AZURE_OPENAI_ENDPOINT",
                        "give the resource endpoint only (`https://<resource>.openai.azure.com`); the deployment goes in AZURE_OPENAI_DEPLOYMENT",
                    ));
                }
                let api_version = present(&self.api_version).ok_or_else(|| {
                    config_error(
                        "OPENAI_API_VERSION",
                        "Azure OpenAI needs an api-version (e.g. 2024-10-21); set OPENAI_API_VERSION",
                    )
                })?;
                Some(AzureDeployment {
                    endpoint,
                    deployment: present(&self.azure_deployment)
                        .unwrap_or(self.model.trim())
                        .to_owned(),
                    api_version: api_version.to_owned(),
                })
            }
        };
        let key = match &azure {
            Some(_) => present_secret(&self.azure_api_key)
                .or(present_secret(&self.api_key))
                .ok_or_else(|| {
                    config_error(
                        "AZURE_OPENAI_API_KEY",
                        "AZURE_OPENAI_ENDPOINT is set but no key is: set AZURE_OPENAI_API_KEY",
                    )
                })?,
            None => present_secret(&self.api_key).unwrap_or_default(),
        };
        let mut c = OpenAiConfig::new(key);
        c.base_url = http("OPENAI_BASE_URL", self.base_url.trim())?;
        c.azure = azure;
        if self.model.trim().is_empty() {
            return Err(config_error("OPENAI_MODEL", "must not be empty"));
        }
        c.model = self.model.trim().to_owned();
        c.organization = present(&self.organization).map(str::to_owned);
        c.project = present(&self.project).map(str::to_owned);
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            return Err(config_error(
                "OPENAI_TIMEOUT_SECS",
                "must be a positive number of seconds",
            ));
        }
        c.timeout = Duration::from_secs_f64(self.timeout_secs);
        c.max_retries = self.max_retries;
        c.max_repairs = self.max_repairs;
        c.max_retry_after = Duration::from_secs(self.max_wait_secs);
        for (variable, price) in [
            ("OPENAI_PRICE_INPUT_PER_1M", self.price_input_per_1m),
            ("OPENAI_PRICE_OUTPUT_PER_1M", self.price_output_per_1m),
        ] {
            if price.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
                return Err(config_error(
                    variable,
                    "must be a non-negative number of USD",
                ));
            }
        }
        c.set_model_price(self.price_input_per_1m, self.price_output_per_1m);
        Ok(Some(c))
    }
}

#[cfg(test)]
mod openai_settings_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        openai: OpenAiSettings,
    }

    fn parse(args: &[&str]) -> OpenAiSettings {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Wrapper::try_parse_from(all).map(|w| w.openai).unwrap()
    }

    #[test]
    fn openai_settings_become_the_client_config() {
        let c = parse(&[
            "--openai-api-key",
            "sk-test",
            "--openai-model",
            "gpt-4.1",
            "--openai-price-input-per-1m",
            "1.5",
            "--openai-max-wait-secs",
            "30",
            "--openai-base-url",
            "http://127.0.0.1:11434/v1/",
        ])
        .client_config()
        .unwrap()
        .unwrap();
        assert_eq!(c.model, "gpt-4.1");
        assert_eq!(c.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(c.max_retry_after, Duration::from_secs(30));
        assert_eq!(c.price("gpt-4.1").map(|p| p.input_per_million), Some(1.5));
        assert_eq!(c.price("gpt-4.1").map(|p| p.output_per_million), Some(8.0));
        assert!(c.azure.is_none());
    }

    #[test]
    fn no_key_means_no_provider() {
        assert!(parse(&[]).client_config().unwrap().is_none());
        assert!(!parse(&["--openai-api-key", "  "]).is_configured());
    }

    #[test]
    fn azure_needs_a_version_and_a_key_and_defaults_the_deployment_to_the_model() {
        let base = [
            "--azure-openai-endpoint",
            "https://res.openai.azure.com/",
            "--openai-model",
            "coach-4o",
        ];
        let e = parse(&base).client_config().unwrap_err();
        assert_eq!(e.variable, "OPENAI_API_VERSION");
        let mut with_version = base.to_vec();
        with_version.extend(["--openai-api-version", "2024-10-21"]);
        let e = parse(&with_version).client_config().unwrap_err();
        assert_eq!(e.variable, "AZURE_OPENAI_API_KEY");
        with_version.extend(["--azure-openai-api-key", "az-key"]);
        let c = parse(&with_version).client_config().unwrap().unwrap();
        assert_eq!(c.api_key, "az-key");
        assert_eq!(
            c.chat_url(),
            "https://res.openai.azure.com/openai/deployments/coach-4o/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn wrong_values_name_their_variable() {
        let e = parse(&[
            "--openai-api-key",
            "k",
            "--openai-base-url",
            "api.openai.com",
        ])
        .client_config()
        .unwrap_err();
        assert_eq!(e.variable, "OPENAI_BASE_URL");
        let e = parse(&["--openai-api-key", "k", "--openai-timeout-secs", "0"])
            .client_config()
            .unwrap_err();
        assert_eq!(e.variable, "OPENAI_TIMEOUT_SECS");
        let e = parse(&["--openai-api-key", "k", "--openai-price-output-per-1m=-1"])
            .client_config()
            .unwrap_err();
        assert_eq!(e.variable, "OPENAI_PRICE_OUTPUT_PER_1M");
    }
}
