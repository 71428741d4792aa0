//! Gate-1: a valid output passes, and each failure class is caught with its code and pointer.

mod common;

use coach_coaching::RunType;
use coach_coaching::gate1::{self, Gate1Context, Gate1Report};
use common::{transcript, valid_output};
use serde_json::{Value, json};

fn check(output: &Value) -> Gate1Report {
    let t = [transcript()];
    let ctx = Gate1Context::new(RunType::SingleMeeting, "Ana", false, &t);
    gate1::validate(output, &ctx)
}

fn has(report: &Gate1Report, code: &str, pointer: &str) -> bool {
    report
        .failures
        .iter()
        .any(|f| f.code == code && f.pointer == pointer)
}

#[test]
fn valid_output_passes() {
    let r = check(&valid_output());
    assert!(r.passed, "{r:#?}");
    assert!(r.failures.is_empty());
}

#[test]
fn case_and_whitespace_differences_are_folded() {
    let mut out = valid_output();
    // S3 holds "tickets.  I think" (two spaces); the quote uses one space, a newline and capitals.
    out["patterns"][2]["evidence"][0]["quote"] = json!("SUPPORT TICKETS. I\n think   we should");
    let r = check(&out);
    assert!(r.passed, "{r:#?}");
}

#[test]
fn schema_errors_are_reported_with_their_pointer() {
    let mut out = valid_output();
    out.as_object_mut().unwrap().remove("summary");
    out["patterns"][0]["kind"] = json!("weakness");
    out["patterns"][1]["extra"] = json!(true);
    out["coaching_card"]["try_next"] = json!([]);
    let r = check(&out);
    assert!(!r.passed);
    assert!(has(&r, "SCHEMA", ""), "{r:#?}");
    assert!(has(&r, "SCHEMA", "/patterns/0/kind"), "{r:#?}");
    assert!(has(&r, "SCHEMA", "/patterns/1"), "{r:#?}");
    assert!(has(&r, "SCHEMA", "/coaching_card/try_next"), "{r:#?}");
}

#[test]
fn too_many_patterns_and_bad_target_are_schema_errors() {
    let mut out = valid_output();
    let p = out["patterns"][0].clone();
    let many: Vec<Value> = (1..=7)
        .map(|i| {
            let mut q = p.clone();
            q["id"] = json!(format!("P{i}"));
            q
        })
        .collect();
    out["patterns"] = json!(many);
    let r = check(&out);
    assert!(has(&r, "SCHEMA", "/patterns"), "{r:#?}");
}

#[test]
fn unknown_span_is_caught_and_ids_are_never_renumbered() {
    for bad in ["S99", "s1", "T1.S1", "S01", ""] {
        let mut out = valid_output();
        out["patterns"][0]["evidence"][0]["span_id"] = json!(bad);
        let r = check(&out);
        assert!(
            has(&r, "UNKNOWN_SPAN", "/patterns/0/evidence/0/span_id"),
            "{bad}: {r:#?}"
        );
    }
}

#[test]
fn paraphrased_quote_is_caught() {
    let mut out = valid_output();
    // Punctuation dropped: not a whitespace or case difference, so a paraphrase.
    out["patterns"][1]["evidence"][0]["quote"] =
        json!("Ben owns the CSV upload Chloé reviews it by Friday");
    let r = check(&out);
    assert!(
        has(&r, "QUOTE_NOT_VERBATIM", "/patterns/1/evidence/0/quote"),
        "{r:#?}"
    );
    assert_eq!(r.failures.len(), 1, "{r:#?}");
}

#[test]
fn quote_from_the_wrong_segment_names_where_it_is() {
    let mut out = valid_output();
    out["patterns"][0]["evidence"][0]["quote"] = json!("Three of five gave up at the import step.");
    let r = check(&out);
    let f = r
        .failures
        .iter()
        .find(|f| f.code == "QUOTE_NOT_VERBATIM")
        .expect("failure");
    assert_eq!(f.pointer, "/patterns/0/evidence/0/quote");
    assert!(f.message.contains("`S2` [Ben]"), "{}", f.message);
}

