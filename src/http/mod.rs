//! The HTTP surface: routes and the state they share. Handlers are thin: they check, journal and
//! answer; the work happens in jobs and scenarios.

pub mod airtable_ping;
pub mod hooks;
pub mod runs;

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::error::ApiError;
use crate::jobs::RunnerHandle;
use crate::journal::Journal;
use crate::webhook::Secret;

pub use hooks::{Hook, Hooks};

/// What every request handler can reach.
pub struct AppState {
    pub journal: Journal,
    pub runner: RunnerHandle,
    pub hooks: Arc<Hooks>,
    pub secrets: Arc<Vec<Secret>>,
    pub tolerance_secs: u64,
    pub max_body: usize,
    pub prometheus: Option<PrometheusHandle>,
    /// Extra readiness check (the record store).
    pub ready: Arc<dyn Fn() -> futures_ready::ReadyFuture + Send + Sync>,
}

/// A boxed readiness future, so the store can be checked without this module knowing its type.
pub mod futures_ready {
    pub type ReadyFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
}

/// Registers the worker's routes on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/hooks/{scenario}", web::post().to(hooks::receive))
        .route("/v1/runs/{id}", web::get().to(runs::show))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(prometheus_metrics));
}

/// The answer for a path or method no route serves, in the same error shape as every other answer.
pub async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    no_route_error(&req).error_response()
}

fn no_route_error(req: &actix_web::HttpRequest) -> ApiError {
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.len() == 3 && segments[0] == "v1" && segments[1] == "hooks" {
        let mut e = ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!(
                "{} is not served on {path}; webhooks take POST",
                req.method()
            ),
        );
        e.details = json!({ "allow": ["POST"] });
        return e;
    }
    ApiError::not_found(
        "NO_ROUTE",
        format!(
            "nothing is served at {} {path}; see the README for the endpoints",
            req.method()
        ),
    )
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.journal.is_alive() {
        return Err(ApiError::unavailable(
            "JOURNAL_UNAVAILABLE",
            "the journal is not running",
        ));
    }
    state.journal.ping().await?;
    if let Err(e) = (state.ready)().await {
        return Err(ApiError::unavailable(
            "STORE_UNAVAILABLE",
            format!("the record store is not reachable: {e}"),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

async fn prometheus_metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Ok(counts) = state.journal.job_counts().await {
        for status in [
            "queued",
            "running",
            "retry_scheduled",
            "succeeded",
            "failed",
            "cancelled",
        ] {
            let n = counts
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            metrics::gauge!("jobs", "state" => status).set(n as f64);
        }
    }
    let text = state
        .prometheus
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

/// Gives every request an id (the caller's `X-Request-Id` when it is a short token, else a new one),
/// opens a log span with it, and returns it in `X-Request-Id` so a Make execution can be matched
/// with the worker's logs.
pub async fn request_id(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let mut res = next.call(req).instrument(span).await?;
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    Ok(res)
}
