//! `e1`: start an experiment from a succeeded baseline run (synchronous, 201).

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::Value;

use super::input::{object, record_id_field};
use super::{Hook, Prepared, body_of};
use crate::error::ApiError;
use crate::scenarios::Deps;
use crate::scenarios::experiments::{self, Instantiate};

pub struct E1Hook(pub Arc<Deps>);

#[async_trait::async_trait]
impl Hook for E1Hook {
    fn prepare(self: Arc<Self>, body: &Value) -> Result<Prepared, ApiError> {
        object(body)?;
        let request = Instantiate {
            run_id: record_id_field(body, "run_id")?,
            run: None,
        };
        Ok(Prepared::respond(move |_| async move {
            let instantiated = experiments::instantiate(&self.0, &request, false).await?;
            Ok((StatusCode::CREATED, body_of(&instantiated)))
        }))
    }
}
