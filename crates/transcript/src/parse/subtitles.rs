//! WebVTT and SubRip: both are blocks of cues separated by blank lines, so they share the block
//! walker and the payload reader; they differ only in headers and skipped blocks.
//!
//! Speaker labels come from WebVTT voice tags (`<v Name>`, `<v.class Name>`, closed or not) or
//! from a `Name:` prefix on the first line of a cue. Several voice tags in one cue split it into
//! several pieces with the cue's times. A cue without a label continues the previous speaker.

use super::{Builder, parse_timestamp};
use crate::label::split_name_prefix;
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

fn parse_blocks(text: &str, format: Format) -> Result<Transcript, TranscriptError> {
    let mut b = Builder::new(format, CleanOpts::default(), text.len());
    let mut block: Vec<&str> = Vec::with_capacity(8);
    let mut first_block = true;
    let mut timed_cues = 0usize;
    let mut other_blocks = 0usize;
    let mut lines = text.lines();
    loop {
        let line = lines.next();
        match line {
            Some(l) if !l.trim().is_empty() => {
                block.push(l);
                continue;
            }
            _ => {}
        }
        if !block.is_empty() {
            let header = first_block && format == Format::Vtt;
            first_block = false;
            if !header {
                match cue_block(&block, format, &mut b) {
                    Block::Cue => timed_cues += 1,
                    Block::Metadata => {}
                    Block::Other => other_blocks += 1,
                }
            }
            block.clear();
        }
        if line.is_none() {
            break;
        }
    }
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
    Other,
}

/// Handle one block.
fn cue_block(block: &[&str], format: Format, b: &mut Builder) -> Block {
    let first = block[0].trim_start();
    if format == Format::Vtt {
        for kw in ["NOTE", "STYLE", "REGION"] {
            if let Some(rest) = first.strip_prefix(kw)
                && (rest.is_empty() || rest.starts_with([' ', '\t']))
            {
                return Block::Metadata;
            }
        }
    }
    // The timing line is first, or second after a cue identifier / SRT number.
    let Some(t) = block.iter().take(2).position(|l| l.contains("-->")) else {
        return Block::Other;
    };
    let Some((start, end)) = timing(block[t]) else {
        return Block::Other;
    };
    payload(&block[t + 1..], Some(start), Some(end), b);
    Block::Cue
}

fn timing(line: &str) -> Option<(f64, f64)> {
    let (left, right) = line.split_once("-->")?;
    let start = parse_timestamp(left.trim())?;
    // Cue settings (`align:start line:74%`) follow the end time.
    let end = parse_timestamp(right.split_whitespace().next()?)?;
    Some((start, end))
}

/// Read a cue's text lines, splitting on voice tags.
fn payload(lines: &[&str], start: Option<f64>, end: Option<f64>, b: &mut Builder) {
    let mut started = false;
    for (n, line) in lines.iter().enumerate() {
        let mut rest: &str = line;
        if n == 0 && !rest.trim_start().starts_with("<v") {
            let plain = rest.trim_start().trim_start_matches(['-', '>', ' ']);
            if let Some((label, after)) = split_name_prefix(plain) {
                b.cue(Some(label), start, end);
                started = true;
                rest = after;
            }
        }
        while let Some((before, name, after)) = find_voice(rest) {
            if !before.trim().is_empty() {
                if !started {
                    b.cue(None, start, end);
                }
                b.text(before);
            }
            b.cue(Some(name), start, end);
            started = true;
            rest = after;
        }
        if !started {
            b.cue(None, start, end);
            started = true;
        }
        b.text(rest);
    }
    if !started {
        // An empty cue still extends the current turn's time.
        b.cue(None, start, end);
    }
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
