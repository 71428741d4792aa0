//! Builds a long meeting from the hand-written fixtures, for the benchmark and the memory test.
//!
//! The cues of `tests/fixtures/one_on_one.vtt` are repeated with their times compressed and
//! shifted so that `reps` copies fill `total_seconds`. Rotating the three speakers' names per copy
//! keeps it a many-person meeting rather than one conversation on a loop.

use std::fmt::Write as _;

const NAMES: [[&str; 3]; 4] = [
    ["Maya", "Tom", "Priya"],
    ["Tom", "Priya", "Maya"],
    ["Priya", "Maya", "Tom"],
    ["Maya", "Priya", "Tom"],
];

fn parse_ts(s: &str) -> f64 {
    let mut total = 0.0;
    for part in s.trim().split(':') {
        total = total * 60.0 + part.parse::<f64>().unwrap_or(0.0);
    }
    total
}

fn ts(out: &mut String, secs: f64) {
    let ms = (secs * 1000.0).round() as u64;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// A WebVTT meeting of `reps` copies of the fixture spread over `total_seconds`.
pub fn long_vtt(reps: usize, total_seconds: f64) -> String {
    let src = include_str!("../fixtures/one_on_one.vtt").replace("\r\n", "\n");
    let cues: Vec<&str> = src.split("\n\n").filter(|b| b.contains("-->")).collect();
    let period = total_seconds / reps as f64;
    let scale = period / 60.0;
    let mut out = String::with_capacity(src.len() * reps + 64);
    out.push_str("WEBVTT\n");
    for k in 0..reps {
        let names = NAMES[k % NAMES.len()];
        let base = k as f64 * period;
        for block in &cues {
            out.push('\n');
            for line in block.lines() {
                if let Some((a, b)) = line.split_once("-->") {
                    let end = b.split_whitespace().next().unwrap_or("0");
                    ts(&mut out, base + parse_ts(a) * scale);
                    out.push_str(" --> ");
                    ts(&mut out, base + parse_ts(end) * scale);
                    out.push('\n');
                } else if line.contains("-->") || line == "intro" {
                    continue;
                } else {
                    let renamed = line
                        .replace("Maya", "\u{1}")
                        .replace("Tom", "\u{2}")
                        .replace("Priya", "\u{3}")
                        .replace('\u{1}', names[0])
                        .replace('\u{2}', names[1])
                        .replace('\u{3}', names[2]);
                    out.push_str(&renamed);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// The benchmark meeting: about 20,000 words over two hours.
pub fn two_hour_vtt() -> String {
    long_vtt(247, 7200.0)
}
