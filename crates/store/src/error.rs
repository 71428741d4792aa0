//! The one error type of the store, shared by both backends.
//!
//! Callers branch on errors in two ways: by variant (`StoreError::NotFound` is the common one) and by
//! [`StoreError::is_transient`], which the worker's job runner uses to decide between "retry later" and
//! "fail now with the reason". Airtable errors are mapped from the API's `error.type` (never from the
//! message text); the SQLite backend produces the same variants for the same situations, so code written
//! against one backend behaves the same on the other.

use std::time::Duration;

/// Everything that can go wrong in the record store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist (Airtable 404 `NOT_FOUND`, or no row in SQLite).
    #[error(
        "record {id} was not found in table \"{table}\"; check the id, or whether it was deleted"
    )]
    NotFound { table: String, id: String },

    /// The table does not exist in the base.
    #[error(
        "table \"{table}\" does not exist in the base; run `coach-worker airtable check` to compare the base with airtable/base-schema.json"
    )]
    TableNotFound { table: String },

    /// A record id from outside did not have the shape `rec` + 14 letters or digits.
    #[error("\"{0}\" is not a record id: expected `rec` followed by 14 letters or digits")]
    InvalidRecordId(String),

    /// A filter could not be compiled (for example a field name containing `{` or `}`).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),

    /// A field name that the table does not have. `airtable` is Airtable's own message (empty for
    /// the SQLite backend).
    #[error(
        "table \"{table}\" has no field named \"{field}\"; fix the name or add the field (see airtable/base-schema.json){}",
        said(.airtable)
    )]
    UnknownField {
        table: String,
        field: String,
        airtable: String,
    },

    /// A select option that the field does not offer.
    #[error(
        "table \"{table}\", field \"{field}\": \"{value}\" is not one of the field's options; add the option to the field in the base, or use one of its options{}",
        said(.airtable)
    )]
    InvalidSelectOption {
        table: String,
        field: String,
        value: String,
        airtable: String,
    },

    /// A value of the wrong type for its field (text into a number, a non-id into a link, ...).
    #[error("invalid value for field \"{field}\" of table \"{table}\": {message}")]
    InvalidValue {
        table: String,
        field: String,
        message: String,
    },

    /// The request was rejected as a whole (batch too large, missing `Key` for an upsert, ...).
    #[error("invalid records: {0}")]
    InvalidRecords(String),

    /// The token is missing, wrong, or lacks the scope or base access.
    #[error(
        "Airtable refused the token ({error_type}): check AIRTABLE_TOKEN, its scopes (data.records:read/write, schema.bases:read/write) and its access to the base"
    )]
    Unauthorized { error_type: String },

    /// Still rate limited after every allowed retry.
    #[error(
        "Airtable kept answering 429 after {retries} waits of {wait:?}; lower the request rate or retry later"
    )]
    RateLimited { retries: u32, wait: Duration },

    /// The server answered 5xx.
    #[error("Airtable answered HTTP {status}; this is usually temporary, retry later")]
    Unavailable { status: u16 },

    /// The request did not complete (connection refused, reset, DNS, TLS).
    #[error("could not reach the store: {0}")]
    Network(String),

    /// The request took longer than the configured timeout.
    #[error("the store did not answer within {0:?}; retry later")]
    Timeout(Duration),

    /// Any other API error, kept with its `error.type` so callers can still inspect it.
    #[error("Airtable answered HTTP {status} {error_type}: {message}")]
    Api {
        status: u16,
        error_type: String,
        message: String,
    },

    /// A response body that is not what the API documents.
    #[error("unexpected response from the store: {0}")]
    Decode(String),

    /// The embedded SQLite database failed.
    #[error("SQLite store error: {0}")]
    Sqlite(String),

    /// Invalid configuration (bad base URL, unreadable schema file, ...).
    #[error("store configuration error: {0}")]
    Config(String),
}

/// Airtable's own words, appended to a message that already names table, field and value.
fn said(airtable: &str) -> String {
    if airtable.is_empty() {
        String::new()
    } else {
        format!(" (Airtable: {airtable})")
    }
}

