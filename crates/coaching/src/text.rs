//! Text helpers: the Gate-1 folding and char-boundary-safe excerpts.
//!
//! Gate-1 compares quotes "after whitespace and case folding only". Folding here means: every run
//! of Unicode whitespace becomes one space, leading and trailing whitespace is dropped, and each
//! character is lowercased on its own (`char::to_lowercase`). Lowercasing per character rather than
//! with `str::to_lowercase` is deliberate: the latter is context-sensitive for the Greek final
//! sigma, which would make the fold of an excerpt differ from the same excerpt inside the fold of
//! the whole segment. Punctuation is never touched: a quote that drops a comma is a paraphrase.

/// Fold `s` for the verbatim comparison (see the module doc).
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    fold_into(s, &mut out);
    out
}

/// Fold `s` into `out` (cleared first), reusing its allocation.
pub(crate) fn fold_into(s: &str, out: &mut String) {
    out.clear();
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

/// The longest prefix of `s` that has at most `max` bytes and ends on a char boundary,
/// shortened to the last word boundary when that does not lose more than half of it.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &s[..end];
    match cut.rfind(char::is_whitespace) {
        Some(ws) if ws >= end / 2 => cut[..ws].trim_end(),
        _ => cut,
    }
}

/// Splits `text` into sentences (end punctuation kept), as byte ranges into `text`.
pub(crate) fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '?' | '!') {
            let end = i + c.len_utf8();
            // A sentence ends at punctuation followed by whitespace or the end of the text.
            if end == bytes.len() || bytes.get(end).is_some_and(|b| b.is_ascii_whitespace()) {
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = end;
            }
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_collapses_whitespace_and_case_only() {
        assert_eq!(fold("  Hello,\n  World!  "), "hello, world!");
        assert_eq!(fold("ÉCOLE  Straße"), "école straße");
    }

    #[test]
    fn fold_of_excerpt_is_inside_fold_of_whole() {
        let whole = "ΟΔΟΣ ΚΑΙ ΟΔΟΣ";
        let part = &whole[..8];
        assert!(fold(whole).contains(&fold(part)));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "héllo wörld ünïcode";
        for max in 0..s.len() {
            let c = clip(s, max);
            assert!(c.len() <= max);
            assert!(s.starts_with(c));
        }
    }

    #[test]
    fn sentences_split_on_end_punctuation() {
        let s = sentences("Is it ready? I think so. v1.2 is out");
        assert_eq!(s, vec!["Is it ready?", "I think so.", "v1.2 is out"]);
    }
}
