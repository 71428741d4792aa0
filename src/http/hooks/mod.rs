//! `POST /v1/hooks/{scenario}`: the webhook intake, and the adapters that put the scenarios on it
//! (one file per hook: [`a1`], [`build`] (a2, s3), [`r1`], [`s1`], [`d1`], [`e1`]).
//!
//! The order of checks is the order of cost: known scenario (404), announced body size (413), the
//! signature headers and their timestamp window (401, before any of the body is read), reading the
//! body under a deadline (408) and a size cap (413), the MAC over it (401), JSON (400 with the byte
//! position), the scenario's own validation (400/422), then the journal. Only a delivery that passed
//! all of them is journaled, and it is journaled before it is answered.
//!
//! A hook parses the body once ([`Hook::prepare`]) into the scenario's typed request: an
//! asynchronous hook hands back the job to queue (a `JobSpec` made into a journal row), a
//! synchronous one the call that answers it, holding the parsed request. Scenario outcomes and
//! [`ScenarioError`]s become status codes and the contract's error body here, and only here.

pub mod a1;
pub mod build;
pub mod d1;
pub mod e1;
pub mod input;
pub mod r1;
pub mod s1;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use coach_store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use crate::error::ApiError;
use crate::journal::{DeliveryOutcome, NewDelivery, NewJob};
use crate::scenarios::{Delivery, JobSpec, ScenarioError};
use crate::webhook::{self, SignedHeaders};

/// The answer of a synchronous hook: a status and a JSON body, or the error to answer.
pub type HookAnswer = Result<(StatusCode, Value), ApiError>;

/// A synchronous hook's call, holding its parsed request until the delivery is reserved.
pub type SyncCall =
    Box<dyn FnOnce(Delivery) -> Pin<Box<dyn Future<Output = HookAnswer> + Send>> + Send>;

/// What a hook makes of a valid body.
pub enum Prepared {
    /// Queue this job and answer 202.
    Enqueue(Box<NewJob>),
    /// Answer with this call once the delivery is reserved.
    Respond(SyncCall),
}

impl Prepared {
    /// Queue a scenario job.
    pub fn job(spec: JobSpec) -> Prepared {
        Prepared::Enqueue(Box::new(spec.into_job("")))
    }

    /// Answer synchronously with `call`.
    pub fn respond<F, Fut>(call: F) -> Prepared
    where
        F: FnOnce(Delivery) -> Fut + Send + 'static,
        Fut: Future<Output = HookAnswer> + Send + 'static,
    {
        Prepared::Respond(Box::new(move |delivery| Box::pin(call(delivery))))
    }
}

/// A scenario outcome as a JSON body.
pub(crate) fn body_of<T: Serialize>(outcome: &T) -> Value {
    serde_json::to_value(outcome).unwrap_or_else(|_| json!({}))
}

/// A webhook scenario: how its body is checked and how it is answered.
///
/// The scenario hooks implement [`Hook::prepare`] alone. The older surface — `validate` (a payload
/// as JSON), `job_kind`, `dedupe_key` and `respond` — remains for hooks written against it (test
/// doubles); the default `prepare` is made of it.
#[async_trait::async_trait]
pub trait Hook: Send + Sync + 'static {
    /// Checks the body and returns the payload the job or `respond` receives.
    fn validate(&self, body: &Value) -> Result<Value, ApiError> {
        Ok(body.clone())
    }

    /// The job kind an asynchronous hook enqueues (answer 202); `None` for a synchronous hook, which
    /// answers through [`Hook::respond`].
    fn job_kind(&self) -> Option<&str> {
        None
    }

    /// For asynchronous hooks: a key under which at most one job may be active (e.g. one run per
    /// Run Request), whatever the delivery.
    fn dedupe_key(&self, _payload: &Value) -> Option<String> {
        None
    }

    /// The answer of a synchronous hook. 4xx errors are final and replayed to repeats; any other
    /// error releases the delivery so that the sender's retry runs it again.
    async fn respond(
        &self,
        _delivery_key: &str,
        _payload: Value,
    ) -> Result<(StatusCode, Value), ApiError> {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NOT_SYNCHRONOUS",
            "this hook answers asynchronously",
        ))
    }

    /// Parses the body once into what the intake does with it.
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        let payload = self.validate(body)?;
        Ok(match self.job_kind() {
            Some(kind) => {
                let mut job = NewJob::new(kind, "", payload);
                job.dedupe_key = self.dedupe_key(&job.payload);
                Prepared::Enqueue(Box::new(job))
            }
            None => Prepared::respond(move |delivery: Delivery| async move {
                self.respond(&delivery.key, payload).await
            }),
        })
    }
}

