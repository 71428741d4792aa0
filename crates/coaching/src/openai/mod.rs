//! A thin client for OpenAI-compatible chat completions, and the `openai` provider built on it.
//!
//! Design:
//! - **One request shape.** `POST {base_url}/chat/completions` with the Gate-1 schema as
//!   `response_format: {type: "json_schema", json_schema: {name, strict: true, schema}}`. Servers
//!   that answer 400 about `response_format`/`json_schema` (older models, some compatible servers)
//!   get `{type: "json_object}` instead, with the schema written into the system prompt; the
//!   switch is remembered for the client's lifetime so later runs do not pay the failed call
//!   again. Gate-1 validates locally in both modes, so JSON mode loses no safety.
//! - **Retries here, not in the job layer, for short blips.** Connection errors, timeouts, 408,
//!   409, 429 and 5xx are retried up to `max_retries` times with exponential backoff (base 0.5 s,
//!   doubling, capped at 8 s) and "equal jitter" (a random 50–100 % of the step, so concurrent
//!   runs spread out but never retry instantly). A server hint wins: `retry-after-ms`, then
//!   `retry-after` in seconds or as an HTTP date. A hint above
//!   `max_retry_after` (120 s) is not slept on: the call fails as transient with the hint, and the
//!   worker's job scheduler, which persists across restarts, waits instead. 429 with
//!   `insufficient_quota` or a billing code, and every other 4xx, are permanent: retrying cannot
//!   help until someone fixes the account, key or request. Hand-written rather than `backon`
//!   because the delay depends on each response's headers and the fallback re-send is not a retry.
//! - **Model-level failures are Gate-1 failures**, not transport errors: `finish_reason` `length`
//!   (`TRUNCATED`) or `content_filter` (`CONTENT_FILTER`), a non-null `message.refusal`
//!   (`REFUSAL`), an empty or non-JSON answer. They go through the repair loop like any other
//!   Gate-1 failure.
//! - **Repair loop.** After a failing answer the conversation continues with that answer and a
//!   user message listing the failures (code, pointer, message); at most `max_repairs` (2) more
//!   answers, then the run fails with the last report.
//! - **Accounting.** Every HTTP answer's `x-request-id` is logged and returned; usage tokens are
//!   summed over attempts and priced from `prices` (USD per million tokens, per model, matched
//!   exactly or by the longest prefix so dated snapshots such as `gpt-4o-mini-2024-07-18` find
//!   their family).
//!
//! Metrics (the `metrics` facade; the worker installs the Prometheus exporter):
//! `openai_requests_total{status}` (HTTP status code, or `timeout` / `connect_error` /
//! `error`), `openai_request_duration_seconds` (histogram), `openai_tokens_total{kind=input|output}`
//! (counter) and `openai_cost_usd_total` — a **gauge** that is only ever incremented by each
//! call's cost in USD (a gauge because the facade's counters are integers; it is monotonic and can
//! be graphed with `rate()` like a counter).
//!
//! Never logged: the API key (also redacted from `Debug`), prompts, transcript text and answers.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analysis::{Analysis, AnalysisError, AnalysisInput, Usage, finish};
use crate::gate1::{self, Gate1Context, Gate1Report};
use crate::prompt::{self, PROMPT_VERSION, SYSTEM_PROMPT};

/// The default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The default model.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The `json_schema.name` sent with structured outputs.
pub const SCHEMA_NAME: &str = "gate1_v1";

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// USD per 1M prompt tokens.
    pub input_per_million: f64,
    /// USD per 1M completion tokens.
    pub output_per_million: f64,
}

/// Default prices (USD per 1M tokens, standard tier, from OpenAI's public pricing page); override
/// with [`OpenAiConfig::prices`] or `OPENAI_PRICE_INPUT_PER_1M` / `OPENAI_PRICE_OUTPUT_PER_1M`.
pub fn default_prices() -> HashMap<String, ModelPrice> {
    let p = |i, o| ModelPrice {
        input_per_million: i,
        output_per_million: o,
    };
    HashMap::from([
        ("gpt-4o-mini".to_string(), p(0.15, 0.60)),
        ("gpt-4o".to_string(), p(2.50, 10.00)),
        ("gpt-4.1".to_string(), p(2.00, 8.00)),
        ("gpt-4.1-mini".to_string(), p(0.40, 1.60)),
        ("gpt-4.1-nano".to_string(), p(0.10, 0.40)),
    ])
}

