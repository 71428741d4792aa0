//! The Make blueprints in `blueprints/`: structure, endpoint, routing on the worker's status codes, and
//! the signature they compute.
//!
//! The signature check is end to end on the files themselves: a small interpreter for the subset of
//! Make's expression language the blueprints use (templates with `{{…}}`, module references such as
//! `2.body`, string literals with `""` escapes, `+` concatenation, and the functions `sha256`,
//! `formatDate(now; "X")`, `join`, `if`, `ifempty`) evaluates the request exactly as Make would build
//! it from a sample trigger bundle — the body variable, the timestamp, the `sha256(…; "hex"; key)`
//! signature (HMAC-SHA256 when a key is given, per Make's function reference) and the header
//! templates — and the worker's own verifier must accept the result with the Make scheme. Nothing about
//! the expressions is hard-coded here: change the signing expression in a file and this test evaluates
//! the new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coach_worker::webhook::signature::{SignedHeaders, verify};
use coach_worker::webhook::{Scheme, Secret, SignatureError};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_760_000_000;
const SECRET: &str = "make-scenario-secret-0123456789";
const WORKER_URL: &str = "https://coach-worker.example.com";
const EXECUTION_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// The worker's default timestamp tolerance (ARCHITECTURE §3).
const TOLERANCE_SECS: u64 = 300;

// ---------------------------------------------------------------------------------------------
// A tiny interpreter for Make expressions.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum V {
    Text(String),
    Bool(bool),
    Array(Vec<V>),
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
            V::Date(_) => Err("a date used as text without formatDate".into()),
        }
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
            // Objects only appear as the S1 output, which the blueprint passes as JSON text.
            Value::Object(_) => V::Text(v.to_string()),
        }
    }

    fn to_json(&self) -> Result<Value, String> {
        Ok(match self {
            V::Text(s) => Value::String(s.clone()),
            V::Bool(b) => Value::Bool(*b),
            V::Null => Value::Null,
            V::Array(a) => Value::Array(a.iter().map(V::to_json).collect::<Result<_, _>>()?),
            V::Date(_) => return Err("a date cannot be encoded as JSON here".into()),
        })
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
        "formatDate" => match (arg(0), arg(1).text()?.as_str()) {
            (V::Date(secs), "X") => Ok(V::Text(secs.to_string())),
            (d, f) => Err(format!(
                "formatDate({d:?}; {f}) is outside the interpreted subset"
            )),
        },
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

/// A blueprint's modules as a scope: a reference `N.field` evaluates module N's mapping, the way
/// Make would at run time, from a sample trigger bundle and the custom variables.
struct Run<'a> {
    modules: HashMap<i64, &'a Value>,
    trigger: Value,
    secret: &'a str,
    now: i64,
    /// Outputs of modules that call out (HTTP status codes), keyed by reference.
    responses: HashMap<String, V>,
}

impl Scope for Run<'_> {
    fn resolve(&self, path: &str) -> Result<V, String> {
        if let Some(v) = self.responses.get(path) {
            return Ok(v.clone());
        }
        match path {
            "now" => return Ok(V::Date(self.now)),
            "timestamp" => return Ok(V::Text(self.now.to_string())),
            "emptystring" => return Ok(V::Text(String::new())),
            "var.organization.COACH_WORKER_URL" => return Ok(V::Text(WORKER_URL.into())),
            "var.organization.COACH_WEBHOOK_SECRET" => return Ok(V::Text(self.secret.into())),
            "var.execution.id" => return Ok(V::Text(EXECUTION_ID.into())),
            _ => {}
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

fn run<'a>(bp: &'a Value, trigger: Value, secret: &'a str) -> Run<'a> {
    Run {
        modules: all_modules(&bp["flow"])
            .into_iter()
            .map(|m| (m["id"].as_i64().unwrap(), m))
            .collect(),
        trigger,
        secret,
        now: NOW,
        responses: HashMap::new(),
    }
}

fn http_modules(bp: &Value) -> Vec<&Value> {
    all_modules(&bp["flow"])
        .into_iter()
        .filter(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
        .collect()
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
            assert!(
                m.get("mapper").is_some() || m.get("parameters").is_some(),
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
            assert_eq!(m["method"], "post", "{file}: module {id} method");
            assert_eq!(m["bodyType"], "raw", "{file}: module {id} body is sent raw");
            assert_eq!(m["contentType"], "application/json", "{file}: module {id}");
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
            let r = run(&bp, case.trigger.clone(), SECRET);
            assert_eq!(
                eval_template(url, &r).unwrap(),
                V::Text(format!("{WORKER_URL}/v1/hooks/{}", case.hook)),
                "{file}: module {id} URL"
            );
        }
    }
}

/// What one HTTP module of a blueprint sends, evaluated by the interpreter.
struct Sent {
    body: String,
    timestamp: String,
    signature: String,
    delivery: String,
}

fn sent(bp: &Value, http: &Value, trigger: Value, secret: &str) -> Sent {
    let r = run(bp, trigger, secret);
    let field = |template: &str| {
        eval_template(template, &r)
            .and_then(|v| v.text())
            .unwrap_or_else(|e| panic!("evaluating `{template}`: {e}"))
    };
    Sent {
        body: field(http["mapper"]["data"].as_str().unwrap()),
        timestamp: field(header(http, "X-Coach-Timestamp").unwrap()),
        signature: field(header(http, "X-Coach-Signature").unwrap()),
        delivery: field(header(http, "X-Coach-Delivery").unwrap()),
    }
}

fn verify_sent(s: &Sent, secret: &str, now: i64) -> Result<Scheme, SignatureError> {
    verify(
        &[Secret::parse(secret).unwrap()],
        &SignedHeaders {
            coach_timestamp: Some(&s.timestamp),
            coach_signature: Some(&s.signature),
            ..Default::default()
        },
        s.body.as_bytes(),
        now,
        TOLERANCE_SECS,
    )
    .map(|v| v.scheme)
}

#[test]
fn the_signing_expression_in_each_file_produces_what_the_worker_verifies() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        for http in http_modules(&bp) {
            let id = &http["id"];
            let s = sent(&bp, http, case.trigger.clone(), SECRET);

            // The body is the contract's JSON for this hook (ARCHITECTURE §2), escaping included.
            let body: Value = serde_json::from_str(&s.body).unwrap_or_else(|e| {
                panic!("{file}: module {id} sends invalid JSON {}: {e}", s.body)
            });
            assert_eq!(body, case.body, "{file}: module {id} body");
            assert_eq!(s.timestamp, NOW.to_string(), "{file}: unix seconds");

            assert_eq!(
                verify_sent(&s, SECRET, NOW + 3),
                Ok(Scheme::Make),
                "{file}: module {id} signature refused"
            );
            // The key really is the configured secret, and the whole body is covered.
            assert_eq!(
                verify_sent(&s, "another-secret-0123456789", NOW + 3),
                Err(SignatureError::Invalid),
                "{file}: module {id} verified under a secret it was not signed with"
            );
            let tampered = Sent {
                body: s.body.replacen("rec", "reX", 1),
                ..sent(&bp, http, case.trigger.clone(), SECRET)
            };
            assert_eq!(
                verify_sent(&tampered, SECRET, NOW + 3),
                Err(SignatureError::Invalid),
                "{file}: module {id} signature does not cover the body"
            );
        }
    }
}

