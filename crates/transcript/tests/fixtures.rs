//! Hand-written fixtures pin every metric to a value computed by hand (the arithmetic is in the
//! comments), plus the error codes and the documented output shapes
//! (the command line around them is tested in the worker binary, `src/cli/transcript.rs`).

use coach_transcript::metrics::{self, Basis};
use coach_transcript::report::{MetricsReport, ParseReport, metrics_table};
use coach_transcript::{Format, Transcript, TranscriptError, find_coachee, parse};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Transcript {
    let bytes = std::fs::read(fixture(name)).expect("fixture");
    parse(&bytes, Format::Auto).expect("parses")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-3
}

#[test]
fn vtt_fixture_segments() {
    let t = load("one_on_one.vtt");
    assert_eq!(t.format, Format::Vtt);
    assert_eq!(t.participants, ["Maya", "Tom", "Priya"]);
    let ids: Vec<(&str, &str)> = t
        .segments
        .iter()
        .map(|s| (s.id.as_str(), s.speaker.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("S1", "Maya"),
            ("S2", "Tom"),
            ("S3", "Maya"),
            ("S4", "Tom"),
            ("S5", "Priya"),
            ("S6", "Maya"),
            ("S7", "Tom")
        ]
    );
    // The unlabelled second cue continues Maya's turn: start of the first cue, end of the last.
    let s1 = &t.segments[0];
    assert_eq!((s1.start, s1.end, s1.cues), (Some(0.0), Some(20.0), 2));
    assert_eq!(
        s1.text,
        "Good morning, Tom. Um, I think we should review the launch plan today. It slipped a week, so we need a new date. What do you think?"
    );
    assert!(t.segments[3].cut_off);
    assert_eq!(
        t.segment("S6").map(|s| s.text.as_str()),
        Some("Great news & thanks, Priya. Any thoughts on a date, Tom?")
    );
    assert_eq!(t.word_count(), 27 + 14 + 1 + 12 + 10 + 10 + 7);
}

#[test]
fn vtt_fixture_metrics_match_hand_computation() {
    let m = metrics::compute(&load("one_on_one.vtt"));
    assert_eq!(m.basis, Basis::Time);
    assert_eq!(m.duration_seconds, Some(60.0));
    assert_eq!(m.total_words, 81);
    // Floor changes: Maya->Tom (S2), Tom->Priya (S5), Priya->Maya (S6), Maya->Tom (S7).
    // Maya's "Mm-hmm." (S3) is a backchannel: Tom keeps the floor from S2 to S4.
    assert_eq!(m.speaker_switches, 4);
    assert_eq!(m.speaker_switches_per_minute, Some(4.0));
    assert_eq!(m.total_turns, 5);

    let maya = m.speaker("Maya").expect("Maya");
    // Talk seconds: Maya 20 + 1 + 6 = 27, Tom 10 + 10 + 9 = 29, Priya 5.5; total 61.5.
    assert!(close(maya.talk_share, 27.0 / 61.5), "{}", maya.talk_share);
    assert_eq!(maya.talk_seconds, Some(27.0));
    assert_eq!((maya.words, maya.turns, maya.backchannels), (38, 2, 1));
    assert!(close(maya.avg_monologue_words, (27.0 + 10.0) / 2.0));
    assert_eq!(maya.longest_monologue.span_id, "S1");
    assert_eq!(maya.longest_monologue.words, 27);
    assert_eq!(maya.longest_monologue.seconds, Some(20.0));
    assert_eq!(maya.questions, 2);
    assert!(
        close(maya.questions_rate, 2.0 * 10.0 / 1.0),
        "2 questions in a 1-minute meeting = 20 per 10 min"
    );
    assert_eq!(maya.question_span_ids, ["S1", "S6"]);
    assert_eq!(maya.inclusive_questions, 2);
    assert_eq!(maya.inclusive_question_span_ids, ["S1", "S6"]);
    assert_eq!((maya.fillers, maya.hedges), (1, 1));
    assert!(close(maya.fillers_per_100_words, 100.0 / 38.0));
    assert!(close(maya.hedges_per_100_words, 100.0 / 38.0));
    assert_eq!(maya.filler_span_ids, ["S1"]);
    assert!(close(maya.pace_wpm.unwrap_or(0.0), 38.0 * 60.0 / 27.0));
    assert_eq!(maya.interruptions, 0);

    let tom = m.speaker("Tom").expect("Tom");
    assert!(close(tom.talk_share, 29.0 / 61.5));
    assert_eq!((tom.words, tom.turns), (33, 2));
    // S2..S4 is one run (20 s, 14 + 12 words) despite Maya's backchannel inside it.
    assert_eq!(tom.longest_monologue.span_id, "S2");
    assert_eq!(tom.longest_monologue.words, 26);
    assert_eq!(tom.longest_monologue.seconds, Some(20.0));
    assert!(close(tom.avg_monologue_words, (26.0 + 7.0) / 2.0));
    // "uh" and the set-off ", like," are fillers; "I think" is a hedge.
    assert_eq!((tom.fillers, tom.hedges), (2, 1));
    assert_eq!(tom.filler_span_ids, ["S2", "S4"]);
    assert!(close(tom.fillers_per_100_words, 200.0 / 33.0));
    assert!(close(tom.pace_wpm.unwrap_or(0.0), 33.0 * 60.0 / 29.0));
    assert_eq!((tom.interruptions, tom.interrupted), (0, 1));
    assert_eq!(tom.questions, 0);

    let priya = m.speaker("Priya").expect("Priya");
    // S5 starts at 39.5 while Tom's S4 runs to 40.0 (and S4 ends cut off with "--").
    assert_eq!(priya.interruptions, 1);
    assert_eq!(priya.interruption_span_ids, ["S5"]);
    assert!(close(priya.talk_share, 5.5 / 61.5));
    assert!(close(priya.pace_wpm.unwrap_or(0.0), 10.0 * 60.0 / 5.5));
    let shares: f64 = m.speakers.iter().map(|s| s.talk_share).sum();
    assert!(close(shares, 1.0));
}

