//! Plain text and Markdown transcripts.
//!
//! A line starting with a label opens a turn: `Name: text`, `**Name:** text` (or `**Name**:`),
//! `[Name] text`. Any other non-empty line continues the current turn; blank lines are paragraph
//! breaks, not speaker changes. Markdown headings and rules are skipped, and lines before the
//! first label (a title, show notes) are dropped.

use super::Builder;
use crate::label::{is_plausible_name, split_name_prefix};
use crate::model::{Format, Transcript, TranscriptError};
use crate::text::CleanOpts;

pub(crate) fn parse(text: &str) -> Result<Transcript, TranscriptError> {
    let mut b = Builder::new(Format::Text, CleanOpts { markdown: true }, text.len());
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || is_rule(l) {
            continue;
        }
        match label(l) {
            Some((name, rest)) => {
                b.cue(Some(name), None, None);
                b.text(rest);
            }
            None => {
                b.cue(None, None, None);
                b.text(l);
            }
        }
    }
    b.finish()
}

fn is_rule(l: &str) -> bool {
    l.len() >= 3
        && l.bytes()
            .all(|c| matches!(c, b'-' | b'*' | b'_' | b' ' | b'='))
}

fn label(l: &str) -> Option<(&str, &str)> {
    if let Some(inner) = l.strip_prefix("**") {
        let close = inner.find("**")?;
        let name = &inner[..close];
        let after = &inner[close + 2..];
        if let Some(n) = name.strip_suffix(':') {
            return is_plausible_name(n).then_some((n.trim(), after));
        }
        let after = after.strip_prefix(':')?;
        return is_plausible_name(name).then_some((name.trim(), after));
    }
    if let Some(inner) = l.strip_prefix('[') {
        let close = inner.find(']')?;
        let name = &inner[..close];
        let after = inner[close + 1..].trim_start();
        let after = after.strip_prefix(':').unwrap_or(after);
        return is_plausible_name(name).then_some((name.trim(), after));
    }
    split_name_prefix(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_forms() {
        assert_eq!(
            label("**Jerod Santo:** Hello"),
            Some(("Jerod Santo", " Hello"))
        );
        assert_eq!(label("**Kim**: Hi"), Some(("Kim", " Hi")));
        assert_eq!(label("[Ana] Hi"), Some(("Ana", "Hi")));
        assert_eq!(label("Ana: Hi"), Some(("Ana", " Hi")));
        assert_eq!(label("\\[laughter\\] ok"), None);
        assert_eq!(label("[16:41]"), None);
        assert_eq!(label("So we went home."), None);
    }
}
