//! JSON transcripts: a list of turns, the output of speech-to-text services, QMSum's
//! `{"meeting_transcripts": [...]}`, or our own rendering `{"format", "participants",
//! "segments": [...]}` (so output can be fed back in).
//!
//! A turn is an object with a speaker (`speaker`, `speaker_name` or `name`; a number is a
//! diarisation id and becomes `Speaker N`), text (`text`, `content` or `transcript`) and
//! optional times (`start`/`end` or `start_time`/`end_time`, as seconds or as `HH:MM:SS.mmm`
//! strings). A turn without a speaker continues the previous one, as an unlabelled cue does.
//!
//! Service shapes, each from the service's API reference:
//! - AssemblyAI transcript: `utterances[]` of `{speaker: "A", start, end, text}` with times
//!   in integer **milliseconds**, and `audio_duration` in seconds, which bounds the times.
//! - Deepgram pre-recorded response: `results.utterances[]` of `{start, end, transcript,
//!   speaker: 0}` in seconds (`utterances=true`), or that array alone; `metadata.duration`.
//! - whisperX: `{"segments": [{start, end, text, speaker: "SPEAKER_00"}]}` in seconds.
//! - Rev.ai transcript: `monologues[]` of `{speaker: 0, speaker_info?: {display_name},
//!   elements: [{type, value, ts, end_ts}]}`: the text is the elements' values joined as they
//!   are (punctuation elements carry the spaces), times in seconds.

use serde_json::{Map, Value};

use super::Builder;
use super::parse_timestamp;
use crate::model::{Format, Transcript, TranscriptError};
use crate::text::CleanOpts;

const LIST_KEYS: &[&str] = &[
    "meeting_transcripts",
    "segments",
    "turns",
    "utterances",
    "transcript",
];

fn unknown(detail: impl Into<String>) -> TranscriptError {
    TranscriptError::UnknownFormat {
        detail: detail.into(),
    }
}

pub(crate) fn parse(text: &str) -> Result<Transcript, TranscriptError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        unknown(format!(
            "invalid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let mut b = Builder::new(Format::Json, CleanOpts::default(), text.len());
    match &doc {
        Value::Array(list) => turns(list, 1.0, &mut b)?,
        Value::Object(o) => {
            if let Some(monologues) = o.get("monologues").and_then(Value::as_array) {
                rev_ai(monologues, &mut b)?;
            } else if let Some(results) = o.get("results").and_then(Value::as_object) {
                let list = results
                    .get("utterances")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        unknown(
                            "a Deepgram response without `results.utterances`: transcribe with \
                             `utterances=true` and `diarize=true` so turns have speakers",
                        )
                    })?;
                turns(list, 1.0, &mut b)?;
                let duration = o
                    .get("metadata")
                    .and_then(|m| m.get("duration"))
                    .and_then(Value::as_f64);
                check_duration(&b, duration, "metadata.duration")?;
            } else if is_assemblyai(o) {
                let list = o
                    .get("utterances")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        unknown(
                            "an AssemblyAI transcript without `utterances`: transcribe with \
                             `speaker_labels: true` so turns have speakers",
                        )
                    })?;
                // AssemblyAI documents utterance times in milliseconds.
                turns(list, 1000.0, &mut b)?;
                let duration = o.get("audio_duration").and_then(Value::as_f64);
                check_duration(&b, duration, "audio_duration")?;
            } else {
                let list = LIST_KEYS
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_array))
                    .ok_or_else(|| {
                        unknown(
                            "the JSON object has no turn list (expected `segments`, `turns`, \
                             `utterances`, `results.utterances`, `monologues` or \
                             `meeting_transcripts`)",
                        )
                    })?;
                turns(list, 1.0, &mut b)?;
            }
        }
        _ => {
            return Err(unknown(
                "JSON transcripts are a list of turns or an object holding one",
            ));
        }
    }
    b.finish()
}

