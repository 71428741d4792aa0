//! `coach-worker airtable check|apply`: the command line around `coach_store::migrate`.
//!
//! The report goes to standard output, errors to standard error as `error [CODE]: message`.
//! Exit codes: 0 done/matching, 1 the base differs (or work is left by hand), 2 bad input or an API
//! error.

use std::io::Write;
use std::path::PathBuf;

use coach_store::AirtableConfig;
use coach_store::migrate::{self, Verdict};
use secrecy::{ExposeSecret, SecretString};

// The `airtable` command's own options, shared by its subcommands. (A plain comment: a doc
// comment here would become the command's help text.)
#[derive(clap::Args)]
pub struct AirtableArgs {
    #[command(subcommand)]
    command: Command,
    /// Airtable personal access token (needs schema.bases:read, and schema.bases:write for apply).
    #[arg(long, env = "AIRTABLE_TOKEN", hide_env_values = true, global = true)]
    token: Option<SecretString>,
    /// Airtable base id (`app…`).
    #[arg(long = "base-id", env = "AIRTABLE_BASE_ID", global = true)]
    base_id: Option<String>,
    /// Airtable API URL.
    #[arg(
        long = "api-url",
        env = "AIRTABLE_API_URL",
        default_value = "https://api.airtable.com",
        global = true
    )]
    api_url: String,
}

impl AirtableArgs {
    /// The subcommand and the store settings; `Err` is the exit code when the token or base is
    /// missing (already reported).
    pub fn config(self) -> Result<(Command, AirtableConfig), i32> {
        let (Some(token), Some(base_id)) = (self.token, self.base_id) else {
            eprintln!("error: set AIRTABLE_TOKEN and AIRTABLE_BASE_ID (or --token and --base-id)");
            return Err(2);
        };
        let mut cfg = AirtableConfig::new(token.expose_secret(), base_id);
        cfg.api_url = self.api_url.trim_end_matches('/').to_owned();
        Ok((self.command, cfg))
    }
}

/// The `airtable` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Compare the Airtable base with the schema file; exit 1 when something is missing or different.
    Check {
        /// Schema file in the Meta API's shape (default: the schema built into the binary, the
        /// repository's airtable/base-schema.json).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create missing tables and fields through the Meta API (dry run unless --yes).
    Apply {
        /// Schema file in the Meta API's shape (default: the schema built into the binary, the
        /// repository's airtable/base-schema.json).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Really create them (otherwise only print the plan).
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a subcommand, printing the report to stdout and errors to stderr; returns the exit code.
/// The first request waits for a fresh rate window (see [`migrate::wait_for_a_fresh_rate_window`]).
pub async fn run(cmd: Command, cfg: AirtableConfig) -> i32 {
    migrate::wait_for_a_fresh_rate_window().await;
    run_to(cmd, cfg, &mut std::io::stdout(), &mut std::io::stderr()).await
}

/// Same as [`run`] without the wait, printing the report to `out` and errors to `err`.
pub async fn run_to(
    cmd: Command,
    cfg: AirtableConfig,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let result = match cmd {
        Command::Check { schema, json } => migrate::check(schema.as_deref(), json, cfg, out).await,
        Command::Apply { schema, yes } => migrate::apply(schema.as_deref(), yes, cfg, out).await,
    };
    match result {
        Ok(Verdict::Done) => 0,
        Ok(Verdict::WorkLeft) => 1,
        Err(e) => {
            let _ = writeln!(err, "error [{}]: {e}", e.code());
            2
        }
    }
}
