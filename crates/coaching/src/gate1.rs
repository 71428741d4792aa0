//! Gate-1: the output contract and the grounding check.
//!
//! Two layers, both reported together so one repair round can fix everything at once:
//!
//! 1. The JSON Schema `schemas/gate1.v1.json` (draft 2020-12, in the strict subset that OpenAI
//!    structured outputs accept). It is embedded with `include_str!` and compiled once per process
//!    ([`schema_validator`]); compiling is far slower than validating.
//! 2. Checks a schema cannot express, run over the raw JSON value even when the schema failed
//!    (so a missing field elsewhere does not hide an invented quote):
//!    - every `span_id` exists in the transcript(s) **exactly as written** (`S12` for a single
//!      meeting, `T2.S12` in a baseline pack). Ids are never renumbered or normalised: an answer
//!      citing `s12` or `T1.S12` for a single meeting is wrong;
//!    - every `quote` is a substring of its segment's text after whitespace and case folding only
//!      (see `text::fold`); punctuation differences are paraphrase;
//!    - every pattern cites at least one segment spoken by the coachee;
//!    - pattern ids are unique;
//!    - run-type rules: `experiment_proposal` non-null for `baseline_pack`; for `single_meeting`
//!      `experiment_attempt` non-null when an experiment is active and null otherwise; an attempt
//!      judged `yes` must cite the coachee;
//!    - `run_type` and `coachee_speaker` match what was asked.
//!
//! Speed: a segment is folded only when a quote cites it, and at most once per validation, so the
//! cost depends on the size of the answer, not of the transcript (a two-hour meeting costs the same
//! as a short one). Span lookup is by index (`S12` is the twelfth segment, checked against its id),
//! with a scan fallback for hand-built transcripts.

use std::collections::HashMap;
use std::sync::LazyLock;

use coach_transcript::{Segment, Transcript};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::RunType;
use crate::text::{fold, fold_into};

/// The Gate-1 schema text, as shipped in `schemas/gate1.v1.json`.
pub const SCHEMA_JSON: &str = include_str!("../../../schemas/gate1.v1.json");

/// The schema version every output declares in `schema_version`.
pub const SCHEMA_VERSION: &str = "gate1.v1";

static SCHEMA: LazyLock<Result<(Value, jsonschema::Validator), String>> = LazyLock::new(|| {
    let value: Value =
        serde_json::from_str(SCHEMA_JSON).map_err(|e| format!("gate1.v1.json is not JSON: {e}"))?;
    let validator = jsonschema::draft202012::new(&value)
        .map_err(|e| format!("gate1.v1.json is not a valid 2020-12 schema: {e}"))?;
    Ok((value, validator))
});

/// The parsed Gate-1 schema (for sending to a model as `response_format`).
///
/// The schema ships inside the binary and is checked by the tests, so an error here means the
/// binary was built from a broken tree; callers treat it as a start-up failure.
pub fn schema() -> Result<&'static Value, &'static str> {
    SCHEMA.as_ref().map(|(v, _)| v).map_err(String::as_str)
}

/// The compiled Gate-1 schema, compiled on first use and reused for the process lifetime.
pub fn schema_validator() -> Result<&'static jsonschema::Validator, &'static str> {
    SCHEMA.as_ref().map(|(_, v)| v).map_err(String::as_str)
}

