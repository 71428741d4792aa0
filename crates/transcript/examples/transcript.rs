//! The crate's CLI on its own, for trying it before the worker binary wires it:
//! `cargo run -p coach-transcript --example transcript -- metrics FILE --coachee NAME`.
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: coach_transcript::cli::Command,
}

fn main() {
    std::process::exit(coach_transcript::cli::run(Args::parse().cmd));
}
