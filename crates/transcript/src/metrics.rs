//! Conversation metrics (stub; filled in below).
use serde::{Deserialize, Serialize};

use crate::model::Transcript;

/// Whether shares and rates are computed from timestamps or from word counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Every segment has start and end times.
    Time,
    /// At least one segment lacks times; words stand in for time.
    Words,
}

/// The longest uninterrupted turn of a speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Monologue {
    /// Words in the turn.
    pub words: usize,
    /// Duration of the turn when timestamps exist.
    pub seconds: Option<f64>,
    /// The segment id of the turn (`S12`), empty when the speaker never spoke.
    pub span_id: String,
}

/// Measures for one speaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerMetrics {
    pub speaker: String,
    pub talk_share: f64,
    pub talk_seconds: Option<f64>,
    pub turns: usize,
    pub backchannels: usize,
    pub words: usize,
    pub avg_monologue_words: f64,
    pub longest_monologue: Monologue,
    pub questions: usize,
    pub questions_rate: f64,
    pub interruptions: usize,
    pub fillers: usize,
    pub fillers_per_100_words: f64,
    pub hedges: usize,
    pub hedges_per_100_words: f64,
    pub pace_wpm: Option<f64>,
    pub inclusive_questions: usize,
    pub question_span_ids: Vec<String>,
    pub interruption_span_ids: Vec<String>,
    pub inclusive_question_span_ids: Vec<String>,
    pub filler_span_ids: Vec<String>,
    pub hedge_span_ids: Vec<String>,
}

/// Measures for the whole meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingMetrics {
    pub basis: Basis,
    pub duration_seconds: Option<f64>,
    pub total_words: usize,
    pub total_turns: usize,
    pub speaker_switches: usize,
    pub speaker_switches_per_minute: Option<f64>,
    pub speakers: Vec<SpeakerMetrics>,
}

impl MeetingMetrics {
    /// The metrics of one speaker, by exact label.
    pub fn speaker(&self, label: &str) -> Option<&SpeakerMetrics> {
        self.speakers.iter().find(|s| s.speaker == label)
    }
}

/// Compute every metric in one pass over the segments.
pub fn compute(t: &Transcript) -> MeetingMetrics {
    let _ = t;
    MeetingMetrics {
        basis: Basis::Words,
        duration_seconds: None,
        total_words: 0,
        total_turns: 0,
        speaker_switches: 0,
        speaker_switches_per_minute: None,
        speakers: Vec::new(),
    }
}
