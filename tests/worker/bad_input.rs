//! A generated corpus of hostile requests against a real worker (SQLite store, rules analyzer, seeded
//! with a user and three transcripts): truncated and invalid JSON, wrong types in every field of every
//! hook, huge strings and bodies over the cap, deep nesting, control characters and odd unicode,
//! formula-injection strings and malformed ids in every id field, wrong, stale and replayed
//! signatures, missing headers and unknown scenarios.
//!
//! Every answer must be a 4xx with the contract's error body
//! (`{"error": {"code": "SCREAMING_SNAKE", "message": "…", "details": {…}}}`), the worker must stay
//! healthy, and nothing may be written: no record in any store table and no job in the journal.
//!
//! What is *not* sent on purpose: a well-formed id that merely points at nothing to the asynchronous
//! hooks (a2, s3, r1). Those are accepted with 202 by design — existence is checked by the job, which
//! then fails — so they would create a job; the synchronous hooks (a1, s1, d1, e1) get such ids, and
//! the asynchronous ones get only malformed ids. Synchronous hooks journal their own 4xx answers as
//! deliveries (so a repeat gets the same answer); that is the replay contract, not a write to the
//! store, so the journal's delivery table is not part of the "nothing written" check.

use crate::common;

use std::time::{Duration, Instant};

use coach_store::tables;
use coach_worker::webhook::{Secret, signature};
use common::world::{Sample, World, baselines};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALL_TABLES: [&str; 7] = [
    tables::USERS,
    tables::TRANSCRIPTS,
    tables::RUN_REQUESTS,
    tables::RUNS,
    tables::BASELINE_PACKS,
    tables::EXPERIMENTS,
    tables::EXPERIMENT_EVENTS,
];

const HOOKS: [&str; 7] = ["a1", "a2", "s3", "r1", "s1", "d1", "e1"];

/// Synchronous hooks: a well-formed id that points at nothing is refused there, not queued.
const SYNC_HOOKS: [&str; 4] = ["a1", "s1", "d1", "e1"];

/// How a case is signed.
enum Sign {
    /// Standard Webhooks, fresh delivery id, current timestamp, over the exact body.
    Standard,
    /// The Make scheme, current timestamp, over the exact body.
    Make,
    /// Exactly these headers.
    Headers(Vec<(String, String)>),
}

struct Case {
    label: String,
    scenario: String,
    body: Vec<u8>,
    sign: Sign,
    /// The code the answer must carry, when the corpus knows it; any 4xx with a stable code otherwise.
    code: Option<&'static str>,
}

impl Case {
    fn new(label: impl Into<String>, scenario: &str, body: Vec<u8>) -> Case {
        Case {
            label: label.into(),
            scenario: scenario.into(),
            body,
            sign: Sign::Standard,
            code: None,
        }
    }

    fn code(mut self, code: &'static str) -> Case {
        self.code = Some(code);
        self
    }

    fn sign(mut self, sign: Sign) -> Case {
        self.sign = sign;
        self
    }
}

impl World {
    /// A coachee and the three baseline samples, all dated the same day, written straight to the
    /// store.
    async fn seed_baselines(&self) -> (String, Vec<String>) {
        let samples: Vec<Sample> = baselines()
            .iter()
            .map(|s| Sample {
                date: "2026-10-01",
                ..*s
            })
            .collect();
        self.seed_samples(&samples).await
    }

    async fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut out = Vec::new();
        for table in ALL_TABLES {
            out.push((table, self.records(table).await.len()));
        }
        out
    }
}

/// A JSON string literal for `s` (escaped as serde_json escapes it).
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A field of a hook body where a hostile token is put; `@@` marks the spot in `template`.
struct Slot {
    hook: &'static str,
    pointer: &'static str,
    template: String,
    /// `null` is a valid "absent" for optional fields, so it is only sent to required ones.
    required: bool,
    /// Objects are valid here (S1 `output`), so object tokens are not sent.
    takes_object: bool,
    /// An id field: malformed ids go here.
    id: bool,
}

impl Slot {
    /// Whether `token` is a valid value here (`true` for a boolean field), so not hostile.
    fn accepts(&self, token: &str) -> bool {
        (token == "true" && ["/build", "/experiment_active"].contains(&self.pointer))
            || (token.starts_with('{') && self.takes_object)
    }
}

