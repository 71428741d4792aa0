//! Command-line entry points the worker binary mounts: `gate1 validate` and `analyze`.
//!
//! They return an exit code instead of exiting so the worker keeps control of the process:
//! 0 success, 1 the check or the analysis failed, 2 bad usage or unreadable input. Reports and
//! cards go to stdout; explanations of failures go to stderr.

use std::path::{Path, PathBuf};

use coach_transcript::{Format, Transcript, find_coachee, parse};
use serde_json::Value;

use crate::analysis::{ActiveExperiment, AnalysisError, AnalysisInput, Analyzer, RunType};
use crate::gate1::{self, Gate1Context};
use crate::openai::{OpenAiClient, OpenAiConfig};

/// `gate1 ...` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Gate1Command {
    /// Check a coaching output (Gate-1 JSON) against its transcript(s); prints the report as
    /// JSON. Exit 0 when it passes, 1 when it fails, 2 on bad input.
    Validate {
        /// Transcript file; repeat three times, in pack order, for a baseline pack.
        #[arg(long = "transcript", value_name = "FILE", required = true)]
        transcripts: Vec<PathBuf>,
        /// Coachee name or speaker label (default: the output's `coachee_speaker`).
        #[arg(long)]
        coachee: Option<String>,
        /// Run type (default: single_meeting for one transcript, baseline_pack for three).
        #[arg(long, value_enum)]
        run_type: Option<RunType>,
        /// The coachee has an active experiment (a single-meeting output must then judge it).
        #[arg(long)]
        experiment_active: bool,
        /// Transcript format.
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
        /// The output to check (`-` for stdin).
        #[arg(value_name = "OUTPUT.json")]
        output: PathBuf,
    },
}

/// Which provider `analyze` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderChoice {
    /// The offline rules analyzer.
    Rules,
    /// An OpenAI-compatible server (`OPENAI_*` or `AZURE_OPENAI_*` settings, see `serve --help`).
    Openai,
}

/// `analyze` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// One transcript (single meeting) or three (baseline pack, in order).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The coachee's name or speaker label.
    #[arg(long)]
    pub coachee: String,
    /// Provider (default: openai when OPENAI_API_KEY is set, else rules).
    #[arg(long, value_enum, env = "COACH_PROVIDER")]
    pub provider: Option<ProviderChoice>,
    /// Print the Gate-1 JSON output instead of the markdown card.
    #[arg(long)]
    pub json: bool,
    /// Transcript format.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Title of the coachee's active experiment (single meeting: judge the attempt).
    #[arg(long, value_name = "TITLE")]
    pub experiment: Option<String>,
    /// The active experiment's behaviour.
    #[arg(long, requires = "experiment", default_value = "")]
    pub experiment_behavior: String,
    /// The active experiment's success signal.
    #[arg(long, requires = "experiment", default_value = "")]
    pub experiment_signal: String,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load(paths: &[PathBuf], format: Format) -> Result<Vec<Transcript>, String> {
    paths
        .iter()
        .map(|p| {
            let bytes = read(p)?;
            parse(&bytes, format).map_err(|e| format!("{}: {e} [{}]", p.display(), e.code()))
        })
        .collect()
}

fn run_type_for(count: usize, asked: Option<RunType>) -> Result<RunType, String> {
    let rt = match (asked, count) {
        (Some(rt), _) => rt,
        (None, 1) => RunType::SingleMeeting,
        (None, 3) => RunType::BaselinePack,
        (None, n) => {
            return Err(format!(
                "{n} transcripts given: pass one (single meeting) or three (baseline pack)"
            ));
        }
    };
    if rt.meeting_count() != count {
        return Err(format!(
            "a {rt} run takes {} transcript(s), {count} given",
            rt.meeting_count()
        ));
    }
    Ok(rt)
}

