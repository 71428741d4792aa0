//! `a1`: create a Baseline Pack (synchronous, 201).

use std::sync::Arc;

use actix_web::http::StatusCode;
use coach_store::tables::BaselinePackStatus;
use serde_json::{Value, json};

use super::input::{object, optional_bool, optional_str, record_id, record_id_field};
use super::{Hook, Prepared};
use crate::error::ApiError;
use crate::scenarios::Deps;
use crate::scenarios::baseline::{self, NewPack};

pub struct A1Hook(pub Arc<Deps>);

/// Reads A1's body: a user and exactly 3 distinct transcript ids.
pub fn parse(body: &Value) -> Result<NewPack, ApiError> {
    object(body)?;
    let user_id = record_id_field(body, "user_id")?;
    let ids = match body.get("transcript_ids") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(ApiError::unprocessable(
                "MISSING_FIELD",
                "`transcript_ids` is required: a list of 3 transcript record ids",
            )
            .with_details(json!({"pointer": "/transcript_ids"})));
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "WRONG_TYPE",
                "`transcript_ids` must be a list of 3 transcript record ids",
            )
            .with_details(json!({"pointer": "/transcript_ids"})));
        }
    };
    if ids.len() != 3 {
        return Err(ApiError::unprocessable(
            "WRONG_TRANSCRIPT_COUNT",
            format!(
                "a baseline pack takes exactly 3 transcripts; {} were given",
                ids.len()
            ),
        )
        .with_details(json!({"pointer": "/transcript_ids", "count": ids.len()})));
    }
    let mut transcript_ids = Vec::with_capacity(3);
    for (i, id) in ids.iter().enumerate() {
        let pointer = format!("/transcript_ids/{i}");
        let id = id.as_str().ok_or_else(|| {
            ApiError::unprocessable("WRONG_TYPE", "each transcript id must be a string")
                .with_details(json!({"pointer": pointer}))
        })?;
        let id = record_id(id, &pointer)?;
        if transcript_ids.contains(&id) {
            return Err(ApiError::unprocessable(
                "DUPLICATE_TRANSCRIPT",
                "the 3 transcripts must be distinct",
            )
            .with_details(json!({"pointer": pointer})));
        }
        transcript_ids.push(id);
    }
    let name = optional_str(body, "name")?.map(str::to_owned);
    let build = optional_bool(body, "build")?.unwrap_or(false);
    Ok(NewPack {
        user_id,
        transcript_ids,
        name,
        build,
    })
}

#[async_trait::async_trait]
impl Hook for A1Hook {
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        let request = parse(body)?;
        Ok(Prepared::respond(move |delivery| async move {
            let created = baseline::create_pack(&self.0, &delivery, &request).await?;
            let mut body = json!({
                "baseline_pack_id": created.pack.id,
                "status": BaselinePackStatus::Queued.as_str(),
            });
            if let Some(run_id) = created.build_run_id {
                body["status_url"] = json!(format!("/v1/runs/{run_id}"));
                body["run_id"] = json!(run_id);
            }
            Ok((StatusCode::CREATED, body))
        }))
    }
}
