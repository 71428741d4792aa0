//! Transcript records: reading their text (long text or `File` attachment), parsing it, and writing the
//! parse outcome back onto the record (`Parse Status`, `Parse Error`, `Parse Warnings`, `Segments`,
//! `Words`) so the operator sees why a transcript was refused — or what in it could not be
//! attributed to a speaker — on the transcript itself. A `File` that is a Word document (Teams and
//! Meet download transcripts as `.docx`) is read as one whatever the record's `Format` says.

use coach_store::tables::{self, ParseStatus, TableRecord, TranscriptFormat};
use coach_store::{Fields, Record};
use coach_transcript::{Format, Transcript};
use serde_json::{Value, json};

use super::{Deps, ScenarioError, long_text};

/// A transcript record and the outcome of parsing it.
pub struct Parsed {
    pub record: tables::Transcript,
    pub outcome: Result<Transcript, ScenarioError>,
}

fn format_of(record: &tables::Transcript) -> Format {
    match record.format {
        Some(TranscriptFormat::Vtt) => Format::Vtt,
        Some(TranscriptFormat::Srt) => Format::Srt,
        Some(TranscriptFormat::Json) => Format::Json,
        Some(TranscriptFormat::Text) => Format::Text,
        Some(TranscriptFormat::Docx) => Format::Docx,
        Some(TranscriptFormat::Auto) | None => Format::Auto,
    }
}

/// Reads a transcript record.
pub async fn get(deps: &Deps, id: &str) -> Result<tables::Transcript, ScenarioError> {
    let record = deps.store.get(tables::TRANSCRIPTS, id).await?;
    Ok(tables::Transcript::from_record(&record)?)
}

/// Parses a transcript record's text: the `Transcript` long text, else its first `File` attachment.
pub async fn parse_record(
    deps: &Deps,
    record: &tables::Transcript,
) -> Result<Transcript, ScenarioError> {
    let (bytes, format) = record_text(deps, record).await?;
    parse_bytes(&bytes, format)
}

/// A transcript record's text (the `Transcript` long text, else its first `File` attachment) and
/// the format to parse it as, without parsing it.
pub async fn record_text(
    deps: &Deps,
    record: &tables::Transcript,
) -> Result<(Vec<u8>, Format), ScenarioError> {
    let bytes = match (&record.transcript, record.file.first()) {
        (Some(text), _) if !text.trim().is_empty() => text.as_bytes().to_vec(),
        (_, Some(file)) => coach_store::attachment::download(&file.url, &deps.attachments)
            .await
            .map_err(|e| {
                if e.is_transient() {
                    ScenarioError::Transient {
                        code: e.code(),
                        message: format!(
                            "the transcript file of {} could not be downloaded: {e}",
                            record.id
                        ),
                    }
                } else {
                    ScenarioError::unprocessable(
                        e.code(),
                        format!("the transcript file of {} was refused: {e}", record.id),
                    )
                }
            })?,
        _ => {
            return Err(ScenarioError::unprocessable(
                "TRANSCRIPT_EMPTY",
                format!(
                    "transcript {} has neither `Transcript` text nor a `File`; paste the text or attach the file",
                    record.id
                ),
            ));
        }
    };
    let mut format = format_of(record);
    if coach_transcript::is_word_file(&bytes) {
        format = Format::Docx;
    }
    Ok((bytes, format))
}

/// Parses transcript text, mapping parser errors to 422s with the parser's code.
pub fn parse_bytes(bytes: &[u8], format: Format) -> Result<Transcript, ScenarioError> {
    coach_transcript::parse(bytes, format)
        .map_err(|e| ScenarioError::unprocessable(e.code(), e.to_string()))
}

/// Reads and parses several transcript records (in order).
pub async fn load_and_parse(deps: &Deps, ids: &[String]) -> Result<Vec<Parsed>, ScenarioError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let record = get(deps, id).await?;
        let outcome = parse_record(deps, &record).await;
        out.push(Parsed { record, outcome });
    }
    Ok(out)
}

/// The parse fields a record should hold after this outcome.
fn parse_fields(outcome: &Result<Transcript, ScenarioError>) -> Fields {
    let value = match outcome {
        Ok(t) => json!({
            "Parse Status": ParseStatus::Parsed.as_str(),
            "Parse Error": Value::Null,
            "Parse Warnings": warnings_text(t),
            "Segments": t.segments.len(),
            "Words": t.word_count(),
        }),
        Err(e) => json!({
            "Parse Status": ParseStatus::Failed.as_str(),
            "Parse Error": long_text(&e.user_message()),
            "Parse Warnings": Value::Null,
            "Segments": Value::Null,
            "Words": Value::Null,
        }),
    };
    match value {
        Value::Object(m) => m,
        _ => Fields::new(),
    }
}

/// `Parse Warnings`: one `line N CODE: message` per warning, or null when there are none.
fn warnings_text(t: &Transcript) -> Value {
    if t.warnings.is_empty() {
        return Value::Null;
    }
    let text: Vec<String> = t
        .warnings
        .iter()
        .map(|w| format!("line {} {}: {}", w.line, w.code, w.message))
        .collect();
    Value::String(long_text(&text.join("\n")))
}

/// Whether the record already holds these parse fields (then no write is needed).
fn unchanged(record: &tables::Transcript, fields: &Fields) -> bool {
    let current = record.to_fields();
    fields
        .iter()
        .all(|(name, want)| match (current.get(name), want) {
            (None, Value::Null) => true,
            (Some(have), want) => {
                have == want || (have.as_f64().is_some() && have.as_f64() == want.as_f64())
            }
            (None, _) => false,
        })
}

/// Writes the parse outcomes back, in one batch, skipping records that already hold them.
pub async fn write_parse_results(deps: &Deps, parsed: &[Parsed]) -> Result<(), ScenarioError> {
    let updates: Vec<(String, Fields)> = parsed
        .iter()
        .filter_map(|p| {
            let mut fields = parse_fields(&p.outcome);
            // `Parse Warnings` is written only when there is something to say or to clear, so a
            // base created before the field existed keeps working for warning-free transcripts
            // (Airtable refuses an unknown field name, even with a null value).
            if fields.get("Parse Warnings").is_some_and(Value::is_null)
                && p.record.parse_warnings.is_none()
            {
                fields.remove("Parse Warnings");
            }
            (!unchanged(&p.record, &fields)).then(|| (p.record.id.clone(), fields))
        })
        .collect();
    if !updates.is_empty() {
        deps.store.update(tables::TRANSCRIPTS, updates).await?;
    }
    Ok(())
}

/// The coachee's label in a transcript: the record's `Coachee Speaker`, else the user's name, matched
/// exactly, then case-insensitively, then by a unique first name.
pub fn coachee_label(
    transcript: &Transcript,
    record: &tables::Transcript,
    user: Option<&tables::User>,
) -> Result<String, ScenarioError> {
    let wanted = record
        .coachee_speaker
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| user.and_then(|u| u.name.as_deref()))
        .ok_or_else(|| {
            ScenarioError::unprocessable(
                "COACHEE_UNKNOWN",
                format!("transcript {} has no `Coachee Speaker` and the user has no name; set `Coachee Speaker`", record.id),
            )
        })?;
    coach_transcript::find_coachee(transcript, wanted)
        .map_err(|e| ScenarioError::unprocessable(e.code(), e.to_string()))
}

/// Reads a typed record.
pub fn typed<T: TableRecord>(record: &Record) -> Result<T, ScenarioError> {
    Ok(T::from_record(record)?)
}
