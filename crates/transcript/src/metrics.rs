//! Conversation metrics: how much each person talks, how they hold and yield the floor, how they
//! ask, and how they hedge.
//!
//! Everything is computed in one pass over the segments, scanning each segment's text once
//! without allocating per word. Only participants count: pseudo-speakers (`Break`, `Outro`)
//! end a monologue but add no talk.
//!
//! # Definitions
//! - **Basis**: `time` when every participant segment has start and end times, else `words`
//!   (plain text, QMSum). Shares and rates say which they used through [`MeetingMetrics::basis`].
//! - **Backchannel**: a segment of at most four words, with no question mark, made only of
//!   [`BACKCHANNEL_WORDS`] or equal to one of [`BACKCHANNEL_PHRASES`] ("mm-hmm", "yeah",
//!   "right", "got it"), or a segment with no words at all (only `{vocalsound}`). It counts as talk
//!   (words, time) but does not take the floor: it is not a turn, not an interruption, and it
//!   does not end the other speaker's monologue.
//! - **Turn / monologue**: a maximal run in which one speaker holds the floor; other people's
//!   backchannels inside the run do not break it. `turns` counts them; the *longest monologue* is
//!   the longest run (by seconds on the time basis, by words otherwise, after Gong's "longest
//!   monologue"), pointing at the run's first segment.
//! - **Talk share**: the speaker's talk seconds (sum of segment durations) over all participants'
//!   talk seconds, or words over words on the word basis. Gong reports a talk ratio of about
//!   43:57 (rep:customer) for top sales performers.
//! - **Questions**: sentences ending in `?`. Rate per 10 minutes of meeting (time basis) or per
//!   1,000 meeting words (word basis).
//! - **Inclusive questions**: questions containing one of [`INCLUSIVE_PHRASES`]
//!   ("what do you think", "any thoughts").
//! - **Interruptions**: a floor-taking segment that starts more than 10 ms before the previous
//!   floor holder's segment ends (overlap), or that follows a segment left cut off (`--`, an em
//!   dash, `{disfmarker}` at its end). Counted for the one who takes the floor; the one
//!   interrupted gets `interrupted`.
//! - **Fillers** per 100 words: [`FILLER_WORDS`] anywhere, and [`FILLER_PHRASES`] ("you know",
//!   "I mean", "like") only when set off by a comma, so "do you know the way" is not one.
//!   Microsoft Speaker Coach flags fillers; Read.ai treats under 4 per 100 words as healthy.
//! - **Hedges** per 100 words: [`HEDGE_WORDS`] and [`HEDGE_PHRASES`] ("I think", "sort of").
//! - **Pace**: words per minute of the speaker's own talk time (time basis only). Microsoft
//!   Speaker Coach suggests 100–165 wpm.
//! - **Speaker switches per minute**: floor changes between participants (backchannels excluded)
//!   per minute of meeting (time basis only).

use serde::{Deserialize, Serialize};

use crate::label::is_person;
use crate::model::{Segment, Transcript};
use crate::text::trim_punct;

