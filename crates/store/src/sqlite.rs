//! The embedded store: records in one SQLite table, with Airtable's semantics.
//!
//! Each record is a row `(tbl, id, created_time, fields)` where `fields` is the JSON object Airtable would
//! return (empty values dropped). Filters compile to SQL over `json_extract`, with every value and JSON
//! path bound as a parameter. Writes are validated against the base schema first, so unknown tables,
//! fields and select options fail exactly as they would on Airtable.
//!
//! rusqlite's `Connection` is blocking and not `Sync`, so one dedicated thread owns it and async callers
//! send it closures over a channel, getting answers back on a oneshot. One connection serialises all
//! writes, which is what SQLite does anyway, and keeps upserts (read-then-write) atomic without
//! cross-connection locking. WAL mode lets an operator read the file while the worker runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::schema::{BaseSchema, TableSchema};
use crate::{Fields, Filter, FilterValue, KEY_FIELD, ListQuery, Record, RecordId, StoreError};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub(crate) struct SqliteStore {
    tx: mpsc::Sender<Job>,
    schema: Arc<BaseSchema>,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(e.to_string())
}

impl SqliteStore {
    pub(crate) fn open(path: &Path, schema: BaseSchema) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Sqlite(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                 tbl TEXT NOT NULL,
                 id TEXT NOT NULL PRIMARY KEY,
                 created_time TEXT NOT NULL,
                 fields TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS records_tbl ON records(tbl);
             CREATE INDEX IF NOT EXISTS records_key ON records(tbl, json_extract(fields, '$.Key'));",
        )
        .map_err(db_err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let mut conn = conn;
        std::thread::Builder::new()
            .name("coach-store-sqlite".into())
            .spawn(move || {
                // Ends when every `SqliteStore` clone (every sender) is dropped.
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Sqlite(format!("cannot start the SQLite thread: {e}")))?;
        Ok(SqliteStore {
            tx,
            schema: Arc::new(schema),
        })
    }

    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection, &BaseSchema) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let schema = self.schema.clone();
        self.tx
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn, &schema));
            }))
            .map_err(|_| StoreError::Sqlite("the SQLite thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Sqlite("the SQLite thread dropped a request".into()))?
    }

    pub(crate) async fn get(&self, table: &str, id: &str) -> Result<Record, StoreError> {
        let (table, id) = (table.to_string(), id.to_string());
        self.call(move |conn, schema| {
            let t = schema.require_table(&table)?;
            load(conn, &t.name, &id)?.ok_or(StoreError::NotFound { table, id })
        })
        .await
    }

    pub(crate) async fn list(
        &self,
        table: &str,
        query: &ListQuery,
    ) -> Result<Vec<Record>, StoreError> {
        let (table, query) = (table.to_string(), query.clone());
        self.call(move |conn, schema| {
            let t = schema.require_table(&table)?;
            schema.validate_field_names(&t.name, query.fields.iter().map(String::as_str))?;
            let mut sql =
                String::from("SELECT id, created_time, fields FROM records r WHERE r.tbl = ?");
            let mut params = vec![SqlValue::Text(t.name.clone())];
            if let Some(f) = &query.filter {
                sql.push_str(" AND ");
                compile(f, t, schema, &mut sql, &mut params)?;
            }
            sql.push_str(" ORDER BY r.rowid");
            if let Some(n) = query.max_records {
                sql.push_str(" LIMIT ?");
                params.push(SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
            }
            let mut stmt = conn.prepare(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), row_to_parts)
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let mut rec = parts_to_record(row.map_err(db_err)?)?;
                if !query.fields.is_empty() {
                    rec.fields
                        .retain(|k, _| query.fields.iter().any(|f| f == k));
                }
                out.push(rec);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn create(
        &self,
        table: &str,
        records: Vec<Fields>,
    ) -> Result<Vec<Record>, StoreError> {
        let table = table.to_string();
        self.call(move |conn, schema| {
            let t = schema.require_table(&table)?.name.clone();
            for f in &records {
                schema.validate_fields(&t, f)?;
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let mut out = Vec::with_capacity(records.len());
            for mut fields in records {
                crate::drop_empty(&mut fields);
                out.push(insert(&tx, &t, fields)?);
            }
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn update(
        &self,
        table: &str,
        records: Vec<(String, Fields)>,
    ) -> Result<Vec<Record>, StoreError> {
        let table = table.to_string();
        self.call(move |conn, schema| {
            let t = schema.require_table(&table)?.name.clone();
            for (_, f) in &records {
                schema.validate_fields(&t, f)?;
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let mut out = Vec::with_capacity(records.len());
            for (id, fields) in records {
                let existing = load(&tx, &t, &id)?.ok_or_else(|| StoreError::NotFound {
                    table: t.clone(),
                    id: id.clone(),
                })?;
                out.push(merge_and_save(&tx, existing, fields)?);
            }
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn upsert(
        &self,
        table: &str,
        records: Vec<Fields>,
    ) -> Result<Vec<Record>, StoreError> {
        let table = table.to_string();
        self.call(move |conn, schema| {
            let ts = schema.require_table(&table)?;
            if ts.field(KEY_FIELD).is_none() {
                return Err(StoreError::UnknownField {
                    table: ts.name.clone(),
                    field: KEY_FIELD.into(),
                    airtable: String::new(),
                });
            }
            let t = ts.name.clone();
            for f in &records {
                schema.validate_fields(&t, f)?;
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let mut out = Vec::with_capacity(records.len());
            for mut fields in records {
                let key = fields.get(KEY_FIELD).and_then(Value::as_str).unwrap_or_default().to_string();
                let found: Option<String> = tx
                    .query_row(
                        "SELECT id FROM records WHERE tbl = ?1 AND json_extract(fields, '$.Key') = ?2 ORDER BY rowid LIMIT 1",
                        (&t, &key),
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                let rec = match found {
                    Some(id) => {
                        let existing = load(&tx, &t, &id)?.ok_or(StoreError::NotFound {
                            table: t.clone(),
                            id,
                        })?;
                        merge_and_save(&tx, existing, fields)?
                    }
                    None => {
                        crate::drop_empty(&mut fields);
                        insert(&tx, &t, fields)?
                    }
                };
                out.push(rec);
            }
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn delete(&self, table: &str, ids: Vec<String>) -> Result<(), StoreError> {
        let table = table.to_string();
        self.call(move |conn, schema| {
            let t = schema.require_table(&table)?.name.clone();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            for id in ids {
                let n = tx
                    .execute("DELETE FROM records WHERE tbl = ?1 AND id = ?2", (&t, &id))
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(StoreError::NotFound { table: t, id });
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn ready(&self) -> Result<(), StoreError> {
        self.call(|conn, _| {
            conn.query_row("SELECT count(*) FROM records WHERE 0", [], |_| Ok(()))
                .map_err(db_err)
        })
        .await
    }
}

type Parts = (String, String, String);

fn row_to_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<Parts> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn parts_to_record((id, created_time, fields): Parts) -> Result<Record, StoreError> {
    let fields: Fields = serde_json::from_str(&fields)
        .map_err(|e| StoreError::Sqlite(format!("record {id} holds invalid JSON: {e}")))?;
    Ok(Record {
        id,
        created_time,
        fields,
    })
}

fn load(conn: &Connection, table: &str, id: &str) -> Result<Option<Record>, StoreError> {
    let parts = conn
        .query_row(
            "SELECT id, created_time, fields FROM records WHERE tbl = ?1 AND id = ?2",
            (table, id),
            row_to_parts,
        )
        .optional()
        .map_err(db_err)?;
    parts.map(parts_to_record).transpose()
}

fn insert(conn: &Connection, table: &str, fields: Fields) -> Result<Record, StoreError> {
    let rec = Record {
        id: RecordId::generate().into_string(),
        created_time: crate::now_rfc3339(),
        fields,
    };
    let json = Value::Object(rec.fields.clone()).to_string();
    conn.execute(
        "INSERT INTO records (tbl, id, created_time, fields) VALUES (?1, ?2, ?3, ?4)",
        (table, &rec.id, &rec.created_time, json),
    )
    .map_err(db_err)?;
    Ok(rec)
}

fn merge_and_save(
    conn: &Connection,
    mut rec: Record,
    fields: Fields,
) -> Result<Record, StoreError> {
    for (k, v) in fields {
        rec.fields.insert(k, v);
    }
    crate::drop_empty(&mut rec.fields);
    let json = Value::Object(rec.fields.clone()).to_string();
    conn.execute(
        "UPDATE records SET fields = ?1 WHERE id = ?2",
        (json, &rec.id),
    )
    .map_err(db_err)?;
    Ok(rec)
}

/// JSON path of a top-level field; names are checked by `filter::check_field_name` (no quotes or
/// backslashes) before they get here, and the path is bound as a parameter.
fn path(field: &str) -> SqlValue {
    SqlValue::Text(format!("$.\"{field}\""))
}

fn known_field(t: &TableSchema, field: &str) -> Result<(), StoreError> {
    crate::filter::check_field_name(field)?;
    if t.field(field).is_none() {
        return Err(StoreError::InvalidFilter(format!(
            "unknown field name \"{field}\" in table \"{}\"",
            t.name
        )));
    }
    Ok(())
}

/// Appends the SQL for `f` to `sql`. Every leaf is NULL-free (0 or 1), so NOT behaves like the formula's NOT.
fn compile(
    f: &Filter,
    t: &TableSchema,
    base: &BaseSchema,
    sql: &mut String,
    params: &mut Vec<SqlValue>,
) -> Result<(), StoreError> {
    match f {
        Filter::Eq(field, FilterValue::Text(s)) if s.is_empty() => {
            compile(&Filter::IsBlank(field.clone()), t, base, sql, params)?
        }
        Filter::Eq(field, FilterValue::Bool(false)) => {
            compile(&Filter::IsBlank(field.clone()), t, base, sql, params)?
        }
        Filter::Eq(field, value) => {
            known_field(t, field)?;
            sql.push_str("coalesce(json_extract(r.fields, ?) = ?, 0)");
            params.push(path(field));
            params.push(match value {
                FilterValue::Text(s) => SqlValue::Text(s.clone()),
                FilterValue::Number(n) if n.is_finite() => SqlValue::Real(*n),
                FilterValue::Number(n) => {
                    return Err(StoreError::InvalidFilter(format!(
                        "{n} is not a finite number"
                    )));
                }
                FilterValue::Bool(_) => SqlValue::Integer(1),
            });
        }
        Filter::IsBlank(field) => {
            known_field(t, field)?;
            sql.push_str("(json_type(r.fields, ?) IS NULL)");
            params.push(path(field));
        }
        Filter::LinkContains {
            field,
            primary_value,
        } => {
            known_field(t, field)?;
            let target = t
                .field(field)
                .filter(|fs| fs.is_link())
                .and_then(|fs| fs.link_target(base))
                .ok_or_else(|| {
                    StoreError::InvalidFilter(format!(
                        "\"{field}\" is not a linked-record field of \"{}\"",
                        t.name
                    ))
                })?;
            let primary = target.primary_field().ok_or_else(|| {
                StoreError::InvalidFilter(format!("table \"{}\" has no fields", target.name))
            })?;
            sql.push_str(
                "EXISTS (SELECT 1 FROM json_each(r.fields, ?) j JOIN records l ON l.id = j.value \
                 WHERE l.tbl = ? AND json_extract(l.fields, ?) = ?)",
            );
            params.push(path(field));
            params.push(SqlValue::Text(target.name.clone()));
            params.push(path(&primary.name));
            params.push(SqlValue::Text(primary_value.clone()));
        }
        Filter::And(items) | Filter::Or(items) => {
            let (op, empty) = if matches!(f, Filter::And(_)) {
                (" AND ", "1")
            } else {
                (" OR ", "0")
            };
            if items.is_empty() {
                sql.push_str(empty);
                return Ok(());
            }
            sql.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sql.push_str(op);
                }
                compile(item, t, base, sql, params)?;
            }
            sql.push(')');
        }
        Filter::Not(inner) => {
            sql.push_str("(NOT ");
            compile(inner, t, base, sql, params)?;
            sql.push(')');
        }
    }
    Ok(())
}
