//! The Gate-1 report as a table.
//!
//! A report is `{"passed", "failures": [{"pointer", "code", "message"}]}` (see
//! `coach_coaching::gate1`): it names what failed, not what passed. The checks the page can show one
//! by one are the grounding checks on each quoted piece of evidence, so when the output is at hand
//! every evidence item of it (each pattern's and the experiment attempt's) is a row: the quote, and
//! pass, or fail with the failures whose pointer lies inside that item. Failures that belong to no
//! evidence item (schema, run-type rules, a missing coachee quote) are rows of their own. A report
//! with neither is one row for the whole output.

use maud::{Markup, html};
use serde_json::Value;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was checked, in words.
    pub check: String,
    /// Where in the output (a JSON pointer; empty for the whole document).
    pub pointer: String,
    pub passed: bool,
    /// The quote of a passed evidence item, or the reasons it failed.
    pub detail: String,
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether `pointer` is `base` or lies inside it (`/a/1` is inside `/a/1`, not inside `/a/10`).
fn inside(pointer: &str, base: &str) -> bool {
    pointer == base
        || pointer
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Every evidence item of `output`: (pointer, what it supports, span id, quote).
fn evidence(output: &Value) -> Vec<(String, String, String, String)> {
    let mut items = Vec::new();
    let patterns = output.get("patterns").and_then(Value::as_array);
    for (i, pattern) in patterns.into_iter().flatten().enumerate() {
        let claim = match (str_of(pattern, "id"), str_of(pattern, "title")) {
            ("", "") => format!("pattern {}", i + 1),
            (id, "") => id.to_owned(),
            ("", title) => title.to_owned(),
            (id, title) => format!("{id} {title}"),
        };
        let list = pattern.get("evidence").and_then(Value::as_array);
        for (j, ev) in list.into_iter().flatten().enumerate() {
            items.push((
                format!("/patterns/{i}/evidence/{j}"),
                claim.clone(),
                str_of(ev, "span_id").to_owned(),
                str_of(ev, "quote").to_owned(),
            ));
        }
    }
    let attempt = output
        .get("experiment_attempt")
        .and_then(|a| a.get("evidence"))
        .and_then(Value::as_array);
    for (j, ev) in attempt.into_iter().flatten().enumerate() {
        items.push((
            format!("/experiment_attempt/evidence/{j}"),
            "experiment attempt".to_owned(),
            str_of(ev, "span_id").to_owned(),
            str_of(ev, "quote").to_owned(),
        ));
    }
    items
}

/// The rows for `report`, with one per evidence item of `output` when there is one.
pub fn rows(report: &Value, output: Option<&Value>) -> Vec<Row> {
    let failures: Vec<(&str, &str, &str)> = report
        .get("failures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            (
                str_of(f, "pointer"),
                str_of(f, "code"),
                str_of(f, "message"),
            )
        })
        .collect();
    let mut used = vec![false; failures.len()];
    let mut rows = Vec::new();
    for (pointer, claim, span, quote) in output.map(evidence).unwrap_or_default() {
        let mut reasons = Vec::new();
        for (k, (at, code, message)) in failures.iter().enumerate() {
            if inside(at, &pointer) {
                used[k] = true;
                reasons.push(format!("{code}: {message}"));
            }
        }
        let check = if span.is_empty() {
            format!("quote for {claim}")
        } else {
            format!("quote from {span} for {claim}")
        };
        let passed = reasons.is_empty();
        rows.push(Row {
            check,
            pointer,
            passed,
            detail: if passed {
                quote
            } else {
                format!("“{quote}” — {}", reasons.join("; "))
            },
        });
    }
    for (k, (at, code, message)) in failures.iter().enumerate() {
        if !used[k] {
            rows.push(Row {
                check: (*code).to_owned(),
                pointer: (*at).to_owned(),
                passed: false,
                detail: (*message).to_owned(),
            });
        }
    }
    if rows.is_empty() {
        rows.push(Row {
            check: "schema, grounding and run-type rules".to_owned(),
            pointer: String::new(),
            passed: report.get("passed").and_then(Value::as_bool) == Some(true),
            detail: String::new(),
        });
    }
    rows
}

