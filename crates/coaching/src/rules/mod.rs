//! The `rules` provider: deterministic coaching from the conversation metrics.
//!
//! It is the embedded default (no API key, no network) and it must always pass Gate-1, so it
//! only ever writes quotes it cut from the coachee's own segments: each quote is one sentence of a
//! real segment (the one that shows the behaviour: the question, the hedge), clipped to at most
//! [`MAX_QUOTE_BYTES`] on a char and word boundary. Same input, same output, byte for byte.
//!
//! # Layout
//!
//! One run goes through four steps, one module each:
//! 1. `pooled` — the coachee's numbers over the run's meetings;
//! 2. `patterns` — one detector per row of the table below, ranked; `evidence` finds the
//!    coachee's segments that show a pattern and cuts the quotes;
//! 3. `attempt` — the active experiment judged by the behaviour it maps to ([`classify`]);
//! 4. `output` — the Gate-1 output and coaching card ([`build_output`]).
//!
//! [`catalogue`] holds the experiments and the behaviour mapping; this module holds the thresholds
//! and [`analyze`], which checks the output against Gate-1.
//!
//! # Thresholds (per run; a baseline pack pools its three meetings)
//!
//! Fair share is `1 / n` for the `n` speakers who said anything (pooled: the mean over meetings).
//!
//! | pattern | kind | fires when |
//! |---|---|---|
//! | Dominates the airtime | growth, talk_balance | share ≥ fair + [`OVER_SHARE_MARGIN`] (15 points) |
//! | Rarely heard | growth, talk_balance | share < [`QUIET_FACTOR`] × fair (0.4) with ≤ 8 speakers and ≥ 10 turns in the meeting(s) |
//! | Long monologues | growth, listening | longest turn ≥ [`MONOLOGUE_SECONDS`] (150 s, Gong's "2.5 minutes"), or ≥ [`MONOLOGUE_WORDS`] (350) words without times |
//! | Few questions | growth, questions | ≥ [`MIN_TURNS`] turns, ≥ 100 words and < [`FEW_QUESTIONS_PER_100_WORDS`] (1) question per 100 words spoken |
//! | Fillers and hedges | growth, filler_hedging | ≥ 100 words and (fillers + hedges) per 100 words ≥ [`HEDGE_RATE_HIGH`] (4, Read.ai's 4 %) |
//! | Cuts in | growth, listening | ≥ [`MIN_INTERRUPTIONS`] (3) interruptions and ≥ 15 % of turns |
//! | Asks questions | strength, questions | ≥ 3 questions and ≥ [`GOOD_QUESTIONS_PER_100_WORDS`] (2) per 100 words spoken |
//! | Invites others in | strength, inclusion | ≥ 1 inclusive question ("what do you think", "anyone ...") |
//! | Balanced airtime | strength, talk_balance | within [`BALANCED_MARGIN`] (10 points) of fair share, ≥ 2 speakers |
//! | Direct language | strength, clarity | ≥ 150 words and (fillers + hedges) per 100 words < [`HEDGE_RATE_LOW`] (1.5) |
//! | Engaged contributor | strength, other | fallback when no other strength fires, so every run names a measured strength |
//!
//! Questions are counted per 100 words the coachee spoke, not per turn: someone who holds the floor
//! in a few long turns gets a high rate per turn from a handful of questions (the baseline samples:
//! 5 questions in 19 turns is 0.26 a turn, but 0.4 per 100 of 1,240 words), which would name
//! "asks questions" as the strength of a meeting run as a briefing.
//!
//! Growth patterns are ranked by how far past their threshold they are; the first is the "main
//! growth pattern" that keys the experiment catalogue ([`experiment_for`]). Strengths keep the
//! table's order. At most six patterns.
//!
//! An active experiment is judged (single meetings) by mapping its text to one measurable
//! behaviour (questions, invitations, turn length, hedging, interruptions, airtime) and reading
//! the metric and its segments; text that maps to none is judged `unclear`.

mod attempt;
pub mod catalogue;
mod evidence;
mod output;
mod patterns;
mod pooled;

pub use catalogue::{Behaviour, CatalogueExperiment, PatternKey, classify, experiment_for};
pub use output::build_output;

use crate::gate1::{self, Gate1Context};
use crate::model::{AnalysisInput, Usage};
use crate::outcome::{Analysis, AnalysisError, finish};

/// The model name recorded for `rules` runs.
pub const RULES_MODEL: &str = "rules-v1";
/// The version recorded as the prompt version of `rules` runs (bump when thresholds change).
pub const RULES_VERSION: &str = "rules.v2";
/// Longest quote the analyzer writes.
pub const MAX_QUOTE_BYTES: usize = 200;
/// Share points above fair share that count as dominating.
pub const OVER_SHARE_MARGIN: f64 = 0.15;
/// Share points around fair share that count as balanced.
pub const BALANCED_MARGIN: f64 = 0.10;
/// Fraction of fair share under which the coachee is "rarely heard".
pub const QUIET_FACTOR: f64 = 0.4;
/// Longest turn in seconds that counts as a monologue problem.
pub const MONOLOGUE_SECONDS: f64 = 150.0;
/// Longest turn in words (no timestamps) that counts as a monologue problem.
pub const MONOLOGUE_WORDS: usize = 350;
/// Fewest turns before question habits are judged.
pub const MIN_TURNS: usize = 5;
/// Questions per 100 words spoken below which the coachee asks few questions.
pub const FEW_QUESTIONS_PER_100_WORDS: f64 = 1.0;
/// Questions per 100 words spoken from which asking questions is a strength.
pub const GOOD_QUESTIONS_PER_100_WORDS: f64 = 2.0;
/// Fillers + hedges per 100 words from which it is a growth pattern.
pub const HEDGE_RATE_HIGH: f64 = 4.0;
/// Fillers + hedges per 100 words under which language counts as direct.
pub const HEDGE_RATE_LOW: f64 = 1.5;
/// Fewest interruptions that count as a pattern.
pub const MIN_INTERRUPTIONS: usize = 3;

/// The deterministic analysis of `input` (input already checked by the facade, re-checked here).
pub fn analyze(input: &AnalysisInput) -> Result<Analysis, AnalysisError> {
    input.check()?;
    let metrics = input.metrics();
    let output = build_output(input, &metrics);
    let ctx = Gate1Context::new(
        input.run_type,
        input.coachee.clone(),
        input.active_experiment.is_some(),
        &input.meetings,
    );
    let report = gate1::validate(&output, &ctx);
    if !report.passed {
        // A bug in this module, not a user error: surface the report rather than a bad card.
        tracing::error!(
            failures = report.failures.len(),
            "rules analyzer output failed Gate-1"
        );
        return Err(AnalysisError::Gate1Failed {
            report,
            last_output: Some(output),
            attempts: 1,
            usage: Usage::default(),
        });
    }
    Ok(finish(
        output,
        report,
        ("rules", RULES_MODEL.to_string(), RULES_VERSION),
        Usage::default(),
        1,
        &metrics,
    ))
}