#[test]
fn empty_quote_is_caught() {
    let mut out = valid_output();
    out["patterns"][0]["evidence"][0]["quote"] = json!("  ");
    let r = check(&out);
    assert!(
        has(&r, "EMPTY_QUOTE", "/patterns/0/evidence/0/quote"),
        "{r:#?}"
    );
}

#[test]
fn evidence_only_from_other_speakers_is_caught() {
    let mut out = valid_output();
    out["patterns"][2]["evidence"] = json!([
        {"span_id": "S2", "quote": "onboarding takes too long"},
        {"span_id": "S4", "quote": "Could we keep a lighter import?"}
    ]);
    let r = check(&out);
    assert!(
        has(&r, "NO_COACHEE_EVIDENCE", "/patterns/2/evidence"),
        "{r:#?}"
    );
    assert_eq!(
        r.failures.len(),
        1,
        "quotes are real, only the speaker is wrong: {r:#?}"
    );
}

#[test]
fn duplicate_pattern_id_is_caught() {
    let mut out = valid_output();
    out["patterns"][2]["id"] = json!("P1");
    let r = check(&out);
    assert!(has(&r, "DUPLICATE_ID", "/patterns/2/id"), "{r:#?}");
}

#[test]
fn run_type_rules_single_meeting() {
    let t = [transcript()];
    // Active experiment but no attempt.
    let ctx = Gate1Context::new(RunType::SingleMeeting, "Ana", true, &t);
    let r = gate1::validate(&valid_output(), &ctx);
    assert!(has(&r, "RUN_TYPE_RULE", "/experiment_attempt"), "{r:#?}");

    // Attempt without an active experiment.
    let mut out = valid_output();
    out["experiment_attempt"] = json!({"attempted": "yes", "evidence": [{"span_id": "S5", "quote": "What would the lightest version look like for you?"}], "note": "asked"});
    let ctx = Gate1Context::new(RunType::SingleMeeting, "Ana", false, &t);
    let r = gate1::validate(&out, &ctx);
    assert!(has(&r, "RUN_TYPE_RULE", "/experiment_attempt"), "{r:#?}");

    // The same attempt with an active experiment passes.
    let ctx = Gate1Context::new(RunType::SingleMeeting, "Ana", true, &t);
    let r = gate1::validate(&out, &ctx);
    assert!(r.passed, "{r:#?}");

    // "yes" citing only someone else is not grounded in the coachee.
    out["experiment_attempt"]["evidence"] = json!([{"span_id": "S6", "quote": "A CSV upload"}]);
    let r = gate1::validate(&out, &ctx);
    assert!(
        has(&r, "NO_COACHEE_EVIDENCE", "/experiment_attempt/evidence"),
        "{r:#?}"
    );

    // Attempt evidence quotes are checked like pattern evidence.
    out["experiment_attempt"]["evidence"] =
        json!([{"span_id": "S5", "quote": "What is the lightest version?"}]);
    let r = gate1::validate(&out, &ctx);
    assert!(
        has(
            &r,
            "QUOTE_NOT_VERBATIM",
            "/experiment_attempt/evidence/0/quote"
        ),
        "{r:#?}"
    );
}

fn pack_output() -> Value {
    let mut out = valid_output();
    out["run_type"] = json!("baseline_pack");
    out["patterns"][0]["evidence"][0]["span_id"] = json!("T1.S1");
    out["patterns"][1]["evidence"][0]["span_id"] = json!("T3.S7");
    out["patterns"][1]["evidence"][1]["span_id"] = json!("T2.S8");
    out["patterns"][2]["evidence"][0]["span_id"] = json!("T2.S3");
    out["experiment_proposal"] = json!({"title": "Land the point", "behavior": "Lead with the recommendation.",
        "success_signal": "Fewer hedges.", "target_meetings": 3});
    out
}

