//! A fake OpenAI-compatible server (feature `fake`) for end-to-end tests.
//!
//! [`FakeOpenAi`] runs a wiremock server answering `POST /v1/chat/completions`. By default each
//! answer is **grounded**: the fake rebuilds the transcript(s) from the segment lines of the prompt
//! (`S12 [Speaker]: text`, `T1.S12 [...]` in packs; see [`crate::prompt`]) and returns what the
//! rules analyzer says about them, so the answer passes Gate-1 against the real transcript. Every
//! answer carries `usage` and an `x-request-id` (`req_fake_1`, `req_fake_2`, ...).
//!
//! Failures are scripted: [`FakeOpenAi::push`] queues one behaviour per request (first in, first
//! out); when the queue is empty answers are grounded again. Standing modes change every answer:
//! [`FakeOpenAi::reject_json_schema`] / [`FakeOpenAi::reject_json_schema_as`] make the server
//! behave like one without structured outputs (400 for `json_schema`, in OpenAI's, vLLM's,
//! FastAPI's or a plain-text error envelope), [`FakeOpenAi::refuse_temperature`] like an OpenAI
//! reasoning model (400 `unsupported_value` for a non-default `temperature`), and
//! [`FakeOpenAi::azure_config`] addresses the same answers as an Azure OpenAI deployment.
//!
//! Provider shapes, one scripted answer each, as the providers document them or their users
//! reported them: OpenRouter's error inside a 200 ([`Scripted::ErrorInOk`]) and
//! `finish_reason: "error"` ([`Scripted::FinishReasonError`]), Groq's
//! `json_validate_failed` ([`Scripted::JsonValidateFailed`]), a `<think>` block before the JSON
//! ([`Scripted::ThinkBlock`]), content as an array of parts with `reasoning_content`
//! ([`Scripted::ContentParts`]), a proxy's page instead of a completion
//! ([`Scripted::Unreadable`]) and OpenAI's rate-limit window without `Retry-After`
//! ([`Scripted::RateLimitWindow`]).
//!
//! Build one fake per test (per tokio runtime): wiremock servers and reqwest clients must not be
//! shared across runtimes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coach_transcript::{Format, Segment, Transcript};
use serde_json::{Value, json};
use wiremock::matchers::{header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::model::{ActiveExperiment, AnalysisInput, RunType};
use crate::openai::{AzureDeployment, OpenAiConfig};
use crate::prompt::{
    COACHEE_LINE, EXPERIMENT_LINE, RUN_TYPE_LINE, TRANSCRIPT_BEGIN, TRANSCRIPT_END,
};
use crate::rules;

/// The quote [`Scripted::InventedQuote`] puts in the first evidence.
pub const INVENTED_QUOTE: &str = "We agreed to double the budget and hire ten people tomorrow.";

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Scripted {
    /// 429 rate limit with `retry-after-ms`.
    RateLimited {
        /// The `retry-after-ms` header value.
        retry_after_ms: u64,
    },
    /// 429 rate limit with `retry-after` in seconds.
    RateLimitedSeconds {
        /// The `retry-after` header value.
        retry_after_secs: u64,
    },
    /// 503 service unavailable.
    Unavailable,
    /// 429 with `error.code = insufficient_quota`.
    InsufficientQuota,
    /// Any status with an OpenAI-style error body.
    Status(u16),
    /// A grounded answer whose first quote was never said.
    InventedQuote,
    /// A grounded answer citing a span id that does not exist.
    UnknownSpan,
    /// `finish_reason: length` with the answer cut in half.
    Truncated,
    /// A non-null `message.refusal`.
    Refusal,
    /// A grounded answer sent after a delay (to trigger client timeouts).
    Delay(Duration),
    /// OpenRouter: HTTP 200 with `{"error": {"message": "Provider returned error", "code": …}}`.
    ErrorInOk {
        /// The status in `error.code`.
        code: u16,
    },
    /// OpenRouter: a 200 completion with `finish_reason: "error"` and an empty answer.
    FinishReasonError,
    /// Groq: 400 `json_validate_failed` with `failed_generation` (a grounded answer whose first
    /// quote was never said).
    JsonValidateFailed,
    /// A grounded answer after a `<think>…</think>` block (reasoning distills on Ollama, LM Studio).
    ThinkBlock,
    /// A grounded answer as `content: [{"type": "thinking", …}, {"type": "text", …}]` plus a
    /// `reasoning_content` field (Mistral's reasoning models, DeepSeek's API).
    ContentParts,
    /// HTTP 200 with an HTML page instead of a chat completion (a misconfigured proxy).
    Unreadable,
    /// OpenAI's 429 for an exhausted requests window: no `Retry-After`, the reset as Go durations
    /// in `x-ratelimit-reset-requests` / `-tokens`, `x-ratelimit-remaining-requests: 0`.
    RateLimitWindow {
        /// `x-ratelimit-reset-requests`, e.g. `6m0s`.
        reset_requests: String,
        /// `x-ratelimit-reset-tokens`, e.g. `1m30s`.
        reset_tokens: String,
    },
}

/// The error envelope a server uses to refuse `json_schema` (see [`FakeOpenAi::reject_json_schema_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// 400 `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// vLLM: 400 `{"object": "error", "message", "type", "param", "code": 400}`.
    Vllm,
    /// FastAPI-based servers: 400 `{"detail": "…"}`.
    FastApi,
    /// A proxy: 400 with a plain-text body.
    PlainText,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Scripted>>,
    reject_json_schema: Mutex<Option<Envelope>>,
    refuse_temperature: AtomicBool,
    served: AtomicU64,
}

