//! Transcript records: reading their text (long text or `File` attachment), parsing it, and writing the
//! parse outcome back onto the record (`Parse Status`, `Parse Error`, `Parse Warnings`, `Segments`,
//! `Words`) so the operator sees why a transcript was refused — or what in it could not be
//! attributed to a speaker — on the transcript itself. A `File` that is a Word document (Teams and
//! Meet download transcripts as `.docx`) is read as one whatever the record's `Format` says.

use coach_store::RecordId;
use coach_store::tables::{
    self, Change, ParseStatus, TableRecord, TranscriptFormat, TranscriptUpdate,
};
use coach_transcript::{Format, Transcript};

use super::{Deps, ScenarioError, known_id, long_text};

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

/// Reads a typed record by id.
pub async fn read<T: TableRecord>(deps: &Deps, id: &RecordId) -> Result<T, ScenarioError> {
    Ok(deps.store.read::<T>(id).await?)
}

/// Upserts a typed record on its `Key`; returns it as written.
pub async fn upsert<T: TableRecord>(deps: &Deps, record: &T) -> Result<T, ScenarioError> {
    deps.store
        .upsert_records(std::slice::from_ref(record))
        .await?
        .pop()
        .ok_or_else(|| {
            ScenarioError::unprocessable("STORE_EMPTY_ANSWER", "the store returned no record")
        })
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
pub async fn load_and_parse(deps: &Deps, ids: &[RecordId]) -> Result<Vec<Parsed>, ScenarioError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let record: tables::Transcript = read(deps, id).await?;
        let outcome = parse_record(deps, &record).await;
        out.push(Parsed { record, outcome });
    }
    Ok(out)
}

/// The parse fields a record should hold after this outcome, as a change of `record`; `None` when
/// the record already holds them (then no write is needed).
fn parse_update(
    record: &tables::Transcript,
    outcome: &Result<Transcript, ScenarioError>,
) -> Option<TranscriptUpdate> {
    let (status, error, warnings, segments, words) = match outcome {
        Ok(t) => (
            ParseStatus::Parsed,
            None,
            warnings_text(t),
            Some(t.segments.len() as i64),
            Some(t.word_count() as i64),
        ),
        Err(e) => (
            ParseStatus::Failed,
            Some(long_text(&e.user_message())),
            None,
            None,
            None,
        ),
    };
    let unchanged = record.parse_status == Some(status)
        && record.parse_error == error
        && record.parse_warnings == warnings
        && record.segments == segments
        && record.words == words;
    if unchanged {
        return None;
    }
    Some(TranscriptUpdate {
        parse_status: Change::Set(status),
        parse_error: set_or_clear(error),
        // `Parse Warnings` is written only when there is something to say or to clear, so a base
        // created before the field existed keeps working for warning-free transcripts (Airtable
        // refuses an unknown field name, even with a null value).
        parse_warnings: match (warnings, &record.parse_warnings) {
            (Some(w), _) => Change::Set(w),
            (None, Some(_)) => Change::Clear,
            (None, None) => Change::Keep,
        },
        segments: set_or_clear(segments),
        words: set_or_clear(words),
    })
}

fn set_or_clear<T>(value: Option<T>) -> Change<T> {
    value.map_or(Change::Clear, Change::Set)
}

/// `Parse Warnings`: one `line N CODE: message` per warning, or none when there are none.
fn warnings_text(t: &Transcript) -> Option<String> {
    if t.warnings.is_empty() {
        return None;
    }
    let text: Vec<String> = t
        .warnings
        .iter()
        .map(|w| format!("line {} {}: {}", w.line, w.code, w.message))
        .collect();
    Some(long_text(&text.join("\n")))
}

/// Writes the parse outcomes back, in one batch, skipping records that already hold them.
pub async fn write_parse_results(deps: &Deps, parsed: &[Parsed]) -> Result<(), ScenarioError> {
    let mut updates = Vec::new();
    for p in parsed {
        if let Some(update) = parse_update(&p.record, &p.outcome) {
            updates.push((known_id(&p.record.id)?, update));
        }
    }
    if !updates.is_empty() {
        deps.store.patch_all(updates).await?;
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
