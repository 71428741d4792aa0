//! The `rules` provider: deterministic coaching from the conversation metrics.
//!
//! It is the embedded default (no API key, no network) and it must always pass Gate-1, so it
//! only ever writes quotes it cut from the coachee's own segments: each quote is one sentence of a
//! real segment (the one that shows the behaviour: the question, the hedge), clipped to at most
//! [`MAX_QUOTE_BYTES`] on a char and word boundary. Same input, same output, byte for byte.
//!
//! # Thresholds (per run; a baseline pack pools its three meetings)
//!
//! Fair share is `1 / n` for the `n` speakers who said anything (pooled: the mean over meetings).
//!
//! | pattern | kind | fires when |
//! |---|---|---|
//! | Dominates the airtime | growth, talk_balance | share ≥ fair + [`OVER_SHARE_MARGIN`] (15 points) |
//! | Rarely heard | growth, talk_balance | share < [`QUIET_FACTOR`] × fair (0.4) with ≤ 8 speakers and ≥ 10 turns in the meeting(s) |
//! | Long monologues | growth, listening | longest turn ≥ [`MONOLOGUE_SECONDS`] (150 s, Gong's "2.5 minutes"), or ≥ [`MONOLOGUE_WORDS`] (350) words without times |
//! | Few questions | growth, questions | ≥ [`MIN_TURNS`] turns, ≥ 100 words and < [`FEW_QUESTIONS_PER_100_WORDS`] (1) question per 100 words spoken |
//! | Fillers and hedges | growth, filler_hedging | ≥ 100 words and (fillers + hedges) per 100 words ≥ [`HEDGE_RATE_HIGH`] (4, Read.ai's 4 %) |
//! | Cuts in | growth, listening | ≥ [`MIN_INTERRUPTIONS`] (3) interruptions and ≥ 15 % of turns |
//! | Asks questions | strength, questions | ≥ 3 questions and ≥ [`GOOD_QUESTIONS_PER_100_WORDS`] (2) per 100 words spoken |
//! | Invites others in | strength, inclusion | ≥ 1 inclusive question ("what do you think", "anyone ...") |
//! | Balanced airtime | strength, talk_balance | within [`BALANCED_MARGIN`] (10 points) of fair share, ≥ 2 speakers |
//! | Direct language | strength, clarity | ≥ 150 words and (fillers + hedges) per 100 words < [`HEDGE_RATE_LOW`] (1.5) |
//! | Engaged contributor | strength, other | fallback when no other strength fires, so every run names a measured strength |
//!
//! Questions are counted per 100 words the coachee spoke, not per turn: someone who holds the floor
//! in a few long turns gets a high rate per turn from a handful of questions (the baseline samples:
//! 5 questions in 19 turns is 0.26 a turn, but 0.4 per 100 of 1,240 words), which would name
//! "asks questions" as the strength of a meeting run as a briefing.
//!
//! Growth patterns are ranked by how far past their threshold they are; the first is the "main
//! growth pattern" that keys the experiment catalogue ([`experiment_for`]). Strengths keep the
//! table's order. At most six patterns.
//!
//! An active experiment is judged (single meetings) by mapping its text to one measurable
//! behaviour (questions, invitations, turn length, hedging, interruptions, airtime) and reading
//! the metric and its segments; text that maps to none is judged `unclear`.

use coach_transcript::Segment;
use coach_transcript::metrics::{MeetingMetrics, SpeakerMetrics};
use serde_json::{Value, json};

use crate::analysis::{
    ActiveExperiment, Analysis, AnalysisError, AnalysisInput, RunType, Usage, finish,
};
use crate::gate1::{self, Gate1Context, SCHEMA_VERSION};
use crate::text::{clip, sentences};