#[test]
fn text_fixture_word_basis() {
    let t = load("standup.md");
    assert_eq!(t.format, Format::Text);
    assert_eq!(t.participants, ["Ana Lima", "Ben", "Chris"]);
    let speakers: Vec<&str> = t.segments.iter().map(|s| s.speaker.as_str()).collect();
    assert_eq!(
        speakers,
        [
            "Ana Lima", "Ben", "Chris", "Ana Lima", "Break", "Ben", "Chris"
        ]
    );
    assert_eq!(
        t.segments[1].text,
        "I shipped the export fix. I guess the tests are sort of slow but they pass."
    );
    assert_eq!(t.segments[4].text, "");

    let m = metrics::compute(&t);
    assert_eq!(m.basis, Basis::Words);
    assert_eq!(
        (m.duration_seconds, m.speaker_switches_per_minute),
        (None, None)
    );
    // Words: Ana 11 + 7, Ben 16 + 11, Chris 1 + 3 = 49.
    assert_eq!(m.total_words, 49);
    // Switches: Ana->Ben, Ben->Ana, (Break resets the floor), Ben->Chris.
    assert_eq!(m.speaker_switches, 3);

    let ana = m.speaker("Ana Lima").expect("Ana");
    assert!(close(ana.talk_share, 18.0 / 49.0));
    assert_eq!((ana.turns, ana.words), (2, 18));
    assert_eq!(ana.longest_monologue.span_id, "S1");
    assert_eq!(
        (ana.longest_monologue.words, ana.longest_monologue.seconds),
        (11, None)
    );
    assert!(close(ana.avg_monologue_words, 9.0));
    assert_eq!(ana.questions, 1);
    assert!(
        close(ana.questions_rate, 1000.0 / 49.0),
        "per 1,000 meeting words"
    );
    assert_eq!(ana.inclusive_question_span_ids, ["S4"]);
    // "you know," is set off by commas: a filler.
    assert_eq!(ana.fillers, 1);
    assert!(close(ana.fillers_per_100_words, 100.0 / 18.0));
    assert_eq!(ana.pace_wpm, None);

    let ben = m.speaker("Ben").expect("Ben");
    assert!(close(ben.talk_share, 27.0 / 49.0));
    assert_eq!(
        (
            ben.turns,
            ben.longest_monologue.words,
            ben.longest_monologue.span_id.as_str()
        ),
        (2, 16, "S2")
    );
    assert!(close(ben.avg_monologue_words, 13.5));
    // Hedges: "I guess", "sort of" (S2), "Maybe", "I think" (S6).
    assert_eq!(ben.hedges, 4);
    assert_eq!(ben.hedge_span_ids, ["S2", "S6"]);
    assert!(close(ben.hedges_per_100_words, 400.0 / 27.0));
    assert_eq!(ben.fillers, 1);
    assert_eq!(ben.question_span_ids, ["S6"]);
    assert_eq!(ben.interrupted, 1);

    let chris = m.speaker("Chris").expect("Chris");
    assert_eq!((chris.turns, chris.backchannels), (1, 1));
    // Ben's S6 ends cut off ("but --"), so Chris taking the floor is an interruption.
    assert_eq!(chris.interruption_span_ids, ["S7"]);
}

#[test]
fn json_turns_with_times_and_numeric_speakers() {
    let input = br#"[
        {"speaker": 1, "text": "Hello there.", "start": 0, "end": 2.5},
        {"speaker": 1, "content": "Still me.", "start": "00:00:02.500", "end": "00:00:04"},
        {"speaker": "Dana", "text": "Hi!", "start": 4, "end": 5}
    ]"#;
    let t = parse(input, Format::Auto).expect("json");
    assert_eq!(t.participants, ["Speaker 1", "Dana"]);
    assert_eq!(t.segments[0].text, "Hello there. Still me.");
    assert_eq!(
        (t.segments[0].start, t.segments[0].end),
        (Some(0.0), Some(4.0))
    );
}

