//! The `/v1/admin` routes.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/admin/runs?status=&scenario=&since=&until=&page=&per_page=` | `{"runs": [...], "page", "per_page", "total"}` |
//! | `GET /v1/admin/runs/{run_id}` | the run with its delivery (secrets redacted), attempts, Gate-1 report, output |
//! | `POST /v1/admin/runs/{run_id}/replay` `{"bypass_cache"?, "dry_run"?}` | 202 `{"run_id", "replay_of", "status_url"}` |
//! | `POST /v1/admin/runs/{run_id}/cancel` | `{"run_id", "status": "cancelled"}` |
//! | `POST /v1/admin/replay` `{"run_ids": [...]}` or `{"filter": {...}}`, `"dry_run"`, `"bypass_cache"`, `"include_replayed"` | `{"dry_run", "matched", "replayed", "skipped"}` |
//! | `GET /v1/admin/audit?page=&per_page=` | `{"entries": [...], "page", "per_page"}` |
//!
//! The token is checked first in every handler, before the body or the query is even parsed, so a
//! caller without it learns nothing (not even whether its JSON was valid) and changes nothing. The
//! handlers take the body as bytes for that reason. Every action that changes something, and every
//! dry run of one, writes an audit entry before answering.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::AdminAuth;
use super::replay::{self, Outcome};
use super::view;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::Routes;
use crate::journal::{Job, JobFilter, JobStatus, JournalError, NewAudit, rfc3339};
use coach_store::Store;

/// Most runs one bulk replay call may touch; narrow the filter (or page with the CLI) beyond that.
pub const MAX_BULK: usize = 10_000;
/// Largest admin request body.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Largest page of the list routes.
pub const MAX_PER_PAGE: usize = 500;
const DEFAULT_PER_PAGE: usize = 50;

/// The admin routes, guarded by `token`. Register them only when a token is configured: without one
/// the routes do not exist (404), rather than existing and refusing everyone.
pub fn routes(token: String) -> Routes {
    routes_with_store(token, None)
}

/// The admin routes, reading Run records from `store` so that a finished run shows its output,
/// Gate-1 report and coaching card (a job's result holds only the Run's record id).
pub fn routes_with_store(token: String, store: Option<Store>) -> Routes {
    let auth = web::Data::new(AdminAuth::new(&token));
    let store = web::Data::new(RunStore(store));
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::scope("/v1/admin")
                .app_data(auth.clone())
                .app_data(store.clone())
                // Room for a full bulk call: MAX_BULK run ids of ~40 bytes each.
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route("/runs", web::get().to(list))
                .route("/runs/{run_id}", web::get().to(show))
                .route("/runs/{run_id}/replay", web::post().to(replay_run))
                .route("/runs/{run_id}/cancel", web::post().to(cancel_run))
                .route("/replay", web::post().to(bulk_replay))
                .route("/audit", web::get().to(audit)),
        );
    })
}

/// The filter fields shared by the list query and a bulk replay's `filter`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilterSpec {
    #[serde(default)]
    pub status: Option<StatusList>,
    #[serde(default)]
    pub scenario: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
}

/// Statuses as `"failed,cancelled"` (query) or `["failed", "cancelled"]` (JSON).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StatusList {
    Text(String),
    List(Vec<String>),
}

impl FilterSpec {
    pub(super) fn to_filter(&self) -> Result<JobFilter, ApiError> {
        let names: Vec<String> = match &self.status {
            None => Vec::new(),
            Some(StatusList::Text(s)) => s.split(',').map(|p| p.trim().to_owned()).collect(),
            Some(StatusList::List(v)) => v.clone(),
        };
        let mut statuses = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            let status = JobStatus::parse(name).ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_FILTER",
                    format!(
                        "unknown status `{name}`; use queued, running, retry_scheduled, succeeded, failed or cancelled"
                    ),
                )
            })?;
            statuses.push(status);
        }
        Ok(JobFilter {
            statuses,
            scenario: self
                .scenario
                .clone()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned()),
            since: parse_time("since", self.since.as_deref())?,
            until: parse_time("until", self.until.as_deref())?,
            ids: Vec::new(),
        })
    }
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::bad_request(
                "INVALID_FILTER",
                format!("`{name}` must be an RFC 3339 time such as 2026-11-23T09:00:00Z"),
            )
        })?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// The list query. Not `#[serde(flatten)]` over [`FilterSpec`]: flattening and query strings do not
