//! `gate1 validate` and `analyze` entry points: exit codes 0 / 1 / 2 on files written here.

mod common;

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use coach_coaching::cli::{AnalyzeArgs, Gate1Command, ProviderChoice, run_analyze, run_gate1};
use common::{LINES, valid_output};
use serde_json::json;

/// The fixture meeting as a plain-text transcript (`Name: text` lines).
fn transcript_file(dir: &tempfile::TempDir) -> PathBuf {
    let p = dir.path().join("meeting.txt");
    let mut f = std::fs::File::create(&p).unwrap();
    for (who, text) in LINES {
        writeln!(f, "{who}: {text}").unwrap();
    }
    p
}

fn json_file(dir: &tempfile::TempDir, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
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

#[test]
fn gate1_validate_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let t = transcript_file(&dir);
    let t = t.to_str().unwrap();
    let good = json_file(&dir, "good.json", &valid_output());
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

    let mut bad = valid_output();
    bad["patterns"][0]["evidence"][0]["quote"] = json!("What did users say?");
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

fn analyze_args(files: Vec<PathBuf>, coachee: &str, json: bool) -> AnalyzeArgs {
    AnalyzeArgs {
        files,
        coachee: coachee.into(),
        provider: Some(ProviderChoice::Rules),
        json,
        format: coach_transcript::Format::Auto,
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
