//! coach-store: the record store of coach-worker — Airtable as the system of record, SQLite as the
//! embedded default, one interface and one set of semantics.
//!
//! # Public API (what the worker calls)
//!
//! ```text
//! Store::sqlite(path: &Path) -> Result<Store, StoreError>
//! Store::sqlite_with_schema(path: &Path, schema: BaseSchema) -> Result<Store, StoreError>
//! Store::airtable(cfg: AirtableConfig) -> Result<Store, StoreError>
//! store.get(table, id) -> Result<Record>              // NotFound when absent
//! store.list(table, &ListQuery) -> Result<Vec<Record>> // typed filter, field selection, max records
//! store.create(table, Vec<Fields>) -> Result<Vec<Record>>            // never retried on 5xx
//! store.update(table, Vec<(String, Fields)>) -> Result<Vec<Record>>  // PATCH by id (merge)
//! store.upsert(table, Vec<Fields>) -> Result<Vec<Record>>            // merge on "Key"
//! store.delete(table, Vec<String>) -> Result<()>
//! store.ready() -> Result<()>          // cheap reachability check for /readyz
//!
//! // typed (what the worker's scenarios use; ids already `RecordId`s, tables from the record type):
//! store.read::<T>(&RecordId) -> Result<T>          store.find::<T>(&ListQuery) -> Result<Vec<T>>
//! store.upsert_records(&[T]) -> Result<Vec<T>>     store.patch(&RecordId, &impl TableUpdate) -> Result<T>
//! store.create_records(&[T]) -> Result<Vec<T>>     // tables without a Key (Users, Transcripts)
//! store.patch_all(Vec<(RecordId, U)>) -> Result<Vec<T>>
//! store.backend_name() -> &'static str // "airtable" | "sqlite"
//! ```
//! Every call is batch-aware (Airtable batches of at most 10 are made internally). Ids from outside are
//! validated ([`RecordId`], [`is_record_id`]) before any request. Errors are [`StoreError`] with `code()`
//! and `is_transient()`.
//!
//! Modules: [`filter`] (typed filters → formula / SQL), [`tables`] (typed records of the seven tables and
//! their names), [`schema`] (the base schema, validation and diff), [`migrate`] (the work behind
//! `airtable check|apply`), [`attachment`] (safe download of `File` attachments), `fake` (feature
//! `fake`: a stateful Airtable on wiremock for tests).
//!
//! Schema migration: `migrate::check(schema: Option<&Path>, json, cfg, out)` and
//! `migrate::apply(schema, yes, cfg, out)` → `Result<migrate::Verdict, StoreError>` (`Done` / `WorkLeft`);
//! the worker binary parses the `airtable` command line and maps the verdict to exit codes.
//!
//! Test fake (feature `fake`): `FakeAirtable::start().await` (shipped schema, 429 above 5 req/s) or
//! `FakeAirtable::builder().schema(s).rate_limit(None).start().await`; then `fake.config()` gives an
//! `AirtableConfig` pointing at it. Inspect with `records(table)`, `insert(table, fields)`, `calls()`,
//! `calls_to(method, path)`, `table_path(table)`, `requests()`, `max_rate_seen()`, `count_429()`,
//! `schema()`; inject faults with `fail_next(n, status)`, `set_failure_ratio(r, status)`,
//! `expire_offsets()`.
//!
//! # Semantics both backends share
//! - Ids are `rec` + 14 letters/digits; `createdTime` is RFC 3339 UTC with milliseconds.
//! - Empty values (`null`, `""`, `[]`, `false`) are not stored: a read returns the field absent, as
//!   Airtable does. Read absent fields as empty.
//! - `update` merges the given fields into the record (PATCH); `null` clears a field.
//! - `upsert` matches on the `Key` field: the first record with that key is updated, otherwise one is
//!   created. Upserting the same key twice leaves one record.
//! - Unknown table → `TableNotFound`; unknown field → `UnknownField`; unknown select option →
//!   `InvalidSelectOption`; missing record → `NotFound`.

pub mod attachment;
mod error;
pub mod filter;
mod id;
pub mod migrate;
pub mod schema;
pub mod tables;

mod airtable;
mod coalesce;
pub mod rate;
mod sqlite;

#[cfg(feature = "fake")]
pub mod fake;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use airtable::AirtableConfig;
pub use error::StoreError;
pub use filter::{Filter, FilterValue};
pub use id::{RecordId, is_record_id};
pub use schema::BaseSchema;

