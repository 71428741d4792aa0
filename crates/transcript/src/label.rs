//! Speaker labels: recognising `Name:` prefixes without guessing, and pseudo-speakers.
//!
//! A colon in running text is common ("the time is 9:31", "here's the thing: ..."), so a prefix
//! only counts as a label when it looks like a name: at most six words, each starting with a
//! capital letter or a digit (or a lowercase particle such as `van` or `de`), no sentence
//! punctuation, and followed by whitespace. This rejects ordinary sentences while accepting
//! `Gilon`, `Dr Rachel Bowen`, `Speaker 2`, `SPEAKER_01` and `Janet Finch-Saunders AM`.
//!
//! Display names in meeting tools are whatever people typed, so two things are relaxed where
//! the position already says "this is a speaker" (the start of a subtitle cue, a speaker line
//! with a timestamp): lowercase names are accepted ([`is_cue_name`], which still refuses
//! sentence openers such as `so` or `the`), and trailing decorations in parentheses or
//! brackets — pronouns `(she/her)`, an organisation `(Contoso)`, `(External)` — are not part of
//! who is speaking ([`strip_decoration`]): `Mei Tan (she/her)` and `Mei Tan` are one person.

/// Labels that name a part of the show, not a person. They keep their segments (so span ids stay
/// aligned with the document) but are never participants.
pub const PSEUDO_SPEAKERS: &[&str] = &[
    "ad",
    "ads",
    "advertisement",
    "applause",
    "audience",
    "background",
    "break",
    "crosstalk",
    "inaudible",
    "interlude",
    "intro",
    "laughter",
    "music",
    "narration",
    "outro",
    "silence",
    "sponsor",
    "sponsors",
    "transition",
    "unknown",
];

const PARTICLES: &[&str] = &[
    "de", "da", "di", "du", "del", "della", "der", "den", "van", "von", "le", "la", "bin", "al",
    "el", "y", "ap", "of",
];

/// Whether a label names a person rather than a pseudo-speaker or a stage direction.
pub fn is_person(label: &str) -> bool {
    let l = label.trim();
    if l.is_empty() {
        return false;
    }
    let first = l.as_bytes()[0];
    if matches!(first, b'[' | b'(' | b'{' | b'<') {
        return false;
    }
    !PSEUDO_SPEAKERS.iter().any(|p| l.eq_ignore_ascii_case(p))
}

/// Words that open sentences or notes: a lowercase `so: ...` at the start of a cue is speech.
const NOT_NAMES: &[&str] = &[
    "a", "an", "and", "answer", "as", "at", "but", "example", "for", "here", "here's", "i", "if",
    "in", "is", "it", "it's", "let's", "next", "no", "note", "now", "ok", "okay", "on", "or",
    "question", "so", "step", "that", "the", "then", "there", "this", "time", "to", "update",
    "was", "we", "well", "what", "yes", "you",
];

/// The label without trailing decorations in `(...)` or `[...]` (pronouns, organisation,
/// `(External)`), trimmed. A label that is only a decoration is returned as it is.
pub fn strip_decoration(label: &str) -> &str {
    let mut l = label.trim();
    for _ in 0..3 {
        let close = match l.as_bytes().last() {
            Some(b')') => '(',
            Some(b']') => '[',
            _ => break,
        };
        match l.rfind(close) {
            Some(open) if open > 0 && !l[..open].trim().is_empty() => l = l[..open].trim_end(),
            _ => break,
        }
    }
    l
}

/// Whether two labels name the same speaker: equal once decorations are set aside.
pub(crate) fn same_speaker(a: &str, b: &str) -> bool {
    a == b || strip_decoration(a) == strip_decoration(b)
}

/// Whether `label` is plausibly a speaker name (see the module doc).
pub(crate) fn is_plausible_name(label: &str) -> bool {
    let l = label.trim();
    if l.is_empty() || l.len() > 80 {
        return false;
    }
    let l = strip_decoration(l);
    if l.len() > 60 {
        return false;
    }
    if !l.chars().next().is_some_and(char::is_alphanumeric) {
        return false;
    }
    let mut words = 0;
    for word in l.split_whitespace() {
        words += 1;
        if words > 6 {
            return false;
        }
        let Some(c0) = word.chars().next() else {
            return false;
        };
        let particle = PARTICLES.contains(&word);
        if c0.is_lowercase() && !particle {
            return false;
        }
        for (idx, c) in word.char_indices() {
            let ok = c.is_alphanumeric()
                || matches!(c, '-' | '\'' | '\u{2019}' | '_' | '&')
                // "Dr." "J." - a dot only to end a short abbreviation
                || (c == '.' && idx + 1 == word.len() && word.len() <= 4);
            if !ok {
                return false;
            }
        }
    }
    // A bare number ("1:", "2021:") is a list item or a time, not a name.
    l.chars().any(char::is_alphabetic)
}

