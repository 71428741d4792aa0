//! The page templates: plain functions from the data shown to [`Markup`].
//!
//! They are maud templates (https://docs.rs/maud): HTML written as a Rust macro and checked when the
//! worker compiles, in which every `(value)` is escaped for text and attribute context alike. A
//! value can only reach the page unescaped through an explicit `PreEscaped`, and there are two: the
//! fixed stylesheet here and the filtered markdown of [`super::card`]. The templates know nothing of
//! actix, sessions or the journal, so the tests below render them from hand-made data.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::{card, gate1, talk};

/// The page's only style sheet, inline (the CSP allows inline styles and nothing else).
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}\
pre{background:#f6f6f6;padding:.5rem;white-space:pre-wrap}.failed,.check-fail{color:#a00}\
.succeeded,.check-pass{color:#070}form.inline{display:inline}nav.bar{margin-bottom:1rem}\
.card{border:1px solid #ccc;padding:0 1rem;max-width:50rem}figure.talk{margin:.5rem 0}\
details summary{cursor:pointer}sup.footnote-reference{margin-left:.15em}\
.footnote-definition p{display:inline;margin-left:.4em}";

/// One run as the list and the detail page show it.
#[derive(Debug, Clone, Default)]
pub struct RunHead {
    pub id: String,
    pub scenario: String,
    pub kind: String,
    /// `JobStatus::as_str`; also the status cell's class.
    pub status: String,
    pub attempts: u32,
    pub created: String,
    pub finished: String,
    /// `[CODE] message`, the message cut to 200 characters (the list only).
    pub error: String,
    pub replay_of: Option<String>,
    /// Finished runs get a replay button.
    pub replayable: bool,
}

/// A whole page around `body`.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · coach-worker admin" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                (body)
            }
        }
    }
}

pub fn csrf_input(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub fn login(csrf: &str, message: &str) -> Markup {
    html! {
        @if !message.is_empty() { p.failed { (message) } }
        form method="post" action="/admin/login" {
            (csrf_input(csrf))
            label { "Admin token " input type="password" name="token" autocomplete="current-password" required; }
            " "
            button type="submit" { "Log in" }
        }
    }
}

/// A message and a way back.
pub fn notice(message: &str, back: Option<(&str, &str)>) -> Markup {
    html! {
        p.failed { (message) }
        @if let Some((href, label)) = back { p { a href=(href) { (label) } } }
    }
}

pub fn not_replayed(id: &str, reason: &str) -> Markup {
    html! {
        p { "Run " (id) " was not replayed: " (reason) "." }
        p { a href={ "/admin/runs/" (id) } { "Back to the run" } }
    }
}

fn replay_button(csrf: &str, run_id: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/admin/runs/" (run_id) "/replay" } {
            (csrf_input(csrf))
            button type="submit" { "Replay" }
        }
    }
}

pub fn header_bar(csrf: &str) -> Markup {
    html! {
        nav.bar {
            a href="/admin" { "Recent runs" } " · "
            a href="/admin?status=failed" { "Failed runs" } " · "
            form.inline method="post" action="/admin/logout" {
                (csrf_input(csrf))
                button type="submit" { "Log out" }
            }
        }
    }
}

fn filter_hidden(status: &str, scenario: &str) -> Markup {
    html! {
        input type="hidden" name="status" value=(status);
        input type="hidden" name="scenario" value=(scenario);
    }
}

/// The statuses the filter offers, as (value, label).
const STATUS_CHOICES: [(&str, &str); 5] = [
    ("failed", "failed"),
    ("", "any"),
    ("succeeded", "succeeded"),
    ("cancelled", "cancelled"),
    (
        "queued,retry_scheduled,running",
        "queued,retry_scheduled,running",
    ),
];

/// The list: what it is filtered on, which page of how many, and its runs.
pub struct List<'a> {
    pub status: &'a str,
    pub scenario: &'a str,
    pub page: usize,
    pub pages: usize,
    pub total: u64,
    pub runs: &'a [RunHead],
}

