//! The crate on its own, without the worker binary: parse a transcript and print its segments in
//! the `transcript parse` shape.
//! `cargo run -p coach-transcript --example transcript -- FILE` (the full command line, with
//! `metrics`, is `coach-worker transcript`).
use coach_transcript::report::ParseReport;
use coach_transcript::{Format, parse};

fn main() {
    let Some(file) = std::env::args_os().nth(1) else {
        eprintln!("usage: transcript FILE");
        std::process::exit(2);
    };
    let result = std::fs::read(&file)
        .map_err(|e| e.to_string())
        .and_then(|bytes| parse(&bytes, Format::Auto).map_err(|e| format!("[{}] {e}", e.code())))
        .and_then(|t| {
            serde_json::to_string_pretty(&ParseReport::from(&t)).map_err(|e| e.to_string())
        });
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
