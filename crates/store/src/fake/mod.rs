//! A stateful fake of the Airtable Web API and Meta API on wiremock, for tests (feature `fake`).
//!
//! It keeps records in memory per table and behaves as Airtable documents, so that the real client code
//! (batching, pagination, rate limiting, retries, error typing) is exercised end to end:
//! - list with `pageSize` (≤ 100), `offset`, `maxRecords`, `fields[]` and `filterByFormula` — the formula
//!   is parsed and evaluated (`formula.rs`), never string-matched; `POST …/listRecords` with a JSON body;
//! - get, create, update (PATCH by id, merging), upsert (`performUpsert.fieldsToMergeOn`), delete;
//! - more than 10 records in a write → 422 `INVALID_RECORDS`; unknown field → 422 `UNKNOWN_FIELD_NAME`;
//!   unknown select option → 422 `INVALID_MULTIPLE_CHOICE_OPTIONS`; unknown table → 404
//!   `TABLE_NOT_FOUND`; missing record → 404 `{"error":"NOT_FOUND"}` (the bare-string form);
//! - more than `rate_limit` accepted requests within one second → 429;
//! - injectable faults: [`FakeAirtable::fail_next`], [`FakeAirtable::set_failure_ratio`],
//!   [`FakeAirtable::expire_offsets`] (next paged request gets `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`);
//! - the Meta API: list tables, create a table, create a field (computed types refused, inverse link
//!   fields added as Airtable does), starting from any schema ([`FakeBuilder::schema`]);
//! - call accounting: [`FakeAirtable::calls`], [`FakeAirtable::calls_to`], [`FakeAirtable::max_rate_seen`],
//!   [`FakeAirtable::count_429`], [`FakeAirtable::requests`].
//!
//! Writes are validated against the schema with the same code as the SQLite backend
//! (`BaseSchema::validate_fields`). State sits behind one `std::sync::Mutex`: wiremock responders are
//! synchronous, and a single lock makes every request atomic, as each Airtable request is.

pub mod formula;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers::any};

use crate::schema::{BaseSchema, FieldSchema, TableSchema};
use crate::{AirtableConfig, Fields, Record, RecordId, StoreError};
use formula::V;

/// The token the fake accepts (any non-empty bearer token is accepted; this one is handy).
pub const FAKE_TOKEN: &str = "patFAKEtoken.0000";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct FakeCall {
    pub method: String,
    /// The percent-decoded path, e.g. `/v0/appXXXXXXXXXXXXXX/Run Requests`.
    pub path: String,
    pub status: u16,
    pub at: Instant,
}

/// Builds a fake with a schema and a rate limit.
pub struct FakeBuilder {
    schema: Option<BaseSchema>,
    rate_limit: Option<usize>,
}

impl FakeBuilder {
    /// Start from this schema (in the schema file's shape; ids are assigned) instead of the shipped one.
    pub fn schema(mut self, schema: BaseSchema) -> FakeBuilder {
        self.schema = Some(schema);
        self
    }

    /// Requests accepted per second before answering 429 (`None` = unlimited). Default 5.
    pub fn rate_limit(mut self, per_second: Option<usize>) -> FakeBuilder {
        self.rate_limit = per_second;
        self
    }