use tables::TableRecord as _;

/// The fields of a record, by field name.
pub type Fields = serde_json::Map<String, Value>;

/// The name of the field upserts merge on.
pub const KEY_FIELD: &str = "Key";

/// Whether the process has installed a rustls crypto provider. reqwest is built without one
/// (`rustls-no-provider`) and this crate does not choose one for its users: the program installs
/// it once at start-up (`rustls::crypto::ring::default_provider().install_default()`, as the
/// worker's `main` does). [`Store::airtable`] and [`attachment::download`] check this and fail
/// with a typed error instead of panicking inside reqwest.
pub fn tls_provider_installed() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_some()
}

/// What to do when no provider is installed.
pub(crate) const NO_TLS_PROVIDER: &str = "no TLS crypto provider is installed; call rustls::crypto::ring::default_provider().install_default() once at start-up, before building a client";

/// A record as both backends return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(rename = "createdTime", default)]
    pub created_time: String,
    #[serde(default)]
    pub fields: Fields,
}

impl Record {
    /// A text field, `None` when absent (empty).
    pub fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }
}

/// What to list: an optional filter, an optional field selection (empty = all fields) and a cap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub fields: Vec<String>,
    pub max_records: Option<usize>,
}

impl ListQuery {
    pub fn new() -> ListQuery {
        ListQuery::default()
    }
    pub fn filter(mut self, filter: Filter) -> ListQuery {
        self.filter = Some(filter);
        self
    }
    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> ListQuery {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }
    pub fn max_records(mut self, n: usize) -> ListQuery {
        self.max_records = Some(n);
        self
    }
}

