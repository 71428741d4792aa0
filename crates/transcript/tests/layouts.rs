//! One hand-written fixture per layout that real tools export (`tests/fixtures/layouts/`),
//! each pinned to its speakers, segment starts, word counts and talk shares counted by hand
//! (the arithmetic is in the comments), plus the errors for what no meeting looks like.

use coach_transcript::metrics::{self, Basis};
use coach_transcript::report::{MetricsReport, ParseReport};
use coach_transcript::{Format, Segment, Transcript, TranscriptError, find_coachee, parse};

fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/layouts")
        .join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).expect("fixture")
}

fn load(name: &str) -> Transcript {
    parse(&bytes(name), Format::Auto).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Each segment's (speaker, start, words), in order.
fn assert_segments(t: &Transcript, want: &[(&str, Option<f64>, usize)]) {
    let got: Vec<(&str, Option<f64>, usize)> = t
        .segments
        .iter()
        .map(|s| (s.speaker.as_str(), s.start, s.word_count()))
        .collect();
    assert_eq!(got, want);
    for (i, s) in t.segments.iter().enumerate() {
        assert_eq!(s.id, format!("S{}", i + 1));
        assert!(!s.text.is_empty(), "{} has text", s.id);
    }
}

/// Each speaker's (label, words, talk share).
fn assert_speakers(t: &Transcript, basis: Basis, want: &[(&str, usize, f64)]) {
    let m = metrics::compute(t);
    assert_eq!(m.basis, basis);
    let names: Vec<&str> = want.iter().map(|w| w.0).collect();
    assert_eq!(t.participants, names);
    for (who, words, share) in want {
        let s = m.speaker(who).unwrap_or_else(|| panic!("{who} measured"));
        assert_eq!(s.words, *words, "{who} words");
        assert!(
            close(s.talk_share, *share),
            "{who}: {} vs {share}",
            s.talk_share
        );
    }
}

#[test]
fn zoom_display_names_are_separate_speakers() {
    let t = load("zoom.vtt");
    assert_eq!(t.format, Format::Vtt);
    // `Ravi Kumar (Contoso)` is the same person as `Ravi Kumar`: written as first seen.
    assert_segments(
        &t,
        &[
            ("Ravi Kumar", Some(2.0), 6),
            ("jules", Some(5.5), 8),
            ("Mei Tan (she/her)", Some(9.5), 7 + 4),
            ("Ravi Kumar", Some(14.5), 4),
        ],
    );
    assert_eq!(t.segments[2].end, Some(14.0), "two cues of Mei's merge");
    assert_eq!(
        t.segments[1].text,
        "Halfway. The last two services move next week."
    );
    // Talk: Ravi 3 + 1.5 = 4.5 s, jules 3.5 s, Mei 2.5 + 1.5 + 0.5 gap = 4.5 s; total 12.5 s.
    assert_speakers(
        &t,
        Basis::Time,
        &[
            ("Ravi Kumar", 10, 4.5 / 12.5),
            ("jules", 8, 3.5 / 12.5),
            ("Mei Tan (she/her)", 11, 4.5 / 12.5),
        ],
    );
    assert!(t.warnings.is_empty());
    assert_eq!(
        find_coachee(&t, "Mei Tan").ok().as_deref(),
        Some("Mei Tan (she/her)")
    );
    assert_eq!(find_coachee(&t, "Jules").ok().as_deref(), Some("jules"));
}

#[test]
fn whisperx_labels_in_vtt_srt_and_json_agree() {
    // SPEAKER_00: 4 + 3 words, 4.562 + 1.6 = 6.162 s; SPEAKER_01: 4 words, 2.35 s; 8.512 s.
    for (name, format) in [
        ("whisperx.vtt", Format::Vtt),
        ("whisperx.srt", Format::Srt),
        ("whisperx.json", Format::Json),
    ] {
        let t = load(name);
        assert_eq!(t.format, format, "{name}");
        assert_segments(
            &t,
            &[
                ("SPEAKER_00", Some(0.0), 4),
                ("SPEAKER_01", Some(4.9), 4),
                ("SPEAKER_00", Some(7.4), 3),
            ],
        );
        assert_eq!(t.segments[0].end, Some(4.562), "{name}: VTT without hours");
        assert_speakers(
            &t,
            Basis::Time,
            &[
                ("SPEAKER_00", 7, 6.162 / 8.512),
                ("SPEAKER_01", 4, 2.35 / 8.512),
            ],
        );
    }
}

#[test]
fn blank_lines_inside_cues_keep_text_with_its_cue() {
    let t = load("blank_lines.srt");
    assert_segments(
        &t,
        &[
            ("Ana Ruiz", Some(1.0), 5),
            ("Bo Chen", Some(4.5), 5 + 7),
            ("Ana Ruiz", Some(9.5), 4),
        ],
    );
    assert_eq!(
        t.segments[1].text,
        "Friday works for the backend. The mobile build needs one more day."
    );
    // Ana 3 + 1.5 = 4.5 s, Bo 4.5 s.
    assert_speakers(
        &t,
        Basis::Time,
        &[("Ana Ruiz", 9, 0.5), ("Bo Chen", 12, 0.5)],
    );
    assert!(t.warnings.is_empty());

    // The same in WebVTT: a blank line after the timing line, and a labelled second cue is
    // never merged into the first speaker.
    let vtt = "WEBVTT\n\n00:01.000 --> 00:04.000\n\nana: We ship Friday.\n\n00:04.500 --> 00:06.000\nbo: Fine.\n";
    let t = parse(vtt.as_bytes(), Format::Auto).expect("parses");
    assert_segments(&t, &[("ana", Some(1.0), 3), ("bo", Some(4.5), 1)]);
}

#[test]
fn otter_and_teams_speaker_lines_with_times() {
    let t = load("otter.txt");
    assert_eq!(t.format, Format::Text);
    assert_segments(
        &t,
        &[
            ("Ravi Kumar", Some(4.0), 6),
            ("jules", Some(9.0), 8),
            ("Ravi Kumar", Some(45.0), 1),
        ],
    );
    assert!(t.segments.iter().all(|s| !s.text.contains("0:")));
    // Word basis (no end times): Ravi 7 / 15, jules 8 / 15.
    assert_speakers(
        &t,
        Basis::Words,
        &[("Ravi Kumar", 7, 7.0 / 15.0), ("jules", 8, 8.0 / 15.0)],
    );
    // The title is not speech anyone can be credited with: reported, not dropped.
    assert_eq!(t.warnings.len(), 1);
    assert_eq!(
        (t.warnings[0].code.as_str(), t.warnings[0].line),
        ("UNATTRIBUTED_TEXT", 1)
    );
    assert!(t.warnings[0].message.contains("Migration sync"));
}

#[test]
fn rev_speaker_headers_in_every_variant() {
    let t = load("rev.txt");
    assert_segments(
        &t,
        &[
            ("Speaker 1", Some(4.0), 6),
            ("Speaker 2", Some(9.0), 2),
            ("Ravi Kumar", Some(15.0), 3),
            ("Speaker 2", Some(20.0), 3),
        ],
    );
    assert_eq!(t.segments[3].text, "Next week, then.");
    assert!(t.segments.iter().all(|s| !s.text.contains('(')));
    // Words: Speaker 1 6, Speaker 2 2 + 3 = 5, Ravi 3; total 14.
    assert_speakers(
        &t,
        Basis::Words,
        &[
            ("Speaker 1", 6, 6.0 / 14.0),
            ("Speaker 2", 5, 5.0 / 14.0),
            ("Ravi Kumar", 3, 3.0 / 14.0),
        ],
    );
}

#[test]
fn fireflies_bracketed_times() {
    let t = load("fireflies.txt");
    assert_segments(
        &t,
        &[
            ("Ravi", Some(4.0), 6),
            ("jules", Some(9.0), 1 + 7),
            ("Ravi", Some(15.0), 1),
        ],
    );
    assert_speakers(
        &t,
        Basis::Words,
        &[("Ravi", 7, 7.0 / 15.0), ("jules", 8, 8.0 / 15.0)],
    );
}

#[test]
fn assemblyai_utterances_are_milliseconds() {
    let t = load("assemblyai.json");
    assert_segments(
        &t,
        &[
            ("A", Some(0.0), 6),
            ("B", Some(4.5), 8),
            ("A", Some(9.4), 2),
        ],
    );
    assert_eq!(t.segments[0].end, Some(4.2));
    // A: 4.2 + 2.4 = 6.6 s, B: 4.5 s; total 11.1 s.
    assert_speakers(
        &t,
        Basis::Time,
        &[("A", 8, 6.6 / 11.1), ("B", 8, 4.5 / 11.1)],
    );
    let m = metrics::compute(&t);
    assert_eq!(m.duration_seconds, Some(11.8));
}

#[test]
fn deepgram_utterances_with_and_without_envelope() {
    for name in ["deepgram.json", "deepgram_bare.json"] {
        let t = load(name);
        assert_segments(
            &t,
            &[("Speaker 0", Some(0.4), 6), ("Speaker 1", Some(4.6), 8)],
        );
        assert_eq!(
            t.segments[1].text,
            "halfway the last two services move next week"
        );
        // Speaker 0: 3.7 s, Speaker 1: 5.2 s; total 8.9 s.
        assert_speakers(
            &t,
            Basis::Time,
            &[("Speaker 0", 6, 3.7 / 8.9), ("Speaker 1", 8, 5.2 / 8.9)],
        );
    }
}

#[test]
fn rev_ai_monologues() {
    let t = load("revai.json");
    assert_segments(
        &t,
        &[("Speaker 0", Some(0.5), 3), ("Mei Tan", Some(1.5), 2)],
    );
    assert_eq!(t.segments[0].text, "Where are we?");
    assert_eq!(t.segments[1].end, Some(2.4));
    // 0.6 s and 0.9 s; total 1.5 s.
    assert_speakers(
        &t,
        Basis::Time,
        &[("Speaker 0", 3, 0.6 / 1.5), ("Mei Tan", 2, 0.9 / 1.5)],
    );
}

#[test]
fn teams_docx_is_read_as_text() {
    let t = load("teams.docx");
    assert_eq!(t.format, Format::Docx);
    assert_segments(
        &t,
        &[
            ("Ravi Kumar", Some(4.0), 6),
            ("Mei Tan (she/her)", Some(9.0), 10),
            ("Ravi Kumar", Some(15.0), 1),
        ],
    );
    assert_eq!(
        t.segments[1].text,
        "Halfway. The last two services move next week. Q&A after."
    );
    // Ravi 7 / 17, Mei 10 / 17.
    assert_speakers(
        &t,
        Basis::Words,
        &[
            ("Ravi Kumar", 7, 7.0 / 17.0),
            ("Mei Tan (she/her)", 10, 10.0 / 17.0),
        ],
    );
    let lines: Vec<usize> = t.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [1, 2, 3], "title, date and length are reported");
    // `--format docx` reads it the same; a text file is not a Word document.
    assert_eq!(parse(&bytes("teams.docx"), Format::Docx).ok(), Some(t));
    let err = parse(b"Ana: hi", Format::Docx).err();
    assert_eq!(err.map(|e| e.code()), Some("DOCX_UNREADABLE"));
}