/// The Azure deployment [`FakeOpenAi::azure_config`] configures.
pub const AZURE_DEPLOYMENT: &str = "coach-gpt-4o-mini";
/// The `api-version` [`FakeOpenAi::azure_config`] configures.
pub const AZURE_API_VERSION: &str = "2024-10-21";

struct Responder {
    state: Arc<State>,
}

/// The fake server.
pub struct FakeOpenAi {
    server: MockServer,
    state: Arc<State>,
}

impl FakeOpenAi {
    /// Starts a fake on a random local port.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(State::default());
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Responder {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        // Azure's deployment route; a request without the key header or the api-version gets
        // wiremock's 404, like a wrong deployment on Azure.
        Mock::given(method("POST"))
            .and(path(format!(
                "/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
            )))
            .and(query_param("api-version", AZURE_API_VERSION))
            .and(header_exists("api-key"))
            .respond_with(Responder {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        FakeOpenAi { server, state }
    }

    /// The base URL to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// A client configuration for this fake, with test-sized backoffs (10 ms base, 50 ms cap)
    /// and a 5 s timeout.
    pub fn config(&self) -> OpenAiConfig {
        let mut c = OpenAiConfig::new("sk-fake-key");
        c.base_url = self.base_url();
        c.timeout = Duration::from_secs(5);
        c.backoff_base = Duration::from_millis(10);
        c.backoff_max = Duration::from_millis(50);
        c
    }

    /// Like [`config`](Self::config), addressed as an Azure OpenAI deployment
    /// ([`AZURE_DEPLOYMENT`], api-version [`AZURE_API_VERSION`]) with an `api-key` header.
    pub fn azure_config(&self) -> OpenAiConfig {
        let mut c = self.config();
        c.azure = Some(AzureDeployment {
            endpoint: self.server.uri(),
            deployment: AZURE_DEPLOYMENT.to_string(),
            api_version: AZURE_API_VERSION.to_string(),
        });
        c
    }

    /// Queues one scripted answer.
    pub fn push(&self, s: Scripted) {
        self.push_n(1, s);
    }

    /// Queues `n` copies of a scripted answer.
    pub fn push_n(&self, n: usize, s: Scripted) {
        if let Ok(mut q) = self.state.script.lock() {
            for _ in 0..n {
                q.push_back(s.clone());
            }
        }
    }

    /// Whether requests with `response_format.type = json_schema` get a 400 (like a server
    /// without structured outputs).
    pub fn reject_json_schema(&self, on: bool) {
        self.reject_json_schema_as(on.then_some(Envelope::OpenAi));
    }

    /// Whether (and in which error envelope) requests with `response_format.type = json_schema`
    /// get a 400.
    pub fn reject_json_schema_as(&self, envelope: Option<Envelope>) {
        if let Ok(mut e) = self.state.reject_json_schema.lock() {
            *e = envelope;
        }
    }

    /// Whether requests with a `temperature` other than 1 get OpenAI's 400 `unsupported_value`
    /// (as the o-series and gpt-5 models answer).
    pub fn refuse_temperature(&self, on: bool) {
        self.state.refuse_temperature.store(on, Ordering::Relaxed);
    }

    /// The HTTP requests received (method, path, query, headers), in order.
    pub async fn raw_requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// The JSON bodies of every chat-completions request received, in order.
    pub async fn requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with("/chat/completions"))
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// How many chat-completions requests were received.
    pub async fn request_count(&self) -> usize {
        self.requests().await.len()
    }

    /// The underlying wiremock server (to mount extra mocks).
    pub fn server(&self) -> &MockServer {
        &self.server
    }
}

fn error_body(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"message": message, "type": code, "param": null, "code": code}
    }))
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.state.served.fetch_add(1, Ordering::Relaxed) + 1;
        let rid = format!("req_fake_{n}");
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let wants_schema = body
            .pointer("/response_format/type")
            .and_then(Value::as_str)
            == Some("json_schema");
        let reject = self.state.reject_json_schema.lock().ok().and_then(|e| *e);
        if wants_schema && let Some(envelope) = reject {
            return reject_schema(envelope).insert_header("x-request-id", rid.as_str());
        }
        let temperature = body.get("temperature").and_then(Value::as_f64);
        if self.state.refuse_temperature.load(Ordering::Relaxed)
            && let Some(t) = temperature.filter(|t| *t != 1.0)
        {
            return ResponseTemplate::new(400)
                .insert_header("x-request-id", rid.as_str())
                .set_body_json(json!({"error": {
                    "message": format!("Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."),
                    "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}));
        }
        let scripted = self
            .state
            .script
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front());
        let with_id = |t: ResponseTemplate| t.insert_header("x-request-id", rid.as_str());
        let mut answer = grounded_answer(&body);
        let mut finish = "stop";
        let mut refusal = Value::Null;
        let mut delay = None;
        let mut shape = Shape::Plain;
        match scripted {
            Some(Scripted::RateLimited { retry_after_ms }) => {
                return with_id(error_body(
                    429,
                    "rate_limit_exceeded",
                    "Rate limit reached for requests",
                ))
                .insert_header("retry-after-ms", retry_after_ms.to_string().as_str());
            }
            Some(Scripted::RateLimitedSeconds { retry_after_secs }) => {
                return with_id(error_body(
                    429,
                    "rate_limit_exceeded",
                    "Rate limit reached for requests",
                ))
                .insert_header("retry-after", retry_after_secs.to_string().as_str());
            }
            Some(Scripted::Unavailable) => {
                return with_id(error_body(
                    503,
                    "server_error",
                    "The engine is currently overloaded",
                ));
            }
            Some(Scripted::InsufficientQuota) => {
                return with_id(error_body(
                    429,
                    "insufficient_quota",
                    "You exceeded your current quota",
                ));
            }
            Some(Scripted::Status(s)) => return with_id(error_body(s, "error", "scripted error")),
            Some(Scripted::InventedQuote) => {
                if let Some(q) = answer.pointer_mut("/patterns/0/evidence/0/quote") {
                    *q = json!(INVENTED_QUOTE);
                }
            }
            Some(Scripted::UnknownSpan) => {
                if let Some(q) = answer.pointer_mut("/patterns/0/evidence/0/span_id") {
                    *q = json!("S999999");
                }
            }
            Some(Scripted::Truncated) => finish = "length",
            Some(Scripted::Refusal) => refusal = json!("I can't help with that."),
            Some(Scripted::Delay(d)) => delay = Some(d),
            Some(Scripted::ErrorInOk { code }) => {
                return with_id(ResponseTemplate::new(200).set_body_json(json!({
                    "error": {"message": "Provider returned error", "code": code,
                              "metadata": {"provider_name": "Upstream"}}
                })));
            }
            Some(Scripted::FinishReasonError) => {
                finish = "error";
                answer = json!("");
            }
            Some(Scripted::JsonValidateFailed) => {
                if let Some(q) = answer.pointer_mut("/patterns/0/evidence/0/quote") {
                    *q = json!(INVENTED_QUOTE);
                }
                return with_id(ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "message": "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more details.",
                    "type": "invalid_request_error",
                    "code": "json_validate_failed",
                    "failed_generation": answer.to_string(),
                }})));
            }
            Some(Scripted::ThinkBlock) => shape = Shape::Think,
            Some(Scripted::ContentParts) => shape = Shape::Parts,
            Some(Scripted::Unreadable) => {
                return with_id(ResponseTemplate::new(200).set_body_raw(
                    "<html><body>Welcome to the gateway</body></html>",
                    "text/html",
                ));
            }
            Some(Scripted::RateLimitWindow {
                reset_requests,
                reset_tokens,
            }) => {
                return with_id(error_body(
                    429,
                    "rate_limit_exceeded",
                    "Rate limit reached for requests per day (RPD)",
                ))
                .insert_header("x-ratelimit-limit-requests", "200")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", reset_requests.as_str())
                .insert_header("x-ratelimit-remaining-tokens", "1500")
                .insert_header("x-ratelimit-reset-tokens", reset_tokens.as_str());
            }
            None => {}
        }
        let mut content = match &answer {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if finish == "length" {
            let mut cut = content.len() / 2;
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            content.truncate(cut);
        }
        let prompt_chars: usize = body
            .get("messages")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|x| x.get("content").and_then(Value::as_str))
                    .map(str::len)
                    .sum()
            })
            .unwrap_or(0);
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("gpt-4o-mini");
        let (content_json, content_len) = if !refusal.is_null() {
            (Value::Null, 8)
        } else {
            let len = content.len();
            match shape {
                Shape::Plain => (json!(content), len),
                Shape::Think => (
                    json!(format!(
                        "<think>\nThe coachee asks few questions; quote them exactly. {{\"draft\": true}}\n</think>\n\n{content}"
                    )),
                    len + 80,
                ),
                Shape::Parts => {
                    let (head, tail) = content.split_at(content.len() / 2);
                    let head = head.to_string();
                    (
                        json!([
                            {"type": "thinking", "thinking": [{"type": "text", "text": "Looking at the talk balance first."}]},
                            {"type": "text", "text": head},
                            {"type": "text", "text": tail},
                        ]),
                        len + 40,
                    )
                }
            }
        };
        let resp = json!({
            "id": format!("chatcmpl-fake-{n}"),
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content_json, "refusal": refusal},
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": (prompt_chars / 4).max(1),
                "completion_tokens": (content_len / 4).max(1),
                "total_tokens": (prompt_chars / 4).max(1) + (content_len / 4).max(1),
            }
        });
        let mut resp = resp;
        if shape == Shape::Parts {
            resp["choices"][0]["message"]["reasoning_content"] =
                json!("The coachee spoke most; I will cite the segments exactly.");
        }
        if finish == "error" {
            resp["choices"][0]["error"] =
                json!({"message": "Upstream provider timed out", "code": 504});
        }
        let t = with_id(ResponseTemplate::new(200).set_body_json(resp));
        match delay {
            Some(d) => t.set_delay(d),
            None => t,
        }
    }
}

