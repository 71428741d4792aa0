//! Deliveries: one row per idempotency key, holding the first answer given for it.
//!
//! Asynchronous hooks (A2, S3, R1) answer 202 at once, so the delivery, its job and its answer are
//! written in one operation. Synchronous hooks (A1, D1, E1, S1) must do their work before they can
//! answer: they first *reserve* the key (a row without an answer), do the work, then *complete* it.
//! A repeat that finds a reservation gets "in progress" (409, retry later), the way Stripe treats
//! concurrent requests with one idempotency key; a transient failure *releases* the key so the
//! sender's retry runs the work again.
//!
//! A reservation must never outlive the work it stands for, or every retry of its delivery would get
//! "in progress" forever. Two cases end the work without an answer:
//! - the request is dropped inside a running worker (the client hung up, the server stopped or the
//!   handler panicked): the HTTP side holds a guard that releases the reservation when it is dropped
//!   unanswered ([`Journal::release_delivery_detached`]);
//! - the process dies (`kill -9`, power loss): nothing in it can run any more, so each reservation
//!   carries the incarnation of the journal handle that made it, and the next worker releases, before
//!   it accepts a request, every reservation that is not its own ([`Journal::release_orphaned`]).
//!   One process owns a SQLite journal, so a reservation of another incarnation is dead, not slow;
//!   no lease timer has to guess how long the work may take.
//!
//! A released delivery runs again on the sender's retry. The synchronous scenarios write with upserts
//! on keys derived from the delivery key, so the second run updates what the first one wrote.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{Journal, JournalError, NewJob, now_ms};

/// A delivery about to be journaled.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub key: String,
    pub scenario: String,
    pub body_hash: String,
    pub body: String,
}

/// What the journal says about a delivery key.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// First time this key is seen: it is now journaled (with its job and answer, when given).
    New,
    /// Seen before and answered: answer the same again.
    Replayed { status: u16, body: Value },
    /// Seen before, the first request is still being worked on.
    InProgress,
    /// The key was used before with a different body.
    KeyReused,
}

/// A journaled delivery, for the admin views.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub key: String,
    pub scenario: String,
    pub body: Value,
    pub received_at: i64,
    pub response_status: Option<u16>,
    pub job_id: Option<String>,
}