/// mix well in serde, so the fields are spelled out.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    scenario: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    per_page: Option<String>,
}

/// Page number (from 1) and page size, checked.
fn paging(page: Option<&str>, per_page: Option<&str>) -> Result<(usize, usize), ApiError> {
    let parse = |name: &str, v: Option<&str>, default: usize, max: usize| match v
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "INVALID_PAGE",
                    format!("`{name}` must be a whole number from 1 to {max}"),
                )
            }),
    };
    Ok((
        parse("page", page, 1, 1_000_000)?,
        parse("per_page", per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
    ))
}

/// Parses the query string after the token check (so a stranger's bad query still gets 401).
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request("INVALID_QUERY", format!("bad query string: {e}")))
}

/// Parses an optional JSON body after the token check; an empty body means all defaults.
fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "INVALID_JSON",
            format!("the body is not the JSON this route takes: {e}"),
        )
    })
}

fn auth_of(req: &HttpRequest) -> Result<&AdminAuth, ApiError> {
    let auth = req
        .app_data::<web::Data<AdminAuth>>()
        .ok_or_else(|| ApiError::unavailable("ADMIN_UNAVAILABLE", "the admin is not configured"))?;
    auth.check(req)?;
    Ok(auth.get_ref())
}

pub(super) async fn load(state: &AppState, id: &str) -> Result<Job, ApiError> {
    match state.journal.get_job(id.to_owned()).await {
        Ok(job) => Ok(job),
        Err(JournalError::NotFound(_)) => Err(ApiError::not_found(
            "RUN_NOT_FOUND",
            format!("there is no run `{id}`; use a run_id from `GET /v1/admin/runs`"),
        )),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn write_audit(
    state: &AppState,
    auth: &AdminAuth,
    action: &str,
    target: Option<String>,
    count: u64,
    details: Value,
) -> Result<(), ApiError> {
    state
        .journal
        .audit(NewAudit {
            actor: auth.actor().to_owned(),
            action: action.to_owned(),
            target,
            count,
            details,
        })
        .await?;
    Ok(())
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth_of(&req)?;
    let q: ListQuery = query(&req)?;
    let filter = FilterSpec {
        status: q.status.map(StatusList::Text),
        scenario: q.scenario,
        since: q.since,
        until: q.until,
    }
    .to_filter()?;
    let (page, per_page) = paging(q.page.as_deref(), q.per_page.as_deref())?;
    let total = state.journal.count_jobs(filter.clone()).await?;
    let jobs = state
        .journal
        .list_jobs(filter, per_page, (page - 1) * per_page)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "runs": jobs.iter().map(view::run_view).collect::<Vec<_>>(),
        "page": page,
        "per_page": per_page,
        "total": total,
    })))
}

async fn show(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    store: web::Data<RunStore>,
) -> Result<HttpResponse, ApiError> {
    auth_of(&req)?;
    let id = path.into_inner();
    let job = load(&state, &id).await?;
    let children = state.journal.child_jobs(id.clone()).await?;
    let attempts = state.journal.job_attempts(id.clone()).await?;
    let delivery = state.journal.delivery_for_job(id).await?;
    let mut detail = view::run_detail(&job, &children, &attempts, delivery.as_ref());
    if let Some(store) = &store.0 {
        view::add_run_record(&mut detail, &job, store).await;
    }
    Ok(HttpResponse::Ok().json(detail))
}

/// The record store the admin reads Run records from (none in tests that wire the admin alone).
pub struct RunStore(pub Option<Store>);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayOptions {
    #[serde(default)]
    bypass_cache: bool,
    #[serde(default)]
    dry_run: bool,
}