/// An AssemblyAI transcript object: `utterances` (possibly null) beside the fields every
/// AssemblyAI transcript has.
fn is_assemblyai(o: &Map<String, Value>) -> bool {
    o.contains_key("utterances")
        && [
            "audio_duration",
            "audio_url",
            "acoustic_model",
            "speaker_labels",
        ]
        .iter()
        .any(|k| o.contains_key(*k))
}

/// Times past the declared media length mean the units were misread.
fn check_duration(b: &Builder, declared: Option<f64>, field: &str) -> Result<(), TranscriptError> {
    if let (Some(d), Some(latest)) = (declared, b.latest_time())
        && d > 0.0
        && latest > d * 1.05 + 1.0
    {
        return Err(TranscriptError::ImplausibleTimes {
            detail: format!(
                "turns run to {latest:.1} s but `{field}` says the recording is {d:.1} s long"
            ),
        });
    }
    Ok(())
}

fn speaker_of<'a>(turn: &'a Map<String, Value>, buf: &'a mut String) -> Option<&'a str> {
    let v = ["speaker", "speaker_name", "name"]
        .iter()
        .find_map(|k| turn.get(*k))?;
    match v {
        Value::String(s) => Some(s.as_str()),
        Value::Number(num) => {
            buf.clear();
            buf.push_str("Speaker ");
            buf.push_str(&num.to_string());
            Some(buf.as_str())
        }
        _ => None,
    }
}

/// A list of turn objects; times are divided by `per_second` (1000 for milliseconds).
fn turns(list: &[Value], per_second: f64, b: &mut Builder) -> Result<(), TranscriptError> {
    let mut speaker_buf = String::new();
    for (n, entry) in list.iter().enumerate() {
        b.at(n + 1);
        let Value::Object(turn) = entry else {
            return Err(unknown(format!(
                "turn {} is not an object with `speaker` and `text`",
                n + 1
            )));
        };
        let speaker = speaker_of(turn, &mut speaker_buf);
        let start =
            time(turn.get("start").or_else(|| turn.get("start_time"))).map(|t| t / per_second);
        let end = time(turn.get("end").or_else(|| turn.get("end_time"))).map(|t| t / per_second);
        let text = ["text", "content", "transcript"]
            .iter()
            .find_map(|k| turn.get(*k).and_then(Value::as_str));
        if text.is_none() {
            b.warn(
                "EMPTY_ENTRY",
                format!(
                    "entry {} has no `text`, `content` or `transcript` string, so it adds no words",
                    n + 1
                ),
            );
        }
        b.cue(speaker, start, end);
        b.text(text.unwrap_or(""));
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
    Ok(())
}

/// Rev.ai monologues.
fn rev_ai(monologues: &[Value], b: &mut Builder) -> Result<(), TranscriptError> {
    let mut speaker_buf = String::new();
    let mut text = String::new();
    for (n, m) in monologues.iter().enumerate() {
        b.at(n + 1);
        let Value::Object(m) = m else {
            return Err(unknown(format!("monologue {} is not an object", n + 1)));
        };
        let display = m
            .get("speaker_info")
            .and_then(|i| i.get("display_name"))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty());
        let speaker = display.or_else(|| speaker_of(m, &mut speaker_buf));
        let elements = m
            .get("elements")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        text.clear();
        let (mut start, mut end) = (None, None);
        for e in elements {
            if let Some(v) = e.get("value").and_then(Value::as_str) {
                text.push_str(v);
            }
            if start.is_none() {
                start = time(e.get("ts"));
            }
            if let Some(t) = time(e.get("end_ts")) {
                end = Some(t);
            }
        }
        if elements.is_empty() {
            b.warn(
                "EMPTY_ENTRY",
                format!("monologue {} has no `elements`, so it adds no words", n + 1),
            );
        }
        b.cue(speaker, start, end);
        b.text(&text);
    }
    Ok(())
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
