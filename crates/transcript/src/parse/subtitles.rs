//! WebVTT and SubRip: both are blocks of cues separated by blank lines, so they share the block
//! walker and the payload reader; they differ only in headers and skipped blocks.
//!
//! Speaker labels come from WebVTT voice tags (`<v Name>`, `<v.class Name>`, closed or not) or
//! from a label at the start of a cue, in any form a text line accepts — `Name:` (display names
//! as people type them: `jules:`, `Mei Tan (she/her):`), `[SPEAKER_00]:` (whisperX),
//! `**Name:**` — after an optional `-` or `>>` dialogue marker. Several voice tags in one cue
//! split it into several pieces with the cue's times. A cue without a label continues the
//! previous speaker; a cue with one never does unless it names the same person.
//!
//! Exports put blank lines inside cues (after the timing line, between two paragraphs of one
//! SRT cue), so a block without a timing line continues the cue before it — its text belongs
//! to that cue, and if the cue had no text yet, its first line may carry the label. A block
//! with no cue to belong to is reported as an `UNTIMED_BLOCK` warning, never dropped silently.

use super::{Builder, parse_timestamp, plain, preview};
use crate::label::{self, split_cue_prefix};
use crate::model::{Format, Transcript, TranscriptError};
use crate::text::CleanOpts;

pub(crate) fn parse_vtt(text: &str) -> Result<Transcript, TranscriptError> {
    if !text.trim_start().starts_with("WEBVTT") {
        return Err(TranscriptError::UnknownFormat {
            detail: "a WebVTT file must start with the line `WEBVTT`".into(),
        });
    }
    parse_blocks(text, Format::Vtt)
}

pub(crate) fn parse_srt(text: &str) -> Result<Transcript, TranscriptError> {
    parse_blocks(text, Format::Srt)
}

/// The cue being read: its times and whether `Builder::cue` was called for it yet.
struct CueState {
    start: Option<f64>,
    end: Option<f64>,
    started: bool,
    /// 1-based line of the `start --> end` line.
    timing_line: usize,
}

fn parse_blocks(text: &str, format: Format) -> Result<Transcript, TranscriptError> {
    let mut b = Builder::new(format, CleanOpts::default(), text.len());
    let mut block: Vec<&str> = Vec::with_capacity(8);
    let mut block_line = 0usize;
    let mut first_block = true;
    let mut timed_cues = 0usize;
    let mut other_blocks = 0usize;
    let mut cue: Option<CueState> = None;
    let mut lines = text.lines().enumerate();
    loop {
        let line = lines.next();
        match line {
            Some((n, l)) if !l.trim().is_empty() => {
                if block.is_empty() {
                    block_line = n + 1;
                }
                block.push(l);
                continue;
            }
            _ => {}
        }
        if !block.is_empty() {
            let header = first_block && format == Format::Vtt;
            first_block = false;
            if !header {
                match cue_block(&block, block_line, format, &mut cue, &mut b) {
                    Block::Cue => timed_cues += 1,
                    Block::Metadata | Block::Continued => {}
                    Block::Other => other_blocks += 1,
                }
            }
            block.clear();
        }
        if line.is_none() {
            break;
        }
    }
    flush(&mut cue, &mut b);
    if timed_cues == 0 && other_blocks == 0 {
        // Only a header, notes and styles: nothing was said.
        return Err(TranscriptError::EmptyInput);
    }
    if timed_cues == 0 {
        return Err(TranscriptError::UnknownFormat {
            detail: format!("no `start --> end` cue timings found in this {format} input"),
        });
    }
    b.finish()
}

enum Block {
    Cue,
    Metadata,
    Continued,
    Other,
}

/// Handle one block starting at 1-based line `first_line`.
fn cue_block(
    block: &[&str],
    first_line: usize,
    format: Format,
    cue: &mut Option<CueState>,
    b: &mut Builder,
) -> Block {
    let first = block[0].trim_start();
    if format == Format::Vtt {
        for kw in ["NOTE", "STYLE", "REGION"] {
            if let Some(rest) = first.strip_prefix(kw)
                && (rest.is_empty() || rest.starts_with([' ', '\t']))
            {
                flush(cue, b);
                *cue = None;
                return Block::Metadata;
            }
        }
    }
    // The timing line is first, or second after a cue identifier / SRT number.
    let timed = block
        .iter()
        .take(2)
        .position(|l| l.contains("-->"))
        .and_then(|t| timing(block[t]).map(|times| (t, times)));
    if let Some((t, (start, end))) = timed {
        let mut state = CueState {
            start: Some(start),
            end: Some(end),
            started: false,
            timing_line: first_line + t,
        };
        flush(cue, b);
        b.at(first_line + t);
        payload(&block[t + 1..], first_line + t + 1, &mut state, b);
        // A cue with no text yet may get it from the next block (a blank line after the timing
        // line); `flush` extends the current turn if it never does.
        *cue = Some(state);
        return Block::Cue;
    }
    if let Some(state) = cue.as_mut() {
        if block.len() == 1 && is_cue_id(block[0]) {
            // A lone identifier before a timing line that follows after a blank line.
            return Block::Continued;
        }
        payload(block, first_line, state, b);
        return Block::Continued;
    }
    b.at(first_line);
    b.warn(
        "UNTIMED_BLOCK",
        format!(
            "a block without a `start --> end` timing line was not attributed: \"{}\"",
            preview(block.join(" ").trim(), 80)
        ),
    );
    Block::Other
}

