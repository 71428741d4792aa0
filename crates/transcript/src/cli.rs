//! `coach-worker transcript parse|metrics`: the crate's command-line face.
//!
//! [`run`] returns the exit code instead of exiting so the worker binary (and tests) stay in
//! control. Output goes to stdout; errors go to stderr as `error[CODE]: message`, with exit
//! code 2 (bad input), matching the worker's convention. [`run_to`] takes the writers, for tests.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::metrics::{self, Basis, MeetingMetrics};
use crate::model::{Format, ParseWarning, Transcript, TranscriptError};

/// Transcript subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Parse a transcript and print its segments as JSON.
    Parse {
        /// The transcript file (WebVTT, SRT, JSON, text or .docx).
        file: PathBuf,
        /// Input format; `auto` detects it from the content.
        #[arg(long, value_enum, default_value = "auto")]
        format: Format,
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
        format: Format,
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
            load(&file, format).and_then(|t| print_json(out, &ParseOutput::from(&t)))
        }
        Command::Metrics {
            file,
            coachee,
            json,
            format,
        } => load(&file, format).and_then(|t| {
            let label = crate::find_coachee(&t, &coachee).map_err(CliError::Transcript)?;
            let m = metrics::compute(&t);
            if json {
                print_json(
                    out,
                    &MetricsOutput {
                        coachee: &label,
                        format: t.format,
                        metrics: &m,
                    },
                )
            } else {
                out.write_all(table(&t, &label, &m).as_bytes())
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
    crate::parse(&bytes, format).map_err(CliError::Transcript)
}

fn print_json<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<(), CliError> {
    let s =
        serde_json::to_string_pretty(v).map_err(|e| CliError::Write(std::io::Error::other(e)))?;
    writeln!(out, "{s}").map_err(CliError::Write)
}

/// The documented `transcript parse` shape, and nothing more.
#[derive(Serialize)]
struct ParseOutput<'a> {
    format: Format,
    participants: &'a [String],
    segments: Vec<SegmentOutput<'a>>,
    /// Input that could not be placed (always present, empty when everything was placed).
    warnings: &'a [ParseWarning],
}

#[derive(Serialize)]
struct SegmentOutput<'a> {
    id: &'a str,
    speaker: &'a str,
    start: Option<f64>,
    end: Option<f64>,
    text: &'a str,
}

impl<'a> From<&'a Transcript> for ParseOutput<'a> {
    fn from(t: &'a Transcript) -> Self {
        ParseOutput {
            format: t.format,
            participants: &t.participants,
            segments: t
                .segments
                .iter()
                .map(|s| SegmentOutput {
                    id: &s.id,
                    speaker: &s.speaker,
                    start: s.start,
                    end: s.end,
                    text: &s.text,
                })
                .collect(),
            warnings: &t.warnings,
        }
    }
}

#[derive(Serialize)]
struct MetricsOutput<'a> {
    coachee: &'a str,
    format: Format,
    metrics: &'a MeetingMetrics,
}

/// A fixed-width table: one row per speaker, the coachee marked with `*`.
fn table(t: &Transcript, coachee: &str, m: &MeetingMetrics) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let basis = match m.basis {
        Basis::Time => "time (timestamps)",
        Basis::Words => "words (no timestamps)",
    };
    let _ = writeln!(
        s,
        "format: {}   basis: {basis}   coachee: {coachee}",
        t.format
    );
    let duration = m
        .duration_seconds
        .map_or_else(|| "-".to_string(), |d| format!("{:.1} min", d / 60.0));
    let switches = m
        .speaker_switches_per_minute
        .map_or_else(|| "-".to_string(), |v| format!("{v:.2}/min"));
    let _ = writeln!(
        s,
        "duration: {duration}   words: {}   turns: {}   speaker switches: {} ({switches})",
        m.total_words, m.total_turns, m.speaker_switches
    );
    let q_unit = if m.basis == Basis::Time {
        "q/10min"
    } else {
        "q/1kw"
    };
    let width = m
        .speakers
        .iter()
        .map(|x| x.speaker.chars().count())
        .max()
        .unwrap_or(7)
        .max(7)
        + 2;
    let _ = writeln!(
        s,
        "\n{:<width$} {:>6} {:>5} {:>6} {:>7} {:>9} {:>5} {:>7} {:>5} {:>6} {:>8} {:>8} {:>5}",
        "speaker",
        "share",
        "turns",
        "words",
        "avg/mono",
        "longest",
        "q",
        q_unit,
        "incl",
        "intr",
        "fill/100",
        "hedg/100",
        "wpm"
    );
    for x in &m.speakers {
        let mark = if x.speaker == coachee { "* " } else { "  " };
        let longest = match x.longest_monologue.seconds {
            Some(sec) => format!("{sec:.0}s@{}", x.longest_monologue.span_id),
            None => format!(
                "{}w@{}",
                x.longest_monologue.words, x.longest_monologue.span_id
            ),
        };
        let wpm = x
            .pace_wpm
            .map_or_else(|| "-".to_string(), |p| format!("{p:.0}"));
        let _ = writeln!(
            s,
            "{:<width$} {:>5.1}% {:>5} {:>6} {:>8.1} {:>9} {:>5} {:>7.2} {:>5} {:>6} {:>8.2} {:>8.2} {:>5}",
            format!("{mark}{}", x.speaker),
            x.talk_share * 100.0,
            x.turns,
            x.words,
            x.avg_monologue_words,
            longest,
            x.questions,
            x.questions_rate,
            x.inclusive_questions,
            x.interruptions,
            x.fillers_per_100_words,
            x.hedges_per_100_words,
            wpm,
        );
    }
    let _ = writeln!(
        s,
        "\nshare: talk time (or words) over all participants; longest: longest monologue and where it starts;\n\
         incl: inclusive questions; intr: interruptions made. References: Gong talk ratio ~43:57,\n\
         Microsoft Speaker Coach pace 100-165 wpm, Read.ai fillers under 4 per 100 words."
    );
    s
}
