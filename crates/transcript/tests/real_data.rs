//! Every real transcript in ../shared/data/transcripts parses with the right participants.

use coach_transcript::{Format, Transcript, TranscriptError, metrics, parse};

fn data(rel: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../../shared/data/transcripts/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn parsed(rel: &str) -> Transcript {
    parse(&data(rel), Format::Auto).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn qmsum_es2004a_has_four_roles_and_320_turns() {
    let t = parsed("json/qmsum_ES2004a.json");
    assert_eq!(t.format, Format::Json);
    assert_eq!(
        t.participants,
        [
            "User Interface",
            "Project Manager",
            "Marketing",
            "Industrial Designer"
        ]
    );
    // No two consecutive entries share a speaker in this file, so every entry is one segment.
    assert_eq!(t.segments.len(), 320);
    assert_eq!(t.segments[0].text, "Hmm hmm hmm.");
    assert_eq!(
        t.segments[1].text,
        "Are we we're not allowed to dim the lights so people can see that a bit better?"
    );
    assert_eq!(t.segments[1].disfluencies, 2);
    assert!(t.segments.iter().all(|s| !s.text.contains('{')));
    assert!(t.segments.iter().all(|s| s.start.is_none()));
}

#[test]
fn qmsum_education_has_eleven_speakers() {
    let t = parsed("json/qmsum_education_17.json");
    assert_eq!(t.participants.len(), 11, "{:?}", t.participants);
    assert!(t.is_participant("Dr Rachel Bowen"));
    assert!(t.is_participant("Janet Finch-Saunders AM"));
    assert_eq!(t.segments.len(), 131);
}

#[test]
fn changelog_markdown_has_seven_people_not_break_or_outro() {
    let t = parsed("text/changelog_js-party-147.md");
    assert_eq!(t.format, Format::Text);
    assert_eq!(t.participants.len(), 7, "{:?}", t.participants);
    assert!(!t.is_participant("Break"));
    assert!(!t.is_participant("Outro"));
    assert!(t.segments.iter().any(|s| s.speaker == "Break"));
    assert_eq!(t.participants[0], "Jerod Santo");
    assert_eq!(t.segments.len(), 565);
    assert!(
        t.segments.iter().all(|s| !s.text.contains("\\[")
            && !s.text.contains(":**")
            && !s.text.starts_with("**"))
    );
    assert_eq!(t.segments[0].id, "S1");
    assert!(
        t.segments[0]
            .text
            .starts_with("Hello, and welcome to our very first")
    );
}

#[test]
fn buzzsprout_vtt_mixes_voice_tags_and_prefix() {
    let t = parsed("vtt/podcastindex_buzzsprout_voice-tags_04e99c5.vtt");
    assert_eq!(t.format, Format::Vtt);
    assert_eq!(t.participants, ["Travis", "Sarah", "Gilon"]);
    let first = &t.segments[0];
    assert_eq!(first.speaker, "Travis");
    assert_eq!(first.start, Some(0.179));
    assert!(first.cues > 5, "continuation cues merge into the turn");
    assert!(
        first
            .text
            .starts_with("When you first get started in podcasting, it's almost")
    );
    let total_cues: u32 = t.segments.iter().map(|s| s.cues).sum();
    assert_eq!(total_cues, 222);
}

#[test]
fn buzzsprout_srt_matches_vtt_speakers_and_shares() {
    let vtt = parsed("vtt/podcastindex_buzzsprout_voice-tags_04e99c5.vtt");
    let srt = parsed("srt/podcastindex_buzzsprout.srt");
    assert_eq!(srt.format, Format::Srt);
    assert_eq!(srt.participants, vtt.participants);
    let (mv, ms) = (metrics::compute(&vtt), metrics::compute(&srt));
    assert_eq!(mv.basis, metrics::Basis::Time);
    for p in &vtt.participants {
        let (a, b) = (
            mv.speaker(p).map(|s| s.talk_share),
            ms.speaker(p).map(|s| s.talk_share),
        );
        let (a, b) = (a.unwrap_or(-1.0), b.unwrap_or(-2.0));
        assert!((a - b).abs() <= 0.02, "{p}: vtt {a:.3} vs srt {b:.3}");
        assert!(a > 0.05, "{p} speaks: {a}");
    }
}

#[test]
fn short_vtt_decodes_entities() {
    let t = parsed("vtt/podcastindex_short_voice-tags.vtt");
    assert_eq!(t.participants, ["Sarah", "Gillian"]);
    assert_eq!(t.segments.len(), 2);
    assert!(t.segments[0].text.contains("Podcasting Q&A, where"));
    assert_eq!(t.segments[0].end, Some(18.63));
}

#[test]
fn seattle_captions_without_names_are_rejected() {
    let err = parse(
        &data("vtt/cdp_seattle_council_briefing_080221.vtt"),
        Format::Auto,
    )
    .err();
    assert!(
        matches!(
            err,
            Some(TranscriptError::NoSpeakerLabels {
                format: Format::Vtt
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.map(|e| e.code()), Some("NO_SPEAKER_LABELS"));
}