/// An empty cue still extends the current turn's time.
fn flush(cue: &mut Option<CueState>, b: &mut Builder) {
    if let Some(state) = cue.as_mut()
        && !state.started
    {
        b.at(state.timing_line);
        b.cue(None, state.start, state.end);
        state.started = true;
    }
}

fn is_cue_id(line: &str) -> bool {
    let l = line.trim();
    !l.is_empty() && l.len() <= 12 && l.bytes().all(|c| c.is_ascii_digit())
}

fn timing(line: &str) -> Option<(f64, f64)> {
    let (left, right) = line.split_once("-->")?;
    let start = parse_timestamp(left.trim())?;
    // Cue settings (`align:start line:74%`) follow the end time.
    let end = parse_timestamp(right.split_whitespace().next()?)?;
    Some((start, end))
}

/// A label at the start of a cue: `Name:`, `[Name]`/`[Name]:`, `**Name:**`, after an optional
/// `-` / `>>` dialogue marker. Bracketed stage directions (`[Music]`, `[laughter]`) are not
/// labels here: they are removed from the text as before.
fn cue_label(line: &str) -> Option<(&str, &str)> {
    let plain = line.trim_start().trim_start_matches(['-', '>', ' ', '\t']);
    if plain.starts_with("<v") {
        return None;
    }
    if plain.starts_with('[') {
        return plain::bracket_label(plain, label::is_cue_name)
            .filter(|(name, _)| label::is_person(name));
    }
    if plain.starts_with("**") {
        return plain::bold_label(plain, label::is_cue_name);
    }
    split_cue_prefix(plain)
}

/// Read a cue's text lines (1-based `first_line` is the first of them), splitting on voice
/// tags. The first line of a cue that has not started yet may carry a label.
fn payload(lines: &[&str], first_line: usize, state: &mut CueState, b: &mut Builder) {
    for (n, line) in lines.iter().enumerate() {
        let line_no = first_line + n;
        b.at(line_no);
        let mut rest: &str = line;
        if !state.started
            && let Some((label, after)) = cue_label(rest)
        {
            cue_at(b, state, Some(label), line_no);
            rest = after;
        }
        while let Some((before, name, after)) = find_voice(rest) {
            if !before.trim().is_empty() {
                if !state.started {
                    cue_at(b, state, None, line_no);
                }
                b.text(before);
            }
            cue_at(b, state, Some(name), line_no);
            rest = after;
        }
        if !state.started {
            cue_at(b, state, None, line_no);
        }
        b.text(rest);
    }
}

/// Open (or continue) a turn for this cue; times are reported against the timing line.
fn cue_at(b: &mut Builder, state: &mut CueState, label: Option<&str>, line_no: usize) {
    b.at(state.timing_line);
    b.cue(label, state.start, state.end);
    state.started = true;
    b.at(line_no);
}

/// Find `<v Name>` / `<v.class Name>`: text before it, the name, text after it.
fn find_voice(s: &str) -> Option<(&str, &str, &str)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(p) = s[from..].find("<v") {
        let at = from + p;
        let next = bytes.get(at + 2).copied();
        if matches!(next, Some(b' ' | b'.' | b'\t'))
            && let Some(close) = s[at..].find('>')
        {
            let tag = &s[at + 2..at + close];
            // Skip the class list (`.loud.quiet`), then the annotation is the name.
            let name = match tag.find([' ', '\t']) {
                Some(sp) => tag[sp..].trim(),
                None => "",
            };
            if !name.is_empty() {
                return Some((&s[..at], name, &s[at + close + 1..]));
            }
        }
        from = at + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_tag_variants() {
        assert_eq!(find_voice("<v Travis> hi"), Some(("", "Travis", " hi")));
        assert_eq!(
            find_voice("<v.loud Esme Jones>hey</v>"),
            Some(("", "Esme Jones", "hey</v>"))
        );
        assert_eq!(find_voice("no tag <video>"), None);
    }
}
