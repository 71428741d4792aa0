//! Each speaker's talk share as a small inline SVG bar chart, drawn on the server.
//!
//! The run's metrics are one `MeetingMetrics` per meeting (`coach_transcript::metrics`), each with
//! `speakers[].speaker` and `speakers[].talk_share` (0..1). A bar's width is its share of
//! [`BAR_WIDTH`], so the bars of one meeting add up to the full width. The SVG is markup in the page:
//! no script, no external asset and no `style` element, so the page's CSP
//! (`default-src 'none'; style-src 'unsafe-inline'`) holds; colours are presentation attributes.

use maud::{Markup, html};
use serde_json::Value;

/// Width in SVG units of a 100 % bar.
pub const BAR_WIDTH: f64 = 300.0;
const LABEL_WIDTH: f64 = 180.0;
const ROW_HEIGHT: f64 = 22.0;
const BAR_HEIGHT: f64 = 16.0;
/// Room right of a full bar for its percentage.
const VALUE_WIDTH: f64 = 60.0;

/// One speaker's bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub speaker: String,
    /// 0..1 (a missing, negative or non-finite share counts as 0; more than 1 as 1).
    pub share: f64,
    /// `share * BAR_WIDTH`.
    pub width: f64,
    pub coachee: bool,
}

/// The bars of one meeting's metrics, in the metrics' speaker order.
pub fn bars(meeting: &Value, coachee: &str) -> Vec<Bar> {
    meeting
        .get("speakers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let speaker = s
                .get("speaker")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let share = s
                .get("talk_share")
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite())
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            Bar {
                coachee: !coachee.is_empty() && speaker == coachee,
                speaker,
                share,
                width: share * BAR_WIDTH,
            }
        })
        .collect()
}

/// Characters of a speaker's name that fit left of the bars; longer names are cut with `…` (the
/// whole name stays in the bar's tooltip).
const LABEL_CHARS: usize = 20;

