//! The analyzer facade the worker calls: one input type, one result type, one error type, two
//! providers.
//!
//! The facade owns what both providers share: input checks (meeting count for the run type, the
//! coachee actually speaks), the per-meeting metrics stored with the run, the rendered card and the
//! cache key. Caching itself lives in the worker's journal; this crate only defines the key, so a
//! replay that bypasses the cache and a restart that reuses it are the worker's decision.

use std::fmt;
use std::time::Duration;

use coach_transcript::Transcript;
use coach_transcript::metrics::{self, MeetingMetrics};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::gate1::Gate1Report;
use crate::openai::OpenAiClient;
use crate::prompt::PROMPT_VERSION;
use crate::{card, rules};

/// What is analysed: one meeting, or a baseline pack of three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// One meeting; span ids `S12`.
    #[default]
    SingleMeeting,
    /// Three meetings; span ids `T1.S12`..`T3.S12`.
    BaselinePack,
}

impl RunType {
    /// The wire name (`single_meeting` / `baseline_pack`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::SingleMeeting => "single_meeting",
            RunType::BaselinePack => "baseline_pack",
        }
    }

    /// How many transcripts a run of this type takes.
    pub fn meeting_count(self) -> usize {
        match self {
            RunType::SingleMeeting => 1,
            RunType::BaselinePack => 3,
        }
    }
}

impl fmt::Display for RunType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// [`PROMPT_VERSION`] (for `rules`, the rules version).
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

/// The provider that writes the coaching. Cheap to clone (the OpenAI client is shared).
#[derive(Debug, Clone)]
pub enum Analyzer {
    /// The deterministic, offline analyzer.
    Rules,
    /// An OpenAI-compatible server.
    OpenAi(OpenAiClient),
}

impl Analyzer {
    /// `rules` or `openai`.
    pub fn provider(&self) -> &'static str {
        match self {
            Analyzer::Rules => "rules",
            Analyzer::OpenAi(_) => "openai",
        }
    }

    /// The model name recorded on the run.
    pub fn model(&self) -> String {
        match self {
            Analyzer::Rules => rules::RULES_MODEL.to_string(),
            Analyzer::OpenAi(c) => c.model().to_string(),
        }
    }

    /// The prompt version recorded on the run (part of the cache key).
    pub fn prompt_version(&self) -> &'static str {
        match self {
            Analyzer::Rules => rules::RULES_VERSION,
            Analyzer::OpenAi(_) => PROMPT_VERSION,
        }
    }

    /// Analyse `input` and return a Gate-1-passing result.
    pub async fn analyze(&self, input: &AnalysisInput) -> Result<Analysis, AnalysisError> {
        input.check()?;
        match self {
            Analyzer::Rules => rules::analyze(input),
            Analyzer::OpenAi(client) => client.analyze(input).await,
        }
    }

    /// Cache key for the journal: sha256 (hex) over the transcripts' canonical content (their
    /// normalised JSON, so formatting differences of the source that parse to the same segments
    /// share a key), the run type, the coachee, the prompt version, provider, model and the active
    /// experiment. Each part is length-prefixed so that no two inputs share a byte stream.
    pub fn cache_key(&self, input: &AnalysisInput) -> String {
        let mut h = Sha256::new();
        let mut part = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part(b"coach-coaching/cache/v1");
        part(input.run_type.as_str().as_bytes());
        part(input.coachee.as_bytes());
        part(self.prompt_version().as_bytes());
        part(self.provider().as_bytes());
        part(self.model().as_bytes());
        for t in &input.meetings {
            // Serialising a struct of plain fields cannot fail; an empty part still separates.
            part(&serde_json::to_vec(t).unwrap_or_default());
        }
        match &input.active_experiment {
            Some(e) => {
                part(b"experiment");
                part(e.title.as_bytes());
                part(e.behavior.as_bytes());
                part(e.success_signal.as_bytes());
            }
            None => part(b"no-experiment"),
        }
        hex::encode(h.finalize())
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
