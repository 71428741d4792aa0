//! The Airtable backend: a thin client over the Web API on reqwest.
//!
//! Rules it follows (see ARCHITECTURE §5, and Airtable's API reference for each endpoint):
//! - every request first takes a slot from the per-base rate limiter (`rate.rs`), so a healthy run
//!   never sees a 429;
//! - a 429 still happens (another client on the same base): wait `rate_limit_wait` (Airtable blocks for
//!   30 s) and send again — for every call, since a 429 means the request was not processed;
//! - 5xx and network errors are retried with exponential backoff (backon) only for idempotent calls:
//!   reads, PATCH by id, and upserts. A plain create is never retried, because a create whose response
//!   was lost may have been applied, and retrying would duplicate the record;
//! - lists page with `offset` (pageSize 100) and start again from the first page if Airtable answers 422
//!   `LIST_RECORDS_ITERATOR_NOT_AVAILABLE` (the iterator expired);
//! - a list whose GET URL would pass 16,000 characters is sent as `POST …/listRecords` with a JSON body;
//! - writes go in batches of at most 10 records (the API's limit), and reads by id, PATCHes by id and
//!   upserts that wait for the rate limiter at the same time leave together as one request
//!   (`coalesce.rs`);
//! - errors are mapped from `error.type`, in both the object form `{"error":{"type","message"}}` and the
//!   bare-string form `{"error":"NOT_FOUND"}`; never from the message text.
//!
//! The token is only ever put in the `Authorization` header; `AirtableConfig`'s `Debug` redacts it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::coalesce::{Answer, Batches, Op, Part, Role};
use crate::rate::{self, RateLimiter};
use crate::schema::{BaseSchema, FieldSchema, TableSchema};
use crate::{Fields, KEY_FIELD, ListQuery, Record, StoreError, tables};

/// The API's limit on records per write request.
pub const MAX_BATCH: usize = 10;

/// How to reach and pace Airtable. Build with [`AirtableConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct AirtableConfig {
    /// Personal access token (`pat…`). Never logged.
    pub token: String,
    /// `app` + 14 letters/digits.
    pub base_id: String,
    /// `https://api.airtable.com` unless testing.
    pub api_url: String,
    /// Requests per second per base (Airtable's limit is 5).
    pub rate_per_sec: f64,
    /// How long to wait after a 429 before sending again (Airtable: 30 s).
    pub rate_limit_wait: Duration,
    /// Retries after a 5xx/network error (idempotent calls) and waits after a 429 (all calls).
    pub max_retries: u32,
    /// First backoff delay after a 5xx or network error; doubles up to `retry_max_delay`.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Above this URL length a list is sent as `POST …/listRecords`.
    pub max_url_len: usize,
    /// Records per page (at most 100).
    pub page_size: usize,
}

impl AirtableConfig {
    pub fn new(token: impl Into<String>, base_id: impl Into<String>) -> AirtableConfig {
        AirtableConfig {
            token: token.into(),
            base_id: base_id.into(),
            api_url: "https://api.airtable.com".into(),
            rate_per_sec: 5.0,
            rate_limit_wait: Duration::from_secs(30),
            max_retries: 5,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_url_len: 16_000,
            page_size: 100,
        }
    }

    /// Short waits for tests against the fake (no pacing beyond the fake's own limit is needed).
    pub fn for_tests(mut self) -> AirtableConfig {
        self.rate_limit_wait = Duration::from_millis(50);
        self.retry_min_delay = Duration::from_millis(5);
        self.retry_max_delay = Duration::from_millis(20);
        self.timeout = Duration::from_secs(10);
        self
    }
}

impl fmt::Debug for AirtableConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AirtableConfig")
            .field("token", &"<redacted>")
            .field("base_id", &self.base_id)
            .field("api_url", &self.api_url)
            .field("rate_per_sec", &self.rate_per_sec)
            .field("rate_limit_wait", &self.rate_limit_wait)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

