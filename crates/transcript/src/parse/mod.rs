//! Parsing: format detection, the shared segment builder, and one module per format.
//!
//! Every format parser reduces its input to a stream of *cues* (an optional speaker label, optional
//! times, raw text) and hands them to [`Builder`], which owns the rules common to all formats:
//! a cue without a label continues the current speaker's turn, consecutive cues of one speaker
//! merge into one segment (start of the first, end of the last), and text is cleaned as it is
//! appended. A cue with a label never joins another speaker's turn.
//!
//! Nothing is dropped in silence: text the builder cannot attribute (before the first label)
//! becomes a [`ParseWarning`] with its line, and parsers report blocks they cannot place the same
//! way. A turn with nothing in it (a label and no text) is removed so that no segment is empty;
//! a transcript whose turns hold no word at all is `NO_SPEECH`, and one with no label at all is
//! `NO_SPEAKER_LABELS` (speakers are never guessed). Times are checked as they arrive: over 24
//! hours, or a pace under [`MIN_WORDS_PER_MINUTE`] of talk time, is `IMPLAUSIBLE_TIMES`
//! (the usual cause is milliseconds read as seconds).

mod docx;
mod json;
mod plain;
mod subtitles;

use crate::label;
use crate::model::{Format, MAX_WARNINGS, ParseWarning, Segment, Transcript, TranscriptError};
use crate::text::{self, CleanOpts};

/// No meeting is longer than this (seconds).
pub const MAX_MEETING_SECONDS: f64 = 24.0 * 3600.0;
/// Below this many words per minute of talk time (segment durations, a minute or more of it),
/// the times are not seconds (people speak 100-200 words a minute; milliseconds read as
/// seconds give ~0.15).
pub const MIN_WORDS_PER_MINUTE: f64 = 2.0;

/// Parse transcript bytes in the given format (`Auto` detects it).
///
/// # Errors
/// `EMPTY_INPUT`, `INVALID_UTF8`, `UNKNOWN_FORMAT`, `NO_SPEAKER_LABELS`, `NO_SPEECH`,
/// `IMPLAUSIBLE_TIMES`, `DOCX_UNREADABLE`, `DOCX_PROTECTED` (see [`TranscriptError`]).
pub fn parse(input: &[u8], format: Format) -> Result<Transcript, TranscriptError> {
    if format == Format::Docx || (format == Format::Auto && docx::looks_like_office(input)) {
        let text = docx::to_text(input)?;
        if text.trim().is_empty() {
            return Err(TranscriptError::EmptyInput);
        }
        let mut t = plain::parse(&text)?;
        t.format = Format::Docx;
        return Ok(t);
    }
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
        Format::Text | Format::Auto | Format::Docx => plain::parse(text),
    }
}

