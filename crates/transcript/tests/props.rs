//! Property tests: no input panics a parser, rendering is a faithful inverse of parsing for
//! the JSON and text formats, and the ingestion invariants hold for generated transcripts in
//! the layouts tools export: no spoken word is lost (each lands in exactly one segment, or its
//! line is a warning), attribution follows the labels, no segment is empty, and times are
//! seconds, ordered within a turn and under 24 hours.

use coach_transcript::{Format, MAX_MEETING_SECONDS, Transcript, metrics, parse, render};
use proptest::prelude::*;

const FORMATS: [Format; 6] = [
    Format::Auto,
    Format::Vtt,
    Format::Srt,
    Format::Json,
    Format::Text,
    Format::Docx,
];

/// Display names as meeting tools write them; each is a different person.
const NAMES: [&str; 5] = [
    "Ravi Kumar",
    "jules",
    "Mei Tan (she/her)",
    "SPEAKER_00",
    "Dr Ana Lima (Contoso)",
];

const LETTERS: [&str; 3] = ["A", "B", "C"];

fn words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z]{1,8}", 1..9)
}

/// The expected turns: consecutive cues of one speaker merge; words in order.
fn merge(cues: &[(usize, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (who, w) in cues {
        let name = NAMES[*who].to_string();
        match out.last_mut() {
            Some((last, acc)) if *last == name => acc.extend(w.iter().cloned()),
            _ => out.push((name, w.clone())),
        }
    }
    out
}

fn turns_of(t: &Transcript) -> Vec<(String, Vec<String>)> {
    t.segments
        .iter()
        .map(|s| {
            let w = s
                .text
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
                .collect();
            (s.speaker.clone(), w)
        })
        .collect()
}

fn ts(secs: f64, sep: char) -> String {
    let ms = (secs * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Fragments that steer random input into the parsers' interesting paths.
fn transcriptish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("WEBVTT\n".to_string()),
        Just("\r\n".to_string()),
        Just("\n\n".to_string()),
        Just("00:00:01.000 --> 00:00:02,500 align:start\n".to_string()),
        Just("<v Ann>".to_string()),
        Just("<v.x Bo".to_string()),
        Just("</v>".to_string()),
        Just("Ann: ".to_string()),
        Just("**Bo:** ".to_string()),
        Just("[Cy] ".to_string()),
        Just("&amp;&#x1F600;&#99999999;&".to_string()),
        Just("{vocalsound} {".to_string()),
        Just("\\[laughs\\] [".to_string()),
        Just("NOTE x\n".to_string()),
        Just("--".to_string()),
        Just("1\n".to_string()),
        Just("[{\"speaker\":\"A\",\"text\":\"hi\"}]".to_string()),
        Just("\u{feff}".to_string()),
        "[a-zA-Zé ?.,:<>&{}\\[\\]*_\\\\-]{0,12}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn same_content(a: &Transcript, b: &Transcript) -> Result<(), TestCaseError> {
    prop_assert_eq!(&a.participants, &b.participants);
    prop_assert_eq!(a.segments.len(), b.segments.len());
    for (x, y) in a.segments.iter().zip(&b.segments) {
        prop_assert_eq!(&x.id, &y.id);
        prop_assert_eq!(&x.speaker, &y.speaker);
        prop_assert_eq!(&x.text, &y.text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for f in FORMATS {
            if let Ok(t) = parse(&bytes, f) {
                let _ = metrics::compute(&t);
            }
        }
    }

    #[test]
    fn transcript_like_text_never_panics_and_is_consistent(s in transcriptish()) {
        for f in FORMATS {
            match parse(s.as_bytes(), f) {
                Ok(t) => {
                    prop_assert_ne!(t.format, Format::Auto);
                    for (i, seg) in t.segments.iter().enumerate() {
                        prop_assert_eq!(&seg.id, &format!("S{}", i + 1));
                        prop_assert!(!seg.speaker.trim().is_empty());
                        prop_assert_eq!(seg.text.trim(), seg.text.as_str());
                    }
                    let m = metrics::compute(&t);
                    let share: f64 = m.speakers.iter().map(|x| x.talk_share).sum();
                    prop_assert!(share == 0.0 || (share - 1.0).abs() < 1e-9, "{}", share);
                }
                Err(e) => prop_assert!(!e.code().is_empty()),
            }
        }
    }

    #[test]
    fn json_parse_render_parse_is_stable(
        turns in prop::collection::vec(
            ("[A-Za-z][A-Za-z .'-]{0,15}", any::<String>(), prop::option::of(0.0f64..10_000.0)),
            1..12,
        )
    ) {
        let list: Vec<serde_json::Value> = turns
            .iter()
            .map(|(who, text, start)| serde_json::json!({
                "speaker": who, "text": text, "start": start, "end": start.map(|s| s + 1.5),
            }))
            .collect();
        let input = serde_json::to_string(&list).expect("json");
        let Ok(t1) = parse(input.as_bytes(), Format::Json) else { return Ok(()) };
        let t2 = parse(render(&t1, Format::Json).as_bytes(), Format::Auto).expect("rendered JSON parses");
        prop_assert_eq!(&t1.segments, &t2.segments);
        prop_assert_eq!(&t1.participants, &t2.participants);
        let t3 = parse(render(&t2, Format::Json).as_bytes(), Format::Json).expect("again");
        prop_assert_eq!(t2, t3);
    }

    #[test]
    fn text_parse_render_parse_is_stable(
        lines in prop::collection::vec(
            (prop::option::of(prop::sample::select(vec!["Ann", "Bo Li", "Dr Cy", "Dee O'Neil", "Break"])),
             "[a-zA-Z0-9é ?.,:;!<>&#{}\\[\\]*_\\\\-]{0,30}"),
            1..15,
        )
    ) {
        let mut input = String::new();
        for (who, text) in &lines {
            if let Some(w) = who {
                input.push_str(w);
                input.push_str(": ");
            }
            input.push_str(text);
            input.push('\n');
        }
        let Ok(t1) = parse(input.as_bytes(), Format::Text) else { return Ok(()) };
        let t2 = parse(render(&t1, Format::Text).as_bytes(), Format::Text).expect("rendered text parses");
        same_content(&t1, &t2)?;
        let t3 = parse(render(&t2, Format::Text).as_bytes(), Format::Text).expect("again");
        prop_assert_eq!(t2, t3);
    }

    #[test]
    fn subtitle_cues_lose_no_word_and_keep_attribution(
        cues in prop::collection::vec((0..NAMES.len(), words(), any::<bool>(), any::<bool>()), 1..14),
        srt in any::<bool>(),
    ) {
        let mut input = String::from(if srt { "" } else { "WEBVTT\n" });
        let sep = if srt { ',' } else { '.' };
        for (i, (who, w, blank_after_timing, split)) in cues.iter().enumerate() {
            let name = NAMES[*who];
            let start = i as f64 * 4.0;
            input.push_str(&format!("\n{}\n{} --> {}\n", i + 1, ts(start, sep), ts(start + 3.5, sep)));
            if *blank_after_timing {
                input.push('\n');
            }
            let label = if name.starts_with("SPEAKER") { format!("[{name}]:") } else { format!("{name}:") };
            let (a, b) = w.split_at(if *split { w.len() / 2 } else { w.len() });
            input.push_str(&format!("{label} {}\n", a.join(" ")));
            if !b.is_empty() {
                // A blank line between two paragraphs of one cue.
                input.push_str(&format!("\n{}\n", b.join(" ")));
            }
        }
        let t = parse(input.as_bytes(), Format::Auto).map_err(|e| TestCaseError::fail(format!("{e}\n{input}")))?;
        prop_assert_eq!(t.format, if srt { Format::Srt } else { Format::Vtt });
        let want: Vec<(String, Vec<String>)> = merge(&cues.iter().map(|(w, x, _, _)| (*w, x.clone())).collect::<Vec<_>>());
        prop_assert_eq!(turns_of(&t), want, "{}", input);
        prop_assert!(t.warnings.is_empty());
        for s in &t.segments {
            prop_assert!(s.start.is_some_and(|a| s.end.is_some_and(|b| a <= b)));
        }
    }

    #[test]
    fn text_exports_lose_no_word(
        preamble in prop::collection::vec("[A-Z][a-z]{1,8}( [a-z]{1,8}){0,3}", 0..3),
        cues in prop::collection::vec((0..NAMES.len(), words(), 0..5usize), 1..14),
    ) {
        let mut input = String::new();
        for p in &preamble {
            input.push_str(p);
            input.push('\n');
        }
        for (i, (who, w, form)) in cues.iter().enumerate() {
            let name = NAMES[*who];
            let secs = i * 7;
            let clock = format!("{}:{:02}", secs / 60, secs % 60);
            let text = w.join(" ");
            let line = match form {
                0 => format!("{name}  {clock}\n{text}\n\n"),
                1 => format!("[{clock}] {name}: {text}\n"),
                2 => format!("{name} ({clock}):\n{text}\n\n"),
                3 => format!("**{name} ({clock}):** {text}\n"),
                _ => format!("{name}: ({clock})\n{text}\n"),
            };
            input.push_str(&line);
        }
        let t = parse(input.as_bytes(), Format::Auto).map_err(|e| TestCaseError::fail(format!("{e}\n{input}")))?;
        let want: Vec<(String, Vec<String>)> = merge(&cues.iter().map(|(w, x, _)| (*w, x.clone())).collect::<Vec<_>>());
        prop_assert_eq!(turns_of(&t), want, "{}", input);
        // The preamble is not attributed to anyone, and every line of it is reported.
        let lines: Vec<usize> = t.warnings.iter().map(|w| w.line).collect();
        prop_assert_eq!(lines, (1..=preamble.len()).collect::<Vec<_>>());
        // Start times come from the headers, in seconds.
        for s in &t.segments {
            let id: usize = s.id[1..].parse().unwrap_or(0);
            prop_assert!(s.start.is_some() && id > 0);
        }
    }

    #[test]
    fn service_json_reads_units_and_words(
        cues in prop::collection::vec((0..3usize, words()), 1..12),
        service in 0..3usize,
    ) {
        let mut list = Vec::new();
        for (i, (who, w)) in cues.iter().enumerate() {
            let (start, end) = (i as f64 * 3.0, i as f64 * 3.0 + 2.5);
            list.push(match service {
                // AssemblyAI: letters, integer milliseconds.
                0 => serde_json::json!({"speaker": LETTERS[*who], "start": (start * 1000.0) as u64,
                        "end": (end * 1000.0) as u64, "text": w.join(" "), "confidence": 0.9}),
                // Deepgram: numbers, `transcript`, seconds.
                1 => serde_json::json!({"speaker": who, "start": start, "end": end, "transcript": w.join(" ")}),
                // whisperX: `SPEAKER_0N`, seconds.
                _ => serde_json::json!({"speaker": format!("SPEAKER_0{who}"), "start": start, "end": end, "text": w.join(" ")}),
            });
        }
        let doc = match service {
            0 => serde_json::json!({"audio_duration": cues.len() * 3, "utterances": list}),
            1 => serde_json::json!({"metadata": {"duration": cues.len() * 3}, "results": {"utterances": list}}),
            _ => serde_json::json!({"segments": list}),
        };
        let t = parse(&serde_json::to_vec(&doc).expect("json"), Format::Auto)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let speaker = |who: usize| match service {
            0 => LETTERS[who].to_string(),
            1 => format!("Speaker {who}"),
            _ => format!("SPEAKER_0{who}"),
        };
        let mut want: Vec<(String, Vec<String>)> = Vec::new();
        for (who, w) in &cues {
            match want.last_mut() {
                Some((last, acc)) if *last == speaker(*who) => acc.extend(w.iter().cloned()),
                _ => want.push((speaker(*who), w.clone())),
            }
        }
        prop_assert_eq!(turns_of(&t), want);
        let last = t.segments.last().and_then(|s| s.end).unwrap_or(0.0);
        prop_assert!((last - ((cues.len() - 1) as f64 * 3.0 + 2.5)).abs() < 1e-6, "seconds, not ms: {}", last);
    }

    #[test]
    fn segments_are_never_empty_and_times_are_ordered(s in transcriptish()) {
        for f in FORMATS {
            if let Ok(t) = parse(s.as_bytes(), f) {
                prop_assert!(t.word_count() > 0);
                for seg in &t.segments {
                    // Text, or a counted non-speech token (`{vocalsound}`, `[laughter]`).
                    prop_assert!(!seg.text.is_empty() || seg.disfluencies > 0, "{:?}", seg);
                    if let (Some(a), Some(b)) = (seg.start, seg.end) {
                        prop_assert!(a <= b, "{:?}", seg);
                    }
                    for x in [seg.start, seg.end].into_iter().flatten() {
                        prop_assert!((0.0..=MAX_MEETING_SECONDS).contains(&x));
                    }
                }
            }
        }
    }
}

/// Found by `text_parse_render_parse_is_stable`: a turn whose only content is non-speech (`[]`,
/// `[laughs]`) was rendered as a bare label and lost on the way back. Each format keeps it.
#[test]
fn a_non_speech_only_turn_survives_rendering_in_every_format() {
    for input in [
        "Dee O'Neil: 0\nAnn: []\n",
        "Dee O'Neil: 0\nAnn: [laughs] {cough}\n",
    ] {
        let t1 = parse(input.as_bytes(), Format::Text).expect("parses");
        assert_eq!(t1.participants, ["Dee O'Neil", "Ann"]);
        for f in [Format::Text, Format::Vtt, Format::Srt, Format::Json] {
            let t2 = parse(render(&t1, f).as_bytes(), f).expect("rendered parses");
            assert_eq!(t2.participants, t1.participants, "{f:?}");
            let (a, b) = (&t1.segments[1], &t2.segments[1]);
            assert_eq!(
                (&b.speaker, &b.text, b.disfluencies),
                (&a.speaker, &a.text, a.disfluencies),
                "{f:?}"
            );
        }
    }
}
