//! Deliveries on Postgres (see the SQLite side, `journal::deliveries`, for the contract). Intake goes
//! through the writer, so a batch of deliveries shares one commit.

use deadpool_postgres::ClientWrapper;
use serde_json::Value;

use super::{PgJournal, execute, op, pg_err, query_opt, release_dead_reservations};
use crate::journal::{
    Delivery, DeliveryOutcome, Journal, JournalError, NewDelivery, NewJob, now_ms,
};

impl PgJournal {
    pub(crate) async fn accept_signed_delivery(
        &self,
        j: &Journal,
        mut delivery: NewDelivery,
        signed_key: Option<String>,
        mut job: NewJob,
        status: u16,
        answer: impl FnOnce(&str) -> Value + Send + 'static,
    ) -> Result<(DeliveryOutcome, String), JournalError> {
        let route = signed_key.clone().unwrap_or_else(|| delivery.key.clone());
        let outcome = self
            .write(
                j,
                &route,
                op(move |c| {
                    Box::pin(async move {
                        let signed = match resolve(c, signed_key, &mut delivery).await? {
                            Ok(signed) => signed,
                            Err(outcome) => return Ok((outcome, delivery.key)),
                        };
                        if let Some(outcome) = existing(c, &delivery).await? {
                            record(c, &signed, &delivery).await?;
                            return Ok((outcome, delivery.key));
                        }
                        record(c, &signed, &delivery).await?;
                        if job.delivery_key.is_some() {
                            job.delivery_key = Some(delivery.key.clone());
                        }
                        let (job_id, created) = super::jobs::insert_job(c, &job).await?;
                        let answer = answer(&job_id);
                        let answer_text = serde_json::to_string(&answer)?;
                        let inserted = execute(
                            c,
                            "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, response_status, response_body, job_id)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING",
                            &[
                                &delivery.key,
                                &delivery.scenario,
                                &delivery.body_hash,
                                &delivery.body,
                                &now_ms(),
                                &i32::from(status),
                                &answer_text,
                                &job_id,
                            ],
                        )
                        .await?;
                        if inserted == 0 {
                            // Another instance journaled the same key meanwhile (this insert waited
                            // for its commit): its answer stands, and the job made here goes.
                            if created {
                                execute(c, "DELETE FROM jobs WHERE id = $1", &[&job_id]).await?;
                            }
                            let outcome = existing(c, &delivery)
                                .await?
                                .unwrap_or(DeliveryOutcome::InProgress);
                            return Ok((outcome, delivery.key));
                        }
                        if created {
                            Ok((DeliveryOutcome::New, delivery.key))
                        } else {
                            Ok((DeliveryOutcome::Replayed { status, body: answer }, delivery.key))
                        }
                    })
                }),
            )
            .await?;
        if outcome.0 == DeliveryOutcome::New {
            j.jobs_queued();
        }
        Ok(outcome)
    }

    pub(crate) async fn reserve_signed_delivery(
        &self,
        j: &Journal,
        mut delivery: NewDelivery,
        signed_key: Option<String>,
    ) -> Result<(DeliveryOutcome, String), JournalError> {
        let owner = self.incarnation().to_owned();
        let route = signed_key.clone().unwrap_or_else(|| delivery.key.clone());
        self.write(
            j,
            &route,
            op(move |c| {
                Box::pin(async move {
                    let signed = match resolve(c, signed_key, &mut delivery).await? {
                        Ok(signed) => signed,
                        Err(outcome) => return Ok((outcome, delivery.key)),
                    };
                    record(c, &signed, &delivery).await?;
                    if let Some(outcome) = existing(c, &delivery).await? {
                        return Ok((outcome, delivery.key));
                    }
                    let inserted = execute(
                        c,
                        "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, owner)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
                        &[
                            &delivery.key,
                            &delivery.scenario,
                            &delivery.body_hash,
                            &delivery.body,
                            &now_ms(),
                            &owner,
                        ],
                    )
                    .await?;
                    if inserted == 0 {
                        let outcome = existing(c, &delivery)
                            .await?
                            .unwrap_or(DeliveryOutcome::InProgress);
                        return Ok((outcome, delivery.key));
                    }
                    Ok((DeliveryOutcome::New, delivery.key))
                })
            }),
        )
        .await
    }

