//! `GET /v1/runs/{id}`: one execution as Make or a person polls it.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;
use crate::journal::{Job, JournalError, rfc3339};

pub async fn show(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
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
    Ok(HttpResponse::Ok().json(run_view(&job, &children)))
}

/// RFC 3339 text of an optional millisecond timestamp, `null` when absent.
pub fn time_or_null(ms: Option<i64>) -> Value {
    ms.map(|t| Value::String(rfc3339(t))).unwrap_or(Value::Null)
}

/// The public view of a job without its follow-ups (the admin lists use it as is).
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

/// The public view of a job with the jobs it chained.
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
