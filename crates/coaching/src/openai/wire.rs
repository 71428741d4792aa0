//! What OpenAI-compatible servers actually send back, read leniently.
//!
//! - **Error envelopes.** OpenAI's `{"error": {"message", "type", "param", "code"}}` is the common
//!   shape, but servers differ: OpenRouter puts a numeric `code` in it (and may send it inside an
//!   HTTP 200 when the upstream failed after the answer started), Groq adds `failed_generation`,
//!   vLLM answers `{"object": "error", "message", "code"}`, FastAPI-based servers
//!   `{"detail": "…"}` (or a list of `{"msg"}`), some proxies `{"error": "text"}` or plain text.
//!   [`ProviderError::parse`] takes the message and code from any of them.
//! - **Answers.** `message.content` is a string, or (Mistral's reasoning models) an array of
//!   parts of which only `type: "text"` parts are the answer; `reasoning_content` and thinking
//!   parts are ignored. Distilled reasoning models served by Ollama or LM Studio put a
//!   `<think>…</think>` block before the JSON; [`answer_text`] strips it like a code fence.
//! - **Rate-limit windows.** OpenAI's 429 may carry no `Retry-After` but
//!   `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` as Go-style durations (`6m0s`,
//!   `1m30s`, `12ms`); see OpenAI's rate-limit guide ("Rate limits in headers").

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

/// A chat completion, as far as the client needs it.
#[derive(Deserialize)]
pub(crate) struct ChatResponse {
    pub model: Option<String>,
    pub choices: Vec<Choice>,
    pub usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
pub(crate) struct Choice {
    pub message: Option<ChoiceMessage>,
    pub finish_reason: Option<String>,
    /// OpenRouter: the upstream's error when `finish_reason` is `error`.
    pub error: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct ChoiceMessage {
    #[serde(default)]
    pub content: Value,
    pub refusal: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The answer text of `message.content`: a string as is; an array of parts joined from its text
/// parts (`{"type": "text", "text": …}`, or a part with only `text`), thinking parts skipped.
/// `None` when there is no text at all, or the shape is unknown.
pub(crate) fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        None | Some("text") | Some("output_text")
                    )
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() {
                None
            } else {
                Some(texts.concat())
            }
        }
        _ => None,
    }
}

