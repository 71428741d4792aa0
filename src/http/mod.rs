//! The HTTP surface: routes and the state they share. Handlers are thin: they check, journal and
//! answer; the work happens in jobs and scenarios.

pub mod airtable_ping;
pub mod hooks;
pub mod limit;
pub mod runs;

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jobs::RunnerHandle;
use crate::journal::Journal;
use crate::webhook::Secret;

pub use hooks::{Hook, Hooks};

/// Extra routes a worker serves besides the hooks (the admin API and page, the Airtable ping).
pub type Routes = std::sync::Arc<dyn Fn(&mut actix_web::web::ServiceConfig) + Send + Sync>;

/// What every request handler can reach.
pub struct AppState {
    pub journal: Journal,
    pub runner: RunnerHandle,
    pub hooks: Arc<Hooks>,
    pub secrets: Arc<Vec<Secret>>,
    pub tolerance_secs: u64,
    pub max_body: usize,
    pub prometheus: Option<PrometheusHandle>,
    /// `deliveries_total` of each hook (made after the recorder is installed).
    pub delivery_counters: hooks::DeliveryCounters,
    /// Extra readiness check (the record store).
    pub ready: Arc<dyn Fn() -> futures_ready::ReadyFuture + Send + Sync>,
    /// The budget of the unauthenticated run view, per client ([`public_view_limiter`]).
    pub public_limit: Arc<limit::RateLimiter>,
}

/// Longest any request body may take to arrive, whatever its route. A webhook's body gets less when
/// its signed timestamp leaves the window sooner. Make and scripts send a whole body at once; only a
/// client holding a connection open on purpose trickles it.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Connections each HTTP worker holds at once; past that the listener stops accepting until one
/// closes (actix's default is 25,000 per worker, far beyond what a webhook worker should hold open).
pub const MAX_CONNECTIONS_PER_WORKER: usize = 256;

/// Time to send a request's head (actix answers 408 past it).
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The public run view's budget per client: a burst of 300 requests, then 100 a second. Make polls a
/// run a few times a minute; run ids are not guessable (74 random bits), so this only keeps one client
/// from taking the worker's time.
pub fn public_view_limiter() -> limit::RateLimiter {
    limit::RateLimiter::new(300, 100.0)
}

/// The 408 for a body that did not arrive in time.
pub fn body_timeout(deadline: Duration) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::REQUEST_TIMEOUT,
        "BODY_TIMEOUT",
        format!(
            "the request body did not arrive within {} seconds; send the whole body at once",
            deadline.as_secs().max(1)
        ),
    )
}

/// The 429 for a client over its budget.
pub fn rate_limited(retry_after: u64) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many requests from this client; wait for the Retry-After delay",
    )
    .with_retry_after(retry_after)
}

/// A boxed readiness future, so the store can be checked without this module knowing its type.
pub mod futures_ready {
    pub type ReadyFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
}

/// Registers the worker's routes on an actix app.
///
/// Each hook gets a route of its own path ahead of the catch-all `/v1/hooks/{scenario}`, which
/// answers the names no hook has. A literal path is matched by comparing strings, where a
/// `{segment}` pattern runs a regular expression on every request: that was about 4 % of an HTTP
/// worker's time under intake load.
pub fn configure(cfg: &mut web::ServiceConfig, hooks: &Hooks) {
    for name in hooks.keys() {
        let scenario: Arc<str> = name.as_str().into();
        cfg.route(
            &format!("/v1/hooks/{name}"),
            web::post().to(
                move |req: actix_web::HttpRequest,
                      payload: web::Payload,
                      state: web::Data<AppState>| {
                    hooks::receive(scenario.clone(), req, payload, state)
                },
            ),
        );
    }
    cfg.route(
        "/v1/hooks/{scenario}",
        web::post().to(
            |req: actix_web::HttpRequest,
             path: web::Path<String>,
             payload: web::Payload,
             state: web::Data<AppState>| {
                hooks::receive(path.into_inner().into(), req, payload, state)
            },
        ),
    )
    .route("/v1/runs/{id}", web::get().to(runs::show))
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(prometheus_metrics));
}

/// The answer for a path or method no route serves, in the same error shape as every other answer;
/// a 405 names the methods the path takes in `Allow` too (RFC 9110 §15.5.6 requires it).
pub async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let error = no_route_error(&req);
    let mut response = error.error_response();
    if let Some(allow) = error.details["allow"].as_array() {
        let methods: Vec<&str> = allow.iter().filter_map(Value::as_str).collect();
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&methods.join(", ")) {
            response
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, value);
        }
    }
    response
}

