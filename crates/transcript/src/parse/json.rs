//! JSON transcripts: a list of turns, QMSum's `{"meeting_transcripts": [...]}`, or our own
//! rendering `{"format", "participants", "segments": [...]}` (so output can be fed back in).
//!
//! A turn is an object with a speaker (`speaker`, `speaker_name` or `name`; a number is accepted
//! as a diarisation id), text (`text` or `content`) and optional times (`start`/`end` or
//! `start_time`/`end_time`, as seconds or as `HH:MM:SS.mmm` strings). A turn without a speaker
//! continues the previous one, as an unlabelled cue does.

use serde_json::Value;

use super::{Builder, parse_timestamp};
use crate::model::{Format, Transcript, TranscriptError};
use crate::text::CleanOpts;

const LIST_KEYS: &[&str] = &[
    "meeting_transcripts",
    "segments",
    "turns",
    "utterances",
    "transcript",
];

pub(crate) fn parse(text: &str) -> Result<Transcript, TranscriptError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| TranscriptError::UnknownFormat {
        detail: format!(
            "invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
    })?;
    let list = match &doc {
        Value::Array(a) => a,
        Value::Object(o) => LIST_KEYS
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_array))
            .ok_or_else(|| TranscriptError::UnknownFormat {
                detail: "the JSON object has no turn list (expected `meeting_transcripts`, `segments` or `turns`)".into(),
            })?,
        _ => {
            return Err(TranscriptError::UnknownFormat {
                detail: "JSON transcripts are a list of turns or an object holding one".into(),
            });
        }
    };
    let mut b = Builder::new(Format::Json, CleanOpts::default(), text.len());
    let mut speaker_buf = String::new();
    for (n, entry) in list.iter().enumerate() {
        let Value::Object(turn) = entry else {
            return Err(TranscriptError::UnknownFormat {
                detail: format!("turn {n} is not an object with `speaker` and `text`"),
            });
        };
        let speaker = ["speaker", "speaker_name", "name"]
            .iter()
            .find_map(|k| turn.get(*k))
            .and_then(|v| match v {
                Value::String(s) => Some(s.as_str()),
                Value::Number(num) => {
                    speaker_buf.clear();
                    speaker_buf.push_str("Speaker ");
                    speaker_buf.push_str(&num.to_string());
                    Some(speaker_buf.as_str())
                }
                _ => None,
            });
        let start = time(turn.get("start").or_else(|| turn.get("start_time")));
        let end = time(turn.get("end").or_else(|| turn.get("end_time")));
        b.cue(speaker, start, end);
        let text = ["text", "content"]
            .iter()
            .find_map(|k| turn.get(*k).and_then(Value::as_str))
            .unwrap_or("");
        b.text(text);
        let disfluencies = turn
            .get("disfluencies")
            .and_then(Value::as_u64)
            .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX));
        let cut_off = turn
            .get("cut_off")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let cues = turn
            .get("cues")
            .and_then(Value::as_u64)
            .map_or(1, |d| u32::try_from(d).unwrap_or(u32::MAX));
        b.carry(disfluencies, cut_off, cues);
    }
    b.finish()
}

fn time(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0),
        Value::String(s) => parse_timestamp(s).or_else(|| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0)
        }),
        _ => None,
    }
}
