//! How jobs look in admin answers: the same fields as `GET /v1/runs/{id}` (the list stays cheap by
//! leaving out follow-ups), plus, for one run, its delivery with secrets redacted, its attempts, and
//! the output, Gate-1 report and coaching card. A failed Gate-1 carries output and report in the job's
//! error; a finished run keeps them on its Run record only (the journal keeps the record id), so
//! [`add_run_record`] reads that record from the store.

use coach_store::RecordId;
use coach_store::tables;
use serde_json::{Map, Value, json};

use crate::http::runs::time_or_null;
use crate::journal::{Delivery, Job, JobAttempt, rfc3339};

/// One job as the admin list shows it.
pub fn run_view(job: &Job) -> Value {
    crate::http::runs::job_view(job)
}

/// One job with everything an admin needs to decide whether to replay it.
pub fn run_detail(
    job: &Job,
    children: &[Job],
    attempts: &[JobAttempt],
    delivery: Option<&Delivery>,
) -> Value {
    let mut view = run_view(job);
    view["follow_ups"] = children
        .iter()
        .map(|c| json!({"run_id": c.id, "kind": c.kind, "status": c.status.as_str()}))
        .collect();
    view["attempts_detail"] = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "started_at": rfc3339(a.started_at),
                "finished_at": time_or_null(a.finished_at),
                "outcome": a.outcome,
                "error": a.error,
            })
        })
        .collect();
    view["delivery"] = match delivery {
        Some(d) => json!({
            "key": d.key,
            "scenario": d.scenario,
            "received_at": rfc3339(d.received_at),
            "response_status": d.response_status,
            "body": redact(&d.body),
        }),
        None => Value::Null,
    };
    view["payload"] = redact(&job.payload);
    view["gate1_report"] = find_field(job, "gate1_report");
    view["output"] = find_field(job, "output");
    view["coaching_card"] = find_field(job, "coaching_card");
    view
}

/// A text field of the Run record that an admin view shows, under its view key. The record is read
/// typed ([`tables::Run`]), so the fields' names in the base stay in the store's `tables` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunField {
    Output,
    Gate1Report,
    CoachingCard,
    Metrics,
}

impl RunField {
    /// The key the view shows the field under.
    pub fn key(self) -> &'static str {
        match self {
            RunField::Output => "output",
            RunField::Gate1Report => "gate1_report",
            RunField::CoachingCard => "coaching_card",
            RunField::Metrics => "metrics",
        }
    }

    fn of(self, run: &tables::Run) -> Option<&str> {
        match self {
            RunField::Output => run.output.as_deref(),
            RunField::Gate1Report => run.gate1_report.as_deref(),
            RunField::CoachingCard => run.coaching_card.as_deref(),
            RunField::Metrics => run.metrics.as_deref(),
        }
    }
}

/// The Run-record fields the admin API shows.
pub const RECORD_FIELDS: &[RunField] = &[
    RunField::Output,
    RunField::Gate1Report,
    RunField::CoachingCard,
];

/// Fills `output`, `gate1_report` and `coaching_card` that the job itself does not carry from the
/// Run record its result names. A store error is shown as `run_record.error`, not as a failed call:
/// the journal's view of the run is still worth having.
pub async fn add_run_record(view: &mut Value, job: &Job, store: &coach_store::Store) {
    add_run_record_fields(view, job, store, RECORD_FIELDS).await;
}

/// [`add_run_record`] over any Run fields (the page also reads `Metrics` for its talk-share chart,
/// which the API leaves out to keep its answer as it was).
pub async fn add_run_record_fields(
    view: &mut Value,
    job: &Job,
    store: &coach_store::Store,
    fields: &[RunField],
) {
    let Some(record_id) = job
        .result
        .as_ref()
        .and_then(|r| r.get("run_record_id"))
        .and_then(Value::as_str)
    else {
        return;
    };
    let read = match RecordId::parse(record_id) {
        Ok(id) => store.read::<tables::Run>(&id).await,
        Err(e) => Err(e),
    };
    let run = match read {
        Ok(r) => r,
        Err(e) => {
            view["run_record"] =
                json!({"id": record_id, "error": {"code": e.code(), "message": e.to_string()}});
            return;
        }
    };
    view["run_record"] = json!({"id": record_id});
    for &field in fields {
        let key = field.key();
        if view[key].is_null()
            && let Some(text) = field.of(&run)
        {
            // JSON kept as text in the record is shown as JSON; the card is markdown and stays text.
            view[key] = match serde_json::from_str::<Value>(text) {
                Ok(parsed) if parsed.is_object() || parsed.is_array() => parsed,
                _ => Value::String(text.to_owned()),
            };
        }
    }
}

/// The first place a job keeps `name`: its result, its last error's details, then its attempts'.
fn find_field(job: &Job, name: &str) -> Value {
    let candidates = [
        job.result.as_ref().and_then(|r| r.get(name)),
        job.last_error
            .as_ref()
            .and_then(|e| e.get("details"))
            .and_then(|d| d.get(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Key fragments that mark a value as a secret. Matched on the lower-cased key with `-` read as `_`,
/// so `X-Api-Key`, `apiKey` and `client_secret` are all caught.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "authorization",
];

/// A copy of `value` with the value of every secret-looking key replaced by `"[redacted]"`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let key = k.to_ascii_lowercase().replace('-', "_");
                if SECRET_KEYS.iter().any(|s| key.contains(s)) {
                    out.insert(k.clone(), Value::String("[redacted]".into()));
                } else {
                    out.insert(k.clone(), redact(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_nested_keys_in_any_spelling() {
        let body = json!({
            "run_request_id": "rec123",
            "X-Api-Key": "k1",
            "nested": [{"client_secret": "s", "Authorization": "Bearer x", "keep": 1}],
            "refresh_token": {"deep": "value"},
            "Password": "p",
        });
        let out = redact(&body);
        assert_eq!(out["run_request_id"], "rec123");
        assert_eq!(out["X-Api-Key"], "[redacted]");
        assert_eq!(out["nested"][0]["client_secret"], "[redacted]");
        assert_eq!(out["nested"][0]["Authorization"], "[redacted]");
        assert_eq!(out["nested"][0]["keep"], 1);
        assert_eq!(out["refresh_token"], "[redacted]");
        assert_eq!(out["Password"], "[redacted]");
    }
}