impl StoreError {
    /// A stable SCREAMING_SNAKE code for logs, metrics and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "NOT_FOUND",
            StoreError::TableNotFound { .. } => "TABLE_NOT_FOUND",
            StoreError::InvalidRecordId(_) => "INVALID_RECORD_ID",
            StoreError::InvalidFilter(_) => "INVALID_FILTER",
            StoreError::UnknownField { .. } => "UNKNOWN_FIELD_NAME",
            StoreError::InvalidSelectOption { .. } => "INVALID_MULTIPLE_CHOICE_OPTIONS",
            StoreError::InvalidValue { .. } => "INVALID_VALUE_FOR_COLUMN",
            StoreError::InvalidRecords(_) => "INVALID_RECORDS",
            StoreError::Unauthorized { .. } => "STORE_UNAUTHORIZED",
            StoreError::RateLimited { .. } => "STORE_RATE_LIMITED",
            StoreError::Unavailable { .. } => "STORE_UNAVAILABLE",
            StoreError::Network(_) => "STORE_NETWORK",
            StoreError::Timeout(_) => "STORE_TIMEOUT",
            StoreError::Api { .. } => "STORE_API_ERROR",
            StoreError::Decode(_) => "STORE_DECODE",
            StoreError::Sqlite(_) => "STORE_SQLITE",
            StoreError::Config(_) => "STORE_CONFIG",
        }
    }

    /// True when the same call may succeed later (rate limits, 5xx, network, timeouts, a busy database).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::RateLimited { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Network(_)
                | StoreError::Timeout(_)
                | StoreError::Sqlite(_)
        )
    }

    /// True for errors a caller caused (bad id, unknown field, ...): a 400-class answer, never retried.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidRecordId(_)
                | StoreError::InvalidFilter(_)
                | StoreError::UnknownField { .. }
                | StoreError::InvalidSelectOption { .. }
                | StoreError::InvalidValue { .. }
                | StoreError::InvalidRecords(_)
        )
    }

    /// Types an Airtable error response (status and raw body, in either documented error form).
    /// `table` and `id` give the error its context (use "" when not applicable).
    pub fn from_response(status: u16, body: &[u8], table: &str, id: &str) -> StoreError {
        if status == 429 {
            return StoreError::RateLimited {
                retries: 0,
                wait: Duration::ZERO,
            };
        }
        let (kind, message) = crate::airtable::parse_error_body(body);
        StoreError::from_airtable(status, &kind, &message, table, id)
    }

    /// Maps an Airtable error (`status` and `error.type`) to a variant; `table` and `id` give context.
    pub(crate) fn from_airtable(
        status: u16,
        error_type: &str,
        message: &str,
        table: &str,
        id: &str,
    ) -> StoreError {
        StoreError::from_airtable_request(status, error_type, message, table, id, None)
    }

    /// Like [`StoreError::from_airtable`], with the body of the request that failed. Airtable's
    /// messages do not reliably name what was wrong (a select option arrives as `""Processing""`, an
    /// unknown field as `Could not find a field named X`, a bad value often by field id), so the
    /// field and value are taken from what the worker sent, and Airtable's message is kept beside them.
    pub(crate) fn from_airtable_request(
        status: u16,
        error_type: &str,
        message: &str,
        table: &str,
        id: &str,
        body: Option<&serde_json::Value>,
    ) -> StoreError {
        let sent = body.map(sent_fields).unwrap_or_default();
        match error_type {
            "NOT_FOUND" | "MODEL_ID_NOT_FOUND" if !id.is_empty() => StoreError::NotFound {
                table: table.to_string(),
                id: id.to_string(),
            },
            "TABLE_NOT_FOUND" => StoreError::TableNotFound {
                table: table.to_string(),
            },
            "NOT_FOUND" if !table.is_empty() => StoreError::TableNotFound {
                table: table.to_string(),
            },
            "UNKNOWN_FIELD_NAME" => StoreError::UnknownField {
                table: table.to_string(),
                field: named_field(message, &sent)
                    .map(|(f, _)| f)
                    .or_else(|| quoted_name(message))
                    // A read names it bare: "Could not find a field named NON_EXISTING".
                    .or_else(|| {
                        message
                            .rsplit_once("named ")
                            .map(|(_, f)| f.trim().to_string())
                    })
                    .unwrap_or_else(|| message.to_string()),
                airtable: message.to_string(),
            },
            "INVALID_MULTIPLE_CHOICE_OPTIONS" => {
                let option = quoted_name(message);
                // The sent field whose value (or one of whose values) is the refused option.
                let hit = option.as_deref().and_then(|o| {
                    sent.iter()
                        .find(|(_, v)| select_values(v).contains(&o))
                        .map(|(f, _)| (f.clone(), o.to_string()))
                });
                let (field, value) = hit.unwrap_or_else(|| {
                    (String::new(), option.unwrap_or_else(|| message.to_string()))
                });
                StoreError::InvalidSelectOption {
                    table: table.to_string(),
                    field,
                    value,
                    airtable: message.to_string(),
                }
            }
            "INVALID_VALUE_FOR_COLUMN" => match named_field(message, &sent) {
                Some((field, value)) => StoreError::InvalidValue {
                    table: table.to_string(),
                    field,
                    message: format!("the worker sent {} (Airtable: {message})", short(&value)),
                },
                None => StoreError::InvalidValue {
                    table: table.to_string(),
                    field: quoted_name(message).unwrap_or_default(),
                    message: message.to_string(),
                },
            },
            "INVALID_RECORDS" | "INVALID_REQUEST_UNKNOWN" | "INVALID_REQUEST_MISSING_FIELDS" => {
                StoreError::InvalidRecords(message.to_string())
            }
            "INVALID_FILTER_BY_FORMULA" => StoreError::InvalidFilter(message.to_string()),
            "AUTHENTICATION_REQUIRED"
            | "INVALID_PERMISSIONS"
            | "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"
            | "INVALID_AUTHORIZATION"
            | "UNAUTHORIZED" => StoreError::Unauthorized {
                error_type: error_type.to_string(),
            },
            _ if status >= 500 => StoreError::Unavailable { status },
            _ => StoreError::Api {
                status,
                error_type: error_type.to_string(),
                message: message.to_string(),
            },
        }
    }
}

