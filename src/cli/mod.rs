//! The `coach-worker` command line: one binary, subcommands. Argument parsing, exit codes and
//! what goes to standard output and error live here, in the binary; the library crates and the
//! worker's library expose plain functions and values these commands call.
//!
//! * [`transcript`] — `transcript parse|metrics` (the `coach-transcript` crate's reports).
//! * [`coaching`] — `gate1 validate` and `analyze` (the `coach-coaching` crate).
//! * [`airtable`] — `airtable check|apply` (the `coach-store` crate's schema migration).
//! * [`admin`] — `runs list|show|replay|cancel`, a client of a running worker's admin API.
//! * [`journal`] — `journal migrate`, the Postgres journal's migrations ahead of a deploy.
//! * [`sign`] — print the headers of a signed request; [`serve`] — start the worker.
//!
//! Exit codes: 0 success, 1 the check failed (Gate-1 failure, schema differences), 2 bad usage or
//! input.

pub mod admin;
pub mod airtable;
pub mod coaching;
pub mod journal;
pub mod serve;
pub mod sign;
pub mod transcript;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use coach_worker::config::ServeConfig;

#[derive(Parser)]
#[command(
    name = "coach-worker",
    version,
    about = "Signed, idempotent webhook worker for the Leadership Coach Make scenarios"
)]
pub struct Cli {
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
    Sign(sign::SignArgs),
    /// Parse a transcript or measure how its speakers communicate.
    #[command(subcommand)]
    Transcript(transcript::Command),
    /// Check a coaching output against Gate-1.
    #[command(subcommand)]
    Gate1(coaching::Gate1Command),
    /// Analyse one transcript (or a baseline pack of three) and print the coaching card.
    Analyze {
        #[command(flatten)]
        args: coaching::AnalyzeArgs,
        #[command(flatten, next_help_heading = "OpenAI-compatible provider")]
        openai: Box<coach_worker::config::OpenAiSettings>,
    },
    /// Compare the Airtable base with the schema the worker needs, or create what is missing.
    Airtable(airtable::AirtableArgs),
    /// Inspect, replay and cancel runs of a running worker through its admin API.
    Runs(admin::RunsArgs),
    /// Journal operations (`migrate`: apply the Postgres journal's migrations ahead of a deploy).
    #[command(subcommand)]
    Journal(journal::JournalCommand),
}

/// Reads `./.env`, drops empty variables, then parses the command line. A bad value that came from
/// the environment is reported by its variable name. `Err` carries the exit code.
pub fn parse() -> Result<Cli, i32> {
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

/// Runs the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve { config, demo } => serve::run(*config, demo),
        Command::Sign(args) => sign::run(args),
        Command::Transcript(cmd) => transcript::run(cmd),
        Command::Gate1(cmd) => coaching::run_gate1(cmd),
        Command::Analyze { args, openai } => match openai.client_config() {
            Ok(config) => runtime().block_on(coaching::run_analyze(args, config)),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Airtable(args) => match args.config() {
            Ok((command, cfg)) => runtime().block_on(airtable::run(command, cfg)),
            Err(code) => code,
        },
        Command::Runs(args) => runtime().block_on(admin::run(args)),
        Command::Journal(cmd) => runtime().block_on(journal::run(cmd)),
    }
}

/// The multi-threaded runtime the async commands run on.
pub fn runtime() -> tokio::runtime::Runtime {
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