/// One Gate-1 failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate1Failure {
    /// JSON pointer (RFC 6901) into the output, `""` for the whole document.
    pub pointer: String,
    /// Stable code: `SCHEMA`, `INVALID_JSON`, `UNKNOWN_SPAN`, `EMPTY_QUOTE`,
    /// `QUOTE_NOT_VERBATIM`, `NO_COACHEE_EVIDENCE`, `DUPLICATE_ID`, `RUN_TYPE_RULE`,
    /// `RUN_TYPE_MISMATCH`, `COACHEE_MISMATCH`, `TRUNCATED`, `CONTENT_FILTER`, `REFUSAL`,
    /// `EMPTY_ANSWER`.
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Gate1Failure {
    /// A failure at `pointer` with `code`.
    pub fn new(pointer: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Gate1Failure {
            pointer: pointer.into(),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// The outcome of a Gate-1 check: `passed` exactly when `failures` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate1Report {
    /// Whether the output passed every check.
    pub passed: bool,
    /// Every failure found, in document order within each check.
    pub failures: Vec<Gate1Failure>,
}

impl Gate1Report {
    /// A report over `failures` (passed when there are none).
    pub fn from_failures(failures: Vec<Gate1Failure>) -> Self {
        Gate1Report {
            passed: failures.is_empty(),
            failures,
        }
    }

    /// A failed report with a single failure (e.g. a truncated or refused model answer).
    pub fn single(pointer: &str, code: &str, message: impl Into<String>) -> Self {
        Self::from_failures(vec![Gate1Failure::new(pointer, code, message)])
    }

    /// Whether some failure has this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.failures.iter().any(|f| f.code == code)
    }

    /// The failures as a bullet list (`- CODE at /pointer: message`), for a repair prompt or a log.
    pub fn to_bullets(&self) -> String {
        let mut out = String::new();
        for f in &self.failures {
            let at = if f.pointer.is_empty() {
                "(document)"
            } else {
                f.pointer.as_str()
            };
            out.push_str(&format!("- {} at {}: {}\n", f.code, at, f.message));
        }
        out
    }
}

/// The parts of an output that passed Gate-1 which the worker acts on, typed. Gate-1 has checked the
/// shape (`schemas/gate1.v1.json`), so reading them is a deserialisation, not a second validation;
/// the rest of the output (patterns, card) stays JSON, written to the Run as it came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckedOutput {
    /// A baseline pack's proposed experiment.
    #[serde(default)]
    pub experiment_proposal: Option<ExperimentProposal>,
    /// A single meeting's judgement of the active experiment.
    #[serde(default)]
    pub experiment_attempt: Option<ExperimentAttempt>,
}

impl CheckedOutput {
    /// Reads the typed parts of an output that passed Gate-1. An output that does not have them in
    /// the schema's shape (possible only for one that did not pass) reads as having none.
    pub fn read(output: &Value) -> CheckedOutput {
        CheckedOutput {
            experiment_proposal: output
                .get("experiment_proposal")
                .and_then(|p| ExperimentProposal::deserialize(p).ok()),
            experiment_attempt: output
                .get("experiment_attempt")
                .and_then(|a| ExperimentAttempt::deserialize(a).ok()),
        }
    }
}

/// `experiment_proposal` (schema `$defs/experiment_proposal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentProposal {
    pub title: String,
    pub behavior: String,
    pub success_signal: String,
    /// 1 to 10. JSON Schema counts `3.0` as an integer, and Gate-1 passes it, so it reads as 3.
    #[serde(deserialize_with = "whole_number")]
    pub target_meetings: i64,
}

fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Ok(i),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number"
        ))),
    }
}

/// `experiment_attempt` (schema `$defs/experiment_attempt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentAttempt {
    pub attempted: Judgement,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub note: String,
}

/// Whether the coachee attempted the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Judgement {
    Yes,
    No,
    Unclear,
}

/// A quote and the span it is from (schema `$defs/evidence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub span_id: String,
    pub quote: String,
}

/// What an output is checked against: the run, the coachee and the transcript(s).
///
/// Borrows the transcripts, so building a context costs nothing; build it per check.
#[derive(Debug, Clone)]
pub struct Gate1Context<'a> {
    /// The run type the output must declare and whose rules apply.
    pub run_type: RunType,
    /// The coachee's speaker label (exact).
    pub coachee: String,
    /// Whether the coachee has an active experiment (single meetings only).
    pub experiment_active: bool,
    meetings: &'a [Transcript],
}

impl<'a> Gate1Context<'a> {
    /// A context over `meetings`: one transcript for `single_meeting` (ids `S12`), the pack's
    /// transcripts in order for `baseline_pack` (ids `T1.S12` .. `T3.S9`).
    pub fn new(
        run_type: RunType,
        coachee: impl Into<String>,
        experiment_active: bool,
        meetings: &'a [Transcript],
    ) -> Self {
        Gate1Context {
            run_type,
            coachee: coachee.into(),
            experiment_active,
            meetings,
        }
    }