    /// Releases the reservations of instances that are gone (not this one, not seen for a lease
    /// period); live neighbours keep theirs.
    pub(crate) async fn release_orphaned(&self, j: &Journal) -> Result<usize, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let released = release_dead_reservations(&client, self.incarnation(), now_ms()).await?;
        Ok(released as usize)
    }

    pub(crate) fn release_delivery_detached(&self, j: &Journal, key: String) {
        if j.check_open().is_err() {
            return;
        }
        self.write_detached(&key.clone(), move |c| {
            Box::pin(async move {
                execute(
                    c,
                    "DELETE FROM deliveries WHERE key = $1 AND response_status IS NULL",
                    &[&key],
                )
                .await
                .is_ok()
            })
        });
    }

    pub(crate) async fn complete_delivery(
        &self,
        j: &Journal,
        key: String,
        status: u16,
        text: String,
    ) -> Result<(), JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE deliveries SET response_status = $2, response_body = $3 WHERE key = $1",
            &[&key, &i32::from(status), &text],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn release_delivery(
        &self,
        j: &Journal,
        key: String,
    ) -> Result<(), JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        execute(
            &client,
            "DELETE FROM deliveries WHERE key = $1 AND response_status IS NULL",
            &[&key],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn delivery_for_job(
        &self,
        j: &Journal,
        job_id: String,
    ) -> Result<Option<Delivery>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT d.key, d.scenario, d.body, d.received_at, d.response_status, d.job_id
             FROM deliveries d JOIN jobs j ON j.delivery_key = d.key WHERE j.id = $1",
            &[&job_id],
        )
        .await?;
        Ok(row.map(|row| {
            let body: String = row.get(2);
            Delivery {
                key: row.get(0),
                scenario: row.get(1),
                body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
                received_at: row.get(3),
                response_status: row
                    .get::<_, Option<i32>>(4)
                    .and_then(|s| u16::try_from(s).ok()),
                job_id: row.get(5),
            }
        }))
    }

    pub(crate) async fn delivery_count(&self, j: &Journal) -> Result<u64, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let row = client
            .query_one("SELECT COUNT(*) FROM deliveries", &[])
            .await
            .map_err(pg_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

async fn existing(
    c: &ClientWrapper,
    delivery: &NewDelivery,
) -> Result<Option<DeliveryOutcome>, JournalError> {
    let row = query_opt(
        c,
        "SELECT body_hash, response_status, response_body FROM deliveries WHERE key = $1",
        &[&delivery.key],
    )
    .await?;
    Ok(row.map(|row| {
        let hash: String = row.get(0);
        let status: Option<i32> = row.get(1);
        let body: Option<String> = row.get(2);
        if hash != delivery.body_hash {
            DeliveryOutcome::KeyReused
        } else {
            match (status.and_then(|s| u16::try_from(s).ok()), body) {
                (Some(status), Some(body)) => DeliveryOutcome::Replayed {
                    status,
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                },
                _ => DeliveryOutcome::InProgress,
            }
        }
    }))
}

/// The signed-content row of the Make scheme (see `journal::deliveries::SignedContent`): `Ok(None)`
/// when there is nothing to record, `Ok(Some(key))` when this content is new.
async fn resolve(
    c: &ClientWrapper,
    signed_key: Option<String>,
    delivery: &mut NewDelivery,
) -> Result<Result<Option<String>, DeliveryOutcome>, JournalError> {
    let Some(signed_key) = signed_key else {
        return Ok(Ok(None));
    };
    let row = query_opt(
        c,
        "SELECT response_body FROM deliveries WHERE key = $1",
        &[&signed_key],
    )
    .await?;
    match row.map(|r| r.get::<_, Option<String>>(0)) {
        None => Ok(Ok(Some(signed_key))),
        Some(None) => Ok(Err(DeliveryOutcome::InProgress)),
        Some(Some(answer)) => {
            let first = serde_json::from_str::<Value>(&answer)?;
            if let Some(first) = first["delivery_key"].as_str() {
                first.clone_into(&mut delivery.key);
            }
            Ok(Ok(None))
        }
    }
}

async fn record(
    c: &ClientWrapper,
    signed_key: &Option<String>,
    delivery: &NewDelivery,
) -> Result<(), JournalError> {
    let Some(signed_key) = signed_key else {
        return Ok(());
    };
    let answer = serde_json::to_string(&serde_json::json!({ "delivery_key": delivery.key }))?;
    let inserted = execute(
        c,
        "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, response_status, response_body)
         VALUES ($1, $2, $1, '', $3, 200, $4) ON CONFLICT (key) DO NOTHING",
        &[signed_key, &delivery.scenario, &now_ms(), &answer],
    )
    .await?;
    if inserted == 0 {
        // The same signed content reached another instance at the same moment under another key:
        // this operation is rolled back and the sender's retry is decided under the first key.
        return Err(JournalError::Unavailable(
            "the same signed content is being journaled by another instance; retry shortly".into(),
        ));
    }
    Ok(())
}
