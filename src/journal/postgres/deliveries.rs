//! Deliveries on Postgres (see the SQLite side, `journal::deliveries`, for the contract). Intake goes
//! through the writer, so a batch of deliveries shares one commit.

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{PgJournal, execute, op, pg_err, query, query_opt, release_dead_reservations};
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
        answer: impl FnOnce(&str) -> String + Send + 'static,
    ) -> Result<(DeliveryOutcome, String), JournalError> {
        if signed_key.is_none() && !has_nul(&delivery, &job) {
            let (reply, answered) = oneshot::channel();
            self.send_intake(
                j,
                Intake {
                    delivery,
                    job,
                    status,
                    answer: Box::new(answer),
                    reply,
                },
            )?;
            let outcome = answered.await.map_err(|_| {
                JournalError::Unavailable("the journal writer has stopped".into())
            })??;
            if outcome.0 == DeliveryOutcome::New {
                j.jobs_queued();
            }
            return Ok(outcome);
        }
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
                        let answer_text = answer(&job_id);
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
                            let body = crate::journal::deliveries::answer_body(&answer_text);
                            Ok((DeliveryOutcome::Replayed { status, body }, delivery.key))
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
    Ok(row.map(|row| Seen::of(&row, 0).outcome(&delivery.body_hash)))
}

/// A journaled delivery as a repeat of its key sees it.
#[derive(Clone)]
struct Seen {
    body_hash: String,
    status: Option<i32>,
    body: Option<String>,
}

impl Seen {
    /// From the columns `body_hash, response_status, response_body` starting at `at`.
    fn of(row: &tokio_postgres::Row, at: usize) -> Seen {
        Seen {
            body_hash: row.get(at),
            status: row.get(at + 1),
            body: row.get(at + 2),
        }
    }

    /// The answer to a delivery of the same key whose body hashes to `body_hash`.
    fn outcome(&self, body_hash: &str) -> DeliveryOutcome {
        if self.body_hash != body_hash {
            return DeliveryOutcome::KeyReused;
        }
        match (self.status.and_then(|s| u16::try_from(s).ok()), &self.body) {
            (Some(status), Some(body)) => DeliveryOutcome::Replayed {
                status,
                body: crate::journal::deliveries::answer_body(body),
            },
            _ => DeliveryOutcome::InProgress,
        }
    }
}

/// Postgres refuses NUL in text; such a delivery goes through the one-by-one path, where it fails
/// alone instead of failing the multi-row statements of its neighbours.
fn has_nul(delivery: &NewDelivery, job: &NewJob) -> bool {
    [
        &delivery.key,
        &delivery.body,
        &delivery.body_hash,
        &delivery.scenario,
        &job.id,
        &job.kind,
    ]
    .iter()
    .any(|t| t.contains('\0'))
        || [
            &job.dedupe_key,
            &job.parent_id,
            &job.replay_of,
            &job.request_id,
        ]
        .iter()
        .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
}

pub(super) type Accepted = Result<(DeliveryOutcome, String), JournalError>;

/// A delivery with its job, on its way to the writer.
pub(crate) struct Intake {
    pub(super) delivery: NewDelivery,
    pub(super) job: NewJob,
    pub(super) status: u16,
    pub(super) answer: Box<dyn FnOnce(&str) -> String + Send>,
    pub(super) reply: oneshot::Sender<Accepted>,
}

/// An [`Intake`] without its reply channel.
pub(super) struct IntakeRequest {
    delivery: NewDelivery,
    job: NewJob,
    status: u16,
    answer: Box<dyn FnOnce(&str) -> String + Send>,
}

impl Intake {
    pub(super) fn split(self) -> (IntakeRequest, oneshot::Sender<Accepted>) {
        let Intake {
            delivery,
            job,
            status,
            answer,
            reply,
        } = self;
        (
            IntakeRequest {
                delivery,
                job,
                status,
                answer,
            },
            reply,
        )
    }
}

