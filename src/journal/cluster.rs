//! What several instances on one Postgres journal need beyond the SQLite contract: exclusion
//! between instances (experiment locks, the poller's leadership) and the shared Airtable pacer. On
//! SQLite one process owns the journal, so these are no-ops there and the in-process locks suffice.

use std::collections::HashSet;

use super::postgres::{KeyLock, POLLER_LOCK, PgPacer};
use super::{Journal, JournalError};

impl Journal {
    /// The ids among `ids` that an admin has replayed (some job's `replay_of` names them).
    pub async fn replayed_among(&self, ids: Vec<String>) -> Result<HashSet<String>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.replayed_among(self, ids).await;
        }
        self.call(move |conn| {
            let mut found = HashSet::new();
            // Stay well under SQLite's limit on bound parameters.
            for chunk in ids.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql =
                    format!("SELECT DISTINCT replay_of FROM jobs WHERE replay_of IN ({marks})");
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
                    r.get::<_, String>(0)
                })?;
                for row in rows {
                    found.insert(row?);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Takes the lock named `name` across instances and holds it until the guard is dropped
    /// (a session advisory lock). `None` on SQLite, where the in-process lock is enough.
    pub async fn lock_across_instances(&self, name: &str) -> Result<Option<KeyLock>, JournalError> {
        match self.pg() {
            Some(pg) => pg.lock_key(self, name).await.map(Some),
            None => Ok(None),
        }
    }

    /// Whether this instance leads the poller: on SQLite always; on Postgres while it holds the
    /// poller's advisory lock in `held` (taken here when free, dropped here when its session died).
    pub async fn lead_poller(&self, held: &mut Option<KeyLock>) -> bool {
        let Some(pg) = self.pg() else {
            return true;
        };
        if let Some(lock) = held {
            if lock.is_held().await {
                return true;
            }
            tracing::warn!("the poller's database session ended; leadership is open again");
            *held = None;
        }
        match pg.try_lock(self, POLLER_LOCK).await {
            Ok(Some(lock)) => {
                tracing::info!("this instance leads the poller");
                *held = Some(lock);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask for the poller's leadership");
                false
            }
        }
    }

    /// A pacer shared by every instance on this journal's database, for one bucket (API URL +
    /// base). `None` on SQLite.
    pub fn shared_pacer(&self, bucket: &str, rate_per_sec: f64) -> Option<PgPacer> {
        self.pg().map(|pg| pg.pacer(bucket, rate_per_sec))
    }
}