/// Every `(field, value)` of the records in a write body (`{"records": [{"fields": {...}}]}`).
fn sent_fields(body: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    body.get("records")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("fields").and_then(serde_json::Value::as_object))
        .flat_map(|f| f.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect()
}

/// The option names in a select value: a string, or a list of strings.
fn select_values(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The sent field that the message names (the longest name found in it, so "Status" does not win
/// over "Parse Status").
fn named_field(
    message: &str,
    sent: &[(String, serde_json::Value)],
) -> Option<(String, serde_json::Value)> {
    sent.iter()
        .filter(|(f, _)| message.contains(f.as_str()))
        .max_by_key(|(f, _)| f.len())
        .cloned()
}

/// A value as JSON, cut to a readable length.
fn short(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

/// The first quoted name in an Airtable message, which names the offending field or option. Airtable
/// sometimes doubles the quotes (`option ""Processing""`, a CSV-style escape); both forms give the name.
/// Only used to enrich the error for humans; the variant itself comes from `error.type`.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('"')?;
    let rest = message[start..].trim_start_matches('"');
    let end = rest.find('"')?;
    let name = &rest[..end];
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_types_not_messages() {
        let e = StoreError::from_airtable(
            422,
            "UNKNOWN_FIELD_NAME",
            "Unknown field name: \"Colour\"",
            "Runs",
            "",
        );
        assert_eq!(e.code(), "UNKNOWN_FIELD_NAME");
        assert!(matches!(e, StoreError::UnknownField { ref field, .. } if field == "Colour"));
        assert!(
            e.to_string()
                .contains("Airtable: Unknown field name: \"Colour\""),
            "{e}"
        );
        let e = StoreError::from_airtable(404, "NOT_FOUND", "", "Runs", "rec00000000000000");
        assert!(matches!(e, StoreError::NotFound { .. }));
        let e = StoreError::from_airtable(503, "SERVICE_UNAVAILABLE", "", "Runs", "");
        assert!(e.is_transient());
        let e = StoreError::from_airtable(422, "SOMETHING_NEW", "m", "Runs", "");
        assert_eq!(e.code(), "STORE_API_ERROR");
        assert!(!e.is_transient());
    }

    #[test]
    fn names_field_and_value_from_the_request() {
        let body = serde_json::json!({"records": [{"id": "rec00000000000000", "fields": {
            "Status": "Processing", "Parse Status": "ok", "Count": "abc"}}]});
        let e = StoreError::from_airtable_request(
            422,
            "INVALID_MULTIPLE_CHOICE_OPTIONS",
            "Insufficient permissions to create new select option \"\"Processing\"\"",
            "Run Requests",
            "",
            Some(&body),
        );
        let text = e.to_string();
        assert!(
            text.starts_with(
                "table \"Run Requests\", field \"Status\": \"Processing\" is not one of the field's options"
            ),
            "{text}"
        );
        assert!(text.contains("(Airtable: Insufficient permissions to create new select option \"\"Processing\"\")"), "{text}");

        // A real UNKNOWN_FIELD_NAME message names the field without quotes.
        let body = serde_json::json!({"records": [{"fields": {"NON_EXISTING": 1}}]});
        let e = StoreError::from_airtable_request(
            422,
            "UNKNOWN_FIELD_NAME",
            "Could not find a field named NON_EXISTING",
            "Runs",
            "",
            Some(&body),
        );
        assert!(
            matches!(e, StoreError::UnknownField { ref field, .. } if field == "NON_EXISTING"),
            "{e:?}"
        );

        let e = StoreError::from_airtable_request(
            422,
            "UNKNOWN_FIELD_NAME",
            "Could not find a field named NON_EXISTING",
            "Runs",
            "",
            None,
        );
        assert!(
            matches!(e, StoreError::UnknownField { ref field, .. } if field == "NON_EXISTING"),
            "{e:?}"
        );

        let body = serde_json::json!({"records": [{"fields": {"Count": "abc", "Key": "k"}}]});
        let e = StoreError::from_airtable_request(
            422,
            "INVALID_VALUE_FOR_COLUMN",
            "Field \"Count\" cannot accept the provided value",
            "Runs",
            "",
            Some(&body),
        );
        let text = e.to_string();
        assert!(text.contains("field \"Count\" of table \"Runs\""), "{text}");
        assert!(
            text.contains("\"abc\"") && text.contains("cannot accept the provided value"),
            "{text}"
        );
    }
}