/// How a grounded answer's text is laid out in `message.content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Think,
    Parts,
}

fn reject_schema(envelope: Envelope) -> ResponseTemplate {
    let message =
        "response_format of type 'json_schema' is not supported by this server; use 'json_object'";
    match envelope {
        Envelope::OpenAi => ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
            "type": "invalid_request_error", "param": "response_format", "code": null}})),
        Envelope::Vllm => ResponseTemplate::new(400).set_body_json(json!({
            "object": "error", "message": message, "type": "BadRequestError", "param": null, "code": 400})),
        Envelope::FastApi => ResponseTemplate::new(400).set_body_json(json!({"detail": message})),
        Envelope::PlainText => ResponseTemplate::new(400).set_body_raw(message, "text/plain"),
    }
}

/// Rebuilds the analysis input from the first user message and answers like the rules analyzer.
fn grounded_answer(body: &Value) -> Value {
    let prompt = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .filter(|x| x.get("role").and_then(Value::as_str) == Some("user"))
                .filter_map(|x| x.get("content").and_then(Value::as_str))
                .find(|c| c.contains(TRANSCRIPT_BEGIN))
        })
        .unwrap_or("");
    let input = input_from_prompt(prompt);
    let metrics = input.metrics();
    rules::build_output(&input, &metrics)
}