/// Single words counted as fillers wherever they occur.
pub const FILLER_WORDS: &[&str] = &["um", "umm", "uh", "uhh", "uhm", "erm", "er", "ah"];
/// Phrases counted as fillers only when followed by a comma ("you know, it's"), and for `like`
/// also preceded by one or opening the sentence ("it's, like, hard").
pub const FILLER_PHRASES: &[&str] = &["you know", "i mean", "like"];
/// Single-word hedges.
pub const HEDGE_WORDS: &[&str] = &[
    "maybe",
    "perhaps",
    "probably",
    "possibly",
    "presumably",
    "arguably",
    "somewhat",
    "apparently",
];
/// Multi-word hedges.
pub const HEDGE_PHRASES: &[&str] = &[
    "i think",
    "i guess",
    "i suppose",
    "i believe",
    "i feel like",
    "sort of",
    "kind of",
    "a little bit",
    "not sure",
    "i don't know",
    "it seems",
];
/// Words that, alone in a short segment, make it a backchannel.
pub const BACKCHANNEL_WORDS: &[&str] = &[
    "mm-hmm",
    "mhm",
    "mm",
    "hmm",
    "uh-huh",
    "yeah",
    "yes",
    "yep",
    "yup",
    "right",
    "okay",
    "ok",
    "sure",
    "oh",
    "ah",
    "uh",
    "um",
    "wow",
    "cool",
    "nice",
    "exactly",
    "true",
    "totally",
    "absolutely",
    "gotcha",
    "indeed",
    "alright",
];
/// Whole short segments that are backchannels.
pub const BACKCHANNEL_PHRASES: &[&str] = &[
    "i see",
    "got it",
    "that's right",
    "makes sense",
    "fair enough",
    "of course",
    "for sure",
    "sounds good",
];
/// Phrases that make a question an invitation to others.
pub const INCLUSIVE_PHRASES: &[&str] = &[
    "what do you think",
    "what do you all think",
    "what does everyone think",
    "what does everybody think",
    "any thoughts",
    "your thoughts",
    "how do you feel",
    "how does that sound",
    "does anyone",
    "does anybody",
    "anyone else",
    "anybody else",
    "what would you",
    "how would you",
    "your take",
    "your view",
    "your opinion",
    "your perspective",
    "do you agree",
    "any questions",
    "what am i missing",
    "would you add",
];

/// Overlap below this many seconds is cue-boundary jitter, not an interruption.
const OVERLAP_TOLERANCE: f64 = 0.01;
const BACKCHANNEL_MAX_WORDS: usize = 4;

/// Whether shares and rates are computed from timestamps or from word counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Every participant segment has start and end times.
    Time,
    /// At least one segment lacks times; words stand in for time.
    Words,
}

/// The longest run in which a speaker held the floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Monologue {
    /// Words in the run (the speaker's own).
    pub words: usize,
    /// From the start of the first to the end of the last segment, when timestamps exist.
    pub seconds: Option<f64>,
    /// The first segment of the run (`S12`); empty when the speaker never held the floor.
    pub span_id: String,
}

/// Measures for one speaker. `*_span_ids` list the segments where each behaviour happens, in
/// document order, so the coaching can quote them as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerMetrics {
    pub speaker: String,
    /// 0..1, on [`MeetingMetrics::basis`].
    pub talk_share: f64,
    /// Sum of segment durations (time basis only).
    pub talk_seconds: Option<f64>,
    /// Runs holding the floor.
    pub turns: usize,
    /// Segments that were backchannels.
    pub backchannels: usize,
    pub words: usize,
    /// Words in floor-holding runs divided by `turns`.
    pub avg_monologue_words: f64,
    pub longest_monologue: Monologue,
    pub questions: usize,
    /// Per 10 minutes (time basis) or per 1,000 meeting words (word basis).
    pub questions_rate: f64,
    pub inclusive_questions: usize,
    /// Times this speaker took the floor by overlap or after a cut-off.
    pub interruptions: usize,
    /// Times this speaker was interrupted.
    pub interrupted: usize,
    pub fillers: usize,
    pub fillers_per_100_words: f64,
    pub hedges: usize,
    pub hedges_per_100_words: f64,
    /// Disfluency tokens removed from this speaker's text (`{disfmarker}`, `[laughs]`).
    pub disfluencies: u32,
    /// Words per minute of own talk time (time basis only).
    pub pace_wpm: Option<f64>,
    pub question_span_ids: Vec<String>,
    pub inclusive_question_span_ids: Vec<String>,
    pub interruption_span_ids: Vec<String>,
    pub filler_span_ids: Vec<String>,
    pub hedge_span_ids: Vec<String>,
}

