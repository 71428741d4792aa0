//! The Make blueprints in `blueprints/`, checked against how Make runs them rather than against
//! themselves.
//!
//! A small interpreter for the subset of Make's expression language the blueprints use (templates
//! with `{{…}}`, module references such as `2.body`, string literals with `""` escapes, `+`
//! concatenation, and the functions `sha256`, `formatDate(…; "X")`, `addSeconds`, `min`, `max`, `join`,
//! `if`, `ifempty`) evaluates each file's own mappings from a sample trigger bundle, the way Make
//! would, and the worker's verifier must accept what comes out. On top of that the tests model the
//! parts of Make's runtime the blueprints depend on:
//!
//! - **System variables.** The only `var.*` names an expression may use are the system variables
//!   that real exports in `../shared/data/make/` use (`var.scenario.executionId`, …) and the custom
//!   variables this project's README asks for, at organization or team level. A name Make does not
//!   define (such as `var.execution.id`) would evaluate to nothing in Make, so it fails the test.
//! - **Executions and retries.** Each run has its own execution id and its own clock. Make stores
//!   the outputs of the modules before a failing one and retries from the failing module with those
//!   stored outputs, re-evaluating that module's own mapping (Make help, "Break error handler" and
//!   "Automatic retry of incomplete executions"). A retry here is therefore a new run whose earlier
//!   module outputs are the stored ones.
//! - **Time.** `now` is read from a controllable clock each time an expression reads it, so a
//!   module's mapping can straddle a second boundary, and a retry can come hours later.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use coach_worker::webhook::signature::{SignedHeaders, verify};
use coach_worker::webhook::{Scheme, Secret, SignatureError};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Unix milliseconds of the first attempt in these tests.
const T0_MS: i64 = 1_760_000_000_000;
const SECRET: &str = "make-scenario-secret-0123456789";
const WORKER_URL: &str = "https://coach-worker.example.com";
const EXECUTION_A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const EXECUTION_B: &str = "0f9e8d7c6b5a49382716051f2e3d4c5b";
/// Make may run a retry as an execution of its own; the stored values must not depend on that.
const EXECUTION_RETRY: &str = "77777777777777777777777777777777";
/// The worker's default timestamp tolerance (ARCHITECTURE §3), which the README keeps for Make.
const TOLERANCE_SECS: u64 = 300;
/// The HTTP modules' timeout: the longest Make waits for an answer before the attempt fails.
const HTTP_TIMEOUT_SECS: i64 = 40;
/// `util:FunctionSleep` accepts 1–300 s.
const SLEEP_MAX_SECS: i64 = 300;
/// The custom variables `blueprints/README.md` asks Make users to create.
const CUSTOM_VARIABLES: [&str; 2] = ["COACH_WORKER_URL", "COACH_WEBHOOK_SECRET"];
/// Make's custom variables exist at organization and team level (Make API reference:
/// `/organizations/{id}/variables` and `/teams/{id}/variables`).
const CUSTOM_SCOPES: [&str; 2] = ["organization", "team"];

// ---------------------------------------------------------------------------------------------
// A tiny interpreter for Make expressions.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum V {
    Text(String),
    Bool(bool),
    Array(Vec<V>),
    /// A collection (an object), such as a parsed HTTP response body.
    Collection(Value),
    /// Unix milliseconds.
    Date(i64),
    Null,
}

impl V {
    fn text(&self) -> Result<String, String> {
        match self {
            V::Text(s) => Ok(s.clone()),
            V::Bool(b) => Ok(b.to_string()),
            V::Null => Ok(String::new()),
            V::Array(items) => Ok(items
                .iter()
                .map(V::text)
                .collect::<Result<Vec<_>, _>>()?
                .join(", ")),
            V::Collection(_) => Err("a collection used as text without Transform to JSON".into()),
            V::Date(_) => Err("a date used as text without formatDate".into()),
        }
    }

    fn number(&self) -> Result<f64, String> {
        let text = self.text()?;
        text.trim()
            .parse::<f64>()
            .map_err(|_| format!("`{text}` is not a number"))
    }

    fn is_empty(&self) -> bool {
        match self {
            V::Null => true,
            V::Text(s) => s.is_empty(),
            V::Array(a) => a.is_empty(),
            _ => false,
        }
    }

    fn from_json(v: &Value) -> V {
        match v {
            Value::Null => V::Null,
            Value::Bool(b) => V::Bool(*b),
            Value::String(s) => V::Text(s.clone()),
            Value::Number(n) => V::Text(n.to_string()),
            Value::Array(items) => V::Array(items.iter().map(V::from_json).collect()),
            Value::Object(_) => V::Collection(v.clone()),
        }
    }

    fn to_json(&self) -> Result<Value, String> {
        Ok(match self {
            V::Text(s) => Value::String(s.clone()),
            V::Bool(b) => Value::Bool(*b),
            V::Null => Value::Null,
            V::Array(a) => Value::Array(a.iter().map(V::to_json).collect::<Result<_, _>>()?),
            V::Collection(v) => v.clone(),
            V::Date(_) => return Err("a date cannot be encoded as JSON here".into()),
        })
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    LParen,
    RParen,
    Semi,
    Plus,
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ';' => {
                out.push(Tok::Semi);
                i += 1;
            }
            '+' => {
                out.push(Tok::Plus);
                i += 1;
            }
            '"' => {
                // Make string literal: `""` inside stands for one quote.
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated string in `{src}`")),
                        Some('"') if chars.get(i + 1) == Some(&'"') => {
                            s.push('"');
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&ch) = chars.get(i) {
                    if ch == '`' {
                        // Backticks quote a key with special characters (`retry-after`).
                        w.push(ch);
                        i += 1;
                        while let Some(&inner) = chars.get(i) {
                            w.push(inner);
                            i += 1;
                            if inner == '`' {
                                break;
                            }
                        }
                        continue;
                    }
                    if ch.is_whitespace() || "();+\"".contains(ch) {
                        break;
                    }
                    w.push(ch);
                    i += 1;
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(String),
    Ref(String),
    Call(String, Vec<Expr>),
    Concat(Box<Expr>, Box<Expr>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn parse(src: &str) -> Result<Expr, String> {
        let mut p = Parser {
            toks: tokenize(src)?,
            pos: 0,
        };
        let e = p.expr()?;
        if p.pos != p.toks.len() {
            return Err(format!("trailing tokens in `{src}`"));
        }
        Ok(e)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        while self.peek() == Some(&Tok::Plus) {
            self.pos += 1;
            let rhs = self.term()?;
            e = Expr::Concat(Box::new(e), Box::new(rhs));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Lit(s)),
            Some(Tok::Word(w)) if self.peek() == Some(&Tok::LParen) => {
                self.pos += 1;
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        args.push(self.expr()?);
                        match self.next() {
                            Some(Tok::Semi) => continue,
                            Some(Tok::RParen) => break,
                            other => return Err(format!("expected `;` or `)`, got {other:?}")),
                        }
                    }
                } else {
                    self.pos += 1;
                }
                Ok(Expr::Call(w, args))
            }
            Some(Tok::Word(w)) if w.parse::<f64>().is_ok() => Ok(Expr::Lit(w)),
            Some(Tok::Word(w)) => Ok(Expr::Ref(w)),
            other => Err(format!("unexpected token {other:?}")),
        }
    }
}

fn hex_sha256(text: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        None => hex::encode(Sha256::digest(text.as_bytes())),
    }
}

