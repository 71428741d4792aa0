//! The client's configuration: a plain value the caller builds. This crate reads no environment;
//! the worker parses every `OPENAI_*` / `AZURE_OPENAI_*` setting in its typed configuration and
//! hands the result here.
//!
//! Two ways to address a server:
//! - **OpenAI-compatible** (`base_url` + bearer key): `POST {base_url}/chat/completions`.
//! - **Azure OpenAI** ([`AzureDeployment`]): `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
//!   with an `api-key` header, the shape Azure documents and the official clients build from
//!   an endpoint, a deployment and an API version.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The default model.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// USD per 1M prompt tokens.
    pub input_per_million: f64,
    /// USD per 1M completion tokens.
    pub output_per_million: f64,
}

/// Default prices (USD per 1M tokens, standard tier, from OpenAI's public pricing page); override
/// with [`OpenAiConfig::prices`].
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

/// An Azure OpenAI deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDeployment {
    /// The resource endpoint, e.g. `https://my-resource.openai.azure.com` (no path).
    pub endpoint: String,
    /// The deployment name chosen in the Azure portal.
    pub deployment: String,
    /// The `api-version` query parameter, e.g. `2024-10-21`.
    pub api_version: String,
}

/// Client configuration. `Debug` redacts the key.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// API base, without the trailing `/chat/completions` (default [`DEFAULT_BASE_URL`]); unused
    /// when [`azure`](Self::azure) is set.
    pub base_url: String,
    /// The key: a bearer token, or Azure's `api-key`.
    pub api_key: String,
    /// Model name (default [`DEFAULT_MODEL`]). With Azure the deployment decides the model; this
    /// name is what runs record and what prices are looked up by.
    pub model: String,
    /// Azure OpenAI instead of an OpenAI-style base URL.
    pub azure: Option<AzureDeployment>,
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
    /// Longest server wait (retry hint or rate-limit window) the client sleeps on (default 120 s);
    /// a longer one ends the call as transient with the wait, for the caller to schedule.
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
            .field("azure", &self.azure)
            .field("timeout", &self.timeout)
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("max_retries", &self.max_retries)
            .field("max_repairs", &self.max_repairs)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl OpenAiConfig {
    /// Defaults around `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: api_key.into(),
            model: DEFAULT_MODEL.to_string(),
            azure: None,
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

    /// Sets the price of the configured model, keeping the other half of an existing price
    /// when only one is given.
    pub fn set_model_price(&mut self, input: Option<f64>, output: Option<f64>) {
        if input.is_none() && output.is_none() {
            return;
        }
        let old = self.price(&self.model).unwrap_or(ModelPrice {
            input_per_million: 0.0,
            output_per_million: 0.0,
        });
        self.prices.insert(
            self.model.clone(),
            ModelPrice {
                input_per_million: input.unwrap_or(old.input_per_million),
                output_per_million: output.unwrap_or(old.output_per_million),
            },
        );
    }

    /// The chat-completions URL this configuration addresses.
    pub fn chat_url(&self) -> String {
        match &self.azure {
            Some(a) => format!(
                "{}/openai/deployments/{}/chat/completions?api-version={}",
                a.endpoint.trim_end_matches('/'),
                a.deployment,
                a.api_version
            ),
            None => format!("{}/chat/completions", self.base_url.trim_end_matches('/')),
        }
    }

    /// The server's host (and port when not the default), the `host` label of the call metrics.
    pub fn provider_host(&self) -> String {
        let url = match &self.azure {
            Some(a) => a.endpoint.as_str(),
            None => self.base_url.as_str(),
        };
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let host = rest.split(['/', '?']).next().unwrap_or("");
        // Credentials in a URL never reach a label.
        host.rsplit('@').next().unwrap_or("").to_ascii_lowercase()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn one_half_of_a_price_keeps_the_other() {
        let mut c = OpenAiConfig::new("k");
        c.model = "gpt-4.1".into();
        c.set_model_price(Some(1.5), None);
        assert_eq!(
            c.price("gpt-4.1"),
            Some(ModelPrice {
                input_per_million: 1.5,
                output_per_million: 8.0
            })
        );
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
    fn debug_redacts_the_key() {
        let c = OpenAiConfig::new("sk-secret-value");
        assert!(!format!("{c:?}").contains("sk-secret-value"));
    }

    #[test]
    fn urls_and_hosts() {
        let mut c = OpenAiConfig::new("k");
        assert_eq!(c.chat_url(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(c.provider_host(), "api.openai.com");
        c.base_url = "http://127.0.0.1:11434/v1/".into();
        assert_eq!(c.chat_url(), "http://127.0.0.1:11434/v1/chat/completions");
        assert_eq!(c.provider_host(), "127.0.0.1:11434");
        c.azure = Some(AzureDeployment {
            endpoint: "https://my-resource.openai.azure.com/".into(),
            deployment: "coach-4o".into(),
            api_version: "2024-10-21".into(),
        });
        assert_eq!(
            c.chat_url(),
            "https://my-resource.openai.azure.com/openai/deployments/coach-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(c.provider_host(), "my-resource.openai.azure.com");
    }
}