fn is_base_id(s: &str) -> bool {
    s.len() == 17 && s.starts_with("app") && s[3..].bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(crate) struct AirtableClient {
    http: reqwest::Client,
    cfg: AirtableConfig,
    api: Url,
    limiter: Arc<RateLimiter>,
    batches: Batches,
}

/// One API call, with what is needed to retry it and to type its errors.
struct Call<'a> {
    method: Method,
    url: Url,
    body: Option<Value>,
    idempotent: bool,
    table: &'a str,
    id: &'a str,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default)]
    offset: Option<String>,
}

/// Extracts `(error.type, message)` from an error body in either documented form.
pub(crate) fn parse_error_body(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v.get("error") {
        Some(Value::String(t)) => (
            t.clone(),
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        Some(Value::Object(o)) => (
            o.get("type")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        _ => {
            // The 429 body is documented loosely; fall back to the first entry of `errors`.
            let first = v.get("errors").and_then(|e| e.get(0));
            let t = first
                .and_then(|e| e.get("error").or_else(|| e.get("type")))
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN");
            (
                t.to_string(),
                String::from_utf8_lossy(body).chars().take(300).collect(),
            )
        }
    }
}

impl AirtableClient {
    pub(crate) fn new(cfg: AirtableConfig) -> Result<AirtableClient, StoreError> {
        if cfg.token.trim().is_empty() {
            return Err(StoreError::Config(
                "AIRTABLE_TOKEN is empty; set a personal access token".into(),
            ));
        }
        if !is_base_id(&cfg.base_id) {
            return Err(StoreError::Config(format!(
                "AIRTABLE_BASE_ID \"{}\" is not a base id: expected `app` followed by 14 letters or digits",
                cfg.base_id
            )));
        }
        let api = Url::parse(&cfg.api_url).map_err(|e| {
            StoreError::Config(format!(
                "AIRTABLE_API_URL \"{}\" is not a URL: {e}",
                cfg.api_url
            ))
        })?;
        if api.cannot_be_a_base() {
            return Err(StoreError::Config(format!(
                "AIRTABLE_API_URL \"{}\" cannot be a base URL",
                cfg.api_url
            )));
        }
        // reqwest is built without a default crypto provider, and a library does not pick one
        // for its users: the program installs it once (the worker's `main`).
        if !crate::tls_provider_installed() {
            return Err(StoreError::Config(crate::NO_TLS_PROVIDER.into()));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot build the HTTP client: {e}")))?;
        let limiter = rate::for_base(&cfg.api_url, &cfg.base_id, cfg.rate_per_sec);
        Ok(AirtableClient {
            http,
            cfg,
            api,
            limiter,
            batches: Batches::default(),
        })
    }

    /// `{api}/v0/{segments...}` with each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty();
            p.push("v0");
            for s in segments {
                p.push(s);
            }
        }
        url
    }

    fn table_url(&self, table: &str, extra: &[&str]) -> Url {
        let mut segs = vec![self.cfg.base_id.as_str(), table];
        segs.extend_from_slice(extra);
        self.url(&segs)
    }

    async fn send(&self, call: Call<'_>) -> Result<Value, StoreError> {
        self.send_paced(call, false).await
    }

    /// Sends a call; `slot_taken`: the caller already took the rate limiter's slot for the first try.
    async fn send_paced(&self, call: Call<'_>, slot_taken: bool) -> Result<Value, StoreError> {
        let mut slot_taken = slot_taken;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.cfg.retry_min_delay)
            .with_max_delay(self.cfg.retry_max_delay)
            .with_max_times(self.cfg.max_retries as usize)
            .with_jitter()
            .build();
        let mut waits_429 = 0u32;
        let method_label = call.method.as_str().to_string();
        loop {
            if !slot_taken {
                self.limiter.acquire().await;
            }
            slot_taken = false;
            let started = Instant::now();
            let mut req = self
                .http
                .request(call.method.clone(), call.url.clone())
                .bearer_auth(&self.cfg.token);
            if let Some(b) = &call.body {
                req = req.json(b);
            }
            let result = req.send().await;
            let (status, outcome) = match result {
                Err(e) => {
                    let err = if e.is_timeout() {
                        StoreError::Timeout(self.cfg.timeout)
                    } else {
                        // Display without the URL: it may hold a long formula; the token is never in it.
                        StoreError::Network(e.without_url().to_string())
                    };
                    ("error".to_string(), Err(err))
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(body) => (status.to_string(), Ok((status, body))),
                        Err(e) => (
                            status.to_string(),
                            Err(StoreError::Network(e.without_url().to_string())),
                        ),
                    }
                }
            };
            metrics::histogram!("airtable_request_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("airtable_requests_total", "method" => method_label.clone(), "status" => status)
                .increment(1);

            let err = match outcome {
                Ok((status, body)) if (200..300).contains(&status) => {
                    return serde_json::from_slice(&body).map_err(|e| {
                        StoreError::Decode(format!(
                            "Airtable answered {status} with invalid JSON: {e}"
                        ))
                    });
                }
                Ok((429, _)) => {
                    if waits_429 < self.cfg.max_retries {
                        waits_429 += 1;
                        metrics::counter!("airtable_retries_total", "reason" => "429").increment(1);
                        tracing::warn!(
                            wait_ms = self.cfg.rate_limit_wait.as_millis() as u64,
                            "Airtable answered 429; waiting before sending again"
                        );
                        tokio::time::sleep(self.cfg.rate_limit_wait).await;
                        continue;
                    }
                    return Err(StoreError::RateLimited {
                        retries: waits_429,
                        wait: self.cfg.rate_limit_wait,
                    });
                }
                Ok((status, body)) => {
                    let (kind, message) = parse_error_body(&body);
                    StoreError::from_airtable_request(
                        status,
                        &kind,
                        &message,
                        call.table,
                        call.id,
                        call.body.as_ref(),
                    )
                }
                Err(e) => e,
            };
            let retryable = matches!(
                err,
                StoreError::Unavailable { .. } | StoreError::Network(_) | StoreError::Timeout(_)
            );
            if retryable
                && call.idempotent
                && let Some(delay) = backoff.next()
            {
                {
                    metrics::counter!("airtable_retries_total", "reason" => err.code())
                        .increment(1);
                    tracing::warn!(
                        code = err.code(),
                        delay_ms = delay.as_millis() as u64,
                        "retrying Airtable call"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            return Err(err);
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, StoreError> {
        serde_json::from_value(v)
            .map_err(|e| StoreError::Decode(format!("unexpected Airtable body: {e}")))
    }

    pub(crate) async fn get(&self, table: &str, id: &str) -> Result<Record, StoreError> {
        let part = Part {
            idents: vec![id.to_owned()],
            records: Vec::new(),
        };
        self.grouped(Op::Get, table, part)
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound {
                table: table.to_owned(),
                id: id.to_owned(),
            })
    }

    /// Sends `part` with the other callers' parts of the same operation on `table` that wait for a
    /// slot at the same time (see `coalesce.rs`).
    async fn grouped(&self, op: Op, table: &str, part: Part) -> Result<Vec<Record>, StoreError> {
        let mine = Part {
            idents: part.idents.clone(),
            records: part.records.clone(),
        };
        let answer = match self.batches.join(op, table, part) {
            Role::Follow(answer) => answer.await,
            Role::Lead(lead, answer) => {
                self.limiter.acquire().await;
                let batch = lead.take();
                if batch.len() == 1 {
                    let result = self.send_part(op, table, &mine, true).await;
                    batch.answer_one(result);
                } else {
                    let callers = batch.len();
                    let merged = Part {
                        idents: batch.parts().flat_map(|p| p.idents.clone()).collect(),
                        records: batch.parts().flat_map(|p| p.records.clone()).collect(),
                    };
                    match self.send_part(op, table, &merged, true).await {
                        Ok(records) => {
                            metrics::counter!("airtable_requests_saved_total")
                                .increment(callers as u64 - 1);
                            batch.distribute(op, table, records);
                        }
                        Err(e) => {
                            tracing::debug!(
                                code = e.code(),
                                callers,
                                "a merged Airtable request failed; each caller sends its own"
                            );
                            batch.send_alone();
                        }
                    }
                }
                answer.await
            }
        };
        match answer {
            Ok(Answer::Done(result)) => result,
            Ok(Answer::Alone) | Err(_) => self.send_part(op, table, &mine, false).await,
        }
    }

    /// One request for `part`: a GET by id (one record) or a list on `RECORD_ID()` (several), a PATCH
    /// by id, or an upsert on `Key`.
    async fn send_part(
        &self,
        op: Op,
        table: &str,
        part: &Part,
        slot_taken: bool,
    ) -> Result<Vec<Record>, StoreError> {
        let body = match op {
            Op::Get if part.idents.len() == 1 => {
                let id = part.idents[0].as_str();
                let call = Call {
                    method: Method::GET,
                    url: self.table_url(table, &[id]),
                    body: None,
                    idempotent: true,
                    table,
                    id,
                };
                return Ok(vec![Self::decode(
                    self.send_paced(call, slot_taken).await?,
                )?]);
            }
            Op::Get => {
                // Ids are checked record ids (`rec` + 14 letters or digits) before they get here.
                let mut unique: Vec<&str> = part.idents.iter().map(String::as_str).collect();
                unique.sort_unstable();
                unique.dedup();
                let formula = format!(
                    "OR({})",
                    unique
                        .iter()
                        .map(|id| format!("RECORD_ID() = {}", crate::filter::string_literal(id)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut url = self.table_url(table, &[]);
                url.query_pairs_mut()
                    .append_pair("pageSize", &MAX_BATCH.to_string())
                    .append_pair("filterByFormula", &formula);
                let call = Call {
                    method: Method::GET,
                    url,
                    body: None,
                    idempotent: true,
                    table,
                    id: "",
                };
                return Ok(Self::decode::<Page>(self.send_paced(call, slot_taken).await?)?.records);
            }
            Op::Update => json!({ "records": part.records }),
            Op::Upsert => json!({
                "performUpsert": { "fieldsToMergeOn": [KEY_FIELD] },
                "records": part.records,
            }),
        };
        // Named in errors: the records a PATCH by id was for.
        let ids = if op == Op::Update {
            part.idents.join(",")
        } else {
            String::new()
        };
        let call = Call {
            method: Method::PATCH,
            url: self.table_url(table, &[]),
            body: Some(body),
            idempotent: true,
            table,
            id: &ids,
        };
        Ok(Self::decode::<Page>(self.send_paced(call, slot_taken).await?)?.records)
    }

    pub(crate) async fn list(&self, table: &str, q: &ListQuery) -> Result<Vec<Record>, StoreError> {
        let formula = q.filter.as_ref().map(|f| f.to_formula()).transpose()?;
        let mut restarts = 0;
        'restart: loop {
            let mut out: Vec<Record> = Vec::new();
            let mut offset: Option<String> = None;
            loop {
                let page = match self
                    .list_page(table, q, formula.as_deref(), offset.as_deref())
                    .await
                {
                    Err(StoreError::Api { error_type, .. })
                        if error_type == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE" && restarts < 3 =>
                    {
                        restarts += 1;
                        metrics::counter!("airtable_retries_total", "reason" => "iterator")
                            .increment(1);
                        continue 'restart;
                    }
                    other => other?,
                };
                out.extend(page.records);
                if let Some(max) = q.max_records
                    && out.len() >= max
                {
                    out.truncate(max);
                    return Ok(out);
                }
                match page.offset {
                    Some(o) if !o.is_empty() => offset = Some(o),
                    _ => return Ok(out),
                }
            }
        }
    }

    async fn list_page(
        &self,
        table: &str,
        q: &ListQuery,
        formula: Option<&str>,
        offset: Option<&str>,
    ) -> Result<Page, StoreError> {
        let page_size = self.cfg.page_size.clamp(1, 100);
        let mut url = self.table_url(table, &[]);
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("pageSize", &page_size.to_string());
            if let Some(m) = q.max_records {
                qp.append_pair("maxRecords", &m.to_string());
            }
            if let Some(f) = formula {
                qp.append_pair("filterByFormula", f);
            }
            for f in &q.fields {
                qp.append_pair("fields[]", f);
            }
            if let Some(o) = offset {
                qp.append_pair("offset", o);
            }
        }
        let call = if url.as_str().len() > self.cfg.max_url_len {
            let mut body = json!({ "pageSize": page_size });
            if let Some(m) = q.max_records {
                body["maxRecords"] = json!(m);
            }
            if let Some(f) = formula {
                body["filterByFormula"] = json!(f);
            }
            if !q.fields.is_empty() {
                body["fields"] = json!(q.fields);
            }
            if let Some(o) = offset {
                body["offset"] = json!(o);
            }
            Call {
                method: Method::POST,
                url: self.table_url(table, &["listRecords"]),
                body: Some(body),
                idempotent: true,
                table,
                id: "",
            }
        } else {
            Call {
                method: Method::GET,
                url,
                body: None,
                idempotent: true,
                table,
                id: "",
            }
        };
        Self::decode(self.send(call).await?)
    }

    async fn write_batch(
        &self,
        method: Method,
        table: &str,
        body: Value,
        idempotent: bool,
        ids: &str,
    ) -> Result<Vec<Record>, StoreError> {
        let v = self
            .send(Call {
                method,
                url: self.table_url(table, &[]),
                body: Some(body),
                idempotent,
                table,
                id: ids,
            })
            .await?;
        Ok(Self::decode::<Page>(v)?.records)
    }

    pub(crate) async fn create(
        &self,
        table: &str,
        records: Vec<Fields>,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(MAX_BATCH) {
            let recs: Vec<Value> = chunk.iter().map(|f| json!({ "fields": f })).collect();
            out.extend(
                self.write_batch(Method::POST, table, json!({ "records": recs }), false, "")
                    .await?,
            );
        }
        Ok(out)
    }

    pub(crate) async fn update(
        &self,
        table: &str,
        records: Vec<(String, Fields)>,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(MAX_BATCH) {
            let part = Part {
                idents: chunk.iter().map(|(id, _)| id.clone()).collect(),
                records: chunk
                    .iter()
                    .map(|(id, f)| json!({ "id": id, "fields": f }))
                    .collect(),
            };
            out.extend(self.grouped(Op::Update, table, part).await?);
        }
        Ok(out)
    }

    pub(crate) async fn upsert(
        &self,
        table: &str,
        records: Vec<Fields>,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        for batch in upsert_batches(records) {
            let part = Part {
                idents: batch
                    .iter()
                    .map(|f| {
                        f.get(KEY_FIELD)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect(),
                records: batch.iter().map(|f| json!({ "fields": f })).collect(),
            };
            out.extend(self.grouped(Op::Upsert, table, part).await?);
        }
        Ok(out)
    }

    pub(crate) async fn delete(&self, table: &str, ids: Vec<String>) -> Result<(), StoreError> {
        for chunk in ids.chunks(MAX_BATCH) {
            let mut url = self.table_url(table, &[]);
            {
                let mut qp = url.query_pairs_mut();
                for id in chunk {
                    qp.append_pair("records[]", id);
                }
            }
            let joined = chunk.join(",");
            self.send(Call {
                method: Method::DELETE,
                url,
                body: None,
                idempotent: false,
                table,
                id: &joined,
            })
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn ready(&self) -> Result<(), StoreError> {
        let mut url = self.table_url(tables::USERS, &[]);
        url.query_pairs_mut()
            .append_pair("pageSize", "1")
            .append_pair("maxRecords", "1");
        self.send(Call {
            method: Method::GET,
            url,
            body: None,
            idempotent: false,
            table: tables::USERS,
            id: "",
        })
        .await
        .map(|_| ())
    }

    // --- Meta API (schema tooling) ---

    fn meta_url(&self, extra: &[&str]) -> Url {
        let mut segs = vec!["meta", "bases", self.cfg.base_id.as_str(), "tables"];
        segs.extend_from_slice(extra);
        self.url(&segs)
    }

    /// `GET /v0/meta/bases/{base}/tables`.
    pub(crate) async fn meta_tables(&self) -> Result<BaseSchema, StoreError> {
        let v = self
            .send(Call {
                method: Method::GET,
                url: self.meta_url(&[]),
                body: None,
                idempotent: true,
                table: "",
                id: "",
            })
            .await?;
        Self::decode(v)
    }

    /// `POST /v0/meta/bases/{base}/tables`.
    pub(crate) async fn meta_create_table(
        &self,
        table: &TableSchema,
    ) -> Result<TableSchema, StoreError> {
        let v = self
            .send(Call {
                method: Method::POST,
                url: self.meta_url(&[]),
                body: Some(
                    serde_json::to_value(table).map_err(|e| StoreError::Decode(e.to_string()))?,
                ),
                idempotent: false,
                table: &table.name,
                id: "",
            })
            .await?;
        Self::decode(v)
    }

    /// `POST /v0/meta/bases/{base}/tables/{tableId}/fields`.
    pub(crate) async fn meta_create_field(
        &self,
        table_id: &str,
        field: &FieldSchema,
    ) -> Result<FieldSchema, StoreError> {
        let v = self
            .send(Call {
                method: Method::POST,
                url: self.meta_url(&[table_id, "fields"]),
                body: Some(
                    serde_json::to_value(field).map_err(|e| StoreError::Decode(e.to_string()))?,
                ),
                idempotent: false,
                table: table_id,
                id: "",
            })
            .await?;
        Self::decode(v)
    }
}

/// Splits upserts into batches of at most 10 in which no `Key` repeats: Airtable cannot merge two
/// records of one request onto the same existing record, while sequential batches apply in order.
fn upsert_batches(records: Vec<Fields>) -> Vec<Vec<Fields>> {
    let mut out: Vec<Vec<Fields>> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for r in records {
        let key = r
            .get(KEY_FIELD)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let start_new = match out.last() {
            None => true,
            Some(b) => b.len() >= MAX_BATCH || keys.contains(&key),
        };
        if start_new {
            out.push(Vec::new());
            keys.clear();
        }
        keys.push(key);
        if let Some(b) = out.last_mut() {
            b.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_error_forms() {
        assert_eq!(parse_error_body(br#"{"error":"NOT_FOUND"}"#).0, "NOT_FOUND");
        let (t, m) =
            parse_error_body(br#"{"error":{"type":"INVALID_RECORDS","message":"too many"}}"#);
        assert_eq!((t.as_str(), m.as_str()), ("INVALID_RECORDS", "too many"));
        assert_eq!(parse_error_body(b"<html>").0, "UNKNOWN");
    }

    #[test]
    fn upsert_batches_respect_size_and_keys() {
        let rec = |k: &str| {
            let mut f = Fields::new();
            f.insert("Key".into(), json!(k));
            f
        };
        let b = upsert_batches((0..25).map(|i| rec(&i.to_string())).collect());
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let b = upsert_batches(vec![rec("a"), rec("b"), rec("a")]);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn config_debug_redacts_token() {
        let cfg = AirtableConfig::new("patSECRET", "app0123456789abcd");
        assert!(!format!("{cfg:?}").contains("SECRET"));
        assert!(AirtableClient::new(AirtableConfig::new("t", "nope")).is_err());
    }
}
