//! The rules analyzer on the project's own sample transcripts (`samples/transcripts/`, described in
//! `samples/README.md`): each meeting's top strength and top growth area are pinned, so a change of
//! thresholds that makes the picks contradict the meetings shows up here.

use std::path::Path;

use coach_coaching::{AnalysisInput, Analyzer, RunType};
use coach_transcript::{Format, Transcript, parse};
use serde_json::Value;

const COACHEE: &str = "Maya Chen";

fn sample(file: &str) -> Transcript {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples/transcripts")
        .join(file);
    parse(&std::fs::read(&path).unwrap(), Format::Auto).unwrap()
}

/// The first strength and the first growth pattern of the analysis, by title.
async fn picks(files: &[&str]) -> (Option<String>, Option<String>, Vec<String>) {
    let input = AnalysisInput {
        run_type: if files.len() == 3 {
            RunType::BaselinePack
        } else {
            RunType::SingleMeeting
        },
        coachee: COACHEE.into(),
        meetings: files.iter().map(|f| sample(f)).collect(),
        active_experiment: None,
    };
    let a = Analyzer::Rules.analyze(&input).await.unwrap();
    let patterns = a.output["patterns"].as_array().unwrap().clone();
    let first = |kind: &str| {
        patterns
            .iter()
            .find(|p| p["kind"] == kind)
            .and_then(|p| p["title"].as_str())
            .map(str::to_owned)
    };
    let titles = patterns
        .iter()
        .map(|p: &Value| p["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    (first("strength"), first("growth"), titles)
}

async fn assert_picks(files: &[&str], strength: &str, growth: Option<&str>) {
    let (s, g, all) = picks(files).await;
    assert_eq!(s.as_deref(), Some(strength), "{files:?}: {all:?}");
    assert_eq!(g.as_deref(), growth, "{files:?}: {all:?}");
}

// The baselines: Maya talks most of the time and asks few, mostly closed questions.

#[tokio::test]
async fn baseline_1_sprint_planning() {
    let f = ["baseline-1-sprint-planning.vtt"];
    assert_picks(&f, "Engaged contributor", Some("Dominates the airtime")).await;
    assert!(picks(&f).await.2.contains(&"Few questions".to_owned()));
}

#[tokio::test]
async fn baseline_2_incident_review() {
    let f = ["baseline-2-incident-review.srt"];
    assert_picks(&f, "Engaged contributor", Some("Dominates the airtime")).await;
    assert!(picks(&f).await.2.contains(&"Few questions".to_owned()));
}

#[tokio::test]
async fn baseline_3_roadmap_sync() {
    let f = ["baseline-3-roadmap-sync.md"];
    assert_picks(&f, "Engaged contributor", Some("Dominates the airtime")).await;
    assert!(picks(&f).await.2.contains(&"Few questions".to_owned()));
}

#[tokio::test]
async fn the_baseline_pack_does_not_call_few_closed_questions_a_strength() {
    let f = [
        "baseline-1-sprint-planning.vtt",
        "baseline-2-incident-review.srt",
        "baseline-3-roadmap-sync.md",
    ];
    assert_picks(&f, "Engaged contributor", Some("Dominates the airtime")).await;
    let all = picks(&f).await.2;
    assert!(!all.contains(&"Asks questions".to_owned()), "{all:?}");
    assert!(all.contains(&"Few questions".to_owned()), "{all:?}");
}

// The follow-ups: she asks open questions first; in the group meetings she still has about twice a
// fair share of the airtime, in the 1:1 about half.

#[tokio::test]
async fn followup_1_design_review() {
    let f = ["followup-1-design-review.json"];
    assert_picks(&f, "Asks questions", Some("Dominates the airtime")).await;
}

#[tokio::test]
async fn followup_2_one_on_one() {
    let f = ["followup-2-one-on-one.txt"];
    assert_picks(&f, "Asks questions", None).await;
    assert!(picks(&f).await.2.contains(&"Balanced airtime".to_owned()));
}

#[tokio::test]
async fn followup_3_team_retro() {
    let f = ["followup-3-team-retro.vtt"];
    assert_picks(&f, "Asks questions", Some("Dominates the airtime")).await;
}
