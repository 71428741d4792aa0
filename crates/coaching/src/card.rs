//! The coaching card as markdown (what the Airtable `Coaching Card` field and `analyze` show).
//!
//! Evidence becomes numbered footnotes in order of first use while reading the card top to
//! bottom; citing the same span with the same quote again reuses its number, so a reader sees each
//! excerpt once. Footnotes use the common `[^n]` syntax (GitHub, Airtable's markdown renders it
//! as plain text, which still reads well). The renderer works on the raw JSON and skips what is
//! missing, so it can also show an output that failed Gate-1 while someone investigates it.
//!
//! Every text that reaches the card comes from a model or a transcript, and Make scenarios may render
//! the card into an email as HTML, where markdown lets raw HTML through. So `<` and `>` in any of it
//! are written as `&lt;` and `&gt;`: a renderer shows them as the characters, never as a tag.

use serde_json::Value;

struct Footnotes {
    notes: Vec<(String, String)>,
}

impl Footnotes {
    /// The footnote number of `(span, quote)`, adding it on first use.
    fn cite(&mut self, span: &str, quote: &str) -> usize {
        if let Some(i) = self.notes.iter().position(|(s, q)| s == span && q == quote) {
            return i + 1;
        }
        self.notes.push((span.to_string(), quote.to_string()));
        self.notes.len()
    }