/// Resolves references (`2.body`, `var.organization.X`, `now`) for the interpreter.
trait Scope {
    fn resolve(&self, path: &str) -> Result<V, String>;
}

fn eval(e: &Expr, scope: &dyn Scope) -> Result<V, String> {
    match e {
        Expr::Lit(s) => Ok(V::Text(s.clone())),
        Expr::Ref(path) => scope.resolve(path),
        Expr::Concat(a, b) => Ok(V::Text(eval(a, scope)?.text()? + &eval(b, scope)?.text()?)),
        Expr::Call(name, args) => {
            let a = args
                .iter()
                .map(|x| eval(x, scope))
                .collect::<Result<Vec<_>, _>>()?;
            call(name, &a)
        }
    }
}

fn call(name: &str, a: &[V]) -> Result<V, String> {
    let arg = |i: usize| a.get(i).cloned().unwrap_or(V::Null);
    match name {
        // sha256(text; [encoding]; [key]; [keyEncoding]): HMAC when a key is given.
        "sha256" => {
            let encoding = arg(1).text()?;
            if !(encoding.is_empty() || encoding == "hex") {
                return Err(format!(
                    "sha256 encoding `{encoding}` is not the worker's hex"
                ));
            }
            let key_encoding = arg(3).text()?;
            if !(key_encoding.is_empty() || key_encoding == "text") {
                return Err(format!("sha256 key encoding `{key_encoding}` is not text"));
            }
            let key = arg(2);
            let key = if key.is_empty() {
                None
            } else {
                Some(key.text()?)
            };
            Ok(V::Text(hex_sha256(&arg(0).text()?, key.as_deref())))
        }
        // "X" is unix seconds; Make's dates carry milliseconds, which the format drops.
        "formatDate" => match (arg(0), arg(1).text()?.as_str()) {
            (V::Date(ms), "X") => Ok(V::Text(ms.div_euclid(1000).to_string())),
            (d, f) => Err(format!(
                "formatDate({d:?}; {f}) is outside the interpreted subset"
            )),
        },
        "addSeconds" => match arg(0) {
            V::Date(ms) => Ok(V::Date(ms + (arg(1).number()? * 1000.0) as i64)),
            other => Err(format!("addSeconds of a non-date {other:?}")),
        },
        // A text that is not a number makes the module fail (modelled as an error).
        "min" | "max" => {
            let numbers = a.iter().map(V::number).collect::<Result<Vec<_>, _>>()?;
            let pick = if name == "min" { f64::min } else { f64::max };
            let n = numbers
                .into_iter()
                .reduce(pick)
                .ok_or_else(|| format!("{name}() of nothing"))?;
            Ok(V::Text(number_text(n)))
        }
        "join" => match arg(0) {
            V::Array(items) => Ok(V::Text(
                items
                    .iter()
                    .map(V::text)
                    .collect::<Result<Vec<_>, _>>()?
                    .join(&arg(1).text()?),
            )),
            other => Err(format!("join of a non-array {other:?}")),
        },
        "if" => {
            let truthy = match arg(0) {
                V::Bool(b) => b,
                V::Text(t) => !t.is_empty() && t != "false",
                V::Null => false,
                other => !other.is_empty(),
            };
            Ok(if truthy { arg(1) } else { arg(2) })
        }
        "ifempty" => Ok(if arg(0).is_empty() { arg(1) } else { arg(0) }),
        other => Err(format!(
            "function `{other}` is outside the interpreted subset"
        )),
    }
}

/// Splits a Make template into literal text and `{{expression}}` parts (a `}}` inside a string
/// literal does not close the expression).
fn template_parts(template: &str) -> Result<Vec<(bool, String)>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push((false, rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let mut in_str = false;
        let mut end = None;
        let bytes = after.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => in_str = !in_str,
                b'}' if !in_str && bytes.get(i + 1) == Some(&b'}') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let end = end.ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
        parts.push((true, after[..end].to_owned()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push((false, rest.to_owned()));
    }
    Ok(parts)
}

/// Evaluates a mapped field: a lone `{{expr}}` keeps its type (an array stays an array); anything
/// else is text.
fn eval_template(template: &str, scope: &dyn Scope) -> Result<V, String> {
    let parts = template_parts(template)?;
    if let [(true, expr)] = parts.as_slice() {
        return eval(&Parser::parse(expr)?, scope);
    }
    let mut out = String::new();
    for (is_expr, text) in parts {
        if is_expr {
            out += &eval(&Parser::parse(&text)?, scope)?.text()?;
        } else {
            out += &text;
        }
    }
    Ok(V::Text(out))
}

/// Every module reference (`2.body`, `4.statusCode`) an expression makes.
fn collect_refs(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Lit(_) => {}
        Expr::Ref(path) => out.push(path.clone()),
        Expr::Concat(a, b) => {
            collect_refs(a, out);
            collect_refs(b, out);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| collect_refs(a, out)),
    }
}

fn template_refs(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (is_expr, text) in template_parts(template).unwrap() {
        if is_expr {
            collect_refs(&Parser::parse(&text).unwrap(), &mut out);
        }
    }
    out
}

/// A clock Make's `now` reads: every read returns the current instant and moves it on by `tick_ms`,
/// so the reads of one module's mapping are a little apart, as they are in a real run.
struct Clock {
    next_ms: Cell<i64>,
    tick_ms: i64,
}

impl Clock {
    fn at(ms: i64) -> Clock {
        Clock {
            next_ms: Cell::new(ms),
            tick_ms: 1,
        }
    }

    fn read(&self) -> i64 {
        let t = self.next_ms.get();
        self.next_ms.set(t + self.tick_ms);
        t
    }
}

/// One execution of a blueprint as a scope: a reference `N.field` evaluates module N's mapping, the
/// way Make would at run time, unless Make holds a stored value for it (a retry, or an HTTP answer).
struct Run<'a> {
    modules: HashMap<i64, &'a Value>,
    trigger: Value,
    secret: &'a str,
    execution_id: &'a str,
    clock: Clock,
    /// Outputs Make already holds: module outputs stored for a retry, and HTTP answers (`4.statusCode`,
    /// `4.data`, `4.headers`).
    stored: HashMap<String, V>,
}

