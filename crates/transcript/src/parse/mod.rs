//! Parsing: format detection, the shared segment builder, and one module per format.
//!
//! Every format parser reduces its input to a stream of *cues* (an optional speaker label, optional
//! times, raw text) and hands them to [`Builder`], which owns the rules common to all formats:
//! a cue without a label continues the current speaker's turn, consecutive cues of one speaker
//! merge into one segment (start of the first, end of the last), text is cleaned as it is
//! appended, and unlabelled text before the first label is dropped rather than attributed to
//! anyone. If no label is ever seen the transcript is rejected with `NO_SPEAKER_LABELS`: speakers
//! are never guessed.

mod json;
mod plain;
mod subtitles;

use crate::label;
use crate::model::{Format, Segment, Transcript, TranscriptError};
use crate::text::{self, CleanOpts};

/// Parse transcript bytes in the given format (`Auto` detects it).
///
/// # Errors
/// `EMPTY_INPUT`, `INVALID_UTF8`, `UNKNOWN_FORMAT`, `NO_SPEAKER_LABELS` (see [`TranscriptError`]).
pub fn parse(input: &[u8], format: Format) -> Result<Transcript, TranscriptError> {
    let text = std::str::from_utf8(input).map_err(|e| TranscriptError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(TranscriptError::EmptyInput);
    }
    let format = match format {
        Format::Auto => detect(text)?,
        f => f,
    };
    match format {
        Format::Vtt => subtitles::parse_vtt(text),
        Format::Srt => subtitles::parse_srt(text),
        Format::Json => json::parse(text),
        Format::Text | Format::Auto => plain::parse(text),
    }
}

