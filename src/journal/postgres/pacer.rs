//! A request pacer shared by every instance on one database: Airtable allows 5 requests per second
//! per *base*, whatever number of instances send them.
//!
//! The state is one row per bucket (API URL + base) holding the GCRA's theoretical arrival time
//! (`tat`, microseconds of the database's clock). One `INSERT … ON CONFLICT DO UPDATE … RETURNING`
//! per request moves `tat` on by one interval and returns the request's slot and the database's
//! "now"; the caller sleeps for the difference. The row lock serialises concurrent callers (each
//! holds it for one statement), and both times come from the server's clock, so the instances'
//! clocks never need to agree — only the round trip's latency shifts a slot.
//!
//! Capacity one, as the in-process limiter (`coach_store::rate`): slots are evenly spaced at
//! `1.2 / rate` seconds, so any one-second window holds at most `rate` of them even when one request
//! reaches Airtable 200 ms later than the five after it (see `SAFETY`). When the database
//! cannot be reached the caller falls back to its in-process limiter for that request (logged):
//! Airtable's own 429 handling is the last line, and a journal outage already stops intake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

use super::pg_err;
use crate::journal::JournalError;

/// Spacing multiplier over the nominal rate: `rate` + 1 consecutive slots span 1.2 s (240 ms apart
/// at 5/s, ≈ 4.17 requests/s). A slot is taken in the database, and the request leaves later from
/// whichever instance took it: a pool wait, a busy scheduler or a new TLS connection delays one
/// request more than the next. With the in-process limiter's 5 % margin (slots 210 ms apart) a
/// 54 ms delay on a loaded machine put six requests into one second at the Airtable fake of the
/// cluster chaos test, and Airtable answers 429 then. The in-process limiter has its release-time
/// window as well (80 ms of allowance); across instances the allowance is 200 ms.
const SAFETY: f64 = 1.2;

/// One bucket's pacer on the shared database. Cheap to clone.
#[derive(Clone)]
pub struct PgPacer {
    pool: Pool,
    bucket: Arc<str>,
    interval_us: i64,
}

impl PgPacer {
    pub(crate) fn new(pool: Pool, bucket: &str, rate_per_sec: f64) -> PgPacer {
        let rate = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            5.0
        };
        PgPacer {
            pool,
            bucket: bucket.into(),
            interval_us: (SAFETY / rate * 1_000_000.0).ceil() as i64,
        }
    }

    /// Takes the next slot and returns how long to wait for it.
    pub async fn reserve(&self) -> Result<Duration, JournalError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| JournalError::Unavailable(format!("no database connection: {e}")))?;
        let stmt = client
            .prepare_cached(
                "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us)
                 INSERT INTO api_pace AS p (bucket, tat) SELECT $1, now.us + $2 FROM now
                 ON CONFLICT (bucket) DO UPDATE
                     SET tat = GREATEST(p.tat, (SELECT us FROM now)) + $2
                 RETURNING p.tat - $2 - (SELECT us FROM now)",
            )
            .await
            .map_err(pg_err)?;
        let row = client
            .query_one(&stmt, &[&&*self.bucket, &self.interval_us])
            .await
            .map_err(pg_err)?;
        let wait_us: i64 = row.get(0);
        Ok(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) -> Result<(), JournalError> {
        let wait = self.reserve().await?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

impl coach_store::rate::Pacer for PgPacer {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            match PgPacer::acquire(self).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "the shared request pacer is unreachable; pacing this request in-process");
                    false
                }
            }
        })
    }
}