/// The methods a known path takes, for a request that used another.
fn allowed_methods(segments: &[&str]) -> Option<(&'static str, &'static str)> {
    match segments {
        ["v1", "hooks", _] => Some(("POST", "webhooks take POST")),
        ["v1", "runs", _] => Some(("GET", "runs are read with GET")),
        ["healthz" | "readyz" | "metrics"] => Some(("GET", "it is read with GET")),
        _ => None,
    }
}

fn no_route_error(req: &actix_web::HttpRequest) -> ApiError {
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some((method, why)) = allowed_methods(&segments)
        && req.method().as_str() != method
    {
        let mut e = ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("{} is not served on {path}; {why}", req.method()),
        );
        e.details = json!({ "allow": [method] });
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

const X_REQUEST_ID: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-request-id");

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
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        // A v4 UUID from the thread's CSPRNG: `Uuid::new_v4` asks the kernel (`getrandom`) for every
        // id, one system call per request.
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .simple()
                .to_string()
        });
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    // The intake stores it with the jobs a delivery creates, so their logs carry it too.
    actix_web::HttpMessage::extensions_mut(&req).insert(hooks::RequestId(id.clone()));
    let mut res = next.call(req).instrument(span).await?;
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(res)
}

/// A request body that ends in an error once [`BODY_DEADLINE`] has passed, noting it in `expired`
/// so the answer can say 408 whatever the extractor made of the error.
struct DeadlinePayload {
    inner: actix_web::dev::Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Rc<Cell<bool>>,
}

impl futures_core::Stream for DeadlinePayload {
    type Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired.get() {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired.set(true);
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the body deadline passed"),
            ))));
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Hardening that applies to every route: a deadline on reading the body, `X-Content-Type-Options:
/// nosniff` on every answer, `Cache-Control: no-store` on the admin API's JSON, and the contract's
/// JSON error body on the framework's own error answers (a 413 from a body cap, a 400 from an
/// extractor), which would otherwise be plain text.
pub async fn harden(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    use actix_web::http::header::{self, HeaderValue};

    let expired = Rc::new(Cell::new(false));
    let inner = req.take_payload();
    let wrapped: actix_web::dev::Payload = actix_web::dev::Payload::Stream {
        payload: Box::pin(DeadlinePayload {
            inner,
            sleep: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
            expired: expired.clone(),
        }),
    };
    req.set_payload(wrapped);
    let admin_api = req.path().starts_with("/v1/admin");

    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let is_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let mut res = if (status.is_client_error() || status.is_server_error())
        && (expired.get() || !(is_json || is_html))
    {
        use actix_web::ResponseError;
        let error = if expired.get() {
            body_timeout(BODY_DEADLINE)
        } else {
            framework_error(status)
        };
        let (req, old) = res.into_parts();
        let mut fresh = error.error_response();
        for name in [header::ALLOW, header::RETRY_AFTER] {
            if let Some(v) = old.headers().get(&name) {
                fresh.headers_mut().insert(name, v.clone());
            }
        }
        actix_web::dev::ServiceResponse::new(req, fresh)
    } else {
        res
    };
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if admin_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

/// The contract's error for an answer the framework made itself (the status is all it tells).
fn framework_error(status: actix_web::http::StatusCode) -> ApiError {
    use actix_web::http::StatusCode;
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "BODY_TOO_LARGE",
            "the body is larger than this endpoint takes; send less data",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "BODY_TIMEOUT",
            "the request did not arrive in time; send it at once",
        ),
        StatusCode::BAD_REQUEST => (
            "BAD_REQUEST",
            "the request could not be read; check its body and headers",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UNSUPPORTED_MEDIA_TYPE",
            "the body's Content-Type is not one this endpoint takes",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "METHOD_NOT_ALLOWED",
            "this method is not served on this path; see the README for the endpoints",
        ),
        StatusCode::NOT_FOUND => (
            "NO_ROUTE",
            "nothing is served at this path; see the README for the endpoints",
        ),
        s if s.is_server_error() => (
            "INTERNAL_ERROR",
            "the worker could not answer this request; retry, and check the worker's logs if it persists",
        ),
        _ => (
            "REQUEST_REFUSED",
            "the request was refused; check its method, headers and body",
        ),
    };
    ApiError::new(status, code, message)
}
