//! coach-coaching: grounded coaching analysis for one meeting or a baseline pack of three.
//!
//! The crate turns parsed transcripts ([`coach_transcript::Transcript`]) into coaching that must
//! survive **Gate-1**: a strict JSON contract (`schemas/gate1.v1.json`) plus grounding checks that a
//! schema cannot express (every quote is a verbatim excerpt of the segment it cites, every pattern
//! cites the coachee, ids are unique, run-type rules hold). Two providers produce that output:
//!
//! - `rules` ([`rules`]): deterministic, offline, built on the transcript metrics. The default
//!   when no API key is configured; its output always passes Gate-1.
//! - `openai` ([`openai`]): any OpenAI-compatible chat-completions server, with strict structured
//!   outputs (falling back to JSON mode), bounded retries and a bounded repair loop that re-asks
//!   with the Gate-1 failures listed.
//!
//! # Public API (what the worker calls)
//!
//! ```ignore
//! // Run an analysis (either provider) and get output + Gate-1 report + usage + card.
//! let analyzer = Analyzer::Rules; // or Analyzer::OpenAi(OpenAiClient::new(OpenAiConfig::new(key))?)
//! let input = AnalysisInput { run_type: RunType::SingleMeeting, coachee: "Alice".into(),
//!                             meetings: vec![transcript], active_experiment: None };
//! let key: String = analyzer.cache_key(&input);          // journal cache key (sha256 hex)
//! let analysis: Analysis = analyzer.analyze(&input).await?;
//!
//! // Synchronous Gate-1 check of an output someone else produced (the S1 hook).
//! let ctx = Gate1Context::new(RunType::SingleMeeting, "Alice", false, std::slice::from_ref(&t));
//! let report: Gate1Report = gate1::validate(&output, &ctx);
//!
//! // Markdown coaching card with footnoted evidence.
//! let md: String = card::render_markdown(&output);
//! ```
//!
//! - [`gate1`]: the schema (compiled once), [`Gate1Context`], [`gate1::validate`], [`Gate1Report`].
//! - [`openai`]: [`OpenAiConfig`], [`OpenAiClient`] (thin reqwest client; metrics and usage).
//! - [`prompt`]: the versioned prompt ([`PROMPT_VERSION`]) and how segments are laid out.
//! - [`rules`]: the deterministic analyzer and its documented thresholds.
//! - [`card`] renders the coaching card: [`card::render_markdown`].
//! - [`cli`]: `gate1 validate` and `analyze` subcommands for the worker binary.
//! - `fake` (feature `fake`): a wiremock OpenAI-compatible server answering grounded output,
//!   with scriptable failures, for end-to-end tests.

pub mod analysis;
pub mod card;
pub mod cli;
pub mod gate1;
pub mod openai;
pub mod prompt;
pub mod rules;
mod text;

#[cfg(feature = "fake")]
pub mod fake;

pub use analysis::{
    ActiveExperiment, Analysis, AnalysisError, AnalysisInput, Analyzer, RunType, Usage,
};
pub use gate1::{Gate1Context, Gate1Failure, Gate1Report};
pub use openai::{ModelPrice, OpenAiClient, OpenAiConfig};
pub use prompt::PROMPT_VERSION;