fn slots(user: &str, t: &[String], output: &str) -> Vec<Slot> {
    let (u, t0, t1, t2) = (lit(user), lit(&t[0]), lit(&t[1]), lit(&t[2]));
    let inline = r#"{"text":"Maya Chen: What do you think?\nTom Okafor: Fine.","format":"text"}"#;
    let s1_inline = |rest: &str| format!(r#"{{"transcript":{inline},{rest}}}"#);
    let slot = |hook, pointer, template: String, required, id| Slot {
        hook,
        pointer,
        template,
        required,
        takes_object: false,
        id,
    };
    let mut out = vec![
        slot(
            "a1",
            "/user_id",
            format!(r#"{{"user_id":@@,"transcript_ids":[{t0},{t1},{t2}]}}"#),
            true,
            true,
        ),
        slot(
            "a1",
            "/transcript_ids",
            format!(r#"{{"user_id":{u},"transcript_ids":@@}}"#),
            true,
            false,
        ),
        slot(
            "a1",
            "/transcript_ids/0",
            format!(r#"{{"user_id":{u},"transcript_ids":[@@,{t1},{t2}]}}"#),
            true,
            true,
        ),
        slot(
            "a1",
            "/transcript_ids/1",
            format!(r#"{{"user_id":{u},"transcript_ids":[{t0},@@,{t2}]}}"#),
            true,
            true,
        ),
        slot(
            "a1",
            "/transcript_ids/2",
            format!(r#"{{"user_id":{u},"transcript_ids":[{t0},{t1},@@]}}"#),
            true,
            true,
        ),
        slot(
            "a1",
            "/name",
            format!(r#"{{"user_id":{u},"transcript_ids":[{t0},{t1},{t2}],"name":@@}}"#),
            false,
            false,
        ),
        slot(
            "a1",
            "/build",
            format!(r#"{{"user_id":{u},"transcript_ids":[{t0},{t1},{t2}],"build":@@}}"#),
            false,
            false,
        ),
        slot(
            "a2",
            "/baseline_pack_id",
            r#"{"baseline_pack_id":@@}"#.into(),
            true,
            true,
        ),
        slot(
            "s3",
            "/baseline_pack_id",
            r#"{"baseline_pack_id":@@}"#.into(),
            true,
            true,
        ),
        slot(
            "r1",
            "/run_request_id",
            r#"{"run_request_id":@@}"#.into(),
            true,
            true,
        ),
        slot("d1", "/run_id", r#"{"run_id":@@}"#.into(), true, true),
        slot("e1", "/run_id", r#"{"run_id":@@}"#.into(), true, true),
        slot(
            "s1",
            "/transcript_id",
            format!(r#"{{"transcript_id":@@,"output":{output}}}"#),
            true,
            true,
        ),
        slot(
            "s1",
            "/transcript",
            format!(r#"{{"transcript":@@,"coachee_speaker":"Maya Chen","output":{output}}}"#),
            true,
            false,
        ),
        slot(
            "s1",
            "/transcript/text",
            format!(
                r#"{{"transcript":{{"text":@@}},"coachee_speaker":"Maya Chen","output":{output}}}"#
            ),
            true,
            false,
        ),
        slot(
            "s1",
            "/transcript/format",
            format!(
                r#"{{"transcript":{{"text":"Maya Chen: Hi.","format":@@}},"coachee_speaker":"Maya Chen","output":{output}}}"#
            ),
            false,
            false,
        ),
        slot(
            "s1",
            "/coachee_speaker",
            s1_inline(&format!(r#""coachee_speaker":@@,"output":{output}"#)),
            true,
            false,
        ),
        slot(
            "s1",
            "/run_type",
            s1_inline(&format!(
                r#""coachee_speaker":"Maya Chen","run_type":@@,"output":{output}"#
            )),
            false,
            false,
        ),
        slot(
            "s1",
            "/experiment_active",
            s1_inline(&format!(
                r#""coachee_speaker":"Maya Chen","experiment_active":@@,"output":{output}"#
            )),
            false,
            false,
        ),
    ];
    out.push(Slot {
        hook: "s1",
        pointer: "/output",
        template: s1_inline(r#""coachee_speaker":"Maya Chen","output":@@"#),
        required: true,
        takes_object: true,
        id: false,
    });
    out
}

/// Values of the wrong JSON type (and numbers serde_json refuses), as raw JSON text.
const WRONG_TYPES: [&str; 9] = [
    "12",
    "-1.5",
    "true",
    "[]",
    r#"["recAAAAAAAAAAAAAA"]"#,
    r#"{"$ne":null}"#,
    "18446744073709551616",
    // Out of f64 range: serde_json refuses the number, so this is a JSON error.
    "1e400",
    "-0",
];

/// Malformed ids: formula injection, lengths around 17, lookalikes, control characters, huge.
fn malformed_ids() -> Vec<(String, String)> {
    let mut ids: Vec<(&str, String)> = vec![
        ("formula quote break", r#"x", ""=""#.into()),
        ("sql-ish", r"\' OR 1".into()),
        ("short", "rec123".into()),
        ("15 chars", "recAAAAAAAAAAAA".into()),
        ("13 chars", "recAAAAAAAAAA".into()),
        ("16 chars", "recAAAAAAAAAAAAA".into()),
        ("18 chars", "recAAAAAAAAAAAAAAA".into()),
        ("upper prefix", "RECAAAAAAAAAAAAAA".into()),
        ("other prefix", "tblAAAAAAAAAAAAAA".into()),
        ("space inside", "rec AAAAAAAAAAAAA".into()),
        ("dash inside", "recAAAAAAA-AAAAAA".into()),
        ("leading space", " recAAAAAAAAAAAAAA".into()),
        ("trailing newline", "recAAAAAAAAAAAAAA\n".into()),
        ("empty", String::new()),
        ("formula =", "=1+1".into()),
        ("formula dde", "+cmd|' /C calc'!A0".into()),
        ("formula @", "@SUM(1+1)*cmd|' /C calc'!A0".into()),
        ("airtable formula", "{Key}='x'".into()),
        ("airtable OR", "', OR(TRUE()), '".into()),
        ("path", "rec/../../Users".into()),
        ("percent", "recAAAAAAAAAAAA%00".into()),
        ("NUL inside", "rec\0AAAAAAAAAAAAA".into()),
        ("NUL padded", "recAAAAAAAAAAAAA\0".into()),
        ("cyrillic e", "r\u{0435}cAAAAAAAAAAAAAA".into()),
        ("fullwidth", "\u{ff52}\u{ff45}\u{ff43}AAAAAAAAAAAAAA".into()),
        ("fullwidth digit", "recAAAAAAAAAAAAA\u{ff11}".into()),
        ("arabic digits", "recAAAAAAAAAAAA\u{0661}\u{0662}".into()),
        ("zero-width space", "recAAAAAAA\u{200b}AAAAAAA".into()),
        ("rtl override", "\u{202e}recAAAAAAAAAAAAAA".into()),
        ("rtl mark", "recAAAAAAAAAAAAA\u{200f}".into()),
        ("emoji", "rec\u{1f600}AAAAAAAAAAAA".into()),
        ("combining", "rec\u{0301}AAAAAAAAAAAAAA".into()),
        ("bom", "\u{feff}recAAAAAAAAAAAAAA".into()),
        ("huge", format!("rec{}", "A".repeat(900_000))),
    ];
    ids.sort_by_key(|(label, _)| *label);
    ids.into_iter()
        .map(|(label, id)| (label.to_owned(), lit(&id)))
        .collect()
}

/// Raw JSON string tokens serde_json must refuse (escaped lone surrogates, bad escapes).
const BAD_STRING_TOKENS: [&str; 5] = [
    r#""\ud800""#,
    r#""rec\udfffAAAAAAAAAAAAA""#,
    r#""\ud800\u0041""#,
    r#""\x41""#,
    r#""\u12""#,
];

/// Bodies that are not JSON at all, or not quite.
fn invalid_json() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", b"".to_vec()),
        ("whitespace", b" \n\t\r\n".to_vec()),
        ("open brace", b"{".to_vec()),
        ("close brace", b"}".to_vec()),
        ("missing value", br#"{"run_id":}"#.to_vec()),
        (
            "single quotes",
            br#"{'run_id':'recAAAAAAAAAAAAAA'}"#.to_vec(),
        ),
        ("trailing comma", br#"{"run_id":"x",}"#.to_vec()),
        ("two documents", br#"{"a":1}{"b":2}"#.to_vec()),
        ("trailing text", br#"{"a":1} trailing"#.to_vec()),
        ("trailing NUL", b"{\"a\":1}\0".to_vec()),
        ("nul literal", b"nul".to_vec()),
        ("NaN", b"NaN".to_vec()),
        ("Infinity", br#"{"a":Infinity}"#.to_vec()),
        ("leading zero", br#"{"a":01}"#.to_vec()),
        ("bare fraction", br#"{"a":.5}"#.to_vec()),
        ("bad escape", br#"{"a":"\q"}"#.to_vec()),
        ("raw tab in string", b"{\"a\":\"tab\there\"}".to_vec()),
        ("raw NUL in string", b"{\"a\":\"nul\0here\"}".to_vec()),
        ("raw newline in string", b"{\"a\":\"line\nbreak\"}".to_vec()),
        ("raw NUL outside", b"\0{}".to_vec()),
        ("utf-8 bom", b"\xEF\xBB\xBF{\"a\":1}".to_vec()),
        ("utf-16 bom", b"\xFF\xFE{\0}\0".to_vec()),
        ("invalid utf-8 in string", b"{\"a\":\"\xC3\x28\"}".to_vec()),
        ("overlong utf-8", b"{\"a\":\"\xC0\xAF\"}".to_vec()),
        ("lone surrogate key", br#"{"\ud800":1}"#.to_vec()),
        ("lone low surrogate", br#"{"a":"\udc00"}"#.to_vec()),
        ("comment", b"/* c */ {}".to_vec()),
        ("unclosed array", b"[1,2".to_vec()),
        ("unclosed string", br#"{"run_id":"recAAA"#.to_vec()),
        ("cut in escape", br#"{"run_id":"\u00"#.to_vec()),
        ("cut in utf-8", b"{\"run_id\":\"\xC3".to_vec()),
        (
            "key without quotes",
            br#"{run_id:"recAAAAAAAAAAAAAA"}"#.to_vec(),
        ),
    ]
}

/// `depth` nested empty arrays (serde_json refuses more than 128 levels).
fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` nested objects around a number.
fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

fn standard_headers_with(secret: &str, id: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    let secret = Secret::parse(secret).unwrap();
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            signature::sign_standard(&secret, id, ts, body).unwrap(),
        ),
    ]
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A label, the headers sent, and the 401 code expected (any `SIGNATURE_*` when `None`).
type SignatureCase = (&'static str, Vec<(String, String)>, Option<&'static str>);

/// Signature cases for one (otherwise valid) body: every one must be a 401 that does nothing.
fn signature_cases(scenario: &str, body: &[u8]) -> Vec<Case> {
    let now = now();
    let std_sig = |id: &str, ts: i64, b: &[u8]| {
        signature::sign_standard(&Secret::parse(SECRET).unwrap(), id, ts, b).unwrap()
    };
    let make_sig =
        |ts: i64, b: &[u8]| signature::sign_make(&Secret::parse(MAKE_SECRET).unwrap(), ts, b);
    let sig_now = std_sig("sig-id", now, body);
    let ts_now = now.to_string();
    let mut cases: Vec<SignatureCase> = vec![
        ("no headers", vec![], Some("SIGNATURE_MISSING")),
        ("only webhook-id", h(&[("webhook-id", "x")]), None),
        ("only timestamp", h(&[("webhook-timestamp", &ts_now)]), None),
        (
            "signature without id",
            h(&[
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &sig_now),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "signature without timestamp",
            h(&[("webhook-id", "sig-id"), ("webhook-signature", &sig_now)]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "other body",
            standard_headers("sig-other", now, b"{}"),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "unknown secret",
            standard_headers_with(
                "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGw=",
                "sig-unk",
                now,
                body,
            ),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "stale 6 min",
            standard_headers("sig-stale-1", now - 360, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "stale 1 day",
            standard_headers("sig-stale-2", now - 86_400, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "future 6 min",
            standard_headers("sig-future", now + 360, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "epoch",
            standard_headers("sig-epoch", 0, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "negative",
            standard_headers("sig-neg", -1, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "i64 max",
            standard_headers("sig-max", i64::MAX, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "i64 min",
            standard_headers("sig-min", i64::MIN, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "timestamp overflow",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", "99999999999999999999999"),
                ("webhook-signature", &sig_now),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "timestamp text",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", "yesterday"),
                ("webhook-signature", &sig_now),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "timestamp fraction",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &format!("{now}.5")),
                ("webhook-signature", &sig_now),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            // A signature captured from a real delivery, sent again after the window.
            "replayed after the window",
            {
                let old = now - 600;
                h(&[
                    ("webhook-id", "sig-replay"),
                    ("webhook-timestamp", &old.to_string()),
                    ("webhook-signature", &std_sig("sig-replay", old, body)),
                ])
            },
            Some("SIGNATURE_STALE"),
        ),
        (
            // The same captured signature with the timestamp moved to now: it no longer matches.
            "replayed with a fresh timestamp",
            h(&[
                ("webhook-id", "sig-replay"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &std_sig("sig-replay", now - 600, body)),
            ]),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "replayed under another id",
            h(&[
                ("webhook-id", "sig-other-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &sig_now),
            ]),
            Some("SIGNATURE_INVALID"),
        ),
        (
            // Three bytes cannot be a MAC: dropped before any hashing, which leaves none to match.
            "v1 garbage",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", "v1,AAAA"),
            ]),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "v2 only",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &sig_now.replacen("v1,", "v2,", 1)),
            ]),
            None,
        ),
        (
            "empty signature",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", ""),
            ]),
            None,
        ),
        (
            // Each candidate used to cost an HMAC over the body: the header's size is capped.
            "a thousand wrong signatures",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                (
                    "webhook-signature",
                    &vec!["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; 1000].join(" "),
                ),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "twenty thousand empty candidates",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &vec!["v1,"; 20_000].join(" ")),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "two hundred empty candidates in a short header",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &vec!["v1,"; 200].join(" ")),
            ]),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "six candidates of the right length",
            h(&[
                ("webhook-id", "sig-id"),
                ("webhook-timestamp", &ts_now),
                ("webhook-signature", &[sig_now.as_str(); 6].join(" ")),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "make: twenty thousand empty candidates",
            h(&[
                ("X-Coach-Timestamp", &ts_now),
                ("X-Coach-Signature", &vec!["v1="; 20_000].join(",")),
            ]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "flipped bit",
            {
                // The first base64 character after `v1,`: still valid base64, now the wrong MAC.
                let mut sig = sig_now.clone().into_bytes();
                sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
                h(&[
                    ("webhook-id", "sig-id"),
                    ("webhook-timestamp", &ts_now),
                    ("webhook-signature", &String::from_utf8(sig).unwrap()),
                ])
            },
            Some("SIGNATURE_INVALID"),
        ),
        (
            "make: other body",
            make_headers(Some("mk-1"), now, b"{}"),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "make: stale 6 min",
            make_headers(Some("mk-2"), now - 360, body),
            Some("SIGNATURE_STALE"),
        ),
        (
            "make: unknown secret",
            h(&[
                ("X-Coach-Timestamp", &ts_now),
                (
                    "X-Coach-Signature",
                    &signature::sign_make(
                        &Secret::parse("not-a-configured-secret").unwrap(),
                        now,
                        body,
                    ),
                ),
            ]),
            Some("SIGNATURE_INVALID"),
        ),
        (
            "make: bad hex",
            h(&[
                ("X-Coach-Timestamp", &ts_now),
                ("X-Coach-Signature", "v1=zz"),
            ]),
            None,
        ),
        (
            "make: empty",
            h(&[("X-Coach-Timestamp", &ts_now), ("X-Coach-Signature", "v1=")]),
            None,
        ),
        (
            "make: no timestamp",
            h(&[("X-Coach-Signature", &make_sig(now, body))]),
            Some("SIGNATURE_MALFORMED"),
        ),
        (
            "make: replayed with a fresh timestamp",
            h(&[
                ("X-Coach-Timestamp", &ts_now),
                ("X-Coach-Signature", &make_sig(now - 600, body)),
            ]),
            Some("SIGNATURE_INVALID"),
        ),
    ];
    cases.push((
        "make: timestamp only",
        h(&[("X-Coach-Timestamp", &ts_now)]),
        None,
    ));
    cases
        .into_iter()
        .map(|(label, headers, code)| Case {
            label: format!("signature: {label}"),
            scenario: scenario.into(),
            body: body.to_vec(),
            sign: Sign::Headers(headers),
            code,
        })
        .collect()
}

/// The probe's CPU attack: a body near the cap with thousands of empty signature candidates. Refused
/// from the headers alone.
fn candidate_flood() -> Case {
    let body = format!(r#"{{"run_id":"{}"}}"#, "A".repeat(1_000_000)).into_bytes();
    let headers = h(&[
        ("webhook-id", "flood"),
        ("webhook-timestamp", &now().to_string()),
        ("webhook-signature", &vec!["v1,"; 20_000].join(" ")),
    ]);
    Case::new(
        "signature: 1 MB body, twenty thousand empty candidates",
        "d1",
        body,
    )
    .sign(Sign::Headers(headers))
    .code("SIGNATURE_MALFORMED")
}

fn corpus(user: &str, transcripts: &[String]) -> Vec<Case> {
    let output = json!({
        "schema_version": "gate1.v1", "run_type": "single_meeting", "coachee_speaker": "Maya Chen",
        "summary": "Short.", "patterns": [],
        "coaching_card": {"headline": "h", "keep_doing": ["ask"], "try_next": ["wait"]},
        "experiment_proposal": null, "experiment_attempt": null
    })
    .to_string();
    let slots = slots(user, transcripts, &output);
    let mut cases = Vec::new();

    // Wrong types in every field of every hook.
    for slot in &slots {
        let mut tokens: Vec<&str> = WRONG_TYPES.to_vec();
        if slot.required {
            tokens.push("null");
        }
        for token in tokens {
            if slot.accepts(token) {
                continue;
            }
            let body = slot.template.replace("@@", token);
            let mut case = Case::new(
                format!("wrong type {token} at {}{}", slot.hook, slot.pointer),
                slot.hook,
                body.into_bytes(),
            );
            if token == "1e400" {
                case = case.code("INVALID_JSON");
            }
            cases.push(case);
        }
        for token in BAD_STRING_TOKENS {
            cases.push(
                Case::new(
                    format!("bad string {token} at {}{}", slot.hook, slot.pointer),
                    slot.hook,
                    slot.template.replace("@@", token).into_bytes(),
                )
                .code("INVALID_JSON"),
            );
        }
        // Deep nesting as the field's value: under serde_json's limit of 128 it is a wrong type,
        // over it a JSON error; never a stack overflow.
        for depth in [100, 10_000] {
            let mut case = Case::new(
                format!("{depth} nested arrays at {}{}", slot.hook, slot.pointer),
                slot.hook,
                slot.template
                    .replace("@@", &nested_arrays(depth))
                    .into_bytes(),
            );
            if depth > 128 {
                case = case.code("INVALID_JSON");
            }
            cases.push(case);
        }
    }

    // Malformed ids in every id field; well-formed ids that exist nowhere only for synchronous hooks.
    let ids = malformed_ids();
    for slot in slots.iter().filter(|s| s.id) {
        for (label, token) in &ids {
            cases.push(
                Case::new(
                    format!("malformed id ({label}) at {}{}", slot.hook, slot.pointer),
                    slot.hook,
                    slot.template.replace("@@", token).into_bytes(),
                )
                .code("INVALID_RECORD_ID"),
            );
        }
        if SYNC_HOOKS.contains(&slot.hook) {
            for missing in [
                "recAAAAAAAAAAAAAA",
                "recZZZZZZZZZZZZZZ",
                "rec00000000000000",
            ] {
                cases.push(Case::new(
                    format!("unknown id {missing} at {}{}", slot.hook, slot.pointer),
                    slot.hook,
                    slot.template.replace("@@", &lit(missing)).into_bytes(),
                ));
            }
        }
    }

    // Odd strings in the free-text fields that are checked before any work: s1 without `output`.
    for (label, text) in [
        ("NUL", "Maya Chen: hi\0there"),
        ("rtl", "\u{202e}Maya Chen: \u{200f}hello"),
        ("emoji", "Maya Chen: \u{1f600}\u{1f680} ship it"),
        ("control chars", "\u{1}\u{7}\u{1b}[31mMaya Chen: red"),
    ] {
        cases.push(
            Case::new(
                format!("s1 text with {label}, no output"),
                "s1",
                json!({"transcript": {"text": text}, "coachee_speaker": text})
                    .to_string()
                    .into_bytes(),
            )
            .code("MISSING_FIELD"),
        );
    }
    cases.push(
        Case::new(
            "s1 huge text, blank coachee",
            "s1",
            json!({"transcript": {"text": "Maya Chen: word ".repeat(55_000)}, "coachee_speaker": " \t ", "output": {}})
                .to_string()
                .into_bytes(),
        )
        .code("MISSING_FIELD"),
    );
    cases.push(
        Case::new(
            "s1 both transcript and id",
            "s1",
            json!({"transcript_id": transcripts[0], "transcript": {"text": "A: b"}, "output": {}})
                .to_string()
                .into_bytes(),
        )
        .code("AMBIGUOUS_TRANSCRIPT"),
    );
    cases.push(
        Case::new(
            "s1 baseline run type",
            "s1",
            json!({"transcript_id": transcripts[0], "run_type": "baseline_pack", "output": {}})
                .to_string()
                .into_bytes(),
        )
        .code("UNSUPPORTED_RUN_TYPE"),
    );
    for (label, ids) in [
        ("two transcripts", json!([transcripts[0], transcripts[1]])),
        (
            "four transcripts",
            json!([
                transcripts[0],
                transcripts[1],
                transcripts[2],
                transcripts[0]
            ]),
        ),
        (
            "duplicate",
            json!([transcripts[0], transcripts[0], transcripts[1]]),
        ),
        ("none", json!([])),
        ("ten thousand", json!(vec![transcripts[0].clone(); 10_000])),
    ] {
        cases.push(Case::new(
            format!("a1 {label}"),
            "a1",
            json!({"user_id": user, "transcript_ids": ids})
                .to_string()
                .into_bytes(),
        ));
    }
    // A huge key, many keys, and an id in a field the hooks do not read.
    for hook in HOOKS {
        cases.push(Case::new(
            format!("{hook} huge key"),
            hook,
            format!(r#"{{{}:1}}"#, lit(&"k".repeat(900_000))).into_bytes(),
        ));
        let many: serde_json::Map<String, Value> =
            (0..20_000).map(|i| (format!("k{i}"), json!(i))).collect();
        cases.push(Case::new(
            format!("{hook} 20,000 keys"),
            hook,
            Value::Object(many).to_string().into_bytes(),
        ));
    }

    // Bodies that are not objects, invalid JSON, truncated JSON, deep nesting.
    let valid_shaped: Vec<(&str, String)> = vec![
        (
            "a1",
            json!({"user_id": user, "transcript_ids": transcripts, "name": "Pack \u{1f4e6}", "build": false}).to_string(),
        ),
        ("a2", r#"{"baseline_pack_id":"recAAAAAAAAAAAAAA"}"#.into()),
        ("s3", r#"{"baseline_pack_id":"recAAAAAAAAAAAAAA"}"#.into()),
        ("r1", r#"{"run_request_id":"recAAAAAAAAAAAAAA"}"#.into()),
        (
            "s1",
            format!(
                r#"{{"transcript":{{"text":"Maya Chen: What do you think?\nTom: Fine.","format":"text"}},"coachee_speaker":"Maya Chen","output":{output}}}"#
            ),
        ),
        ("d1", r#"{"run_id":"recAAAAAAAAAAAAAA"}"#.into()),
        ("e1", r#"{"run_id":"recAAAAAAAAAAAAAA"}"#.into()),
    ];
    for (hook, valid) in &valid_shaped {
        for top in [
            "[]",
            "1",
            r#""recAAAAAAAAAAAAAA""#,
            "null",
            "true",
            r#"[{"run_id":"recAAAAAAAAAAAAAA"}]"#,
        ] {
            cases.push(
                Case::new(
                    format!("{hook} top-level {top}"),
                    hook,
                    top.as_bytes().to_vec(),
                )
                .code("WRONG_TYPE"),
            );
        }
        for (label, body) in invalid_json() {
            cases.push(
                Case::new(format!("{hook} invalid json: {label}"), hook, body).code("INVALID_JSON"),
            );
        }
        let bytes = valid.as_bytes();
        let n = bytes.len();
        for cut in [1, n / 4, n / 2, 3 * n / 4, n - 2, n - 1] {
            cases.push(
                Case::new(
                    format!("{hook} truncated at {cut}/{n}"),
                    hook,
                    bytes[..cut].to_vec(),
                )
                .code("INVALID_JSON"),
            );
        }
        cases.push(
            Case::new(
                format!("{hook} 10,000 nested arrays"),
                hook,
                nested_arrays(10_000).into_bytes(),
            )
            .code("INVALID_JSON"),
        );
        cases.push(
            Case::new(
                format!("{hook} 10,000 nested objects"),
                hook,
                nested_objects(10_000).into_bytes(),
            )
            .code("INVALID_JSON"),
        );
        cases.push(
            Case::new(
                format!("{hook} 129 nested arrays"),
                hook,
                nested_arrays(129).into_bytes(),
            )
            .code("INVALID_JSON"),
        );
        cases.push(
            Case::new(
                format!("{hook} 100 nested arrays"),
                hook,
                nested_arrays(100).into_bytes(),
            )
            .code("WRONG_TYPE"),
        );
        // Over the 1 MiB cap: refused before the signature is even checked, so unsigned too.
        let big = format!(r#"{{"pad":"{}","x":1}}"#, "x".repeat(1_100_000)).into_bytes();
        cases.push(
            Case::new(format!("{hook} 1.1 MB body"), hook, big.clone()).code("BODY_TOO_LARGE"),
        );
        cases.push(
            Case::new(format!("{hook} 1.1 MB body unsigned"), hook, big)
                .sign(Sign::Headers(vec![]))
                .code("BODY_TOO_LARGE"),
        );
        cases.push(
            Case::new(
                format!("{hook} 1 MiB + 1 body"),
                hook,
                vec![b' '; 1_048_577],
            )
            .code("BODY_TOO_LARGE"),
        );
        // Exactly at the cap: read, then refused as JSON.
        let mut at_cap = valid.clone().into_bytes();
        at_cap.resize(1_048_576, b'x');
        cases.push(
            Case::new(format!("{hook} 1 MiB of trailing garbage"), hook, at_cap)
                .code("INVALID_JSON"),
        );
        // 900 KB of whitespace around a body that is still wrong.
        let padded = format!(
            "{}{{\"nothing\":true}}{}",
            " ".repeat(450_000),
            "\n".repeat(450_000)
        );
        cases.push(Case::new(
            format!("{hook} 900 KB of whitespace"),
            hook,
            padded.into_bytes(),
        ));
        // Make-scheme signing reaches the same checks.
        cases.push(
            Case::new(
                format!("{hook} make-signed truncated"),
                hook,
                bytes[..n / 2].to_vec(),
            )
            .sign(Sign::Make)
            .code("INVALID_JSON"),
        );
    }

    // Signatures: sent with bodies that are otherwise valid (or would be queued), so a hole in the
    // check would write something.
    for (hook, valid) in &valid_shaped {
        if ["a1", "r1", "s1", "d1"].contains(hook) {
            cases.extend(signature_cases(hook, valid.as_bytes()));
        }
    }
    cases.push(candidate_flood());

    // Unknown scenarios (checked first, so signed or not does not matter).
    for name in [
        "a3",
        "A1",
        "r1%20",
        "%00",
        "a1%00",
        "..%2Fadmin",
        "%F0%9F%93%A6",
        "admin",
        "runs",
        "s1.json",
        "a1;drop",
        "%E2%80%AEa1",
        "%D0%B01",
        &"x".repeat(2000),
    ] {
        cases.push(
            Case::new(
                format!("unknown scenario {}", &name[..name.len().min(20)]),
                name,
                valid_shaped[3].1.clone().into_bytes(),
            )
            .code("UNKNOWN_SCENARIO"),
        );
    }
    cases
}

/// Checks one answer: a 4xx with the contract's error body (and the expected code, if any).
/// Returns the code, or what is wrong with the answer.
fn check_answer(
    label: &str,
    status: u16,
    body: &[u8],
    code: Option<&str>,
) -> Result<String, String> {
    let shown = || String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
    if !(400..500).contains(&status) {
        return Err(format!(
            "{label}: expected a 4xx, got {status}: {}",
            shown()
        ));
    }
    if body.len() >= 16_384 {
        return Err(format!(
            "{label}: the error body echoes too much ({} bytes)",
            body.len()
        ));
    }
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "{label}: the {status} body is not JSON ({e}): {:?}",
            shown()
        )
    })?;
    let error = &json["error"];
    let got = error["code"]
        .as_str()
        .ok_or_else(|| format!("{label}: no error.code in {json}"))?;
    let screaming = got.starts_with(|c: char| c.is_ascii_uppercase())
        && got
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !screaming {
        return Err(format!("{label}: code {got:?} is not SCREAMING_SNAKE"));
    }
    if error["message"]
        .as_str()
        .is_none_or(|m| m.trim().is_empty())
    {
        return Err(format!("{label}: empty message in {json}"));
    }
    if !error["details"].is_object() {
        return Err(format!("{label}: details is not an object in {json}"));
    }
    match code {
        Some(code) if code != got => Err(format!("{label}: expected {code}, got {status} {json}")),
        _ => Ok(got.to_owned()),
    }
}

/// For a raw case: any stable code will do, only the status and the body's shape are checked.
const ANY_CODE: &str = "";

/// Sends a request over a raw TCP connection (for what reqwest will not send: chunked bodies
/// without a length, a lying Content-Length, header bytes that are not UTF-8) and returns the
/// status and body of the answer.
async fn raw_request(address: &str, head: &[u8], body: &[u8]) -> (u16, Vec<u8>) {
    let host = address.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Written while the answer is read: the server may answer (and close) before it has read all of
    // a too-large body, and the answer must be read before a reset could discard it.
    let request = [head, body].concat();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    drop(writer.await);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let headers = text[..split].to_ascii_lowercase();
    let mut payload = answer[split..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &payload[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        payload = out;
    }
    (status, payload)
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_stable_4xx_codes_and_write_nothing() {
    let started = Instant::now();
    let w = World::builder().start().await;
    let (user, transcripts) = w.seed_baselines().await;
    let before = w.counts().await;
    let jobs_before = w.app.journal.count_jobs(Default::default()).await.unwrap();

    let cases = corpus(&user, &transcripts);
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let headers = match &case.sign {
            Sign::Standard => standard_headers(&format!("bad-{i}"), now(), &case.body),
            Sign::Make => make_headers(Some(&format!("bad-make-{i}")), now(), &case.body),
            Sign::Headers(h) => h.clone(),
        };
        let resp = w
            .app
            .post_raw(&case.scenario, case.body.clone(), headers)
            .await;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        match check_answer(&case.label, status, &body, case.code) {
            // A refused signature is always a 401 with a `SIGNATURE_*` code, whatever the body.
            Ok(code)
                if matches!(case.sign, Sign::Headers(_))
                    && case.label.starts_with("signature:")
                    && (status != 401 || !code.starts_with("SIGNATURE_")) =>
            {
                failures.push(format!(
                    "{}: expected a 401 SIGNATURE_*, got {status} {code}",
                    case.label
                ));
            }
            Ok(code) => *codes.entry(code).or_default() += 1,
            Err(problem) => failures.push(problem),
        }
        let (health, _) = w.app.get_json("/healthz").await;
        assert_eq!(health, 200, "unhealthy after {}", case.label);
    }

    // What only a raw connection can send.
    let port = w.app.address.clone();
    let big = format!(r#"{{"run_id":"{}"}}"#, "A".repeat(1_200_000)).into_bytes();
    let raw_cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = {
        let small = br#"{"run_id":"recAAAAAAAAAAAAAA"}"#.to_vec();
        let sig = standard_headers("raw-1", now(), &small);
        let mut signed = String::new();
        for (k, v) in &sig {
            signed.push_str(&format!("{k}: {v}\r\n"));
        }
        // Signed headers whose timestamp leaves the window two seconds from now: a body sent under
        // them has two seconds to arrive.
        let mut expiring = String::new();
        for (k, v) in &standard_headers("raw-slow", now() - 298, &small) {
            expiring.push_str(&format!("{k}: {v}\r\n"));
        }
        vec![
            (
                "chunked body over the cap, no length",
                format!("POST /v1/hooks/d1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n{signed}\r\n").into_bytes(),
                chunked(&big),
                "BODY_TOO_LARGE",
            ),
            (
                "chunked body over the cap to an async hook",
                format!("POST /v1/hooks/r1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n{signed}\r\n").into_bytes(),
                chunked(&big),
                "BODY_TOO_LARGE",
            ),
            (
                // Refused from the headers: the body is never waited for.
                "unsigned, announcing a 1 MiB body that never comes",
                b"POST /v1/hooks/d1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n".to_vec(),
                Vec::new(),
                "SIGNATURE_MISSING",
            ),
            (
                "stale signature, announcing a 1 MiB body that never comes",
                {
                    let mut stale = String::new();
                    for (k, v) in &standard_headers("raw-stale", now() - 3600, &small) {
                        stale.push_str(&format!("{k}: {v}\r\n"));
                    }
                    format!("POST /v1/hooks/r1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nConnection: close\r\n{stale}\r\n").into_bytes()
                },
                Vec::new(),
                "SIGNATURE_STALE",
            ),
            (
                // A body trickled (here: stopped) under fresh headers is cut off when the signed
                // timestamp leaves the window, at the latest after the body deadline.
                "signed, body stops after ten bytes",
                format!("POST /v1/hooks/d1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n{expiring}\r\n").into_bytes(),
                br#"{"run_id":"#.to_vec(),
                "BODY_TIMEOUT",
            ),
            (
                "announced length far over the cap",
                b"POST /v1/hooks/a1 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n".to_vec(),
                b"{}".to_vec(),
                "BODY_TOO_LARGE",
            ),
            (
                "signature header with bytes that are not UTF-8",
                [
                    b"POST /v1/hooks/d1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nwebhook-id: raw-2\r\nwebhook-timestamp: ".as_slice(),
                    now().to_string().as_bytes(),
                    b"\r\nwebhook-signature: v1,\xff\xfe\xfd\r\nContent-Length: ",
                    small.len().to_string().as_bytes(),
                    b"\r\n\r\n",
                ]
                .concat(),
                small.clone(),
                "SIGNATURE_MALFORMED",
            ),
            // Requests that match no route get the contract's error body too (405
            // METHOD_NOT_ALLOWED on a hook path, 404 NO_ROUTE elsewhere), not an empty 404.
            (
                "GET on a hook",
                b"GET /v1/hooks/a1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
                Vec::new(),
                "METHOD_NOT_ALLOWED",
            ),
            (
                "a path below a hook",
                b"POST /v1/hooks/a1/extra HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n".to_vec(),
                b"{}".to_vec(),
                "NO_ROUTE",
            ),
            (
                "a valid signature with chunked garbage appended",
                format!("POST /v1/hooks/d1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n{signed}\r\n").into_bytes(),
                chunked(&[small.as_slice(), b"\0\0\0"].concat()),
                "SIGNATURE_INVALID",
            ),
        ]
    };
    let raw_count = raw_cases.len();
    for (label, head, body, code) in raw_cases {
        let (status, answer) = raw_request(&port, &head, &body).await;
        match check_answer(label, status, &answer, None) {
            // The non-UTF-8 header reads as absent; which 401 that is depends on what else is there.
            Ok(got)
                if code == ANY_CODE
                    || got == code
                    || (code.starts_with("SIGNATURE") && got.starts_with("SIGNATURE_")) =>
            {
                *codes.entry(got).or_default() += 1;
            }
            Ok(got) => failures.push(format!("{label}: expected {code}, got {got}")),
            Err(problem) => failures.push(problem),
        }
        assert_eq!(
            w.app.get_json("/healthz").await.0,
            200,
            "unhealthy after {label}"
        );
    }

    // Everything is checked before anything is asserted, so one wrong answer does not hide a write.
    assert_eq!(w.app.get_json("/readyz").await.0, 200);
    let after = w.counts().await;
    if after != before {
        failures.push(format!(
            "a refused request wrote a record: {before:?} → {after:?}"
        ));
    }
    let jobs_after = w.app.journal.count_jobs(Default::default()).await.unwrap();
    if jobs_after != jobs_before {
        failures.push(format!(
            "a refused request queued a job: {jobs_before} → {jobs_after}"
        ));
    }
    let total = cases.len() + raw_count;
    println!(
        "bad input corpus: {total} cases in {:.1} s; codes: {codes:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(total >= 200, "the corpus has {total} cases");
    assert!(
        failures.is_empty(),
        "{} problems with the answers to hostile requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Operator-editable text at its worst: fifty speaker labels of 2,000 characters, checked
/// synchronously by S1 against a coachee label that matches none of them. The answer is a 4xx with the
/// contract's error body, small (labels are truncated in messages), and the worker stays healthy. A
/// coachee label of 100,000 characters is refused before any comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_labels_and_a_long_coachee_name_get_a_short_error() {
    let w = World::builder().start().await;
    let turns: Vec<Value> = (0..50)
        .map(|i| {
            json!({
                "speaker": format!("{}{i:02}", "L".repeat(1_998)),
                "text": "we should look at the plan again",
            })
        })
        .collect();
    let text = serde_json::to_string(&turns).unwrap();
    let request = |coachee: String| {
        serde_json::to_vec(&json!({
            "transcript": {"text": text, "format": "json"},
            "coachee_speaker": coachee,
            "output": {},
        }))
        .unwrap()
    };
    let body = request("Q".repeat(100_000));
    let headers = standard_headers("long-coachee", now(), &body);
    let resp = w.app.post_raw("s1", body, headers).await;
    let status = resp.status().as_u16();
    let answer = resp.bytes().await.unwrap();
    if let Err(problem) = check_answer("long coachee", status, &answer, Some("FIELD_TOO_LONG")) {
        panic!("{problem}");
    }

    let body = request("Q".repeat(200));
    let headers = standard_headers("long-labels", now(), &body);
    let resp = w.app.post_raw("s1", body, headers).await;
    let status = resp.status().as_u16();
    let answer = resp.bytes().await.unwrap();
    if let Err(problem) = check_answer("long labels", status, &answer, None) {
        panic!("{problem}");
    }
    assert_eq!(w.app.get_json("/healthz").await.0, 200);
}

/// A body sent in many small chunks, with no length given, is read whole: the delivery is accepted
/// and the journal holds the body as it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_small_chunks_without_a_length_is_read_whole() {
    let w = World::builder().start().await;
    let body =
        br#"{"run_request_id":"recChunkedBody001","note":"sent five bytes at a time"}"#.to_vec();
    let mut head = String::from(
        "POST /v1/hooks/r1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
    );
    for (k, v) in standard_headers("chunks-1", now(), &body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut chunks = Vec::new();
    for piece in body.chunks(5) {
        chunks.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunks.extend_from_slice(piece);
        chunks.extend_from_slice(b"\r\n");
    }
    chunks.extend_from_slice(b"0\r\n\r\n");

    let (status, answer) = raw_request(&w.app.address, head.as_bytes(), &chunks).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let run_id = answer["run_id"].as_str().unwrap().to_owned();
    let delivery = w
        .app
        .journal
        .delivery_for_job(run_id)
        .await
        .unwrap()
        .expect("the delivery is journaled");
    assert_eq!(
        delivery.body,
        serde_json::from_slice::<Value>(&body).unwrap()
    );
}
