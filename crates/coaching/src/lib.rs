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
//! // Shared types (model.rs, outcome.rs; re-exported here and by the facade, analysis.rs)
//! pub use coach_transcript::RunType; // SingleMeeting, BaselinePack; serde: single_meeting, baseline_pack
//! pub struct ActiveExperiment { pub title: String, pub behavior: String, pub success_signal: String }
//! pub struct AnalysisInput { pub run_type: RunType, pub coachee: String /* exact label */,
//!                            pub meetings: Vec<Transcript> /* 1 or 3 */, pub active_experiment: Option<ActiveExperiment> }
//! pub enum Analyzer { Rules, OpenAi(OpenAiClient) }         // Clone
//! impl Analyzer {
//!     pub fn provider(&self) -> &'static str;               // "rules" | "openai"
//!     pub fn model(&self) -> String;                        // "rules-v1" | configured model
//!     pub fn prompt_version(&self) -> &'static str;         // "rules.v1" | PROMPT_VERSION ("coach.v1")
//!     pub async fn analyze(&self, input: &AnalysisInput) -> Result<Analysis, AnalysisError>;
//!     pub fn cache_key(&self, input: &AnalysisInput) -> String; // sha256 hex
//! }
//! pub struct Analysis { output, report, provider, model, prompt_version, input_tokens, output_tokens,
//!                       cost_usd, request_ids, attempts, metrics /* [MeetingMetrics] */, card_markdown } // Serialize + Deserialize
//! pub enum AnalysisError { Transient { code, message, retry_after }, Permanent { code, message },
//!                          Gate1Failed { report, last_output, attempts, usage }, BadInput { code, message } }
//! impl AnalysisError { pub fn code(&self) -> &'static str; pub fn is_transient(&self) -> bool;
//!                      pub fn retry_after(&self) -> Option<Duration>; }
//!
//! // Gate-1 (gate1.rs), e.g. for the S1 hook
//! pub fn gate1::validate(output: &Value, ctx: &Gate1Context<'_>) -> Gate1Report;
//! impl<'a> Gate1Context<'a> { pub fn new(run_type: RunType, coachee: impl Into<String>,
//!                                        experiment_active: bool, meetings: &'a [Transcript]) -> Self; }
//! pub struct Gate1Report { pub passed: bool, pub failures: Vec<Gate1Failure> }   // Serialize + Deserialize
//! pub struct Gate1Failure { pub pointer: String, pub code: String, pub message: String }
//!
//! // OpenAI-compatible provider (openai.rs)
//! OpenAiConfig::new(api_key) -> OpenAiConfig;   // then adjust pub fields (base_url, model, azure, timeout, ...)
//!                                               // the crate reads no environment: the worker parses the settings
//! OpenAiClient::new(config) -> Result<OpenAiClient, AnalysisError>;
//!
//! // Card and input resolution (what the worker's `analyze` / `gate1 validate` commands call)
//! pub fn card::render_markdown(output: &Value) -> String;
//! pub fn input::run_type_for(count: usize, asked: Option<RunType>) -> Result<RunType, InputError>;
//! pub fn input::resolve_coachee(ts: &[Transcript], name: &str) -> Result<String, InputError>;
//!
//! // Tests (feature "fake")
//! fake::FakeOpenAi::start().await; fake.config(); fake.push(Scripted::..); fake.requests().await;
//! ```
//!
//! Metrics emitted through the `metrics` facade: `openai_calls_total{outcome,host}` (outcome
//! `ok`, `repair`, `transient`, `permanent`), `openai_requests_total{status}`,
//! `openai_request_duration_seconds`, `openai_retries_total{code}`, `openai_tokens_total{kind}`,
//! `openai_cost_usd_total` (a gauge incremented by each call's USD cost), and
//! `gate1_results_total{provider,result}`.
//!
//! # Modules
//!
//! Layered, with no import circle: `model` (the shared input types; imports nothing from the
//! crate) → [`gate1`], [`card`] → `outcome` ([`Analysis`], [`AnalysisError`]) → [`prompt`] →
//! [`rules`], [`openai`] → [`analysis`] (the facade: [`Analyzer`]). No module imports one above it.
//!
//! - [`analysis`]: the facade, [`Analyzer`] and the cache key.
//! - [`gate1`]: the schema (compiled once), [`Gate1Context`], [`gate1::validate`], [`Gate1Report`].
//! - [`openai`]: [`OpenAiConfig`], [`OpenAiClient`] (thin reqwest client; metrics and usage).
//! - [`prompt`]: the versioned prompt ([`PROMPT_VERSION`]) and how segments are laid out.
//! - [`rules`]: the deterministic analyzer and its documented thresholds.
//! - [`card`] renders the coaching card: [`card::render_markdown`].
//! - [`input`]: the run type for a number of transcripts and the coachee label a pack shares
//!   (the command line that uses them lives in the worker binary).
//! - `fake` (feature `fake`): a wiremock OpenAI-compatible server answering grounded output,
//!   with scriptable failures, for end-to-end tests.

pub mod analysis;
pub mod card;
pub mod gate1;
pub mod input;
mod model;
pub mod openai;
mod outcome;
pub mod prompt;
pub mod rules;
mod text;

#[cfg(feature = "fake")]
pub mod fake;

pub use analysis::Analyzer;
pub use gate1::{
    CheckedOutput, Evidence, ExperimentAttempt, ExperimentProposal, Gate1Context, Gate1Failure,
    Gate1Report, Judgement,
};
pub use input::InputError;
pub use model::{ActiveExperiment, AnalysisInput, RunType, Usage};
pub use openai::{AzureDeployment, ModelPrice, OpenAiClient, OpenAiConfig};
pub use outcome::{Analysis, AnalysisError};
pub use prompt::PROMPT_VERSION;
