//! The detectors: one function per row of the thresholds table (see the module docs of
//! [`super`]), each returning the pattern with its evidence when it fires, and [`Run::patterns`]
//! that runs them in the table's order and ranks the result.

use coach_transcript::metrics::MeetingMetrics;

use super::catalogue::PatternKey;
use super::evidence::{Ev, Focus, HEDGE_WORDS, Run, quote_of};
use super::pooled::Pooled;
use super::{
    BALANCED_MARGIN, FEW_QUESTIONS_PER_100_WORDS, GOOD_QUESTIONS_PER_100_WORDS, HEDGE_RATE_HIGH,
    HEDGE_RATE_LOW, MIN_INTERRUPTIONS, MIN_TURNS, MONOLOGUE_SECONDS, MONOLOGUE_WORDS,
    OVER_SHARE_MARGIN, QUIET_FACTOR,
};

/// At most this many patterns per run.
const MAX_PATTERNS: usize = 6;

/// A pattern that fired, with what the output says about it.
#[derive(Debug, Clone)]
pub(super) struct Found<'a> {
    pub(super) key: PatternKey,
    pub(super) growth: bool,
    pub(super) category: &'static str,
    pub(super) title: &'static str,
    pub(super) observation: String,
    pub(super) impact: &'static str,
    pub(super) advice: &'static str,
    pub(super) severity: f64,
    pub(super) evidence: Vec<Ev<'a>>,
}

/// A share as a whole percentage.
fn pct(x: f64) -> f64 {
    (x * 100.0).round()
}

/// What shares are measured in.
fn basis(p: &Pooled) -> &'static str {
    if p.time_based {
        "talk time"
    } else {
        "words spoken"
    }
}

