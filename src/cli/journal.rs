//! `coach-worker journal …`: journal operations run outside the worker.
//!
//! `journal migrate` applies the Postgres journal's migrations and exits, so a deploy can run them
//! once (a release command) before new instances start; instances apply them at start as well, under
//! the same advisory lock, so skipping it is safe too.

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, clap::Subcommand)]
pub enum JournalCommand {
    /// Apply the journal's migrations to the Postgres database and exit.
    Migrate {
        /// The journal's database (`postgres://…`).
        #[arg(
            long = "database-url",
            env = "COACH_DATABASE_URL",
            hide_env_values = true
        )]
        database_url: SecretString,
    },
}

/// Runs a journal command; returns the process exit code.
pub async fn run(command: JournalCommand) -> i32 {
    match command {
        JournalCommand::Migrate { database_url } => {
            let url = database_url.expose_secret();
            if !coach_worker::journal::postgres::is_postgres_url(url) {
                eprintln!(
                    "error: COACH_DATABASE_URL must be a postgres:// URL; the SQLite journal migrates itself at start"
                );
                return 2;
            }
            match coach_worker::journal::postgres::migrate_url(url).await {
                Ok(applied) => {
                    println!("journal migrations applied: {applied} new");
                    0
                }
                Err(e) => {
                    eprintln!("error: {} ({})", e, e.code());
                    2
                }
            }
        }
    }
}
