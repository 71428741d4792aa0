//! `s1`: check a coaching output against Gate-1 for a transcript (synchronous, 200; pass or fail is
//! in the body).

use std::sync::Arc;

use actix_web::http::StatusCode;
use coach_transcript::Format;
use serde_json::{Value, json};

use super::input::{object, optional_bool, optional_str, record_id_field};
use super::{Hook, Prepared, body_of};
use crate::error::ApiError;
use crate::scenarios::Deps;
use crate::scenarios::gate1::{self, CheckRequest, TranscriptSource};

pub struct S1Hook(pub Arc<Deps>);

/// Longest coachee label S1 takes: it is compared with every speaker label of the transcript, so its
/// length multiplies that work, and no real speaker label comes near it.
const MAX_COACHEE_CHARS: usize = 200;

fn bad(code: &'static str, pointer: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message).with_details(json!({ "pointer": pointer }))
}

/// Reads S1's body, in the order its checks have always run (so the first error reported stays the
/// same).
pub fn parse(body: &Value) -> Result<CheckRequest, ApiError> {
    object(body)?;
    let transcript = match (body.get("transcript_id"), body.get("transcript")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "AMBIGUOUS_TRANSCRIPT",
                "/transcript",
                "send `transcript_id` or `transcript`, not both",
            ));
        }
        (Some(_), None) => TranscriptSource::Stored(record_id_field(body, "transcript_id")?),
        (None, Some(t)) => {
            let Some(text) = t.get("text").and_then(Value::as_str) else {
                return Err(bad(
                    "MISSING_FIELD",
                    "/transcript/text",
                    "`transcript.text` must hold the transcript text",
                ));
            };
            let format = match t.get("format").filter(|f| !f.is_null()) {
                None => Format::Auto,
                Some(f) => f
                    .as_str()
                    .and_then(|f| f.parse::<Format>().ok())
                    .ok_or_else(|| {
                        bad(
                            "UNKNOWN_FORMAT",
                            "/transcript/format",
                            "`transcript.format` must be auto, vtt, srt, json or text",
                        )
                    })?,
            };
            TranscriptSource::Inline {
                text: text.to_owned(),
                format,
            }
        }
        (None, None) => {
            return Err(bad(
                "MISSING_FIELD",
                "/transcript_id",
                "send `transcript_id` (a record id) or `transcript` ({text, format})",
            ));
        }
    };
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
    if matches!(transcript, TranscriptSource::Inline { .. })
        && coachee.is_none_or(|c| c.trim().is_empty())
    {
        return Err(bad(
            "MISSING_FIELD",
            "/coachee_speaker",
            "`coachee_speaker` is required with an inline transcript (a stored transcript may name it instead)",
        ));
    }
    let experiment_active = optional_bool(body, "experiment_active")?.unwrap_or(false);
    check_run_type(body)?;
    let Some(output) = body.get("output").filter(|o| o.is_object()) else {
        return Err(bad(
            "MISSING_FIELD",
            "/output",
            "`output` must be the coaching output object to check",
        ));
    };
    Ok(CheckRequest {
        transcript,
        coachee_speaker: coachee.map(str::to_owned),
        experiment_active,
        output: output.clone(),
    })
}

/// S1 checks single meetings only.
fn check_run_type(body: &Value) -> Result<(), ApiError> {
    match optional_str(body, "run_type")? {
        None | Some("single_meeting") => Ok(()),
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

#[async_trait::async_trait]
impl Hook for S1Hook {
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        let request = parse(body)?;
        Ok(Prepared::respond(move |_| async move {
            let checked = gate1::check(&self.0, request).await?;
            Ok((StatusCode::OK, body_of(&checked)))
        }))
    }
}