#[test]
fn baseline_pack_ids_and_proposal_rule() {
    let ts = [transcript(), transcript(), transcript()];
    let ctx = Gate1Context::new(RunType::BaselinePack, "Ana", false, &ts);
    let r = gate1::validate(&pack_output(), &ctx);
    assert!(r.passed, "{r:#?}");

    let mut out = pack_output();
    out["experiment_proposal"] = Value::Null;
    out["patterns"][0]["evidence"][0]["span_id"] = json!("S1");
    out["patterns"][2]["evidence"][0]["span_id"] = json!("T4.S3");
    let r = gate1::validate(&out, &ctx);
    assert!(has(&r, "RUN_TYPE_RULE", "/experiment_proposal"), "{r:#?}");
    assert!(
        has(&r, "UNKNOWN_SPAN", "/patterns/0/evidence/0/span_id"),
        "{r:#?}"
    );
    assert!(
        has(&r, "UNKNOWN_SPAN", "/patterns/2/evidence/0/span_id"),
        "{r:#?}"
    );

    let mut out = pack_output();
    out["experiment_proposal"]["target_meetings"] = json!(12);
    let r = gate1::validate(&out, &ctx);
    assert!(has(&r, "SCHEMA", "/experiment_proposal"), "{r:#?}");
}

#[test]
fn run_type_and_coachee_must_match_the_request() {
    let t = [transcript()];
    let ctx = Gate1Context::new(RunType::SingleMeeting, "Ben", false, &t);
    let mut out = valid_output();
    out["run_type"] = json!("baseline_pack");
    out["experiment_proposal"] = pack_output()["experiment_proposal"].clone();
    let r = gate1::validate(&out, &ctx);
    assert!(has(&r, "RUN_TYPE_MISMATCH", "/run_type"), "{r:#?}");
    assert!(has(&r, "COACHEE_MISMATCH", "/coachee_speaker"), "{r:#?}");
    // Evidence by Ana no longer counts as the coachee's.
    assert!(
        has(&r, "NO_COACHEE_EVIDENCE", "/patterns/0/evidence"),
        "{r:#?}"
    );
}

#[test]
fn report_round_trips_and_lists_failures() {
    let mut out = valid_output();
    out["patterns"][2]["id"] = json!("P1");
    let r = check(&out);
    let s = serde_json::to_string(&r).unwrap();
    let back: Gate1Report = serde_json::from_str(&s).unwrap();
    assert_eq!(back, r);
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["passed"], json!(false));
    assert_eq!(v["failures"][0]["code"], json!("DUPLICATE_ID"));
    assert!(r.to_bullets().contains("DUPLICATE_ID at /patterns/2/id"));
}

/// The schema stays inside the subset OpenAI strict mode accepts: every object closes
/// additionalProperties and requires all its properties; no keywords strict mode rejects.
#[test]
fn schema_is_in_the_strict_subset() {
    fn walk(v: &Value, at: &str) {
        if let Some(o) = v.as_object() {
            if o.get("type") == Some(&json!("object")) {
                assert_eq!(o.get("additionalProperties"), Some(&json!(false)), "{at}");
                let props: Vec<&String> = o["properties"].as_object().unwrap().keys().collect();
                let mut req: Vec<&str> = o["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect();
                let mut props: Vec<&str> = props.iter().map(|s| s.as_str()).collect();
                req.sort();
                props.sort();
                assert_eq!(req, props, "{at}");
            }
            for banned in [
                "minLength",
                "maxLength",
                "oneOf",
                "allOf",
                "if",
                "patternProperties",
            ] {
                assert!(!o.contains_key(banned), "{banned} at {at}");
            }
            for (k, c) in o {
                walk(c, &format!("{at}/{k}"));
            }
        } else if let Some(a) = v.as_array() {
            for (i, c) in a.iter().enumerate() {
                walk(c, &format!("{at}/{i}"));
            }
        }
    }
    let s = gate1::schema().unwrap();
    assert_eq!(
        s["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    walk(s, "");
    assert!(gate1::schema_validator().is_ok());
}