impl Run<'_> {
    fn stored_value(&self, path: &str) -> Option<V> {
        if let Some(v) = self.stored.get(path) {
            return Some(v.clone());
        }
        // `4.data.error.code` reads into the stored collection `4.data`.
        let (key, rest) = self
            .stored
            .keys()
            .filter_map(|k| Some((k, path.strip_prefix(k.as_str())?.strip_prefix('.')?)))
            .max_by_key(|(k, _)| k.len())?;
        let V::Collection(root) = &self.stored[key] else {
            return Some(V::Null);
        };
        let mut v = root;
        for segment in rest.split('.') {
            v = v.get(segment.trim_matches('`')).unwrap_or(&Value::Null);
        }
        Some(V::from_json(v))
    }
}

impl Scope for Run<'_> {
    fn resolve(&self, path: &str) -> Result<V, String> {
        if let Some(v) = self.stored_value(path) {
            return Ok(v);
        }
        if path == "now" {
            return Ok(V::Date(self.clock.read()));
        }
        if path == "var.scenario.executionId" {
            return Ok(V::Text(self.execution_id.into()));
        }
        if let Some(name) = path.strip_prefix("var.organization.") {
            return match name {
                "COACH_WORKER_URL" => Ok(V::Text(WORKER_URL.into())),
                "COACH_WEBHOOK_SECRET" => Ok(V::Text(self.secret.into())),
                _ => Err(format!(
                    "custom variable `{name}` is not one the README defines"
                )),
            };
        }
        if path.starts_with("var.") {
            return Err(format!("`{path}` is not a variable Make defines"));
        }
        let (id, field) = path
            .split_once('.')
            .ok_or_else(|| format!("unknown reference `{path}`"))?;
        let id: i64 = id
            .parse()
            .map_err(|_| format!("unknown reference `{path}`"))?;
        if id == 1 {
            let mut v = &self.trigger;
            for key in field.split('.') {
                v = v.get(key).unwrap_or(&Value::Null);
            }
            return Ok(V::from_json(v));
        }
        let m = self
            .modules
            .get(&id)
            .ok_or_else(|| format!("`{path}` names no module"))?;
        let mapper = &m["mapper"];
        match m["module"].as_str().unwrap_or_default() {
            "util:SetVariables" => {
                let var = mapper["variables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == field)
                    .ok_or_else(|| format!("module {id} sets no `{field}`"))?;
                eval_template(var["value"].as_str().unwrap_or_default(), self)
            }
            "util:SetVariable2" if mapper["name"] == field => {
                eval_template(mapper["value"].as_str().unwrap_or_default(), self)
            }
            // Transform to JSON: the mapped value encoded as JSON text; an empty mapping gives an
            // empty output.
            "json:TransformToJSON" if field == "json" => {
                let v = eval_template(mapper["object"].as_str().unwrap_or_default(), self)?;
                if v.is_empty() {
                    Ok(V::Null)
                } else {
                    Ok(V::Text(v.to_json()?.to_string()))
                }
            }
            other => Err(format!(
                "`{path}`: output `{field}` of {other} is not interpreted"
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The blueprints and what each must send.
// ---------------------------------------------------------------------------------------------

struct Case {
    file: &'static str,
    hook: &'static str,
    trigger: Value,
    body: Value,
    /// The record id the delivery key must carry when the caller gives none.
    record_id: &'static str,
}

fn cases() -> Vec<Case> {
    let output = json!({"schema_version": "gate1.v1", "summary": "She asked \"why?\" twice", "patterns": []});
    vec![
        Case {
            file: "A1_-_Baseline_Pack_Builder_blueprint.json",
            hook: "a1",
            trigger: json!({
                "user_id": "recUSER0000000001",
                "transcript_ids": ["recTRAN0000000001", "recTRAN0000000002", "recTRAN0000000003"],
                "name": "Q3 \"baseline\" \\ pack",
                "build": true
            }),
            body: json!({
                "user_id": "recUSER0000000001",
                "transcript_ids": ["recTRAN0000000001", "recTRAN0000000002", "recTRAN0000000003"],
                "name": "Q3 \"baseline\" \\ pack",
                "build": true
            }),
            record_id: "recUSER0000000001",
        },
        Case {
            file: "A2_-_Build_Baseline_Pack_blueprint.json",
            hook: "a2",
            trigger: json!({"baseline_pack_id": "recPACK0000000001"}),
            body: json!({"baseline_pack_id": "recPACK0000000001"}),
            record_id: "recPACK0000000001",
        },
        Case {
            file: "S3_Worker_Webhook_Baseline_Pack_blueprint.json",
            hook: "s3",
            trigger: json!({"baseline_pack_id": "recPACK0000000002"}),
            body: json!({"baseline_pack_id": "recPACK0000000002"}),
            record_id: "recPACK0000000002",
        },
        Case {
            file: "R1_-_Process_Queued_Run_Requests__single_meeting__blueprint.json",
            hook: "r1",
            trigger: json!({"id": "recRREQ0000000001", "Status": "Queued", "Key": "rr-1"}),
            body: json!({"run_request_id": "recRREQ0000000001"}),
            record_id: "recRREQ0000000001",
        },
        Case {
            file: "S1_Worker_Webhook_Gate1__no_evidence_span_renumbering__blueprint.json",
            hook: "s1",
            trigger: json!({
                "transcript_id": "recTRAN0000000009",
                "coachee_speaker": "Dana \"DJ\" Lee",
                "run_type": "single_meeting",
                "experiment_active": false,
                "output_json": output.to_string()
            }),
            body: json!({
                "transcript_id": "recTRAN0000000009",
                "coachee_speaker": "Dana \"DJ\" Lee",
                "run_type": "single_meeting",
                "experiment_active": false,
                "output": output
            }),
            record_id: "recTRAN0000000009",
        },
        Case {
            file: "D1_-_Create_attempt_event_after_each_qualifying_run_blueprint.json",
            hook: "d1",
            trigger: json!({"run_id": "recRUNS0000000001"}),
            body: json!({"run_id": "recRUNS0000000001"}),
            record_id: "recRUNS0000000001",
        },
        Case {
            file: "E1_-_Instantiate_an_experiment_from_a_baseline_pack_run_blueprint.json",
            hook: "e1",
            trigger: json!({"run_id": "recRUNS0000000002"}),
            body: json!({"run_id": "recRUNS0000000002"}),
            record_id: "recRUNS0000000002",
        },
    ]
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("blueprints")
}

fn load(file: &str) -> Value {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"))
}

/// Every module of a flow, depth first, including router routes and error handler routes.
fn all_modules(flow: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for m in flow.as_array().into_iter().flatten() {
        out.push(m);
        for route in m["routes"].as_array().into_iter().flatten() {
            out.extend(all_modules(&route["flow"]));
        }
        out.extend(all_modules(&m["onerror"]));
    }
    out
}

fn header<'a>(http: &'a Value, name: &str) -> Option<&'a str> {
    http["mapper"]["headers"].as_array()?.iter().find(|h| {
        h["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })?["value"]
        .as_str()
}

fn run<'a>(bp: &'a Value, trigger: Value, execution_id: &'a str, now_ms: i64) -> Run<'a> {
    Run {
        modules: all_modules(&bp["flow"])
            .into_iter()
            .map(|m| (m["id"].as_i64().unwrap(), m))
            .collect(),
        trigger,
        secret: SECRET,
        execution_id,
        clock: Clock::at(now_ms),
        stored: HashMap::new(),
    }
}

/// A run with nothing but stored values (HTTP answers), for filters and the answer modules.
fn answers<'a>(bp: &'a Value, stored: HashMap<String, V>) -> Run<'a> {
    let mut r = run(bp, Value::Null, EXECUTION_A, T0_MS);
    r.stored = stored;
    r
}

fn http_modules(bp: &Value) -> Vec<&Value> {
    all_modules(&bp["flow"])
        .into_iter()
        .filter(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
        .collect()
}

fn break_of(m: &Value) -> Option<&Value> {
    m["onerror"]
        .as_array()?
        .iter()
        .find(|h| h["module"] == "builtin:Break")
}

/// The main flow's router and its three routes: accepted, retry later, refused.
fn routes(bp: &Value) -> Vec<&Value> {
    let router = bp["flow"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["module"] == "builtin:BasicRouter")
        .expect("a router");
    router["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["flow"])
        .collect()
}

/// What one HTTP module sends, evaluated by the interpreter. `timestamp_first` picks the order in
/// which the two signature headers are read (Make does not document it; both must work).
#[derive(Debug, Clone)]
struct Sent {
    body: String,
    timestamp: String,
    signature: String,
    delivery: String,
}

fn send(http: &Value, r: &Run, timestamp_first: bool) -> Sent {
    let field = |template: &str| {
        eval_template(template, r)
            .and_then(|v| v.text())
            .unwrap_or_else(|e| panic!("evaluating `{template}`: {e}"))
    };
    let body = field(http["mapper"]["data"].as_str().unwrap());
    let (timestamp, signature) = if timestamp_first {
        let ts = field(header(http, "X-Coach-Timestamp").unwrap());
        (ts, field(header(http, "X-Coach-Signature").unwrap()))
    } else {
        let sig = field(header(http, "X-Coach-Signature").unwrap());
        (field(header(http, "X-Coach-Timestamp").unwrap()), sig)
    };
    Sent {
        body,
        timestamp,
        signature,
        delivery: field(header(http, "X-Coach-Delivery").unwrap()),
    }
}

fn sent(bp: &Value, http: &Value, trigger: Value, execution_id: &str, now_ms: i64) -> Sent {
    send(http, &run(bp, trigger, execution_id, now_ms), true)
}

/// What Make holds for a retry of `http`: the outputs of the earlier modules its mapping reads, as
/// they were in the original run.
fn stored_for_retry(http: &Value, original: &Run) -> HashMap<String, V> {
    let mut templates = vec![
        http["mapper"]["url"].as_str().unwrap().to_owned(),
        http["mapper"]["data"].as_str().unwrap().to_owned(),
    ];
    for h in http["mapper"]["headers"].as_array().unwrap() {
        templates.push(h["value"].as_str().unwrap().to_owned());
    }
    let mut stored = HashMap::new();
    for path in templates.iter().flat_map(|t| template_refs(t)) {
        let is_module_output = path
            .split_once('.')
            .is_some_and(|(id, _)| id.parse::<i64>().is_ok());
        if is_module_output {
            let v = original.resolve(&path).unwrap();
            stored.insert(path, v);
        }
    }
    stored
}

/// A retry of `http`, run by Make at `now_ms` as an execution of its own, from the stored values.
fn retry<'a>(bp: &'a Value, http: &Value, trigger: Value, now_ms: i64) -> Run<'a> {
    let original = run(bp, trigger.clone(), EXECUTION_A, T0_MS);
    let mut r = run(bp, trigger, EXECUTION_RETRY, now_ms);
    r.stored = stored_for_retry(http, &original);
    r
}

fn verify_sent(s: &Sent, secret: &str, now_secs: i64) -> Result<Scheme, SignatureError> {
    verify(
        &[Secret::parse(secret).unwrap()],
        &SignedHeaders {
            coach_timestamp: Some(&s.timestamp),
            coach_signature: Some(&s.signature),
            ..Default::default()
        },
        s.body.as_bytes(),
        now_secs,
        TOLERANCE_SECS,
    )
    .map(|v| v.scheme)
}

/// `var.…` names in a text, e.g. `var.scenario.executionId` out of `{{var.scenario.executionId}}`.
fn variable_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(found) = text[i..].find("var.") {
        let start = i + found;
        let end = start
            + text[start..]
                .bytes()
                .take_while(|&b| ident(b) || b == b'.')
                .count();
        if start == 0 || !ident(bytes[start - 1]) {
            out.insert(text[start..end].trim_end_matches('.').to_owned());
        }
        i = end.max(start + 4);
    }
    out
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The system variables real Make exports use, read from the exports themselves.
fn system_variables_in_real_exports() -> BTreeSet<String> {
    let exports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/make");
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(&exports)
        .unwrap_or_else(|e| panic!("the real Make exports in {}: {e}", exports.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            names.extend(variable_names(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(
        names.contains("var.scenario.executionId"),
        "the real exports no longer show Make's execution id: {names:?}"
    );
    names
}

/// Why a `var.…` name would be empty at run time, or `None` when Make defines it.
fn undefined_variable(name: &str, system: &BTreeSet<String>) -> Option<String> {
    if system.contains(name) {
        return None;
    }
    let custom = CUSTOM_SCOPES.iter().find_map(|scope| {
        name.strip_prefix("var.")?
            .strip_prefix(scope)?
            .strip_prefix('.')
    });
    match custom {
        Some(n) if CUSTOM_VARIABLES.contains(&n) => None,
        Some(n) => Some(format!(
            "custom variable `{n}` is not one the README asks for"
        )),
        None => Some(format!(
            "`{name}` is neither a system variable of a real export ({system:?}) nor a custom variable"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_blueprint_folder_holds_exactly_the_seven_mapped_files() {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = cases().iter().map(|c| c.file.to_owned()).collect();
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[test]
fn every_blueprint_has_the_export_structure() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        assert!(
            bp["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{file}: name"
        );
        let flow = bp["flow"].as_array().expect("flow is an array");
        assert!(!flow.is_empty(), "{file}: empty flow");

        let modules = all_modules(&bp["flow"]);
        let mut ids = Vec::new();
        for m in &modules {
            let id = m["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{file}: module without id"));
            ids.push(id);
            let name = m["module"].as_str().unwrap_or_default();
            assert!(name.contains(':'), "{file}: module {id} name `{name}`");
            assert!(
                m["version"].as_i64().is_some_and(|v| v >= 1),
                "{file}: module {id} version"
            );
            let directive = name.starts_with("builtin:")
                && ["Ignore", "Resume", "Break"]
                    .iter()
                    .any(|d| name.ends_with(d));
            assert!(
                directive || m.get("mapper").is_some() || m.get("parameters").is_some(),
                "{file}: module {id} has neither mapper nor parameters"
            );
            let d = &m["metadata"]["designer"];
            assert!(
                d["x"].is_i64() && d["y"].is_i64(),
                "{file}: module {id} designer position"
            );
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{file}: module ids must be unique");

        let meta = &bp["metadata"];
        assert_eq!(meta["version"], 1, "{file}: metadata.version");
        let scenario = &meta["scenario"];
        assert!(scenario.is_object(), "{file}: metadata.scenario");
        // The Break handlers only work with incomplete executions allowed.
        assert_eq!(scenario["dlq"], true, "{file}: incomplete executions");
        // With sequential processing Make stops scheduling the scenario while any incomplete
        // execution is unresolved, and a refused request is kept as one on purpose.
        assert_eq!(
            scenario["sequential"], false,
            "{file}: sequential processing"
        );
        assert!(meta["designer"].is_object(), "{file}: metadata.designer");

        let notes = meta["notes"].as_array().expect("notes");
        assert!(
            notes.iter().any(|n| n["moduleIds"]
                .as_array()
                .is_some_and(|ids| ids.contains(&json!(1)))
                && n["content"].as_str().is_some_and(|c| c.contains("Setup"))),
            "{file}: a setup note on the trigger"
        );
        for note in notes {
            for id in note["moduleIds"].as_array().unwrap() {
                assert!(
                    ids.contains(&id.as_i64().unwrap()),
                    "{file}: note on missing module {id}"
                );
            }
        }
    }
}

#[test]
fn every_variable_an_expression_names_is_one_make_defines() {
    let system = system_variables_in_real_exports();
    // The checker itself: the name these blueprints once used is caught, Make's own is not.
    assert!(undefined_variable("var.execution.id", &system).is_some());
    assert!(undefined_variable("var.organization.OTHER_SECRET", &system).is_some());
    assert_eq!(
        undefined_variable("var.scenario.executionId", &system),
        None
    );
    assert_eq!(
        undefined_variable("var.team.COACH_WEBHOOK_SECRET", &system),
        None
    );

    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    for name in CUSTOM_VARIABLES {
        assert!(
            readme.contains(&format!("`{name}`")),
            "the README must tell Make users to create `{name}`"
        );
    }
    for case in cases() {
        let bp = load(case.file);
        let mut texts = Vec::new();
        strings(&bp["flow"], &mut texts);
        let used: BTreeSet<String> = texts.iter().flat_map(|t| variable_names(t)).collect();
        assert!(
            used.contains("var.scenario.executionId"),
            "{}: the fallback key needs Make's execution id",
            case.file
        );
        for name in &used {
            if let Some(why) = undefined_variable(name, &system) {
                panic!("{}: {why}", case.file);
            }
        }
    }
}

#[test]
fn every_request_posts_the_signed_body_to_its_hook() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let https = http_modules(&bp);
        assert!(!https.is_empty(), "{file}: no HTTP module");
        for http in https {
            let id = &http["id"];
            let m = &http["mapper"];
            let url = m["url"].as_str().unwrap();
            assert!(
                url.ends_with(&format!("/v1/hooks/{}", case.hook)),
                "{file}: module {id} posts to {url}"
            );
            // HTTP (legacy), kept on purpose: its Raw body type sends the mapped text unchanged,
            // which is what the signature covers (see blueprints/README.md).
            assert_eq!(http["module"], "http:ActionSendData", "{file}: module {id}");
            assert_eq!(http["version"], 3, "{file}: module {id}");
            assert_eq!(m["method"], "post", "{file}: module {id} method");
            assert_eq!(m["bodyType"], "raw", "{file}: module {id} body is sent raw");
            assert_eq!(m["contentType"], "application/json", "{file}: module {id}");
            assert_eq!(m["timeout"], HTTP_TIMEOUT_SECS.to_string(), "{file}: {id}");
            assert_eq!(
                header(http, "Content-Type"),
                Some("application/json"),
                "{file}: module {id}"
            );
            for name in ["X-Coach-Timestamp", "X-Coach-Signature", "X-Coach-Delivery"] {
                assert!(
                    header(http, name).is_some(),
                    "{file}: module {id} lacks {name}"
                );
            }
            let r = run(&bp, case.trigger.clone(), EXECUTION_A, T0_MS);
            assert_eq!(
                eval_template(url, &r).unwrap(),
                V::Text(format!("{WORKER_URL}/v1/hooks/{}", case.hook)),
                "{file}: module {id} URL"
            );
        }
    }
}

#[test]
fn the_signing_expression_in_each_file_produces_what_the_worker_verifies() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        for http in http_modules(&bp) {
            let id = &http["id"];
            let s = sent(&bp, http, case.trigger.clone(), EXECUTION_A, T0_MS);

            // The body is the contract's JSON for this hook (ARCHITECTURE §2), escaping included.
            let body: Value = serde_json::from_str(&s.body).unwrap_or_else(|e| {
                panic!("{file}: module {id} sends invalid JSON {}: {e}", s.body)
            });
            assert_eq!(body, case.body, "{file}: module {id} body");
            assert_eq!(
                s.timestamp,
                (T0_MS / 1000).to_string(),
                "{file}: unix seconds"
            );

            let now = T0_MS / 1000 + 3;
            assert_eq!(
                verify_sent(&s, SECRET, now),
                Ok(Scheme::Make),
                "{file}: module {id} signature refused"
            );
            // The key really is the configured secret, and the whole body is covered.
            assert_eq!(
                verify_sent(&s, "another-secret-0123456789", now),
                Err(SignatureError::Invalid),
                "{file}: module {id} verified under a secret it was not signed with"
            );
            let tampered = Sent {
                body: s.body.replacen("rec", "reX", 1),
                ..s.clone()
            };
            assert_eq!(
                verify_sent(&tampered, SECRET, now),
                Err(SignatureError::Invalid),
                "{file}: module {id} signature does not cover the body"
            );
        }
    }
}

#[test]
fn the_signature_holds_when_a_second_ends_while_the_module_is_mapped() {
    // Make does not say whether a module reads `now` once or per field, nor in which order it maps
    // the headers. Put the end of a second before each read of `now`, in either order: one of the
    // signatures must match the timestamp sent. One signature alone would not.
    let mut single_would_fail = false;
    for case in cases() {
        let bp = load(case.file);
        for http in http_modules(&bp) {
            let reads = template_refs(header(http, "X-Coach-Timestamp").unwrap())
                .into_iter()
                .chain(template_refs(header(http, "X-Coach-Signature").unwrap()))
                .filter(|r| r == "now")
                .count() as i64;
            assert_eq!(
                reads, 4,
                "{}: one timestamp and three signatures",
                case.file
            );
            let boundary = T0_MS - T0_MS.rem_euclid(1000) + 1000;
            for timestamp_first in [true, false] {
                for before_read in 0..=reads {
                    let mut r = run(&bp, case.trigger.clone(), EXECUTION_A, 0);
                    r.clock = Clock {
                        next_ms: Cell::new(boundary - before_read * 100),
                        tick_ms: 100,
                    };
                    let s = send(http, &r, timestamp_first);
                    let now = boundary / 1000 + 1;
                    assert_eq!(
                        verify_sent(&s, SECRET, now),
                        Ok(Scheme::Make),
                        "{}: module {} with a second ending before read {before_read} \
                         (timestamp first: {timestamp_first}): {s:?}",
                        case.file,
                        http["id"]
                    );
                    let middle_only = Sent {
                        signature: s.signature.split(' ').nth(1).unwrap().to_owned(),
                        ..s.clone()
                    };
                    single_would_fail |= verify_sent(&middle_only, SECRET, now).is_err();
                }
            }
        }
    }
    assert!(single_would_fail, "the extra signatures are needed");
}

#[test]
fn the_delivery_key_differs_per_execution_and_survives_a_retry() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let first = http_modules(&bp)[0];
        let a = sent(&bp, first, case.trigger.clone(), EXECUTION_A, T0_MS).delivery;
        let b = sent(
            &bp,
            first,
            case.trigger.clone(),
            EXECUTION_B,
            T0_MS + 60_000,
        )
        .delivery;
        assert!(
            a.contains(case.record_id) && a.contains(EXECUTION_A),
            "{file}: delivery `{a}` should name the record and the execution"
        );
        // Two executions on the same record (a second pack, a re-queued request) are new deliveries.
        assert_ne!(a, b, "{file}: two executions share the key `{a}`");
        // A retry of any HTTP module, hours later and possibly as an execution of its own, resends
        // the key of its execution: the worker answers it from its first answer.
        for http in http_modules(&bp) {
            for later_ms in [0, 60_000, 3_600_000, 86_400_000] {
                let r = retry(&bp, http, case.trigger.clone(), T0_MS + later_ms);
                assert_eq!(
                    send(http, &r, true).delivery,
                    a,
                    "{file}: module {} retried {later_ms} ms later sends another key",
                    http["id"]
                );
            }
        }
        // The key is computed before the modules Make retries, never in them.
        for http in http_modules(&bp) {
            let refs = template_refs(header(http, "X-Coach-Delivery").unwrap());
            assert!(
                refs.iter().all(|r| r.starts_with("2.")),
                "{file}: module {} builds its key itself: {refs:?}",
                http["id"]
            );
        }
        if case.trigger.get("id").is_none() {
            // Webhook scenarios take the caller's event id when it sends one.
            let mut with_id = case.trigger.clone();
            with_id["delivery_id"] = json!("evt_42");
            assert_eq!(
                sent(&bp, first, with_id, EXECUTION_A, T0_MS).delivery,
                "evt_42",
                "{file}"
            );
        }
    }
}

/// When Make sends each attempt, per its documentation, with `idle_ms` of waiting for the
/// scenario to be idle before each retry: (label, unix ms, HTTP module).
fn documented_schedule<'a>(bp: &'a Value, idle_ms: i64) -> Vec<(String, i64, &'a Value)> {
    let flow = bp["flow"].as_array().unwrap();
    let first = flow
        .iter()
        .find(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
        .unwrap();
    let resend = all_modules(routes(bp)[1])
        .into_iter()
        .find(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
        .unwrap();
    let mut out = vec![("first attempt".to_owned(), T0_MS, first)];
    let timeout_ms = HTTP_TIMEOUT_SECS * 1000;
    // Break retries: `count` attempts, `interval` minutes after the failure before each, and Make
    // starts one only when the scenario is not running (Make help: "Automatic retry of incomplete
    // executions"), which `idle_ms` stands for.
    let breaks =
        |m: &'a Value, failed_at: i64, label: &str, out: &mut Vec<(String, i64, &'a Value)>| {
            let handler = break_of(m).expect("a Break handler");
            assert_eq!(handler["mapper"]["retry"], true);
            let count: i64 = handler["mapper"]["count"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let minutes: i64 = handler["mapper"]["interval"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let mut t = failed_at;
            for k in 1..=count {
                t += minutes * 60_000 + idle_ms;
                out.push((format!("{label} retry {k}"), t, m));
                t += timeout_ms;
            }
        };
    // The first attempt times out: Break on the first HTTP module.
    breaks(first, T0_MS + timeout_ms, "network", &mut out);
    // The first attempt gets 409/429/5xx as late as possible: the longest sleep, then the resend,
    // which fails too and goes to its own Break.
    let resend_at = T0_MS + timeout_ms + SLEEP_MAX_SECS * 1000;
    out.push(("resend".to_owned(), resend_at, resend));
    breaks(resend, resend_at + timeout_ms, "resend", &mut out);
    out
}

#[test]
fn every_attempt_of_the_documented_retry_schedule_is_signed_when_sent() {
    let transit_ms = 2_000;
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let stored_first = sent(
            &bp,
            http_modules(&bp)[0],
            case.trigger.clone(),
            EXECUTION_A,
            T0_MS,
        );
        let mut beyond_window = 0;
        // 0: Make's best case; an hour and a day: Make waits until the scenario is idle, which has
        // no bound a tolerance could cover.
        for idle_ms in [0, 3_600_000, 86_400_000] {
            for (label, at_ms, http) in documented_schedule(&bp, idle_ms) {
                let r = retry(&bp, http, case.trigger.clone(), at_ms);
                let s = send(http, &r, true);
                let arrives = (at_ms + transit_ms) / 1000;
                assert_eq!(
                    verify_sent(&s, SECRET, arrives),
                    Ok(Scheme::Make),
                    "{file}: {label} at +{} s (idle {idle_ms} ms) refused",
                    (at_ms - T0_MS) / 1000
                );
                assert_eq!(s.body, stored_first.body, "{file}: {label} body");
                assert_eq!(s.delivery, stored_first.delivery, "{file}: {label} key");
                // Had Make resent the first attempt's signature, this attempt would be refused.
                if arrives - T0_MS / 1000 > TOLERANCE_SECS as i64 {
                    beyond_window += 1;
                    assert_eq!(
                        verify_sent(&stored_first, SECRET, arrives),
                        Err(SignatureError::Stale {
                            tolerance_secs: TOLERANCE_SECS
                        }),
                        "{file}: {label}"
                    );
                }
            }
        }
        assert!(
            beyond_window > 0,
            "{file}: the schedule should reach past the tolerance (else re-signing is not shown)"
        );
    }
}

fn filter_matches(bp: &Value, filter: &Value, status: u16, source: &str) -> bool {
    let r = answers(
        bp,
        HashMap::from([(format!("{source}.statusCode"), V::Text(status.to_string()))]),
    );
    let Some(groups) = filter["conditions"].as_array() else {
        return true;
    };
    groups.iter().any(|group| {
        group.as_array().unwrap().iter().all(|c| {
            let a: f64 = eval_template(c["a"].as_str().unwrap(), &r)
                .and_then(|v| v.number())
                .unwrap_or_else(|e| panic!("filter operand: {e}"));
            let b: f64 = c["b"].as_str().unwrap().parse().unwrap();
            match c["o"].as_str().unwrap() {
                "number:equal" => a == b,
                "number:notequal" => a != b,
                "number:greater" => a > b,
                "number:less" => a < b,
                "number:greaterorequal" => a >= b,
                "number:lessorequal" => a <= b,
                other => panic!("operator {other} outside the interpreted subset"),
            }
        })
    })
}

#[test]
fn the_router_sends_2xx_on_retries_409_429_5xx_and_stops_on_other_4xx() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let flow = bp["flow"].as_array().unwrap();
        let send_index = flow
            .iter()
            .position(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
            .expect("an HTTP module in the main flow");
        let send = &flow[send_index];
        let source = send["id"].to_string();
        // Statuses must reach the router instead of failing the module.
        assert_eq!(send["parameters"]["handleErrors"], false, "{file}");
        let transport = break_of(send).expect("network errors go to a Break handler");
        assert_eq!(transport["mapper"]["retry"], true, "{file}");

        assert_eq!(
            flow[send_index + 1]["module"],
            "builtin:BasicRouter",
            "{file}"
        );
        let routes = routes(&bp);
        let classify = |status: u16| -> Vec<usize> {
            routes
                .iter()
                .enumerate()
                .filter(|(_, f)| filter_matches(&bp, &f[0]["filter"], status, &source))
                .map(|(i, _)| i)
                .collect()
        };
        let route_of = |status: u16| -> usize {
            let hits = classify(status);
            assert_eq!(
                hits.len(),
                1,
                "{file}: status {status} matches routes {hits:?}"
            );
            hits[0]
        };

        let done = route_of(200);
        for s in [201, 202] {
            assert_eq!(route_of(s), done, "{file}: {s} is a success");
        }
        let retry = route_of(429);
        for s in [409, 500, 502, 503, 504] {
            assert_eq!(route_of(s), retry, "{file}: {s} is retried");
        }
        let refused = route_of(400);
        for s in [401, 403, 404, 413, 422] {
            assert_eq!(route_of(s), refused, "{file}: {s} is final");
        }
        assert_eq!((done, retry, refused), (0, 1, 2), "{file}: route order");

        // Retry route: the same request again, whose own failure Break retries.
        let resend = all_modules(routes[retry])
            .into_iter()
            .find(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
            .expect("the retry route sends again");
        assert_eq!(resend["parameters"]["handleErrors"], true, "{file}");
        assert_eq!(
            break_of(resend).expect("resend Break")["mapper"]["retry"],
            true,
            "{file}"
        );

        // Refused route: keeps the worker's error code and message, then stops without retrying.
        let refused_text = routes[refused].to_string();
        for needle in [
            format!("{{{{{source}.data.error.code}}}}"),
            format!("{{{{{source}.data.error.message}}}}"),
        ] {
            assert!(
                refused_text.contains(&needle),
                "{file}: refused route lacks {needle}"
            );
        }
        let stop = all_modules(routes[refused])
            .into_iter()
            .find_map(break_of)
            .expect("the refused route ends in a Break");
        assert_eq!(
            stop["mapper"]["retry"], false,
            "{file}: a 4xx is never retried"
        );
    }
}

#[test]
fn the_wait_before_a_resend_fits_the_sleep_module_or_goes_to_break() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let retry_route = routes(&bp)[1].as_array().unwrap();
        let sleep = &retry_route[0];
        assert_eq!(sleep["module"], "util:FunctionSleep", "{file}");
        let duration = sleep["mapper"]["duration"].as_str().unwrap();
        let wait = |retry_after: Option<&str>| {
            let headers = match retry_after {
                Some(v) => json!({"retry-after": v}),
                None => json!({}),
            };
            let r = answers(
                &bp,
                HashMap::from([("4.headers".to_owned(), V::Collection(headers))]),
            );
            eval_template(duration, &r).and_then(|v| v.number())
        };
        assert_eq!(wait(None), Ok(5.0), "{file}: no Retry-After");
        assert_eq!(wait(Some("2")), Ok(2.0), "{file}");
        assert_eq!(wait(Some("0")), Ok(1.0), "{file}: at least 1 s");
        assert_eq!(
            wait(Some("3600")),
            Ok(SLEEP_MAX_SECS as f64),
            "{file}: at most 300 s"
        );
        // An HTTP date is no number of seconds: the module fails, and its Resume handler goes on to
        // the resend, whose failure the Break handler retries minutes later (never deactivating
        // the scenario).
        assert!(
            wait(Some("Wed, 21 Oct 2026 07:28:00 GMT")).is_err(),
            "{file}"
        );
        let handlers = sleep["onerror"]
            .as_array()
            .expect("the sleep has a handler");
        assert_eq!(handlers[0]["module"], "builtin:Resume", "{file}");
        assert!(
            retry_route[1]["module"]
                .as_str()
                .is_some_and(|n| n.starts_with("http:"))
                && break_of(&retry_route[1]).is_some_and(|b| b["mapper"]["retry"] == true),
            "{file}: the resend follows the sleep and has a retrying Break handler"
        );
    }
}

#[test]
fn webhook_scenarios_answer_their_caller_with_the_workers_status_and_body() {
    // What the worker answers, one per route (S1's 200 is its Gate-1 report).
    let gate1 = json!({
        "passed": false,
        "report": {"schema_ok": true, "violations": [{"code": "QUOTE_NOT_VERBATIM", "span_id": "s3"}]}
    });
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let responders: Vec<&Value> = all_modules(&bp["flow"])
            .into_iter()
            .filter(|m| m["module"] == "gateway:WebhookRespond")
            .collect();
        if case.hook == "r1" {
            assert!(
                responders.is_empty(),
                "{file}: a scheduled scenario has no caller"
            );
            continue;
        }
        let accepted = if case.hook == "s1" {
            gate1.clone()
        } else {
            json!({"run_id": "0192f0c4-8b7e-7000-8000-000000000001", "status": "queued"})
        };
        let expectations = [
            ("accepted", "4", 200, accepted.clone()),
            ("retry later", "8", 201, accepted),
            (
                "refused",
                "4",
                422,
                json!({"error": {"code": "INVALID_FIELD", "message": "fix the field"}}),
            ),
        ];
        for (route, (name, source, status, body)) in routes(&bp).into_iter().zip(expectations) {
            let respond: Vec<&Value> = all_modules(route)
                .into_iter()
                .filter(|m| m["module"] == "gateway:WebhookRespond")
                .collect();
            assert_eq!(respond.len(), 1, "{file}: the {name} route answers once");
            let m = &respond[0]["mapper"];
            let r = answers(
                &bp,
                HashMap::from([
                    (format!("{source}.statusCode"), V::Text(status.to_string())),
                    (format!("{source}.data"), V::Collection(body.clone())),
                ]),
            );
            let got_status = eval_template(m["status"].as_str().unwrap(), &r)
                .and_then(|v| v.text())
                .unwrap_or_else(|e| panic!("{file}: {name} status: {e}"));
            assert_eq!(got_status, status.to_string(), "{file}: {name} status");
            let got_body = eval_template(m["body"].as_str().unwrap(), &r)
                .and_then(|v| v.text())
                .unwrap_or_else(|e| panic!("{file}: {name} body: {e}"));
            assert_eq!(
                serde_json::from_str::<Value>(&got_body).unwrap(),
                body,
                "{file}: {name} body"
            );
            let content_type = m["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["key"] == "Content-Type");
            assert_eq!(
                content_type.map(|h| &h["value"]),
                Some(&json!("application/json")),
                "{file}: {name}"
            );
            // A retry Make runs later has nobody to answer: that must not fail the retried run.
            assert!(
                respond[0]["onerror"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|h| h["module"] == "builtin:Ignore")),
                "{file}: {name} answer without a caller is ignored"
            );
        }
    }
}

#[test]
fn r1_searches_queued_run_requests_and_the_others_start_from_a_webhook() {
    for case in cases() {
        let bp = load(case.file);
        let trigger = &bp["flow"][0];
        if case.hook == "r1" {
            assert_eq!(trigger["module"], "airtable:ActionSearchRecords");
            let formula = trigger["mapper"]["formula"].as_str().unwrap();
            assert!(
                formula.contains("{Status}") && formula.contains("Queued"),
                "{formula}"
            );
            assert_eq!(bp["metadata"]["instant"], false);
        } else {
            assert_eq!(trigger["module"], "gateway:CustomWebHook", "{}", case.file);
            assert_eq!(bp["metadata"]["instant"], true, "{}", case.file);
        }
    }
}

#[test]
fn the_interpreter_matches_known_make_results() {
    // Guards the interpreter itself: `""` escapes, concatenation, HMAC vs plain hash, dates.
    struct Empty;
    impl Scope for Empty {
        fn resolve(&self, path: &str) -> Result<V, String> {
            Err(format!("no `{path}`"))
        }
    }
    assert_eq!(
        eval_template(r#"{{"a""b" + "." + "c"}}"#, &Empty).unwrap(),
        V::Text("a\"b.c".into())
    );
    // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    assert_eq!(
        eval_template(
            r#"{{sha256("what do ya want for nothing?"; "hex"; "Jefe")}}"#,
            &Empty
        )
        .unwrap(),
        V::Text("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".into())
    );
    assert_eq!(
        eval_template(r#"{{sha256("abc")}}"#, &Empty).unwrap(),
        V::Text("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into())
    );
    assert!(eval_template(r#"{{sha256("abc"; "base64"; "k")}}"#, &Empty).is_err());
    assert_eq!(
        call("min", &[V::Text("300".into()), V::Text("7".into())]),
        Ok(V::Text("7".into()))
    );
    assert_eq!(
        call(
            "formatDate",
            &[
                call("addSeconds", &[V::Date(1_999), V::Text("-1".into())]).unwrap(),
                V::Text("X".into())
            ]
        ),
        Ok(V::Text("0".into()))
    );
    assert_eq!(
        variable_names("{{var.scenario.executionId}}-x var.team.A; not_var.x"),
        BTreeSet::from([
            "var.scenario.executionId".to_owned(),
            "var.team.A".to_owned()
        ])
    );
    let null = Value::Null;
    let r = answers(
        &null,
        HashMap::from([(
            "4.data".to_owned(),
            V::Collection(json!({"error": {"code": "X"}})),
        )]),
    );
    assert_eq!(r.resolve("4.data.error.code"), Ok(V::Text("X".into())));
}