/// Looks up the deliveries already journaled under the keys and inserts the jobs of the others (in
/// dedupe-key order, so that two batches meeting on the same keys wait for each other in one
/// direction and never deadlock). Rows: `(true, key, body_hash, status, body)` for a journaled
/// delivery, `(false, job id, …)` for a job inserted.
const INSERT_JOBS: &str = "WITH seen AS (
        SELECT key, body_hash, response_status, response_body FROM deliveries WHERE key = ANY($1)),
    ins AS (
        INSERT INTO jobs (id, kind, scenario, payload, status, attempts, next_attempt_at, delivery_key,
            dedupe_key, parent_id, replay_of, options, created_at, updated_at, request_id)
        SELECT t.id, t.kind, t.scenario, t.payload, 'queued', 0, t.run_at, t.delivery_key,
            t.dedupe_key, t.parent_id, t.replay_of, t.options, $13, $13, t.request_id
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
            AS t(dkey, id, kind, scenario, payload, run_at, delivery_key, dedupe_key, parent_id,
                 replay_of, options, request_id)
        WHERE NOT EXISTS (SELECT 1 FROM seen WHERE seen.key = t.dkey)
        ORDER BY t.dedupe_key, t.id
        ON CONFLICT DO NOTHING
        RETURNING id)
    SELECT true, key, body_hash, response_status, response_body FROM seen
    UNION ALL SELECT false, id, NULL, NULL, NULL FROM ins";

/// The active job of each dedupe key (run after [`INSERT_JOBS`] in the same transaction: it sees
/// the jobs just inserted, and those of other transactions that committed while the insert waited).
const ACTIVE_JOBS: &str = "SELECT dedupe_key, id FROM jobs WHERE dedupe_key = ANY($1)
    AND status IN ('queued', 'running', 'retry_scheduled')";

/// Inserts the deliveries (in key order) with their answers; a key another instance journaled
/// meanwhile (the insert waited for its commit) is not inserted, and the job made for it here
/// (`$8`, when this batch created it) is deleted in the same statement. Returns the keys inserted.
const INSERT_DELIVERIES: &str = "WITH ins AS (
        INSERT INTO deliveries (key, scenario, body_hash, body, received_at, response_status,
            response_body, job_id)
        SELECT t.key, t.scenario, t.body_hash, t.body, $9, t.status, t.response_body, t.job_id
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[],
                    $7::text[])
            AS t(key, scenario, body_hash, body, status, response_body, job_id)
        ORDER BY t.key
        ON CONFLICT (key) DO NOTHING
        RETURNING key),
    gone AS (
        DELETE FROM jobs WHERE id IN (
            SELECT t.created FROM unnest($1::text[], $8::text[]) AS t(key, created)
            WHERE t.created IS NOT NULL AND t.key NOT IN (SELECT key FROM ins)))
    SELECT key FROM ins";