/// Resolves `name` to one speaker label shared by every transcript.
fn resolve_coachee(ts: &[Transcript], name: &str) -> Result<String, String> {
    let mut label: Option<String> = None;
    for (i, t) in ts.iter().enumerate() {
        let l = find_coachee(t, name).map_err(|e| format!("transcript {}: {e}", i + 1))?;
        match &label {
            Some(prev) if *prev != l => {
                return Err(format!(
                    "the coachee is `{prev}` in one transcript and `{l}` in another: use the same label in all three"
                ));
            }
            _ => label = Some(l),
        }
    }
    label.ok_or_else(|| "no transcript given".to_string())
}

/// Runs `gate1 validate`; returns the exit code.
pub fn run_gate1(cmd: Gate1Command) -> i32 {
    let Gate1Command::Validate {
        transcripts,
        coachee,
        run_type,
        experiment_active,
        format,
        output,
    } = cmd;
    let prepared = (|| -> Result<(Vec<Transcript>, RunType, Value), String> {
        let ts = load(&transcripts, format)?;
        let rt = run_type_for(ts.len(), run_type)?;
        let bytes = read(&output)?;
        let out: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not JSON: {e}", output.display()))?;
        Ok((ts, rt, out))
    })();
    let (ts, rt, out) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let name = match coachee.or_else(|| {
        out.get("coachee_speaker")
            .and_then(Value::as_str)
            .map(str::to_string)
    }) {
        Some(n) => n,
        None => {
            eprintln!("error: the output has no coachee_speaker; pass --coachee NAME");
            return 2;
        }
    };
    let label = match resolve_coachee(&ts, &name) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let ctx = Gate1Context::new(rt, label, experiment_active, &ts);
    let report = gate1::validate(&out, &ctx);
    match serde_json::to_string_pretty(&report) {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("error: cannot print the report: {e}");
            return 2;
        }
    }
    if report.passed { 0 } else { 1 }
}

/// Runs `analyze` with the OpenAI-compatible client settings, if any (the worker's binary parses
/// them with the rest of its configuration); returns the exit code. A rate-limit window longer
/// than the client waits in place fails at once, saying how long to wait.
pub async fn run_analyze(args: AnalyzeArgs, openai: Option<OpenAiConfig>) -> i32 {
    let prepared = (|| -> Result<(Vec<Transcript>, RunType, String), String> {
        let ts = load(&args.files, args.format)?;
        let rt = run_type_for(ts.len(), None)?;
        let label = resolve_coachee(&ts, &args.coachee)?;
        Ok((ts, rt, label))
    })();
    let (meetings, run_type, coachee) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let provider = args.provider.unwrap_or(if openai.is_some() {
        ProviderChoice::Openai
    } else {
        ProviderChoice::Rules
    });
    let analyzer = match (provider, openai) {
        (ProviderChoice::Rules, _) => Analyzer::Rules,
        (ProviderChoice::Openai, None) => {
            eprintln!(
                "error: --provider openai needs OPENAI_API_KEY (and optionally OPENAI_BASE_URL, OPENAI_MODEL), or the AZURE_OPENAI_* settings"
            );
            return 2;
        }
        (ProviderChoice::Openai, Some(c)) => match OpenAiClient::new(c) {
            Ok(client) => Analyzer::OpenAi(client),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
    };
    let input = AnalysisInput {
        run_type,
        coachee,
        meetings,
        active_experiment: args.experiment.map(|title| ActiveExperiment {
            title,
            behavior: args.experiment_behavior,
            success_signal: args.experiment_signal,
        }),
    };
    match analyzer.analyze(&input).await {
        Ok(a) => {
            if args.json {
                match serde_json::to_string_pretty(&a.output) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 1;
                    }
                }
            } else {
                print!("{}", a.card_markdown);
            }
            0
        }
        Err(AnalysisError::Gate1Failed { report, .. }) => {
            eprintln!("error: the answer failed Gate-1:\n{}", report.to_bullets());
            1
        }
        Err(e @ AnalysisError::BadInput { .. }) => {
            eprintln!("error: {e} [{}]", e.code());
            2
        }
        Err(e) => {
            eprintln!("error: {e} [{}]", e.code());
            if let Some(wait) = e.retry_after() {
                eprintln!(
                    "the provider asks to wait {}: run the command again after that",
                    crate::openai::human_wait(wait)
                );
            }
            1
        }
    }
}
