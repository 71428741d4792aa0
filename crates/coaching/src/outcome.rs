//! What an analysis produces: a Gate-1-passing [`Analysis`] or an [`AnalysisError`], and the
//! input check both providers run first ([`AnalysisInput::check`], here because it answers with an
//! [`AnalysisError`]).
//!
//! Below the facade (`analysis`): it imports the shared types (`model`), the Gate-1 report and
//! the card renderer, and nothing that imports it back.

use std::time::Duration;

use coach_transcript::metrics::MeetingMetrics;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::card;
use crate::gate1::Gate1Report;
use crate::model::{AnalysisInput, Usage};

impl AnalysisInput {
    /// Checks the input before any work or paid call: the meeting count matches the run type and
    /// the coachee speaks at least once.
    pub fn check(&self) -> Result<(), AnalysisError> {
        let want = self.run_type.meeting_count();
        if self.meetings.len() != want {
            return Err(AnalysisError::BadInput {
                code: "WRONG_MEETING_COUNT",
                message: format!(
                    "a {} run takes {want} transcript(s) but {} were given",
                    self.run_type,
                    self.meetings.len()
                ),
            });
        }
        let speaks = self.meetings.iter().any(|t| {
            t.segments
                .iter()
                .any(|s| s.speaker == self.coachee && !s.text.trim().is_empty())
        });
        if !speaks {
            let mut speakers: Vec<&str> = Vec::new();
            for t in &self.meetings {
                for p in &t.participants {
                    if !speakers.contains(&p.as_str()) {
                        speakers.push(p);
                    }
                }
            }
            return Err(AnalysisError::BadInput {
                code: "COACHEE_NOT_FOUND",
                message: format!(
                    "the coachee `{}` has no segment in the transcript(s); speakers: {}. Set the coachee speaker to one of them",
                    self.coachee,
                    speakers.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// A finished, Gate-1-passing analysis, ready to be written to the Run record and cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The Gate-1 output.
    pub output: Value,
    /// Its Gate-1 report (passed).
    pub report: Gate1Report,
    /// `rules` or `openai`.
    pub provider: String,
    /// The model (`rules-v1` for the rules analyzer).
    pub model: String,
    /// [`crate::PROMPT_VERSION`] (for `rules`, the rules version).
    pub prompt_version: String,
    /// Prompt tokens over every attempt.
    pub input_tokens: u64,
    /// Completion tokens over every attempt.
    pub output_tokens: u64,
    /// Cost in USD over every attempt.
    pub cost_usd: f64,
    /// `x-request-id` of every HTTP answer.
    pub request_ids: Vec<String>,
    /// How many answers were asked for (1 + repair rounds).
    pub attempts: u32,
    /// A JSON array with one `MeetingMetrics` per meeting, in meeting order.
    pub metrics: Value,
    /// The coaching card as markdown ([`card::render_markdown`]).
    pub card_markdown: String,
}

/// Why an analysis did not produce a Gate-1-passing answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnalysisError {
    /// Worth retrying later (network, timeout, rate limit, server error after the client's own
    /// retries). `retry_after` is the server's hint when it gave one.
    #[error("{message} (temporary: retry later)")]
    Transient {
        /// Stable code.
        code: &'static str,
        /// What happened.
        message: String,
        /// The server's retry hint.
        retry_after: Option<Duration>,
    },
    /// Will fail again the same way until someone changes configuration or input.
    #[error("{message}")]
    Permanent {
        /// Stable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Every answer (first + repair rounds) failed Gate-1; the last report is kept for the run.
    #[error(
        "the coaching answer failed Gate-1 after {attempts} attempt(s) ({} failure(s), first: {}); inspect the Gate-1 report on the run and replay it",
        report.failures.len(),
        report.failures.first().map(|f| f.code.as_str()).unwrap_or("none")
    )]
    Gate1Failed {
        /// The report of the last answer.
        report: Gate1Report,
        /// The last answer, when it was JSON.
        last_output: Option<Value>,
        /// Answers asked for.
        attempts: u32,
        /// What was spent getting them.
        usage: Usage,
    },
    /// The request itself is unusable (wrong meeting count, unknown coachee).
    #[error("{message}")]
    BadInput {
        /// Stable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl AnalysisError {
    /// Stable SCREAMING_SNAKE code.
    pub fn code(&self) -> &'static str {
        match self {
            AnalysisError::Transient { code, .. }
            | AnalysisError::Permanent { code, .. }
            | AnalysisError::BadInput { code, .. } => code,
            AnalysisError::Gate1Failed { .. } => "GATE1_FAILED",
        }
    }

    /// Whether a later retry may succeed (the job layer schedules one).
    pub fn is_transient(&self) -> bool {
        matches!(self, AnalysisError::Transient { .. })
    }

    /// The server's retry hint, for transient errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AnalysisError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Builds the shared parts of an [`Analysis`] around a passing output.
pub(crate) fn finish(
    output: Value,
    report: Gate1Report,
    who: (&str, String, &str),
    usage: Usage,
    attempts: u32,
    metrics: &[MeetingMetrics],
) -> Analysis {
    let (provider, model, prompt_version) = who;
    let card_markdown = card::render_markdown(&output);
    Analysis {
        output,
        report,
        provider: provider.to_string(),
        model,
        prompt_version: prompt_version.to_string(),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cost_usd: usage.cost_usd,
        request_ids: usage.request_ids,
        attempts,
        metrics: serde_json::to_value(metrics).unwrap_or(Value::Null),
        card_markdown,
    }
}