    /// The transcripts.
    pub fn meetings(&self) -> &'a [Transcript] {
        self.meetings
    }

    /// The segment a span id names, exactly as written (see the module doc), with the index of its
    /// meeting.
    pub fn segment(&self, span_id: &str) -> Option<(usize, &'a Segment)> {
        let (meeting, local) = match self.run_type {
            RunType::SingleMeeting => (0, span_id),
            RunType::BaselinePack => {
                let rest = span_id.strip_prefix('T')?;
                let (num, local) = rest.split_once('.')?;
                if num.starts_with('0') || !num.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let k: usize = num.parse().ok()?;
                (k.checked_sub(1)?, local)
            }
        };
        let t = self.meetings.get(meeting)?;
        t.segment(local).map(|s| (meeting, s))
    }

    /// The span id of segment `seg` of meeting `meeting` as this run type writes it.
    pub fn span_id(&self, meeting: usize, seg: &Segment) -> String {
        match self.run_type {
            RunType::SingleMeeting => seg.id.clone(),
            RunType::BaselinePack => format!("T{}.{}", meeting + 1, seg.id),
        }
    }
}

/// Check `output` against the schema and the grounding rules (see the module doc).
pub fn validate(output: &Value, ctx: &Gate1Context<'_>) -> Gate1Report {
    let mut failures = Vec::new();
    match schema_validator() {
        Ok(v) => {
            for e in v.iter_errors(output) {
                failures.push(Gate1Failure::new(
                    e.instance_path().as_str(),
                    "SCHEMA",
                    format!("{e}; follow schemas/gate1.v1.json exactly"),
                ));
            }
        }
        Err(msg) => failures.push(Gate1Failure::new("", "SCHEMA", msg)),
    }
    let mut checker = Checker {
        ctx,
        folded: HashMap::new(),
        scratch: String::new(),
        failures,
    };
    checker.check_header(output);
    checker.check_patterns(output);
    checker.check_run_type_rules(output);
    Gate1Report::from_failures(checker.failures)
}

struct Checker<'c, 'a> {
    ctx: &'c Gate1Context<'a>,
    /// Folded text of each cited segment, keyed by the span id as written.
    folded: HashMap<String, String>,
    scratch: String,
    failures: Vec<Gate1Failure>,
}

impl Checker<'_, '_> {
    fn fail(&mut self, pointer: String, code: &str, message: String) {
        self.failures.push(Gate1Failure {
            pointer,
            code: code.to_string(),
            message,
        });
    }

    fn check_header(&mut self, output: &Value) {
        if let Some(rt) = output.get("run_type").and_then(Value::as_str)
            && rt != self.ctx.run_type.as_str()
        {
            self.fail(
                "/run_type".into(),
                "RUN_TYPE_MISMATCH",
                format!(
                    "run_type is `{rt}` but this run is `{}`",
                    self.ctx.run_type.as_str()
                ),
            );
        }
        if let Some(c) = output.get("coachee_speaker").and_then(Value::as_str)
            && c != self.ctx.coachee
        {
            self.fail(
                "/coachee_speaker".into(),
                "COACHEE_MISMATCH",
                format!(
                    "coachee_speaker is `{c}` but the coachee's label is `{}`; use it exactly",
                    self.ctx.coachee
                ),
            );
        }
    }