/// Client configuration. `Debug` redacts the key.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// API base, without the trailing `/chat/completions` (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// Bearer key.
    pub api_key: String,
    /// Model name (default [`DEFAULT_MODEL`]).
    pub model: String,
    /// Whole-request timeout (default 120 s).
    pub timeout: Duration,
    /// `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// `OpenAI-Project` header.
    pub project: Option<String>,
    /// Retries after the first try for retryable failures (default 4).
    pub max_retries: u32,
    /// First backoff step (default 0.5 s); doubles per retry.
    pub backoff_base: Duration,
    /// Backoff cap (default 8 s).
    pub backoff_max: Duration,
    /// Longest server retry hint the client sleeps on (default 120 s); longer fails as transient.
    pub max_retry_after: Duration,
    /// Extra answers asked for after a Gate-1 failure (default 2).
    pub max_repairs: u32,
    /// Sampling temperature (default 0.2: coaching should be stable across replays).
    pub temperature: Option<f64>,
    /// `max_completion_tokens` (default 4096).
    pub max_output_tokens: Option<u32>,
    /// Prices per model (default [`default_prices`]).
    pub prices: HashMap<String, ModelPrice>,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("max_retries", &self.max_retries)
            .field("max_repairs", &self.max_repairs)
            .finish_non_exhaustive()
    }
}

/// A configuration value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {variable} is invalid: {message}")]
pub struct OpenAiConfigError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

impl OpenAiConfigError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        "INVALID_OPENAI_CONFIG"
    }
}

impl OpenAiConfig {
    /// Defaults around `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: api_key.into(),
            model: DEFAULT_MODEL.to_string(),
            timeout: Duration::from_secs(120),
            organization: None,
            project: None,
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
            max_repairs: 2,
            temperature: Some(0.2),
            max_output_tokens: Some(4096),
            prices: default_prices(),
        }
    }

    /// From the environment: `None` when `OPENAI_API_KEY` is unset or empty (use `rules`).
    /// Reads `OPENAI_BASE_URL`, `OPENAI_MODEL`, `OPENAI_ORGANIZATION`, `OPENAI_PROJECT`,
    /// `OPENAI_TIMEOUT_SECS`, `OPENAI_MAX_RETRIES`, `OPENAI_MAX_REPAIRS`,
    /// `OPENAI_PRICE_INPUT_PER_1M` and `OPENAI_PRICE_OUTPUT_PER_1M` (price of the configured model).
    pub fn from_env() -> Result<Option<Self>, OpenAiConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env) over any lookup (tests pass a map).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, OpenAiConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(key) = get("OPENAI_API_KEY") else {
            return Ok(None);
        };
        let mut c = OpenAiConfig::new(key);
        if let Some(u) = get("OPENAI_BASE_URL") {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(OpenAiConfigError {
                    variable: "OPENAI_BASE_URL",
                    message: format!("`{u}` is not an http(s) URL; use e.g. {DEFAULT_BASE_URL}"),
                });
            }
            c.base_url = u;
        }
        if let Some(m) = get("OPENAI_MODEL") {
            c.model = m;
        }
        c.organization = get("OPENAI_ORGANIZATION");
        c.project = get("OPENAI_PROJECT");
        fn num<T: std::str::FromStr>(
            variable: &'static str,
            v: Option<String>,
        ) -> Result<Option<T>, OpenAiConfigError> {
            v.map(|v| {
                v.parse::<T>().map_err(|_| OpenAiConfigError {
                    variable,
                    message: format!("`{v}` is not a non-negative number"),
                })
            })
            .transpose()
        }
        if let Some(s) = num::<f64>("OPENAI_TIMEOUT_SECS", get("OPENAI_TIMEOUT_SECS"))? {
            if !(s.is_finite() && s > 0.0) {
                return Err(OpenAiConfigError {
                    variable: "OPENAI_TIMEOUT_SECS",
                    message: "must be a positive number of seconds".into(),
                });
            }
            c.timeout = Duration::from_secs_f64(s);
        }
        if let Some(n) = num::<u32>("OPENAI_MAX_RETRIES", get("OPENAI_MAX_RETRIES"))? {
            c.max_retries = n;
        }
        if let Some(n) = num::<u32>("OPENAI_MAX_REPAIRS", get("OPENAI_MAX_REPAIRS"))? {
            c.max_repairs = n;
        }
        let pin = num::<f64>(
            "OPENAI_PRICE_INPUT_PER_1M",
            get("OPENAI_PRICE_INPUT_PER_1M"),
        )?;
        let pout = num::<f64>(
            "OPENAI_PRICE_OUTPUT_PER_1M",
            get("OPENAI_PRICE_OUTPUT_PER_1M"),
        )?;
        if pin.is_some() || pout.is_some() {
            let old = c.price(&c.model).unwrap_or(ModelPrice {
                input_per_million: 0.0,
                output_per_million: 0.0,
            });
            c.prices.insert(
                c.model.clone(),
                ModelPrice {
                    input_per_million: pin.unwrap_or(old.input_per_million),
                    output_per_million: pout.unwrap_or(old.output_per_million),
                },
            );
        }
        Ok(Some(c))
    }

    /// The price of `model`: exact match, else the longest configured name it starts with.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        if let Some(p) = self.prices.get(model) {
            return Some(*p);
        }
        self.prices
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// Cost in USD of a call to `model`; 0 when the model has no price (logged once per call).
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> f64 {
        match self.price(model) {
            Some(p) => {
                input_tokens as f64 * p.input_per_million / 1e6
                    + output_tokens as f64 * p.output_per_million / 1e6
            }
            None => {
                tracing::warn!(
                    model,
                    "no price configured for this model; cost recorded as 0"
                );
                0.0
            }
        }
    }

    /// The backoff before retry number `retry` (0-based), before jitter.
    pub fn backoff_step(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(16));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// One chat-completions answer, after retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// `message.content`.
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
}

