//! S1: validate a coaching output against Gate-1 for a given transcript, synchronously. Span ids are
//! checked exactly as given, never renumbered; pass or fail is in the outcome, not an error.
//!
//! The caller's task only reads the transcript (from the store or the request); parsing it, finding
//! the coachee and running Gate-1 — work that grows with the transcript and the output — run on
//! tokio's blocking pool, so a large request holds a blocking thread, not an HTTP worker that other
//! requests (and `/healthz`) are waiting on.
//!
//! The output to check is arbitrary JSON by contract (checking its shape is the point), so it is the
//! one `serde_json::Value` of a scenario request.

use coach_coaching::{Gate1Context, Gate1Failure, gate1};
use coach_store::RecordId;
use coach_store::tables::RunType;
use coach_transcript::Format;
use serde::Serialize;
use tracing::Instrument;

use super::transcripts::{self, coachee_label};
use super::{Deps, ScenarioError};

/// Where S1's transcript comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptSource {
    /// A Transcripts record.
    Stored(RecordId),
    /// Text sent with the request.
    Inline { text: String, format: Format },
}

/// S1's request.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRequest {
    pub transcript: TranscriptSource,
    /// The coachee's speaker label (required with an inline transcript; else the record's).
    pub coachee_speaker: Option<String>,
    pub experiment_active: bool,
    /// The coaching output to check.
    pub output: serde_json::Value,
}

/// S1's outcome (the 200 body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate1Check {
    pub passed: bool,
    pub failures: Vec<Gate1Failure>,
    pub coachee_speaker: String,
    pub segments: usize,
}

/// Loads the transcript, then parses it, finds the coachee and returns the Gate-1 report off the
/// async worker.
pub async fn check(deps: &Deps, request: CheckRequest) -> Result<Gate1Check, ScenarioError> {
    let span = tracing::info_span!(
        "gate1_check",
        scenario = "s1",
        transcript_id = match &request.transcript {
            TranscriptSource::Stored(id) => Some(id.as_str()),
            TranscriptSource::Inline { .. } => None,
        },
    );
    async move {
        let (bytes, format, record) = match &request.transcript {
            TranscriptSource::Stored(id) => {
                let record: coach_store::tables::Transcript = transcripts::read(deps, id).await?;
                let (bytes, format) = transcripts::record_text(deps, &record).await?;
                (bytes, format, record)
            }
            TranscriptSource::Inline { text, format } => {
                (text.as_bytes().to_vec(), *format, Default::default())
            }
        };
        tokio::task::spawn_blocking(move || analyse(&bytes, format, record, &request))
            .await
            .map_err(|e| ScenarioError::Transient {
                code: "CHECK_INTERRUPTED",
                message: format!(
                    "the Gate-1 check stopped before it finished ({e}); send it again"
                ),
            })?
    }
    .instrument(span)
    .await
}

/// Parses the transcript, finds the coachee and runs Gate-1 (CPU only).
fn analyse(
    bytes: &[u8],
    format: Format,
    mut record: coach_store::tables::Transcript,
    request: &CheckRequest,
) -> Result<Gate1Check, ScenarioError> {
    let transcript = transcripts::parse_bytes(bytes, format)?;
    if let Some(name) = &request.coachee_speaker {
        record.coachee_speaker = Some(name.clone());
    }
    let coachee = coachee_label(&transcript, &record, None)?;
    let meetings = [transcript];
    let ctx = Gate1Context::new(
        RunType::SingleMeeting,
        coachee.clone(),
        request.experiment_active,
        &meetings,
    );
    let report = gate1::validate(&request.output, &ctx);
    metrics::counter!("gate1_checks_total", "passed" => report.passed.to_string()).increment(1);
    Ok(Gate1Check {
        passed: report.passed,
        failures: report.failures,
        coachee_speaker: coachee,
        segments: meetings[0].segments.len(),
    })
}