/// Percent-encodes a query value (only what the filters can hold needs it, but do it all).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn list(csrf: &str, l: &List) -> Markup {
    let link = |p: usize| {
        format!(
            "/admin?status={}&scenario={}&page={p}",
            url_encode(l.status),
            url_encode(l.scenario)
        )
    };
    html! {
        (header_bar(csrf))
        form method="get" action="/admin" {
            label { "Status " select name="status" {
                @for (value, label) in STATUS_CHOICES {
                    option value=(value) selected[value == l.status] { (label) }
                }
            } }
            " "
            label { "Scenario " input name="scenario" value=(l.scenario) size="6"; }
            " "
            button type="submit" { "Filter" }
        }
        @if l.total > 0 {
            form method="post" action="/admin/replay/confirm" {
                (csrf_input(csrf))
                // An empty status replays failed runs only (see `run_bulk_page`), so it is sent as such.
                (filter_hidden(if l.status.is_empty() { "failed" } else { l.status }, l.scenario))
                // The confirm page that follows shows the exact count of what would be replayed.
                button type="submit" {
                    @if l.status.is_empty() { "Replay the failed runs among these…" }
                    @else { "Replay all " (l.total) " matching…" }
                }
            }
        }
        p {
            @if l.page > 1 { a href=(link(l.page - 1)) { "previous" } " · " }
            "page " (l.page) " of " (l.pages) " (" (l.total) " runs)"
            @if l.page < l.pages { " · " a href=(link(l.page + 1)) { "next" } }
        }
        table.runs {
            tr {
                th { "Run" } th { "Scenario" } th { "Kind" } th { "Status" } th { "Attempts" }
                th { "Created" } th { "Error" } th {}
            }
            @for run in l.runs {
                tr {
                    td { a href={ "/admin/runs/" (run.id) } { (run.id) } }
                    td { (run.scenario) }
                    td { (run.kind) }
                    td class=(run.status) { (run.status) }
                    td { (run.attempts) }
                    td { (run.created) }
                    td { (run.error) }
                    td { @if run.replayable { (replay_button(csrf, &run.id)) } }
                }
            }
        }
    }
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_array().is_some_and(Vec::is_empty)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn json_section(title: &str, value: &Value) -> Markup {
    html! {
        @if !is_empty(value) {
            h2 { (title) }
            pre { (pretty(value)) }
        }
    }
}

