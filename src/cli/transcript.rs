//! `coach-worker transcript parse|metrics`: the command line around the `coach-transcript` crate.
//!
//! [`run`] returns the exit code instead of exiting so [`super::dispatch`] stays in control.
//! Output goes to stdout in the crate's documented shapes (`coach_transcript::report`); errors go
//! to stderr as `error[CODE]: message`, with exit code 2 (bad input), matching the worker's
//! convention. [`run_to`] takes the writers, for tests.

use std::io::Write;
use std::path::PathBuf;

use coach_transcript::metrics;
use coach_transcript::report::{MetricsReport, ParseReport, metrics_table};
use coach_transcript::{Format, Transcript, TranscriptError, find_coachee, parse};
use serde::Serialize;

/// `--format`: the crate's [`Format`] as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Detect from the content (see [`crate::detect`]).
    Auto,
    /// WebVTT.
    Vtt,
    /// SubRip.
    Srt,
    /// JSON turn list or QMSum.
    Json,
    /// Plain text / Markdown with `Name:` labels (or a speaker line with a timestamp).
    Text,
    /// A Word document (`.docx`, as Teams and Google Meet download transcripts): its
    /// paragraphs are read as text.
    Docx,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Auto => Format::Auto,
            FormatArg::Vtt => Format::Vtt,
            FormatArg::Srt => Format::Srt,
            FormatArg::Json => Format::Json,
            FormatArg::Text => Format::Text,
            FormatArg::Docx => Format::Docx,
        }
    }
}

/// Transcript subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Parse a transcript and print its segments as JSON.
    Parse {
        /// The transcript file (WebVTT, SRT, JSON, text or .docx).
        file: PathBuf,
        /// Input format; `auto` detects it from the content.
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
    },
    /// Compute conversation metrics and show the coachee's next to everyone else's.
    Metrics {
        /// The transcript file (WebVTT, SRT, JSON, text or .docx).
        file: PathBuf,
        /// The coachee's speaker label, or a unique first name.
        #[arg(long)]
        coachee: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Input format; `auto` detects it from the content.
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
    },
}

/// Run a subcommand, printing to stdout/stderr; returns the process exit code.
pub fn run(cmd: Command) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_to(cmd, &mut stdout.lock(), &mut stderr.lock())
}

/// [`run`] with explicit writers.
pub fn run_to(cmd: Command, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let result = match cmd {
        Command::Parse { file, format } => {
            load(&file, format.into()).and_then(|t| print_json(out, &ParseReport::from(&t)))
        }
        Command::Metrics {
            file,
            coachee,
            json,
            format,
        } => load(&file, format.into()).and_then(|t| {
            let label = find_coachee(&t, &coachee).map_err(CliError::Transcript)?;
            let m = metrics::compute(&t);
            if json {
                print_json(
                    out,
                    &MetricsReport {
                        coachee: &label,
                        format: t.format,
                        metrics: &m,
                    },
                )
            } else {
                out.write_all(metrics_table(&t, &label, &m).as_bytes())
                    .map_err(CliError::Write)
            }
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error[{}]: {e}", e.code());
            2
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Transcript(TranscriptError),
    #[error("cannot read {path}: {source}; check the path and permissions")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
}

impl CliError {
    fn code(&self) -> &'static str {
        match self {
            CliError::Transcript(e) => e.code(),
            CliError::Read { .. } => "READ_FAILED",
            CliError::Write(_) => "WRITE_FAILED",
        }
    }
}

fn load(file: &PathBuf, format: Format) -> Result<Transcript, CliError> {
    let bytes = std::fs::read(file).map_err(|source| CliError::Read {
        path: file.display().to_string(),
        source,
    })?;
    parse(&bytes, format).map_err(CliError::Transcript)
}

fn print_json<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<(), CliError> {
    let s =
        serde_json::to_string_pretty(v).map_err(|e| CliError::Write(std::io::Error::other(e)))?;
    writeln!(out, "{s}").map_err(CliError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/transcript/tests/fixtures"
        ))
        .join(name)
    }

    fn cli(cmd: Command) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_to(cmd, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn parse_and_metrics_print_the_crate_reports() {
        let (code, out, _) = cli(Command::Parse {
            file: fixture("one_on_one.vtt"),
            format: FormatArg::Auto,
        });
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["format"], "vtt");
        assert_eq!(v["warnings"], serde_json::json!([]));

        let (code, out, _) = cli(Command::Metrics {
            file: fixture("one_on_one.vtt"),
            coachee: "maya".into(),
            json: false,
            format: FormatArg::Auto,
        });
        assert_eq!(code, 0);
        assert!(out.contains("* Maya") && out.contains("43.9%"), "{out}");

        let (code, out, _) = cli(Command::Metrics {
            file: fixture("standup.md"),
            coachee: "Ben".into(),
            json: true,
            format: FormatArg::Auto,
        });
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["coachee"], "Ben");
    }

    #[test]
    fn errors_go_to_stderr_with_their_code_and_exit_2() {
        let (code, out, err) = cli(Command::Metrics {
            file: fixture("standup.md"),
            coachee: "Zed".into(),
            json: false,
            format: FormatArg::Auto,
        });
        assert_eq!((code, out.as_str()), (2, ""));
        assert!(err.starts_with("error[COACHEE_NOT_FOUND]: "), "{err}");

        let (code, _, err) = cli(Command::Parse {
            file: fixture("missing.vtt"),
            format: FormatArg::Auto,
        });
        assert_eq!(code, 2);
        assert!(err.starts_with("error[READ_FAILED]"), "{err}");
    }
}
