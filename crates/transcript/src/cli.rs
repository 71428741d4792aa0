//! `coach-worker transcript parse|metrics` (stub).
use std::path::PathBuf;

use crate::model::Format;

/// Transcript subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Parse a transcript and print its segments as JSON.
    Parse {
        /// The transcript file.
        file: PathBuf,
        /// Input format.
        #[arg(long, value_enum, default_value = "auto")]
        format: Format,
    },
    /// Compute conversation metrics.
    Metrics {
        /// The transcript file.
        file: PathBuf,
        /// The coachee's speaker label or first name.
        #[arg(long)]
        coachee: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Input format.
        #[arg(long, value_enum, default_value = "auto")]
        format: Format,
    },
}

/// Run a subcommand; returns the process exit code.
pub fn run(cmd: Command) -> i32 {
    let _ = cmd;
    2
}
