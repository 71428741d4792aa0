//! `coach-worker gate1 validate` and `coach-worker analyze`: the command line around the
//! `coach-coaching` crate.
//!
//! They return an exit code instead of exiting so [`super::dispatch`] keeps control of the
//! process: 0 success, 1 the check or the analysis failed, 2 bad usage or unreadable input. Reports
//! and cards go to stdout; explanations of failures go to stderr. What is not argument handling —
//! the run type for a number of transcripts, the coachee label a pack shares, Gate-1, the analysis
//! itself — is the crate's (`coach_coaching::input`, `gate1`, `Analyzer`).

use std::path::{Path, PathBuf};

use coach_coaching::gate1::{self, Gate1Context};
use coach_coaching::input::{resolve_coachee, run_type_for};
use coach_coaching::{
    ActiveExperiment, AnalysisError, AnalysisInput, Analyzer, OpenAiClient, OpenAiConfig, RunType,
};
use coach_transcript::{Format, Transcript, parse};
use serde_json::Value;

use super::transcript::FormatArg;

/// `--run-type`: the workspace's one [`RunType`] (`coach_transcript::RunType`) as the command line
/// spells it; the value names are its wire names, plus dashed aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunTypeArg {
    /// One meeting; span ids `S12`.
    #[value(name = "single_meeting", alias = "single-meeting")]
    SingleMeeting,
    /// Three meetings; span ids `T1.S12`..`T3.S12`.
    #[value(name = "baseline_pack", alias = "baseline-pack")]
    BaselinePack,
}

