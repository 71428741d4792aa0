//! Finding the coachee's speaker label from the name an operator typed.
//!
//! Matching goes from strict to loose and stops at the first rule that gives exactly one
//! participant: the exact label, then a case-insensitive match, then a unique first-name match
//! (honorifics such as `Dr` are skipped, so `rachel` finds `Dr Rachel Bowen`). Anything else is
//! `COACHEE_NOT_FOUND`, naming the speakers found and the closest one by edit distance, because
//! coaching the wrong person is worse than asking.

use crate::model::{Transcript, TranscriptError};

const HONORIFICS: &[&str] = &[
    "dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "prof", "prof.", "sir", "dame",
];

/// The coachee's label as written in the transcript.
///
/// # Errors
/// `COACHEE_NOT_FOUND` when no rule identifies exactly one participant.
pub fn find_coachee(t: &Transcript, name: &str) -> Result<String, TranscriptError> {
    let want = name.trim();
    if let Some(p) = t.participants.iter().find(|p| p.as_str() == want) {
        return Ok(p.clone());
    }
    let ci: Vec<&String> = t
        .participants
        .iter()
        .filter(|p| p.eq_ignore_ascii_case(want) || p.to_lowercase() == want.to_lowercase())
        .collect();
    if let [one] = ci.as_slice() {
        return Ok((*one).clone());
    }
    if let Some(first) = first_name(want) {
        let matches: Vec<&String> = t
            .participants
            .iter()
            .filter(|p| first_name(p).is_some_and(|f| f.to_lowercase() == first.to_lowercase()))
            .collect();
        if let [one] = matches.as_slice() {
            return Ok((*one).clone());
        }
    }
    let closest = t
        .participants
        .iter()
        .min_by_key(|p| edit_distance(&p.to_lowercase(), &want.to_lowercase()))
        .cloned();
    Err(TranscriptError::CoacheeNotFound {
        name: want.to_string(),
        speakers: t.participants.clone(),
        closest,
    })
}

fn first_name(label: &str) -> Option<&str> {
    label
        .split_whitespace()
        .find(|w| !HONORIFICS.iter().any(|h| w.eq_ignore_ascii_case(h)))
}

/// Levenshtein distance over chars (names are short, so O(n·m) is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
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
}
