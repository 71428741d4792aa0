//! The `coach-worker` binary: install the TLS crypto provider, parse the command line, dispatch.
//! The commands live in [`cli`].

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // reqwest is built without a default rustls provider (`rustls-no-provider`); the process picks
    // one, once, before any client exists. The libraries never install one themselves. Installing
    // fails only when one is already installed, which cannot happen this early.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let code = match cli::parse() {
        Ok(cli) => cli::dispatch(cli),
        Err(code) => code,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}