/// Journals a run of deliveries with their jobs in a few multi-row statements — the same outcome,
/// for each, as journaling them one after the other: a key seen before answers as it did; a dedupe
/// key an active job holds joins that job; a key repeated within the run answers as a repeat of its
/// first occurrence; a key another instance journaled meanwhile answers with that instance's
/// answer. `Err` when the statements failed as a whole (the caller rolls them back).
///
/// `open` is sent ahead of the first statement (`BEGIN`, a savepoint) and `close`, when given,
/// behind the last (`COMMIT`), in the same round trips: a run costs two round trips. The `bool` is
/// whether `close` succeeded (true without one). A key lost to another instance is read back after
/// `close`, when the winner's row is certainly visible.
pub(super) async fn accept_batch(
    c: &ClientWrapper,
    requests: Vec<IntakeRequest>,
    open: &str,
    close: Option<&str>,
) -> Result<(Vec<Accepted>, bool), JournalError> {
    let now = now_ms();
    // The first request of each key is journaled; later ones answer as its repeats.
    let mut first_of: HashMap<String, usize> = HashMap::with_capacity(requests.len());
    let mut leaders = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        first_of.entry(r.delivery.key.clone()).or_insert_with(|| {
            leaders.push(i);
            i
        });
    }
    let keys = column(&requests, &leaders, |r| Some(r.delivery.key.clone()));
    let ids = column(&requests, &leaders, |r| Some(r.job.id.clone()));
    let kinds = column(&requests, &leaders, |r| Some(r.job.kind.clone()));
    let scenarios = column(&requests, &leaders, |r| Some(r.job.scenario.clone()));
    let payloads = leaders
        .iter()
        .map(|&i| serde_json::to_string(&requests[i].job.payload).map(Some))
        .collect::<Result<Vec<_>, _>>()?;
    let run_at: Vec<i64> = leaders.iter().map(|&i| requests[i].job.run_at).collect();
    // A job made for a delivery points at the delivery's key, as in the one-by-one path.
    let delivery_keys = column(&requests, &leaders, |r| {
        r.job.delivery_key.as_ref().map(|_| r.delivery.key.clone())
    });
    let dedupe_keys = column(&requests, &leaders, |r| r.job.dedupe_key.clone());
    let parents = column(&requests, &leaders, |r| r.job.parent_id.clone());
    let replays = column(&requests, &leaders, |r| r.job.replay_of.clone());
    let options = leaders
        .iter()
        .map(|&i| serde_json::to_string(&requests[i].job.options).map(Some))
        .collect::<Result<Vec<_>, _>>()?;
    let request_ids = column(&requests, &leaders, |r| r.job.request_id.clone());
    let mut wanted: Vec<&str> = dedupe_keys.iter().flatten().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();

    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &keys,
        &ids,
        &kinds,
        &scenarios,
        &payloads,
        &run_at,
        &delivery_keys,
        &dedupe_keys,
        &parents,
        &replays,
        &options,
        &request_ids,
        &now,
    ];
    let inserting = query(c, INSERT_JOBS, &params);
    // Sent behind the insert without waiting for its answer (one round trip for both).
    let active = async {
        if wanted.is_empty() {
            Ok(Vec::new())
        } else {
            query(c, ACTIVE_JOBS, &[&wanted]).await
        }
    };
    let (opened, inserted, active) = tokio::join!(super::simple(c, open), inserting, active);
    let (inserted, active) = (inserted?, active?);
    if !opened {
        return Err(JournalError::Unavailable(format!("`{open}` failed")));
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut created: std::collections::HashSet<String> = Default::default();
    for row in &inserted {
        if row.get::<_, bool>(0) {
            seen.insert(row.get(1), Seen::of(row, 2));
        } else {
            created.insert(row.get(1));
        }
    }
    let active: HashMap<String, String> =
        active.iter().map(|row| (row.get(0), row.get(1))).collect();

    // Each new key's job and answer.
    let mut requests: Vec<Option<IntakeRequest>> = requests.into_iter().map(Some).collect();
    let mut results: Vec<Option<Accepted>> = (0..requests.len()).map(|_| None).collect();
    let mut rows = NewRows::default();
    for &i in &leaders {
        let Some(r) = requests[i].take() else {
            continue;
        };
        if let Some(row) = seen.get(&r.delivery.key) {
            results[i] = Some(Ok((row.outcome(&r.delivery.body_hash), r.delivery.key)));
            continue;
        }
        let is_new = created.contains(&r.job.id);
        let job_id = if is_new {
            Some(r.job.id.clone())
        } else {
            r.job
                .dedupe_key
                .as_ref()
                .and_then(|k| active.get(k))
                .cloned()
        };
        let Some(job_id) = job_id else {
            results[i] = Some(Err(JournalError::Corrupt(format!(
                "job {} could not be inserted",
                r.job.id
            ))));
            continue;
        };
        let answer_text = (r.answer)(&job_id);
        rows.at.push(i);
        rows.status.push(i32::from(r.status));
        rows.created.push(is_new.then(|| job_id.clone()));
        rows.job_id.push(job_id);
        rows.response.push(answer_text);
        rows.key.push(r.delivery.key);
        rows.scenario.push(r.delivery.scenario);
        rows.body_hash.push(r.delivery.body_hash);
        rows.body.push(r.delivery.body);
    }

    let mut closed = true;
    if rows.at.is_empty() {
        if let Some(close) = close {
            closed = super::simple(c, close).await;
        }
    } else {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &rows.key,
            &rows.scenario,
            &rows.body_hash,
            &rows.body,
            &rows.status,
            &rows.response,
            &rows.job_id,
            &rows.created,
            &now,
        ];
        let inserting = query(c, INSERT_DELIVERIES, &params);
        let closing = async {
            match close {
                Some(close) => super::simple(c, close).await,
                None => true,
            }
        };
        let (inserted, close_ok) = tokio::join!(inserting, closing);
        // A failed insert makes the COMMIT behind it a rollback: the whole run failed.
        let inserted = inserted?;
        closed = close_ok;
        let inserted: std::collections::HashSet<String> =
            inserted.iter().map(|row| row.get(0)).collect();
        // Keys another instance journaled first: its answer stands (read now that it committed).
        let lost: Vec<&String> = rows.key.iter().filter(|k| !inserted.contains(*k)).collect();
        let mut unread = false;
        if !lost.is_empty() {
            match query(
                c,
                "SELECT key, body_hash, response_status, response_body FROM deliveries WHERE key = ANY($1)",
                &[&lost],
            )
            .await
            {
                Ok(read) => {
                    for row in read {
                        seen.insert(row.get(0), Seen::of(&row, 1));
                    }
                }
                Err(_) => unread = true,
            }
        }
        for ((((i, key), body_hash), (status, response)), created) in rows
            .at
            .into_iter()
            .zip(rows.key)
            .zip(rows.body_hash)
            .zip(rows.status.into_iter().zip(rows.response))
            .zip(rows.created)
        {
            let outcome = if !inserted.contains(&key) {
                if unread {
                    results[i] = Some(Err(JournalError::Unavailable(
                        "the same delivery was journaled by another instance at the same moment; retry shortly".into(),
                    )));
                    continue;
                }
                seen.get(&key)
                    .map(|row| row.outcome(&body_hash))
                    .unwrap_or(DeliveryOutcome::InProgress)
            } else {
                let outcome = if created.is_some() {
                    DeliveryOutcome::New
                } else {
                    DeliveryOutcome::Replayed {
                        status: u16::try_from(status).unwrap_or(202),
                        body: crate::journal::deliveries::answer_body(&response),
                    }
                };
                seen.insert(
                    key.clone(),
                    Seen {
                        body_hash,
                        status: Some(status),
                        body: Some(response),
                    },
                );
                outcome
            };
            results[i] = Some(Ok((outcome, key)));
        }
    }

    // Repeats of a key within the run answer as the journal now holds it.
    for (i, r) in requests.into_iter().enumerate() {
        if let Some(r) = r {
            results[i] = Some(match seen.get(&r.delivery.key) {
                Some(row) => Ok((row.outcome(&r.delivery.body_hash), r.delivery.key)),
                None => Err(JournalError::Unavailable(
                    "the first delivery of this key could not be journaled; retry shortly".into(),
                )),
            });
        }
    }
    let results = results
        .into_iter()
        .map(|r| r.unwrap_or_else(super::not_journaled))
        .collect();
    Ok((results, closed))
}

fn column(
    requests: &[IntakeRequest],
    leaders: &[usize],
    f: fn(&IntakeRequest) -> Option<String>,
) -> Vec<Option<String>> {
    leaders.iter().map(|&i| f(&requests[i])).collect()
}

/// The columns of the deliveries a batch inserts, and where each came from.
#[derive(Default)]
struct NewRows {
    at: Vec<usize>,
    key: Vec<String>,
    scenario: Vec<String>,
    body_hash: Vec<String>,
    body: Vec<String>,
    status: Vec<i32>,
    response: Vec<String>,
    job_id: Vec<String>,
    /// The job id when this batch created the job (deleted again if the delivery loses its key).
    created: Vec<Option<String>>,
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
