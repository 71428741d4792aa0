//! Speaker labels: recognising `Name:` prefixes without guessing, and pseudo-speakers.
//!
//! A colon in running text is common ("the time is 9:31", "here's the thing: ..."), so a prefix
//! only counts as a label when it looks like a name: at most six words, each starting with a
//! capital letter or a digit (or a lowercase particle such as `van` or `de`), no sentence
//! punctuation, and followed by whitespace. This rejects ordinary sentences while accepting
//! `Gilon`, `Dr Rachel Bowen`, `Speaker 2`, `SPEAKER_01` and `Janet Finch-Saunders AM`.

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

/// Whether `label` is plausibly a speaker name (see the module doc).
pub(crate) fn is_plausible_name(label: &str) -> bool {
    let l = label.trim();
    if l.is_empty() || l.len() > 60 {
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

/// Split `Name: rest` when the prefix is a plausible name. Returns the label and the rest.
pub(crate) fn split_name_prefix(line: &str) -> Option<(&str, &str)> {
    let colon = line.as_bytes().iter().take(64).position(|&b| b == b':')?;
    let rest = &line[colon + 1..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])) {
        return None;
    }
    let label = line[..colon].trim();
    is_plausible_name(label).then_some((label, rest))
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
    fn pseudo_speakers_are_not_people() {
        assert!(!is_person("Break"));
        assert!(!is_person("OUTRO"));
        assert!(!is_person("[Music]"));
        assert!(is_person("Jerod Santo"));
    }
}