/// Detect the format of (BOM-stripped) text.
///
/// # Errors
/// `UNKNOWN_FORMAT` for content that is not text at all (control characters, NUL bytes).
pub fn detect(text: &str) -> Result<Format, TranscriptError> {
    let t = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if t.starts_with("WEBVTT") {
        return Ok(Format::Vtt);
    }
    let controls = t
        .bytes()
        .take(4096)
        .filter(|&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    if controls > 0 {
        return Err(TranscriptError::UnknownFormat {
            detail: "the content has control characters, so it looks binary".into(),
        });
    }
    if t.starts_with('{') {
        return Ok(Format::Json);
    }
    if let Some(after) = t.strip_prefix('[') {
        let next = after.trim_start().chars().next();
        if matches!(next, Some('{') | Some(']') | None) {
            return Ok(Format::Json);
        }
    }
    let mut lines = t.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("");
    let second = lines.next().unwrap_or("");
    let numbered = !first.trim().is_empty() && first.trim().bytes().all(|b| b.is_ascii_digit());
    if (numbered && second.contains("-->")) || first.contains("-->") {
        return Ok(Format::Srt);
    }
    Ok(Format::Text)
}

/// Accumulates cues into merged segments.
pub(crate) struct Builder {
    format: Format,
    opts: CleanOpts,
    segments: Vec<Segment>,
    /// Whether the current cue has a segment to write into (false before the first label).
    open: bool,
    saw_content: bool,
}

impl Builder {
    pub(crate) fn new(format: Format, opts: CleanOpts, size_hint: usize) -> Self {
        Builder {
            format,
            opts,
            // A turn is rarely under ~100 bytes of source; avoids regrowth on long meetings.
            segments: Vec::with_capacity(size_hint / 200 + 4),
            open: false,
            saw_content: false,
        }
    }

    /// Start a cue. A label different from the current speaker opens a new segment; no label
    /// (or the same one) continues the current segment.
    pub(crate) fn cue(&mut self, label: Option<&str>, start: Option<f64>, end: Option<f64>) {
        let label = label.map(str::trim).filter(|l| !l.is_empty());
        let same = match (label, self.segments.last()) {
            (Some(l), Some(last)) => last.speaker == l,
            (None, Some(_)) => self.open,
            (_, None) => false,
        };
        if same {
            if let Some(seg) = self.segments.last_mut() {
                seg.cues += 1;
                if seg.start.is_none() {
                    seg.start = start;
                }
                if end.is_some() {
                    seg.end = end;
                }
            }
        } else if let Some(l) = label {
            let id = format!("S{}", self.segments.len() + 1);
            self.segments.push(Segment {
                id,
                speaker: l.to_string(),
                start,
                end,
                text: String::new(),
                disfluencies: 0,
                cues: 1,
                cut_off: false,
            });
            self.open = true;
        } else {
            // Unlabelled text before the first label: dropped, never attributed.
            self.open = false;
        }
    }

    /// Append raw text to the current cue's segment.
    pub(crate) fn text(&mut self, raw: &str) {
        if !self.saw_content && !raw.trim().is_empty() {
            self.saw_content = true;
        }
        if !self.open {
            return;
        }
        if let Some(seg) = self.segments.last_mut() {
            if raw.trim().is_empty() {
                return;
            }
            let found = text::clean_into(raw, &mut seg.text, self.opts);
            seg.disfluencies += found.disfluencies;
            seg.cut_off = found.cut_off;
        }
    }

    /// Add counts carried by our own JSON rendering.
    pub(crate) fn carry(&mut self, disfluencies: u32, cut_off: bool, cues: u32) {
        if self.open
            && let Some(seg) = self.segments.last_mut()
        {
            seg.disfluencies = seg.disfluencies.saturating_add(disfluencies);
            seg.cut_off |= cut_off;
            // `cue()` already counted this entry once.
            seg.cues = seg.cues.saturating_add(cues.saturating_sub(1));
        }
    }

    pub(crate) fn finish(mut self) -> Result<Transcript, TranscriptError> {
        if self.segments.is_empty() {
            return Err(if self.saw_content {
                TranscriptError::NoSpeakerLabels {
                    format: self.format,
                }
            } else {
                TranscriptError::EmptyInput
            });
        }
        let mut participants: Vec<String> = Vec::new();
        for seg in &mut self.segments {
            let trimmed_len = seg.text.trim_end().len();
            seg.text.truncate(trimmed_len);
            if label::is_person(&seg.speaker) && !participants.contains(&seg.speaker) {
                participants.push(seg.speaker.clone());
            }
        }
        Ok(Transcript {
            format: self.format,
            participants,
            segments: self.segments,
        })
    }
}

/// Parse `HH:MM:SS.mmm`, `MM:SS.mmm` (`,` also accepted for the fraction) into seconds.
pub(crate) fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    let (clock, frac) = match s.find(['.', ',']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut total: u64 = 0;
    let mut parts = 0;
    for part in clock.split(':') {
        parts += 1;
        if parts > 3
            || part.is_empty()
            || part.len() > 6
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        total = total
            .checked_mul(60)?
            .checked_add(part.parse::<u64>().ok()?)?;
    }
    if parts < 2 && frac.is_empty() {
        // A bare number is not a timestamp in these formats.
        return None;
    }
    let mut seconds = total as f64;
    if !frac.is_empty() {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: u64 = frac.parse().ok()?;
        seconds += digits as f64 / 10f64.powi(frac.len() as i32);
    }
    Some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("00:00:02.399"), Some(2.399));
        assert_eq!(parse_timestamp("01:02:03,5"), Some(3723.5));
        assert_eq!(parse_timestamp("02:03.250"), Some(123.25));
        assert_eq!(parse_timestamp("abc"), None);
        assert_eq!(parse_timestamp("12"), None);
    }

    #[test]
    fn detection() {
        assert_eq!(detect("WEBVTT\n\n").ok(), Some(Format::Vtt));
        assert_eq!(
            detect("1\n00:00:01,000 --> 00:00:02,000\nA: hi").ok(),
            Some(Format::Srt)
        );
        assert_eq!(detect("[{\"speaker\":\"A\"}]").ok(), Some(Format::Json));
        assert_eq!(detect("[Alice] hello").ok(), Some(Format::Text));
        assert_eq!(detect("Alice: hello").ok(), Some(Format::Text));
        assert!(detect("\u{1}\u{2}binary").is_err());
    }
}