/// Whether the bytes are a Word document (a zip archive, or the OLE container of an encrypted
/// one) rather than text, so a `File` attachment is read as `.docx` whatever its declared format.
pub fn is_word_file(input: &[u8]) -> bool {
    docx::looks_like_office(input)
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
    saw_label: bool,
    /// The input line (or JSON entry) being read, for warnings.
    line: usize,
    /// Start of the last cue merged into the last segment, to check times run forward.
    last_cue_start: Option<f64>,
    warnings: Vec<ParseWarning>,
    dropped_warnings: usize,
    implausible: Option<String>,
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
            saw_label: false,
            line: 0,
            last_cue_start: None,
            warnings: Vec::new(),
            dropped_warnings: 0,
            implausible: None,
        }
    }

    /// Set the 1-based input line (or JSON entry number) that warnings refer to.
    pub(crate) fn at(&mut self, line: usize) {
        self.line = line;
    }

    /// Record something that could not be placed.
    pub(crate) fn warn(&mut self, code: &str, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(ParseWarning {
                code: code.to_string(),
                line: self.line,
                message,
            });
        } else {
            self.dropped_warnings += 1;
        }
    }

    fn check_time(&mut self, t: Option<f64>) -> Option<f64> {
        let t = t?;
        if !(t.is_finite() && t >= 0.0) {
            return None;
        }
        if t > MAX_MEETING_SECONDS && self.implausible.is_none() {
            self.implausible = Some(format!(
                "a time of {t:.0} s ({:.1} h) at line {}; a meeting is at most 24 h, so these \
                 may be milliseconds",
                t / 3600.0,
                self.line
            ));
        }
        Some(t)
    }

    /// Start a cue. A label naming a different speaker opens a new segment; no label (or the
    /// same speaker) continues the current segment.
    pub(crate) fn cue(&mut self, label: Option<&str>, start: Option<f64>, end: Option<f64>) {
        let start = self.check_time(start);
        let end = self.check_time(end);
        let label = label.map(str::trim).filter(|l| !l.is_empty());
        self.saw_label |= label.is_some();
        if label.is_some_and(|l| {
            self.segments
                .last()
                .is_some_and(|last| !label::same_speaker(&last.speaker, l))
        }) && self.segments.last().is_some_and(is_vacant)
        {
            // The previous label said nothing: no empty segment is kept.
            self.segments.pop();
        }
        let same = match (label, self.segments.last()) {
            (Some(l), Some(last)) => label::same_speaker(&last.speaker, l),
            (None, Some(_)) => self.open,
            (_, None) => false,
        };
        if same {
            let line = self.line;
            let mut backwards = None;
            if let Some(seg) = self.segments.last_mut() {
                seg.cues += 1;
                if seg.start.is_none() {
                    seg.start = start;
                }
                if let (Some(prev), Some(s)) = (self.last_cue_start, start)
                    && s + 0.5 < prev
                {
                    backwards = Some((prev, s));
                }
                if let Some(e) = end {
                    seg.end = Some(seg.end.map_or(e, |old| old.max(e)));
                }
            }
            if start.is_some() {
                self.last_cue_start = start;
            }
            if let Some((prev, s)) = backwards {
                self.line = line;
                self.warn(
                    "TIME_NOT_MONOTONE",
                    format!("this cue starts at {s:.3} s, before the previous cue of the same turn ({prev:.3} s)"),
                );
            }
            self.open = true;
        } else if let Some(l) = label {
            let id = format!("S{}", self.segments.len() + 1);
            self.segments.push(Segment {
                id,
                speaker: l.to_string(),
                start,
                end: match (start, end) {
                    (Some(s), Some(e)) => Some(e.max(s)),
                    (_, e) => e,
                },
                text: String::new(),
                disfluencies: 0,
                cues: 1,
                cut_off: false,
            });
            self.last_cue_start = start;
            self.open = true;
        } else {
            // Unlabelled text before the first label: reported by `text`, never attributed.
            self.open = false;
        }
    }

    /// Append raw text to the current cue's segment.
    pub(crate) fn text(&mut self, raw: &str) {
        if raw.trim().is_empty() {
            return;
        }
        self.saw_content = true;
        if !self.open {
            let preview = preview(raw.trim(), 80);
            self.warn(
                "UNATTRIBUTED_TEXT",
                format!(
                    "text before any speaker label was not attributed to anyone: \"{preview}\""
                ),
            );
            return;
        }
        if let Some(seg) = self.segments.last_mut() {
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

    /// The latest time seen so far (for checking a declared media duration).
    pub(crate) fn latest_time(&self) -> Option<f64> {
        self.segments
            .iter()
            .filter_map(|s| s.end.or(s.start))
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
    }

    pub(crate) fn finish(mut self) -> Result<Transcript, TranscriptError> {
        if self.segments.last().is_some_and(is_vacant) {
            self.segments.pop();
        }
        if self.segments.is_empty() {
            return Err(if self.saw_label {
                TranscriptError::NoSpeech {
                    format: self.format,
                }
            } else if self.saw_content {
                TranscriptError::NoSpeakerLabels {
                    format: self.format,
                }
            } else {
                TranscriptError::EmptyInput
            });
        }
        if let Some(detail) = self.implausible {
            return Err(TranscriptError::ImplausibleTimes { detail });
        }
        let mut participants: Vec<String> = Vec::new();
        let mut words = 0usize;
        let (mut timed_words, mut talk) = (0usize, 0.0f64);
        for seg in &mut self.segments {
            let trimmed_len = seg.text.trim_end().len();
            seg.text.truncate(trimmed_len);
            let n = text::count_words(&seg.text);
            words += n;
            if let Some(d) = seg.duration() {
                timed_words += n;
                talk += d;
            }
            // One person, one label: `Mei Tan` after `Mei Tan (she/her)` is written as first seen.
            if let Some(p) = participants
                .iter()
                .find(|p| **p != seg.speaker && label::same_speaker(p, &seg.speaker))
            {
                seg.speaker.clone_from(p);
            }
            if label::is_person(&seg.speaker) && !participants.contains(&seg.speaker) {
                participants.push(seg.speaker.clone());
            }
        }
        if words == 0 {
            return Err(TranscriptError::NoSpeech {
                format: self.format,
            });
        }
        if talk >= 60.0 && (timed_words as f64) * 60.0 / talk < MIN_WORDS_PER_MINUTE {
            return Err(TranscriptError::ImplausibleTimes {
                detail: format!(
                    "{timed_words} words over {:.1} h of talk is under {MIN_WORDS_PER_MINUTE} \
                     words a minute; the times look like milliseconds read as seconds",
                    talk / 3600.0
                ),
            });
        }
        if self.dropped_warnings > 0 {
            let n = self.dropped_warnings;
            self.warnings.push(ParseWarning {
                code: "WARNINGS_TRUNCATED".into(),
                line: 0,
                message: format!("{n} more warnings were not listed"),
            });
        }
        Ok(Transcript {
            format: self.format,
            participants,
            segments: self.segments,
            warnings: self.warnings,
        })
    }
}

/// A segment with neither words nor a counted non-speech token (`{vocalsound}`, `[laughter]`).
/// Segments with only non-speech are kept: metrics read them as backchannels or breaks.
fn is_vacant(s: &Segment) -> bool {
    s.text.trim().is_empty() && s.disfluencies == 0
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn preview(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
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