/// The web answer of a scenario error: input errors are 400/422 with their code and pointer, a
/// missing record 422, a transient failure 503 (the sender retries), anything else 502.
impl From<ScenarioError> for ApiError {
    fn from(e: ScenarioError) -> Self {
        let pointer_details = |pointer: Option<&str>| match pointer {
            Some(p) => json!({ "pointer": p }),
            None => json!({}),
        };
        match e {
            ScenarioError::Invalid(input) => {
                let status = if input.malformed {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                ApiError::new(status, input.code, input.message)
                    .with_details(pointer_details(input.pointer.as_deref()))
            }
            ScenarioError::NotFound {
                code,
                message,
                pointer,
            } => ApiError::unprocessable(code, message)
                .with_details(pointer_details(pointer.as_deref())),
            ScenarioError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ScenarioError::Store(StoreError::NotFound { table, id }) => ApiError::unprocessable(
                "RECORD_NOT_FOUND",
                format!("record {id} does not exist in \"{table}\"; check the id"),
            )
            .with_details(json!({ "table": table, "id": id })),
            ref other if other.is_transient() => {
                tracing::warn!(code = other.code(), error = %other, "transient failure in a synchronous hook");
                ApiError::unavailable(other.code(), format!("{other}; retry later"))
            }
            ScenarioError::Store(e) if e.is_client_error() => {
                ApiError::unprocessable(e.code(), e.to_string())
            }
            other => {
                tracing::error!(code = other.code(), error = %other, "hook failed");
                ApiError::new(StatusCode::BAD_GATEWAY, other.code(), other.to_string())
            }
        }
    }
}

/// The id the request-id middleware gave this request (kept in the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The hooks the worker serves, by scenario name.
pub type Hooks = std::collections::HashMap<String, Arc<dyn Hook>>;

fn header<'a>(req: &'a HttpRequest, name: &HeaderName) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The headers a hook reads. Named once here: a header looked up by a `&str` name has that name
/// parsed into an owned `HeaderName` (an allocation) at every lookup.
mod names {
    use actix_web::http::header::HeaderName;
    pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
    pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
    pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
    pub const COACH_TIMESTAMP: HeaderName = HeaderName::from_static("x-coach-timestamp");
    pub const COACH_SIGNATURE: HeaderName = HeaderName::from_static("x-coach-signature");
    pub const COACH_DELIVERY: HeaderName = HeaderName::from_static("x-coach-delivery");
    pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
}

/// What became of a delivery: the `outcome` label of `deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Accepted,
    Replayed,
    InProgress,
    KeyReused,
    Unauthorized,
    Invalid,
    Rejected,
}

impl Counted {
    const ALL: [Counted; 7] = [
        Counted::Accepted,
        Counted::Replayed,
        Counted::InProgress,
        Counted::KeyReused,
        Counted::Unauthorized,
        Counted::Invalid,
        Counted::Rejected,
    ];

    fn label(self) -> &'static str {
        match self {
            Counted::Accepted => "accepted",
            Counted::Replayed => "replayed",
            Counted::InProgress => "in_progress",
            Counted::KeyReused => "key_reused",
            Counted::Unauthorized => "unauthorized",
            Counted::Invalid => "invalid",
            Counted::Rejected => "rejected",
        }
    }
}

/// `deliveries_total{scenario, outcome}` of every hook, registered once when the server starts.
/// A counter named by its labels at each delivery copies the labels and looks the key up in the
/// recorder's registry every time.
pub struct DeliveryCounters(std::collections::HashMap<String, [metrics::Counter; 7]>);

impl DeliveryCounters {
    /// The counters of `hooks`, from the metrics recorder installed now (install it first).
    pub fn new(hooks: &Hooks) -> DeliveryCounters {
        DeliveryCounters(
            hooks
                .keys()
                .map(|scenario| {
                    let counters = Counted::ALL.map(|outcome| {
                        metrics::counter!("deliveries_total", "scenario" => scenario.clone(), "outcome" => outcome.label())
                    });
                    (scenario.clone(), counters)
                })
                .collect(),
        )
    }

    fn count(&self, scenario: &str, outcome: Counted) {
        if let Some(counters) = self.0.get(scenario) {
            counters[outcome as usize].increment(1);
        }
    }
}