/// One run: its head, then everything `view::run_detail` (and the Run record) holds, the error
/// first.
pub fn detail(csrf: &str, run: &RunHead, v: &Value) -> Markup {
    let output = v.get("output").filter(|o| o.is_object());
    let coachee = output
        .and_then(|o| o.get("coachee_speaker"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let card_md = v.get("coaching_card").and_then(Value::as_str).unwrap_or("");
    let metrics = v.get("metrics").unwrap_or(&Value::Null);
    let charts = talk::charts(metrics, coachee);
    let report = v.get("gate1_report").filter(|r| r.is_object());
    let record_error = v.get("run_record").and_then(|r| r.get("error"));
    html! {
        (header_bar(csrf))
        table.run {
            tr { th { "Run" } td { (run.id) } }
            tr { th { "Scenario / kind" } td { (run.scenario) " / " (run.kind) } }
            tr { th { "Status" } td class=(run.status) { (run.status) } }
            tr { th { "Attempts" } td { (run.attempts) } }
            tr { th { "Created" } td { (run.created) } }
            tr { th { "Finished" } td { (run.finished) } }
            @if let Some(old) = &run.replay_of {
                tr { th { "Replay of" } td { a href={ "/admin/runs/" (old) } { (old) } } }
            }
        }
        @if run.replayable { p { (replay_button(csrf, &run.id)) } }
        // The error comes first: it is what an admin opens a failed run for.
        (json_section("Error", v.get("error").unwrap_or(&Value::Null)))
        @if let Some(error) = record_error {
            h2 { "Run record" }
            p.failed { "The Run record could not be read: " (error.get("message").and_then(Value::as_str).unwrap_or("")) }
        }
        @if let Some(report) = report {
            h2 { "Gate-1 report" }
            (gate1::table(report, output))
            details { summary { "The report as JSON" } pre { (pretty(report)) } }
        } @else {
            // A report kept in a shape the table does not know is still shown.
            (json_section("Gate-1 report", v.get("gate1_report").unwrap_or(&Value::Null)))
        }
        @if !card_md.trim().is_empty() {
            h2 { "Coaching card" }
            div.card { (card::render(card_md)) }
        } @else if v.get("coaching_card").is_some_and(|c| !c.is_string()) {
            (json_section("Coaching card", v.get("coaching_card").unwrap_or(&Value::Null)))
        }
        @if !charts.0.is_empty() {
            h2 { "Talk share" }
            (charts)
        }
        @for (title, key) in [
            ("Output", "output"),
            ("Result", "result"),
            ("Delivery (secrets redacted)", "delivery"),
            ("Attempts", "attempts_detail"),
            ("Follow-ups", "follow_ups"),
        ] {
            (json_section(title, v.get(key).unwrap_or(&Value::Null)))
        }
    }
}

/// The confirmation step of a replay-all: what matched and what would happen.
pub struct Confirm<'a> {
    pub status: &'a str,
    pub scenario: &'a str,
    pub matched: u64,
    pub replayed: usize,
    pub skipped: usize,
}

pub fn confirm(csrf: &str, c: &Confirm) -> Markup {
    html! {
        (header_bar(csrf))
        p {
            (c.matched) " runs match status “" (c.status) "”"
            @if !c.scenario.is_empty() { " and scenario “" (c.scenario) "”" }
            ": " (c.replayed) " would be replayed, " (c.skipped)
            " skipped (already replayed, or not finished)."
        }
        form method="post" action="/admin/replay" {
            (csrf_input(csrf))
            (filter_hidden(c.status, c.scenario))
            button type="submit" { "Yes, replay " (c.replayed) " runs" }
        }
        " "
        p { a href="/admin" { "Cancel" } }
    }
}

pub fn replay_started(csrf: &str, replayed: usize, skipped: usize) -> Markup {
    html! {
        (header_bar(csrf))
        p { "Replayed " (replayed) " runs; " (skipped) " skipped." }
        p { a href="/admin?status=" { "See recent runs" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Characters that would change the meaning of HTML if they went out raw.
    const EVIL: &str = "<script>alert(\"x\")</script>' onmouseover=\"y\" &amp;";
    const ESCAPED: &str =
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' onmouseover=&quot;y&quot; &amp;amp;";

    /// Fails when [`EVIL`] (which every field below holds) made a tag or an attribute: every raw
    /// `<` opens a tag the templates wrote, so no tag may be a script or carry the handler as an
    /// attribute of its own.
    fn assert_safe(html: &str) {
        assert!(!html.contains("<script"), "{html}");
        for tag in html.split('<').skip(1) {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            // Escaped, the quote stays inside the value: `onmouseover=&quot;y&quot;`.
            assert!(!tag.contains("onmouseover=\""), "<{tag}> in {html}");
        }
    }

    fn evil_head() -> RunHead {
        RunHead {
            id: format!("run_{EVIL}"),
            scenario: EVIL.into(),
            kind: EVIL.into(),
            status: EVIL.into(),
            attempts: 2,
            created: EVIL.into(),
            finished: EVIL.into(),
            error: format!("[E] {EVIL}"),
            replay_of: Some(format!("old_{EVIL}")),
            replayable: true,
        }
    }

    #[test]
    fn every_field_of_the_list_is_escaped() {
        let runs = [evil_head()];
        let html = layout(
            EVIL,
            list(
                EVIL,
                &List {
                    status: EVIL,
                    scenario: EVIL,
                    page: 2,
                    pages: 3,
                    total: 120,
                    runs: &runs,
                },
            ),
        )
        .into_string();
        assert_safe(&html);
        // Text, attribute values (class, href, value, option) and the title all hold it escaped.
        assert!(
            html.contains(&format!("<title>{ESCAPED} · coach-worker admin")),
            "{html}"
        );
        assert!(
            html.contains(&format!("<td class=\"{ESCAPED}\">{ESCAPED}</td>")),
            "{html}"
        );
        assert!(
            html.contains(&format!("href=\"/admin/runs/run_{ESCAPED}\"")),
            "{html}"
        );
        assert!(html.contains(&format!("action=\"/admin/runs/run_{ESCAPED}/replay\"")));
        assert!(html.contains(&format!("name=\"csrf\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("name=\"scenario\" value=\"{ESCAPED}\" size=\"6\"")));
        assert!(html.contains(&format!("[E] {ESCAPED}")));
        // The paging links carry the filter percent-encoded, and `&` as `&amp;`.
        assert!(html.contains("href=\"/admin?status=%3Cscript%3E"), "{html}");
        assert!(html.contains("&amp;scenario=%3Cscript%3E"), "{html}");
        assert!(html.contains("previous") && html.contains("next"));
    }

    #[test]
    fn the_list_keeps_its_forms_and_selects_the_filter() {
        let html = list(
            "tok",
            &List {
                status: "failed",
                scenario: "r1",
                page: 1,
                pages: 1,
                total: 3,
                runs: &[],
            },
        )
        .into_string();
        assert!(
            html.contains("<option value=\"failed\" selected>failed</option>"),
            "{html}"
        );
        assert!(html.contains("<option value=\"\">any</option>"), "{html}");
        assert!(html.contains("Replay all 3 matching…"));
        assert!(html.contains("action=\"/admin/replay/confirm\""));
        assert!(!html.contains("previous") && !html.contains("next"));
        let any = list(
            "tok",
            &List {
                status: "",
                scenario: "",
                page: 1,
                pages: 1,
                total: 3,
                runs: &[],
            },
        )
        .into_string();
        assert!(any.contains("<input type=\"hidden\" name=\"status\" value=\"failed\">"));
        assert!(any.contains("Replay the failed runs among these…"));
    }

    fn evil_view() -> Value {
        json!({
            "error": {"code": "E", "message": EVIL},
            "gate1_report": {"passed": false, "failures": [
                {"pointer": "/patterns/0/evidence/0/quote", "code": EVIL, "message": EVIL},
                {"pointer": EVIL, "code": "SCHEMA", "message": EVIL},
            ]},
            "output": {"coachee_speaker": EVIL, "patterns": [
                {"id": EVIL, "title": EVIL, "evidence": [{"span_id": EVIL, "quote": EVIL}]},
            ]},
            "coaching_card": format!("# {EVIL}\n\n{EVIL}\n\n<script>alert(1)</script>\n"),
            "metrics": [{"speakers": [{"speaker": EVIL, "talk_share": 0.6}, {"speaker": "B", "talk_share": 0.4}]}],
            "run_record": {"id": EVIL, "error": {"code": "STORE", "message": EVIL}},
            "result": {"note": EVIL},
            "delivery": {"key": EVIL},
            "attempts_detail": [{"error": EVIL}],
            "follow_ups": [{"run_id": EVIL}],
        })
    }

    #[test]
    fn every_field_of_the_detail_is_escaped() {
        let html = layout(EVIL, detail(EVIL, &evil_head(), &evil_view())).into_string();
        assert_safe(&html);
        for heading in [
            "Error",
            "Run record",
            "Gate-1 report",
            "Coaching card",
            "Talk share",
            "Output",
            "Result",
            "Delivery (secrets redacted)",
            "Attempts",
            "Follow-ups",
        ] {
            assert!(
                html.contains(&format!("<h2>{heading}</h2>")),
                "{heading}: {html}"
            );
        }
        assert!(
            html.contains(&format!("href=\"/admin/runs/old_{ESCAPED}\"")),
            "{html}"
        );
        // The card's raw HTML is text; its heading is a heading.
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("<div class=\"card\"><h1>"), "{html}");
        // The Gate-1 table and the chart hold the hostile strings as text.
        assert!(html.contains(&format!("<code>{ESCAPED}</code>")), "{html}");
        assert!(
            html.contains(&format!("data-speaker=\"{ESCAPED}\"")),
            "{html}"
        );
        assert!(
            html.contains(&format!("<title>{ESCAPED}: 60.0 %</title>")),
            "{html}"
        );
        assert!(html.contains("(coachee)</text>"), "{html}");
        assert!(html.contains(&format!("The Run record could not be read: {ESCAPED}")));
    }

    #[test]
    fn the_error_is_the_first_section_and_empty_sections_are_left_out() {
        let v = json!({"error": {"code": "NO_SPEAKER_LABELS", "message": "m"},
                       "gate1_report": null, "follow_ups": [], "output": null});
        let html = detail("tok", &RunHead::default(), &v).into_string();
        let first_h2 = html.find("<h2>").unwrap();
        assert!(
            html[first_h2..].starts_with("<h2>Error</h2><pre>"),
            "{html}"
        );
        assert_eq!(html.matches("<h2>").count(), 1, "{html}");
        assert!(!html.contains("Replay"), "not finished, no button: {html}");
    }

    #[test]
    fn a_succeeded_run_shows_its_card_report_and_talk_share() {
        let v = json!({
            "gate1_report": {"passed": true, "failures": []},
            "output": {"coachee_speaker": "Mira", "patterns": [
                {"id": "P1", "title": "Asks", "evidence": [{"span_id": "S1", "quote": "why?"}]},
            ]},
            "coaching_card": "# Keep asking\n\n- one\n",
            "metrics": [{"speakers": [{"speaker": "Mira", "talk_share": 0.25}, {"speaker": "Tom", "talk_share": 0.75}]}],
        });
        let run = RunHead {
            id: "run_1".into(),
            status: "succeeded".into(),
            replayable: true,
            ..RunHead::default()
        };
        let html = detail("tok", &run, &v).into_string();
        assert!(html.contains("<td class=\"succeeded\">succeeded</td>"));
        assert!(html.contains("<h1>Keep asking</h1>") && html.contains("<li>one</li>"));
        assert!(
            html.contains("<td class=\"check-pass\">pass</td><td>why?</td>"),
            "{html}"
        );
        assert!(
            html.contains("width=\"75.0\"") && html.contains("width=\"225.0\""),
            "{html}"
        );
        assert!(html.contains("action=\"/admin/runs/run_1/replay\""));
        assert!(!html.contains("class=\"failed\""), "{html}");
    }

    #[test]
    fn notices_and_the_bulk_pages_escape_what_they_show() {
        for html in [
            notice(EVIL, Some(("/admin", EVIL))).into_string(),
            not_replayed(EVIL, EVIL).into_string(),
            login(EVIL, EVIL).into_string(),
            confirm(
                EVIL,
                &Confirm {
                    status: EVIL,
                    scenario: EVIL,
                    matched: 4,
                    replayed: 3,
                    skipped: 1,
                },
            )
            .into_string(),
        ] {
            assert_safe(&html);
            assert!(html.contains(ESCAPED), "{html}");
        }
        let c = confirm(
            "tok",
            &Confirm {
                status: "failed",
                scenario: "",
                matched: 4,
                replayed: 3,
                skipped: 1,
            },
        )
        .into_string();
        assert!(
            c.contains("4 runs match status “failed”: 3 would be replayed, 1 skipped"),
            "{c}"
        );
        assert!(
            replay_started("tok", 2, 0)
                .into_string()
                .contains("Replayed 2 runs; 0 skipped.")
        );
    }
}