async fn replay_run(
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let auth = auth_of(&req)?;
    let opts: ReplayOptions = body(&bytes)?;
    let id = path.into_inner();
    let job = load(&state, &id).await?;
    let outcome = replay::replay_one(&state.journal, &job, opts.bypass_cache, opts.dry_run).await?;
    let details = |extra: Value| {
        let mut d = json!({"dry_run": opts.dry_run, "bypass_cache": opts.bypass_cache});
        if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        d
    };
    match outcome {
        Outcome::Skipped { reason } => {
            write_audit(
                &state,
                auth,
                "replay",
                Some(id.clone()),
                0,
                details(json!({"skipped": reason})),
            )
            .await?;
            let (status, message) = match reason {
                "RUN_NOT_FINISHED" => (
                    StatusCode::CONFLICT,
                    format!(
                        "run `{id}` is {}; only a failed, succeeded or cancelled run can be replayed (cancel it first, or wait)",
                        job.status.as_str()
                    ),
                ),
                "RUN_ALREADY_ACTIVE" => (
                    StatusCode::CONFLICT,
                    format!(
                        "the work of run `{id}` is already queued or running in another job; wait for it to finish"
                    ),
                ),
                other => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("run `{id}` could not be replayed ({other}); retry shortly"),
                ),
            };
            Err(ApiError::new(status, reason, message)
                .with_details(json!({"run_id": id, "status": job.status.as_str()})))
        }
        Outcome::Replayed { new_run_id: None } => {
            write_audit(
                &state,
                auth,
                "replay",
                Some(id.clone()),
                1,
                details(json!({})),
            )
            .await?;
            Ok(HttpResponse::Ok()
                .json(json!({"dry_run": true, "run_id": id, "would_replay": true})))
        }
        Outcome::Replayed {
            new_run_id: Some(new_id),
        } => {
            write_audit(
                &state,
                auth,
                "replay",
                Some(id.clone()),
                1,
                details(json!({"new_run_id": new_id})),
            )
            .await?;
            state.runner.wake();
            Ok(HttpResponse::Accepted().json(json!({
                "run_id": new_id,
                "replay_of": id,
                "status": "queued",
                "status_url": format!("/v1/runs/{new_id}"),
            })))
        }
    }
}

