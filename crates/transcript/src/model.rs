//! The normalised transcript model shared by every parser, the metrics and the coaching crate.
//!
//! Whatever the source format, a transcript becomes an ordered list of [`Segment`]s with stable ids
//! `S1..Sn`. A segment is one speaker's turn: consecutive cues of the same speaker are merged, so
//! evidence span ids point at whole turns, which is what a coach quotes. Times are optional because
//! plain-text and QMSum transcripts carry none; metrics then fall back to word counts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transcript format. `Auto` asks [`crate::parse`] to detect it; a parsed [`Transcript`]
/// always records the concrete format it was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Detect from the content (see [`crate::detect`]).
    #[default]
    Auto,
    /// WebVTT.
    Vtt,
    /// SubRip.
    Srt,
    /// JSON turn list or QMSum.
    Json,
    /// Plain text / Markdown with `Name:` labels (or a speaker line with a timestamp).
    Text,
    /// A Word document (`.docx`, as Teams and Google Meet download transcripts): its
    /// paragraphs are read as text.
    Docx,
}

impl Format {
    /// The lowercase name used on the command line, in JSON and in the Airtable `Format` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Vtt => "vtt",
            Format::Srt => "srt",
            Format::Json => "json",
            Format::Text => "text",
            Format::Docx => "docx",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = TranscriptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Format::Auto),
            "vtt" | "webvtt" => Ok(Format::Vtt),
            "srt" | "subrip" => Ok(Format::Srt),
            "json" => Ok(Format::Json),
            // `docx` is not a name for text: a Word document is bytes, chosen with `--format
            // docx` or found by its signature, never named inline beside a text.
            "text" | "txt" | "md" | "markdown" | "plain" => Ok(Format::Text),
            other => Err(TranscriptError::UnknownFormat {
                detail: format!("`{other}` is not a format name"),
            }),
        }
    }
}

/// One speaker turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Stable id, `S1` for the first turn, in document order.
    pub id: String,
    /// The speaker label exactly as written in the source (trimmed).
    pub speaker: String,
    /// Start of the first cue of the turn, in seconds, when the format has times.
    pub start: Option<f64>,
    /// End of the last cue of the turn, in seconds, when the format has times.
    pub end: Option<f64>,
    /// Clean text: tags and markup removed, entities decoded, disfluency tokens dropped,
    /// whitespace collapsed to single spaces.
    pub text: String,
    /// How many disfluency tokens (`{vocalsound}`, `{disfmarker}`, `{gap}`, ...) were removed.
    #[serde(default)]
    pub disfluencies: u32,
    /// How many source cues (or lines / JSON entries) were merged into this segment.
    #[serde(default = "one")]
    pub cues: u32,
    /// The turn ends cut off (`{disfmarker}`, `--` or a dash at its end): the speaker was
    /// stopped, which the metrics count as an interruption by whoever speaks next.
    #[serde(default)]
    pub cut_off: bool,
}

fn one() -> u32 {
    1
}

impl Segment {
    /// A segment with no disfluencies, one cue, not cut off (handy for building transcripts
    /// in tests without naming every field).
    pub fn new(
        id: impl Into<String>,
        speaker: impl Into<String>,
        start: Option<f64>,
        end: Option<f64>,
        text: impl Into<String>,
    ) -> Self {
        Segment {
            id: id.into(),
            speaker: speaker.into(),
            start,
            end,
            text: text.into(),
            disfluencies: 0,
            cues: 1,
            cut_off: false,
        }
    }

    /// Number of whitespace-separated words in the text.
    pub fn word_count(&self) -> usize {
        crate::text::count_words(&self.text)
    }

    /// Duration in seconds when both ends are known and ordered.
    pub fn duration(&self) -> Option<f64> {
        match (self.start, self.end) {
            (Some(s), Some(e)) if e >= s => Some(e - s),
            _ => None,
        }
    }
}

/// Something the parser could not place, reported instead of being dropped in silence: text
/// before the first speaker label, a block without cue timings, a JSON entry without text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseWarning {
    /// Stable SCREAMING_SNAKE code (`UNATTRIBUTED_TEXT`, `UNTIMED_BLOCK`, `EMPTY_ENTRY`,
    /// `TIME_NOT_MONOTONE`, `WARNINGS_TRUNCATED`).
    pub code: String,
    /// 1-based line of the input (for JSON: 1-based number of the entry in its list).
    pub line: usize,
    /// What was found and what happened to it.
    pub message: String,
}

/// A parsed, normalised transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The format the input was read as (never `Auto`).
    pub format: Format,
    /// The people who speak, in order of first appearance. Pseudo-speakers such as `Break`,
    /// `Outro` or stage directions have segments but are not participants.
    pub participants: Vec<String>,
    /// The turns, `S1..Sn`.
    pub segments: Vec<Segment>,
    /// Input the parser could not attribute to a segment (at most [`MAX_WARNINGS`] entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ParseWarning>,
}

/// Cap on [`Transcript::warnings`]: past it one `WARNINGS_TRUNCATED` entry says how many more.
pub const MAX_WARNINGS: usize = 50;

