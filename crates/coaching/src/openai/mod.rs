//! A thin client for OpenAI-compatible chat completions, and the `openai` provider built on it.
//!
//! Design:
//! - **One request shape.** `POST …/chat/completions` ([`OpenAiConfig::chat_url`]: an
//!   OpenAI-style base URL with a bearer key, or an Azure OpenAI deployment with an `api-key`
//!   header) with the Gate-1 schema as `response_format: {type: "json_schema", json_schema:
//!   {name, strict: true, schema}}`. Servers that answer 400/422 about
//!   `response_format`/`json_schema` (older models, older vLLM, some compatible servers), in any
//!   error envelope ([`wire`]), get `{type: "json_object"}` instead, with the schema written into
//!   the system prompt; the switch is remembered for the client's lifetime so later runs do not
//!   pay the failed call again. Gate-1 validates locally in both modes, so JSON mode loses no
//!   safety.
//! - **Refused sampling parameters are adapted once.** OpenAI's reasoning models (o-series,
//!   gpt-5 family) refuse a non-default `temperature` with 400 `unsupported_value` (or
//!   `unsupported_parameter`) naming it in `param` (OpenAI's error-codes guide; the message reads
//!   "Unsupported value: 'temperature' does not support 0.2 with this model"). The client drops
//!   the named parameter (`max_completion_tokens` is renamed to the older `max_tokens` for
//!   servers that only know that one), retries, logs it, and remembers it for the model for the
//!   client's lifetime — the worker builds one client per process. A second refusal of the same
//!   parameter is permanent.
//! - **Retries here, not in the job layer, for short blips.** Connection errors, timeouts, 408,
//!   409, 429 and 5xx — and an error object inside a 2xx (OpenRouter, when the upstream fails
//!   after the answer started) classified by its own `code`, and `finish_reason: "error"` — are
//!   retried up to `max_retries` times with exponential backoff (base 0.5 s, doubling, capped at
//!   8 s) and "equal jitter" (a random 50–100 % of the step). A server hint wins:
//!   `retry-after-ms`, then `retry-after` in seconds or as an HTTP date, then, on a 429, the reset
//!   of the exhausted rate-limit window (`x-ratelimit-reset-requests` / `-tokens`). A wait above
//!   `max_retry_after` (120 s) is not slept on: the call fails as transient with the wait, and the
//!   worker's job scheduler, which persists across restarts, schedules the job's next attempt
//!   then. 429 with `insufficient_quota` or a billing code, 402, and every other 4xx are
//!   permanent: retrying cannot help until someone fixes the account, key or request.
//! - **A 2xx body the client cannot read** is tried once more (a proxy hiccup), then permanent
//!   (`OPENAI_BAD_RESPONSE`): the same server will keep answering in the same shape.
//! - **Model-level failures are Gate-1 failures**, not transport errors: `finish_reason` `length`
//!   (`TRUNCATED`) or `content_filter` (`CONTENT_FILTER`), a non-null `message.refusal`
//!   (`REFUSAL`), an empty or non-JSON answer, and Groq's `400 json_validate_failed` (the model's
//!   structured output did not validate server-side; `OUTPUT_REJECTED_BY_SERVER`, with the
//!   `failed_generation` fed back). They go through the repair loop like any other Gate-1
//!   failure.
//! - **Repair loop.** After a failing answer the conversation continues with that answer and a
//!   user message listing the failures (code, pointer, message); at most `max_repairs` (2) more
//!   answers, then the run fails with the last report. So a deterministic failure costs at most
//!   `1 + max_repairs` calls; an unreadable body 2; a quota error or a refused request 1 (2 when a
//!   parameter was adapted first).
//! - **Accounting.** Every HTTP answer's `x-request-id` is logged and returned; usage tokens are
//!   summed over attempts and priced from `prices` (USD per million tokens, per model, matched
//!   exactly or by the longest prefix so dated snapshots such as `gpt-4o-mini-2024-07-18` find
//!   their family).
//!
//! Metrics (the `metrics` facade; the worker installs the Prometheus exporter):
//! `openai_calls_total{outcome, host}` — every HTTP call by what it ended as: `ok` (an answer
//! that passed Gate-1), `repair` (an answer that failed Gate-1, including a server-rejected
//! generation), `transient` (a failure worth retrying), `permanent` (a failure retrying the same
//! request cannot fix, including the ones the client then adapts around);
//! `openai_requests_total{status}` (HTTP status code, or `timeout` / `connect_error` / `error`),
//! `openai_request_duration_seconds` (histogram), `openai_tokens_total{kind=input|output}`
//! (counter) and `openai_cost_usd_total` — a **gauge** that is only ever incremented by each
//! call's cost in USD (a gauge because the facade's counters are integers; it is monotonic and can
//! be graphed with `rate()` like a counter).
//!
//! Never logged: the API key (also redacted from `Debug`), prompts, transcript text and answers.