/// The JSON text of an answer: leading `<think>…</think>` blocks and a markdown code fence
/// removed. An unclosed `<think>` leaves nothing (the answer never started).
pub fn answer_text(s: &str) -> &str {
    let mut t = s.trim();
    while let Some(rest) = t.strip_prefix("<think>") {
        t = match rest.find("</think>") {
            Some(end) => rest[end + "</think>".len()..].trim_start(),
            None => "",
        };
    }
    strip_fences(t)
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

/// An error as a provider reported it, from whichever envelope it used.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProviderError {
    /// `code` as text (OpenAI's are strings, OpenRouter's and vLLM's numbers).
    pub code: String,
    /// `type`.
    pub kind: String,
    /// The provider's message (clipped; may be the whole body of a plain-text answer).
    pub message: String,
    /// `param`.
    pub param: String,
    /// Groq: the model output that failed the server-side JSON validation.
    pub failed_generation: Option<String>,
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

impl ProviderError {
    /// Reads an error body. Never fails: an unknown body becomes its own (clipped) text.
    pub fn parse(text: &str) -> ProviderError {
        let clip = |s: &str| crate::text::clip(s.trim(), 300).to_string();
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return ProviderError {
                message: clip(text),
                ..Default::default()
            };
        };
        Self::from_value(&v).unwrap_or_else(|| ProviderError {
            message: clip(text),
            ..Default::default()
        })
    }

    /// The error a JSON body carries, if it carries one in a known envelope.
    pub fn from_value(v: &Value) -> Option<ProviderError> {
        let clip = |s: String| crate::text::clip(s.trim(), 300).to_string();
        match v.get("error") {
            Some(Value::Object(e)) => {
                let e = Value::Object(e.clone());
                return Some(ProviderError {
                    code: scalar(e.get("code")),
                    kind: scalar(e.get("type")),
                    message: clip(scalar(e.get("message"))),
                    param: scalar(e.get("param")),
                    failed_generation: e
                        .get("failed_generation")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
            Some(Value::String(s)) => {
                return Some(ProviderError {
                    message: clip(s.clone()),
                    ..Default::default()
                });
            }
            _ => {}
        }
        if v.get("object").and_then(Value::as_str) == Some("error") {
            return Some(ProviderError {
                code: scalar(v.get("code")),
                kind: scalar(v.get("type")),
                message: clip(scalar(v.get("message"))),
                param: scalar(v.get("param")),
                failed_generation: None,
            });
        }
        match v.get("detail") {
            Some(Value::String(s)) => Some(ProviderError {
                message: clip(s.clone()),
                ..Default::default()
            }),
            // FastAPI's validation errors: `[{"loc": ["body", "response_format", "type"], "msg": …}]`.
            Some(Value::Array(items)) => Some(ProviderError {
                message: clip(
                    items
                        .iter()
                        .filter_map(|i| {
                            let msg = i.get("msg").and_then(Value::as_str)?;
                            let loc = i
                                .get("loc")
                                .and_then(Value::as_array)
                                .map(|l| {
                                    l.iter()
                                        .map(|p| scalar(Some(p)))
                                        .collect::<Vec<_>>()
                                        .join(".")
                                })
                                .unwrap_or_default();
                            Some(if loc.is_empty() {
                                msg.to_string()
                            } else {
                                format!("{loc}: {msg}")
                            })
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                ..Default::default()
            }),
            _ => None,
        }
    }

    /// The numeric status a provider put in `code` (OpenRouter, vLLM), if it is one.
    pub fn status_code(&self) -> Option<u16> {
        self.code.parse().ok().filter(|c| (100..600).contains(c))
    }
}

/// Parses a Go-style duration (`6m0s`, `1m30s`, `12ms`, `1.5s`, `2h`, `0s`).
pub fn go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

/// The server's retry hint: `retry-after-ms` (milliseconds), then `retry-after` (seconds, or an
/// HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §10.2.3; a date in the past means
/// now).
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

/// When a 429 carries no retry hint: the reset of the rate-limit window that ran out, from
/// `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` (Go durations). The window whose
/// `x-ratelimit-remaining-*` is 0 decides; when neither says, the longer reset (waiting for the
/// shorter one could only fail again).
pub fn rate_limit_window(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let reset = |kind: &str| text(&format!("x-ratelimit-reset-{kind}")).and_then(go_duration);
    let exhausted = |kind: &str| {
        text(&format!("x-ratelimit-remaining-{kind}"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v <= 0.0)
    };
    let requests = reset("requests");
    let tokens = reset("tokens");
    let ran_out: Vec<Duration> = [("requests", requests), ("tokens", tokens)]
        .into_iter()
        .filter(|(kind, _)| exhausted(kind))
        .filter_map(|(_, d)| d)
        .collect();
    if let Some(d) = ran_out.into_iter().max() {
        return Some(d);
    }
    requests.into_iter().chain(tokens).max()
}

/// A wait as people write it: `6m0s`, `1m30s`, `45s`, `1h2m`.
pub fn human_wait(d: Duration) -> String {
    let secs = d.as_secs_f64().ceil() as u64;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_hints_in_milliseconds_seconds_and_http_dates() {
        let hint = |pairs: &[(&'static str, String)]| retry_hint(&headers(pairs));
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
    fn go_durations() {
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("2h0m0s"), Some(Duration::from_secs(7200)));
        assert_eq!(go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("6 minutes"), None);
        assert_eq!(go_duration("m"), None);
        assert_eq!(go_duration("-1s"), None);
    }

    proptest! {
        #[test]
        fn go_durations_round_trip(h in 0u64..48, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s");
            prop_assert_eq!(go_duration(&text), Some(Duration::from_secs(h * 3600 + m * 60 + s)));
            let text = format!("{ms}ms");
            prop_assert_eq!(go_duration(&text), Some(Duration::from_millis(ms)));
        }

        #[test]
        fn go_duration_never_panics(s in "\\PC{0,20}") {
            let _ = go_duration(&s);
        }
    }

    #[test]
    fn the_exhausted_window_decides() {
        let w = |pairs: &[(&'static str, String)]| rate_limit_window(&headers(pairs));
        let both = [
            ("x-ratelimit-reset-requests", "6m0s".to_string()),
            ("x-ratelimit-reset-tokens", "1m30s".to_string()),
        ];
        assert_eq!(w(&both), Some(Duration::from_secs(360)), "unknown: longer");
        let mut tokens_out = both.to_vec();
        tokens_out.push(("x-ratelimit-remaining-tokens", "0".into()));
        tokens_out.push(("x-ratelimit-remaining-requests", "12".into()));
        assert_eq!(w(&tokens_out), Some(Duration::from_secs(90)));
        assert_eq!(w(&[]), None);
    }

    #[test]
    fn error_envelopes() {
        let e = ProviderError::parse(
            r#"{"error": {"message": "Provider returned error", "code": 502}}"#,
        );
        assert_eq!(
            (e.message.as_str(), e.status_code()),
            ("Provider returned error", Some(502))
        );
        let e = ProviderError::parse(
            r#"{"object": "error", "message": "json_schema is not supported", "type": "BadRequestError", "code": 400}"#,
        );
        assert_eq!(e.message, "json_schema is not supported");
        assert_eq!(e.code, "400");
        let e = ProviderError::parse(r#"{"detail": "Not Found"}"#);
        assert_eq!(e.message, "Not Found");
        let e = ProviderError::parse(r#"{"detail": [{"loc": ["body"], "msg": "field required"}]}"#);
        assert_eq!(e.message, "body: field required");
        let e = ProviderError::parse("upstream connect error");
        assert_eq!(e.message, "upstream connect error");
        let e = ProviderError::parse(r#"{"error": "model not loaded"}"#);
        assert_eq!(e.message, "model not loaded");
        let e = ProviderError::parse(
            r#"{"error": {"message": "Failed to generate JSON.", "type": "invalid_request_error", "code": "json_validate_failed", "failed_generation": "{\"a\":"}}"#,
        );
        assert_eq!(e.code, "json_validate_failed");
        assert_eq!(e.failed_generation.as_deref(), Some("{\"a\":"));
        assert_eq!(ProviderError::from_value(&json!({"choices": []})), None);
    }

    #[test]
    fn content_parts_and_think_blocks() {
        let parts = json!([
            {"type": "thinking", "thinking": [{"type": "text", "text": "let me see"}]},
            {"type": "text", "text": "{\"a\":"},
            {"type": "text", "text": "1}"}
        ]);
        assert_eq!(content_text(&parts).as_deref(), Some("{\"a\":1}"));
        assert_eq!(content_text(&json!([{"type": "thinking"}])), None);
        assert_eq!(content_text(&Value::Null), None);
        assert_eq!(
            answer_text("<think>\nhmm {}\n</think>\n\n{\"a\":1}"),
            "{\"a\":1}"
        );
        assert_eq!(answer_text("<think>never ends"), "");
        assert_eq!(answer_text("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(answer_text(" {} "), "{}");
    }

    #[test]
    fn waits_read_like_people_write_them() {
        assert_eq!(human_wait(Duration::from_secs(360)), "6m0s");
        assert_eq!(human_wait(Duration::from_millis(1500)), "2s");
        assert_eq!(human_wait(Duration::from_secs(3725)), "1h2m5s");
    }
}
