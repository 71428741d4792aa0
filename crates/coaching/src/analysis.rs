//! The analyzer facade the worker calls: one input type, one result type, one error type, two
//! providers.
//!
//! The facade picks the provider ([`Analyzer`]), runs the input check both providers share
//! (meeting count for the run type, the coachee actually speaks) and defines the cache key.
//! Caching itself lives in the worker's journal; this crate only defines the key, so a replay that
//! bypasses the cache and a restart that reuses it are the worker's decision.
//!
//! The facade is the top of the crate's import graph: the shared types live below it in `model`
//! (which imports nothing from the crate), the results in `outcome` (over `model`, `gate1` and
//! `card`), and the providers (`rules`, `openai`) build on those without importing this module.
//! The types are re-exported here so `analysis::RunType` and friends keep their paths.

use sha2::{Digest, Sha256};

pub use crate::model::{ActiveExperiment, AnalysisInput, RunType, Usage};
pub use crate::outcome::{Analysis, AnalysisError};

use crate::openai::OpenAiClient;
use crate::prompt::PROMPT_VERSION;
use crate::rules;

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
