//! Plain text and Markdown transcripts, and the text of Word documents.
//!
//! A line starting with a label opens a turn. The forms, each as the tool that writes it:
//! - `Name: text`, `**Name:** text` (or `**Name**:`), `[Name] text` — chat logs, podcasts;
//! - `Name  0:04` alone on a line (two or more spaces or a tab before `M:SS`/`H:MM:SS`), the
//!   text on the next lines — Otter and Teams (.docx);
//! - `Speaker 1 (00:04):` with the text after it or on the next lines, `Name: (00:04)`, and
//!   `**Speaker 1 (00:04):** text` — Rev;
//! - `[00:04] Name: text` — Fireflies;
//! - a timestamp alone on a line (`00:05:00`) gives the start of the next labelled turn (Google
//!   Meet).
//!
//! The time becomes the segment's start and is never left in the spoken text. Where the line's
//! shape already marks a speaker (a timestamp beside the name), display names may be lowercase
//! and decorated (`jules`, `Mei Tan (she/her)`); a bare `Name:` keeps the stricter rule so that
//! "here's the thing: ..." stays text.
//!
//! A lowercase `name: text` is a label when that name opens two or more lines (chat logs, Meet);
//! seen once it stays text and is reported as `POSSIBLE_LABEL`.
//!
//! Any other non-empty line continues the current turn; blank lines are paragraph breaks, not
//! speaker changes. Markdown headings and rules are skipped. Lines before the first label (a
//! title, a date) are reported as `UNATTRIBUTED_TEXT` warnings.

use super::{Builder, parse_timestamp};
use crate::label::{
    is_cue_name, is_plausible_name, split_cue_prefix, split_name_prefix, strip_decoration,
};
use crate::model::{Format, Transcript, TranscriptError};
use crate::text::CleanOpts;

/// What a line is, when it is more than text.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// A speaker label, its start time when given, and the text after it.
    Label(&'a str, Option<f64>, &'a str),
    /// A timestamp alone on its line.
    Time(f64),
}

pub(crate) fn parse(text: &str) -> Result<Transcript, TranscriptError> {
    let mut b = Builder::new(Format::Text, CleanOpts { markdown: true }, text.len());
    let mut pending: Option<f64> = None;
    let loose = loose_labels(text);
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || is_rule(l) {
            continue;
        }
        b.at(n + 1);
        let mut kind = classify(l);
        if kind.is_none()
            && let Some((name, rest)) = split_cue_prefix(l)
        {
            if loose.iter().any(|(n, c)| *n == name && *c >= 2) {
                kind = Some(Line::Label(name, None, rest));
            } else {
                b.warn(
                    "POSSIBLE_LABEL",
                    format!(
                        "`{}:` may be a speaker label but appears only once, so the line was \
                         kept as text of the current turn",
                        super::preview(name, 40)
                    ),
                );
            }
        }
        match kind {
            Some(Line::Label(name, start, rest)) => {
                b.cue(Some(name), start.or(pending.take()), None);
                b.text(rest);
            }
            Some(Line::Time(t)) => pending = Some(t),
            None => {
                b.cue(None, None, None);
                b.text(l);
            }
        }
    }
    b.finish()
}

/// Lowercase display names (`jules: ...`) that are not labels by the strict rule: one that
/// opens two or more lines is a speaker (a chat log or Meet export); one seen once is reported.
fn loose_labels(text: &str) -> Vec<(&str, usize)> {
    let mut found: Vec<(&str, usize)> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || !l.as_bytes()[0].is_ascii_lowercase() {
            continue;
        }
        if let Some((name, _)) = split_cue_prefix(l)
            && !is_plausible_name(name)
        {
            if let Some((_, c)) = found.iter_mut().find(|(n, _)| *n == name) {
                *c += 1;
            } else if found.len() < 64 {
                found.push((name, 1));
            }
        }
    }
    found
}

fn is_rule(l: &str) -> bool {
    l.len() >= 3
        && l.bytes()
            .all(|c| matches!(c, b'-' | b'*' | b'_' | b' ' | b'='))
}

/// A clock time `M:SS`, `MM:SS.mmm` or `H:MM:SS` (a colon is required).
fn clock(s: &str) -> Option<f64> {
    let s = s.trim();
    if !s.contains(':') || s.len() > 16 {
        return None;
    }
    parse_timestamp(s)
}

/// `Name (00:04)` → `("Name", Some(4.0))`; anything else is returned whole.
fn split_time_suffix(label: &str) -> (&str, Option<f64>) {
    let l = label.trim();
    if let Some(inner) = l.strip_suffix(')')
        && let Some(open) = inner.rfind('(')
        && let Some(t) = clock(&inner[open + 1..])
    {
        return (inner[..open].trim_end(), Some(t));
    }
    (l, None)
}

/// `(00:04) rest` → `(Some(4.0), "rest")`.
fn leading_time(rest: &str) -> (Option<f64>, &str) {
    let r = rest.trim_start();
    if let Some(inner) = r.strip_prefix('(')
        && let Some(close) = inner.find(')')
        && let Some(t) = clock(&inner[..close])
    {
        return (Some(t), &inner[close + 1..]);
    }
    (None, rest)
}