/// The model name recorded for `rules` runs.
pub const RULES_MODEL: &str = "rules-v1";
/// The version recorded as the prompt version of `rules` runs (bump when thresholds change).
pub const RULES_VERSION: &str = "rules.v2";
/// Longest quote the analyzer writes.
pub const MAX_QUOTE_BYTES: usize = 200;
/// Share points above fair share that count as dominating.
pub const OVER_SHARE_MARGIN: f64 = 0.15;
/// Share points around fair share that count as balanced.
pub const BALANCED_MARGIN: f64 = 0.10;
/// Fraction of fair share under which the coachee is "rarely heard".
pub const QUIET_FACTOR: f64 = 0.4;
/// Longest turn in seconds that counts as a monologue problem.
pub const MONOLOGUE_SECONDS: f64 = 150.0;
/// Longest turn in words (no timestamps) that counts as a monologue problem.
pub const MONOLOGUE_WORDS: usize = 350;
/// Fewest turns before question habits are judged.
pub const MIN_TURNS: usize = 5;
/// Questions per 100 words spoken below which the coachee asks few questions.
pub const FEW_QUESTIONS_PER_100_WORDS: f64 = 1.0;
/// Questions per 100 words spoken from which asking questions is a strength.
pub const GOOD_QUESTIONS_PER_100_WORDS: f64 = 2.0;
/// Fillers + hedges per 100 words from which it is a growth pattern.
pub const HEDGE_RATE_HIGH: f64 = 4.0;
/// Fillers + hedges per 100 words under which language counts as direct.
pub const HEDGE_RATE_LOW: f64 = 1.5;
/// Fewest interruptions that count as a pattern.
pub const MIN_INTERRUPTIONS: usize = 3;

/// Words a quote about hedging should show (matched as whole words, case-insensitively).
const HEDGE_WORDS: &[&str] = &[
    "um",
    "uh",
    "er",
    "erm",
    "like",
    "you know",
    "i mean",
    "sort of",
    "kind of",
    "i think",
    "maybe",
    "perhaps",
    "probably",
    "just",
    "i guess",
    "basically",
    "actually",
    "literally",
];

/// One experiment from the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueExperiment {
    /// Title.
    pub title: &'static str,
    /// The behaviour to try.
    pub behavior: &'static str,
    /// How the coachee knows it worked.
    pub success_signal: &'static str,
    /// Meetings to try it in.
    pub target_meetings: u32,
}

/// What a pattern is about; keys the experiment catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKey {
    /// Talks far above fair share.
    Dominates,
    /// Talks far below fair share.
    Quiet,
    /// Very long turns.
    Monologue,
    /// Rarely asks questions.
    FewQuestions,
    /// Many fillers and hedges.
    Hedging,
    /// Interrupts often.
    Interrupts,
    /// Asks questions (strength).
    AsksQuestions,
    /// Invites others (strength).
    Invites,
    /// Balanced airtime (strength).
    Balanced,
    /// Direct language (strength).
    Direct,
    /// Fallback strength.
    Engaged,
}

/// The experiment proposed when `main_growth` is the main growth pattern (`None`: no growth
/// pattern fired, so a stretch experiment).
pub fn experiment_for(main_growth: Option<PatternKey>) -> CatalogueExperiment {
    let e = |title, behavior, success_signal, target_meetings| CatalogueExperiment {
        title,
        behavior,
        success_signal,
        target_meetings,
    };
    match main_growth {
        Some(PatternKey::Dominates) => e(
            "Speak last",
            "In each meeting, let at least two others give their view before you give yours, then build on what they said.",
            "Your talk share stays within 10 points of a fair share (1 / number of speakers).",
            3,
        ),
        Some(PatternKey::Monologue) => e(
            "Two-minute turns",
            "Keep each turn under two minutes: after your main point, stop and ask a check-in question before going on.",
            "Your longest turn is under two minutes (about 300 words) and others answer your check-ins.",
            3,
        ),
        Some(PatternKey::FewQuestions) => e(
            "Three open questions",
            "Ask at least three open questions (what, how, why) in each meeting before proposing a solution.",
            "At least three of your turns contain a question, and the answers shape the decision.",
            3,
        ),
        Some(PatternKey::Hedging) => e(
            "Land the point",
            "Open each key contribution with your recommendation in one plain sentence, without 'I think', 'maybe' or 'just'.",
            "Fewer than 2 fillers or hedges per 100 words, and your recommendations are restated by others.",
            3,
        ),
        Some(PatternKey::Interrupts) => e(
            "Let them land",
            "Wait until the other person has finished and count to two before you come in; if you must, ask to interrupt.",
            "At most one interruption per meeting.",
            3,
        ),
        Some(PatternKey::Quiet) => e(
            "Early voice",
            "Contribute one point or question in the first ten minutes of each meeting.",
            "Your talk share reaches at least half a fair share and others respond to your point.",
            3,
        ),
        _ => e(
            "Invite dissent",
            "Before closing a decision, ask the quietest participant for a concern or an alternative.",
            "In each meeting at least one invited question brings in someone who had not spoken yet.",
            3,
        ),
    }
}

