//! Judging an active experiment in a single meeting: its text is mapped to one measurable
//! behaviour ([`classify`]), and one judge per behaviour reads the metric and its segments.
//! Text that maps to none is judged `unclear`.

use coach_transcript::metrics::MeetingMetrics;
use serde_json::{Value, json};

use super::catalogue::{Behaviour, classify};
use super::evidence::{Ev, Focus, HEDGE_WORDS, Run, quote_of};
use super::pooled::Pooled;
use super::{BALANCED_MARGIN, HEDGE_RATE_HIGH, OVER_SHARE_MARGIN};
use crate::model::ActiveExperiment;

/// `attempted` (`yes` / `no` / `unclear`), the evidence, and the note.
type Judgement<'a> = (&'static str, Vec<Ev<'a>>, String);

impl<'a> Run<'a> {
    /// The `experiment_attempt` object for `exp`.
    pub(super) fn attempt(
        &self,
        exp: &ActiveExperiment,
        metrics: &'a [MeetingMetrics],
        p: &Pooled,
    ) -> Value {
        let (attempted, evidence, note) = match classify(exp) {
            Behaviour::Interruptions => self.judge_interruptions(metrics, p),
            Behaviour::Invitations => self.judge_invitations(metrics, p),
            Behaviour::Questions => self.judge_questions(metrics, p),
            Behaviour::TurnLength => self.judge_turn_length(p),
            Behaviour::Hedging => self.judge_hedging(metrics, p),
            Behaviour::Airtime => self.judge_airtime(p),
            Behaviour::EarlyVoice => self.judge_early_voice(p),
            Behaviour::Unknown => ("unclear", Vec::new(), "The rules analyzer could not map this experiment to a measurable behaviour; judge it from the transcript.".into()),
        };
        // A "yes" must cite the coachee: the judges only return coachee segments, and an empty
        // list degrades to "unclear" so Gate-1 always holds.
        let attempted = if attempted == "yes" && evidence.is_empty() {
            "unclear"
        } else {
            attempted
        };
        json!({"attempted": attempted, "evidence": self.evidence_json(&evidence), "note": note})
    }

    fn judge_interruptions(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Judgement<'a> {
        if p.interruptions == 0 && p.turns >= 3 {
            (
                "yes",
                self.longest_segs(|_| true, || Focus::Opening, 1),
                "No interruptions by you were detected in this meeting.".into(),
            )
        } else if p.interruptions >= 2 {
            (
                "no",
                self.listed(metrics, |s| &s.interruption_span_ids, || Focus::Opening, 3),
                format!("You interrupted {} times.", p.interruptions),
            )
        } else {
            (
                "unclear",
                self.listed(metrics, |s| &s.interruption_span_ids, || Focus::Opening, 3),
                format!(
                    "{} interruption(s) and {} turn(s): not enough to judge.",
                    p.interruptions, p.turns
                ),
            )
        }
    }

    fn judge_invitations(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Judgement<'a> {
        let ev = self.listed(
            metrics,
            |s| &s.inclusive_question_span_ids,
            || Focus::Question,
            3,
        );
        if !ev.is_empty() {
            (
                "yes",
                ev,
                format!("You invited others' views {} time(s).", p.inclusive),
            )
        } else {
            (
                "no",
                Vec::new(),
                "No explicit invitation to others was found in your turns.".into(),
            )
        }
    }

    fn judge_questions(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Judgement<'a> {
        let ev = self.listed(metrics, |s| &s.question_span_ids, || Focus::Question, 3);
        match p.questions {
            0 => (
                "no",
                Vec::new(),
                "You asked no questions in this meeting.".into(),
            ),
            1 => (
                "unclear",
                ev,
                "You asked one question: a start, but short of the experiment.".into(),
            ),
            n => ("yes", ev, format!("You asked {n} questions.")),
        }
    }

    fn judge_turn_length(&self, p: &Pooled) -> Judgement<'a> {
        let long = p.longest.as_ref().is_some_and(|(_, _, w, s)| match s {
            Some(s) => *s >= 120.0,
            None => *w >= 300,
        });
        let ev = match &p.longest {
            Some((k, span, _, _)) => self
                .coachee_seg(*k, span)
                .map(|seg| Ev {
                    meeting: *k,
                    seg,
                    quote: quote_of(&seg.text, Focus::Opening),
                })
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        if long {
            (
                "no",
                ev,
                "Your longest turn still ran over two minutes (about 300 words).".into(),
            )
        } else if p.turns >= 3 {
            (
                "yes",
                ev,
                "Even your longest turn stayed under two minutes (about 300 words).".into(),
            )
        } else {
            ("unclear", ev, "Too few turns to judge turn length.".into())
        }
    }

    fn judge_hedging(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Judgement<'a> {
        let rate = p.hedge_rate();
        if p.words < 50 {
            (
                "unclear",
                Vec::new(),
                "Too few words to judge hedging.".into(),
            )
        } else if rate < 2.0 {
            (
                "yes",
                self.longest_segs(|_| true, || Focus::NoWords(HEDGE_WORDS), 2),
                format!("{rate:.1} fillers or hedges per 100 words."),
            )
        } else if rate >= HEDGE_RATE_HIGH {
            (
                "no",
                self.listed(
                    metrics,
                    |s| &s.hedge_span_ids,
                    || Focus::Words(HEDGE_WORDS),
                    3,
                ),
                format!("{rate:.1} fillers or hedges per 100 words."),
            )
        } else {
            (
                "unclear",
                self.listed(
                    metrics,
                    |s| &s.hedge_span_ids,
                    || Focus::Words(HEDGE_WORDS),
                    2,
                ),
                format!("{rate:.1} fillers or hedges per 100 words: better, not yet there."),
            )
        }
    }

    fn judge_airtime(&self, p: &Pooled) -> Judgement<'a> {
        let ev = self.longest_segs(|_| true, || Focus::Opening, 1);
        if p.share <= p.fair + BALANCED_MARGIN {
            (
                "yes",
                ev,
                format!(
                    "Your share was {:.0}% against a fair share of {:.0}%.",
                    p.share * 100.0,
                    p.fair * 100.0
                ),
            )
        } else if p.share >= p.fair + OVER_SHARE_MARGIN {
            (
                "no",
                ev,
                format!(
                    "Your share was {:.0}% against a fair share of {:.0}%.",
                    p.share * 100.0,
                    p.fair * 100.0
                ),
            )
        } else {
            (
                "unclear",
                ev,
                format!(
                    "Your share was {:.0}%, a little above a fair share of {:.0}%.",
                    p.share * 100.0,
                    p.fair * 100.0
                ),
            )
        }
    }

    fn judge_early_voice(&self, p: &Pooled) -> Judgement<'a> {
        if p.share >= p.fair * 0.5 {
            (
                "yes",
                self.longest_segs(|_| true, || Focus::Opening, 1),
                format!("Your share was {:.0}%.", p.share * 100.0),
            )
        } else {
            (
                "no",
                Vec::new(),
                format!(
                    "Your share was {:.0}%, under half a fair share.",
                    p.share * 100.0
                ),
            )
        }
    }
}
