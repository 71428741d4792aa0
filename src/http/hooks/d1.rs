//! `d1`: record an attempt event for a finished single-meeting run (synchronous; 201 when recorded,
//! 200 when skipped).

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::Value;

use super::input::{object, record_id_field};
use super::{Hook, Prepared, body_of};
use crate::error::ApiError;
use crate::scenarios::Deps;
use crate::scenarios::experiments::{self, D1Outcome, RecordAttempt};

pub struct D1Hook(pub Arc<Deps>);

#[async_trait::async_trait]
impl Hook for D1Hook {
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        object(body)?;
        let request = RecordAttempt {
            run_id: record_id_field(body, "run_id")?,
            known: None,
        };
        Ok(Prepared::respond(move |_| async move {
            let outcome = experiments::record_attempt(&self.0, &request).await?;
            let status = match outcome {
                D1Outcome::Recorded { .. } => StatusCode::CREATED,
                D1Outcome::Skipped { .. } => StatusCode::OK,
            };
            Ok((status, body_of(&outcome)))
        }))
    }
}