    pub async fn start(self) -> FakeAirtable {
        let schema = match self.schema {
            Some(s) => s,
            None => BaseSchema::embedded().unwrap_or(BaseSchema { tables: Vec::new() }),
        };
        let base_id = format!("app{}", &RecordId::generate().as_str()[3..]);
        let state = Arc::new(Mutex::new(State {
            base_id: base_id.clone(),
            schema: to_live(schema),
            records: HashMap::new(),
            calls: Vec::new(),
            window: VecDeque::new(),
            max_rate_seen: 0,
            count_429: 0,
            rate_limit: self.rate_limit,
            fail_next: VecDeque::new(),
            failure_ratio: (0.0, 500),
            expire_offsets: false,
            iterator_seq: 0,
        }));
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        FakeAirtable {
            server,
            state,
            base_id,
        }
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeAirtable {
    server: MockServer,
    state: Arc<Mutex<State>>,
    base_id: String,
}

impl FakeAirtable {
    /// A fake of the shipped schema, limited to 5 requests per second.
    pub async fn start() -> FakeAirtable {
        FakeAirtable::builder().start().await
    }

    pub fn builder() -> FakeBuilder {
        FakeBuilder {
            schema: None,
            rate_limit: Some(5),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The base URL to use as `AIRTABLE_API_URL`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn base_id(&self) -> &str {
        &self.base_id
    }

    /// A client configuration pointing at the fake, with short waits (`AirtableConfig::for_tests`).
    pub fn config(&self) -> AirtableConfig {
        let mut cfg = AirtableConfig::new(FAKE_TOKEN, self.base_id.clone()).for_tests();
        cfg.api_url = self.uri();
        cfg
    }

    /// The records of a table (by name or id), in creation order.
    pub fn records(&self, table: &str) -> Vec<Record> {
        let st = self.lock();
        match st.schema.table(table).and_then(|t| t.id.clone()) {
            Some(id) => st.records.get(&id).cloned().unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Adds a record directly (no request, no rate limit, no validation) and returns it.
    pub fn insert(&self, table: &str, mut fields: Fields) -> Record {
        let mut st = self.lock();
        crate::drop_empty(&mut fields);
        let rec = Record {
            id: RecordId::generate().into_string(),
            created_time: crate::now_rfc3339(),
            fields,
        };
        if let Some(id) = st.schema.table(table).and_then(|t| t.id.clone()) {
            st.records.entry(id).or_default().push(rec.clone());
        }
        rec
    }

    /// Removes every record of a table.
    pub fn clear(&self, table: &str) {
        let mut st = self.lock();
        if let Some(id) = st.schema.table(table).and_then(|t| t.id.clone()) {
            st.records.remove(&id);
        }
    }

    /// The live schema (with ids), as `GET /v0/meta/bases/{base}/tables` returns it.
    pub fn schema(&self) -> BaseSchema {
        self.lock().schema.clone()
    }

    /// The next `n` requests fail with `status` (before any state change).
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.lock();
        st.fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// Each request fails with `status` with probability `ratio` (0 disables).
    pub fn set_failure_ratio(&self, ratio: f64, status: u16) {
        self.lock().failure_ratio = (ratio, status);
    }

    /// The next request that carries an `offset` gets 422 `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`.
    pub fn expire_offsets(&self) {
        self.lock().expire_offsets = true;
    }

    /// Total requests received.
    pub fn calls(&self) -> usize {
        self.lock().calls.len()
    }

    /// Requests with this method and exact decoded path (e.g. `("POST", "/v0/app…/Runs")`).
    pub fn calls_to(&self, method: &str, path: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .count()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// The path of a table's endpoint, for `calls_to`.
    pub fn table_path(&self, table: &str) -> String {
        format!("/v0/{}/{}", self.base_id, table)
    }

    /// The most requests accepted within any one-second window.
    pub fn max_rate_seen(&self) -> usize {
        self.lock().max_rate_seen
    }

    /// How many requests were answered 429.
    pub fn count_429(&self) -> usize {
        self.lock().count_429
    }

    /// Forgets call history and rate statistics (not records).
    pub fn reset_counters(&self) {
        let mut st = self.lock();
        st.calls.clear();
        st.window.clear();
        st.max_rate_seen = 0;
        st.count_429 = 0;
    }
}

struct Responder(Arc<Mutex<State>>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let path = decode_path(req.url.path());
        let (status, body) = st.handle(req, &path);
        st.calls.push(FakeCall {
            method: req.method.to_string(),
            path,
            status,
            at: Instant::now(),
        });
        ResponseTemplate::new(status).set_body_json(body)
    }
}

struct State {
    base_id: String,
    schema: BaseSchema,
    /// Records by table id.
    records: HashMap<String, Vec<Record>>,
    calls: Vec<FakeCall>,
    window: VecDeque<Instant>,
    max_rate_seen: usize,
    count_429: usize,
    rate_limit: Option<usize>,
    fail_next: VecDeque<u16>,
    failure_ratio: (f64, u16),
    expire_offsets: bool,
    iterator_seq: u64,
}

type Reply = (u16, Value);

fn err(status: u16, kind: &str, message: impl Into<String>) -> Reply {
    (
        status,
        json!({ "error": { "type": kind, "message": message.into() } }),
    )
}

fn not_found() -> Reply {
    (404, json!({ "error": "NOT_FOUND" }))
}

/// Airtable's answer for a validation failure found by the shared schema code.
fn store_err_reply(e: StoreError) -> Reply {
    match e {
        StoreError::UnknownField { field, .. } => err(
            422,
            "UNKNOWN_FIELD_NAME",
            format!("Unknown field name: \"{field}\""),
        ),
        StoreError::InvalidSelectOption { value, .. } => err(
            422,
            "INVALID_MULTIPLE_CHOICE_OPTIONS",
            // Airtable doubles the quotes around the option's name in this message.
            format!("Insufficient permissions to create new select option \"\"{value}\"\""),
        ),
        // Airtable's message names the field but neither the value nor why.
        StoreError::InvalidValue { field, .. } => err(
            422,
            "INVALID_VALUE_FOR_COLUMN",
            format!("Field \"{field}\" cannot accept the provided value"),
        ),
        StoreError::TableNotFound { table } => err(
            404,
            "TABLE_NOT_FOUND",
            format!("Could not find table {table} in this base"),
        ),
        other => err(422, "INVALID_REQUEST_UNKNOWN", other.to_string()),
    }
}

fn decode_path(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Gives a schema-file schema ids, resolves `linkedTableName` to `linkedTableId`, as a live base has.
fn to_live(mut schema: BaseSchema) -> BaseSchema {
    for t in &mut schema.tables {
        if t.id.is_none() {
            t.id = Some(new_id("tbl"));
        }
        for f in &mut t.fields {
            if f.id.is_none() {
                f.id = Some(new_id("fld"));
            }
        }
        if t.primary_field_id.is_none() {
            t.primary_field_id = t.fields.first().and_then(|f| f.id.clone());
        }
    }
    let ids: HashMap<String, String> = schema
        .tables
        .iter()
        .filter_map(|t| Some((t.name.clone(), t.id.clone()?)))
        .collect();
    for t in &mut schema.tables {
        for f in &mut t.fields {
            if let Some(Value::Object(o)) = &mut f.options
                && let Some(Value::String(name)) = o.remove("linkedTableName")
            {
                let id = ids.get(&name).cloned().unwrap_or(name);
                o.insert("linkedTableId".into(), json!(id));
            }
        }
    }
    schema
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", &RecordId::generate().as_str()[3..])
}

/// Parameters of a list request, from the query string or a listRecords body.
#[derive(Default)]
struct ListParams {
    page_size: Option<usize>,
    max_records: Option<usize>,
    offset: Option<String>,
    formula: Option<String>,
    fields: Vec<String>,
}

impl State {
    fn handle(&mut self, req: &Request, path: &str) -> Reply {
        let authorized = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
        if !authorized {
            return err(401, "AUTHENTICATION_REQUIRED", "Authentication required");
        }
        let now = Instant::now();
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.window.pop_front();
        }
        if let Some(limit) = self.rate_limit
            && self.window.len() >= limit
        {
            self.count_429 += 1;
            return (
                429,
                json!({ "errors": [{ "error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later" }] }),
            );
        }
        self.window.push_back(now);
        self.max_rate_seen = self.max_rate_seen.max(self.window.len());

        if let Some(status) = self.fail_next.pop_front() {
            return err(status, "SERVER_ERROR", "injected failure");
        }
        let (ratio, status) = self.failure_ratio;
        if ratio > 0.0 && rand::rng().random_bool(ratio.min(1.0)) {
            return err(status, "SERVER_ERROR", "injected failure");
        }

        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method.as_str();
        match segs.as_slice() {
            ["v0", "meta", "bases", base, rest @ ..] => {
                if *base != self.base_id {
                    return not_found();
                }
                self.meta(method, rest, req)
            }
            ["v0", base, table, rest @ ..] => {
                if *base != self.base_id {
                    return not_found();
                }
                let Some(t) = self.schema.table(table).cloned() else {
                    return err(
                        404,
                        "TABLE_NOT_FOUND",
                        format!(
                            "Could not find table {table} in application {}",
                            self.base_id
                        ),
                    );
                };
                self.data(method, &t, rest, req)
            }
            _ => not_found(),
        }
    }

    fn data(&mut self, method: &str, t: &TableSchema, rest: &[&str], req: &Request) -> Reply {
        let body = || serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
        match (method, rest) {
            ("GET", []) => {
                let mut p = ListParams::default();
                for (k, v) in req.url.query_pairs() {
                    match k.as_ref() {
                        "pageSize" => p.page_size = v.parse().ok(),
                        "maxRecords" => p.max_records = v.parse().ok(),
                        "offset" => p.offset = Some(v.into_owned()),
                        "filterByFormula" => p.formula = Some(v.into_owned()),
                        "fields[]" | "fields" => p.fields.push(v.into_owned()),
                        _ => {}
                    }
                }
                self.list(t, p)
            }
            ("POST", ["listRecords"]) => {
                let b = body();
                let p = ListParams {
                    page_size: b
                        .get("pageSize")
                        .and_then(Value::as_u64)
                        .map(|n| n as usize),
                    max_records: b
                        .get("maxRecords")
                        .and_then(Value::as_u64)
                        .map(|n| n as usize),
                    offset: b.get("offset").and_then(Value::as_str).map(str::to_string),
                    formula: b
                        .get("filterByFormula")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    fields: b
                        .get("fields")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                self.list(t, p)
            }
            ("GET", [id]) => match self.find(t, id) {
                Some(r) => (200, json!(r)),
                None => not_found(),
            },
            ("POST", []) => self.create(t, body()),
            ("PATCH" | "PUT", []) => {
                let b = body();
                if b.get("performUpsert").is_some() {
                    self.upsert(t, b)
                } else {
                    self.update(t, b)
                }
            }
            ("PATCH" | "PUT", [id]) => {
                let b = body();
                let fields = b.get("fields").cloned().unwrap_or(json!({}));
                let (s, v) = self.update(t, json!({ "records": [{ "id": id, "fields": fields }] }));
                match v.get("records").and_then(|r| r.get(0)) {
                    Some(r) if s == 200 => (200, r.clone()),
                    _ => (s, v),
                }
            }
            ("DELETE", []) => {
                let ids: Vec<String> = req
                    .url
                    .query_pairs()
                    .filter(|(k, _)| k == "records[]" || k == "records")
                    .map(|(_, v)| v.into_owned())
                    .collect();
                self.delete(t, ids)
            }
            ("DELETE", [id]) => {
                let (s, v) = self.delete(t, vec![id.to_string()]);
                match v.get("records").and_then(|r| r.get(0)) {
                    Some(r) if s == 200 => (200, r.clone()),
                    _ => (s, v),
                }
            }
            _ => not_found(),
        }
    }

    fn table_records(&self, t: &TableSchema) -> &[Record] {
        t.id.as_ref()
            .and_then(|id| self.records.get(id))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn table_records_mut(&mut self, t: &TableSchema) -> &mut Vec<Record> {
        self.records
            .entry(t.id.clone().unwrap_or_default())
            .or_default()
    }

    fn find(&self, t: &TableSchema, id: &str) -> Option<Record> {
        self.table_records(t).iter().find(|r| r.id == id).cloned()
    }

    /// A record's field values as the formula language sees them (links → primary values).
    fn formula_values(&self, t: &TableSchema, r: &Record) -> HashMap<String, V> {
        let mut out = HashMap::new();
        for f in &t.fields {
            let Some(v) = r.fields.get(&f.name) else {
                continue;
            };
            let value = if f.is_link() {
                let target = f.link_target(&self.schema);
                let ids: Vec<&str> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let prim = target.and_then(|tt| tt.primary_field().map(|p| (tt, p.name.clone())));
                V::List(
                    ids.iter()
                        .filter_map(|id| {
                            let (tt, pname) = prim.as_ref()?;
                            let linked = self.find(tt, id)?;
                            Some(json_to_v(linked.fields.get(pname).unwrap_or(&Value::Null)))
                        })
                        .collect(),
                )
            } else {
                json_to_v(v)
            };
            out.insert(f.name.clone(), value);
        }
        out
    }

    fn list(&mut self, t: &TableSchema, p: ListParams) -> Reply {
        for f in &p.fields {
            if t.field(f).is_none() {
                return err(
                    422,
                    "UNKNOWN_FIELD_NAME",
                    format!("Unknown field name: \"{f}\""),
                );
            }
        }
        let expr = match &p.formula {
            Some(src) if !src.trim().is_empty() => match formula::parse(src) {
                Ok(e) => {
                    let mut names = Vec::new();
                    e.fields(&mut names);
                    let unknown: Vec<String> =
                        names.into_iter().filter(|n| t.field(n).is_none()).collect();
                    if !unknown.is_empty() {
                        return err(
                            422,
                            "INVALID_FILTER_BY_FORMULA",
                            format!("Unknown field names: {}", unknown.join(", ")),
                        );
                    }
                    Some(e)
                }
                Err(why) => {
                    return err(
                        422,
                        "INVALID_FILTER_BY_FORMULA",
                        format!("The formula for filtering records is invalid: {why}"),
                    );
                }
            },
            _ => None,
        };
        let start = match &p.offset {
            None => 0,
            Some(o) => {
                if self.expire_offsets {
                    self.expire_offsets = false;
                    return err(
                        422,
                        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                        "The iterator is no longer available",
                    );
                }
                match o.rsplit('/').next().and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if o.starts_with("itr") => n,
                    _ => return err(422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE", "Unknown offset"),
                }
            }
        };
        let page_size = p.page_size.unwrap_or(100);
        if page_size == 0 || page_size > 100 {
            return err(
                422,
                "INVALID_PAGE_SIZE",
                "pageSize must be between 1 and 100",
            );
        }
        let mut matching: Vec<Record> = self
            .table_records(t)
            .iter()
            .filter(|r| match &expr {
                Some(e) => e.eval(&self.formula_values(t, r), &r.id).truthy(),
                None => true,
            })
            .cloned()
            .collect();
        if let Some(m) = p.max_records {
            matching.truncate(m);
        }
        let end = (start + page_size).min(matching.len());
        let page: Vec<Value> = matching
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if !p.fields.is_empty() {
                    r.fields.retain(|k, _| p.fields.contains(k));
                }
                json!(r)
            })
            .collect();
        let mut body = json!({ "records": page });
        if end < matching.len() {
            self.iterator_seq += 1;
            body["offset"] = json!(format!("itr{:014}/{end}", self.iterator_seq));
        }
        (200, body)
    }

    /// The `records` array of a write body, checked against the 10-record limit.
    fn write_records(body: &Value) -> Result<Vec<Value>, Reply> {
        let Some(recs) = body.get("records").and_then(Value::as_array) else {
            return Err(err(
                422,
                "INVALID_REQUEST_MISSING_FIELDS",
                "Could not find field \"records\" in the request body",
            ));
        };
        if recs.len() > 10 {
            return Err(err(
                422,
                "INVALID_RECORDS",
                "You can create, update or delete up to 10 records per request",
            ));
        }
        if recs.is_empty() {
            return Err(err(
                422,
                "INVALID_RECORDS",
                "The request must include at least one record",
            ));
        }
        Ok(recs.clone())
    }

    fn fields_of(&self, t: &TableSchema, rec: &Value) -> Result<Fields, Reply> {
        let fields = match rec.get("fields") {
            Some(Value::Object(m)) => m.clone(),
            _ => {
                return Err(err(
                    422,
                    "INVALID_RECORDS",
                    "Each record needs a \"fields\" object",
                ));
            }
        };
        self.schema
            .validate_fields(&t.name, &fields)
            .map_err(store_err_reply)?;
        Ok(fields)
    }

    /// The fields of every record of a create or upsert body, each checked against the table.
    fn new_fields(&self, t: &TableSchema, body: &Value) -> Result<Vec<Fields>, Reply> {
        Self::write_records(body)?
            .iter()
            .map(|rec| self.fields_of(t, rec))
            .collect()
    }

    fn create(&mut self, t: &TableSchema, body: Value) -> Reply {
        let all = match self.new_fields(t, &body) {
            Ok(all) => all,
            Err(e) => return e,
        };
        let out: Vec<Record> = all.into_iter().map(|f| self.insert_record(t, f)).collect();
        (200, json!({ "records": out }))
    }

    fn insert_record(&mut self, t: &TableSchema, mut fields: Fields) -> Record {
        crate::drop_empty(&mut fields);
        let rec = Record {
            id: RecordId::generate().into_string(),
            created_time: crate::now_rfc3339(),
            fields,
        };
        self.table_records_mut(t).push(rec.clone());
        rec
    }

    fn merge(&mut self, t: &TableSchema, id: &str, fields: Fields) -> Option<Record> {
        let rec = self.table_records_mut(t).iter_mut().find(|r| r.id == id)?;
        for (k, v) in fields {
            rec.fields.insert(k, v);
        }
        crate::drop_empty(&mut rec.fields);
        Some(rec.clone())
    }

    fn update(&mut self, t: &TableSchema, body: Value) -> Reply {
        let recs = match Self::write_records(&body) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut all = Vec::new();
        for rec in &recs {
            let Some(id) = rec.get("id").and_then(Value::as_str) else {
                return err(
                    422,
                    "INVALID_RECORDS",
                    "Each record to update needs an \"id\"",
                );
            };
            if self.find(t, id).is_none() {
                return not_found();
            }
            match self.fields_of(t, rec) {
                Ok(f) => all.push((id.to_string(), f)),
                Err(e) => return e,
            }
        }
        let out: Vec<Record> = all
            .into_iter()
            .filter_map(|(id, f)| self.merge(t, &id, f))
            .collect();
        (200, json!({ "records": out }))
    }

    fn upsert(&mut self, t: &TableSchema, body: Value) -> Reply {
        let merge_on: Vec<String> = body
            .pointer("/performUpsert/fieldsToMergeOn")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if merge_on.is_empty() || merge_on.len() > 3 {
            return err(
                422,
                "INVALID_REQUEST_UNKNOWN",
                "fieldsToMergeOn must list 1 to 3 fields",
            );
        }
        for f in &merge_on {
            if t.field(f).is_none() {
                return err(
                    422,
                    "UNKNOWN_FIELD_NAME",
                    format!("Unknown field name: \"{f}\""),
                );
            }
        }
        let all = match self.new_fields(t, &body) {
            Ok(all) => all,
            Err(e) => return e,
        };
        // Resolve every match before writing, as one request is applied atomically.
        let mut plan = Vec::new();
        for f in &all {
            let matches: Vec<String> = self
                .table_records(t)
                .iter()
                .filter(|r| {
                    merge_on
                        .iter()
                        .all(|k| r.fields.get(k) == f.get(k) && f.get(k).is_some())
                })
                .map(|r| r.id.clone())
                .collect();
            if matches.len() > 1 {
                return err(
                    422,
                    "INVALID_RECORDS",
                    "Cannot upsert: more than one existing record matches the fields to merge on",
                );
            }
            plan.push(matches.into_iter().next());
        }
        let (mut created, mut updated, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for (f, existing) in all.into_iter().zip(plan) {
            let rec = match existing {
                Some(id) => {
                    updated.push(id.clone());
                    self.merge(t, &id, f)
                }
                None => {
                    let r = self.insert_record(t, f);
                    created.push(r.id.clone());
                    Some(r)
                }
            };
            out.extend(rec);
        }
        (
            200,
            json!({ "records": out, "createdRecords": created, "updatedRecords": updated }),
        )
    }

    fn delete(&mut self, t: &TableSchema, ids: Vec<String>) -> Reply {
        if ids.len() > 10 {
            return err(
                422,
                "INVALID_RECORDS",
                "You can delete up to 10 records per request",
            );
        }
        if ids.iter().any(|id| self.find(t, id).is_none()) {
            return not_found();
        }
        self.table_records_mut(t).retain(|r| !ids.contains(&r.id));
        let out: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "id": id, "deleted": true }))
            .collect();
        (200, json!({ "records": out }))
    }

    // --- Meta API ---

    fn meta(&mut self, method: &str, rest: &[&str], req: &Request) -> Reply {
        let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
        match (method, rest) {
            ("GET", ["tables"]) => (200, json!(self.schema)),
            ("POST", ["tables"]) => self.meta_create_table(body),
            ("POST", ["tables", table_id, "fields"]) => {
                let Some(t) = self.schema.table(table_id).cloned() else {
                    return not_found();
                };
                match serde_json::from_value::<FieldSchema>(body) {
                    Ok(f) => self.meta_create_field(&t.name, f),
                    Err(e) => err(
                        422,
                        "INVALID_REQUEST_UNKNOWN",
                        format!("Invalid field: {e}"),
                    ),
                }
            }
            _ => not_found(),
        }
    }

    fn check_new_field(&self, f: &FieldSchema) -> Result<(), Reply> {
        if f.name.trim().is_empty() {
            return Err(err(
                422,
                "DUPLICATE_OR_EMPTY_FIELD_NAME",
                "Field name is empty",
            ));
        }
        if !f.is_creatable() {
            return Err(err(
                422,
                "UNSUPPORTED_FIELD_TYPE_FOR_CREATE",
                format!(
                    "Field type {} cannot be created through the API",
                    f.field_type
                ),
            ));
        }
        if f.is_link() {
            let target = f
                .options
                .as_ref()
                .and_then(|o| o.get("linkedTableId"))
                .and_then(Value::as_str)
                .and_then(|id| {
                    self.schema
                        .tables
                        .iter()
                        .find(|t| t.id.as_deref() == Some(id))
                });
            if target.is_none() {
                return Err(err(
                    422,
                    "INVALID_FIELD_TYPE_OPTIONS_FOR_CREATE",
                    "multipleRecordLinks needs options.linkedTableId of an existing table",
                ));
            }
        }
        Ok(())
    }

    fn meta_create_table(&mut self, body: Value) -> Reply {
        let t: TableSchema = match serde_json::from_value(body) {
            Ok(t) => t,
            Err(e) => {
                return err(
                    422,
                    "INVALID_REQUEST_UNKNOWN",
                    format!("Invalid table: {e}"),
                );
            }
        };
        if self.schema.table(&t.name).is_some() {
            return err(
                422,
                "DUPLICATE_TABLE_NAME",
                format!("Table \"{}\" already exists", t.name),
            );
        }
        if t.fields.is_empty() {
            return err(
                422,
                "INVALID_REQUEST_UNKNOWN",
                "A table needs at least one field",
            );
        }
        for f in &t.fields {
            if let Err(e) = self.check_new_field(f) {
                return e;
            }
        }
        let fields = t.fields.clone();
        let table = TableSchema {
            id: Some(new_id("tbl")),
            name: t.name.clone(),
            description: t.description.clone(),
            primary_field_id: None,
            fields: Vec::new(),
        };
        self.schema.tables.push(table);
        for f in fields {
            self.add_field(&t.name, f);
        }
        if let Some(tt) = self.schema.table_mut(&t.name) {
            tt.primary_field_id = tt.fields.first().and_then(|f| f.id.clone());
        }
        (200, json!(self.schema.table(&t.name)))
    }

    fn meta_create_field(&mut self, table: &str, f: FieldSchema) -> Reply {
        if self
            .schema
            .table(table)
            .is_some_and(|t| t.field(&f.name).is_some())
        {
            return err(
                422,
                "DUPLICATE_OR_EMPTY_FIELD_NAME",
                format!("Field \"{}\" already exists", f.name),
            );
        }
        if let Err(e) = self.check_new_field(&f) {
            return e;
        }
        let created = self.add_field(table, f);
        (200, json!(created))
    }

    /// Adds a field (and, for a link, the inverse link field in the target table, as Airtable does).
    fn add_field(&mut self, table: &str, mut f: FieldSchema) -> FieldSchema {
        f.id = Some(new_id("fld"));
        let source_id = self
            .schema
            .table(table)
            .and_then(|t| t.id.clone())
            .unwrap_or_default();
        if let Some(t) = self.schema.table_mut(table) {
            t.fields.push(f.clone());
        }
        if f.is_link() {
            let target_id = f
                .options
                .as_ref()
                .and_then(|o| o.get("linkedTableId"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if target_id != source_id
                && let Some(target) = self.schema.table_mut(&target_id)
            {
                {
                    let mut name = table.to_string();
                    let mut n = 2;
                    while target.field(&name).is_some() {
                        name = format!("{table} {n}");
                        n += 1;
                    }
                    target.fields.push(FieldSchema {
                        id: Some(new_id("fld")),
                        name,
                        field_type: "multipleRecordLinks".into(),
                        description: None,
                        options: Some(
                            json!({ "linkedTableId": source_id, "inverseLinkFieldId": f.id }),
                        ),
                    });
                }
            }
        }
        f
    }
}

fn json_to_v(v: &Value) -> V {
    match v {
        Value::Null => V::Blank,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => V::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => V::Text(s.clone()),
        Value::Array(items) => V::List(
            items
                .iter()
                .map(|i| match i {
                    // Attachments appear in formulas by file name.
                    Value::Object(o) => V::Text(
                        o.get("filename")
                            .or_else(|| o.get("url"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    other => json_to_v(other),
                })
                .collect(),
        ),
        Value::Object(_) => V::Text(v.to_string()),
    }
}