#[test]
fn damaged_and_protected_word_files_are_clear_errors() {
    let docx = bytes("teams.docx");
    let err = parse(&docx[..docx.len() / 2], Format::Auto).err();
    assert_eq!(
        err.as_ref().map(TranscriptError::code),
        Some("DOCX_UNREADABLE")
    );
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("download")
    );
    // An encrypted Office file is an OLE compound file, not a zip.
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.extend_from_slice(&[0u8; 504]);
    let err = parse(&ole, Format::Auto).err();
    assert_eq!(
        err.as_ref().map(TranscriptError::code),
        Some("DOCX_PROTECTED")
    );
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("password")
    );
}

#[test]
fn implausible_times_say_what_was_detected() {
    // Milliseconds in a list that does not say so: 10 turns of 15 words over "60,000 s".
    let turns: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            serde_json::json!({"speaker": if i % 2 == 0 { "A" } else { "B" },
                "start": i * 6000, "end": i * 6000 + 6000,
                "text": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"})
        })
        .collect();
    let input = serde_json::to_vec(&serde_json::json!({ "utterances": turns })).expect("json");
    let err = parse(&input, Format::Auto).err();
    assert_eq!(
        err.as_ref().map(TranscriptError::code),
        Some("IMPLAUSIBLE_TIMES")
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("150 words") && msg.contains("milliseconds"),
        "{msg}"
    );

    // Over 24 hours.
    let vtt = "WEBVTT\n\n100:00:00.000 --> 100:00:05.000\nAna: Hello there.\n";
    let msg = parse(vtt.as_bytes(), Format::Auto)
        .err()
        .map(|e| format!("{}: {e}", e.code()))
        .unwrap_or_default();
    assert!(
        msg.starts_with("IMPLAUSIBLE_TIMES") && msg.contains("line 3"),
        "{msg}"
    );

    // AssemblyAI times beyond the declared `audio_duration`.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&bytes("assemblyai.json")).expect("json");
    doc["audio_duration"] = serde_json::json!(5);
    let err = parse(&serde_json::to_vec(&doc).expect("json"), Format::Auto).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("audio_duration"), "{msg}");
}

