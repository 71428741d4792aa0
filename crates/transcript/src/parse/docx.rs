//! Word documents (`.docx`): Teams and Google Meet offer the transcript as one.
//!
//! A `.docx` is a zip archive (ECMA-376 Open Packaging) whose body is `word/document.xml`; the
//! text of a paragraph (`w:p`) is the concatenation of its runs' `w:t` elements, with `w:tab`
//! and `w:br` as separators. We keep exactly that — one line per paragraph, a tab for `w:tab`
//! — and hand the result to the text parser, so a Teams speaker line `Name   0:04` reads the
//! same from .docx as from .txt. A password-protected Word file is not a zip at all but an OLE
//! compound file holding the encrypted package (MS-OFFCRYPTO), which is also what an old
//! binary `.doc` is: both get `DOCX_PROTECTED`, which says what to do.
//!
//! Decompression is bounded ([`MAX_XML_BYTES`]) so a zip bomb cannot exhaust memory.

use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::model::TranscriptError;

/// `PK\3\4`: a zip local file header, the first bytes of every .docx.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The OLE compound file signature (encrypted Office documents, legacy `.doc`).
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// Upper bound on the uncompressed `word/document.xml` (a two-hour transcript is ~2 MB).
pub const MAX_XML_BYTES: u64 = 64 * 1024 * 1024;

/// Whether the bytes are a zip or an OLE compound file (so, not text).
pub(crate) fn looks_like_office(input: &[u8]) -> bool {
    input.starts_with(ZIP_MAGIC) || input.starts_with(OLE_MAGIC)
}

fn unreadable(detail: impl Into<String>) -> TranscriptError {
    TranscriptError::DocxUnreadable {
        detail: detail.into(),
    }
}

/// The document's paragraphs, one per line.
pub(crate) fn to_text(input: &[u8]) -> Result<String, TranscriptError> {
    if input.starts_with(OLE_MAGIC) {
        return Err(TranscriptError::DocxProtected);
    }
    if !input.starts_with(ZIP_MAGIC) {
        return Err(unreadable("it does not start with a zip signature"));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(input)).map_err(|e| zip_error(&e))?;
    let mut entry = zip.by_name("word/document.xml").map_err(|e| match e {
        zip::result::ZipError::FileNotFound => {
            unreadable("the archive has no word/document.xml, so it is not a Word document")
        }
        e => zip_error(&e),
    })?;
    if entry.encrypted() {
        return Err(TranscriptError::DocxProtected);
    }
    let mut xml = Vec::with_capacity(entry.size().min(MAX_XML_BYTES) as usize);
    (&mut entry)
        .take(MAX_XML_BYTES + 1)
        .read_to_end(&mut xml)
        .map_err(|e| unreadable(format!("word/document.xml cannot be decompressed: {e}")))?;
    if xml.len() as u64 > MAX_XML_BYTES {
        return Err(unreadable(format!(
            "word/document.xml is over {} MB uncompressed",
            MAX_XML_BYTES / (1024 * 1024)
        )));
    }
    let xml = std::str::from_utf8(&xml)
        .map_err(|e| unreadable(format!("word/document.xml is not UTF-8 ({e})")))?;
    paragraphs(xml)
}

fn zip_error(e: &zip::result::ZipError) -> TranscriptError {
    match e {
        zip::result::ZipError::UnsupportedArchive(msg)
            if *msg == zip::result::ZipError::PASSWORD_REQUIRED =>
        {
            TranscriptError::DocxProtected
        }
        zip::result::ZipError::InvalidPassword => TranscriptError::DocxProtected,
        e => unreadable(format!("the zip archive is damaged: {e}")),
    }
}

/// Paragraph text from WordprocessingML.
fn paragraphs(xml: &str) -> Result<String, TranscriptError> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::with_capacity(xml.len() / 4);
    // Only text inside `w:t` is content; other character data (instrText, whitespace between
    // elements) is not what the reader sees.
    let mut in_text = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            unreadable(format!(
                "word/document.xml is not well-formed XML near byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => in_text = true,
                "tab" => out.push('\t'),
                "br" | "cr" => out.push('\n'),
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "tab" => out.push('\t'),
                "br" | "cr" => out.push('\n'),
                "p" => out.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => out.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => out.push_str(&t),
            Event::CData(t) if in_text => out.push_str(&t),
            Event::GeneralRef(r) if in_text => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match &*r {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    },
                };
                if let Some(c) = c {
                    out.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tabs_and_entities() {
        let xml = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>
            <w:p><w:r><w:t>Ravi Kumar</w:t></w:r><w:r><w:tab/><w:t>0:04</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Q&amp;A </w:t></w:r><w:r><w:t>next &#233;t&#xE9;</w:t></w:r></w:p>
            </w:body></w:document>"#;
        assert_eq!(
            paragraphs(xml).ok().as_deref(),
            Some("Ravi Kumar\t0:04\nQ&A next été\n")
        );
    }

    #[test]
    fn signatures() {
        assert!(matches!(
            to_text(OLE_MAGIC),
            Err(TranscriptError::DocxProtected)
        ));
        assert!(matches!(
            to_text(b"PK\x03\x04garbage"),
            Err(TranscriptError::DocxUnreadable { .. })
        ));
    }
}