/// One piece of evidence: a segment and a quote cut from it.
#[derive(Debug, Clone)]
struct Ev<'a> {
    meeting: usize,
    seg: &'a Segment,
    quote: &'a str,
}

#[derive(Debug, Clone)]
struct Found<'a> {
    key: PatternKey,
    growth: bool,
    category: &'static str,
    title: &'static str,
    observation: String,
    impact: &'static str,
    advice: &'static str,
    severity: f64,
    evidence: Vec<Ev<'a>>,
}

/// The coachee's numbers pooled over the run's meetings.
#[derive(Debug, Default)]
struct Pooled {
    present_in: usize,
    share: f64,
    fair: f64,
    speakers_max: usize,
    meeting_turns: usize,
    turns: usize,
    words: usize,
    questions: usize,
    inclusive: usize,
    interruptions: usize,
    fillers: usize,
    hedges: usize,
    time_based: bool,
    /// (meeting, span id, words, seconds) of the longest turn.
    longest: Option<(usize, String, usize, Option<f64>)>,
}

impl Pooled {
    fn q_per_100_words(&self) -> f64 {
        self.questions as f64 * 100.0 / self.words.max(1) as f64
    }
    fn hedge_rate(&self) -> f64 {
        (self.fillers + self.hedges) as f64 * 100.0 / self.words.max(1) as f64
    }
}

fn pool(metrics: &[MeetingMetrics], coachee: &str) -> Pooled {
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

/// Whether `word` (lowercase, may contain a space) occurs in `lower` as whole word(s).
fn has_word(lower: &str, word: &str) -> bool {
    let b = lower.as_bytes();
    let mut from = 0;
    while let Some(i) = lower[from..].find(word) {
        let start = from + i;
        let end = start + word.len();
        let before_ok = start == 0 || !b[start - 1].is_ascii_alphanumeric();
        let after_ok = end == b.len() || !b[end].is_ascii_alphanumeric();
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

enum Focus<'w> {
    Question,
    Words(&'w [&'w str]),
    NoWords(&'w [&'w str]),
    Opening,
}

/// A short verbatim quote from `text` that shows `focus`.
///
/// Among the sentences that show the focus, a whole sentence of at least four words that fits in
/// [`MAX_QUOTE_BYTES`] reads best; failing that the first matching sentence is clipped; with no
/// matching sentence the text's opening is used.
fn quote_of<'a>(text: &'a str, focus: Focus<'_>) -> &'a str {
    let sents = sentences(text);
    let shows = |s: &str| -> bool {
        match &focus {
            Focus::Question => s.ends_with('?'),
            Focus::Words(ws) => {
                let l = s.to_lowercase();
                ws.iter().any(|w| has_word(&l, w))
            }
            Focus::NoWords(ws) => {
                let l = s.to_lowercase();
                !ws.iter().any(|w| has_word(&l, w))
            }
            Focus::Opening => true,
        }
    };
    let readable = |s: &str| s.len() <= MAX_QUOTE_BYTES && s.split_whitespace().count() >= 4;
    let pick = sents
        .iter()
        .find(|s| shows(s) && readable(s))
        .or_else(|| sents.iter().find(|s| shows(s)))
        .or_else(|| sents.iter().find(|s| readable(s)))
        .or(sents.first())
        .copied()
        .unwrap_or(text.trim());
    clip(pick, MAX_QUOTE_BYTES)
}