mod config;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub use config::{
    AzureDeployment, DEFAULT_BASE_URL, DEFAULT_MODEL, ModelPrice, OpenAiConfig, default_prices,
};
pub use wire::{answer_text, go_duration, human_wait, rate_limit_window, retry_hint};

use crate::gate1::{self, Gate1Context, Gate1Failure, Gate1Report};
use crate::model::{AnalysisInput, Usage};
use crate::outcome::{Analysis, AnalysisError, finish};
use crate::prompt::{self, PROMPT_VERSION, SYSTEM_PROMPT};
use wire::{ChatResponse, ProviderError, content_text};

/// The `json_schema.name` sent with structured outputs.
pub const SCHEMA_NAME: &str = "gate1_v1";

/// One chat-completions answer, after retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer text (`message.content`, or its text parts joined).
    pub content: Option<String>,
    /// `finish_reason`.
    pub finish_reason: Option<String>,
    /// `message.refusal`.
    pub refusal: Option<String>,
    /// The model that answered (from the body).
    pub model: Option<String>,
    /// Tokens, cost and request ids of this call (every HTTP try's request id included).
    pub usage: Usage,
    /// Whether this answer was asked for in JSON mode.
    pub json_mode: bool,
    /// The server's message when it rejected the model's output as not matching the schema
    /// (Groq's `json_validate_failed`); `content` is then the rejected generation, if sent.
    pub rejected: Option<String>,
}

/// What one HTTP try ended with, for the retry decision.
enum TryOutcome {
    Done(Completion),
    Retry {
        code: &'static str,
        message: String,
        hint: Option<Duration>,
        /// A 2xx body the client could not read (tried once more only).
        unreadable: bool,
    },
    Fail(AnalysisError),
    FallBackToJsonMode,
    /// The server refused a sampling parameter of the request.
    Adapt {
        param: String,
        message: String,
    },
}

/// How requests to one model are adapted after the server refused a parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Adaptations {
    drop_temperature: bool,
    legacy_max_tokens: bool,
    drop_max_tokens: bool,
}

impl Adaptations {
    /// Applies the adaptation for `param`; false when there is none (left or already applied).
    fn adapt(&mut self, param: &str) -> bool {
        let flag = match param {
            "temperature" => &mut self.drop_temperature,
            "max_completion_tokens" => &mut self.legacy_max_tokens,
            "max_tokens" => &mut self.drop_max_tokens,
            _ => return false,
        };
        !std::mem::replace(flag, true)
    }
}

struct Inner {
    http: reqwest::Client,
    config: OpenAiConfig,
    url: String,
    /// The `host` label of the call metrics.
    host: String,
    /// The schema as sent to the server (without `$schema`/`$id`, which strict mode does not need).
    response_schema: Value,
    json_mode: AtomicBool,
    /// Per model: parameters the server refused and how requests now avoid them.
    adaptations: Mutex<HashMap<String, Adaptations>>,
}

