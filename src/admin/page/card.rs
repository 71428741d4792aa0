//! The coaching card's markdown as HTML.
//!
//! The card is written by a model from a transcript, so it is untrusted text. pulldown-cmark
//! (CommonMark, https://docs.rs/pulldown-cmark) turns it into events and this module filters them
//! before its HTML writer sees them:
//! - raw HTML (`Event::Html`, `Event::InlineHtml`) becomes text, so a `<script>` in the card is shown
//!   as the characters, never parsed as a tag;
//! - links keep their text but lose the link unless the target is `http`, `https`, `mailto` or an
//!   in-page `#` anchor (no `javascript:` or `data:` URL reaches an `href`);
//! - images become their alt text (the page's CSP loads no image, and the card never needs one).
//!
//! The writer escapes every text and attribute it writes, so its output is the one place the page
//! inserts prepared HTML ([`maud::PreEscaped`]); nothing else in the page does.

use maud::{Markup, PreEscaped};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};

/// URL schemes (and the in-page anchor) a card's link may point at.
fn safe_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    ["http://", "https://", "mailto:", "#"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// The card's markdown as HTML, with raw HTML shown as text and unsafe links and images removed.
pub fn render(markdown: &str) -> Markup {
    // Footnotes carry the card's evidence (`[^1]`); tables and strikethrough are common in
    // model-written markdown.
    let options =
        Options::ENABLE_FOOTNOTES | Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    // Whether each open link was kept, so its end tag is kept or dropped with it.
    let mut links: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link { ref dest_url, .. }) => {
            let keep = safe_url(dest_url);
            links.push(keep);
            keep.then_some(event)
        }
        Event::End(TagEnd::Link) => links.pop().unwrap_or(false).then_some(event),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        other => Some(other),
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    PreEscaped(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tags the markdown writer produces for the options enabled here.
    const WRITER_TAGS: &[&str] = &[
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "em",
        "strong",
        "del",
        "a",
        "code",
        "pre",
        "blockquote",
        "hr",
        "br",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "sup",
        "div",
        "section",
    ];

    proptest! {
        /// Whatever the card holds, every tag in the HTML is one the markdown writer made (none
        /// from the card's own text), and no link points at a script.
        #[test]
        fn any_card_yields_only_writer_tags(md in prop::collection::vec(prop_oneof![
            Just("<script>".to_owned()), Just("</script>".to_owned()), Just("<img src=x onerror=y>".to_owned()),
            Just("<b onclick=\"z\">".to_owned()), Just("[l](javascript:a)".to_owned()), Just("[l](https://e.org)".to_owned()),
            Just("![i](x.png)".to_owned()), Just("[^1]".to_owned()), Just("\n\n[^1]: note\n".to_owned()),
            Just("`<i>`".to_owned()), Just("\n    <pre>\n".to_owned()), Just("&lt;".to_owned()),
            Just("# ".to_owned()), Just("- ".to_owned()), Just("\n".to_owned()), Just("| a | b |\n|---|---|\n".to_owned()),
            "[a-z <>\"'=/]{0,12}",
        ], 0..24)) {
            let html = render(&md.concat()).into_string();
            for tag in html.split('<').skip(1) {
                let name: String = tag
                    .trim_start_matches('/')
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                prop_assert!(WRITER_TAGS.contains(&name.as_str()), "<{}> in {}", name, html);
                let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                prop_assert!(!tag.contains("javascript:"), "{}", html);
                prop_assert!(!tag.contains(" on"), "{}", html);
            }
        }
    }

    fn html_of(md: &str) -> String {
        render(md).into_string()
    }

    #[test]
    fn markdown_becomes_html() {
        let out = html_of(
            "# Keep asking first\n\n**Coachee:** Mira · **Run:** single meeting\n\n\
             ## Try next\n\n- Ask one open question[^1]\n- Pause *before* answering\n\n\
             [^1]: S4 — “what would you try?”\n",
        );
        assert!(out.contains("<h1>Keep asking first</h1>"), "{out}");
        assert!(out.contains("<strong>Coachee:</strong>"), "{out}");
        assert!(out.contains("<h2>Try next</h2>"), "{out}");
        assert!(
            out.contains("<li>Pause <em>before</em> answering</li>"),
            "{out}"
        );
        assert!(out.contains("footnote-definition"), "{out}");
    }

    #[test]
    fn raw_html_in_the_card_is_shown_as_text() {
        let out = html_of(
            "# Card\n\n<script>alert(1)</script>\n\nText with <img src=x onerror=alert(2)> inline \
             and <b>bold</b>.\n",
        );
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(out.contains("&lt;img src=x onerror=alert(2)&gt;"), "{out}");
        assert!(out.contains("&lt;b&gt;bold&lt;/b&gt;"), "{out}");
    }

    #[test]
    fn entities_the_card_writer_uses_stay_characters() {
        // The card writer turns `<` into `&lt;` already; it must still read as `<`, once escaped.
        let out = html_of("Say &lt;script&gt; out loud\n");
        assert_eq!(out, "<p>Say &lt;script&gt; out loud</p>\n");
    }

    #[test]
    fn only_safe_links_stay_links_and_images_become_text() {
        let out = html_of(
            "[notes](https://example.org/a?b=1&c=2) [bad](javascript:alert(1)) \
             [data](DATA:text/html,x) ![a chart](https://example.org/c.png)\n",
        );
        assert!(
            out.contains("<a href=\"https://example.org/a?b=1&amp;c=2\">notes</a>"),
            "{out}"
        );
        assert!(!out.to_ascii_lowercase().contains("javascript:"), "{out}");
        assert!(!out.to_ascii_lowercase().contains("data:"), "{out}");
        assert!(out.contains(" bad "), "the text stays: {out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("a chart"), "{out}");
        assert_eq!(out.matches("<a ").count(), 1, "{out}");
        assert_eq!(out.matches("</a>").count(), 1, "{out}");
    }
}
