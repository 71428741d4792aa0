//! Logs and metrics.
//!
//! Logs are JSON lines (or human-readable with `COACH_LOG_FORMAT=pretty`) filtered by `RUST_LOG`.
//! Spans carry the request id, delivery key, run id and scenario; no code path logs a secret, a token,
//! a request body or transcript text. Metrics go through the `metrics` facade to a Prometheus
//! recorder rendered at `/metrics`, with histogram buckets for latencies.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Starts logging. Safe to call more than once (later calls do nothing).
///
/// `pretty` colours its output only when standard error is a terminal: a file or a log collector gets
/// plain text, without escape codes.
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "pretty" {
        builder.try_init()
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
    };
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let latency = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}
