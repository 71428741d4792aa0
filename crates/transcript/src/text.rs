//! Text cleaning and word scanning shared by the parsers and the metrics.
//!
//! Cleaning is a single left-to-right pass that appends into the segment's own `String`, so a cue
//! costs no allocation beyond the growth of that buffer. It removes markup (WebVTT/HTML tags,
//! Markdown emphasis and backslash escapes), decodes HTML entities, drops disfluency tokens
//! (`{vocalsound}`, `{disfmarker}`, `{gap}`) and bracketed stage directions (`[laughter]`),
//! counting each, and collapses whitespace. A space before sentence punctuation (`better ?`, as in
//! the AMI corpus) is dropped so that questions and quotes read naturally.
//!
//! Characters produced by entity decoding are emitted as-is and never re-read as markup: the
//! renderer relies on that to escape text for a lossless round trip.

/// Options for [`clean_into`] that differ between formats.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CleanOpts {
    /// Treat `*`, `__` and `\x` escapes as Markdown (plain-text format).
    pub markdown: bool,
}

/// What one call to [`clean_into`] found besides text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cleaned {
    /// Disfluency tokens and stage directions removed.
    pub disfluencies: u32,
    /// The raw text ended in a cut-off marker (`{disfmarker}`, `--`, an em dash).
    pub cut_off: bool,
}

const SENTENCE_PUNCT: &[char] = &['.', ',', '?', '!', ';', ':'];

/// Append the cleaned form of `raw` to `out`, separated from existing content by one space.
pub(crate) fn clean_into(raw: &str, out: &mut String, opts: CleanOpts) -> Cleaned {
    let mut found = Cleaned::default();
    let bytes = raw.as_bytes();
    let mut pending_space = !out.is_empty() && !out.ends_with(' ');
    let mut i = 0;
    // Track what the last *content* was, to tell whether the cue ends in a cut-off marker.
    let mut last_was_disfmarker = false;
    while i < bytes.len() {
        let b = bytes[i];
        if is_plain(b) {
            // Fast path: copy a run of ordinary ASCII in one go.
            let run = bytes[i..]
                .iter()
                .position(|&c| !is_plain(c))
                .unwrap_or(bytes.len() - i);
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push_str(&raw[i..i + run]);
            last_was_disfmarker = false;
            i += run;
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                close_punct(out);
                pending_space = !out.is_empty();
                i += 1;
                continue;
            }
            b'<' => {
                // A tag starts with a letter, `/`, `!` or a digit (WebVTT inline timestamps);
                // anything else (`a < b`) is a literal.
                if let Some(&n) = bytes.get(i + 1)
                    && (n.is_ascii_alphanumeric() || n == b'/' || n == b'!')
                    && let Some(close) = find_byte(bytes, i + 1, b'>', 512)
                {
                    i = close + 1;
                    continue;
                }
            }
            b'{' => {
                if let Some(close) = find_byte(bytes, i + 1, b'}', 40) {
                    let inner = &raw[i + 1..close];
                    // SubRip/ASS positioning codes such as `{\an8}` are formatting, not speech.
                    if inner.starts_with('\\') {
                        i = close + 1;
                        continue;
                    }
                    if !inner.is_empty()
                        && inner
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        found.disfluencies += 1;
                        last_was_disfmarker = inner.eq_ignore_ascii_case("disfmarker");
                        i = close + 1;
                        continue;
                    }
                }
            }
            b'[' | b'\\' if b == b'[' || (opts.markdown && bytes.get(i + 1) == Some(&b'[')) => {
                let open = if b == b'\\' { i + 1 } else { i };
                if let Some(close) = find_byte(bytes, open + 1, b']', 80)
                    && !raw[open + 1..close].contains('[')
                {
                    found.disfluencies += 1;
                    last_was_disfmarker = false;
                    i = close + 1;
                    continue;
                }
            }
            b'\\' if opts.markdown => {
                if let Some(&n) = bytes.get(i + 1)
                    && n.is_ascii_punctuation()
                {
                    emit(out, &mut pending_space, n as char);
                    last_was_disfmarker = false;
                    i += 2;
                    continue;
                }
            }
            b'*' if opts.markdown => {
                i += 1;
                continue;
            }
            b'_' if opts.markdown && bytes.get(i + 1) == Some(&b'_') => {
                i += 2;
                continue;
            }
            b'&' => {
                if let Some((c, len)) = decode_entity(&raw[i..]) {
                    if c.is_whitespace() {
                        close_punct(out);
                        pending_space = !out.is_empty();
                    } else {
                        emit(out, &mut pending_space, c);
                        last_was_disfmarker = false;
                    }
                    i += len;
                    continue;
                }
            }
            _ => {}
        }
        // Copy one UTF-8 character. `i` is always on a char boundary: every skip above ends
        // just after an ASCII byte.
        let ch_len = utf8_len(b);
        let end = (i + ch_len).min(bytes.len());
        if let Some(s) = raw.get(i..end) {
            let mut chars = s.chars();
            if let Some(c) = chars.next() {
                if c.is_whitespace() {
                    close_punct(out);
                    pending_space = !out.is_empty();
                } else {
                    emit(out, &mut pending_space, c);
                    last_was_disfmarker = false;
                }
            }
        }
        i = end;
    }
    close_punct(out);
    let tail = out.trim_end();
    found.cut_off = last_was_disfmarker
        || tail.ends_with("--")
        || tail.ends_with('\u{2014}')
        || tail.ends_with('\u{2013}');
    found
}

