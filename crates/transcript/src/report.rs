//! The documented output shapes of `coach-worker transcript parse|metrics`, as plain values the
//! worker's command line prints: [`ParseReport`] (the parse JSON), [`MetricsReport`] (the metrics
//! JSON) and [`metrics_table`] (the fixed-width table). Keeping them here keeps the shapes next to
//! the types they expose; reading files, exit codes and error lines belong to the binary.

use serde::Serialize;

use crate::metrics::{Basis, MeetingMetrics};
use crate::model::{Format, ParseWarning, Transcript};

/// The documented `transcript parse` shape, and nothing more.
#[derive(Debug, Serialize)]
pub struct ParseReport<'a> {
    /// The format parsed (never `auto`).
    pub format: Format,
    /// Speaker labels in order of first appearance.
    pub participants: &'a [String],
    /// One entry per speaker turn.
    pub segments: Vec<SegmentReport<'a>>,
    /// Input that could not be placed (always present, empty when everything was placed).
    pub warnings: &'a [ParseWarning],
}

/// One segment of a [`ParseReport`].
#[derive(Debug, Serialize)]
pub struct SegmentReport<'a> {
    /// `S1..Sn`.
    pub id: &'a str,
    /// The speaker label as written.
    pub speaker: &'a str,
    /// Start in seconds, when the format has times.
    pub start: Option<f64>,
    /// End in seconds, when the format has times.
    pub end: Option<f64>,
    /// The cleaned text of the turn.
    pub text: &'a str,
}

impl<'a> From<&'a Transcript> for ParseReport<'a> {
    fn from(t: &'a Transcript) -> Self {
        ParseReport {
            format: t.format,
            participants: &t.participants,
            segments: t
                .segments
                .iter()
                .map(|s| SegmentReport {
                    id: &s.id,
                    speaker: &s.speaker,
                    start: s.start,
                    end: s.end,
                    text: &s.text,
                })
                .collect(),
            warnings: &t.warnings,
        }
    }
}

/// The documented `transcript metrics --json` shape.
#[derive(Debug, Serialize)]
pub struct MetricsReport<'a> {
    /// The coachee's label as written in the transcript.
    pub coachee: &'a str,
    /// The format parsed.
    pub format: Format,
    /// Everyone's metrics.
    pub metrics: &'a MeetingMetrics,
}

/// A fixed-width table: one row per speaker, the coachee marked with `*`.
pub fn metrics_table(t: &Transcript, coachee: &str, m: &MeetingMetrics) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let basis = match m.basis {
        Basis::Time => "time (timestamps)",
        Basis::Words => "words (no timestamps)",
    };
    let _ = writeln!(
        s,
        "format: {}   basis: {basis}   coachee: {coachee}",
        t.format
    );
    let duration = m
        .duration_seconds
        .map_or_else(|| "-".to_string(), |d| format!("{:.1} min", d / 60.0));
    let switches = m
        .speaker_switches_per_minute
        .map_or_else(|| "-".to_string(), |v| format!("{v:.2}/min"));
    let _ = writeln!(
        s,
        "duration: {duration}   words: {}   turns: {}   speaker switches: {} ({switches})",
        m.total_words, m.total_turns, m.speaker_switches
    );
    let q_unit = if m.basis == Basis::Time {
        "q/10min"
    } else {
        "q/1kw"
    };
    let width = m
        .speakers
        .iter()
        .map(|x| x.speaker.chars().count())
        .max()
        .unwrap_or(7)
        .max(7)
        + 2;
    let _ = writeln!(
        s,
        "\n{:<width$} {:>6} {:>5} {:>6} {:>7} {:>9} {:>5} {:>7} {:>5} {:>6} {:>8} {:>8} {:>5}",
        "speaker",
        "share",
        "turns",
        "words",
        "avg/mono",
        "longest",
        "q",
        q_unit,
        "incl",
        "intr",
        "fill/100",
        "hedg/100",
        "wpm"
    );
    for x in &m.speakers {
        let mark = if x.speaker == coachee { "* " } else { "  " };
        let longest = match x.longest_monologue.seconds {
            Some(sec) => format!("{sec:.0}s@{}", x.longest_monologue.span_id),
            None => format!(
                "{}w@{}",
                x.longest_monologue.words, x.longest_monologue.span_id
            ),
        };
        let wpm = x
            .pace_wpm
            .map_or_else(|| "-".to_string(), |p| format!("{p:.0}"));
        let _ = writeln!(
            s,
            "{:<width$} {:>5.1}% {:>5} {:>6} {:>8.1} {:>9} {:>5} {:>7.2} {:>5} {:>6} {:>8.2} {:>8.2} {:>5}",
            format!("{mark}{}", x.speaker),
            x.talk_share * 100.0,
            x.turns,
            x.words,
            x.avg_monologue_words,
            longest,
            x.questions,
            x.questions_rate,
            x.inclusive_questions,
            x.interruptions,
            x.fillers_per_100_words,
            x.hedges_per_100_words,
            wpm,
        );
    }
    let _ = writeln!(
        s,
        "\nshare: talk time (or words) over all participants; longest: longest monologue and where it starts;\n\
         incl: inclusive questions; intr: interruptions made. References: Gong talk ratio ~43:57,\n\
         Microsoft Speaker Coach pace 100-165 wpm, Read.ai fillers under 4 per 100 words."
    );
    s
}