/// Parses a prompt written by [`crate::prompt::user_message`] back into an input.
pub fn input_from_prompt(prompt: &str) -> AnalysisInput {
    let mut run_type = RunType::SingleMeeting;
    let mut coachee = String::new();
    let mut experiment = None;
    let mut meetings: Vec<Vec<Segment>> = Vec::new();
    let mut in_data = false;
    for line in prompt.lines() {
        if line == TRANSCRIPT_BEGIN {
            in_data = true;
            continue;
        }
        if line == TRANSCRIPT_END {
            in_data = false;
            continue;
        }
        if !in_data {
            if let Some(v) = line.strip_prefix(RUN_TYPE_LINE) {
                if v.trim() == "baseline_pack" {
                    run_type = RunType::BaselinePack;
                }
            } else if let Some(v) = line.strip_prefix(COACHEE_LINE) {
                coachee = v.to_string();
            } else if let Some(v) = line.strip_prefix(EXPERIMENT_LINE)
                && let Ok(e) = serde_json::from_str::<Value>(v)
            {
                let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                experiment = Some(ActiveExperiment {
                    title: s("title"),
                    behavior: s("behavior"),
                    success_signal: s("success_signal"),
                });
            }
            continue;
        }
        let Some((id, rest)) = line.split_once(" [") else {
            continue;
        };
        let Some((speaker, text)) = rest.split_once("]: ") else {
            continue;
        };
        let (k, local) = match id.split_once('.') {
            Some((t, s)) => (
                t.trim_start_matches('T')
                    .parse::<usize>()
                    .unwrap_or(1)
                    .max(1)
                    - 1,
                s,
            ),
            None => (0, id),
        };
        while meetings.len() <= k {
            meetings.push(Vec::new());
        }
        // Built through serde so that fields the transcript crate adds later (all defaulted)
        // do not break the fake.
        let seg: Result<Segment, _> = serde_json::from_value(json!({
            "id": local, "speaker": speaker, "start": null, "end": null, "text": text,
        }));
        if let Ok(seg) = seg {
            meetings[k].push(seg);
        }
    }
    let meetings = meetings
        .into_iter()
        .map(|segments| {
            let mut participants: Vec<String> = Vec::new();
            for s in &segments {
                if !participants.contains(&s.speaker) {
                    participants.push(s.speaker.clone());
                }
            }
            Transcript {
                format: Format::Text,
                participants,
                segments,
                warnings: Vec::new(),
            }
        })
        .collect();
    AnalysisInput {
        run_type,
        coachee,
        meetings,
        active_experiment: experiment,
    }
}