    fn check_patterns(&mut self, output: &Value) {
        let Some(patterns) = output.get("patterns").and_then(Value::as_array) else {
            return;
        };
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, p) in patterns.iter().enumerate() {
            if let Some(id) = p.get("id").and_then(Value::as_str) {
                if let Some(first) = seen.get(id) {
                    self.fail(
                        format!("/patterns/{i}/id"),
                        "DUPLICATE_ID",
                        format!("pattern id `{id}` is already used by /patterns/{first}; number patterns P1, P2, ... once each"),
                    );
                } else {
                    seen.insert(id, i);
                }
            }
            let Some(evidence) = p.get("evidence").and_then(Value::as_array) else {
                continue;
            };
            let base = format!("/patterns/{i}/evidence");
            let coachee_spans = self.check_evidence(&base, evidence);
            if coachee_spans == 0 && !evidence.is_empty() {
                self.fail(
                    base,
                    "NO_COACHEE_EVIDENCE",
                    format!(
                        "none of this pattern's evidence is a segment spoken by the coachee `{}`; cite at least one of the coachee's own segments",
                        self.ctx.coachee
                    ),
                );
            }
        }
    }

    /// Checks each `{span_id, quote}` under `base`; returns how many cite an existing coachee
    /// segment.
    fn check_evidence(&mut self, base: &str, evidence: &[Value]) -> usize {
        let mut coachee_spans = 0;
        for (j, ev) in evidence.iter().enumerate() {
            let Some(span_id) = ev.get("span_id").and_then(Value::as_str) else {
                continue;
            };
            let Some((meeting, seg)) = self.ctx.segment(span_id) else {
                let example = match self.ctx.run_type {
                    RunType::SingleMeeting => "S12",
                    RunType::BaselinePack => "T2.S12",
                };
                self.fail(
                    format!("{base}/{j}/span_id"),
                    "UNKNOWN_SPAN",
                    format!("span `{span_id}` does not exist in the transcript; cite a segment id exactly as listed (like `{example}`)"),
                );
                continue;
            };
            if seg.speaker == self.ctx.coachee {
                coachee_spans += 1;
            }
            let Some(quote) = ev.get("quote").and_then(Value::as_str) else {
                continue;
            };
            fold_into(quote, &mut self.scratch);
            if self.scratch.is_empty() {
                self.fail(
                    format!("{base}/{j}/quote"),
                    "EMPTY_QUOTE",
                    format!("the quote for `{span_id}` is empty; copy words from that segment"),
                );
                continue;
            }
            let seg_folded = self
                .folded
                .entry(span_id.to_string())
                .or_insert_with(|| fold(&seg.text));
            if !seg_folded.contains(self.scratch.as_str()) {
                let hint = self.locate(meeting, seg);
                self.fail(
                    format!("{base}/{j}/quote"),
                    "QUOTE_NOT_VERBATIM",
                    format!(
                        "the quote is not a verbatim excerpt of `{span_id}` [{}]{hint}; copy the words exactly (only case and spacing may differ) or cite the segment that says them",
                        seg.speaker
                    ),
                );
            }
        }
        coachee_spans
    }

    /// Failure path only: where else in the same meeting the (folded) quote occurs, as a hint for
    /// a repair round.
    fn locate(&self, meeting: usize, cited: &Segment) -> String {
        let Some(t) = self.ctx.meetings.get(meeting) else {
            return String::new();
        };
        let mut buf = String::new();
        for s in &t.segments {
            if s.id == cited.id {
                continue;
            }
            fold_into(&s.text, &mut buf);
            if buf.contains(self.scratch.as_str()) {
                return format!(
                    " (those words are in `{}` [{}])",
                    self.ctx.span_id(meeting, s),
                    s.speaker
                );
            }
        }
        String::new()
    }

    fn check_run_type_rules(&mut self, output: &Value) {
        let proposal = output.get("experiment_proposal");
        let attempt = output.get("experiment_attempt");
        let present = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
        match self.ctx.run_type {
            RunType::BaselinePack => {
                if !present(proposal) {
                    self.fail(
                        "/experiment_proposal".into(),
                        "RUN_TYPE_RULE",
                        "a baseline_pack answer must propose an experiment: fill experiment_proposal".into(),
                    );
                }
            }
            RunType::SingleMeeting => {
                if self.ctx.experiment_active && !present(attempt) {
                    self.fail(
                        "/experiment_attempt".into(),
                        "RUN_TYPE_RULE",
                        "the coachee has an active experiment: judge the attempt in experiment_attempt (yes, no or unclear, with evidence)".into(),
                    );
                }
                if !self.ctx.experiment_active && present(attempt) {
                    self.fail(
                        "/experiment_attempt".into(),
                        "RUN_TYPE_RULE",
                        "the coachee has no active experiment: experiment_attempt must be null"
                            .into(),
                    );
                }
            }
        }
        if let Some(a) = attempt.filter(|a| !a.is_null()) {
            let evidence = a
                .get("evidence")
                .and_then(Value::as_array)
                .map(Vec::as_slice);
            let coachee_spans =
                self.check_evidence("/experiment_attempt/evidence", evidence.unwrap_or(&[]));
            if a.get("attempted").and_then(Value::as_str) == Some("yes") && coachee_spans == 0 {
                self.fail(
                    "/experiment_attempt/evidence".into(),
                    "NO_COACHEE_EVIDENCE",
                    "an attempt judged `yes` must cite at least one of the coachee's segments that shows it".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_reads_a_whole_float_count_and_refuses_a_fraction() {
        let proposal = |n: Value| {
            serde_json::json!({ "experiment_proposal": {
                "title": "t", "behavior": "b", "success_signal": "s", "target_meetings": n
            }})
        };
        let read = |n| CheckedOutput::read(&proposal(n)).experiment_proposal;
        assert_eq!(
            read(serde_json::json!(3)).map(|p| p.target_meetings),
            Some(3)
        );
        assert_eq!(
            read(serde_json::json!(3.0)).map(|p| p.target_meetings),
            Some(3)
        );
        assert_eq!(read(serde_json::json!(2.5)), None);
    }
}
