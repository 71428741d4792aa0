//! Writing a transcript back out, in any of the formats the parsers read.
//!
//! The JSON rendering is the shape `transcript parse` prints, plus `disfluencies`, `cues` and
//! `cut_off` when they are not the defaults, so `parse(render(t, Json))` gives back the same segments. Text is
//! escaped with HTML entities where the cleaner would otherwise read it as markup (`&`, `<`, `{`,
//! `[`, and in plain text `*`, `_`, `\`), which keeps the round trip lossless for the text itself.

use std::fmt::Write as _;

use crate::model::{Format, Transcript};
use crate::text::escape_for_reparse;

/// Render `t` as `format` (`Auto` means the transcript's own format).
pub fn render(t: &Transcript, format: Format) -> String {
    let format = if format == Format::Auto {
        t.format
    } else {
        format
    };
    let mut out = String::with_capacity(t.segments.iter().map(|s| s.text.len() + 48).sum());
    match format {
        Format::Json | Format::Auto => json(t, &mut out),
        Format::Text | Format::Docx => {
            for s in &t.segments {
                out.push_str(&s.speaker);
                out.push(':');
                if !s.text.is_empty() {
                    out.push(' ');
                    escape_for_reparse(&s.text, true, &mut out);
                } else if s.disfluencies > 0 {
                    out.push(' ');
                    non_speech_only(s.disfluencies, &mut out);
                }
                out.push('\n');
            }
        }
        Format::Vtt => {
            out.push_str("WEBVTT\n");
            for s in &t.segments {
                out.push('\n');
                timing(&mut out, s.start, s.end, '.');
                let _ = write!(out, "<v {}>", s.speaker);
                escape_for_reparse(&s.text, false, &mut out);
                if s.text.is_empty() {
                    non_speech_only(s.disfluencies, &mut out);
                }
                out.push('\n');
            }
        }
        Format::Srt => {
            for (n, s) in t.segments.iter().enumerate() {
                let _ = writeln!(out, "{}", n + 1);
                timing(&mut out, s.start, s.end, ',');
                let _ = write!(out, "{}: ", s.speaker);
                escape_for_reparse(&s.text, false, &mut out);
                if s.text.is_empty() {
                    non_speech_only(s.disfluencies, &mut out);
                }
                out.push_str("\n\n");
            }
        }
    }
    out
}

/// A turn whose only content was non-speech (`[laughter]`, `{vocalsound}`) has no text but counts its
/// tokens. It is written as that many `{nonspeech}` tokens, so that parsing the rendering gives the
/// same turn back instead of a label with nothing after it, which is no turn at all.
fn non_speech_only(tokens: u32, out: &mut String) {
    for i in 0..tokens {
        if i > 0 {
            out.push(' ');
        }
        out.push_str("{nonspeech}");
    }
}

fn json(t: &Transcript, out: &mut String) {
    let segments: Vec<serde_json::Value> = t
        .segments
        .iter()
        .map(|s| {
            let mut text = String::with_capacity(s.text.len());
            escape_for_reparse(&s.text, false, &mut text);
            let mut v = serde_json::json!({
                "id": s.id, "speaker": s.speaker, "start": s.start, "end": s.end, "text": text,
            });
            if let Some(obj) = v.as_object_mut() {
                if s.disfluencies > 0 {
                    obj.insert("disfluencies".into(), s.disfluencies.into());
                }
                if s.cues > 1 {
                    obj.insert("cues".into(), s.cues.into());
                }
                if s.cut_off {
                    obj.insert("cut_off".into(), true.into());
                }
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "format": t.format, "participants": t.participants, "segments": segments,
    });
    out.push_str(&serde_json::to_string_pretty(&doc).unwrap_or_default());
}

fn timing(out: &mut String, start: Option<f64>, end: Option<f64>, sep: char) {
    ts(out, start.unwrap_or(0.0), sep);
    out.push_str(" --> ");
    ts(out, end.or(start).unwrap_or(0.0), sep);
    out.push('\n');
}

fn ts(out: &mut String, secs: f64, sep: char) {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}