/// Measures for the whole meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingMetrics {
    pub basis: Basis,
    /// From the first start to the last end (time basis only).
    pub duration_seconds: Option<f64>,
    /// Words spoken by participants.
    pub total_words: usize,
    /// Floor-holding runs, all participants.
    pub total_turns: usize,
    pub speaker_switches: usize,
    pub speaker_switches_per_minute: Option<f64>,
    pub speakers: Vec<SpeakerMetrics>,
    /// The word lists used, so a reader can check what was counted.
    pub lists: WordLists,
}

/// The lists behind the counts (copies of the `pub const`s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordLists {
    pub filler_words: Vec<String>,
    pub filler_phrases: Vec<String>,
    pub hedge_words: Vec<String>,
    pub hedge_phrases: Vec<String>,
    pub backchannel_words: Vec<String>,
    pub backchannel_phrases: Vec<String>,
    pub inclusive_phrases: Vec<String>,
}

impl Default for WordLists {
    fn default() -> Self {
        let v = |l: &[&str]| l.iter().map(|s| (*s).to_string()).collect();
        WordLists {
            filler_words: v(FILLER_WORDS),
            filler_phrases: v(FILLER_PHRASES),
            hedge_words: v(HEDGE_WORDS),
            hedge_phrases: v(HEDGE_PHRASES),
            backchannel_words: v(BACKCHANNEL_WORDS),
            backchannel_phrases: v(BACKCHANNEL_PHRASES),
            inclusive_phrases: v(INCLUSIVE_PHRASES),
        }
    }
}

impl MeetingMetrics {
    /// The metrics of one speaker, by exact label.
    pub fn speaker(&self, label: &str) -> Option<&SpeakerMetrics> {
        self.speakers.iter().find(|s| s.speaker == label)
    }
}

/// What one scan of a segment's text found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct TextStats {
    pub words: usize,
    pub questions: usize,
    pub inclusive: usize,
    pub fillers: usize,
    pub hedges: usize,
}

/// A token lowercased into a stack buffer. List words are short ASCII, so longer or non-ASCII
/// tokens simply never match; this keeps the per-word work allocation-free and cheap.
#[derive(Clone, Copy)]
struct Lower {
    buf: [u8; 15],
    len: u8,
}

impl Lower {
    const EMPTY: Lower = Lower {
        buf: [0; 15],
        len: 0,
    };

    fn new(token: &str) -> Lower {
        let mut l = Lower::EMPTY;
        let mut n = 0usize;
        for c in token.chars() {
            // Curly apostrophes are common in exported transcripts: "don’t".
            let c = if c == '\u{2019}' { '\'' } else { c };
            if !c.is_ascii() || n == l.buf.len() {
                return Lower::EMPTY;
            }
            l.buf[n] = (c as u8).to_ascii_lowercase();
            n += 1;
        }
        l.len = n as u8;
        l
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn is(&self, word: &str) -> bool {
        self.bytes() == word.as_bytes()
    }
}

fn in_list(tok: &Lower, list: &[&str]) -> bool {
    tok.len > 0 && list.iter().any(|w| tok.is(w))
}

/// Whether the window (most recent last) ends with `phrase`. The cheap last-word test runs
/// first, so most tokens cost one short comparison per phrase.
fn ends_with_phrase(window: &[Lower], phrase: &str) -> bool {
    let Some(last) = window.last() else {
        return false;
    };
    let p = phrase.as_bytes();
    let l = last.bytes();
    if l.is_empty() || !p.ends_with(l) || (p.len() > l.len() && p[p.len() - l.len() - 1] != b' ') {
        return false;
    }
    let mut n = window.len();
    for w in phrase.rsplit(' ') {
        if n == 0 || !window[n - 1].is(w) {
            return false;
        }
        n -= 1;
    }
    true
}

fn phrase_in(hay: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| crate::text::contains_ci(hay, p))
}