/// Whether `label` is a display name where the position already marks a speaker (the start of
/// a cue, a timestamped speaker line): like [`is_plausible_name`] but lowercase words are
/// accepted, at most four words, none of them a sentence opener from `NOT_NAMES`.
pub(crate) fn is_cue_name(label: &str) -> bool {
    if is_plausible_name(label) {
        return true;
    }
    let l = label.trim();
    if l.is_empty() || l.len() > 80 {
        return false;
    }
    let l = strip_decoration(l);
    if l.len() > 60 || !l.chars().next().is_some_and(char::is_alphanumeric) {
        return false;
    }
    let mut words = 0;
    for word in l.split_whitespace() {
        words += 1;
        if words > 4 || NOT_NAMES.iter().any(|n| word.eq_ignore_ascii_case(n)) {
            return false;
        }
        let ok = word.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '-' | '\'' | '\u{2019}' | '_' | '&' | '.' | '@')
        });
        if !ok {
            return false;
        }
    }
    l.chars().any(char::is_alphabetic)
}

/// Split `Name: rest` when the prefix is a plausible name. Returns the label and the rest.
pub(crate) fn split_name_prefix(line: &str) -> Option<(&str, &str)> {
    split_prefix(line, is_plausible_name)
}

/// [`split_name_prefix`] for the start of a cue, where lowercase display names count.
pub(crate) fn split_cue_prefix(line: &str) -> Option<(&str, &str)> {
    split_prefix(line, is_cue_name)
}

fn split_prefix(line: &str, accept: fn(&str) -> bool) -> Option<(&str, &str)> {
    let colon = line.as_bytes().iter().take(96).position(|&b| b == b':')?;
    let rest = &line[colon + 1..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])) {
        return None;
    }
    let label = line[..colon].trim();
    accept(label).then_some((label, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_rejects_sentences() {
        for ok in [
            "Gilon",
            "Dr Rachel Bowen",
            "Speaker 2",
            "SPEAKER_01",
            "Janet Finch-Saunders AM",
            "Dr. Who",
            "Ludwig van Beethoven",
        ] {
            assert!(is_plausible_name(ok), "{ok}");
        }
        for bad in [
            "here's the thing",
            "So here's the thing",
            "The time is 9.31",
            "2021",
            "",
            "Well, you know",
        ] {
            assert!(!is_plausible_name(bad), "{bad}");
        }
    }

    #[test]
    fn prefix_needs_space_after_colon() {
        assert_eq!(split_name_prefix("Gilon: So is"), Some(("Gilon", " So is")));
        assert_eq!(split_name_prefix("THE TIME IS 9:31 A.M."), None);
        assert_eq!(split_name_prefix("no colon here"), None);
    }

    #[test]
    fn display_names_at_cue_start() {
        assert_eq!(
            split_cue_prefix("jules: Halfway."),
            Some(("jules", " Halfway."))
        );
        assert_eq!(
            split_cue_prefix("Mei Tan (she/her): I can"),
            Some(("Mei Tan (she/her)", " I can"))
        );
        assert_eq!(split_name_prefix("jules: Halfway."), None);
        assert_eq!(split_cue_prefix("so: we go"), None);
        assert_eq!(split_cue_prefix("here's the thing: no"), None);
        assert_eq!(
            strip_decoration("Ravi Kumar (Contoso) (External)"),
            "Ravi Kumar"
        );
        assert_eq!(strip_decoration("(she/her)"), "(she/her)");
        assert!(same_speaker("Mei Tan (she/her)", "Mei Tan"));
        assert!(!same_speaker("Mei Tan", "Mei Lin"));
    }

    #[test]
    fn pseudo_speakers_are_not_people() {
        assert!(!is_person("Break"));
        assert!(!is_person("OUTRO"));
        assert!(!is_person("[Music]"));
        assert!(is_person("Jerod Santo"));
    }
}
