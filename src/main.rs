//! The `coach-worker` command line: one binary, subcommands.
//!
//! Exit codes: 0 success, 1 the check failed (Gate-1 failure, schema differences), 2 bad usage or input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use coach_worker::config::ServeConfig;
use coach_worker::webhook::{Scheme, Secret, signature};

#[derive(Parser)]
#[command(
    name = "coach-worker",
    version,
    about = "Signed, idempotent webhook worker for the Leadership Coach Make scenarios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the worker (HTTP server, job runner, poller).
    Serve {
        #[command(flatten)]
        config: Box<ServeConfig>,
        /// Demo mode: generate a webhook secret if none is set, seed the embedded store with sample
        /// data and run the whole story once.
        #[arg(long)]
        demo: bool,
    },
    /// Print the headers (and a curl line) of a signed request, to try the API by hand.
    Sign(SignArgs),
    /// Parse a transcript or measure how its speakers communicate.
    #[command(subcommand)]
    Transcript(coach_transcript::cli::Command),
    /// Check a coaching output against Gate-1.
    #[command(subcommand)]
    Gate1(coach_coaching::cli::Gate1Command),
    /// Analyse one transcript (or a baseline pack of three) and print the coaching card.
    Analyze {
        #[command(flatten)]
        args: coach_coaching::cli::AnalyzeArgs,
        #[command(flatten, next_help_heading = "OpenAI-compatible provider")]
        openai: Box<coach_worker::config::OpenAiSettings>,
    },
    /// Compare the Airtable base with the schema the worker needs, or create what is missing.
    Airtable {
        #[command(subcommand)]
        command: coach_store::cli::Command,
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
    },
    /// Inspect, replay and cancel runs of a running worker through its admin API.
    Runs(coach_worker::admin::cli::RunsArgs),
    /// Journal operations (`migrate`: apply the Postgres journal's migrations ahead of a deploy).
    #[command(subcommand)]
    Journal(coach_worker::journal::cli::JournalCommand),
}

#[derive(clap::Args)]
struct SignArgs {
    /// The webhook secret (`whsec_…` for the standard scheme, any text for the Make scheme).
    #[arg(long, env = "COACH_SIGN_SECRET", hide_env_values = true)]
    secret: String,
    /// File with the exact body to send (`-` for standard input).
    #[arg(long)]
    body: PathBuf,
    /// Signature scheme.
    #[arg(long, value_enum, default_value = "standard")]
    scheme: Scheme,
    /// Delivery id (default: a new random one).
    #[arg(long)]
    id: Option<String>,
    /// Unix timestamp to sign with (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// URL for the printed curl line.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/hooks/r1")]
    url: String,
    /// Print the headers as JSON instead.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return exit(code),
    };
    match cli.command {
        Command::Serve { config, demo } => exit(serve(*config, demo)),
        Command::Sign(args) => exit(sign(args)),
        Command::Transcript(cmd) => exit(coach_transcript::cli::run(cmd)),
        Command::Gate1(cmd) => exit(coach_coaching::cli::run_gate1(cmd)),
        Command::Analyze { args, openai } => match openai.client_config() {
            Ok(config) => exit(runtime().block_on(coach_coaching::cli::run_analyze(args, config))),
            Err(e) => {
                eprintln!("error: {e}");
                exit(2)
            }
        },
        Command::Airtable {
            command,
            token,
            base_id,
            api_url,
        } => {
            let (Some(token), Some(base_id)) = (token, base_id) else {
                eprintln!(
                    "error: set AIRTABLE_TOKEN and AIRTABLE_BASE_ID (or --token and --base-id)"
                );
                return exit(2);
            };
            let mut cfg = coach_store::AirtableConfig::new(token.expose_secret(), base_id);
            cfg.api_url = api_url.trim_end_matches('/').to_owned();
            exit(runtime().block_on(coach_store::cli::run(command, cfg)))
        }
        Command::Runs(args) => exit(runtime().block_on(coach_worker::admin::cli::run(args))),
        Command::Journal(cmd) => exit(runtime().block_on(coach_worker::journal::cli::run(cmd))),
    }
}