/// The OpenAI-compatible client. Cheap to clone; clones share the connection pool, the
/// JSON-mode fallback flag and the parameter adaptations.
#[derive(Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("config", &self.inner.config)
            .field("json_mode", &self.uses_json_mode())
            .finish()
    }
}

impl OpenAiClient {
    /// Builds the client.
    ///
    /// The process must have installed a rustls crypto provider first (the worker's `main` does,
    /// once): reqwest is built without one, and this crate does not pick one for its users.
    /// Without it the call fails with `TLS_PROVIDER_MISSING` instead of panicking inside reqwest.
    pub fn new(config: OpenAiConfig) -> Result<Self, AnalysisError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(AnalysisError::Permanent {
                code: "TLS_PROVIDER_MISSING",
                message: "no TLS crypto provider is installed; call rustls::crypto::ring::default_provider().install_default() once at start-up, before building the OpenAI client".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| AnalysisError::Permanent {
                code: "OPENAI_CLIENT_BUILD",
                message: format!("could not build the HTTP client: {e}"),
            })?;
        let schema = gate1::schema().map_err(|m| AnalysisError::Permanent {
            code: "GATE1_SCHEMA_BROKEN",
            message: m.to_string(),
        })?;
        let mut response_schema = schema.clone();
        if let Some(obj) = response_schema.as_object_mut() {
            obj.remove("$schema");
            obj.remove("$id");
        }
        let url = config.chat_url();
        let host = config.provider_host();
        Ok(OpenAiClient {
            inner: Arc::new(Inner {
                http,
                config,
                url,
                host,
                response_schema,
                json_mode: AtomicBool::new(false),
                adaptations: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configured model.
    pub fn model(&self) -> &str {
        &self.inner.config.model
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.inner.config
    }

    /// Whether the server rejected structured outputs and the client now uses JSON mode.
    pub fn uses_json_mode(&self) -> bool {
        self.inner.json_mode.load(Ordering::Relaxed)
    }

    /// Whether requests to the configured model now leave `temperature` out (the server refused it).
    pub fn drops_temperature(&self) -> bool {
        self.adaptations().drop_temperature
    }

    fn adaptations(&self) -> Adaptations {
        self.inner
            .adaptations
            .lock()
            .map(|m| m.get(&self.inner.config.model).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Records the adaptation for `param`; false when there is none left to make.
    fn adapt(&self, param: &str) -> bool {
        let Ok(mut map) = self.inner.adaptations.lock() else {
            return false;
        };
        map.entry(self.inner.config.model.clone())
            .or_default()
            .adapt(param)
    }

    fn count_call(&self, outcome: &'static str) {
        metrics::counter!("openai_calls_total", "outcome" => outcome, "host" => self.inner.host.clone())
            .increment(1);
    }

    fn system_message(&self, json_mode: bool) -> Value {
        let mut text = SYSTEM_PROMPT.to_string();
        if json_mode {
            text.push_str("\n\n");
            text.push_str(&prompt::json_mode_instructions(&self.inner.response_schema));
        }
        json!({"role": "system", "content": text})
    }

    fn body(&self, conversation: &[Value], json_mode: bool) -> Value {
        let c = &self.inner.config;
        let adapted = self.adaptations();
        let mut messages = Vec::with_capacity(conversation.len() + 1);
        messages.push(self.system_message(json_mode));
        messages.extend(conversation.iter().cloned());
        let response_format = if json_mode {
            json!({"type": "json_object"})
        } else {
            json!({"type": "json_schema", "json_schema": {
                "name": SCHEMA_NAME, "strict": true, "schema": self.inner.response_schema}})
        };
        let mut body = json!({
            "model": c.model,
            "messages": messages,
            "response_format": response_format,
        });
        if let Some(t) = c.temperature
            && !adapted.drop_temperature
        {
            body["temperature"] = json!(t);
        }
        if let Some(m) = c.max_output_tokens {
            if !adapted.legacy_max_tokens {
                body["max_completion_tokens"] = json!(m);
            } else if !adapted.drop_max_tokens {
                body["max_tokens"] = json!(m);
            }
        }
        body
    }

    /// One logical chat completion over `conversation` (user/assistant messages; the system
    /// prompt is added here), with retries, the JSON-mode fallback and parameter adaptations.
    pub async fn complete(&self, conversation: &[Value]) -> Result<Completion, AnalysisError> {
        let c = &self.inner.config;
        let mut retry = 0u32;
        let mut unreadable = 0u32;
        let mut request_ids = Vec::new();
        loop {
            let json_mode = self.uses_json_mode();
            let body = self.body(conversation, json_mode);
            let outcome = self.try_once(&body, json_mode, &mut request_ids).await;
            match &outcome {
                TryOutcome::Done(_) => {}
                TryOutcome::Retry { .. } => self.count_call("transient"),
                _ => self.count_call("permanent"),
            }
            let (code, message, hint) = match outcome {
                TryOutcome::Done(mut completion) => {
                    completion.usage.request_ids = request_ids;
                    return Ok(completion);
                }
                TryOutcome::Fail(e) => return Err(e),
                TryOutcome::FallBackToJsonMode => {
                    tracing::warn!(
                        model = %c.model,
                        "server rejected structured outputs (json_schema); using JSON mode with local validation from now on"
                    );
                    self.inner.json_mode.store(true, Ordering::Relaxed);
                    continue;
                }
                TryOutcome::Adapt { param, message } => {
                    if !self.adapt(&param) {
                        return Err(AnalysisError::Permanent {
                            code: "OPENAI_UNSUPPORTED_PARAMETER",
                            message: format!(
                                "the server refused `{param}` again after it was adapted ({message}); check OPENAI_MODEL"
                            ),
                        });
                    }
                    tracing::warn!(
                        model = %c.model,
                        param = %param,
                        "server refused a request parameter for this model; sending requests without it from now on"
                    );
                    continue;
                }
                TryOutcome::Retry {
                    code,
                    message,
                    hint,
                    unreadable: bad_body,
                } => {
                    if bad_body {
                        unreadable += 1;
                        // Permanent at the second such body, or at the first when no retry is
                        // left: the job layer must not try again either.
                        if unreadable >= 2 || retry >= c.max_retries {
                            return Err(AnalysisError::Permanent {
                                code,
                                message: format!(
                                    "{message}; not retried: check OPENAI_BASE_URL points at a chat-completions API"
                                ),
                            });
                        }
                    }
                    (code, message, hint)
                }
            };
            if let Some(h) = hint
                && h > c.max_retry_after
            {
                return Err(AnalysisError::Transient {
                    code: "OPENAI_RETRY_AFTER_TOO_LONG",
                    message: format!(
                        "{message}; the server asks to wait {}, longer than the {} this client waits in place: retry after that",
                        human_wait(h),
                        human_wait(c.max_retry_after)
                    ),
                    retry_after: Some(h),
                });
            }
            if retry >= c.max_retries {
                return Err(AnalysisError::Transient {
                    code,
                    message: format!("{message} (gave up after {} tries)", retry + 1),
                    retry_after: hint,
                });
            }
            let delay = hint.unwrap_or_else(|| {
                let step = c.backoff_step(retry);
                step.mul_f64(rand::rng().random_range(0.5..=1.0))
            });
            tracing::warn!(
                code,
                retry = retry + 1,
                delay_ms = delay.as_millis() as u64,
                "openai call failed; retrying"
            );
            metrics::counter!("openai_retries_total", "code" => code).increment(1);
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn try_once(
        &self,
        body: &Value,
        json_mode: bool,
        request_ids: &mut Vec<String>,
    ) -> TryOutcome {
        let c = &self.inner.config;
        let mut req = self.inner.http.post(&self.inner.url).json(body);
        req = match &c.azure {
            Some(_) => req.header("api-key", &c.api_key),
            None => req.bearer_auth(&c.api_key),
        };
        if let Some(o) = &c.organization {
            req = req.header("OpenAI-Organization", o);
        }
        if let Some(p) = &c.project {
            req = req.header("OpenAI-Project", p);
        }
        let started = Instant::now();
        let sent = req.send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                metrics::histogram!("openai_request_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                return transport_failure(&e);
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(id) = &request_id {
            request_ids.push(id.clone());
        }
        let text = resp.text().await;
        let elapsed = started.elapsed();
        metrics::histogram!("openai_request_duration_seconds").record(elapsed.as_secs_f64());
        let text = match text {
            Ok(t) => t,
            Err(e) => return transport_failure(&e),
        };
        metrics::counter!("openai_requests_total", "status" => status.as_u16().to_string())
            .increment(1);
        tracing::info!(
            request_id = request_id.as_deref().unwrap_or(""),
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            json_mode,
            "openai chat completion"
        );
        if status.is_success() {
            return self.parse_success(&headers, &text, json_mode);
        }
        classify_error(status, &headers, &ProviderError::parse(&text), json_mode)
    }

    fn parse_success(&self, headers: &HeaderMap, text: &str, json_mode: bool) -> TryOutcome {
        let c = &self.inner.config;
        let unreadable = |why: String| TryOutcome::Retry {
            code: "OPENAI_BAD_RESPONSE",
            message: format!(
                "the server answered 2xx with a body that is not a chat completion ({why})"
            ),
            hint: None,
            unreadable: true,
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return unreadable(e.to_string()),
        };
        // OpenRouter answers 200 with an error object when the upstream failed after the response
        // started; classified by the status in its `code`.
        if value.get("choices").is_none()
            && let Some(err) = ProviderError::from_value(&value)
        {
            let status = err
                .status_code()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            tracing::warn!(code = %err.code, "the server reported an error inside a 2xx answer");
            return classify_error(status, headers, &err, json_mode);
        }
        let parsed: ChatResponse = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => return unreadable(e.to_string()),
        };
        let (input_tokens, output_tokens) = parsed
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens))
            .unwrap_or((0, 0));
        let cost = c.cost(&c.model, input_tokens, output_tokens);
        metrics::counter!("openai_tokens_total", "kind" => "input").increment(input_tokens);
        metrics::counter!("openai_tokens_total", "kind" => "output").increment(output_tokens);
        metrics::gauge!("openai_cost_usd_total").increment(cost);
        let Some(choice) = parsed.choices.into_iter().next() else {
            return unreadable("no choices".into());
        };
        if choice.finish_reason.as_deref() == Some("error") {
            let err = choice
                .error
                .as_ref()
                .map(|e| ProviderError::from_value(&json!({ "error": e })).unwrap_or_default())
                .unwrap_or_default();
            return TryOutcome::Retry {
                code: "OPENAI_PROVIDER_ERROR",
                message: format!(
                    "the model's provider failed while answering (finish_reason error): {}",
                    if err.message.is_empty() {
                        "no message"
                    } else {
                        &err.message
                    }
                ),
                hint: None,
                unreadable: false,
            };
        }
        let (content, refusal) = match choice.message {
            Some(m) => {
                let content = match &m.content {
                    Value::Null => None,
                    v @ (Value::String(_) | Value::Array(_)) => {
                        Some(content_text(v).unwrap_or_default())
                    }
                    _ => return unreadable("message.content is neither text nor parts".into()),
                };
                (content, m.refusal)
            }
            None => (None, None),
        };
        TryOutcome::Done(Completion {
            content,
            finish_reason: choice.finish_reason,
            refusal,
            model: parsed.model,
            usage: Usage {
                input_tokens,
                output_tokens,
                cost_usd: cost,
                request_ids: Vec::new(),
            },
            json_mode,
            rejected: None,
        })
    }

    /// The `openai` provider: prompt, answer, Gate-1, repair rounds (see the module doc).
    pub async fn analyze(&self, input: &AnalysisInput) -> Result<Analysis, AnalysisError> {
        input.check()?;
        let metrics = input.metrics();
        let ctx = Gate1Context::new(
            input.run_type,
            input.coachee.clone(),
            input.active_experiment.is_some(),
            &input.meetings,
        );
        let mut conversation =
            vec![json!({"role": "user", "content": prompt::user_message(input, &metrics)})];
        let mut usage = Usage::default();
        let attempts_max = 1 + self.inner.config.max_repairs;
        let mut last: Option<(Option<Value>, Gate1Report)> = None;
        for attempt in 1..=attempts_max {
            let completion = self.complete(&conversation).await?;
            usage.add(&completion.usage);
            let (output, report) = judge(&completion, &ctx);
            if report.passed
                && let Some(output) = output
            {
                self.count_call("ok");
                metrics::counter!("gate1_results_total", "provider" => "openai", "result" => "pass").increment(1);
                return Ok(finish(
                    output,
                    report,
                    ("openai", self.inner.config.model.clone(), PROMPT_VERSION),
                    usage,
                    attempt,
                    &metrics,
                ));
            }
            self.count_call("repair");
            metrics::counter!("gate1_results_total", "provider" => "openai", "result" => "fail")
                .increment(1);
            tracing::warn!(
                attempt,
                failures = report.failures.len(),
                first = report
                    .failures
                    .first()
                    .map(|f| f.code.as_str())
                    .unwrap_or(""),
                "openai answer failed Gate-1"
            );
            // The model sees its answer without reasoning blocks or fences: that is what is judged.
            let previous = completion
                .content
                .as_deref()
                .map(answer_text)
                .unwrap_or_default()
                .to_string();
            conversation.push(json!({"role": "assistant", "content": previous}));
            conversation.push(json!({"role": "user", "content": prompt::repair_message(&report)}));
            last = Some((output, report));
        }
        let (last_output, report) = last.unwrap_or_else(|| {
            (
                None,
                Gate1Report::single(
                    "",
                    "EMPTY_ANSWER",
                    "no answer was asked for (max attempts 0)",
                ),
            )
        });
        Err(AnalysisError::Gate1Failed {
            report,
            last_output,
            attempts: attempts_max,
            usage,
        })
    }
}

/// Turns a completion into (parsed output, Gate-1 report).
pub fn judge(completion: &Completion, ctx: &Gate1Context<'_>) -> (Option<Value>, Gate1Report) {
    if let Some(r) = completion
        .refusal
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        let _ = r; // the refusal text may echo transcript content: not copied into the report
        return (
            None,
            Gate1Report::single(
                "",
                "REFUSAL",
                "the model refused to answer; the transcript may contain content the model will not process",
            ),
        );
    }
    if let Some(server_says) = &completion.rejected {
        let rejected = Gate1Failure::new(
            "",
            "OUTPUT_REJECTED_BY_SERVER",
            format!(
                "the server rejected the answer as not matching the JSON schema ({server_says}); answer with one JSON object that validates"
            ),
        );
        let generation = completion.content.as_deref().map(answer_text).unwrap_or("");
        let parsed = serde_json::from_str::<Value>(generation).ok();
        let mut failures = vec![rejected];
        if let Some(v) = &parsed {
            failures.extend(gate1::validate(v, ctx).failures);
        }
        return (parsed, Gate1Report::from_failures(failures));
    }
    match completion.finish_reason.as_deref() {
        Some("length") => {
            return (
                None,
                Gate1Report::single(
                    "",
                    "TRUNCATED",
                    "the answer was cut off at the token limit (finish_reason length); answer more briefly: shorter observations and quotes, fewer patterns",
                ),
            );
        }
        Some("content_filter") => {
            return (
                None,
                Gate1Report::single(
                    "",
                    "CONTENT_FILTER",
                    "the answer was stopped by the content filter (finish_reason content_filter)",
                ),
            );
        }
        _ => {}
    }
    let content = completion.content.as_deref().map(answer_text).unwrap_or("");
    if content.trim().is_empty() {
        return (
            None,
            Gate1Report::single(
                "",
                "EMPTY_ANSWER",
                "the answer was empty; answer with the Gate-1 JSON object",
            ),
        );
    }
    match serde_json::from_str::<Value>(content) {
        Ok(v) => {
            let report = gate1::validate(&v, ctx);
            (Some(v), report)
        }
        Err(e) => (
            None,
            Gate1Report::single(
                "",
                "INVALID_JSON",
                format!("the answer is not valid JSON ({e}); answer with one JSON object only"),
            ),
        ),
    }
}

fn transport_failure(e: &reqwest::Error) -> TryOutcome {
    if e.is_timeout() {
        metrics::counter!("openai_requests_total", "status" => "timeout").increment(1);
        TryOutcome::Retry {
            code: "OPENAI_TIMEOUT",
            message: "the OpenAI-compatible server did not answer in time".into(),
            hint: None,
            unreadable: false,
        }
    } else if e.is_connect() || e.is_request() || e.is_body() {
        metrics::counter!("openai_requests_total", "status" => "connect_error").increment(1);
        TryOutcome::Retry {
            code: "OPENAI_CONNECTION",
            message: format!(
                "could not reach the OpenAI-compatible server ({e}); check OPENAI_BASE_URL and the network"
            ),
            hint: None,
            unreadable: false,
        }
    } else {
        metrics::counter!("openai_requests_total", "status" => "error").increment(1);
        TryOutcome::Fail(AnalysisError::Permanent {
            code: "OPENAI_REQUEST",
            message: format!("the request to the OpenAI-compatible server could not be made: {e}"),
        })
    }
}

const BILLING_CODES: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "access_terminated",
];

/// OpenAI's codes for a request parameter the model does not take (error-codes guide).
const UNSUPPORTED_PARAM_CODES: &[&str] = &["unsupported_value", "unsupported_parameter"];

/// Parameters the client sends beyond the messages and can do without.
const ADAPTABLE_PARAMS: &[&str] = &["temperature", "max_completion_tokens", "max_tokens"];

/// The adaptable parameter a 400 refuses: `param` when the server names it, else the one its
/// message quotes (`Unsupported parameter: 'temperature' …`).
fn refused_param(err: &ProviderError) -> Option<&'static str> {
    let by_code = UNSUPPORTED_PARAM_CODES.contains(&err.code.as_str());
    let by_message = err.message.starts_with("Unsupported value")
        || err.message.starts_with("Unsupported parameter");
    if !(by_code || by_message) {
        return None;
    }
    ADAPTABLE_PARAMS.iter().copied().find(|p| {
        err.param == *p || (err.param.is_empty() && err.message.contains(&format!("'{p}'")))
    })
}

fn classify_error(
    status: StatusCode,
    headers: &HeaderMap,
    err: &ProviderError,
    json_mode: bool,
) -> TryOutcome {
    // The server's message is about the request, not the transcript, so it is safe to surface;
    // `ProviderError` clips it because some proxies return whole HTML pages.
    let server_says = if err.message.is_empty() {
        "no message".to_string()
    } else {
        err.message.clone()
    };
    let hint = retry_hint(headers);
    let s = status.as_u16();
    let billing =
        BILLING_CODES.contains(&err.code.as_str()) || BILLING_CODES.contains(&err.kind.as_str());
    if billing || s == 402 {
        return TryOutcome::Fail(AnalysisError::Permanent {
            code: "OPENAI_INSUFFICIENT_QUOTA",
            message: format!(
                "the provider account has no quota or credit left ({server_says}); add credit or raise the limit, then replay the run"
            ),
        });
    }
    if s == 429 {
        return TryOutcome::Retry {
            code: "OPENAI_RATE_LIMITED",
            message: format!("rate limited (429): {server_says}"),
            hint: hint.or_else(|| rate_limit_window(headers)),
            unreadable: false,
        };
    }
    if matches!(s, 408 | 409) || s >= 500 {
        return TryOutcome::Retry {
            code: if s >= 500 {
                "OPENAI_SERVER_ERROR"
            } else {
                "OPENAI_RETRYABLE"
            },
            message: format!("the server answered {s}: {server_says}"),
            hint,
            unreadable: false,
        };
    }
    if err.code == "json_validate_failed" {
        // Groq: the model's output failed the server's own schema check. A model failure, not a
        // configuration error: handed to the repair loop with the rejected generation.
        return TryOutcome::Done(Completion {
            content: err.failed_generation.clone(),
            finish_reason: None,
            refusal: None,
            model: None,
            usage: Usage::default(),
            json_mode,
            rejected: Some(server_says),
        });
    }
    if s == 400
        && let Some(param) = refused_param(err)
    {
        return TryOutcome::Adapt {
            param: param.to_string(),
            message: server_says,
        };
    }
    if matches!(s, 400 | 422) && !json_mode {
        let about_format = |x: &str| {
            let x = x.to_ascii_lowercase();
            x.contains("response_format")
                || x.contains("json_schema")
                || x.contains("structured output")
        };
        if about_format(&err.param) || about_format(&err.message) {
            return TryOutcome::FallBackToJsonMode;
        }
    }
    let (code, fix) = match s {
        401 => (
            "OPENAI_UNAUTHORIZED",
            "check OPENAI_API_KEY (AZURE_OPENAI_API_KEY for Azure)",
        ),
        403 => (
            "OPENAI_FORBIDDEN",
            "check the key's permissions, OPENAI_ORGANIZATION and OPENAI_PROJECT",
        ),
        404 => (
            "OPENAI_NOT_FOUND",
            "check OPENAI_BASE_URL and OPENAI_MODEL (AZURE_OPENAI_ENDPOINT and the deployment for Azure)",
        ),
        _ => ("OPENAI_BAD_REQUEST", "check the model and request settings"),
    };
    TryOutcome::Fail(AnalysisError::Permanent {
        code,
        message: format!("the OpenAI-compatible server answered {s} ({server_says}); {fix}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, param: &str, message: &str) -> ProviderError {
        ProviderError {
            code: code.into(),
            param: param.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn refused_parameters_are_recognised() {
        let e = err(
            "unsupported_value",
            "temperature",
            "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.",
        );
        assert_eq!(refused_param(&e), Some("temperature"));
        let e = err(
            "",
            "",
            "Unsupported parameter: 'temperature' is not supported with this model.",
        );
        assert_eq!(refused_param(&e), Some("temperature"));
        let e = err("unsupported_parameter", "max_completion_tokens", "");
        assert_eq!(refused_param(&e), Some("max_completion_tokens"));
        let e = err("unsupported_value", "messages", "");
        assert_eq!(
            refused_param(&e),
            None,
            "not a parameter the client can drop"
        );
        let e = err("invalid_value", "temperature", "");
        assert_eq!(refused_param(&e), None);
    }

    #[test]
    fn each_adaptation_happens_once() {
        let mut a = Adaptations::default();
        assert!(a.adapt("temperature"));
        assert!(!a.adapt("temperature"));
        assert!(a.adapt("max_completion_tokens"));
        assert!(a.adapt("max_tokens"));
        assert!(!a.adapt("seed"));
    }
}