#[derive(Deserialize)]
struct ChatResponse {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ChoiceMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// What one HTTP try ended with, for the retry decision.
enum TryOutcome {
    Done(Completion),
    Retry {
        code: &'static str,
        message: String,
        hint: Option<Duration>,
    },
    Fail(AnalysisError),
    FallBackToJsonMode,
}

struct Inner {
    http: reqwest::Client,
    config: OpenAiConfig,
    url: String,
    /// The schema as sent to the server (without `$schema`/`$id`, which strict mode does not need).
    response_schema: Value,
    json_mode: AtomicBool,
}

/// The OpenAI-compatible client. Cheap to clone; clones share the connection pool and the
/// JSON-mode fallback flag.
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
    /// Builds the client (installs the ring rustls provider if none is installed yet).
    pub fn new(config: OpenAiConfig) -> Result<Self, AnalysisError> {
        // Installing fails only when a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
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
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(OpenAiClient {
            inner: Arc::new(Inner {
                http,
                config,
                url,
                response_schema,
                json_mode: AtomicBool::new(false),
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
        if let Some(t) = c.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = c.max_output_tokens {
            body["max_completion_tokens"] = json!(m);
        }
        body
    }

    /// One logical chat completion over `conversation` (user/assistant messages; the system
    /// prompt is added here), with retries and the JSON-mode fallback.
    pub async fn complete(&self, conversation: &[Value]) -> Result<Completion, AnalysisError> {
        let c = &self.inner.config;
        let mut retry = 0u32;
        let mut request_ids = Vec::new();
        loop {
            let json_mode = self.uses_json_mode();
            let body = self.body(conversation, json_mode);
            let outcome = self.try_once(&body, json_mode, &mut request_ids).await;
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
                TryOutcome::Retry {
                    code,
                    message,
                    hint,
                } => (code, message, hint),
            };
            if let Some(h) = hint
                && h > c.max_retry_after
            {
                return Err(AnalysisError::Transient {
                    code: "OPENAI_RETRY_AFTER_TOO_LONG",
                    message: format!(
                        "{message}; the server asks to wait {:.0} s, longer than the {:.0} s this client waits in place",
                        h.as_secs_f64(),
                        c.max_retry_after.as_secs_f64()
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
        let mut req = self
            .inner
            .http
            .post(&self.inner.url)
            .bearer_auth(&c.api_key)
            .json(body);
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
            return self.parse_success(&text, json_mode);
        }
        classify_error(status, &headers, &text, json_mode)
    }

    fn parse_success(&self, text: &str, json_mode: bool) -> TryOutcome {
        let c = &self.inner.config;
        let parsed: ChatResponse = match serde_json::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                return TryOutcome::Retry {
                    code: "OPENAI_BAD_RESPONSE",
                    message: format!(
                        "the server answered 2xx with a body that is not a chat completion ({e})"
                    ),
                    hint: None,
                };
            }
        };
        let (input_tokens, output_tokens) = parsed
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens))
            .unwrap_or((0, 0));
        let cost = c.cost(&c.model, input_tokens, output_tokens);
        metrics::counter!("openai_tokens_total", "kind" => "input").increment(input_tokens);
        metrics::counter!("openai_tokens_total", "kind" => "output").increment(output_tokens);
        metrics::gauge!("openai_cost_usd_total").increment(cost);
        let choice = parsed.choices.into_iter().next();
        let (content, refusal, finish_reason) = match choice {
            Some(ch) => {
                let (content, refusal) = ch
                    .message
                    .map(|m| (m.content, m.refusal))
                    .unwrap_or((None, None));
                (content, refusal, ch.finish_reason)
            }
            None => (None, None, None),
        };
        TryOutcome::Done(Completion {
            content,
            finish_reason,
            refusal,
            model: parsed.model,
            usage: Usage {
                input_tokens,
                output_tokens,
                cost_usd: cost,
                request_ids: Vec::new(),
            },
            json_mode,
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
            let previous = completion.content.unwrap_or_default();
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
    let content = completion
        .content
        .as_deref()
        .map(strip_fences)
        .unwrap_or("");
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

/// Some compatible servers wrap JSON-mode answers in a markdown code fence.
fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn transport_failure(e: &reqwest::Error) -> TryOutcome {
    if e.is_timeout() {
        metrics::counter!("openai_requests_total", "status" => "timeout").increment(1);
        TryOutcome::Retry {
            code: "OPENAI_TIMEOUT",
            message: "the OpenAI-compatible server did not answer in time".into(),
            hint: None,
        }
    } else if e.is_connect() || e.is_request() || e.is_body() {
        metrics::counter!("openai_requests_total", "status" => "connect_error").increment(1);
        TryOutcome::Retry {
            code: "OPENAI_CONNECTION",
            message: format!(
                "could not reach the OpenAI-compatible server ({e}); check OPENAI_BASE_URL and the network"
            ),
            hint: None,
        }
    } else {
        metrics::counter!("openai_requests_total", "status" => "error").increment(1);
        TryOutcome::Fail(AnalysisError::Permanent {
            code: "OPENAI_REQUEST",
            message: format!("the request to the OpenAI-compatible server could not be made: {e}"),
        })
    }
}

/// The server's retry hint: `retry-after-ms` (milliseconds), then `retry-after` (seconds, or an
/// HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §10.2.3; a date in the past means now).
pub fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let num = |v: &str| v.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    if let Some(ms) = text("retry-after-ms").and_then(num) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Some(secs) = num(value) {
        return Some(Duration::from_secs_f64(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// `error.code` / `error.type` / `error.message` / `error.param` of an error body.
fn error_fields(text: &str) -> (String, String, String, String) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let e = v.get("error").unwrap_or(&Value::Null);
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    (s("code"), s("type"), s("message"), s("param"))
}

const BILLING_CODES: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "access_terminated",
];

fn classify_error(
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
    json_mode: bool,
) -> TryOutcome {
    let (code, kind, message, param) = error_fields(text);
    // The server's message is about the request, not the transcript, so it is safe to surface;
    // it is clipped because some proxies return whole HTML pages.
    let server_says = crate::text::clip(&message, 300).to_string();
    let hint = retry_hint(headers);
    let s = status.as_u16();
    if s == 429 {
        if BILLING_CODES.contains(&code.as_str()) || BILLING_CODES.contains(&kind.as_str()) {
            return TryOutcome::Fail(AnalysisError::Permanent {
                code: "OPENAI_INSUFFICIENT_QUOTA",
                message: format!(
                    "the OpenAI account has no quota left ({server_says}); add credit or raise the limit, then replay the run"
                ),
            });
        }
        return TryOutcome::Retry {
            code: "OPENAI_RATE_LIMITED",
            message: format!("rate limited (429): {server_says}"),
            hint,
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
        };
    }
    if s == 400 && !json_mode {
        let about_format = |x: &str| {
            let x = x.to_ascii_lowercase();
            x.contains("response_format")
                || x.contains("json_schema")
                || x.contains("structured output")
        };
        if about_format(&param) || about_format(&message) {
            return TryOutcome::FallBackToJsonMode;
        }
    }
    let (code, fix) = match s {
        401 => ("OPENAI_UNAUTHORIZED", "check OPENAI_API_KEY"),
        403 => (
            "OPENAI_FORBIDDEN",
            "check the key's permissions, OPENAI_ORGANIZATION and OPENAI_PROJECT",
        ),
        404 => ("OPENAI_NOT_FOUND", "check OPENAI_BASE_URL and OPENAI_MODEL"),
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

    #[test]
    fn retry_hints_in_milliseconds_seconds_and_http_dates() {
        let hint = |pairs: &[(&'static str, String)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            retry_hint(&h)
        };
        assert_eq!(
            hint(&[
                ("retry-after-ms", "250".into()),
                ("retry-after", "9".into())
            ]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            hint(&[("retry-after", "2".into())]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            hint(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT".into())]),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
        let later = (time::OffsetDateTime::now_utc() + time::Duration::seconds(30))
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        let later = later.replace("+0000", "GMT");
        let wait = hint(&[("retry-after", later)]).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(hint(&[("retry-after", "soon".into())]), None);
        assert_eq!(hint(&[("retry-after", "-3".into())]), None);
    }

    #[test]
    fn prices_match_snapshots_by_prefix() {
        let c = OpenAiConfig::new("k");
        let p = c
            .price("gpt-4o-mini-2024-07-18")
            .map(|p| p.input_per_million);
        assert_eq!(p, Some(0.15));
        let p = c.price("gpt-4.1-mini-2025").map(|p| p.output_per_million);
        assert_eq!(p, Some(1.60));
        assert!((c.cost("gpt-4o-mini", 1_000_000, 1_000_000) - 0.75).abs() < 1e-9);
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let c = OpenAiConfig::new("k");
        assert_eq!(c.backoff_step(0), Duration::from_millis(500));
        assert_eq!(c.backoff_step(1), Duration::from_secs(1));
        assert_eq!(c.backoff_step(4), Duration::from_secs(8));
        assert_eq!(c.backoff_step(30), Duration::from_secs(8));
    }

    #[test]
    fn env_config_reads_and_rejects() {
        let m: HashMap<&str, &str> = HashMap::from([
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_MODEL", "gpt-4.1"),
            ("OPENAI_PRICE_INPUT_PER_1M", "1.5"),
        ]);
        let c = OpenAiConfig::from_lookup(|k| m.get(k).map(|v| v.to_string()))
            .ok()
            .flatten();
        let c = c.map(|c| (c.model.clone(), c.price("gpt-4.1")));
        assert_eq!(
            c,
            Some((
                "gpt-4.1".to_string(),
                Some(ModelPrice {
                    input_per_million: 1.5,
                    output_per_million: 8.0
                })
            ))
        );
        assert!(matches!(OpenAiConfig::from_lookup(|_| None), Ok(None)));
        let bad = OpenAiConfig::from_lookup(|k| match k {
            "OPENAI_API_KEY" => Some("k".into()),
            "OPENAI_TIMEOUT_SECS" => Some("soon".into()),
            _ => None,
        });
        assert!(matches!(bad, Err(e) if e.variable == "OPENAI_TIMEOUT_SECS"));
    }

    #[test]
    fn debug_redacts_the_key() {
        let c = OpenAiConfig::new("sk-secret-value");
        assert!(!format!("{c:?}").contains("sk-secret-value"));
    }

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {} "), "{}");
    }
}