/// A label whose text carries a time: the name may be any display name.
fn timed_name(name: &str) -> bool {
    let (base, t) = split_time_suffix(name);
    if t.is_some() {
        is_cue_name(base)
    } else {
        is_plausible_name(name)
    }
}

fn classify(l: &str) -> Option<Line<'_>> {
    // Fireflies `[00:04] Name: text`, or a bracketed timestamp alone.
    if let Some(inner) = l.strip_prefix('[')
        && let Some(close) = inner.find(']')
        && let Some(t) = clock(&inner[..close])
    {
        let rest = inner[close + 1..].trim_start();
        if rest.is_empty() {
            return Some(Line::Time(t));
        }
        let (name, after) = split_cue_prefix(rest)?;
        return Some(Line::Label(name, Some(t), after));
    }
    if let Some(t) = clock(l) {
        return Some(Line::Time(t));
    }
    if let Some((name, rest)) = label(l) {
        let (name, mut start) = split_time_suffix(name);
        let (lead, rest) = leading_time(rest);
        start = start.or(lead);
        return Some(Line::Label(name, start, rest));
    }
    // `jules: (00:04)`: the time after the colon marks a speaker whatever the name's case.
    if let Some((name, rest)) = split_cue_prefix(l)
        && let (Some(t), rest) = leading_time(rest)
    {
        return Some(Line::Label(name, Some(t), rest));
    }
    otter_header(l).map(|(name, t)| Line::Label(name, Some(t), ""))
}

/// Otter / Teams: `Name  0:04`, two or more spaces or a tab before the time (one space is
/// how sentences end, "we start at 9:30").
fn otter_header(l: &str) -> Option<(&str, f64)> {
    let cut = l.rfind([' ', '\t'])?;
    let t = clock(&l[cut + 1..])?;
    let name = l[..cut].trim_end_matches([' ', '\t']);
    let sep = &l[name.len()..=cut];
    let wide = sep.len() >= 2 || sep.contains('\t');
    (wide && is_cue_name(name)).then_some((name, t))
}

/// The label forms of a text line with the default acceptance rules.
fn label(l: &str) -> Option<(&str, &str)> {
    if l.starts_with("**") {
        return bold_label(l, timed_name);
    }
    if l.starts_with('[') {
        return bracket_label(l, is_plausible_name);
    }
    // Rev `Speaker 1 (00:04): text`: the colon inside the time is not the label's.
    if let Some(p) = l.get(..l.len().min(120)).and_then(|h| h.find("):")) {
        let rest = &l[p + 2..];
        if (rest.is_empty() || rest.starts_with([' ', '\t']))
            && split_time_suffix(&l[..=p]).1.is_some()
            && timed_name(&l[..=p])
        {
            return Some((&l[..=p], rest));
        }
    }
    split_name_prefix(l)
}

/// `**Name:** text` or `**Name**: text`.
pub(crate) fn bold_label(l: &str, accept: fn(&str) -> bool) -> Option<(&str, &str)> {
    let inner = l.strip_prefix("**")?;
    let close = inner.find("**")?;
    let name = &inner[..close];
    let after = &inner[close + 2..];
    if let Some(n) = name.strip_suffix(':') {
        return accept(n).then_some((n.trim(), after));
    }
    let after = after.strip_prefix(':')?;
    accept(name).then_some((name.trim(), after))
}

/// `[Name] text` or `[Name]: text`.
pub(crate) fn bracket_label(l: &str, accept: fn(&str) -> bool) -> Option<(&str, &str)> {
    let inner = l.strip_prefix('[')?;
    let close = inner.find(']')?;
    let name = &inner[..close];
    let after = inner[close + 1..].trim_start();
    let after = after.strip_prefix(':').unwrap_or(after);
    (accept(name) && strip_decoration(name) == name.trim()).then_some((name.trim(), after))
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

    #[test]
    fn timestamped_speaker_lines() {
        assert_eq!(
            classify("Ravi Kumar  0:04"),
            Some(Line::Label("Ravi Kumar", Some(4.0), ""))
        );
        assert_eq!(
            classify("jules\t1:02:03"),
            Some(Line::Label("jules", Some(3723.0), ""))
        );
        assert_eq!(
            classify("Speaker 1 (00:04):"),
            Some(Line::Label("Speaker 1", Some(4.0), ""))
        );
        assert_eq!(
            classify("Speaker 1 (00:04): Hi there"),
            Some(Line::Label("Speaker 1", Some(4.0), " Hi there"))
        );
        assert_eq!(
            classify("Ravi Kumar: (00:04)"),
            Some(Line::Label("Ravi Kumar", Some(4.0), ""))
        );
        assert_eq!(
            classify("**Speaker 2 (01:10):** Yes"),
            Some(Line::Label("Speaker 2", Some(70.0), " Yes"))
        );
        assert_eq!(
            classify("[00:04] Ravi: Where"),
            Some(Line::Label("Ravi", Some(4.0), " Where"))
        );
        assert_eq!(classify("00:05:00"), Some(Line::Time(300.0)));
        assert_eq!(classify("We met at 10:30"), None);
        assert_eq!(classify("The meeting ends at 3:00"), None);
    }
}
