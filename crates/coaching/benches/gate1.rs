//! Gate-1 validation and rules analysis against a two-hour transcript.
//!
//! The two-hour meeting is the real QMSum ES2004a design meeting (about 2,600 words) repeated
//! seven times with fresh segment ids: about 2,240 segments and 18,000 words, what a two-hour
//! meeting at ~150 words per minute holds. The "typical output" is what the rules analyzer writes
//! for the project manager, with five patterns of three quotes each (quotes upper-cased so the
//! case folding is exercised) spread over the whole meeting: a generous model answer. Targets: validation ≤ 200 µs median, rules analysis ≤ 10 ms.
//!
//! Run: `cargo bench -p coach-coaching --bench gate1`; medians are in
//! `target/criterion/<name>/new/estimates.json`.

use std::hint::black_box;
use std::path::Path;

use coach_coaching::gate1::{self, Gate1Context};
use coach_coaching::{AnalysisInput, RunType, rules};
use coach_transcript::{Format, Transcript, parse};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn two_hour_meeting() -> Transcript {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/transcripts/json/qmsum_ES2004a.json");
    let bytes = std::fs::read(path).expect("shared data present");
    let one = parse(&bytes, Format::Auto).expect("parses");
    let mut segments: Vec<Value> = Vec::new();
    for _ in 0..7 {
        for s in &one.segments {
            let mut v = serde_json::to_value(s).expect("segment to json");
            v["id"] = json!(format!("S{}", segments.len() + 1));
            segments.push(v);
        }
    }
    serde_json::from_value(json!({
        "format": one.format, "participants": one.participants, "segments": segments,
    }))
    .expect("transcript from json")
}

/// Five patterns with three quotes each (a generous model answer), cut from the coachee's
/// segments spread over the whole meeting so that lookups and folds hit distant segments.
fn typical_output(input: &AnalysisInput) -> Value {
    let mut output = rules::build_output(input, &input.metrics());
    let t = &input.meetings[0];
    let mine: Vec<_> = t
        .segments
        .iter()
        .filter(|s| s.speaker == input.coachee && s.text.split_whitespace().count() >= 8)
        .collect();
    let step = (mine.len() / 15).max(1);
    let mut patterns = Vec::new();
    for p in 0..5 {
        let evidence: Vec<Value> = (0..3)
            .map(|e| {
                let seg = mine[((p * 3 + e) * step).min(mine.len() - 1)];
                let mut end = seg.text.len().min(90);
                while !seg.text.is_char_boundary(end) {
                    end -= 1;
                }
                json!({"span_id": seg.id, "quote": seg.text[..end].to_uppercase()})
            })
            .collect();
        patterns.push(json!({
            "id": format!("P{}", p + 1), "kind": if p < 2 { "growth" } else { "strength" },
            "category": "questions", "title": "A pattern",
            "observation": "An observation of two sentences about what the coachee did. It cites evidence.",
            "impact": "Why it matters for the team.", "evidence": evidence,
        }));
    }
    output["patterns"] = Value::Array(patterns);
    output
}

fn benches(c: &mut Criterion) {
    let t = two_hour_meeting();
    let input = AnalysisInput {
        run_type: RunType::SingleMeeting,
        coachee: "Project Manager".into(),
        meetings: vec![t],
        active_experiment: None,
    };
    let output = typical_output(&input);
    let quotes: usize = output["patterns"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["evidence"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    eprintln!(
        "two-hour transcript: {} segments, {} words; output: {} patterns, {quotes} quotes",
        input.meetings[0].segments.len(),
        input.meetings[0].word_count(),
        output["patterns"].as_array().map_or(0, Vec::len)
    );
    let ctx = Gate1Context::new(
        RunType::SingleMeeting,
        "Project Manager",
        false,
        &input.meetings,
    );
    assert!(gate1::validate(&output, &ctx).passed);

    c.bench_function("gate1_validate_two_hour", |b| {
        b.iter(|| gate1::validate(black_box(&output), black_box(&ctx)))
    });
    c.bench_function("rules_analyze_two_hour", |b| {
        b.iter(|| rules::analyze(black_box(&input)))
    });
}

criterion_group!(gate1_benches, benches);
criterion_main!(gate1_benches);
