//! End-to-end throughput against the Airtable fake with its 5 requests/s limit enforced: queued R1
//! requests completed per minute, the Airtable calls they took, the achieved share of the limit (the
//! physical ceiling for one base), and the 429s seen (the client's pacing should make that zero).
//!
//! ```sh
//! cargo run --release --example e2e_throughput -- --requests 40
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use coach_coaching::Analyzer;
use coach_store::fake::FakeAirtable;
use coach_store::tables::{self, TableRecord};
use coach_store::{ListQuery, RecordId, Store};
use coach_worker::journal::Journal;
use coach_worker::scenarios::{self, Deps};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The libraries install no TLS provider; a program picks one before building any client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n = arg("--requests", 40);
    let fake = FakeAirtable::start().await;
    let mut config = fake.config();
    config.rate_limit_wait = Duration::from_secs(30);
    let store = Store::airtable(config)?;
    let dir = tempfile::tempdir()?;
    let journal = Journal::open(&dir.path().join("journal.db"))?;

    // Seed outside the measured window: a user, a transcript, N queued requests.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/transcripts/followup-2-one-on-one.txt"
    ))?;
    let user = fake.insert(
        tables::USERS,
        tables::User {
            name: Some("Maya Chen".into()),
            ..Default::default()
        }
        .to_fields(),
    );
    let user_id = RecordId::parse(&user.id)?;
    let transcript = fake.insert(
        tables::TRANSCRIPTS,
        tables::Transcript {
            title: Some("1:1".into()),
            user: vec![user_id.clone()],
            transcript: Some(text),
            coachee_speaker: Some("Maya Chen".into()),
            ..Default::default()
        }
        .to_fields(),
    );
    let transcript_id = RecordId::parse(&transcript.id)?;
    for i in 0..n {
        fake.insert(
            tables::RUN_REQUESTS,
            tables::RunRequest {
                key: Some(format!("bench:{i}")),
                user: vec![user_id.clone()],
                transcript: vec![transcript_id.clone()],
                status: Some(tables::RunRequestStatus::Queued),
                ..Default::default()
            }
            .to_fields(),
        );
    }
    fake.reset_counters();

    let deps = Arc::new(Deps::new(store.clone(), Analyzer::Rules, journal.clone()));
    let started = Instant::now();
    let enqueued = scenarios::poller::poll_once(&deps).await?;
    // Run the jobs with the worker's own runner and handlers.
    let mut registry = coach_worker::app::registry(deps.clone(), Duration::ZERO, None);
    let mut runner = coach_worker::jobs::Runner::new(
        journal.clone(),
        coach_worker::jobs::RunnerConfig {
            paused: false,
            concurrency: 8,
            max_attempts: 5,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        },
    );
    for (kind, handler) in registry.handlers.drain(..) {
        runner.register(&kind, handler);
    }
    let handle = runner.handle();
    let task = tokio::spawn(runner.run(Duration::from_secs(5)));
    handle.wake();
    loop {
        let done = fake
            .records(tables::RUN_REQUESTS)
            .iter()
            .filter(|r| {
                matches!(
                    r.fields.get("Status").and_then(|s| s.as_str()),
                    Some("Done" | "Failed")
                )
            })
            .count();
        if done == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("not finished after an hour ({done}/{n})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    handle.stop();
    let _ = task.await;
    let calls = fake.calls();
    let failed = fake
        .records(tables::RUN_REQUESTS)
        .iter()
        .filter(|r| r.fields.get("Status").and_then(|s| s.as_str()) == Some("Failed"))
        .count();
    let runs = store.list(tables::RUNS, &ListQuery::new()).await?.len();
    println!(
        "| requests | enqueued | failed | minutes | requests/min | Airtable calls | calls/request | calls/s | share of 5/s | 429s | Runs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {enqueued} | {failed} | {:.2} | {:.1} | {calls} | {:.1} | {:.2} | {:.0} % | {} | {runs} |",
        elapsed / 60.0,
        n as f64 / (elapsed / 60.0),
        calls as f64 / n as f64,
        calls as f64 / elapsed,
        100.0 * calls as f64 / elapsed / 5.0,
        fake.count_429(),
    );
    Ok(())
}