struct Run<'a> {
    input: &'a AnalysisInput,
    ctx: Gate1Context<'a>,
}

impl<'a> Run<'a> {
    /// The coachee's segment `span` of meeting `k` (metric span ids are per meeting: `S12`).
    fn coachee_seg(&self, k: usize, span: &str) -> Option<&'a Segment> {
        let t = self.input.meetings.get(k)?;
        t.segment(span)
            .filter(|s| s.speaker == self.input.coachee && !s.text.trim().is_empty())
    }

    fn coachee_segs(&self) -> impl Iterator<Item = (usize, &'a Segment)> + '_ {
        let coachee = self.input.coachee.as_str();
        self.input
            .meetings
            .iter()
            .enumerate()
            .flat_map(move |(k, t)| {
                t.segments
                    .iter()
                    .filter(move |s| s.speaker == coachee && !s.text.trim().is_empty())
                    .map(move |s| (k, s))
            })
    }

    /// Evidence from span-id lists per meeting, interleaved across meetings, at most `max`.
    fn listed(
        &self,
        metrics: &'a [MeetingMetrics],
        list: impl Fn(&'a SpeakerMetrics) -> &'a [String],
        focus: impl Fn() -> Focus<'static>,
        max: usize,
    ) -> Vec<Ev<'a>> {
        let lists: Vec<&[String]> = metrics
            .iter()
            .map(|m| m.speaker(&self.input.coachee).map(&list).unwrap_or(&[]))
            .collect();
        let mut out = Vec::new();
        let longest = lists.iter().map(|l| l.len()).max().unwrap_or(0);
        'outer: for i in 0..longest {
            for (k, l) in lists.iter().enumerate() {
                if let Some(seg) = l.get(i).and_then(|id| self.coachee_seg(k, id)) {
                    out.push(Ev {
                        meeting: k,
                        seg,
                        quote: quote_of(&seg.text, focus()),
                    });
                    if out.len() >= max {
                        break 'outer;
                    }
                }
            }
        }
        out
    }

    /// The coachee's longest segments matching `keep`, longest first, at most `max`.
    fn longest_segs(
        &self,
        keep: impl Fn(&Segment) -> bool,
        focus: impl Fn() -> Focus<'static>,
        max: usize,
    ) -> Vec<Ev<'a>> {
        let mut segs: Vec<(usize, &'a Segment, usize)> = self
            .coachee_segs()
            .filter(|(_, s)| keep(s))
            .map(|(k, s)| (k, s, s.word_count()))
            .collect();
        // Stable order for ties keeps the output deterministic.
        segs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        segs.into_iter()
            .take(max)
            .map(|(k, seg, _)| Ev {
                meeting: k,
                seg,
                quote: quote_of(&seg.text, focus()),
            })
            .collect()
    }

    fn patterns(&self, metrics: &'a [MeetingMetrics], p: &Pooled) -> Vec<Found<'a>> {
        let mut found = Vec::new();
        let pct = |x: f64| (x * 100.0).round();
        let basis = if p.time_based {
            "talk time"
        } else {
            "words spoken"
        };
        let multi = p.speakers_max >= 2;
        // Growth patterns.
        if multi && p.share >= p.fair + OVER_SHARE_MARGIN {
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
                if evidence.len() < 3 && !evidence.iter().any(|e: &Ev| std::ptr::eq(e.seg, ev.seg))
                {
                    evidence.push(ev);
                }
            }
            found.push(Found {
                key: PatternKey::Dominates,
                growth: true,
                category: "talk_balance",
                title: "Dominates the airtime",
                observation: format!(
                    "You had {}% of the {basis}, against a fair share of about {}% with {} speakers.",
                    pct(p.share),
                    pct(p.fair),
                    p.speakers_max
                ),
                impact: "When one voice fills the room, others contribute less and you hear fewer of the ideas and risks the team holds.",
                advice: "Hold your view until two others have spoken, then build on what they said.",
                severity: (p.share - p.fair) / OVER_SHARE_MARGIN,
                evidence,
            });
        }
        if multi && p.speakers_max <= 8 && p.meeting_turns >= 10 && p.share < QUIET_FACTOR * p.fair
        {
            found.push(Found {
                key: PatternKey::Quiet,
                growth: true,
                category: "talk_balance",
                title: "Rarely heard",
                observation: format!(
                    "You had {}% of the {basis}, well under a fair share of about {}%.",
                    pct(p.share),
                    pct(p.fair)
                ),
                impact: "Your perspective carries less weight in decisions when it is voiced rarely, and the team cannot build on it.",
                advice: "Make one point or ask one question early in the meeting.",
                severity: (QUIET_FACTOR * p.fair - p.share) / (QUIET_FACTOR * p.fair).max(0.01) + 0.5,
                evidence: self.longest_segs(|_| true, || Focus::Opening, 2),
            });
        }
        if let Some((k, span, words, secs)) = &p.longest {
            let long = match secs {
                Some(s) => *s >= MONOLOGUE_SECONDS,
                None => *words >= MONOLOGUE_WORDS,
            };
            if long && let Some(seg) = self.coachee_seg(*k, span) {
                let size = match secs {
                    Some(s) => format!("{:.1} minutes ({words} words)", s / 60.0),
                    None => format!("{words} words"),
                };
                found.push(Found {
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
                    evidence: vec![Ev { meeting: *k, seg, quote: quote_of(&seg.text, Focus::Opening) }],
                });
            }
        }
        if p.turns >= MIN_TURNS
            && p.words >= 100
            && p.q_per_100_words() < FEW_QUESTIONS_PER_100_WORDS
        {
            let evidence = self.longest_segs(|s| !s.text.contains('?'), || Focus::Opening, 2);
            if !evidence.is_empty() {
                found.push(Found {
                    key: PatternKey::FewQuestions,
                    growth: true,
                    category: "questions",
                    title: "Few questions",
                    observation: format!(
                        "You asked {} question(s) in {} words ({:.1} per 100 words); most of your turns were statements.",
                        p.questions, p.words, p.q_per_100_words()
                    ),
                    impact: "Questions draw out what others know and signal that their view matters; without them, meetings become briefings.",
                    advice: "Ask an open question (what, how, why) before proposing a solution.",
                    severity: 1.0
                        + (FEW_QUESTIONS_PER_100_WORDS - p.q_per_100_words())
                            / FEW_QUESTIONS_PER_100_WORDS,
                    evidence,
                });
            }
        }
        if p.words >= 100 && p.hedge_rate() >= HEDGE_RATE_HIGH {
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
            if !evidence.is_empty() {
                found.push(Found {
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
                });
            }
        }
        if p.interruptions >= MIN_INTERRUPTIONS && p.interruptions as f64 >= 0.15 * p.turns as f64 {
            let evidence = self.listed(metrics, |s| &s.interruption_span_ids, || Focus::Opening, 3);
            if !evidence.is_empty() {
                found.push(Found {
                    key: PatternKey::Interrupts,
                    growth: true,
                    category: "listening",
                    title: "Cuts in before others finish",
                    observation: format!("You started speaking before the previous speaker had finished {} times.", p.interruptions),
                    impact: "Interruptions tell people their point was not worth finishing; over time they stop offering it.",
                    advice: "Let the other person finish and count to two before you come in.",
                    severity: p.interruptions as f64 / (0.15 * p.turns.max(1) as f64).max(MIN_INTERRUPTIONS as f64),
                    evidence,
                });
            }
        }
        found.sort_by(|a, b| b.severity.total_cmp(&a.severity));
        // Strengths.
        let mut strengths = Vec::new();
        if p.questions >= 3 && p.q_per_100_words() >= GOOD_QUESTIONS_PER_100_WORDS {
            let evidence = self.listed(metrics, |s| &s.question_span_ids, || Focus::Question, 3);
            if !evidence.is_empty() {
                strengths.push(Found {
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
                });
            }
        }
        if p.inclusive >= 1 {
            let evidence = self.listed(
                metrics,
                |s| &s.inclusive_question_span_ids,
                || Focus::Question,
                3,
            );
            if !evidence.is_empty() {
                strengths.push(Found {
                    key: PatternKey::Invites,
                    growth: false,
                    category: "inclusion",
                    title: "Invites others in",
                    observation: format!("You explicitly invited others' views {} time(s).", p.inclusive),
                    impact: "Invitations give quieter people a way in and widen the set of options the team considers.",
                    advice: "Keep inviting named people, especially the quietest, before decisions.",
                    severity: p.inclusive as f64,
                    evidence,
                });
            }
        }
        if multi && (p.share - p.fair).abs() <= BALANCED_MARGIN {
            strengths.push(Found {
                key: PatternKey::Balanced,
                growth: false,
                category: "talk_balance",
                title: "Balanced airtime",
                observation: format!(
                    "You had {}% of the {basis}, close to a fair share of about {}%.",
                    pct(p.share),
                    pct(p.fair)
                ),
                impact: "A balanced conversation lets you both lead and hear what others bring.",
                advice: "Keep sharing the floor as you do now.",
                severity: 1.0,
                evidence: self.longest_segs(|_| true, || Focus::Opening, 1),
            });
        }
        if p.words >= 150 && p.hedge_rate() < HEDGE_RATE_LOW {
            let evidence = self.longest_segs(|_| true, || Focus::NoWords(HEDGE_WORDS), 2);
            strengths.push(Found {
                key: PatternKey::Direct,
                growth: false,
                category: "clarity",
                title: "Direct language",
                observation: format!("Only about {:.1} fillers or hedges per 100 words: you say what you mean.", p.hedge_rate()),
                impact: "Plain statements are easy to act on and make your recommendations credible.",
                advice: "Keep stating your point plainly, first.",
                severity: 1.0,
                evidence,
            });
        }
        if strengths.is_empty() {
            strengths.push(Found {
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
            });
        }
        // Strengths keep their discovery order (most specific first); growth first overall.
        found.extend(strengths);
        found.retain(|f| !f.evidence.is_empty());
        found.truncate(6);
        if found.is_empty() {
            // Metrics were unavailable for the coachee (e.g. no words counted): cite their longest turn.
            found.push(Found {
                key: PatternKey::Engaged,
                growth: false,
                category: "other",
                title: "Engaged contributor",
                observation: "You contributed to the discussion.".to_string(),
                impact: "Showing up with content gives the team something to build on.",
                advice: "Keep contributing; add a question to draw others in.",
                severity: 0.0,
                evidence: self.longest_segs(|_| true, || Focus::Opening, 1),
            });
        }
        found
    }

    fn evidence_json(&self, evidence: &[Ev<'_>]) -> Value {
        Value::Array(
            evidence
                .iter()
                .map(|e| json!({"span_id": self.ctx.span_id(e.meeting, e.seg), "quote": e.quote}))
                .collect(),
        )
    }

    fn attempt(&self, exp: &ActiveExperiment, metrics: &'a [MeetingMetrics], p: &Pooled) -> Value {
        let b = classify(exp);
        let (attempted, evidence, note): (&str, Vec<Ev<'a>>, String) = if b
            == Behaviour::Interruptions
        {
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
        } else if b == Behaviour::Invitations {
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
        } else if b == Behaviour::Questions {
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
        } else if b == Behaviour::TurnLength {
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
        } else if b == Behaviour::Hedging {
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
        } else if b == Behaviour::Airtime {
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
        } else if b == Behaviour::EarlyVoice {
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
        } else {
            ("unclear", Vec::new(), "The rules analyzer could not map this experiment to a measurable behaviour; judge it from the transcript.".into())
        };
        // A "yes" must cite the coachee: the helpers above only return coachee segments, and
        // an empty list degrades to "unclear" so Gate-1 always holds.
        let attempted = if attempted == "yes" && evidence.is_empty() {
            "unclear"
        } else {
            attempted
        };
        json!({"attempted": attempted, "evidence": self.evidence_json(&evidence), "note": note})
    }
}

/// The measurable behaviour an experiment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Fewer interruptions.
    Interruptions,
    /// Speaking up early.
    EarlyVoice,
    /// Shorter turns.
    TurnLength,
    /// Fewer fillers and hedges.
    Hedging,
    /// Less airtime.
    Airtime,
    /// Inviting others.
    Invitations,
    /// More questions.
    Questions,
    /// Not mapped.
    Unknown,
}