impl Transcript {
    /// Build a transcript from segments, deriving the participants (people, in order of first
    /// appearance; pseudo-speakers such as `Break` left out) the way the parsers do.
    pub fn from_segments(format: Format, segments: Vec<Segment>) -> Self {
        let mut participants: Vec<String> = Vec::new();
        for s in &segments {
            if crate::label::is_person(&s.speaker) && !participants.contains(&s.speaker) {
                participants.push(s.speaker.clone());
            }
        }
        Transcript {
            format,
            participants,
            segments,
            warnings: Vec::new(),
        }
    }

    /// The segment with the given id (`"S12"`), if any.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        // Ids are assigned densely from S1, so the index is derivable; fall back to a scan in case a
        // caller built the transcript by hand with other ids.
        let by_index = id
            .strip_prefix('S')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.segments.get(i))
            .filter(|s| s.id == id);
        by_index.or_else(|| self.segments.iter().find(|s| s.id == id))
    }

    /// Total words over all segments (pseudo-speakers included).
    pub fn word_count(&self) -> usize {
        self.segments.iter().map(Segment::word_count).sum()
    }

    /// Whether `label` is one of the participants (exact match).
    pub fn is_participant(&self, label: &str) -> bool {
        self.participants.iter().any(|p| p == label)
    }
}

/// Why a transcript could not be read or a coachee not found. Each variant has a stable
/// [`code`](TranscriptError::code) for API bodies and Airtable `Parse Error` fields.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TranscriptError {
    /// Nothing but whitespace (or a bare header) was given.
    #[error("the transcript is empty: paste or attach the meeting transcript text")]
    EmptyInput,
    /// The bytes are not UTF-8.
    #[error(
        "the transcript is not valid UTF-8 (first bad byte at offset {offset}): re-export it as UTF-8 text"
    )]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The transcript has text but no speaker labels, so turns cannot be attributed.
    #[error(
        "no speaker labels found in this {format} transcript: label each turn with the speaker \
         (`<v Name>` in WebVTT, `Name: text` in SRT or text, a `speaker` field in JSON); speakers are never guessed"
    )]
    NoSpeakerLabels {
        /// The format that was read.
        format: Format,
    },
    /// The format could not be detected, or the content does not match the requested format.
    #[error(
        "unknown or unreadable transcript format ({detail}): use WebVTT, SRT, a JSON list of \
         {{speaker, text}} turns, or text with `Name: text` lines, or pass the right --format"
    )]
    UnknownFormat {
        /// What did not match.
        detail: String,
    },
    /// The coachee name given does not identify one speaker.
    #[error(
        "coachee speaker `{name}` not found{closest}; speakers in this transcript: {found}. \
         Set the coachee to one of these labels",
        closest = match closest { Some(c) => format!(" (closest match: `{c}`)"), None => String::new() },
        found = if speakers.is_empty() { "none".to_string() } else { speakers.join(", ") }
    )]
    CoacheeNotFound {
        /// The name that was asked for.
        name: String,
        /// The participants found.
        speakers: Vec<String>,
        /// The participant closest to `name` by edit distance, if any.
        closest: Option<String>,
    },
    /// Speaker labels were found but not one of their turns holds a word.
    #[error(
        "this {format} transcript has speaker labels but no spoken words under any of them: \
         check that the export includes the transcript text, not only the speaker list"
    )]
    NoSpeech {
        /// The format that was read.
        format: Format,
    },
    /// Times that no meeting has: longer than 24 hours, or a pace that means the unit is wrong.
    #[error(
        "implausible times in this transcript ({detail}): export times in seconds (or the \
         service's documented unit) and check the file is one meeting of at most 24 hours"
    )]
    ImplausibleTimes {
        /// What was detected.
        detail: String,
    },
    /// The Word document cannot be read (not a zip, no `word/document.xml`, bad XML).
    #[error(
        "the Word document cannot be read ({detail}): download the transcript again as .docx, \
         or save it as .txt or .vtt"
    )]
    DocxUnreadable {
        /// What failed.
        detail: String,
    },
    /// The Word document is password-protected (encrypted), or is an old binary `.doc`.
    #[error(
        "the Word document is password-protected or in the old binary .doc format: remove the \
         password (or save as .docx) and attach it again"
    )]
    DocxProtected,
}

impl TranscriptError {
    /// Stable SCREAMING_SNAKE code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            TranscriptError::EmptyInput => "EMPTY_INPUT",
            TranscriptError::InvalidUtf8 { .. } => "INVALID_UTF8",
            TranscriptError::NoSpeakerLabels { .. } => "NO_SPEAKER_LABELS",
            TranscriptError::UnknownFormat { .. } => "UNKNOWN_FORMAT",
            TranscriptError::CoacheeNotFound { .. } => "COACHEE_NOT_FOUND",
            TranscriptError::NoSpeech { .. } => "NO_SPEECH",
            TranscriptError::ImplausibleTimes { .. } => "IMPLAUSIBLE_TIMES",
            TranscriptError::DocxUnreadable { .. } => "DOCX_UNREADABLE",
            TranscriptError::DocxProtected => "DOCX_PROTECTED",
        }
    }
}
