//! S1: validate a coaching output against Gate-1 for a given transcript, synchronously. Span ids are
//! checked exactly as given, never renumbered; pass or fail is in the body, not the status.

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

/// Loads and parses the transcript, finds the coachee, and returns the Gate-1 report.
pub async fn check(deps: &Deps, body: &Value) -> Result<Value, ScenarioError> {
    let (transcript, record) = match body.get("transcript_id").and_then(Value::as_str) {
        Some(id) => {
            let record = transcripts::get(deps, id).await?;
            (
                transcripts::parse_record(deps, &record).await?,
                Some(record),
            )
        }
        None => {
            let t = &body["transcript"];
            let format = t["format"]
                .as_str()
                .and_then(|f| f.parse().ok())
                .unwrap_or(Format::Auto);
            (
                transcripts::parse_bytes(
                    t["text"].as_str().unwrap_or_default().as_bytes(),
                    format,
                )?,
                None,
            )
        }
    };
    let record = record.unwrap_or_default();
    let mut record = record;
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
