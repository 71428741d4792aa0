//! Evidence: which of the coachee's segments show a pattern, and the verbatim quote cut from each.
//!
//! Every quote is one sentence of a real segment of the coachee (the one that shows the
//! behaviour: the question, the hedge), clipped to at most [`MAX_QUOTE_BYTES`] on a char and word
//! boundary, so Gate-1's grounding checks always hold.

use coach_transcript::Segment;
use coach_transcript::metrics::{MeetingMetrics, SpeakerMetrics};
use serde_json::{Value, json};

use super::MAX_QUOTE_BYTES;
use crate::gate1::Gate1Context;
use crate::model::AnalysisInput;
use crate::text::{clip, sentences};

/// Words a quote about hedging should show (matched as whole words, case-insensitively).
pub(super) const HEDGE_WORDS: &[&str] = &[
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

/// One piece of evidence: a segment and a quote cut from it.
#[derive(Debug, Clone)]
pub(super) struct Ev<'a> {
    pub(super) meeting: usize,
    pub(super) seg: &'a Segment,
    pub(super) quote: &'a str,
}

/// Whether `word` (lowercase, may contain a space) occurs in `lower` as whole word(s).
pub(super) fn has_word(lower: &str, word: &str) -> bool {
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

/// What a quote should show.
pub(super) enum Focus<'w> {
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
pub(super) fn quote_of<'a>(text: &'a str, focus: Focus<'_>) -> &'a str {
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

/// One analysis in progress: the input and the span ids Gate-1 expects, for the detectors
/// (`patterns`), the attempt judge (`attempt`) and the output (`output`) to share.
pub(super) struct Run<'a> {
    pub(super) input: &'a AnalysisInput,
    pub(super) ctx: Gate1Context<'a>,
}

impl<'a> Run<'a> {
    /// The coachee's segment `span` of meeting `k` (metric span ids are per meeting: `S12`).
    pub(super) fn coachee_seg(&self, k: usize, span: &str) -> Option<&'a Segment> {
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
    pub(super) fn listed(
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
    pub(super) fn longest_segs(
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

    /// The evidence as Gate-1 output: `[{span_id, quote}]`.
    pub(super) fn evidence_json(&self, evidence: &[Ev<'_>]) -> Value {
        Value::Array(
            evidence
                .iter()
                .map(|e| json!({"span_id": self.ctx.span_id(e.meeting, e.seg), "quote": e.quote}))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
