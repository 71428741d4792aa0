//! The admin audit log: who did what, when, to how many runs.

use rusqlite::params;
use serde::Serialize;
use serde_json::Value;

use super::{Journal, JournalError, now_ms};

/// An admin action to record.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub count: u64,
    pub details: Value,
}

/// A recorded admin action.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub count: u64,
    pub details: Value,
}

impl Journal {
    pub async fn audit(&self, entry: NewAudit) -> Result<i64, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.audit(self, entry).await;
        }
        let details = serde_json::to_string(&entry.details)?;
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit_log (at, actor, action, target, count, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![now_ms(), entry.actor, entry.action, entry.target, entry.count as i64, details])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    /// Audit entries, newest first.
    pub async fn audit_entries(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<AuditEntry>, JournalError> {
        if let Some(pg) = self.pg() {
            return pg.audit_entries(self, limit, offset).await;
        }
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, target, count, details FROM audit_log ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let rows = stmt.query_map(params![limit as i64, offset as i64], |row| {
                let details: String = row.get(6)?;
                Ok(AuditEntry {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    target: row.get(4)?,
                    count: row.get::<_, i64>(5)? as u64,
                    details: serde_json::from_str(&details).unwrap_or(Value::Null),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
