//! What the worker remembers of the records it wrote, so that it can skip Airtable reads whose answer
//! it already knows:
//!
//! - whether an earlier job with the same dedupe key succeeded (R1 and E1 read the record first only
//!   when it did, or when the job is a replay or a retry);
//! - per experiment, the runs that have an `attempt` event (D1 counts toward `Target Meetings` from
//!   this tally and lists the events in Airtable only when the tally is missing or says the target is
//!   reached, so the completion itself is always decided on Airtable's own count).

use rusqlite::{OptionalExtension, params};

use super::{Journal, JournalError, now_ms};

impl Journal {
    /// True when a job other than `except_job` with this dedupe key has succeeded (including jobs the
    /// retention sweep has deleted since).
    pub async fn succeeded_before(
        &self,
        dedupe_key: String,
        except_job: String,
    ) -> Result<bool, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.succeeded_before(self, dedupe_key, except_job).await;
        }
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM jobs WHERE dedupe_key = ?1 AND id != ?2 AND status = 'succeeded'
                     UNION ALL SELECT 1 FROM succeeded_keys WHERE dedupe_key = ?1 LIMIT 1",
                )?
                .query_row(params![dedupe_key, except_job], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// The runs with an attempt event for this experiment, or `None` when the journal does not know
    /// the experiment's events.
    pub async fn attempt_tally(
        &self,
        experiment_id: String,
    ) -> Result<Option<Vec<String>>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.attempt_tally(self, experiment_id).await;
        }
        self.call(move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT runs FROM experiment_attempts WHERE experiment_id = ?1")?
                .query_row([experiment_id], |r| r.get(0))
                .optional()?;
            Ok(match text {
                Some(t) => Some(serde_json::from_str(&t)?),
                None => None,
            })
        })
        .await
    }

    /// Records the full set of runs with an attempt event for this experiment.
    pub async fn set_attempt_tally(
        &self,
        experiment_id: String,
        mut runs: Vec<String>,
    ) -> Result<(), JournalError> {
        runs.sort();
        runs.dedup();
        let text = serde_json::to_string(&runs)?;
        if let Some(pg) = self.pg() {
            return pg.set_attempt_tally(self, experiment_id, text).await;
        }
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO experiment_attempts (experiment_id, runs, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(experiment_id) DO UPDATE SET runs = excluded.runs, updated_at = excluded.updated_at",
            )?
            .execute(params![experiment_id, text, now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Starts an empty tally for an experiment that was just created (kept as it is if one exists).
    pub async fn start_attempt_tally(&self, experiment_id: String) -> Result<(), JournalError> {
        if let Some(pg) = self.pg() {
            return pg.start_attempt_tally(self, experiment_id).await;
        }
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO experiment_attempts (experiment_id, runs, updated_at) VALUES (?1, '[]', ?2)",
            )?
            .execute(params![experiment_id, now_ms()])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewJob;

    #[tokio::test]
    async fn the_tally_starts_empty_once_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        assert_eq!(j.attempt_tally("recE".into()).await.unwrap(), None);
        j.start_attempt_tally("recE".into()).await.unwrap();
        assert_eq!(j.attempt_tally("recE".into()).await.unwrap(), Some(vec![]));
        j.set_attempt_tally(
            "recE".into(),
            vec!["recB".into(), "recA".into(), "recB".into()],
        )
        .await
        .unwrap();
        // A second start (an E1 re-run) keeps what is known.
        j.start_attempt_tally("recE".into()).await.unwrap();
        assert_eq!(
            j.attempt_tally("recE".into()).await.unwrap(),
            Some(vec!["recA".to_owned(), "recB".to_owned()])
        );
    }

    #[tokio::test]
    async fn succeeded_before_sees_only_other_succeeded_jobs_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
        let mut job = NewJob::new("single", "r1", serde_json::json!({}));
        job.dedupe_key = Some("r1:recX".into());
        let (first, _) = j.enqueue(job).await.unwrap();
        assert!(
            !j.succeeded_before("r1:recX".into(), "other".into())
                .await
                .unwrap()
        );
        let (claimed, _) = j.claim_due(10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        j.complete_job(first.clone(), serde_json::json!({}), vec![])
            .await
            .unwrap();
        assert!(
            j.succeeded_before("r1:recX".into(), "other".into())
                .await
                .unwrap()
        );
        assert!(!j.succeeded_before("r1:recX".into(), first).await.unwrap());
        assert!(
            !j.succeeded_before("r1:recY".into(), "other".into())
                .await
                .unwrap()
        );
    }
}