/// The webhook of `scenario`: checks the signature, journals the delivery and answers (see the module doc).
pub async fn receive(
    scenario: Arc<str>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(hook) = state.hooks.get(&*scenario).cloned() else {
        let mut known: Vec<&String> = state.hooks.keys().collect();
        known.sort();
        return Err(ApiError::not_found(
            "UNKNOWN_SCENARIO",
            format!("there is no webhook `{scenario}`; use one of the listed scenarios"),
        )
        .with_details(json!({ "known": known })));
    };

    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            format!("the body is larger than {} bytes; send less data (put long transcripts in a File attachment)", state.max_body),
        )
        .with_details(json!({ "limit": state.max_body }))
    };
    let length = header(&req, &CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|len| len > state.max_body) {
        return Err(too_large());
    }

    // Signature headers first: an unsigned, malformed or stale request is refused before a byte of
    // its body is read, so it can neither hold a connection open nor cost a MAC.
    let headers = SignedHeaders {
        webhook_id: header(&req, &names::WEBHOOK_ID),
        webhook_timestamp: header(&req, &names::WEBHOOK_TIMESTAMP),
        webhook_signature: header(&req, &names::WEBHOOK_SIGNATURE),
        coach_timestamp: header(&req, &names::COACH_TIMESTAMP),
        coach_signature: header(&req, &names::COACH_SIGNATURE),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let unauthorized = |e: webhook::SignatureError| {
        state
            .delivery_counters
            .count(&scenario, Counted::Unauthorized);
        ApiError::unauthorized(e.code(), e.to_string())
    };
    let pending = webhook::signature::check_headers(&headers, now, state.tolerance_secs)
        .map_err(unauthorized)?;

    // The body must arrive before the signed timestamp goes stale (it would be refused then anyway)
    // and within the general body deadline.
    let left = webhook::signature::seconds_left(pending.timestamp(), now, state.tolerance_secs);
    let deadline = super::BODY_DEADLINE.min(std::time::Duration::from_secs(left.max(1)));
    let body =
        match tokio::time::timeout(deadline, read_body(payload, state.max_body, length)).await {
            Err(_) => return Err(super::body_timeout(deadline)),
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => return Err(too_large()),
            Ok(Err(_)) => {
                return Err(ApiError::bad_request(
                    "BODY_UNREADABLE",
                    "the request body could not be read",
                ));
            }
        };
    let verified = pending
        .verify(&state.secrets, &body)
        .map_err(unauthorized)?;

    let json: Value = serde_json::from_slice(&body).map_err(|e| {
        state.delivery_counters.count(&scenario, Counted::Invalid);
        json_error(&body, &e)
    })?;
    let prepared = hook.clone().prepare(&json).inspect_err(|_| {
        state.delivery_counters.count(&scenario, Counted::Invalid);
    })?;
    let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());

    let delivery_id = headers
        .webhook_id
        .or_else(|| header(&req, &names::COACH_DELIVERY));
    let key = webhook::delivery_key(
        &scenario,
        delivery_id,
        header(&req, &names::IDEMPOTENCY_KEY),
        &json,
    );
    // The Make scheme signs neither `X-Coach-Delivery` nor `Idempotency-Key`: the journal decides a
    // repeat of its signed content under the delivery key that content first came with, in the same
    // operation that journals the delivery.
    let signed_key = (verified.scheme == webhook::Scheme::Make)
        .then(|| webhook::signed_content_key(&scenario, verified.timestamp, &body));
    let delivery = NewDelivery {
        key,
        scenario: scenario.as_ref().to_owned(),
        body_hash: webhook::body_hash(&json),
        body: String::from_utf8_lossy(&body).into_owned(),
    };

    match prepared {
        Prepared::Enqueue(mut job) => {
            job.scenario = scenario.as_ref().to_owned();
            // Set to the key the delivery is decided under by the journal (see `NewJob::delivery_key`).
            job.delivery_key = Some(String::new());
            job.request_id = request_id;
            let run_id = job.id.clone();
            let (outcome, key) = state
                .journal
                .accept_signed_delivery(delivery, signed_key, *job, 202, queued_answer)
                .await?;
            answered(&state.delivery_counters, &scenario, &key, outcome, || {
                tracing::info!(scenario = %scenario, delivery_key = %key, run_id = %run_id, "delivery accepted");
                HttpResponse::Accepted()
                    .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                    .body(queued_answer(&run_id))
            })
        }
        Prepared::Respond(call) => {
            let (outcome, key) = state
                .journal
                .reserve_signed_delivery(delivery, signed_key)
                .await?;
            if outcome != DeliveryOutcome::New {
                return answered(&state.delivery_counters, &scenario, &key, outcome, || {
                    HttpResponse::Ok().finish()
                });
            }
            // Released unless an answer is stored: a request dropped mid-way (the sender hung up,
            // the server stopped) must not leave its delivery "in progress" for good.
            let mut reservation = Reservation {
                journal: state.journal.clone(),
                key: Some(key.clone()),
            };
            let answer = call(Delivery {
                key: key.clone(),
                request_id,
            })
            .await;
            match answer {
                Ok((status, body)) => {
                    state
                        .journal
                        .complete_delivery(key.clone(), status.as_u16(), body.clone())
                        .await?;
                    reservation.answered();
                    state.delivery_counters.count(&scenario, Counted::Accepted);
                    tracing::info!(scenario = %scenario, delivery_key = %key, status = status.as_u16(), "delivery answered");
                    Ok(HttpResponse::build(status).json(body))
                }
                Err(e) if e.status.is_client_error() => {
                    state.delivery_counters.count(&scenario, Counted::Rejected);
                    state
                        .journal
                        .complete_delivery(key, e.status.as_u16(), e.body())
                        .await?;
                    reservation.answered();
                    Err(e)
                }
                Err(e) => {
                    // Disarm the guard first: if this future is dropped during the release, a
                    // second (detached) release could delete a retry's new reservation.
                    reservation.answered();
                    state.journal.release_delivery(key).await?;
                    Err(e)
                }
            }
        }
    }
}

