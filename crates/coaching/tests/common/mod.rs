//! Shared fixtures written for these tests: a short product-review meeting between Ana (the
//! coachee), Ben and Chloé.
#![allow(dead_code)]

use coach_coaching::{AnalysisInput, RunType};
use coach_transcript::Transcript;
use serde_json::{Value, json};

pub const LINES: &[(&str, &str)] = &[
    (
        "Ana",
        "Thanks for joining. Before I share my view, what did the beta users tell you, Ben?",
    ),
    (
        "Ben",
        "Mostly that onboarding takes too long. Three of five gave up at the import step.",
    ),
    (
        "Ana",
        "That matches the support tickets.  I think we should cut the import step from the first session.",
    ),
    (
        "Chloé",
        "Could we keep a lighter import? Some teams need their data on day one.",
    ),
    (
        "Ana",
        "Good point, Chloé. What would the lightest version look like for you?",
    ),
    ("Ben", "A CSV upload with three columns, nothing more."),
    (
        "Ana",
        "Let's do that. Ben owns the CSV upload, Chloé reviews it by Friday. Does anyone see a risk?",
    ),
    ("Chloé", "No risk from my side, Friday works."),
];

/// The fixture as a transcript (built through serde, so defaulted fields stay defaulted).
pub fn transcript() -> Transcript {
    let segments: Vec<Value> = LINES
        .iter()
        .enumerate()
        .map(|(i, (who, text))| {
            json!({"id": format!("S{}", i + 1), "speaker": who, "start": (i * 10) as f64,
                   "end": (i * 10 + 9) as f64, "text": text})
        })
        .collect();
    serde_json::from_value(json!({
        "format": "text",
        "participants": ["Ana", "Ben", "Chloé"],
        "segments": segments,
    }))
    .expect("fixture transcript")
}

pub fn single_input() -> AnalysisInput {
    AnalysisInput {
        run_type: RunType::SingleMeeting,
        coachee: "Ana".into(),
        meetings: vec![transcript()],
        active_experiment: None,
    }
}

/// A hand-written output that passes Gate-1 against [`transcript`] (single meeting, no experiment).
pub fn valid_output() -> Value {
    json!({
        "schema_version": "gate1.v1",
        "run_type": "single_meeting",
        "coachee_speaker": "Ana",
        "summary": "Ana opened with questions and closed with clear owners.",
        "patterns": [
            {"id": "P1", "kind": "strength", "category": "questions", "title": "Opens with a question",
             "observation": "Ana asked for the users' feedback before giving her view.",
             "impact": "The team's evidence shaped the decision.",
             "evidence": [{"span_id": "S1", "quote": "what did the beta users tell you, Ben?"}]},
            {"id": "P2", "kind": "strength", "category": "decisions", "title": "Clear owners",
             "observation": "Ana closed with owners and a date.",
             "impact": "Everyone knows who does what by when.",
             "evidence": [{"span_id": "S7", "quote": "Ben owns the CSV upload, Chloé reviews it by Friday."},
                          {"span_id": "S8", "quote": "Friday works."}]},
            {"id": "P3", "kind": "growth", "category": "filler_hedging", "title": "Hedged recommendation",
             "observation": "Ana softened her key recommendation.",
             "impact": "It may sound less certain than it is.",
             "evidence": [{"span_id": "S3", "quote": "I think we should cut the import step"}]}
        ],
        "coaching_card": {"headline": "Keep asking first", "keep_doing": ["Ask before telling"],
                          "try_next": ["State the recommendation without 'I think'"]},
        "experiment_proposal": null,
        "experiment_attempt": null
    })
}