/// The body of an answer kept as JSON text: the first answer of a delivery that joined an active
/// job, and every replay of a stored one, so both give the same body. The text comes from the
/// caller's `answer`, which makes JSON; should it not be, the body is `null` rather than an error
/// (the operation that gave it has already written, see `call_checks_first`).
pub(super) fn answer_body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl Journal {
    /// Journals an asynchronous delivery with its job and the answer to give, unless the key was seen.
    /// `answer` gives the answer's JSON text for the id of the job that will do the work: the new
    /// job's, or, when an active job already has the same dedupe key, that job's (no second job is
    /// created). It is text because that is what the journal stores and the caller sends.
    pub async fn accept_delivery(
        &self,
        delivery: NewDelivery,
        job: NewJob,
        status: u16,
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> Result<DeliveryOutcome, JournalError> {
        self.accept_signed_delivery(delivery, None, job, status, answer)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Journal::accept_delivery`] for a delivery whose delivery key is not covered by its signature
    /// (the Make scheme): `signed_key` names the signed content, and the content's first delivery key
    /// is used in place of `delivery.key` (see [`SignedContent`]). All of it is one journal operation.
    /// Returns the outcome and the delivery key it was decided under.
    ///
    /// A new delivery is the common case, so the operation inserts first and reads only when the
    /// key was taken: the delivery row goes in with the answer for the new job (built, like the job's
    /// payload text, before the operation reaches the writer thread), then the job; if an active job
    /// with the same dedupe key took the place of the new one, the row's answer is rewritten to name
    /// that job. The writer thread does no lookup and no JSON work for a new delivery.
    pub async fn accept_signed_delivery(
        &self,
        mut delivery: NewDelivery,
        signed_key: Option<String>,
        mut job: NewJob,
        status: u16,
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> Result<(DeliveryOutcome, String), JournalError> {
        if let Some(pg) = self.pg() {
            return pg
                .accept_signed_delivery(self, delivery, signed_key, job, status, answer)
                .await;
        }
        let new_answer_text = answer(&job.id);
        let job_text = super::jobs::JobText::of(&job)?;
        // Nothing is written before the signed-content lookup; after the first insert, only an I/O
        // error can fail the operation, and then the writer rolls back its whole batch and every
        // caller in it retries, so the operation needs no savepoint.
        let outcome = self.call_checks_first(move |conn| {
            let signed = match SignedContent::resolve(conn, signed_key, &mut delivery)? {
                Ok(signed) => signed,
                Err(outcome) => return Ok((outcome, delivery.key)),
            };
            if job.delivery_key.is_some() {
                job.delivery_key = Some(delivery.key.clone());
            }
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, response_status, response_body, job_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![
                    delivery.key,
                    delivery.scenario,
                    delivery.body_hash,
                    delivery.body,
                    now_ms(),
                    status,
                    new_answer_text,
                    job.id
                ])?;
            if inserted == 0 {
                let outcome = existing(conn, &delivery)?.ok_or_else(|| {
                    JournalError::Corrupt(format!("delivery {} is neither new nor journaled", delivery.key))
                })?;
                signed.record(conn, &delivery)?;
                return Ok((outcome, delivery.key));
            }
            signed.record(conn, &delivery)?;
            let (job_id, created) = super::jobs::insert_job_text(conn, &job, &job_text)?;
            if created {
                return Ok((DeliveryOutcome::New, delivery.key));
            }
            let answer = answer(&job_id);
            conn.prepare_cached("UPDATE deliveries SET response_body = ?2, job_id = ?3 WHERE key = ?1")?
                .execute(params![delivery.key, answer, job_id])?;
            let body = answer_body(&answer);
            Ok((DeliveryOutcome::Replayed { status, body }, delivery.key))
        })
        .await?;
        if outcome.0 == DeliveryOutcome::New {
            self.jobs_queued();
        }
        Ok(outcome)
    }

    /// Reserves a key for a synchronous hook. `New` means the caller must do the work and then call
    /// [`Journal::complete_delivery`] or [`Journal::release_delivery`].
    pub async fn reserve_delivery(
        &self,
        delivery: NewDelivery,
    ) -> Result<DeliveryOutcome, JournalError> {
        self.reserve_signed_delivery(delivery, None)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Journal::reserve_delivery`] for a delivery of the Make scheme, like
    /// [`Journal::accept_signed_delivery`]. The caller completes or releases the returned key.
    pub async fn reserve_signed_delivery(
        &self,
        mut delivery: NewDelivery,
        signed_key: Option<String>,
    ) -> Result<(DeliveryOutcome, String), JournalError> {
        if let Some(pg) = self.pg() {
            return pg.reserve_signed_delivery(self, delivery, signed_key).await;
        }
        let owner = self.incarnation().to_owned();
        self.call(move |conn| {
            let signed = match SignedContent::resolve(conn, signed_key, &mut delivery)? {
                Ok(signed) => signed,
                Err(outcome) => return Ok((outcome, delivery.key)),
            };
            signed.record(conn, &delivery)?;
            if let Some(outcome) = existing(conn, &delivery)? {
                return Ok((outcome, delivery.key));
            }
            conn.prepare_cached(
                "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                delivery.key,
                delivery.scenario,
                delivery.body_hash,
                delivery.body,
                now_ms(),
                owner
            ])?;
            Ok((DeliveryOutcome::New, delivery.key))
        })
        .await
    }

    /// Releases, at start, the reservations of every other incarnation: their work died with the
    /// process that did it. Returns how many were released.
    pub async fn release_orphaned(&self) -> Result<usize, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.release_orphaned(self).await;
        }
        let me = self.incarnation().to_owned();
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM deliveries WHERE response_status IS NULL AND (owner IS NULL OR owner != ?1)",
                )?
                .execute([me])?)
        })
        .await
    }

    /// [`Journal::release_delivery`] without waiting, for a guard's `Drop`. Operations run in the
    /// order they are sent, so a retry that arrives after the drop finds the key free.
    pub fn release_delivery_detached(&self, key: String) {
        if let Some(pg) = self.pg() {
            return pg.release_delivery_detached(self, key);
        }
        self.send_detached(move |conn| {
            conn.prepare_cached("DELETE FROM deliveries WHERE key = ?1 AND response_status IS NULL")
                .and_then(|mut stmt| stmt.execute([&key]))
                .is_ok()
        });
    }

    /// Stores the answer of a reserved delivery.
    pub async fn complete_delivery(
        &self,
        key: String,
        status: u16,
        answer: Value,
    ) -> Result<(), JournalError> {
        let text = serde_json::to_string(&answer)?;
        if let Some(pg) = self.pg() {
            return pg.complete_delivery(self, key, status, text).await;
        }
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET response_status = ?2, response_body = ?3 WHERE key = ?1",
            )?
            .execute(params![key, status, text])?;
            Ok(())
        })
        .await
    }

    /// Forgets a reserved delivery whose work failed transiently, so that a retry runs it again.
    pub async fn release_delivery(&self, key: String) -> Result<(), JournalError> {
        if let Some(pg) = self.pg() {
            return pg.release_delivery(self, key).await;
        }
        self.call(move |conn| {
            conn.prepare_cached(
                "DELETE FROM deliveries WHERE key = ?1 AND response_status IS NULL",
            )?
            .execute([key])?;
            Ok(())
        })
        .await
    }

    /// The delivery that created a job, if any.
    pub async fn delivery_for_job(&self, job_id: String) -> Result<Option<Delivery>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.delivery_for_job(self, job_id).await;
        }
        self.call(move |conn| {
            conn.query_row(
                "SELECT d.key, d.scenario, d.body, d.received_at, d.response_status, d.job_id
                 FROM deliveries d JOIN jobs j ON j.delivery_key = d.key WHERE j.id = ?1",
                [job_id],
                |row| {
                    let body: String = row.get(2)?;
                    Ok(Delivery {
                        key: row.get(0)?,
                        scenario: row.get(1)?,
                        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
                        received_at: row.get(3)?,
                        response_status: row.get(4)?,
                        job_id: row.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(JournalError::from)
        })
        .await
    }

    /// Number of journaled deliveries (for benchmarks and tests).
    pub async fn delivery_count(&self) -> Result<u64, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.delivery_count(self).await;
        }
        self.call(|conn| {
            Ok(conn.query_row("SELECT COUNT(*) FROM deliveries", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
        .await
    }
}

fn existing(
    conn: &rusqlite::Connection,
    delivery: &NewDelivery,
) -> Result<Option<DeliveryOutcome>, JournalError> {
    let row: Option<(String, Option<u16>, Option<String>)> = conn
        .prepare_cached(
            "SELECT body_hash, response_status, response_body FROM deliveries WHERE key = ?1",
        )?
        .query_row([&delivery.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(row.map(|(hash, status, body)| {
        if hash != delivery.body_hash {
            DeliveryOutcome::KeyReused
        } else {
            match (status, body) {
                (Some(status), Some(body)) => DeliveryOutcome::Replayed {
                    status,
                    body: answer_body(&body),
                },
                _ => DeliveryOutcome::InProgress,
            }
        }
    }))
}

/// What a Make-scheme signature covers (timestamp and raw body) does not include the delivery key, so
/// a captured request re-sent with a new `X-Coach-Delivery` or `Idempotency-Key` must not become a new
/// delivery. The signed content therefore gets a row of its own (key `{scenario}:signed:{hash}`, answer
/// `{"delivery_key": …}`) naming the delivery key it first came with, and a repeat of that content is
/// decided as that key. The row is written in the same operation as the delivery, so it costs no
/// journal round trip of its own and is durable exactly when the delivery is.
struct SignedContent {
    /// The signed-content key when this content is new and its row is still to be written.
    new_key: Option<String>,
}

impl SignedContent {
    /// Points `delivery` at the key its signed content first came with. `Err(outcome)` when that
    /// cannot be decided yet (a row written before this was one operation, still reserved).
    fn resolve(
        conn: &rusqlite::Connection,
        signed_key: Option<String>,
        delivery: &mut NewDelivery,
    ) -> Result<Result<SignedContent, DeliveryOutcome>, JournalError> {
        let Some(signed_key) = signed_key else {
            return Ok(Ok(SignedContent { new_key: None }));
        };
        let row: Option<Option<String>> = conn
            .prepare_cached("SELECT response_body FROM deliveries WHERE key = ?1")?
            .query_row([&signed_key], |r| r.get(0))
            .optional()?;
        match row {
            None => Ok(Ok(SignedContent {
                new_key: Some(signed_key),
            })),
            Some(None) => Ok(Err(DeliveryOutcome::InProgress)),
            Some(Some(answer)) => {
                let first = serde_json::from_str::<Value>(&answer)?;
                if let Some(first) = first["delivery_key"].as_str() {
                    first.clone_into(&mut delivery.key);
                }
                Ok(Ok(SignedContent { new_key: None }))
            }
        }
    }

    /// Writes the signed content's row, naming the key `delivery` is decided under.
    fn record(
        &self,
        conn: &rusqlite::Connection,
        delivery: &NewDelivery,
    ) -> Result<(), JournalError> {
        let Some(signed_key) = &self.new_key else {
            return Ok(());
        };
        let answer = serde_json::to_string(&serde_json::json!({ "delivery_key": delivery.key }))?;
        conn.prepare_cached(
            "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, response_status, response_body)
             VALUES (?1, ?2, ?1, '', ?3, 200, ?4)",
        )?
        .execute(params![signed_key, delivery.scenario, now_ms(), answer])?;
        Ok(())
    }
}