/// A synchronous hook's reservation, released when dropped before its answer is stored.
struct Reservation {
    journal: crate::journal::Journal,
    key: Option<String>,
}

impl Reservation {
    /// The answer is stored (or the key released explicitly): nothing to do on drop.
    fn answered(&mut self) {
        self.key = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            tracing::warn!(delivery_key = %key, "synchronous delivery dropped before its answer; released for a retry");
            self.journal.release_delivery_detached(key);
        }
    }
}

/// Reads the whole body, or `None` once it is larger than `limit` bytes. The buffer is sized from
/// `Content-Length` when the request gives one. (actix's `to_bytes_limited` starts every body of a
/// streamed payload at 32 KiB. Freeing a block that size for each delivery made glibc give memory
/// back to the kernel and fault it in again: 0.026 `madvise` calls and 0.084 page faults per
/// delivery under intake load, none with this; the HTTP workers' CPU per delivery fell by about
/// 3 µs.)
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    length: Option<usize>,
) -> Result<Option<web::Bytes>, actix_web::error::PayloadError> {
    use futures_core::Stream;
    let mut body = web::BytesMut::with_capacity(length.unwrap_or(0).min(limit));
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// The 202 answer of an asynchronous hook, as the JSON text the journal stores and the hook sends:
/// `{"run_id": …, "status": "queued", "status_url": "/v1/runs/…"}`. It is serialised from a
/// struct, in one allocation, rather than built as a `Value` map of owned strings.
pub fn queued_answer(run_id: &str) -> String {
    struct StatusUrl<'a>(&'a str);
    impl Serialize for StatusUrl<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("/v1/runs/{}", self.0))
        }
    }
    #[derive(Serialize)]
    struct Queued<'a> {
        run_id: &'a str,
        status: &'static str,
        status_url: StatusUrl<'a>,
    }
    serde_json::to_string(&Queued {
        run_id,
        status: "queued",
        status_url: StatusUrl(run_id),
    })
    .unwrap_or_default()
}

/// Turns a journal outcome into the answer: the new answer, or the first one again.
fn answered(
    counters: &DeliveryCounters,
    scenario: &str,
    key: &str,
    outcome: DeliveryOutcome,
    new: impl FnOnce() -> HttpResponse,
) -> Result<HttpResponse, ApiError> {
    let counted = match &outcome {
        DeliveryOutcome::New => Counted::Accepted,
        DeliveryOutcome::Replayed { .. } => Counted::Replayed,
        DeliveryOutcome::InProgress => Counted::InProgress,
        DeliveryOutcome::KeyReused => Counted::KeyReused,
    };
    counters.count(scenario, counted);
    match outcome {
        DeliveryOutcome::New => Ok(new()),
        DeliveryOutcome::Replayed { status, body } => {
            tracing::info!(
                scenario,
                delivery_key = key,
                "repeated delivery answered from the journal"
            );
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok(HttpResponse::build(status)
                .insert_header(("Idempotent-Replayed", "true"))
                .json(body))
        }
        DeliveryOutcome::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "DELIVERY_IN_PROGRESS",
            "the first request with this delivery id is still being processed; retry in a moment",
        )
        .with_retry_after(1)),
        DeliveryOutcome::KeyReused => Err(ApiError::unprocessable(
            "IDEMPOTENCY_KEY_REUSED",
            "this delivery id was already used with a different body; send a new delivery id for new content",
        )),
    }
}

