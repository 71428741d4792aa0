//! Configuration as an operator meets it: the real binary, a clean environment, `.env.example`
//! sourced as it ships, a `.env` file in the working directory, and errors that name the variable.

use std::path::Path;
use std::process::{Command, Output};

use clap::Parser;
use coach_worker::config::ServeConfig;

/// The variables of `.env.example`, as `set -a; . ./.env.example` would export them.
fn env_example() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example"))
        .unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The binary with nothing but PATH in its environment, run in `cwd`.
fn worker(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coach-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(cwd);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A data dir that cannot be created (a file is in the way): the worker stops right after the
/// configuration passed, with exit code 1 instead of 2.
fn blocked_data_dir(dir: &Path) -> String {
    let path = dir.join("not-a-folder");
    std::fs::write(&path, b"").unwrap();
    path.display().to_string()
}

#[test]
fn env_example_sourced_as_shipped_passes_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let vars = env_example();
    assert!(
        vars.iter()
            .any(|(k, v)| k == "COACH_ADMIN_TOKEN" && v.is_empty()),
        "the example leaves optional values empty"
    );
    let out = worker(dir.path())
        .args(["serve"])
        .envs(vars)
        .env("COACH_WEBHOOK_SECRETS", "a-make-secret-of-20-chars")
        .env("COACH_DATA_DIR", blocked_data_dir(dir.path()))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("configuration"), "{err}");
    assert!(err.contains("COACH_DATA_DIR"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn a_database_url_that_is_not_postgres_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgress://db/coach",
        "POSTGRES://db/coach",
        "host=db dbname=coach",
    ] {
        let out = worker(dir.path())
            .args(["serve"])
            .env("COACH_WEBHOOK_SECRETS", "a-make-secret-of-20-chars")
            .env("COACH_DATABASE_URL", url)
            .env("COACH_DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains("COACH_DATABASE_URL"), "{err}");
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains(url), "the URL may hold a password: {err}");
        assert!(
            !dir.path().join("data").join("journal.db").exists(),
            "no SQLite journal is opened instead"
        );
    }
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = worker(dir.path())
        .args(["serve"])
        .env("COACH_MAX_CONCURRENCY", "abc")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("COACH_MAX_CONCURRENCY: invalid value \"abc\""),
        "{err}"
    );
    assert!(!err.contains("--max-concurrency"), "{err}");
}

#[test]
fn a_dot_env_file_in_the_working_directory_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "COACH_MAX_ATTEMPTS=zz\nCOACH_WEBHOOK_SECRETS=a-make-secret-of-20-chars\n",
    )
    .unwrap();
    let out = worker(dir.path()).args(["serve"]).output().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("COACH_MAX_ATTEMPTS: invalid value \"zz\""),
        "{err}"
    );

    // A value set in the environment is not replaced by the file's; an empty one is.
    let out = worker(dir.path())
        .args(["serve"])
        .env("COACH_MAX_ATTEMPTS", "3")
        .env("COACH_WEBHOOK_SECRETS", "")
        .env("COACH_DATA_DIR", blocked_data_dir(dir.path()))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("configuration"), "{err}");
}

#[test]
fn nothing_generated_is_printed_when_the_configuration_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = worker(dir.path())
        .args(["serve", "--demo"])
        .env("COACH_DATA_DIR", dir.path().join("data"))
        .env("COACH_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("COACH_LOG_FORMAT"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "printed before the configuration passed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: ServeConfig,
}

#[test]
fn secrets_are_redacted_in_debug() {
    let args = Args::try_parse_from([
        "serve",
        "--webhook-secrets",
        "make-secret-AAAAAAAAAAAA",
        "--admin-token",
        "admin-token-BBBBBBBBBBBB",
        "--airtable-token",
        "patCCCCCCCCCCCC",
        "--airtable-webhook-mac-secret",
        "mac-DDDDDDDDDDDD",
        "--openai-api-key",
        "sk-EEEEEEEEEEEE",
    ])
    .unwrap();
    let debug = format!("{:?}", args.config);
    for secret in [
        "AAAAAAAAAAAA",
        "BBBBBBBBBBBB",
        "CCCCCCCCCCCC",
        "DDDDDDDDDDDD",
        "EEEEEEEEEEEE",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("REDACTED"), "{debug}");
}

#[test]
fn pretty_logs_into_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = worker(dir.path())
        .args(["serve"])
        .env("COACH_LISTEN", "127.0.0.1:0")
        .env("COACH_DATA_DIR", dir.path().join("data"))
        .env("COACH_WEBHOOK_SECRETS", "a-make-secret-of-20-chars")
        .env("COACH_POLL_INTERVAL_SECS", "0")
        .env("COACH_LOG_FORMAT", "pretty")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("listening");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = lines.join("\n");
    assert!(text.contains("listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe: {text:?}");
}