/// Maps an experiment's title and behaviour text to the behaviour the metrics can judge.
/// Checked in this order because texts mention several things ("ask a check-in question" is
/// about turn length, "one point or question early" about speaking up).
pub fn classify(exp: &ActiveExperiment) -> Behaviour {
    let text = format!("{} {}", exp.title, exp.behavior).to_lowercase();
    let any = |ws: &[&str]| ws.iter().any(|w| text.contains(w));
    if any(&["interrupt", "let them land", "count to two"]) {
        Behaviour::Interruptions
    } else if any(&[
        "early voice",
        "first ten minutes",
        "speak up",
        "early in the meeting",
    ]) {
        Behaviour::EarlyVoice
    } else if any(&[
        "monologue",
        "two-minute",
        "two minutes",
        "check-in",
        "concise",
        "shorter turn",
    ]) {
        Behaviour::TurnLength
    } else if any(&[
        "hedge",
        "filler",
        "land the point",
        "plain sentence",
        "recommendation first",
    ]) {
        Behaviour::Hedging
    } else if any(&[
        "speak last",
        "airtime",
        "talk share",
        "fair share",
        "talk less",
    ]) {
        Behaviour::Airtime
    } else if any(&[
        "invite",
        "quiet",
        "dissent",
        "include",
        "inclusion",
        "everyone",
    ]) {
        Behaviour::Invitations
    } else if any(&["question"]) {
        Behaviour::Questions
    } else {
        Behaviour::Unknown
    }
}