/// Reads `./.env`, drops empty variables, then parses the command line. A bad value that came from
/// the environment is reported by its variable name.
fn parse_cli() -> Result<Cli, i32> {
    // Clap reads each variable when the command is built, so the command used to parse is built again
    // after the environment has been prepared.
    let names = coach_worker::config::env_names(&Cli::command());
    // SAFETY: nothing else runs yet: this is the first thing `main` does, before any thread starts.
    let loaded =
        unsafe { coach_worker::config::load_environment(std::path::Path::new(".env"), &names) };
    if let Err(e) = loaded {
        eprintln!("error: configuration: {e}");
        return Err(2);
    }
    let cmd = Cli::command();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = cmd
        .clone()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => match coach_worker::config::env_value_error(&e, &cmd, &argv) {
            Some(message) => {
                eprintln!("error: configuration: {message}");
                Err(2)
            }
            None => e.exit(),
        },
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    }
}

fn serve(mut config: ServeConfig, demo: bool) -> i32 {
    coach_worker::telemetry::init_logging(&config.log_format);
    // Generated values are only printed once the whole configuration has passed: a run that stops
    // on a configuration error prints no secret nobody can use.
    let mut generated_secret = None;
    if demo
        && config
            .webhook_secrets
            .iter()
            .all(|s| s.expose_secret().trim().is_empty())
    {
        let secret = Secret::generate();
        config.webhook_secrets = vec![SecretString::from(secret.text())];
        generated_secret = Some(secret);
    }
    let mut generated_token = None;
    if demo && config.admin_token.is_none() {
        let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
        config.admin_token = Some(SecretString::from(token.as_str()));
        generated_token = Some(token);
    }
    let secrets = match config.validate() {
        Ok(secrets) => secrets,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return 2;
        }
    };
    if let Some(secret) = generated_secret {
        println!(
            "demo webhook secret (sign requests with it): {}",
            secret.text()
        );
    }
    if let Some(token) = generated_token {
        println!("demo admin token (for /admin and `coach-worker runs`): {token}");
        println!(
            "  export COACH_URL=http://{} COACH_ADMIN_TOKEN={token}",
            config.listen
        );
    }
    let rt = runtime();
    rt.block_on(async move {
        match coach_worker::serve::run(config, secrets, demo).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    })
}

fn sign(args: SignArgs) -> i32 {
    let secret = match Secret::parse(&args.secret) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --secret: {e}");
            return 2;
        }
    };
    let body = if args.body.as_os_str() == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            eprintln!("error: cannot read standard input: {e}");
            return 2;
        }
        buf
    } else {
        match std::fs::read(&args.body) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", args.body.display());
                return 2;
            }
        }
    };
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let id = args
        .id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let headers: Vec<(&str, String)> = match args.scheme {
        Scheme::Standard => match signature::sign_standard(&secret, &id, timestamp, &body) {
            Ok(sig) => vec![
                ("webhook-id", id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", sig),
            ],
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        Scheme::Make => vec![
            ("X-Coach-Delivery", id),
            ("X-Coach-Timestamp", timestamp.to_string()),
            (
                "X-Coach-Signature",
                signature::sign_make(&secret, timestamp, &body),
            ),
        ],
    };
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        println!("{}", serde_json::Value::Object(map));
        return 0;
    }
    for (name, value) in &headers {
        println!("{name}: {value}");
    }
    let mut curl = format!(
        "curl -sS -X POST '{}' -H 'Content-Type: application/json'",
        args.url
    );
    for (name, value) in &headers {
        curl.push_str(&format!(" -H '{name}: {value}'"));
    }
    let body_arg = if args.body.as_os_str() == "-" {
        "@-".to_string()
    } else {
        format!("@{}", args.body.display())
    };
    curl.push_str(&format!(" --data-binary '{body_arg}'"));
    println!();
    println!("{curl}");
    0
}