/// The report as a table, with its verdict above it.
pub fn table(report: &Value, output: Option<&Value>) -> Markup {
    let rows = rows(report, output);
    let passed = report.get("passed").and_then(Value::as_bool) == Some(true);
    let failed = rows.iter().filter(|r| !r.passed).count();
    html! {
        p.gate1-verdict {
            @if passed { "Passed: every check held." }
            @else { "Failed: " (failed) " of " (rows.len()) " checks." }
        }
        table.gate1 {
            thead { tr { th { "Check" } th { "Where" } th { "Result" } th { "Quote or reason" } } }
            tbody {
                @for row in &rows {
                    tr {
                        td { (row.check) }
                        td { code { (if row.pointer.is_empty() { "(whole output)" } else { row.pointer.as_str() }) } }
                        @if row.passed { td.check-pass { "pass" } } @else { td.check-fail { "fail" } }
                        td { (row.detail) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn output() -> Value {
        json!({
            "patterns": [
                {"id": "P1", "title": "Asks first", "evidence": [
                    {"span_id": "S2", "quote": "what do you think?"},
                    {"span_id": "S9", "quote": "an invented line"},
                ]},
                {"id": "P2", "title": "Long turns", "evidence": [
                    {"span_id": "S12", "quote": "let me finish"},
                ]},
            ],
            "experiment_attempt": {"attempted": "yes", "note": "", "evidence": [
                {"span_id": "S4", "quote": "I'll pause"},
            ]},
        })
    }

    #[test]
    fn a_failed_report_marks_its_evidence_rows_and_keeps_other_failures() {
        let report = json!({"passed": false, "failures": [
            {"pointer": "/patterns/0/evidence/1/quote", "code": "QUOTE_NOT_VERBATIM",
             "message": "not in S9"},
            {"pointer": "/experiment_proposal", "code": "RUN_TYPE_RULE", "message": "needs a proposal"},
        ]});
        let rows = rows(&report, Some(&output()));
        let got: Vec<(&str, bool)> = rows
            .iter()
            .map(|r| (r.pointer.as_str(), r.passed))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/patterns/0/evidence/0", true),
                ("/patterns/0/evidence/1", false),
                ("/patterns/1/evidence/0", true),
                ("/experiment_attempt/evidence/0", true),
                ("/experiment_proposal", false),
            ]
        );
        assert_eq!(rows[0].check, "quote from S2 for P1 Asks first");
        assert_eq!(rows[0].detail, "what do you think?");
        assert_eq!(
            rows[1].detail,
            "“an invented line” — QUOTE_NOT_VERBATIM: not in S9"
        );
        assert_eq!(rows[4].check, "RUN_TYPE_RULE");
        assert_eq!(rows[4].detail, "needs a proposal");
    }

    #[test]
    fn a_pointer_matches_its_own_item_only() {
        assert!(inside("/patterns/1/evidence/0", "/patterns/1/evidence/0"));
        assert!(inside(
            "/patterns/1/evidence/0/quote",
            "/patterns/1/evidence/0"
        ));
        assert!(!inside("/patterns/1/evidence/10", "/patterns/1/evidence/1"));
        assert!(!inside("/patterns/1", "/patterns/1/evidence/0"));
    }

    #[test]
    fn without_output_each_failure_is_a_row_and_a_pass_is_one_row() {
        let failed = json!({"passed": false, "failures": [
            {"pointer": "", "code": "INVALID_JSON", "message": "not JSON"},
            {"pointer": "/summary", "code": "SCHEMA", "message": "missing"},
        ]});
        let rows_failed = rows(&failed, None);
        assert_eq!(rows_failed.len(), 2);
        assert!(rows_failed.iter().all(|r| !r.passed));
        assert_eq!(rows_failed[1].pointer, "/summary");

        let passed = rows(&json!({"passed": true, "failures": []}), None);
        assert_eq!(passed.len(), 1);
        assert!(passed[0].passed);
        let table = table(&json!({"passed": true, "failures": []}), None).into_string();
        assert!(table.contains("Passed: every check held."), "{table}");
    }

    #[test]
    fn the_table_has_one_row_per_check_in_order() {
        let report = json!({"passed": false, "failures": [
            {"pointer": "/patterns/1/evidence/0/span_id", "code": "UNKNOWN_SPAN", "message": "no S12"},
        ]});
        let html = table(&report, Some(&output())).into_string();
        assert_eq!(
            html.matches("<tr>").count(),
            1 + 4,
            "header and four evidence rows"
        );
        assert_eq!(
            html.matches("<td class=\"check-pass\">pass</td>").count(),
            3
        );
        assert_eq!(
            html.matches("<td class=\"check-fail\">fail</td>").count(),
            1
        );
        assert!(html.contains("Failed: 1 of 4 checks."), "{html}");
        let fail_at = html.find("check-fail").unwrap();
        assert!(html[..fail_at].contains("/patterns/1/evidence/0"), "{html}");
    }
}
