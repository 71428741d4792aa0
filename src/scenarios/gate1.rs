//! S1: validate a coaching output against Gate-1 for a given transcript, synchronously. Span ids are
//! checked exactly as given, never renumbered; pass or fail is in the body, not the status.
//!
//! The request's HTTP worker only reads the transcript (from the store or the body); parsing it,
//! finding the coachee and running Gate-1 — work that grows with the transcript and the output — run
//! on tokio's blocking pool, so a large request holds a blocking thread, not an HTTP worker that
//! other requests (and `/healthz`) are waiting on.

use std::sync::Arc;

use coach_coaching::{Gate1Context, RunType, gate1};
use coach_transcript::Format;
use serde_json::{Value, json};

use super::input::{object, optional_bool, optional_str, record_id_field};
use super::transcripts::{self, coachee_label};
use super::{Deps, HookResult, ScenarioError};
use crate::error::ApiError;
use crate::http::Hook;

pub struct S1Hook(pub Arc<Deps>);

/// Longest coachee label S1 takes: it is compared with every speaker label of the transcript, so its
/// length multiplies that work, and no real speaker label comes near it.
const MAX_COACHEE_CHARS: usize = 200;

fn bad(code: &'static str, pointer: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message).with_details(json!({ "pointer": pointer }))
}

#[async_trait::async_trait]
impl Hook for S1Hook {
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        object(body)?;
        match (body.get("transcript_id"), body.get("transcript")) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "AMBIGUOUS_TRANSCRIPT",
                    "/transcript",
                    "send `transcript_id` or `transcript`, not both",
                ));
            }
            (Some(_), None) => {
                record_id_field(body, "transcript_id")?;
            }
            (None, Some(t)) => {
                if !t.get("text").is_some_and(Value::is_string) {
                    return Err(bad(
                        "MISSING_FIELD",
                        "/transcript/text",
                        "`transcript.text` must hold the transcript text",
                    ));
                }
                if let Some(f) = t.get("format").filter(|f| !f.is_null()) {
                    let ok = f.as_str().is_some_and(|f| f.parse::<Format>().is_ok());
                    if !ok {
                        return Err(bad(
                            "UNKNOWN_FORMAT",
                            "/transcript/format",
                            "`transcript.format` must be auto, vtt, srt, json or text",
                        ));
                    }
                }
            }
            (None, None) => {
                return Err(bad(
                    "MISSING_FIELD",
                    "/transcript_id",
                    "send `transcript_id` (a record id) or `transcript` ({text, format})",
                ));
            }
        }
        let coachee = optional_str(body, "coachee_speaker")?;
        if coachee.is_some_and(|c| c.chars().count() > MAX_COACHEE_CHARS) {
            return Err(bad(
                "FIELD_TOO_LONG",
                "/coachee_speaker",
                format!(
                    "`coachee_speaker` is longer than {MAX_COACHEE_CHARS} characters; send the speaker label as the transcript writes it"
                ),
            ));
        }
        if body.get("transcript").is_some() && coachee.is_none_or(|c| c.trim().is_empty()) {
            return Err(bad(
                "MISSING_FIELD",
                "/coachee_speaker",
                "`coachee_speaker` is required with an inline transcript (a stored transcript may name it instead)",
            ));
        }
        optional_bool(body, "experiment_active")?;
        run_type(body)?;
        if !body.get("output").is_some_and(Value::is_object) {
            return Err(bad(
                "MISSING_FIELD",
                "/output",
                "`output` must be the coaching output object to check",
            ));
        }
        Ok(body.clone())
    }

    fn job_kind(&self) -> Option<&str> {
        None
    }

    async fn respond(&self, _key: &str, payload: Value) -> HookResult {
        Ok((
            actix_web::http::StatusCode::OK,
            check(&self.0, &payload).await?,
        ))
    }
}

fn run_type(body: &Value) -> Result<RunType, ApiError> {
    match optional_str(body, "run_type")? {
        None | Some("single_meeting") => Ok(RunType::SingleMeeting),
        Some("baseline_pack") => Err(bad(
            "UNSUPPORTED_RUN_TYPE",
            "/run_type",
            "S1 checks one transcript; baseline packs are checked when they are built (A2/S3)",
        )),
        Some(_) => Err(bad(
            "WRONG_TYPE",
            "/run_type",
            "`run_type` must be `single_meeting`",
        )),
    }
}

/// Loads the transcript, then parses it, finds the coachee and returns the Gate-1 report off the
/// async worker.
pub async fn check(deps: &Deps, body: &Value) -> Result<Value, ScenarioError> {
    let (bytes, format, record) = match body.get("transcript_id").and_then(Value::as_str) {
        Some(id) => {
            let record = transcripts::get(deps, id).await?;
            let (bytes, format) = transcripts::record_text(deps, &record).await?;
            (bytes, format, record)
        }
        None => {
            let t = &body["transcript"];
            let format = t["format"]
                .as_str()
                .and_then(|f| f.parse().ok())
                .unwrap_or(Format::Auto);
            let text = t["text"].as_str().unwrap_or_default().as_bytes().to_vec();
            (text, format, Default::default())
        }
    };
    let body = body.clone();
    tokio::task::spawn_blocking(move || analyse(&bytes, format, record, &body))
        .await
        .map_err(|e| ScenarioError::Transient {
            code: "CHECK_INTERRUPTED",
            message: format!("the Gate-1 check stopped before it finished ({e}); send it again"),
        })?
}

/// Parses the transcript, finds the coachee and runs Gate-1 (CPU only).
fn analyse(
    bytes: &[u8],
    format: Format,
    mut record: coach_store::tables::Transcript,
    body: &Value,
) -> Result<Value, ScenarioError> {
    let transcript = transcripts::parse_bytes(bytes, format)?;
    if let Some(name) = body.get("coachee_speaker").and_then(Value::as_str) {
        record.coachee_speaker = Some(name.to_owned());
    }
    let coachee = coachee_label(&transcript, &record, None)?;
    let experiment_active = body
        .get("experiment_active")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let meetings = [transcript];
    let ctx = Gate1Context::new(
        RunType::SingleMeeting,
        coachee.clone(),
        experiment_active,
        &meetings,
    );
    let report = gate1::validate(&body["output"], &ctx);
    metrics::counter!("gate1_checks_total", "passed" => report.passed.to_string()).increment(1);
    Ok(json!({
        "passed": report.passed,
        "failures": report.failures,
        "coachee_speaker": coachee,
        "segments": meetings[0].segments.len(),
    }))
}
