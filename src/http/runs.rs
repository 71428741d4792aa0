//! `GET /v1/runs/{id}`: one execution as Make or a person polls it.
//!
//! The route needs no signature (Make polls it with a plain GET), so what it shows is what anyone
//! holding a run id may see: statuses, times, attempts, record ids and the error's *code* with a
//! generic message. The error's own message and details can name participants, quote the transcript
//! or carry a Gate-1 report; they stay in the admin API and page, and on the Run record. Requests are
//! limited per client ([`super::public_view_limiter`]).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;
use crate::journal::{Job, JournalError, rfc3339};

pub async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state
        .public_limit
        .check(super::limit::client_of(&req))
        .map_err(super::rate_limited)?;
    let id = path.into_inner();
    if id.len() > 64 {
        return Err(ApiError::not_found(
            "RUN_NOT_FOUND",
            "there is no such run; use the run_id of a 202 answer",
        ));
    }
    let job = match state.journal.get_job(id.clone()).await {
        Ok(job) => job,
        Err(JournalError::NotFound(_)) => {
            return Err(ApiError::not_found(
                "RUN_NOT_FOUND",
                format!("there is no run `{id}`; use the run_id of a 202 answer"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let children = state.journal.child_jobs(id).await?;
    Ok(HttpResponse::Ok().json(public_run_view(&job, &children)))
}

/// What the unauthenticated view shows of an error: its code and a message that says where the
/// rest is, never the error's own message or details.
pub fn public_error(error: &Value) -> Value {
    match error.get("code").and_then(Value::as_str) {
        Some(code) => json!({
            "code": code,
            "message": format!(
                "the run stopped with {code}; the full error is on the Run record and in the admin API and page"
            ),
            "details": {},
        }),
        None if error.is_null() => Value::Null,
        None => json!({
            "code": "RUN_FAILED",
            "message": "the run stopped with an error; the full error is on the Run record and in the admin API and page",
            "details": {},
        }),
    }
}

/// [`run_view`] as the unauthenticated route shows it: the error reduced to [`public_error`].
pub fn public_run_view(job: &Job, children: &[Job]) -> Value {
    let mut view = run_view(job, children);
    view["error"] = public_error(&view["error"]);
    view
}

/// RFC 3339 text of an optional millisecond timestamp, `null` when absent.
pub fn time_or_null(ms: Option<i64>) -> Value {
    ms.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

/// A job without its follow-ups, error in full (the admin lists use it as is; the unauthenticated
/// route goes through [`public_run_view`]).
pub fn job_view(job: &Job) -> Value {
    json!({
        "run_id": job.id,
        "scenario": job.scenario,
        "kind": job.kind,
        "status": job.status.as_str(),
        "attempts": job.attempts,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "started_at": time_or_null(job.started_at),
        "finished_at": time_or_null(job.finished_at),
        "next_attempt_at": time_or_null(job.next_attempt_at),
        "error": job.last_error.clone().unwrap_or(Value::Null),
        "result": job.result.clone().unwrap_or(Value::Null),
        "replay_of": job.replay_of,
        "parent_run_id": job.parent_id,
        "status_url": format!("/v1/runs/{}", job.id),
    })
}

/// A job with the jobs it chained, error in full.
pub fn run_view(job: &Job, children: &[Job]) -> Value {
    let mut view = job_view(job);
    view["follow_ups"] = children
        .iter()
        .map(|c| {
            json!({
                "run_id": c.id, "kind": c.kind, "status": c.status.as_str(), "status_url": format!("/v1/runs/{}", c.id)
            })
        })
        .collect();
    view
}