/// Scan a segment's text once: words, questions, inclusive questions, fillers, hedges.
pub(crate) fn scan(text: &str) -> TextStats {
    let mut st = TextStats::default();
    // Last few lowercased tokens of the current sentence, most recent last.
    let mut window = [Lower::EMPTY; 4];
    let mut len = 0usize;
    let mut prev_raw_comma = false;
    let mut sentence_start = 0usize;
    let base = text.as_ptr() as usize;
    for raw in text.split_whitespace() {
        let tok = trim_punct(raw);
        let offset = raw.as_ptr() as usize - base;
        let sentence_open = len == 0;
        let comma = raw.ends_with(',');
        if !tok.is_empty() {
            st.words += 1;
            if len == window.len() {
                window.rotate_left(1);
                len -= 1;
            }
            let low = Lower::new(tok);
            window[len] = low;
            len += 1;
            let w = &window[..len];
            if in_list(&low, FILLER_WORDS) {
                st.fillers += 1;
            } else if comma && low.len > 0 {
                for p in FILLER_PHRASES {
                    if ends_with_phrase(w, p) {
                        let single = !p.contains(' ');
                        if !single || prev_raw_comma || sentence_open {
                            st.fillers += 1;
                            break;
                        }
                    }
                }
            }
            if low.len > 0
                && (in_list(&low, HEDGE_WORDS)
                    || HEDGE_PHRASES.iter().any(|p| ends_with_phrase(w, p)))
            {
                st.hedges += 1;
            }
        }
        prev_raw_comma = comma;
        let end = raw.trim_end_matches(['"', '\'', ')', '\u{201d}', '\u{2019}']);
        if end.ends_with('?') {
            st.questions += 1;
            let sentence = &text[sentence_start..offset + raw.len()];
            if phrase_in(sentence, INCLUSIVE_PHRASES) {
                st.inclusive += 1;
            }
        }
        if end.ends_with(['.', '!', '?', '\u{2026}']) {
            len = 0;
            sentence_start = offset + raw.len();
        }
    }
    st
}

/// Whether a segment only signals listening (see the module doc).
pub fn is_backchannel(text: &str, words: usize) -> bool {
    if words == 0 {
        return true;
    }
    if words > BACKCHANNEL_MAX_WORDS || text.contains('?') {
        return false;
    }
    let tokens = text
        .split_whitespace()
        .map(trim_punct)
        .filter(|t| !t.is_empty())
        .map(Lower::new);
    if tokens.clone().all(|t| in_list(&t, BACKCHANNEL_WORDS)) {
        return true;
    }
    BACKCHANNEL_PHRASES.iter().any(|p| {
        let mut it = tokens.clone();
        p.split(' ').all(|w| it.next().is_some_and(|t| t.is(w))) && it.next().is_none()
    })
}

#[derive(Default)]
struct Acc {
    seconds: f64,
    words: usize,
    run_words: usize,
    turns: usize,
    backchannels: usize,
    longest: Monologue,
    longest_key: f64,
    questions: usize,
    inclusive: usize,
    interruptions: usize,
    interrupted: usize,
    fillers: usize,
    hedges: usize,
    disfluencies: u32,
    question_ids: Vec<String>,
    inclusive_ids: Vec<String>,
    interruption_ids: Vec<String>,
    filler_ids: Vec<String>,
    hedge_ids: Vec<String>,
}

/// The run currently holding the floor.
struct Run {
    speaker: usize,
    first: usize,
    words: usize,
    start: Option<f64>,
    end: Option<f64>,
}

