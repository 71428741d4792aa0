//! `a2` and `s3`: queue the build of a Baseline Pack (job `baseline`, 202).

use std::sync::Arc;

use serde_json::Value;

use super::input::{object, record_id_field};
use super::{Hook, Prepared};
use crate::error::ApiError;
use crate::scenarios::JobSpec;
use crate::scenarios::baseline::BuildPack;

pub struct BuildHook;

#[async_trait::async_trait]
impl Hook for BuildHook {
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        object(body)?;
        Ok(Prepared::job(JobSpec::Baseline(BuildPack {
            baseline_pack_id: record_id_field(body, "baseline_pack_id")?,
        })))
    }
}