#[test]
fn labels_without_words_are_an_error_not_empty_segments() {
    // Deepgram-like entries whose text is under a key we do not read.
    let input = br#"[{"speaker": 0, "start": 0.0, "end": 1.0, "words": []},
                     {"speaker": 1, "start": 1.0, "end": 2.0, "words": []}]"#;
    let err = parse(input, Format::Auto).err();
    assert_eq!(err.map(|e| e.code()), Some("NO_SPEECH"));
    let err = parse(b"WEBVTT\n\n00:01.000 --> 00:02.000\nAna:\n", Format::Auto).err();
    assert_eq!(err.map(|e| e.code()), Some("NO_SPEECH"));
    // A label with nothing after it leaves no segment behind.
    let t = parse(b"Ana:\nBen: Hi.\n", Format::Text).expect("parses");
    assert_segments(&t, &[("Ben", None, 1)]);

    let err = parse(br#"{"results": {"channels": []}}"#, Format::Auto).err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("utterances=true"), "{msg}");
}

#[test]
fn a_lowercase_name_seen_once_is_reported_not_guessed() {
    let t = parse(
        b"Ana: We start.\nnote: bring the slides\nAna: Done.\n",
        Format::Text,
    )
    .expect("parses");
    assert_segments(&t, &[("Ana", None, 7)]);
    let t = parse(
        b"Ana: We start.\nbo: ok then.\nAna: Done.\nbo: Bye.\n",
        Format::Text,
    )
    .expect("parses");
    assert_eq!(t.participants, ["Ana", "bo"]);
    let t = parse(b"Ana: We start.\nmeg lee: one thing\n", Format::Text).expect("parses");
    assert_eq!(t.participants, ["Ana"]);
    assert_eq!(t.warnings[0].code, "POSSIBLE_LABEL");
    assert_eq!(t.warnings[0].line, 2);
}