/// Compute every metric in one pass over the segments.
pub fn compute(t: &Transcript) -> MeetingMetrics {
    let people: Vec<&str> = t.participants.iter().map(String::as_str).collect();
    let mut acc: Vec<Acc> = people.iter().map(|_| Acc::default()).collect();
    let time_basis = t
        .segments
        .iter()
        .filter(|s| is_person(&s.speaker))
        .all(|s| s.duration().is_some())
        && t.segments.iter().any(|s| is_person(&s.speaker));
    let basis = if time_basis {
        Basis::Time
    } else {
        Basis::Words
    };

    let mut run: Option<Run> = None;
    // The last floor-taking segment, to judge whether the next one interrupts it.
    let mut last_floor: Option<&Segment> = None;
    let mut switches = 0usize;
    let mut first_start = f64::INFINITY;
    let mut last_end = f64::NEG_INFINITY;

    for (i, seg) in t.segments.iter().enumerate() {
        if let Some(s) = seg.start {
            first_start = first_start.min(s);
        }
        if let Some(e) = seg.end {
            last_end = last_end.max(e);
        }
        let Some(who) = people.iter().position(|p| *p == seg.speaker) else {
            // A pseudo-speaker (Break) ends the floor: the next speaker is neither a switch
            // nor an interruption.
            close(&mut run, &mut acc, t, time_basis);
            last_floor = None;
            continue;
        };
        let st = scan(&seg.text);
        let a = &mut acc[who];
        a.words += st.words;
        a.seconds += seg.duration().unwrap_or(0.0);
        a.disfluencies += seg.disfluencies;
        if st.questions > 0 {
            a.questions += st.questions;
            a.question_ids.push(seg.id.clone());
        }
        if st.inclusive > 0 {
            a.inclusive += st.inclusive;
            a.inclusive_ids.push(seg.id.clone());
        }
        if st.fillers > 0 {
            a.fillers += st.fillers;
            a.filler_ids.push(seg.id.clone());
        }
        if st.hedges > 0 {
            a.hedges += st.hedges;
            a.hedge_ids.push(seg.id.clone());
        }
        if is_backchannel(&seg.text, st.words) {
            a.backchannels += 1;
            continue;
        }
        match &mut run {
            Some(r) if r.speaker == who => {
                r.words += st.words;
                if seg.end.is_some() {
                    r.end = seg.end;
                }
            }
            _ => {
                if let Some(prev) = last_floor {
                    let overlap = matches!((seg.start, prev.end), (Some(s), Some(e)) if s + OVERLAP_TOLERANCE < e);
                    if overlap || prev.cut_off {
                        acc[who].interruptions += 1;
                        acc[who].interruption_ids.push(seg.id.clone());
                        if let Some(v) = people.iter().position(|p| *p == prev.speaker) {
                            acc[v].interrupted += 1;
                        }
                    }
                }
                if run.is_some() {
                    switches += 1;
                }
                close(&mut run, &mut acc, t, time_basis);
                run = Some(Run {
                    speaker: who,
                    first: i,
                    words: st.words,
                    start: seg.start,
                    end: seg.end,
                });
            }
        }
        last_floor = Some(seg);
    }
    close(&mut run, &mut acc, t, time_basis);

    let duration = (time_basis && last_end >= first_start).then_some(last_end - first_start);
    let total_words: usize = acc.iter().map(|a| a.words).sum();
    let total_seconds: f64 = acc.iter().map(|a| a.seconds).sum();
    let total_turns = acc.iter().map(|a| a.turns).sum();
    let per100 = |n: usize, words: usize| {
        if words == 0 {
            0.0
        } else {
            n as f64 * 100.0 / words as f64
        }
    };
    let speakers = people
        .iter()
        .zip(acc)
        .map(|(name, a)| {
            let talk_share = match basis {
                Basis::Time if total_seconds > 0.0 => a.seconds / total_seconds,
                Basis::Words if total_words > 0 => a.words as f64 / total_words as f64,
                _ => 0.0,
            };
            let questions_rate = match duration {
                Some(d) if d > 0.0 => a.questions as f64 * 600.0 / d,
                Some(_) => 0.0,
                None if total_words > 0 => a.questions as f64 * 1000.0 / total_words as f64,
                None => 0.0,
            };
            SpeakerMetrics {
                speaker: (*name).to_string(),
                talk_share,
                talk_seconds: time_basis.then_some(a.seconds),
                turns: a.turns,
                backchannels: a.backchannels,
                words: a.words,
                avg_monologue_words: if a.turns == 0 {
                    0.0
                } else {
                    a.run_words as f64 / a.turns as f64
                },
                longest_monologue: a.longest,
                questions: a.questions,
                questions_rate,
                inclusive_questions: a.inclusive,
                interruptions: a.interruptions,
                interrupted: a.interrupted,
                fillers: a.fillers,
                fillers_per_100_words: per100(a.fillers, a.words),
                hedges: a.hedges,
                hedges_per_100_words: per100(a.hedges, a.words),
                disfluencies: a.disfluencies,
                pace_wpm: (time_basis && a.seconds > 0.0)
                    .then(|| a.words as f64 * 60.0 / a.seconds),
                question_span_ids: a.question_ids,
                inclusive_question_span_ids: a.inclusive_ids,
                interruption_span_ids: a.interruption_ids,
                filler_span_ids: a.filler_ids,
                hedge_span_ids: a.hedge_ids,
            }
        })
        .collect();
    MeetingMetrics {
        basis,
        duration_seconds: duration,
        total_words,
        total_turns,
        speaker_switches: switches,
        speaker_switches_per_minute: duration
            .filter(|d| *d > 0.0)
            .map(|d| switches as f64 * 60.0 / d),
        speakers,
        lists: WordLists::default(),
    }
}

