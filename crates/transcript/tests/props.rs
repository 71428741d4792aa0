//! Property tests: no input panics a parser, and rendering is a faithful inverse of parsing for
//! the JSON and text formats.

use coach_transcript::{Format, Transcript, metrics, parse, render};
use proptest::prelude::*;

const FORMATS: [Format; 5] = [
    Format::Auto,
    Format::Vtt,
    Format::Srt,
    Format::Json,
    Format::Text,
];

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
}