/// The deterministic analysis of `input` (input already checked by the facade, re-checked here).
pub fn analyze(input: &AnalysisInput) -> Result<Analysis, AnalysisError> {
    input.check()?;
    let metrics = input.metrics();
    let output = build_output(input, &metrics);
    let ctx = Gate1Context::new(
        input.run_type,
        input.coachee.clone(),
        input.active_experiment.is_some(),
        &input.meetings,
    );
    let report = gate1::validate(&output, &ctx);
    if !report.passed {
        // A bug in this module, not a user error: surface the report rather than a bad card.
        tracing::error!(
            failures = report.failures.len(),
            "rules analyzer output failed Gate-1"
        );
        return Err(AnalysisError::Gate1Failed {
            report,
            last_output: Some(output),
            attempts: 1,
            usage: Usage::default(),
        });
    }
    Ok(finish(
        output,
        report,
        ("rules", RULES_MODEL.to_string(), RULES_VERSION),
        Usage::default(),
        1,
        &metrics,
    ))
}

/// The Gate-1 output for `input` from precomputed `metrics` (one per meeting).
pub fn build_output(input: &AnalysisInput, metrics: &[MeetingMetrics]) -> Value {
    let ctx = Gate1Context::new(
        input.run_type,
        input.coachee.clone(),
        input.active_experiment.is_some(),
        &input.meetings,
    );
    let run = Run { input, ctx };
    let pooled = pool(metrics, &input.coachee);
    let found = run.patterns(metrics, &pooled);
    let patterns: Vec<Value> = found
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "id": format!("P{}", i + 1),
                "kind": if f.growth { "growth" } else { "strength" },
                "category": f.category,
                "title": f.title,
                "observation": f.observation,
                "impact": f.impact,
                "evidence": run.evidence_json(&f.evidence),
            })
        })
        .collect();
    let main_growth = found.iter().find(|f| f.growth);
    let main_strength = found.iter().find(|f| !f.growth);
    let keep_doing: Vec<&str> = found
        .iter()
        .filter(|f| !f.growth)
        .map(|f| f.advice)
        .collect();
    let mut try_next: Vec<&str> = found
        .iter()
        .filter(|f| f.growth)
        .map(|f| f.advice)
        .take(3)
        .collect();
    let proposal = experiment_for(main_growth.map(|f| f.key));
    if try_next.is_empty() {
        try_next.push(proposal.behavior);
    }
    let headline = match (main_strength, main_growth) {
        (Some(s), Some(g)) => format!("Keep: {}. Next: {}.", s.title, g.title.to_lowercase()),
        (None, Some(g)) => format!("Focus next: {}.", g.title.to_lowercase()),
        (Some(s), None) => format!("Strong meeting habits — keep: {}.", s.title.to_lowercase()),
        (None, None) => "Coaching card".to_string(),
    };
    let meetings = match input.run_type {
        RunType::SingleMeeting => "this meeting".to_string(),
        RunType::BaselinePack => format!("{} meetings", input.meetings.len()),
    };
    let mut summary = format!(
        "Across {meetings}, {} took {} turn(s) and spoke {} words, about {:.0}% of the conversation, and asked {} question(s).",
        input.coachee,
        pooled.turns,
        pooled.words,
        pooled.share * 100.0,
        pooled.questions
    );
    if let Some(s) = main_strength {
        summary.push_str(&format!(" Main strength: {}.", s.title.to_lowercase()));
    }
    if let Some(g) = main_growth {
        summary.push_str(&format!(" Main growth area: {}.", g.title.to_lowercase()));
    }
    let experiment_proposal = match input.run_type {
        RunType::BaselinePack => json!({
            "title": proposal.title,
            "behavior": proposal.behavior,
            "success_signal": proposal.success_signal,
            "target_meetings": proposal.target_meetings,
        }),
        RunType::SingleMeeting => Value::Null,
    };
    let experiment_attempt = match (&input.active_experiment, input.run_type) {
        (Some(e), RunType::SingleMeeting) => run.attempt(e, metrics, &pooled),
        _ => Value::Null,
    };
    json!({
        "schema_version": SCHEMA_VERSION,
        "run_type": input.run_type.as_str(),
        "coachee_speaker": input.coachee,
        "summary": summary,
        "patterns": patterns,
        "coaching_card": {"headline": headline, "keep_doing": keep_doing, "try_next": try_next},
        "experiment_proposal": experiment_proposal,
        "experiment_attempt": experiment_attempt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_experiment_maps_to_its_own_behaviour() {
        let cases = [
            (Some(PatternKey::Dominates), Behaviour::Airtime),
            (Some(PatternKey::Monologue), Behaviour::TurnLength),
            (Some(PatternKey::FewQuestions), Behaviour::Questions),
            (Some(PatternKey::Hedging), Behaviour::Hedging),
            (Some(PatternKey::Interrupts), Behaviour::Interruptions),
            (Some(PatternKey::Quiet), Behaviour::EarlyVoice),
            (None, Behaviour::Invitations),
        ];
        for (key, want) in cases {
            let e = experiment_for(key);
            let exp = ActiveExperiment {
                title: e.title.into(),
                behavior: e.behavior.into(),
                success_signal: e.success_signal.into(),
            };
            assert_eq!(classify(&exp), want, "{}", e.title);
        }
        let odd = ActiveExperiment {
            title: "Walk more".into(),
            behavior: "Take a walk".into(),
            success_signal: String::new(),
        };
        assert_eq!(classify(&odd), Behaviour::Unknown);
    }

    #[test]
    fn whole_word_match() {
        assert!(has_word("well, i think so", "i think"));
        assert!(!has_word("unlikely", "like"));
        assert!(has_word("like this", "like"));
    }

    #[test]
    fn quotes_prefer_the_focus_sentence() {
        let t = "We shipped it on time. Right? What do you all think? I guess it is fine.";
        assert_eq!(quote_of(t, Focus::Question), "What do you all think?");
        assert_eq!(
            quote_of(t, Focus::Words(HEDGE_WORDS)),
            "I guess it is fine."
        );
        assert_eq!(quote_of(t, Focus::Opening), "We shipped it on time.");
        assert_eq!(quote_of("Right?", Focus::Question), "Right?");
    }
}
