//! Turning what a person typed into an analysis input: the run type that fits the number of
//! transcripts, and the one coachee label every transcript of a pack shares.
//!
//! The worker's command line (`analyze`, `gate1 validate`) calls these after reading the files;
//! the messages say what to pass instead.

use coach_transcript::{Transcript, TranscriptError, find_coachee};

use crate::model::RunType;

/// Why the transcripts or the coachee name do not make an analysis input.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InputError {
    /// Neither one meeting nor a pack of three, and no run type was asked for.
    #[error("{count} transcripts given: pass one (single meeting) or three (baseline pack)")]
    UnusualCount {
        /// Transcripts given.
        count: usize,
    },
    /// The run type asked for takes another number of transcripts.
    #[error("a {run_type} run takes {} transcript(s), {count} given", run_type.meeting_count())]
    CountMismatch {
        /// The run type asked for.
        run_type: RunType,
        /// Transcripts given.
        count: usize,
    },
    /// The name matches no speaker of one transcript (1-based position).
    #[error("transcript {position}: {source}")]
    Coachee {
        /// Position of the transcript in the pack, from 1.
        position: usize,
        /// Why the name did not match.
        source: TranscriptError,
    },
    /// The name resolves to different labels in different transcripts.
    #[error(
        "the coachee is `{first}` in one transcript and `{other}` in another: use the same label in all three"
    )]
    DifferentLabels {
        /// The label in the earlier transcript.
        first: String,
        /// The label in the later one.
        other: String,
    },
    /// No transcript at all.
    #[error("no transcript given")]
    NoTranscript,
}

impl InputError {
    /// Stable SCREAMING_SNAKE code.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::UnusualCount { .. } | InputError::CountMismatch { .. } => {
                "WRONG_MEETING_COUNT"
            }
            InputError::Coachee { source, .. } => source.code(),
            InputError::DifferentLabels { .. } => "COACHEE_AMBIGUOUS",
            InputError::NoTranscript => "NO_TRANSCRIPT",
        }
    }
}

/// The run type for `count` transcripts: `asked` when given (and it fits), otherwise a single
/// meeting for one and a baseline pack for three.
pub fn run_type_for(count: usize, asked: Option<RunType>) -> Result<RunType, InputError> {
    let run_type = match (asked, count) {
        (Some(rt), _) => rt,
        (None, 1) => RunType::SingleMeeting,
        (None, 3) => RunType::BaselinePack,
        (None, count) => return Err(InputError::UnusualCount { count }),
    };
    if run_type.meeting_count() != count {
        return Err(InputError::CountMismatch { run_type, count });
    }
    Ok(run_type)
}

/// Resolves `name` (as [`find_coachee`] does) to the one speaker label every transcript shares.
pub fn resolve_coachee(ts: &[Transcript], name: &str) -> Result<String, InputError> {
    let mut label: Option<String> = None;
    for (i, t) in ts.iter().enumerate() {
        let l = find_coachee(t, name).map_err(|source| InputError::Coachee {
            position: i + 1,
            source,
        })?;
        match &label {
            Some(prev) if *prev != l => {
                return Err(InputError::DifferentLabels {
                    first: prev.clone(),
                    other: l,
                });
            }
            _ => label = Some(l),
        }
    }
    label.ok_or(InputError::NoTranscript)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coach_transcript::{Format, parse};

    fn meeting(text: &str) -> Transcript {
        parse(text.as_bytes(), Format::Text).expect("parses")
    }

    #[test]
    fn run_type_follows_the_count_unless_asked() {
        assert_eq!(run_type_for(1, None).ok(), Some(RunType::SingleMeeting));
        assert_eq!(run_type_for(3, None).ok(), Some(RunType::BaselinePack));
        let e = run_type_for(2, None).expect_err("two");
        assert_eq!(
            e.to_string(),
            "2 transcripts given: pass one (single meeting) or three (baseline pack)"
        );
        let e = run_type_for(1, Some(RunType::BaselinePack)).expect_err("mismatch");
        assert_eq!(
            e.to_string(),
            "a baseline_pack run takes 3 transcript(s), 1 given"
        );
        assert_eq!(e.code(), "WRONG_MEETING_COUNT");
    }

    #[test]
    fn the_coachee_label_must_agree_across_the_pack() {
        let a = meeting("Ana Lima: Shall we start?\nBen: Yes.");
        let b = meeting("Ana: Good morning.\nBen: Hi.");
        assert_eq!(
            resolve_coachee(&[a.clone(), a.clone()], "ana")
                .ok()
                .as_deref(),
            Some("Ana Lima")
        );
        let e = resolve_coachee(&[a.clone(), b], "ana").expect_err("two labels");
        assert_eq!(e.code(), "COACHEE_AMBIGUOUS");
        let e = resolve_coachee(&[a], "Zed").expect_err("nobody");
        assert!(e.to_string().starts_with("transcript 1: "), "{e}");
        assert_eq!(e.code(), "COACHEE_NOT_FOUND");
        assert_eq!(
            resolve_coachee(&[], "ana").expect_err("none").code(),
            "NO_TRANSCRIPT"
        );
    }
}