/// The record store. Cheap to clone; all clones share one backend (and, for Airtable, one rate limiter).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Airtable(Arc<airtable::AirtableClient>),
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// The embedded store in a SQLite file (created if absent), validated against the shipped schema.
    pub fn sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::sqlite_with_schema(path, BaseSchema::embedded()?)
    }

    /// The embedded store with another schema (tests, or a base that differs from the shipped one).
    pub fn sqlite_with_schema(path: &Path, schema: BaseSchema) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(path, schema)?),
        })
    }

    /// The Airtable store.
    pub fn airtable(cfg: AirtableConfig) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Airtable(Arc::new(airtable::AirtableClient::new(cfg)?)),
        })
    }

    /// `"airtable"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Airtable(_) => "airtable",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// One typed record by its (already validated) id.
    pub async fn read<T: tables::TableRecord>(&self, id: &RecordId) -> Result<T, StoreError> {
        let record = self.get_checked(T::KIND.as_str(), id.as_str()).await?;
        T::from_record(&record)
    }

    /// The typed records a query matches.
    pub async fn find<T: tables::TableRecord>(
        &self,
        query: &ListQuery,
    ) -> Result<Vec<T>, StoreError> {
        self.list(T::KIND.as_str(), query)
            .await?
            .iter()
            .map(T::from_record)
            .collect()
    }

    /// Upserts typed records on their `Key`; returns them as written.
    pub async fn upsert_records<T: tables::TableRecord>(
        &self,
        records: &[T],
    ) -> Result<Vec<T>, StoreError> {
        let fields = records.iter().map(tables::TableRecord::to_fields).collect();
        self.upsert(T::KIND.as_str(), fields)
            .await?
            .iter()
            .map(T::from_record)
            .collect()
    }

    /// Creates typed records (for tables without a `Key` to upsert on); returns them as written.
    /// Not retried on 5xx or network errors, like [`Store::create`].
    pub async fn create_records<T: tables::TableRecord>(
        &self,
        records: &[T],
    ) -> Result<Vec<T>, StoreError> {
        let fields = records.iter().map(tables::TableRecord::to_fields).collect();
        self.create(T::KIND.as_str(), fields)
            .await?
            .iter()
            .map(T::from_record)
            .collect()
    }

    /// Applies a typed partial update to one record; returns the record as written.
    pub async fn patch<U: tables::TableUpdate>(
        &self,
        id: &RecordId,
        update: &U,
    ) -> Result<U::Record, StoreError> {
        let mut written = self
            .patch_many(vec![(id.clone(), update.to_fields())], U::Record::KIND)
            .await?;
        match written.pop() {
            Some(record) => U::Record::from_record(&record),
            None => Err(StoreError::Decode(format!(
                "the update of {id} in \"{}\" returned no record",
                U::Record::KIND
            ))),
        }
    }

    /// Applies typed partial updates to several records of one table, in batches.
    pub async fn patch_all<U: tables::TableUpdate>(
        &self,
        updates: Vec<(RecordId, U)>,
    ) -> Result<Vec<U::Record>, StoreError> {
        let fields = updates
            .into_iter()
            .map(|(id, u)| (id, u.to_fields()))
            .collect();
        self.patch_many(fields, U::Record::KIND)
            .await?
            .iter()
            .map(U::Record::from_record)
            .collect()
    }

    async fn patch_many(
        &self,
        records: Vec<(RecordId, Fields)>,
        table: tables::Table,
    ) -> Result<Vec<Record>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Ids are already `RecordId`s: no second validation on the way.
        let records = records
            .into_iter()
            .map(|(id, fields)| (id.into_string(), fields))
            .collect();
        match &self.backend {
            Backend::Airtable(c) => c.update(table.as_str(), records).await,
            Backend::Sqlite(s) => s.update(table.as_str(), records).await,
        }
    }

    async fn get_checked(&self, table: &str, id: &str) -> Result<Record, StoreError> {
        match &self.backend {
            Backend::Airtable(c) => c.get(table, id).await,
            Backend::Sqlite(s) => s.get(table, id).await,
        }
    }

    /// One record by id.
    pub async fn get(&self, table: &str, id: &str) -> Result<Record, StoreError> {
        RecordId::parse(id)?;
        self.get_checked(table, id).await
    }

    /// Every record matching the query (all pages).
    pub async fn list(&self, table: &str, query: &ListQuery) -> Result<Vec<Record>, StoreError> {
        if let Some(f) = &query.filter {
            for name in f.fields() {
                filter::check_field_name(name)?;
            }
        }
        if query.max_records == Some(0) {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Airtable(c) => c.list(table, query).await,
            Backend::Sqlite(s) => s.list(table, query).await,
        }
    }

    /// Creates records, in input order. Not retried on 5xx or network errors (it may have been applied).
    pub async fn create(
        &self,
        table: &str,
        records: Vec<Fields>,
    ) -> Result<Vec<Record>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Airtable(c) => c.create(table, records).await,
            Backend::Sqlite(s) => s.create(table, records).await,
        }
    }

    /// Merges fields into existing records (PATCH by id).
    pub async fn update(
        &self,
        table: &str,
        records: Vec<(String, Fields)>,
    ) -> Result<Vec<Record>, StoreError> {
        id::check_ids(records.iter().map(|(id, _)| id.as_str()))?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Airtable(c) => c.update(table, records).await,
            Backend::Sqlite(s) => s.update(table, records).await,
        }
    }

    /// Creates or updates records matched on their `Key` field (each record must carry a non-empty `Key`).
    pub async fn upsert(
        &self,
        table: &str,
        records: Vec<Fields>,
    ) -> Result<Vec<Record>, StoreError> {
        for (i, r) in records.iter().enumerate() {
            match r.get(KEY_FIELD).and_then(Value::as_str) {
                Some(k) if !k.is_empty() => {}
                _ => {
                    return Err(StoreError::InvalidRecords(format!(
                        "record {i} of the upsert has no text \"{KEY_FIELD}\"; every upserted record needs its deterministic key"
                    )));
                }
            }
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Airtable(c) => c.upsert(table, records).await,
            Backend::Sqlite(s) => s.upsert(table, records).await,
        }
    }

    /// Deletes records by id.
    pub async fn delete(&self, table: &str, ids: Vec<String>) -> Result<(), StoreError> {
        id::check_ids(ids.iter().map(String::as_str))?;
        if ids.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Airtable(c) => c.delete(table, ids).await,
            Backend::Sqlite(s) => s.delete(table, ids).await,
        }
    }

    /// A cheap reachability check for `/readyz`.
    pub async fn ready(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Airtable(c) => c.ready().await,
            Backend::Sqlite(s) => s.ready().await,
        }
    }
}

/// Drops empty values, as Airtable does not return them (both local stores store what Airtable would
/// return, so reads agree).
pub(crate) fn drop_empty(fields: &mut Fields) {
    fields.retain(|_, v| !is_empty_value(v));
}

pub(crate) fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The current time as Airtable writes `createdTime` (`2017-08-05T23:13:06.000Z`).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}
