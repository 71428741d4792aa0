//! Print a parsed transcript as JSON: `cargo run -p coach-transcript --example dump -- FILE`.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump FILE");
        std::process::exit(2);
    };
    match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            coach_transcript::parse(&b, coach_transcript::Format::Auto).map_err(|e| e.to_string())
        }) {
        Ok(t) => println!(
            "{}",
            coach_transcript::render(&t, coach_transcript::Format::Json)
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