impl<'a> Run<'a> {
    /// Every pattern that fired: growth patterns ranked by severity, then strengths in the table's
    /// order; only patterns with evidence, at most [`MAX_PATTERNS`], never none.
    pub(super) fn patterns(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Vec<Found<'a>> {
        let mut found: Vec<Found<'a>> = [
            self.dominates(p),
            self.quiet(p),
            self.monologue(p),
            self.few_questions(p),
            self.hedging(metrics, p),
            self.interrupts(metrics, p),
        ]
        .into_iter()
        .flatten()
        .collect();
        found.sort_by(|a, b| b.severity.total_cmp(&a.severity));
        let mut strengths: Vec<Found<'a>> = [
            self.asks_questions(metrics, p),
            self.invites(metrics, p),
            self.balanced(p),
            self.direct(p),
        ]
        .into_iter()
        .flatten()
        .collect();
        if strengths.is_empty() {
            strengths.push(self.engaged(p));
        }
        // Strengths keep their discovery order (most specific first); growth first overall.
        found.extend(strengths);
        found.retain(|f| !f.evidence.is_empty());
        found.truncate(MAX_PATTERNS);
        if found.is_empty() {
            found.push(self.engaged_without_metrics());
        }
        found
    }

    fn dominates(&self, p: &Pooled) -> Option<Found<'a>> {
        if !(p.speakers_max >= 2 && p.share >= p.fair + OVER_SHARE_MARGIN) {
            return None;
        }
        let mut evidence = Vec::new();
        if let Some((k, span, _, _)) = &p.longest
            && let Some(seg) = self.coachee_seg(*k, span)
        {
            evidence.push(Ev {
                meeting: *k,
                seg,
                quote: quote_of(&seg.text, Focus::Opening),
            });
        }
        for ev in self.longest_segs(|_| true, || Focus::Opening, 3) {
            if evidence.len() < 3 && !evidence.iter().any(|e: &Ev| std::ptr::eq(e.seg, ev.seg)) {
                evidence.push(ev);
            }
        }
        Some(Found {
            key: PatternKey::Dominates,
            growth: true,
            category: "talk_balance",
            title: "Dominates the airtime",
            observation: format!(
                "You had {}% of the {}, against a fair share of about {}% with {} speakers.",
                pct(p.share),
                basis(p),
                pct(p.fair),
                p.speakers_max
            ),
            impact: "When one voice fills the room, others contribute less and you hear fewer of the ideas and risks the team holds.",
            advice: "Hold your view until two others have spoken, then build on what they said.",
            severity: (p.share - p.fair) / OVER_SHARE_MARGIN,
            evidence,
        })
    }

    fn quiet(&self, p: &Pooled) -> Option<Found<'a>> {
        if !(p.speakers_max >= 2
            && p.speakers_max <= 8
            && p.meeting_turns >= 10
            && p.share < QUIET_FACTOR * p.fair)
        {
            return None;
        }
        Some(Found {
            key: PatternKey::Quiet,
            growth: true,
            category: "talk_balance",
            title: "Rarely heard",
            observation: format!(
                "You had {}% of the {}, well under a fair share of about {}%.",
                pct(p.share),
                basis(p),
                pct(p.fair)
            ),
            impact: "Your perspective carries less weight in decisions when it is voiced rarely, and the team cannot build on it.",
            advice: "Make one point or ask one question early in the meeting.",
            severity: (QUIET_FACTOR * p.fair - p.share) / (QUIET_FACTOR * p.fair).max(0.01) + 0.5,
            evidence: self.longest_segs(|_| true, || Focus::Opening, 2),
        })
    }

    fn monologue(&self, p: &Pooled) -> Option<Found<'a>> {
        let (k, span, words, secs) = p.longest.as_ref()?;
        let long = match secs {
            Some(s) => *s >= MONOLOGUE_SECONDS,
            None => *words >= MONOLOGUE_WORDS,
        };
        if !long {
            return None;
        }
        let seg = self.coachee_seg(*k, span)?;
        let size = match secs {
            Some(s) => format!("{:.1} minutes ({words} words)", s / 60.0),
            None => format!("{words} words"),
        };
        Some(Found {
            key: PatternKey::Monologue,
            growth: true,
            category: "listening",
            title: "Long monologues",
            observation: format!("Your longest turn ran {size} without a pause for others."),
            impact: "Listeners disengage after about two minutes of one voice, and questions or objections go unsaid.",
            advice: "Stop after your main point and ask a check-in question before going on.",
            severity: match secs {
                Some(s) => s / MONOLOGUE_SECONDS,
                None => *words as f64 / MONOLOGUE_WORDS as f64,
            },
            evidence: vec![Ev {
                meeting: *k,
                seg,
                quote: quote_of(&seg.text, Focus::Opening),
            }],
        })
    }

    fn few_questions(&self, p: &Pooled) -> Option<Found<'a>> {
        if !(p.turns >= MIN_TURNS
            && p.words >= 100
            && p.q_per_100_words() < FEW_QUESTIONS_PER_100_WORDS)
        {
            return None;
        }
        let evidence = self.longest_segs(|s| !s.text.contains('?'), || Focus::Opening, 2);
        if evidence.is_empty() {
            return None;
        }
        Some(Found {
            key: PatternKey::FewQuestions,
            growth: true,
            category: "questions",
            title: "Few questions",
            observation: format!(
                "You asked {} question(s) in {} words ({:.1} per 100 words); most of your turns were statements.",
                p.questions,
                p.words,
                p.q_per_100_words()
            ),
            impact: "Questions draw out what others know and signal that their view matters; without them, meetings become briefings.",
            advice: "Ask an open question (what, how, why) before proposing a solution.",
            severity: 1.0
                + (FEW_QUESTIONS_PER_100_WORDS - p.q_per_100_words()) / FEW_QUESTIONS_PER_100_WORDS,
            evidence,
        })
    }

    fn hedging(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Option<Found<'a>> {
        if !(p.words >= 100 && p.hedge_rate() >= HEDGE_RATE_HIGH) {
            return None;
        }
        let mut evidence = self.listed(
            metrics,
            |s| &s.hedge_span_ids,
            || Focus::Words(HEDGE_WORDS),
            3,
        );
        if evidence.is_empty() {
            evidence = self.listed(
                metrics,
                |s| &s.filler_span_ids,
                || Focus::Words(HEDGE_WORDS),
                3,
            );
        }
        if evidence.is_empty() {
            return None;
        }
        Some(Found {
            key: PatternKey::Hedging,
            growth: true,
            category: "filler_hedging",
            title: "Fillers and hedges soften your points",
            observation: format!(
                "About {:.1} fillers or hedges per 100 words (\"I think\", \"maybe\", \"just\", \"um\"), above the 4 per 100 that listeners start to notice.",
                p.hedge_rate()
            ),
            impact: "Hedged statements sound less certain than you are, so good recommendations get less weight.",
            advice: "State your recommendation first, in one plain sentence, then the reasons.",
            severity: p.hedge_rate() / HEDGE_RATE_HIGH,
            evidence,
        })
    }

    fn interrupts(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Option<Found<'a>> {
        if !(p.interruptions >= MIN_INTERRUPTIONS
            && p.interruptions as f64 >= 0.15 * p.turns as f64)
        {
            return None;
        }
        let evidence = self.listed(metrics, |s| &s.interruption_span_ids, || Focus::Opening, 3);
        if evidence.is_empty() {
            return None;
        }
        Some(Found {
            key: PatternKey::Interrupts,
            growth: true,
            category: "listening",
            title: "Cuts in before others finish",
            observation: format!(
                "You started speaking before the previous speaker had finished {} times.",
                p.interruptions
            ),
            impact: "Interruptions tell people their point was not worth finishing; over time they stop offering it.",
            advice: "Let the other person finish and count to two before you come in.",
            severity: p.interruptions as f64
                / (0.15 * p.turns.max(1) as f64).max(MIN_INTERRUPTIONS as f64),
            evidence,
        })
    }

    fn asks_questions(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Option<Found<'a>> {
        if !(p.questions >= 3 && p.q_per_100_words() >= GOOD_QUESTIONS_PER_100_WORDS) {
            return None;
        }
        let evidence = self.listed(metrics, |s| &s.question_span_ids, || Focus::Question, 3);
        if evidence.is_empty() {
            return None;
        }
        Some(Found {
            key: PatternKey::AsksQuestions,
            growth: false,
            category: "questions",
            title: "Asks questions",
            observation: format!(
                "You asked {} questions in {} turns, {:.1} per 100 words you spoke.",
                p.questions,
                p.turns,
                p.q_per_100_words()
            ),
            impact: "Questions bring out information and commitment from the people closest to the work.",
            advice: "Keep opening topics with a question before giving your view.",
            severity: p.q_per_100_words() / GOOD_QUESTIONS_PER_100_WORDS,
            evidence,
        })
    }

    fn invites(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Option<Found<'a>> {
        if p.inclusive < 1 {
            return None;
        }
        let evidence = self.listed(
            metrics,
            |s| &s.inclusive_question_span_ids,
            || Focus::Question,
            3,
        );
        if evidence.is_empty() {
            return None;
        }
        Some(Found {
            key: PatternKey::Invites,
            growth: false,
            category: "inclusion",
            title: "Invites others in",
            observation: format!(
                "You explicitly invited others' views {} time(s).",
                p.inclusive
            ),
            impact: "Invitations give quieter people a way in and widen the set of options the team considers.",
            advice: "Keep inviting named people, especially the quietest, before decisions.",
            severity: p.inclusive as f64,
            evidence,
        })
    }

    fn balanced(&self, p: &Pooled) -> Option<Found<'a>> {
        if !(p.speakers_max >= 2 && (p.share - p.fair).abs() <= BALANCED_MARGIN) {
            return None;
        }
        Some(Found {
            key: PatternKey::Balanced,
            growth: false,
            category: "talk_balance",
            title: "Balanced airtime",
            observation: format!(
                "You had {}% of the {}, close to a fair share of about {}%.",
                pct(p.share),
                basis(p),
                pct(p.fair)
            ),
            impact: "A balanced conversation lets you both lead and hear what others bring.",
            advice: "Keep sharing the floor as you do now.",
            severity: 1.0,
            evidence: self.longest_segs(|_| true, || Focus::Opening, 1),
        })
    }

    fn direct(&self, p: &Pooled) -> Option<Found<'a>> {
        if !(p.words >= 150 && p.hedge_rate() < HEDGE_RATE_LOW) {
            return None;
        }
        Some(Found {
            key: PatternKey::Direct,
            growth: false,
            category: "clarity",
            title: "Direct language",
            observation: format!(
                "Only about {:.1} fillers or hedges per 100 words: you say what you mean.",
                p.hedge_rate()
            ),
            impact: "Plain statements are easy to act on and make your recommendations credible.",
            advice: "Keep stating your point plainly, first.",
            severity: 1.0,
            evidence: self.longest_segs(|_| true, || Focus::NoWords(HEDGE_WORDS), 2),
        })
    }

    /// The fallback strength when no other fires, so every run names a measured strength.
    fn engaged(&self, p: &Pooled) -> Found<'a> {
        Found {
            key: PatternKey::Engaged,
            growth: false,
            category: "other",
            title: "Engaged contributor",
            observation: format!(
                "You took {} turn(s) and contributed {} words to the discussion.",
                p.turns.max(1),
                p.words
            ),
            impact: "Showing up with content gives the team something to build on.",
            advice: "Keep contributing; add a question to draw others in.",
            severity: 0.0,
            evidence: self.longest_segs(|_| true, || Focus::Opening, 2),
        }
    }

    /// Metrics were unavailable for the coachee (e.g. no words counted): cite their longest turn.
    fn engaged_without_metrics(&self) -> Found<'a> {
        Found {
            key: PatternKey::Engaged,
            growth: false,
            category: "other",
            title: "Engaged contributor",
            observation: "You contributed to the discussion.".to_string(),
            impact: "Showing up with content gives the team something to build on.",
            advice: "Keep contributing; add a question to draw others in.",
            severity: 0.0,
            evidence: self.longest_segs(|_| true, || Focus::Opening, 1),
        }
    }
}
