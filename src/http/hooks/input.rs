//! Reading webhook bodies into the scenarios' typed requests: every field error names its JSON
//! pointer and says what to send instead. Record ids are parsed here, once, into `RecordId`s.

use coach_store::RecordId;
use serde_json::{Value, json};

use crate::error::ApiError;

/// A required record id (`rec` + 14 letters/digits) at `/{field}`.
pub fn record_id_field(body: &Value, field: &str) -> Result<RecordId, ApiError> {
    let pointer = format!("/{field}");
    match body.get(field) {
        None | Some(Value::Null) => Err(ApiError::unprocessable(
            "MISSING_FIELD",
            format!("`{field}` is required"),
        )
        .with_details(json!({ "pointer": pointer }))),
        Some(Value::String(s)) => record_id(s, &pointer),
        Some(_) => Err(ApiError::unprocessable(
            "WRONG_TYPE",
            format!("`{field}` must be a string record id"),
        )
        .with_details(json!({ "pointer": pointer }))),
    }
}

/// Checks one record id; `pointer` says where it was.
pub fn record_id(s: &str, pointer: &str) -> Result<RecordId, ApiError> {
    RecordId::parse(s).map_err(|_| {
        ApiError::bad_request(
            "INVALID_RECORD_ID",
            format!(
                "`{pointer}` is not a record id: ids are `rec` followed by 14 letters or digits"
            ),
        )
        .with_details(json!({ "pointer": pointer }))
    })
}

/// An optional string field.
pub fn optional_str<'a>(body: &'a Value, field: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::unprocessable(
            "WRONG_TYPE",
            format!("`{field}` must be a string"),
        )
        .with_details(json!({ "pointer": format!("/{field}") }))),
    }
}

/// An optional boolean field.
pub fn optional_bool(body: &Value, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::unprocessable(
            "WRONG_TYPE",
            format!("`{field}` must be true or false"),
        )
        .with_details(json!({ "pointer": format!("/{field}") }))),
    }
}

/// The body must be a JSON object.
pub fn object(body: &Value) -> Result<(), ApiError> {
    if body.is_object() {
        Ok(())
    } else {
        Err(
            ApiError::unprocessable("WRONG_TYPE", "the body must be a JSON object")
                .with_details(json!({ "pointer": "" })),
        )
    }
}