#[test]
fn the_delivery_key_is_stable_per_event_and_prefers_the_callers_id() {
    for case in cases() {
        let bp = load(case.file);
        let file = case.file;
        let http = http_modules(&bp)[0];
        let first = sent(&bp, http, case.trigger.clone(), SECRET).delivery;
        let again = sent(&bp, http, case.trigger.clone(), SECRET).delivery;
        assert_eq!(first, again, "{file}: delivery must be reproducible");
        assert!(
            first.contains(case.record_id) && first.contains(EXECUTION_ID),
            "{file}: delivery `{first}` should name the record and the execution"
        );
        // Every HTTP module of the file (first send and resend) uses the same key.
        for other in http_modules(&bp) {
            assert_eq!(
                sent(&bp, other, case.trigger.clone(), SECRET).delivery,
                first,
                "{file}: module {} sends another delivery id",
                other["id"]
            );
        }
        if case.trigger.get("id").is_none() {
            // Webhook scenarios take the caller's event id when it sends one.
            let mut with_id = case.trigger.clone();
            with_id["delivery_id"] = json!("evt_42");
            assert_eq!(
                sent(&bp, http, with_id, SECRET).delivery,
                "evt_42",
                "{file}"
            );
        }
    }
}

fn filter_matches(filter: &Value, status: u16, source: &str) -> bool {
    let mut r = Run {
        modules: HashMap::new(),
        trigger: Value::Null,
        secret: SECRET,
        now: NOW,
        responses: HashMap::new(),
    };
    r.responses
        .insert(format!("{source}.statusCode"), V::Text(status.to_string()));
    let Some(groups) = filter["conditions"].as_array() else {
        return true;
    };
    groups.iter().any(|group| {
        group.as_array().unwrap().iter().all(|c| {
            let a: f64 = eval_template(c["a"].as_str().unwrap(), &r)
                .and_then(|v| v.text())
                .unwrap_or_else(|e| panic!("filter operand: {e}"))
                .parse()
                .unwrap();
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

fn break_of(m: &Value) -> Option<&Value> {
    m["onerror"]
        .as_array()?
        .iter()
        .find(|h| h["module"] == "builtin:Break")
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

        let router = &flow[send_index + 1];
        assert_eq!(router["module"], "builtin:BasicRouter", "{file}");
        let routes: Vec<&Value> = router["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["flow"])
            .collect();
        let classify = |status: u16| -> Vec<usize> {
            routes
                .iter()
                .enumerate()
                .filter(|(_, f)| filter_matches(&f[0]["filter"], status, &source))
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
        assert!(
            done != retry && retry != refused && done != refused,
            "{file}: three distinct routes"
        );

        // Retry route: the same request again, whose own failure is retried by Break within the
        // signature's timestamp window (retries reuse the first timestamp).
        let retry_flow = all_modules(routes[retry]);
        let resend = retry_flow
            .iter()
            .find(|m| m["module"].as_str().is_some_and(|n| n.starts_with("http:")))
            .expect("the retry route sends again");
        assert_eq!(resend["parameters"]["handleErrors"], true, "{file}");
        for handler in [break_of(resend).expect("resend Break"), transport] {
            assert_eq!(handler["mapper"]["retry"], true, "{file}");
            let count: u64 = handler["mapper"]["count"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let minutes: u64 = handler["mapper"]["interval"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                count >= 1 && count * minutes * 60 < TOLERANCE_SECS,
                "{file}: {count} retries every {minutes} min outlive the timestamp tolerance"
            );
        }

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
    // Guards the interpreter itself: `""` escapes, concatenation, and HMAC vs plain hash.
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
}