    fn refs(&mut self, evidence: Option<&Value>) -> String {
        let mut out = String::new();
        for ev in evidence.and_then(Value::as_array).into_iter().flatten() {
            let span = str_of(ev, "span_id");
            let quote = str_of(ev, "quote");
            if span.is_empty() {
                continue;
            }
            let n = self.cite(span, quote);
            out.push_str(&format!("[^{n}]"));
        }
        out
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Keeps a model-written string on one markdown line, with no HTML tag in it.
fn inline(s: &str) -> String {
    no_html(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Writes the characters that open and close HTML tags as entities.
fn no_html(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

fn category_label(c: &str) -> String {
    match c {
        "talk_balance" => "Talk balance".into(),
        "filler_hedging" => "Fillers and hedging".into(),
        other => title_case(other),
    }
}

fn title_case(s: &str) -> String {
    let s = s.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Render a Gate-1 output as a markdown coaching card with footnoted evidence.
pub fn render_markdown(output: &Value) -> String {
    let mut notes = Footnotes { notes: Vec::new() };
    let mut md = String::new();
    let card = output.get("coaching_card").unwrap_or(&Value::Null);
    let headline = str_of(card, "headline");
    let coachee = str_of(output, "coachee_speaker");
    md.push_str(&format!(
        "# {}\n\n",
        if headline.is_empty() {
            "Coaching card".to_string()
        } else {
            inline(headline)
        }
    ));
    let run = match str_of(output, "run_type") {
        "baseline_pack" => "baseline pack (3 meetings)",
        _ => "single meeting",
    };
    md.push_str(&format!(
        "**Coachee:** {} · **Run:** {run}\n\n",
        inline(coachee)
    ));
    let summary = str_of(output, "summary");
    if !summary.is_empty() {
        md.push_str(&format!("{}\n\n", inline(summary)));
    }
    let list = |md: &mut String, heading: &str, items: Option<&Value>| {
        let items: Vec<&str> = items
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if items.is_empty() {
            return;
        }
        md.push_str(&format!("## {heading}\n\n"));
        for i in items {
            md.push_str(&format!("- {}\n", inline(i)));
        }
        md.push('\n');
    };
    list(&mut md, "Keep doing", card.get("keep_doing"));
    list(&mut md, "Try next", card.get("try_next"));

    let patterns = output.get("patterns").and_then(Value::as_array);
    if patterns.is_some_and(|p| !p.is_empty()) {
        md.push_str("## What the transcript shows\n\n");
    }
    for p in patterns.into_iter().flatten() {
        let kind = title_case(str_of(p, "kind"));
        md.push_str(&format!(
            "### {} · {} — {}\n\n",
            inline(str_of(p, "id")),
            inline(&kind),
            inline(str_of(p, "title"))
        ));
        md.push_str(&format!(
            "*{}*\n\n",
            inline(&category_label(str_of(p, "category")))
        ));
        let refs = notes.refs(p.get("evidence"));
        md.push_str(&format!("{}{refs}\n\n", inline(str_of(p, "observation"))));
        let impact = str_of(p, "impact");
        if !impact.is_empty() {
            md.push_str(&format!("**Why it matters:** {}\n\n", inline(impact)));
        }
    }

    if let Some(e) = output.get("experiment_proposal").filter(|v| v.is_object()) {
        md.push_str("## Proposed experiment\n\n");
        md.push_str(&format!("**{}**\n\n", inline(str_of(e, "title"))));
        md.push_str(&format!("- **Try:** {}\n", inline(str_of(e, "behavior"))));
        md.push_str(&format!(
            "- **You'll know it works when:** {}\n",
            inline(str_of(e, "success_signal"))
        ));
        if let Some(n) = e.get("target_meetings").and_then(Value::as_u64) {
            md.push_str(&format!("- **For the next:** {n} meeting(s)\n"));
        }
        md.push('\n');
    }
    if let Some(a) = output.get("experiment_attempt").filter(|v| v.is_object()) {
        md.push_str("## Experiment attempt\n\n");
        let refs = notes.refs(a.get("evidence"));
        md.push_str(&format!(
            "**Attempted:** {}{refs}\n\n",
            inline(str_of(a, "attempted"))
        ));
        let note = str_of(a, "note");
        if !note.is_empty() {
            md.push_str(&format!("{}\n\n", inline(note)));
        }
    }

    if !notes.notes.is_empty() {
        md.push_str("---\n\n");
        for (i, (span, quote)) in notes.notes.iter().enumerate() {
            md.push_str(&format!(
                "[^{}]: {} — “{}”\n",
                i + 1,
                inline(span),
                inline(quote)
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn footnotes_number_in_order_of_first_use_and_reuse() {
        let out = json!({
            "run_type": "single_meeting", "coachee_speaker": "Ana", "summary": "s",
            "coaching_card": {"headline": "H", "keep_doing": ["k"], "try_next": ["t"]},
            "patterns": [
                {"id": "P1", "kind": "growth", "category": "questions", "title": "T1", "observation": "O1", "impact": "I",
                 "evidence": [{"span_id": "S9", "quote": "nine"}, {"span_id": "S2", "quote": "two"}]},
                {"id": "P2", "kind": "strength", "category": "clarity", "title": "T2", "observation": "O2", "impact": "I",
                 "evidence": [{"span_id": "S2", "quote": "two"}, {"span_id": "S5", "quote": "five"}]}
            ],
            "experiment_proposal": null, "experiment_attempt": null
        });
        let md = render_markdown(&out);
        assert!(md.contains("O1[^1][^2]"), "{md}");
        assert!(md.contains("O2[^2][^3]"), "{md}");
        assert!(md.contains("[^1]: S9 — “nine”"));
        assert!(md.contains("[^3]: S5 — “five”"));
        assert!(!md.contains("[^4]"));
    }

    #[test]
    fn no_raw_html_from_a_transcript_or_a_model_reaches_the_card() {
        let out = json!({
            "run_type": "single_meeting", "coachee_speaker": "Ana <b>", "summary": "<img src=x onerror=alert(1)>",
            "coaching_card": {"headline": "<script>alert(1)</script>", "keep_doing": ["<a href='x'>k</a>"], "try_next": ["t"]},
            "patterns": [
                {"id": "P1<i>", "kind": "growth", "category": "<u>q</u>", "title": "<h1>T</h1>", "observation": "O", "impact": "<em>I</em>",
                 "evidence": [{"span_id": "S1<br>", "quote": "said </p><iframe src=//x>"}]}
            ],
            "experiment_proposal": {"title": "<t>", "behavior": "<b>", "success_signal": "<s>", "target_meetings": 2},
            "experiment_attempt": {"attempted": "<yes>", "note": "<n>", "evidence": []}
        });
        let md = render_markdown(&out);
        assert!(!md.contains('<') && !md.contains('>'), "{md}");
        assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{md}");
        assert!(
            md.contains("“said &lt;/p&gt;&lt;iframe src=//x&gt;”"),
            "{md}"
        );
    }
}
