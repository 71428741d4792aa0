//! The coachee's numbers over the run: one meeting as measured, a baseline pack pooled (sums of
//! counts, the mean of shares and fair shares over the meetings the coachee spoke in).

use coach_transcript::metrics::MeetingMetrics;

/// The coachee's numbers pooled over the run's meetings.
#[derive(Debug, Default)]
pub(super) struct Pooled {
    pub(super) present_in: usize,
    pub(super) share: f64,
    pub(super) fair: f64,
    pub(super) speakers_max: usize,
    pub(super) meeting_turns: usize,
    pub(super) turns: usize,
    pub(super) words: usize,
    pub(super) questions: usize,
    pub(super) inclusive: usize,
    pub(super) interruptions: usize,
    pub(super) fillers: usize,
    pub(super) hedges: usize,
    pub(super) time_based: bool,
    /// (meeting, span id, words, seconds) of the longest turn.
    pub(super) longest: Option<(usize, String, usize, Option<f64>)>,
}

impl Pooled {
    pub(super) fn q_per_100_words(&self) -> f64 {
        self.questions as f64 * 100.0 / self.words.max(1) as f64
    }
    pub(super) fn hedge_rate(&self) -> f64 {
        (self.fillers + self.hedges) as f64 * 100.0 / self.words.max(1) as f64
    }
}

pub(super) fn pool(metrics: &[MeetingMetrics], coachee: &str) -> Pooled {
    let mut p = Pooled {
        time_based: true,
        ..Pooled::default()
    };
    for (k, m) in metrics.iter().enumerate() {
        let Some(s) = m.speaker(coachee) else {
            continue;
        };
        let n = m.speakers.iter().filter(|s| s.words > 0).count().max(1);
        p.present_in += 1;
        p.share += s.talk_share;
        p.fair += 1.0 / n as f64;
        p.speakers_max = p.speakers_max.max(n);
        p.meeting_turns += m.total_turns;
        p.turns += s.turns;
        p.words += s.words;
        p.questions += s.questions;
        p.inclusive += s.inclusive_questions;
        p.interruptions += s.interruptions;
        p.fillers += s.fillers;
        p.hedges += s.hedges;
        p.time_based &= s.longest_monologue.seconds.is_some();
        let lm = &s.longest_monologue;
        let longer = match &p.longest {
            None => true,
            Some((_, _, w, secs)) => match (lm.seconds, secs) {
                (Some(a), Some(b)) => a > *b,
                _ => lm.words > *w,
            },
        };
        if longer && !lm.span_id.is_empty() {
            p.longest = Some((k, lm.span_id.clone(), lm.words, lm.seconds));
        }
    }
    if p.present_in > 0 {
        p.share /= p.present_in as f64;
        p.fair /= p.present_in as f64;
    }
    p
}
