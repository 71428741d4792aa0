//! Finding the coachee's speaker label from the name an operator typed.
//!
//! Matching goes from strict to loose and stops at the first rule that gives exactly one
//! participant: the exact label, then a case-insensitive match, then the same with decorations
//! set aside on both sides (`Mei Tan` finds `Mei Tan (she/her)`, and the other way round), then
//! a unique first-name match (honorifics such as `Dr` are skipped, so `rachel` finds
//! `Dr Rachel Bowen`). Anything else is `COACHEE_NOT_FOUND`, naming the speakers found and the
//! closest one by edit distance, because coaching the wrong person is worse than asking.
//!
//! Names and labels come from outside (an Airtable field, a transcript file), so the closest-match
//! search is bounded: each side is cut to [`MAX_COMPARE_CHARS`] characters and at most
//! [`MAX_LABELS_COMPARED`] labels are compared, which keeps the quadratic edit distance to a
//! few million steps whatever the input. The error message is bounded too: long names and
//! labels are shortened to [`MAX_SHOWN_CHARS`] characters with a trailing `…`, and at most
//! [`MAX_LABELS_SHOWN`] speakers are listed.

use crate::label::strip_decoration;
use crate::model::{Transcript, TranscriptError};

const HONORIFICS: &[&str] = &[
    "dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "prof", "prof.", "sir", "dame",
];

/// Characters of a name or label that take part in the closest-match edit distance.
pub const MAX_COMPARE_CHARS: usize = 64;
/// Labels compared for the closest match (in order of first appearance).
pub const MAX_LABELS_COMPARED: usize = 200;
/// Characters of a name or label shown in an error message.
pub const MAX_SHOWN_CHARS: usize = 60;
/// Speakers listed in an error message.
pub const MAX_LABELS_SHOWN: usize = 20;

/// The coachee's label as written in the transcript.
///
/// # Errors
/// `COACHEE_NOT_FOUND` when no rule identifies exactly one participant.
pub fn find_coachee(t: &Transcript, name: &str) -> Result<String, TranscriptError> {
    let want = name.trim();
    if let Some(p) = t.participants.iter().find(|p| p.as_str() == want) {
        return Ok(p.clone());
    }
    let want_lower = want.to_lowercase();
    if let Some(one) = unique(t, |p| {
        p.eq_ignore_ascii_case(want) || p.to_lowercase() == want_lower
    }) {
        return Ok(one);
    }
    let want_base = strip_decoration(want).to_lowercase();
    if !want_base.is_empty()
        && let Some(one) = unique(t, |p| strip_decoration(p).to_lowercase() == want_base)
    {
        return Ok(one);
    }
    if let Some(first) = first_name(strip_decoration(want)) {
        let first = first.to_lowercase();
        if let Some(one) = unique(t, |p| {
            first_name(strip_decoration(p)).is_some_and(|f| f.to_lowercase() == first)
        }) {
            return Ok(one);
        }
    }
    let want_cmp: Vec<char> = want_lower.chars().take(MAX_COMPARE_CHARS).collect();
    let closest = t
        .participants
        .iter()
        .take(MAX_LABELS_COMPARED)
        .min_by_key(|p| {
            let p: Vec<char> = p
                .chars()
                .take(MAX_COMPARE_CHARS)
                .flat_map(char::to_lowercase)
                .collect();
            edit_distance(&p, &want_cmp)
        })
        .map(|c| shorten(c));
    let mut speakers: Vec<String> = t
        .participants
        .iter()
        .take(MAX_LABELS_SHOWN)
        .map(|p| shorten(p))
        .collect();
    if t.participants.len() > MAX_LABELS_SHOWN {
        speakers.push(format!(
            "and {} more",
            t.participants.len() - MAX_LABELS_SHOWN
        ));
    }
    Err(TranscriptError::CoacheeNotFound {
        name: shorten(want),
        speakers,
        closest,
    })
}

/// The one participant matching, if exactly one does.
fn unique(t: &Transcript, matches: impl Fn(&str) -> bool) -> Option<String> {
    let mut found = t.participants.iter().filter(|p| matches(p));
    let one = found.next()?;
    found.next().is_none().then(|| one.clone())
}

/// `s` cut to [`MAX_SHOWN_CHARS`] characters, ending in `…` when cut.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn first_name(label: &str) -> Option<&str> {
    label
        .split_whitespace()
        .find(|w| !HONORIFICS.iter().any(|h| w.eq_ignore_ascii_case(h)))
}

/// Levenshtein distance over chars; callers bound the lengths.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Format;

    fn t(names: &[&str]) -> Transcript {
        Transcript {
            format: Format::Text,
            participants: names.iter().map(|s| s.to_string()).collect(),
            segments: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn matching_order() {
        let tr = t(&["Dr Rachel Bowen", "Ed Evans", "Dafydd Evans"]);
        assert_eq!(
            find_coachee(&tr, "Ed Evans").ok().as_deref(),
            Some("Ed Evans")
        );
        assert_eq!(
            find_coachee(&tr, "ed evans").ok().as_deref(),
            Some("Ed Evans")
        );
        assert_eq!(
            find_coachee(&tr, "rachel").ok().as_deref(),
            Some("Dr Rachel Bowen")
        );
        let err = find_coachee(&tr, "Evans").err();
        assert_eq!(
            err.as_ref().map(TranscriptError::code),
            Some("COACHEE_NOT_FOUND")
        );
        let err = find_coachee(&tr, "Ed Evens").ok();
        assert_eq!(err.as_deref(), Some("Ed Evans"), "first name decides");
        let msg = find_coachee(&tr, "Rachael Bown")
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        assert!(msg.contains("closest match: `Dr Rachel Bowen`"), "{msg}");
        assert!(msg.contains("Dafydd Evans"), "{msg}");
    }

    #[test]
    fn decorated_labels_match_both_ways() {
        let tr = t(&["Ravi Kumar (Contoso)", "Mei Tan (she/her)", "jules"]);
        assert_eq!(
            find_coachee(&tr, "Mei Tan").ok().as_deref(),
            Some("Mei Tan (she/her)")
        );
        assert_eq!(
            find_coachee(&tr, "ravi kumar").ok().as_deref(),
            Some("Ravi Kumar (Contoso)")
        );
        assert_eq!(find_coachee(&tr, "Jules").ok().as_deref(), Some("jules"));
        let tr = t(&["Mei Tan", "Ravi Kumar"]);
        assert_eq!(
            find_coachee(&tr, "Mei Tan (she/her)").ok().as_deref(),
            Some("Mei Tan")
        );
    }
}
