//! Session advisory locks: mutual exclusion between instances over work that happens mostly outside
//! the database (a D1 counting an experiment's attempts in Airtable, the poller). The lock lives as
//! long as the session that took it, so an instance that dies releases it with its connections.

use deadpool_postgres::Object;

use super::{PgJournal, pg_err};
use crate::journal::{Journal, JournalError};

/// A held session advisory lock and the pooled connection whose session holds it. Dropping it
/// unlocks and returns the connection to the pool (or, outside a runtime, closes the connection,
/// which releases the lock too).
pub struct KeyLock {
    client: Option<Object>,
    key: i64,
}

impl KeyLock {
    /// True while the session holding the lock is still connected.
    pub async fn is_held(&self) -> bool {
        match &self.client {
            Some(client) => client.query_one("SELECT 1", &[]).await.is_ok(),
            None => false,
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if client
                        .execute("SELECT pg_advisory_unlock($1)", &[&key])
                        .await
                        .is_err()
                    {
                        // The session is broken: closing it is what releases the lock.
                        drop(Object::take(client));
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}

/// The advisory lock key of a text key: 64 bits of its SHA-256 (stable across instances and
/// versions, unlike a hash of the process).
pub fn key_of(name: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl PgJournal {
    /// Waits for the lock named `name` and holds it until the returned guard is dropped.
    pub(crate) async fn lock_key(&self, j: &Journal, name: &str) -> Result<KeyLock, JournalError> {
        j.check_open()?;
        let key = key_of(name);
        // The guard exists before the wait: if the caller's future is dropped while the server is
        // still waiting for the lock, the guard's unlock is queued behind that wait on the same
        // session, so a lock taken for nobody is released at once and never strands the key.
        let lock = KeyLock {
            client: Some(self.client().await?),
            key,
        };
        if let Some(client) = &lock.client {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .map_err(pg_err)?;
        }
        Ok(lock)
    }

    /// Takes the lock `key` if nobody holds it.
    pub(crate) async fn try_lock(
        &self,
        j: &Journal,
        key: i64,
    ) -> Result<Option<KeyLock>, JournalError> {
        j.check_open()?;
        let client = self.client().await?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(pg_err)?
            .get(0);
        Ok(got.then_some(KeyLock {
            client: Some(client),
            key,
        }))
    }
}