/// A 400 that says where the JSON broke: line, column and byte offset.
fn json_error(body: &[u8], e: &serde_json::Error) -> ApiError {
    let (line, column) = (e.line(), e.column());
    let position = byte_position(body, line, column);
    ApiError::bad_request(
        "INVALID_JSON",
        format!(
            "the body is not valid JSON at byte {position} (line {line}, column {column}): {e}"
        ),
    )
    .with_details(json!({ "line": line, "column": column, "position": position }))
}

fn byte_position(body: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (index, chunk) in body.split(|b| *b == b'\n').enumerate() {
        if index + 1 == line {
            return offset + column.saturating_sub(1).min(chunk.len());
        }
        offset += chunk.len() + 1;
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::{Counted, byte_position, queued_answer};

    #[test]
    fn byte_position_counts_previous_lines() {
        let body = b"{\n  \"a\": x\n}";
        let e = serde_json::from_slice::<serde_json::Value>(body).unwrap_err();
        assert_eq!(
            &body[byte_position(body, e.line(), e.column())..][..1],
            b"x"
        );
    }

    #[tokio::test]
    async fn a_reservation_dropped_unanswered_frees_its_key_and_an_answered_one_keeps_it() {
        use super::Reservation;
        use crate::journal::{DeliveryOutcome, Journal, NewDelivery};
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db")).unwrap();
        let delivery = |key: &str| NewDelivery {
            key: key.into(),
            scenario: "a1".into(),
            body_hash: "h".into(),
            body: "{}".into(),
        };
        let reserve = |key: &str| journal.reserve_delivery(delivery(key));

        assert_eq!(reserve("a1:dropped").await.unwrap(), DeliveryOutcome::New);
        assert_eq!(
            reserve("a1:dropped").await.unwrap(),
            DeliveryOutcome::InProgress
        );
        // The request is dropped mid-way (the sender hung up, the server stopped).
        drop(Reservation {
            journal: journal.clone(),
            key: Some("a1:dropped".into()),
        });
        assert_eq!(reserve("a1:dropped").await.unwrap(), DeliveryOutcome::New);

        assert_eq!(reserve("a1:answered").await.unwrap(), DeliveryOutcome::New);
        let mut answered = Reservation {
            journal: journal.clone(),
            key: Some("a1:answered".into()),
        };
        journal
            .complete_delivery("a1:answered".into(), 201, serde_json::json!({"ok": true}))
            .await
            .unwrap();
        answered.answered();
        drop(answered);
        assert_eq!(
            reserve("a1:answered").await.unwrap(),
            DeliveryOutcome::Replayed {
                status: 201,
                body: serde_json::json!({"ok": true})
            }
        );
    }

    #[tokio::test]
    async fn a_new_incarnation_releases_the_reservations_of_the_previous_one_only() {
        use crate::journal::{DeliveryOutcome, Journal, NewDelivery};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let delivery = |key: &str| NewDelivery {
            key: key.into(),
            scenario: "a1".into(),
            body_hash: "h".into(),
            body: "{}".into(),
        };
        let before = Journal::open(&path).unwrap();
        before.reserve_delivery(delivery("a1:old")).await.unwrap();
        before.close();
        // The next start: its own reservations made after the release stay.
        let after = Journal::open(&path).unwrap();
        assert_ne!(before.incarnation(), after.incarnation());
        assert_eq!(after.release_orphaned().await.unwrap(), 1);
        assert_eq!(
            after.reserve_delivery(delivery("a1:old")).await.unwrap(),
            DeliveryOutcome::New
        );
        assert_eq!(after.release_orphaned().await.unwrap(), 0);
        assert_eq!(
            after.reserve_delivery(delivery("a1:old")).await.unwrap(),
            DeliveryOutcome::InProgress
        );
    }

    #[test]
    fn each_outcome_indexes_its_own_counter() {
        for (i, outcome) in Counted::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
        }
    }

    #[test]
    fn the_queued_answer_is_the_contracts_json() {
        let text = queued_answer("run_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4");
        assert_eq!(
            text,
            r#"{"run_id":"run_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4","status":"queued","status_url":"/v1/runs/run_0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4"}"#
        );
    }
}
