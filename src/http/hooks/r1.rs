//! `r1`: queue the run of one Run Request (job `single`, 202).

use std::sync::Arc;

use serde_json::Value;

use super::input::{object, record_id_field};
use super::{Hook, Prepared};
use crate::error::ApiError;
use crate::scenarios::JobSpec;
use crate::scenarios::single::RunRequestRef;

pub struct R1Hook;

#[async_trait::async_trait]
impl Hook for R1Hook {
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        object(body)?;
        Ok(Prepared::job(JobSpec::Single(RunRequestRef {
            run_request_id: record_id_field(body, "run_request_id")?,
        })))
    }
}
