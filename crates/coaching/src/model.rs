//! The types every part of the crate shares: what is analysed ([`RunType`], [`AnalysisInput`],
//! [`ActiveExperiment`]) and what an analysis spent ([`Usage`]).
//!
//! This module sits at the bottom of the crate: it imports nothing from it, so Gate-1, the
//! prompt, the providers and the facade can all use these types without importing each other.
//! The results ([`crate::Analysis`], [`crate::AnalysisError`]) carry a Gate-1 report and live one
//! level up, in `outcome`. [`RunType`] is the workspace's one run type, defined in the transcript
//! crate (which the store builds on too) and re-exported here.

pub use coach_transcript::RunType;
use coach_transcript::Transcript;
use coach_transcript::metrics::{self, MeetingMetrics};
use serde::{Deserialize, Serialize};

/// The coachee's active experiment, as stored on the Experiments record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveExperiment {
    /// Short title (`Open with a question`).
    pub title: String,
    /// The behaviour to try.
    pub behavior: String,
    /// How the coachee knows it worked.
    pub success_signal: String,
}

/// One analysis request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisInput {
    /// Single meeting or baseline pack.
    pub run_type: RunType,
    /// The coachee's speaker label, exactly as in the transcript(s) (resolve a user-typed name
    /// with `coach_transcript::find_coachee` first).
    pub coachee: String,
    /// One transcript for a single meeting, three (in pack order) for a baseline pack.
    pub meetings: Vec<Transcript>,
    /// The coachee's active experiment, if any (judged in single meetings only).
    pub active_experiment: Option<ActiveExperiment>,
}

impl AnalysisInput {
    /// Per-meeting metrics, in meeting order.
    pub fn metrics(&self) -> Vec<MeetingMetrics> {
        self.meetings.iter().map(metrics::compute).collect()
    }
}

/// Tokens, cost and request ids spent on an analysis (zero for `rules`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens over every attempt.
    pub input_tokens: u64,
    /// Completion tokens over every attempt.
    pub output_tokens: u64,
    /// Cost in USD from the configured prices.
    pub cost_usd: f64,
    /// `x-request-id` of every HTTP answer, in order.
    pub request_ids: Vec<String>,
}

impl Usage {
    pub(crate) fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.request_ids.extend(other.request_ids.iter().cloned());
    }
}
