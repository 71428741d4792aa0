//! The README's run command, `coach-worker serve --demo`, as a user runs it: the real binary on a
//! fresh data dir with no configuration at all. The story it prints must finish, `coach-worker runs
//! list` must show it with the admin token the demo printed, and the embedded store must hold what
//! the story wrote.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use coach_store::Store;
use coach_store::tables::{self, Attempted, EventType, ExperimentStatus, TableRecord};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `serve --demo` on `dir` and reads its standard output until the story is done.
fn start_demo(dir: &std::path::Path, port: u16) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coach-worker"))
        .args(["serve", "--demo"])
        .env("COACH_LISTEN", format!("127.0.0.1:{port}"))
        .env("COACH_DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .env_remove("COACH_WEBHOOK_SECRETS")
        .env_remove("COACH_ADMIN_TOKEN")
        .env_remove("AIRTABLE_TOKEN")
        .env_remove("AIRTABLE_BASE_ID")
        .env_remove("OPENAI_API_KEY")
        .env_remove("COACH_PROVIDER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the worker");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let finished = loop {
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) => {
                let done = line.starts_with("demo: done");
                lines.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    assert!(finished, "the demo did not finish: {lines:#?}");
    (child, lines)
}

fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {lines:#?}"))
}

#[tokio::test]
async fn serve_demo_runs_the_whole_story_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, lines) = start_demo(dir.path(), port);
    let r1_lines: Vec<&String> = lines.iter().filter(|l| l.starts_with("demo: R1")).collect();
    assert_eq!(r1_lines.len(), 3, "{lines:#?}");
    for l in &r1_lines {
        assert!(l.contains(" succeeded, attempt event succeeded"), "{l}");
    }
    assert!(
        line(&lines, "demo: A1 → A2 → E1:").contains(" is active: 0 of "),
        "{lines:#?}"
    );
    assert!(
        line(&lines, "demo: done").contains("cargo install --path ."),
        "the demo says how to get the `coach-worker` it names"
    );
    let store_path = dir.path().join("store.db");
    assert!(
        line(&lines, "demo: done")
            .contains(&format!("the embedded store {}", store_path.display())),
        "{lines:#?}"
    );
    let token = lines
        .iter()
        .find_map(|l| l.strip_prefix("demo admin token (for /admin and `coach-worker runs`): "))
        .expect("the demo prints an admin token")
        .to_owned();

    // The CLI from the README, with the printed token.
    let out = Command::new(env!("CARGO_BIN_EXE_coach-worker"))
        .args(["runs", "list", "--json", "--per-page", "100"])
        .env("COACH_URL", format!("http://127.0.0.1:{port}"))
        .env("COACH_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = listed["runs"].as_array().unwrap();
    // The build, E1, three R1 and three D1 jobs.
    assert_eq!(runs.len(), 8, "{listed}");
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{listed}");

    child.kill().unwrap();
    child.wait().unwrap();

    // What the story wrote to the embedded store.
    let store = Store::sqlite(&dir.path().join("store.db")).unwrap();
    let all = |table: &'static str| {
        let store = store.clone();
        async move { store.list(table, &Default::default()).await.unwrap() }
    };
    assert_eq!(all(tables::RUNS).await.len(), 4);
    let experiments = all(tables::EXPERIMENTS).await;
    assert_eq!(experiments.len(), 1);
    let experiment = tables::Experiment::from_record(&experiments[0]).unwrap();
    let events: Vec<tables::ExperimentEvent> = all(tables::EXPERIMENT_EVENTS)
        .await
        .iter()
        .map(|r| tables::ExperimentEvent::from_record(r).unwrap())
        .collect();
    let count = |t: EventType| events.iter().filter(|e| e.event_type == Some(t)).count();
    assert_eq!(count(EventType::Instantiated), 1);
    assert_eq!(count(EventType::Attempt), 3);
    assert_eq!(
        experiment.target_meetings,
        Some(3),
        "the rules analyzer proposes 3 meetings"
    );
    assert_eq!(experiment.status, Some(ExperimentStatus::Completed));
    assert_eq!(count(EventType::Completed), 1);
    // The completion's evidence counts what the attempt events say.
    let judged = |a: Attempted| {
        events
            .iter()
            .filter(|e| e.event_type == Some(EventType::Attempt) && e.attempted == Some(a))
            .count()
    };
    let completion = events
        .iter()
        .find(|e| e.event_type == Some(EventType::Completed))
        .unwrap();
    let expected = format!(
        "3 of 3 target meetings observed since the experiment started: attempted in {} (yes), not attempted in {} (no), unclear in {}",
        judged(Attempted::Yes),
        judged(Attempted::No),
        judged(Attempted::Unclear),
    );
    assert_eq!(completion.evidence.as_deref(), Some(expected.as_str()));
    let after = line(&lines, "demo: after the meetings:");
    assert!(
        after.contains(" completed at ") && after.contains(&expected),
        "{after}"
    );
    for r in all(tables::RUN_REQUESTS).await {
        let request = tables::RunRequest::from_record(&r).unwrap();
        assert_eq!(request.status, Some(tables::RunRequestStatus::Done));
        assert_eq!(request.run.len(), 1);
    }

    drop(store);

    // A second start on the same data: the experiment the first one completed is not "active".
    let (mut child, lines) = start_demo(dir.path(), free_port());
    child.kill().unwrap();
    child.wait().unwrap();
    let e1 = line(&lines, "demo: A1 → A2 → E1:");
    assert!(!e1.contains("is active"), "{e1}");
    assert!(e1.contains(" completed at "), "{e1}");
}