fn short(name: &str) -> String {
    if name.chars().count() <= LABEL_CHARS {
        return name.to_owned();
    }
    let mut cut: String = name.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A number for an SVG attribute: one decimal is finer than a pixel at this size.
fn num(x: f64) -> String {
    format!("{x:.1}")
}

/// One meeting's chart.
pub fn chart(bars: &[Bar], label: &str) -> Markup {
    let width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH;
    let height = ROW_HEIGHT * bars.len() as f64;
    html! {
        svg.talk xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            width=(num(width)) height=(num(height)) viewBox={ "0 0 " (num(width)) " " (num(height)) } {
            title { (label) }
            @for (i, bar) in bars.iter().enumerate() {
                @let y = ROW_HEIGHT * i as f64;
                g.bar data-speaker=(bar.speaker) {
                    title { (bar.speaker) ": " (format!("{:.1} %", bar.share * 100.0)) }
                    text x=(num(LABEL_WIDTH - 6.0)) y=(num(y + 15.0)) text-anchor="end" font-size="13" {
                        (short(&bar.speaker)) @if bar.coachee { " (coachee)" }
                    }
                    rect x=(num(LABEL_WIDTH)) y=(num(y + 3.0)) width=(num(BAR_WIDTH)) height=(num(BAR_HEIGHT)) fill="#eee" {}
                    rect.share x=(num(LABEL_WIDTH)) y=(num(y + 3.0)) width=(num(bar.width)) height=(num(BAR_HEIGHT))
                        fill=(if bar.coachee { "#2b6cb0" } else { "#90a4b8" }) {}
                    text x=(num(LABEL_WIDTH + BAR_WIDTH + 6.0)) y=(num(y + 15.0)) font-size="13" {
                        (format!("{:.0} %", bar.share * 100.0))
                    }
                }
            }
        }
    }
}

/// One chart per meeting of `metrics` (an array of meetings, or one meeting), titled by meeting
/// when there are several. Empty when no meeting names a speaker.
pub fn charts(metrics: &Value, coachee: &str) -> Markup {
    let meetings: Vec<&Value> = match metrics {
        Value::Array(list) => list.iter().collect(),
        Value::Object(_) => vec![metrics],
        _ => Vec::new(),
    };
    let several = meetings.len() > 1;
    html! {
        @for (i, meeting) in meetings.iter().enumerate() {
            @let bars = bars(meeting, coachee);
            @if !bars.is_empty() {
                @let label = if several { format!("Talk share, meeting {}", i + 1) } else { "Talk share".to_owned() };
                figure.talk {
                    (chart(&bars, &label))
                    @if several { figcaption { "Meeting " (i + 1) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meeting() -> Value {
        json!({"basis": "words", "speakers": [
            {"speaker": "Mira", "talk_share": 0.5},
            {"speaker": "Tom", "talk_share": 0.3},
            {"speaker": "Ana", "talk_share": 0.2},
        ]})
    }

    /// The `width` of every `rect.share`, in document order.
    fn share_widths(svg: &str) -> Vec<f64> {
        svg.split("<rect class=\"share\"")
            .skip(1)
            .map(|r| {
                let at = r.find("width=\"").unwrap() + 7;
                r[at..at + r[at..].find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn bar_widths_are_the_talk_shares_and_add_up_to_the_full_width() {
        let bars = bars(&meeting(), "Mira");
        let widths: Vec<f64> = bars.iter().map(|b| b.width).collect();
        assert_eq!(widths, vec![150.0, 90.0, 60.0]);
        assert!(bars[0].coachee && !bars[1].coachee);
        let svg = chart(&bars, "Talk share").into_string();
        let drawn = share_widths(&svg);
        assert_eq!(drawn, vec![150.0, 90.0, 60.0]);
        assert!(
            (drawn.iter().sum::<f64>() - BAR_WIDTH).abs() < 0.2,
            "{drawn:?}"
        );
        assert!(svg.contains(">50 %<") && svg.contains(">30 %<") && svg.contains(">20 %<"));
        assert!(svg.contains("Mira (coachee)"), "{svg}");
    }

    #[test]
    fn odd_shares_are_clamped_and_never_break_the_svg() {
        let m = json!({"speakers": [
            {"speaker": "A", "talk_share": 1.7},
            {"speaker": "B", "talk_share": -0.2},
            {"speaker": "C"},
        ]});
        let widths: Vec<f64> = bars(&m, "").iter().map(|b| b.width).collect();
        assert_eq!(widths, vec![BAR_WIDTH, 0.0, 0.0]);
    }

    #[test]
    fn a_pack_gets_one_chart_per_meeting_and_no_speakers_no_chart() {
        let pack = json!([meeting(), meeting(), {"speakers": []}]);
        let html = charts(&pack, "Tom").into_string();
        assert_eq!(html.matches("<svg").count(), 2, "{html}");
        assert!(html.contains("Talk share, meeting 2"), "{html}");
        assert_eq!(charts(&Value::Null, "").into_string(), "");
        assert_eq!(
            share_widths(&html),
            vec![150.0, 90.0, 60.0, 150.0, 90.0, 60.0]
        );
    }

    #[test]
    fn long_names_are_cut_on_the_chart_and_kept_whole_in_the_tooltip() {
        let name = "Maximiliane Oberhuber-Castellanos";
        let m = json!({"speakers": [{"speaker": name, "talk_share": 1.0}]});
        let svg = charts(&m, "").into_string();
        assert!(svg.contains(">Maximiliane Oberhub…</text>"), "{svg}");
        assert!(
            svg.contains(&format!("<title>{name}: 100.0 %</title>")),
            "{svg}"
        );
    }

    #[test]
    fn speaker_names_are_escaped_in_text_and_attributes() {
        let m = json!({"speakers": [
            {"speaker": "<script>x</script>\" onload=\"y", "talk_share": 1.0},
        ]});
        let svg = charts(&m, "").into_string();
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("\" onload=\""), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;x&lt;/script&gt;&quot; onload=&quot;y"),
            "{svg}"
        );
    }
}