fn close(run: &mut Option<Run>, acc: &mut [Acc], t: &Transcript, time_basis: bool) {
    let Some(r) = run.take() else { return };
    let a = &mut acc[r.speaker];
    a.turns += 1;
    a.run_words += r.words;
    let seconds = match (r.start, r.end) {
        (Some(s), Some(e)) if time_basis && e >= s => Some(e - s),
        _ => None,
    };
    let key = seconds.unwrap_or(r.words as f64);
    if a.longest.span_id.is_empty() || key > a.longest_key {
        a.longest_key = key;
        a.longest = Monologue {
            words: r.words,
            seconds,
            span_id: t.segments[r.first].id.clone(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_counts() {
        let s = scan(
            "Um, I think we should, like, ship it. What do you think? Do you know the way? You know, it's fine.",
        );
        assert_eq!(s.questions, 2);
        assert_eq!(s.inclusive, 1);
        // um, like (set off), "You know,"; not "Do you know the way"
        assert_eq!(s.fillers, 3);
        assert_eq!(s.hedges, 1);
        assert_eq!(s.words, 21);
    }

    #[test]
    fn every_listed_phrase_is_detected() {
        for h in HEDGE_WORDS.iter().chain(HEDGE_PHRASES) {
            assert_eq!(scan(&format!("Well {h} yes.")).hedges, 1, "{h}");
        }
        for f in FILLER_WORDS {
            assert_eq!(scan(&format!("So {f} yes.")).fillers, 1, "{f}");
        }
        for f in FILLER_PHRASES {
            assert_eq!(scan(&format!("So, {f}, yes.")).fillers, 1, "{f}");
        }
        for p in INCLUSIVE_PHRASES {
            assert_eq!(scan(&format!("Ok. So {p}?")).inclusive, 1, "{p}");
        }
        for b in BACKCHANNEL_PHRASES {
            assert!(is_backchannel(b, b.split(' ').count()), "{b}");
        }
    }

    #[test]
    fn backchannels() {
        assert!(is_backchannel("Mm-hmm.", 1));
        assert!(is_backchannel("Yeah, yeah.", 2));
        assert!(is_backchannel("Got it.", 2));
        assert!(is_backchannel("", 0));
        assert!(!is_backchannel("Yeah, but no.", 3));
        assert!(!is_backchannel("Right?", 1));
    }
}