fn emit(out: &mut String, pending_space: &mut bool, c: char) {
    if *pending_space {
        out.push(' ');
        *pending_space = false;
    }
    out.push(c);
}

/// At the end of a token: if it is only sentence punctuation that followed a space
/// ("better ?"), attach it to the previous word ("better?"). "a .net" is left alone because the
/// token has more than punctuation. Working on the output, after markup was skipped, keeps this
/// idempotent.
fn close_punct(out: &mut String) {
    let run = out
        .bytes()
        .rev()
        .take_while(|b| SENTENCE_PUNCT.contains(&(*b as char)))
        .count();
    if run == 0 {
        return;
    }
    let cut = out.len() - run;
    if cut >= 2 && out.as_bytes()[cut - 1] == b' ' && out.as_bytes()[cut - 2] != b' ' {
        out.remove(cut - 1);
    }
}

/// ASCII that needs no look at: not whitespace and not the start of markup.
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'<' | b'{' | b'[' | b'\\' | b'*' | b'_' | b'&')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn find_byte(bytes: &[u8], from: usize, needle: u8, max: usize) -> Option<usize> {
    let end = bytes.len().min(from.saturating_add(max));
    bytes
        .get(from..end)?
        .iter()
        .position(|&c| c == needle || c == b'\n')
        .map(|p| from + p)
        .filter(|&p| bytes[p] == needle)
}

/// Decode the HTML entity at the start of `s` (which begins with `&`): the character and the
/// byte length consumed. Unknown names are left alone, as browsers do.
pub(crate) fn decode_entity(s: &str) -> Option<(char, usize)> {
    let semi = s.as_bytes().iter().take(12).position(|&b| b == b';')?;
    let name = &s[1..semi];
    let c = if let Some(num) = name.strip_prefix('#') {
        let code = if let Some(hex) = num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse::<u32>().ok()?
        };
        char::from_u32(code).filter(|c| *c != '\0')?
    } else {
        match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => ' ',
            "lrm" | "rlm" | "zwj" | "zwnj" => ' ',
            "ndash" => '\u{2013}',
            "mdash" => '\u{2014}',
            "hellip" => '\u{2026}',
            "lsquo" => '\u{2018}',
            "rsquo" => '\u{2019}',
            "ldquo" => '\u{201c}',
            "rdquo" => '\u{201d}',
            _ => return None,
        }
    };
    Some((c, semi + 1))
}

/// Whether a whitespace-separated token counts as a word: it has a letter or digit.
pub(crate) fn is_word(token: &str) -> bool {
    token.chars().any(char::is_alphanumeric)
}

/// Number of words (tokens with a letter or digit), without allocating.
pub fn count_words(s: &str) -> usize {
    s.split_whitespace().filter(|t| is_word(t)).count()
}

/// Strip leading and trailing punctuation (keeping inner `'` and `-`, as in `mm-hmm`, `don't`).
pub(crate) fn trim_punct(token: &str) -> &str {
    token.trim_matches(|c: char| !c.is_alphanumeric())
}

/// ASCII case-insensitive substring search.
pub(crate) fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    let first = first.to_ascii_lowercase();
    (0..=h.len() - n.len()).any(|i| {
        h[i].to_ascii_lowercase() == first && h[i + 1..i + n.len()].eq_ignore_ascii_case(rest)
    })
}

/// Escape text so that [`clean_into`] gives it back unchanged (used by the renderers).
pub(crate) fn escape_for_reparse(text: &str, markdown: bool, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '{' => out.push_str("&#123;"),
            '[' => out.push_str("&#91;"),
            '*' if markdown => out.push_str("&#42;"),
            '\\' if markdown => out.push_str("&#92;"),
            '_' if markdown => out.push_str("&#95;"),
            '\u{a0}' => out.push_str("&#160;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(raw: &str, markdown: bool) -> (String, Cleaned) {
        let mut out = String::new();
        let c = clean_into(raw, &mut out, CleanOpts { markdown });
        (out, c)
    }

    #[test]
    fn strips_tags_entities_and_disfluencies() {
        let (t, c) = clean(
            "{vocalsound} Are we {disfmarker} we're <i>not</i> Q&amp;A ?",
            false,
        );
        assert_eq!(t, "Are we we're not Q&A?");
        assert_eq!(c.disfluencies, 2);
        assert!(!c.cut_off);
        let (_, c) = clean("it was an {disfmarker}", false);
        assert!(c.cut_off);
    }

    #[test]
    fn markdown_escapes_and_stage_directions() {
        let (t, c) = clean("No. **Sure**... Why not? \\[laughs\\] ok", true);
        assert_eq!(t, "No. Sure... Why not? ok");
        assert_eq!(c.disfluencies, 1);
    }

    #[test]
    fn literal_angle_bracket_and_unknown_entity_survive() {
        assert_eq!(clean("a < b &bogus; c", false).0, "a < b &bogus; c");
    }

    #[test]
    fn appends_with_single_space() {
        let mut out = String::from("first");
        clean_into("  second\r\nline ", &mut out, CleanOpts::default());
        assert_eq!(out, "first second line");
    }

    #[test]
    fn words_ignore_punctuation_tokens() {
        assert_eq!(count_words("so -- what ?"), 2);
    }
}
