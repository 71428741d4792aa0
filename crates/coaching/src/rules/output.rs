//! Card assembly: the patterns that fired become the Gate-1 output — the pattern list, the
//! coaching card (headline, keep doing, try next), the summary, and the experiment proposal
//! (baseline pack) or the judged attempt (single meeting with an active experiment).

use coach_transcript::metrics::MeetingMetrics;
use serde_json::{Value, json};

use super::catalogue::{CatalogueExperiment, experiment_for};
use super::evidence::Run;
use super::patterns::Found;
use super::pooled::{Pooled, pool};
use crate::gate1::{Gate1Context, SCHEMA_VERSION};
use crate::model::{AnalysisInput, RunType};

/// The Gate-1 output for `input` from precomputed `metrics` (one per meeting).
pub fn build_output(input: &AnalysisInput, metrics: &[MeetingMetrics]) -> Value {
    let ctx = Gate1Context::new(
        input.run_type,
        input.coachee.clone(),
        input.active_experiment.is_some(),
        &input.meetings,
    );
    let run = Run { input, ctx };
    let pooled = pool(metrics, &input.coachee);
    let found = run.patterns(metrics, &pooled);
    let main_growth = found.iter().find(|f| f.growth);
    let main_strength = found.iter().find(|f| !f.growth);
    let proposal = experiment_for(main_growth.map(|f| f.key));
    let experiment_attempt = match (&input.active_experiment, input.run_type) {
        (Some(e), RunType::SingleMeeting) => run.attempt(e, metrics, &pooled),
        _ => Value::Null,
    };
    json!({
        "schema_version": SCHEMA_VERSION,
        "run_type": input.run_type.as_str(),
        "coachee_speaker": input.coachee,
        "summary": summary(input, &pooled, main_strength, main_growth),
        "patterns": patterns_json(&run, &found),
        "coaching_card": coaching_card(&found, main_strength, main_growth, &proposal),
        "experiment_proposal": experiment_proposal(input.run_type, &proposal),
        "experiment_attempt": experiment_attempt,
    })
}

/// The patterns as Gate-1 output, numbered `P1..`.
fn patterns_json(run: &Run<'_>, found: &[Found<'_>]) -> Vec<Value> {
    found
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "id": format!("P{}", i + 1),
                "kind": if f.growth { "growth" } else { "strength" },
                "category": f.category,
                "title": f.title,
                "observation": f.observation,
                "impact": f.impact,
                "evidence": run.evidence_json(&f.evidence),
            })
        })
        .collect()
}

/// Headline, the strengths' advice to keep, and up to three growth steps (the proposed
/// experiment's behaviour when no growth pattern fired).
fn coaching_card(
    found: &[Found<'_>],
    main_strength: Option<&Found<'_>>,
    main_growth: Option<&Found<'_>>,
    proposal: &CatalogueExperiment,
) -> Value {
    let keep_doing: Vec<&str> = found
        .iter()
        .filter(|f| !f.growth)
        .map(|f| f.advice)
        .collect();
    let mut try_next: Vec<&str> = found
        .iter()
        .filter(|f| f.growth)
        .map(|f| f.advice)
        .take(3)
        .collect();
    if try_next.is_empty() {
        try_next.push(proposal.behavior);
    }
    let headline = match (main_strength, main_growth) {
        (Some(s), Some(g)) => format!("Keep: {}. Next: {}.", s.title, g.title.to_lowercase()),
        (None, Some(g)) => format!("Focus next: {}.", g.title.to_lowercase()),
        (Some(s), None) => format!("Strong meeting habits — keep: {}.", s.title.to_lowercase()),
        (None, None) => "Coaching card".to_string(),
    };
    json!({"headline": headline, "keep_doing": keep_doing, "try_next": try_next})
}

/// One paragraph: the coachee's numbers, then the main strength and growth area.
fn summary(
    input: &AnalysisInput,
    pooled: &Pooled,
    main_strength: Option<&Found<'_>>,
    main_growth: Option<&Found<'_>>,
) -> String {
    let meetings = match input.run_type {
        RunType::SingleMeeting => "this meeting".to_string(),
        RunType::BaselinePack => format!("{} meetings", input.meetings.len()),
    };
    let mut summary = format!(
        "Across {meetings}, {} took {} turn(s) and spoke {} words, about {:.0}% of the conversation, and asked {} question(s).",
        input.coachee,
        pooled.turns,
        pooled.words,
        pooled.share * 100.0,
        pooled.questions
    );
    if let Some(s) = main_strength {
        summary.push_str(&format!(" Main strength: {}.", s.title.to_lowercase()));
    }
    if let Some(g) = main_growth {
        summary.push_str(&format!(" Main growth area: {}.", g.title.to_lowercase()));
    }
    summary
}

/// The catalogue experiment, proposed after a baseline pack only.
fn experiment_proposal(run_type: RunType, proposal: &CatalogueExperiment) -> Value {
    match run_type {
        RunType::BaselinePack => json!({
            "title": proposal.title,
            "behavior": proposal.behavior,
            "success_signal": proposal.success_signal,
            "target_meetings": proposal.target_meetings,
        }),
        RunType::SingleMeeting => Value::Null,
    }
}