async fn cancel_run(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let auth = auth_of(&req)?;
    let id = path.into_inner();
    let job = load(&state, &id).await?;
    let cancelled = state.journal.cancel_job(id.clone()).await?;
    write_audit(
        &state,
        auth,
        "cancel",
        Some(id.clone()),
        u64::from(cancelled),
        json!({"cancelled": cancelled, "status_before": job.status.as_str()}),
    )
    .await?;
    if !cancelled {
        let now = state.journal.get_job(id.clone()).await?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "RUN_NOT_CANCELLABLE",
            format!(
                "run `{id}` is {}; only a queued or retry-scheduled run can be cancelled",
                now.status.as_str()
            ),
        )
        .with_details(json!({"run_id": id, "status": now.status.as_str()})));
    }
    Ok(HttpResponse::Ok().json(json!({"run_id": id, "status": "cancelled"})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkReplay {
    #[serde(default)]
    pub run_ids: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<FilterSpec>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub bypass_cache: bool,
    /// Also replay runs that an earlier replay already covers.
    #[serde(default)]
    pub include_replayed: bool,
}

async fn bulk_replay(
    req: HttpRequest,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let auth = auth_of(&req)?;
    let request: BulkReplay = body(&bytes)?;
    let answer = run_bulk(&state, auth, request).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// A bulk replay, audited; shared by the API and the admin page.
pub(super) async fn run_bulk(
    state: &AppState,
    auth: &AdminAuth,
    request: BulkReplay,
) -> Result<Value, ApiError> {
    let too_many = |n: usize| {
        ApiError::bad_request(
            "TOO_MANY_RUNS",
            format!(
                "{n} runs match; one call replays at most {MAX_BULK}: narrow the filter (e.g. by time) or send ids in chunks"
            ),
        )
        .with_details(json!({"matched": n, "max": MAX_BULK}))
    };
    let mut skipped: Vec<Value> = Vec::new();
    let (jobs, selection) = match (&request.run_ids, &request.filter) {
        (Some(ids), None) => {
            let mut unique: Vec<String> = Vec::with_capacity(ids.len());
            for id in ids {
                if !unique.contains(id) {
                    unique.push(id.clone());
                }
            }
            if unique.len() > MAX_BULK {
                return Err(too_many(unique.len()));
            }
            let found = if unique.is_empty() {
                Vec::new()
            } else {
                let filter = JobFilter {
                    ids: unique.clone(),
                    ..JobFilter::default()
                };
                state.journal.list_jobs(filter, unique.len(), 0).await?
            };
            // Keep the caller's order, and name the ids that do not exist.
            let mut jobs = Vec::with_capacity(found.len());
            for id in &unique {
                match found.iter().find(|j| &j.id == id) {
                    Some(job) => jobs.push(job.clone()),
                    None => skipped.push(json!({"run_id": id, "reason": "RUN_NOT_FOUND"})),
                }
            }
            (jobs, json!({"run_ids": unique.len()}))
        }
        (None, Some(spec)) => {
            let mut filter = spec.to_filter()?;
            if filter.statuses.is_empty() {
                // A filter without a status means the runs worth replaying: the failed ones.
                filter.statuses = vec![JobStatus::Failed];
            }
            let total = state.journal.count_jobs(filter.clone()).await? as usize;
            if total > MAX_BULK {
                return Err(too_many(total));
            }
            let mut jobs = state.journal.list_jobs(filter.clone(), total, 0).await?;
            // Oldest first, so replays run in the order the originals came in.
            jobs.reverse();
            let selection = json!({
                "status": filter.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "scenario": filter.scenario,
                "since": filter.since.map(rfc3339),
                "until": filter.until.map(rfc3339),
            });
            (jobs, json!({ "filter": selection }))
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad_request(
                "INVALID_REPLAY_REQUEST",
                "send either `run_ids` (a list) or `filter` (an object), not both and not neither",
            ));
        }
    };
    let matched = jobs.len() + skipped.len();
    let jobs = if request.include_replayed {
        jobs
    } else {
        let covered =
            replay::already_replayed(&state.journal, jobs.iter().map(|j| j.id.clone()).collect())
                .await?;
        let (covered, fresh): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| covered.contains(&j.id));
        skipped.extend(
            covered
                .iter()
                .map(|j| json!({"run_id": j.id, "reason": "ALREADY_REPLAYED"})),
        );
        fresh
    };
    let outcomes =
        replay::replay_many(&state.journal, jobs, request.bypass_cache, request.dry_run).await?;
    let mut replayed: Vec<Value> = Vec::new();
    for (run_id, outcome) in outcomes {
        match outcome {
            Outcome::Replayed { new_run_id } => {
                replayed.push(json!({"run_id": run_id, "new_run_id": new_run_id}))
            }
            Outcome::Skipped { reason } => {
                skipped.push(json!({"run_id": run_id, "reason": reason}))
            }
        }
    }
    let mut details = selection;
    details["dry_run"] = json!(request.dry_run);
    details["bypass_cache"] = json!(request.bypass_cache);
    details["include_replayed"] = json!(request.include_replayed);
    details["matched"] = json!(matched);
    details["skipped"] = json!(skipped.len());
    write_audit(
        state,
        auth,
        "bulk_replay",
        None,
        replayed.len() as u64,
        details,
    )
    .await?;
    if !request.dry_run && !replayed.is_empty() {
        state.runner.wake();
    }
    Ok(json!({
        "dry_run": request.dry_run,
        "matched": matched,
        "replayed": replayed,
        "skipped": skipped,
    }))
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    per_page: Option<String>,
}

async fn audit(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth_of(&req)?;
    let q: AuditQuery = query(&req)?;
    let (page, per_page) = paging(q.page.as_deref(), q.per_page.as_deref())?;
    let entries = state
        .journal
        .audit_entries(per_page, (page - 1) * per_page)
        .await?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": rfc3339(e.at),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "count": e.count,
                "details": e.details,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"entries": entries, "page": page, "per_page": per_page})))
}
