//! coach-transcript: meeting transcript parsers and per-speaker conversation metrics.
//!
//! Turns a WebVTT, SRT, JSON (plain turn lists and the AssemblyAI, Deepgram, whisperX and Rev.ai
//! shapes), plain-text (Zoom, Teams, Otter, Rev, Fireflies layouts) or `.docx` transcript into
//! numbered segments (`S1..Sn`, one per speaker turn) and measures how each person communicates. It is independent of HTTP and
//! storage; the worker stores the results, and the coaching crate quotes segments by id.
//!
//! # Public API
//! - [`parse`]`(input: &[u8], format: Format) -> Result<Transcript, TranscriptError>` —
//!   `Format::Auto` detects the format ([`detect`]).
//! - [`find_coachee`]`(t: &Transcript, name: &str) -> Result<String, TranscriptError>` — the
//!   coachee's label as written (exact, then case-insensitive, then a unique first name).
//! - [`render`]`(t: &Transcript, format: Format) -> String` — write a transcript back out;
//!   JSON and text re-parse to the same segments.
//! - [`metrics::compute`]`(t: &Transcript) -> metrics::MeetingMetrics` — talk share, turns,
//!   monologues, questions, interruptions, fillers, hedges, pace, with segment ids as evidence.
//! - [`report`] — the documented output shapes of `coach-worker transcript parse|metrics`
//!   ([`report::ParseReport`], [`report::MetricsReport`], [`report::metrics_table`]); the
//!   command line itself lives in the worker binary.
//! - [`RunType`] — one meeting or a baseline pack of three: the run type the store, the coaching
//!   crate and the worker share (serde names `single_meeting`, `baseline_pack`).
//! - [`TranscriptError::code`] — stable codes: `EMPTY_INPUT`, `INVALID_UTF8`,
//!   `NO_SPEAKER_LABELS`, `UNKNOWN_FORMAT`, `COACHEE_NOT_FOUND`, `NO_SPEECH`,
//!   `IMPLAUSIBLE_TIMES`, `DOCX_UNREADABLE`, `DOCX_PROTECTED`.
//! - [`Transcript::warnings`] — what could not be placed ([`ParseWarning`]), never dropped.
//!
//! ```
//! use coach_transcript::{Format, parse, find_coachee, metrics};
//! let t = parse(b"Ana: Shall we start? What do you think?\nBen: Yes, let's.", Format::Auto)?;
//! assert_eq!(t.participants, ["Ana", "Ben"]);
//! let coachee = find_coachee(&t, "ana")?;
//! let m = metrics::compute(&t);
//! assert_eq!(m.speaker(&coachee).map(|s| s.inclusive_questions), Some(1));
//! # Ok::<(), coach_transcript::TranscriptError>(())
//! ```
//!
//! # Design
//! Parsers reduce each format to cues and share one builder (`parse` module) that merges
//! consecutive cues of a speaker and cleans text in a single pass per cue, so a two-hour
//! meeting parses and measures within the 3 ms budget without regexes or per-word
//! allocation. Labels are recognised conservatively ([`label`]) and never guessed.

mod coachee;
pub mod label;
pub mod metrics;
pub mod model;
mod parse;
mod render;
pub mod report;
pub mod run;
pub(crate) mod text;

pub use coachee::find_coachee;
pub use model::{Format, ParseWarning, Segment, Transcript, TranscriptError};
pub use parse::{MAX_MEETING_SECONDS, MIN_WORDS_PER_MINUTE, detect, is_word_file, parse};
pub use render::render;
pub use run::RunType;