#[test]
fn reports_carry_warnings_and_docx_reads() {
    let t = load("otter.txt");
    let v = serde_json::to_value(ParseReport::from(&t)).expect("json");
    assert_eq!(v["warnings"][0]["code"], "UNATTRIBUTED_TEXT");
    assert_eq!(v["warnings"][0]["line"], 1);

    let t = parse(&bytes("teams.docx"), Format::Docx).expect("parses");
    let coachee = find_coachee(&t, "mei tan").expect("coachee");
    let m = metrics::compute(&t);
    let v = serde_json::to_value(MetricsReport {
        coachee: &coachee,
        format: t.format,
        metrics: &m,
    })
    .expect("json");
    assert_eq!(v["coachee"], "Mei Tan (she/her)");
    assert_eq!(v["format"], "docx");
}

#[test]
fn hostile_coachee_lookup_is_bounded() {
    let labels: Vec<String> = (0..50)
        .map(|i| format!("{i}{}", "x".repeat(2000)))
        .collect();
    let segments: Vec<Segment> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| Segment::new(format!("S{}", i + 1), l.clone(), None, None, "hello"))
        .collect();
    let t = Transcript::from_segments(Format::Text, segments);
    let name = "y".repeat(100_000);
    let err = find_coachee(&t, &name).expect_err("not found");
    assert_eq!(err.code(), "COACHEE_NOT_FOUND");
    let msg = err.to_string();
    // 20 labels and the name at 60 characters + `…` each, and the fixed wording.
    assert!(msg.len() < 2_500, "{} bytes", msg.len());
    assert!(
        msg.contains(&format!("`{}…`", "y".repeat(60))),
        "name shortened"
    );
    assert!(msg.contains("and 30 more"), "speaker list capped");
}