#[test]
fn srt_with_prefix_on_speaker_change_only() {
    let input = "1\r\n00:00:00,000 --> 00:00:02,000\r\nAmy: Hello\r\n\r\n2\r\n00:00:02,000 --> 00:00:04,000\r\nand welcome.\r\n\r\n3\r\n00:00:04,000 --> 00:00:05,500\r\nRaj: Thanks!\r\n";
    let t = parse(input.as_bytes(), Format::Auto).expect("srt");
    assert_eq!(t.format, Format::Srt);
    assert_eq!(t.segments.len(), 2);
    assert_eq!(t.segments[0].text, "Hello and welcome.");
    assert_eq!(t.segments[1].end, Some(5.5));
}

#[test]
fn errors_have_stable_codes_and_helpful_messages() {
    let code = |r: Result<Transcript, TranscriptError>| r.err().map(|e| e.code());
    assert_eq!(code(parse(b"", Format::Auto)), Some("EMPTY_INPUT"));
    assert_eq!(code(parse(b"  \r\n\t", Format::Auto)), Some("EMPTY_INPUT"));
    assert_eq!(
        code(parse(b"\xef\xbb\xbfWEBVTT\n\n", Format::Auto)),
        Some("EMPTY_INPUT")
    );
    assert_eq!(
        code(parse(b"Ann: hi \xff there", Format::Auto)),
        Some("INVALID_UTF8")
    );
    assert_eq!(code(parse(b"Ann: hi", Format::Vtt)), Some("UNKNOWN_FORMAT"));
    assert_eq!(
        code(parse(b"{not json", Format::Auto)),
        Some("UNKNOWN_FORMAT")
    );
    assert_eq!(
        code(parse(b"\x00\x01\x02", Format::Auto)),
        Some("UNKNOWN_FORMAT")
    );
    let err = parse(b"we talked about the roadmap\nand then left", Format::Auto).err();
    assert_eq!(
        err.as_ref().map(TranscriptError::code),
        Some("NO_SPEAKER_LABELS")
    );
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("never guessed")
    );
    if let Err(TranscriptError::InvalidUtf8 { offset }) = parse(b"Ann: hi \xff", Format::Auto) {
        assert_eq!(offset, 8);
    } else {
        panic!("expected INVALID_UTF8");
    }
}

#[test]
fn coachee_lookup_on_fixture() {
    let t = load("standup.md");
    assert_eq!(
        find_coachee(&t, "Ana Lima").ok().as_deref(),
        Some("Ana Lima")
    );
    assert_eq!(find_coachee(&t, "ana").ok().as_deref(), Some("Ana Lima"));
    assert_eq!(find_coachee(&t, "BEN").ok().as_deref(), Some("Ben"));
    let err = find_coachee(&t, "Break").expect_err("Break is not a person");
    assert_eq!(err.code(), "COACHEE_NOT_FOUND");
    let msg = find_coachee(&t, "Krys")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("Ana Lima, Ben, Chris") && msg.contains("closest match: `Chris`"),
        "{msg}"
    );
}

fn parse_json(name: &str, format: Format) -> serde_json::Value {
    let bytes = std::fs::read(fixture(name)).expect("fixture");
    let t = parse(&bytes, format).expect("parses");
    serde_json::to_value(ParseReport::from(&t)).expect("json")
}

#[test]
fn parse_report_has_the_documented_shape() {
    let v = parse_json("one_on_one.vtt", Format::Auto);
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["format", "participants", "segments", "warnings"]);
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["format"], "vtt");
    let seg = v["segments"][0].as_object().expect("segment");
    let mut keys: Vec<&str> = seg.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["end", "id", "speaker", "start", "text"]);
    assert_eq!(v["segments"][0]["start"], 0.0);

    let v = parse_json("standup.md", Format::Text);
    assert!(v["segments"][0]["start"].is_null());
}

#[test]
fn metrics_table_and_json() {
    let t = load("one_on_one.vtt");
    let coachee = find_coachee(&t, "maya").expect("coachee");
    let out = metrics_table(&t, &coachee, &metrics::compute(&t));
    assert!(
        out.contains("basis: time") && out.contains("coachee: Maya"),
        "{out}"
    );
    assert!(out.contains("* Maya") && out.contains("43.9%"), "{out}");

    let t = load("standup.md");
    let coachee = find_coachee(&t, "Ben").expect("coachee");
    let m = metrics::compute(&t);
    let v = serde_json::to_value(MetricsReport {
        coachee: &coachee,
        format: t.format,
        metrics: &m,
    })
    .expect("json");
    assert_eq!(v["coachee"], "Ben");
    assert_eq!(v["metrics"]["basis"], "words");
}