impl From<RunTypeArg> for RunType {
    fn from(r: RunTypeArg) -> RunType {
        match r {
            RunTypeArg::SingleMeeting => RunType::SingleMeeting,
            RunTypeArg::BaselinePack => RunType::BaselinePack,
        }
    }
}

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
        run_type: Option<RunTypeArg>,
        /// The coachee has an active experiment (a single-meeting output must then judge it).
        #[arg(long)]
        experiment_active: bool,
        /// Transcript format.
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
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
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
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
        let ts = load(&transcripts, format.into())?;
        let rt = run_type_for(ts.len(), run_type.map(Into::into)).map_err(|e| e.to_string())?;
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
    let label = match resolve_coachee(&ts, &name).map_err(|e| e.to_string()) {
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
        let ts = load(&args.files, args.format.into())?;
        let rt = run_type_for(ts.len(), None).map_err(|e| e.to_string())?;
        let label = resolve_coachee(&ts, &args.coachee).map_err(|e| e.to_string())?;
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
                    coach_coaching::openai::human_wait(wait)
                );
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;
    use serde_json::json;

    use super::*;

    const LINES: &[(&str, &str)] = &[
        (
            "Ana",
            "Thanks for joining. Before I share my view, what did the pilot teams tell you, Ben?",
        ),
        (
            "Ben",
            "Mostly that setup takes too long. Two of four stopped at the import step.",
        ),
        (
            "Ana",
            "I think we should drop the import step from the first session. What would you keep?",
        ),
        ("Ben", "A small CSV upload with three columns."),
        (
            "Ana",
            "Let's do that. Ben owns the upload and shows it on Friday. Does anyone see a risk?",
        ),
        ("Ben", "No risk from my side, Friday works."),
    ];

    /// The meeting as a plain-text transcript (`Name: text` lines).
    fn transcript_file(dir: &tempfile::TempDir) -> PathBuf {
        let p = dir.path().join("meeting.txt");
        let mut f = std::fs::File::create(&p).unwrap();
        for (who, text) in LINES {
            writeln!(f, "{who}: {text}").unwrap();
        }
        p
    }

    fn json_file(dir: &tempfile::TempDir, name: &str, v: &Value) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        p
    }

    /// An output that passes Gate-1 for the meeting: the rules analyzer's.
    async fn valid_output(file: &Path) -> Value {
        let t = parse(&std::fs::read(file).unwrap(), Format::Auto).unwrap();
        let input = AnalysisInput {
            run_type: RunType::SingleMeeting,
            coachee: "Ana".into(),
            meetings: vec![t],
            active_experiment: None,
        };
        Analyzer::Rules.analyze(&input).await.unwrap().output
    }

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Gate1Command,
    }

    fn validate(args: &[&str]) -> i32 {
        let mut full = vec!["gate1"];
        full.extend_from_slice(args);
        run_gate1(Cli::try_parse_from(full).expect("arguments parse").cmd)
    }

    #[tokio::test]
    async fn gate1_validate_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let t = transcript_file(&dir);
        let output = valid_output(&t).await;
        let t = t.to_str().unwrap();
        let good = json_file(&dir, "good.json", &output);
        assert_eq!(
            validate(&["validate", "--transcript", t, good.to_str().unwrap()]),
            0
        );
        assert_eq!(
            validate(&[
                "validate",
                "--transcript",
                t,
                "--coachee",
                "ana",
                "--run-type",
                "single_meeting",
                good.to_str().unwrap()
            ]),
            0,
            "coachee names resolve like the transcript crate resolves them"
        );

        let mut bad = output.clone();
        bad["patterns"][0]["evidence"][0]["quote"] = json!("What did the customers say?");
        let bad = json_file(&dir, "bad.json", &bad);
        assert_eq!(
            validate(&["validate", "--transcript", t, bad.to_str().unwrap()]),
            1
        );
        // An active experiment makes the null attempt a failure.
        assert_eq!(
            validate(&[
                "validate",
                "--transcript",
                t,
                "--experiment-active",
                good.to_str().unwrap()
            ]),
            1
        );

        let missing = dir.path().join("missing.json");
        assert_eq!(
            validate(&["validate", "--transcript", t, missing.to_str().unwrap()]),
            2
        );
        let not_json = dir.path().join("not.json");
        std::fs::write(&not_json, "nope").unwrap();
        assert_eq!(
            validate(&["validate", "--transcript", t, not_json.to_str().unwrap()]),
            2
        );
        assert_eq!(
            validate(&[
                "validate",
                "--transcript",
                t,
                "--transcript",
                t,
                good.to_str().unwrap()
            ]),
            2,
            "two transcripts are neither a meeting nor a pack"
        );
        assert_eq!(
            validate(&[
                "validate",
                "--transcript",
                t,
                "--coachee",
                "Zed",
                good.to_str().unwrap()
            ]),
            2
        );
    }

    #[test]
    fn validate_requires_a_transcript() {
        assert!(Cli::try_parse_from(["gate1", "validate", "out.json"]).is_err());
    }

    #[test]
    fn run_type_accepts_both_spellings() {
        for spelling in ["baseline_pack", "baseline-pack"] {
            let cli = Cli::try_parse_from([
                "gate1",
                "validate",
                "--transcript",
                "a.txt",
                "--run-type",
                spelling,
                "out.json",
            ])
            .expect("parses");
            let Gate1Command::Validate { run_type, .. } = cli.cmd;
            assert_eq!(run_type.map(RunType::from), Some(RunType::BaselinePack));
        }
    }

    #[test]
    fn run_type_values_are_the_wire_names() {
        use clap::ValueEnum;
        for arg in RunTypeArg::value_variants() {
            let name = arg.to_possible_value().expect("every value is visible");
            assert_eq!(name.get_name(), RunType::from(*arg).as_str());
        }
        assert_eq!(
            RunTypeArg::value_variants().len(),
            RunType::ALL.len(),
            "every run type has a command-line value"
        );
    }

    fn analyze_args(files: Vec<PathBuf>, coachee: &str, json: bool) -> AnalyzeArgs {
        AnalyzeArgs {
            files,
            coachee: coachee.into(),
            provider: Some(ProviderChoice::Rules),
            json,
            format: FormatArg::Auto,
            experiment: None,
            experiment_behavior: String::new(),
            experiment_signal: String::new(),
        }
    }

    #[tokio::test]
    async fn analyze_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let t = transcript_file(&dir);
        assert_eq!(
            run_analyze(analyze_args(vec![t.clone()], "Ana", false), None).await,
            0
        );
        assert_eq!(
            run_analyze(analyze_args(vec![t.clone()], "Ana", true), None).await,
            0
        );
        assert_eq!(
            run_analyze(
                analyze_args(vec![t.clone(), t.clone(), t.clone()], "Ana", false),
                None
            )
            .await,
            0
        );
        assert_eq!(
            run_analyze(analyze_args(vec![t.clone(), t.clone()], "Ana", false), None).await,
            2
        );
        assert_eq!(
            run_analyze(analyze_args(vec![t.clone()], "Nobody", false), None).await,
            2
        );
        let mut with_exp = analyze_args(vec![t], "Ana", true);
        with_exp.experiment = Some("Three open questions".into());
        assert_eq!(run_analyze(with_exp, None).await, 0);
    }

    #[tokio::test]
    async fn analyze_fails_fast_on_a_long_rate_limit_window() {
        // The test harness installs the TLS provider, as `main` does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fake = coach_coaching::fake::FakeOpenAi::start().await;
        fake.push(coach_coaching::fake::Scripted::RateLimitWindow {
            reset_requests: "6m0s".into(),
            reset_tokens: "1m30s".into(),
        });
        let dir = tempfile::tempdir().unwrap();
        let t = transcript_file(&dir);
        let mut args = analyze_args(vec![t], "Ana", false);
        args.provider = Some(ProviderChoice::Openai);
        assert_eq!(run_analyze(args, Some(fake.config())).await, 1);
        assert_eq!(
            fake.request_count().await,
            1,
            "no wait in place, no second call"
        );
    }
}
