//! Journal retention: the journal's size after N deliveries with and without retention, and what a
//! running sweep does to intake latency.
//!
//! ```sh
//! cargo run --release --example journal_retention -- --deliveries 1000000 --days 100 --runs 3
//! ```
//!
//! Size: N R1 deliveries arrive evenly over `--days` simulated days, each journaled as the worker
//! does it (the delivery with its raw body and answer, its job, one attempt; 1 in 100 jobs fails and
//! is never replayed). With retention (`COACH_RETENTION_DAYS` = 30) the sweep runs once per simulated
//! hour with the simulated clock. The size is the database file after a WAL checkpoint.
//!
//! Latency: 16 tasks journal deliveries through `Journal::accept_delivery` (the intake's journal
//! write; the HTTP side adds the same cost with or without a sweep), once alone for `--latency-secs`
//! and once for as long as a sweep takes to delete a backlog of 200,000 expired deliveries, their
//! jobs and attempts, and give the space back.
//! Reported: p50 and p99 of each delivery's journal write, median over the runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coach_worker::journal::{Journal, NewDelivery, NewJob, Retention};
use rusqlite::params;
use serde_json::json;

const DAY: i64 = 24 * 60 * 60 * 1000;
const HOUR: i64 = 60 * 60 * 1000;
/// A fixed simulated start, so runs are comparable.
const T0: i64 = 1_767_225_600_000;

struct Args {
    deliveries: u64,
    days: i64,
    runs: usize,
    latency_secs: u64,
    /// `size`, `latency` or both (comma-separated).
    parts: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        deliveries: 1_000_000,
        days: 100,
        runs: 3,
        latency_secs: 5,
        parts: "size,latency".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--deliveries" => args.deliveries = value.parse().unwrap_or(args.deliveries),
            "--days" => args.days = value.parse().unwrap_or(args.days),
            "--runs" => args.runs = value.parse().unwrap_or(args.runs),
            "--latency-secs" => args.latency_secs = value.parse().unwrap_or(args.latency_secs),
            "--parts" => args.parts = value,
            other => eprintln!("unknown flag {other}"),
        }
    }
    args
}

/// Journals `count` finished R1 deliveries received from `from` on, `gap` ms apart, in chunks of
/// 1000 per journal operation (as group commit would batch them under load).
async fn journal_history(journal: &Journal, first: u64, count: u64, from: i64, gap: f64) {
    let mut done = 0;
    while done < count {
        let chunk = (count - done).min(1000);
        let start = first + done;
        journal
            .call(move |conn| {
                for i in start..start + chunk {
                    let at = from + ((i - first) as f64 * gap) as i64;
                    let run_request = format!("rec{i:014}");
                    let job_id = format!("run_{i:032x}");
                    let key = format!("r1:delivery-{i:012}");
                    let body = json!({ "run_request_id": run_request }).to_string();
                    let answer = json!({
                        "run_id": job_id,
                        "status": "queued",
                        "status_url": format!("/v1/runs/{job_id}"),
                    })
                    .to_string();
                    let failed = i % 100 == 0;
                    let result = json!({
                        "run_request_id": run_request,
                        "run_record_id": format!("rec{:014}", i + 1),
                        "gate1_passed": !failed,
                        "cached": false,
                        "provider": "rules",
                        "model": "rules-v1",
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "duration_ms": 812,
                    })
                    .to_string();
                    conn.prepare_cached(
                        "INSERT INTO deliveries (key, scenario, body_hash, body, received_at, response_status, response_body, job_id)
                         VALUES (?1, 'r1', ?2, ?3, ?4, 202, ?5, ?6)",
                    )?
                    .execute(params![key, format!("{:064x}", i), body, at, answer, job_id])?;
                    conn.prepare_cached(
                        "INSERT INTO jobs (id, kind, scenario, payload, status, attempts, last_error, result, delivery_key,
                             dedupe_key, options, created_at, updated_at, started_at, finished_at)
                         VALUES (?1, 'single', 'r1', ?2, ?3, 1, ?4, ?5, ?6, ?7, '{}', ?8, ?9, ?8, ?9)",
                    )?
                    .execute(params![
                        job_id,
                        body,
                        if failed { "failed" } else { "succeeded" },
                        failed.then_some(r#"{"code":"GATE1_FAILED","message":"the output failed Gate-1 twice"}"#),
                        result,
                        key,
                        format!("r1:{run_request}"),
                        at,
                        at + 2_000
                    ])?;
                    conn.prepare_cached(
                        "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome) VALUES (?1, 1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        job_id,
                        at,
                        at + 2_000,
                        if failed { "failed" } else { "succeeded" }
                    ])?;
                }
                Ok(())
            })
            .await
            .expect("journal the history");
        done += chunk;
    }
}

/// The database file's size after the WAL is folded into it.
fn size_after_checkpoint(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).expect("open the journal");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Size of the journal after `args.deliveries` deliveries, with the given retention (0 = none).
async fn size_run(args: &Args, days: u64) -> (u64, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.db");
    let journal = Journal::open(&path).expect("open the journal");
    // The simulated sweeps run back to back (no pause between batches): only the size matters here.
    let policy = Retention {
        days,
        pause: Duration::ZERO,
        ..Default::default()
    };
    let per_hour = (args.deliveries as f64 / (args.days * 24) as f64).max(1.0);
    let gap = HOUR as f64 / per_hour;
    let mut sweeping = Duration::ZERO;
    let mut first = 0u64;
    let mut hour = 0i64;
    while first < args.deliveries {
        let count = ((per_hour * (hour + 1) as f64) as u64).min(args.deliveries) - first;
        journal_history(&journal, first, count, T0 + hour * HOUR, gap).await;
        first += count;
        hour += 1;
        if days > 0 {
            let started = Instant::now();
            journal
                .sweep(&policy, T0 + hour * HOUR)
                .await
                .expect("sweep");
            sweeping += started.elapsed();
        }
    }
    drop(journal);
    (size_after_checkpoint(&path), sweeping)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p99 of intake journal writes for `secs`, with or without a sweep of a large backlog.
async fn latency_run(secs: u64, with_sweep: bool) -> (Duration, Duration, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(&dir.path().join("journal.db")).expect("open the journal");
    // 200,000 deliveries that expired 40 days ago: what a sweep finds after a pause of weeks.
    let old = coach_worker::journal::now_ms() - 40 * DAY;
    journal_history(&journal, 0, 200_000, old, 10.0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = with_sweep.then(|| {
        let journal = journal.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let counts = journal
                .sweep(&Retention::default(), coach_worker::journal::now_ms())
                .await
                .expect("sweep");
            (counts, started.elapsed())
        })
    });
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (journal, stop) = (journal.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("r1:live-{t}-{i}");
                let delivery = NewDelivery {
                    key: key.clone(),
                    scenario: "r1".into(),
                    body_hash: key.clone(),
                    body: json!({ "run_request_id": format!("rec{i:014}") }).to_string(),
                };
                let job = NewJob::new("single", "r1", json!({ "run_request_id": "recX" }));
                let started = Instant::now();
                journal
                    .accept_delivery(delivery, job, 202, |id| json!({ "run_id": id }).to_string())
                    .await
                    .expect("accept");
                latencies.push(started.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    // With a sweep, the writes measured are exactly those made while it ran.
    let swept = match sweeper {
        Some(s) => {
            let (counts, took) = s.await.expect("sweeper");
            eprintln!(
                "  sweep: {} jobs, {} deliveries, {} pages in {:.2} s",
                counts.jobs,
                counts.deliveries,
                counts.pages,
                took.as_secs_f64()
            );
            counts.deliveries
        }
        None => {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            0
        }
    };
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("sender"));
    }
    all.sort();
    (percentile(&all, 0.5), percentile(&all, 0.99), swept)
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    if args.parts.contains("size") {
        size_table(&args).await;
    }
    if args.parts.contains("latency") {
        latency_table(&args).await;
    }
}

async fn size_table(args: &Args) {
    println!(
        "journal size after {} deliveries over {} days (median of {} runs)",
        args.deliveries, args.days, args.runs
    );
    println!("| retention | size MB | time in sweeps s |");
    println!("|---|---|---|");
    for days in [0u64, 30] {
        let mut sizes = Vec::new();
        let mut sweeps = Vec::new();
        for run in 0..args.runs {
            let (size, sweeping) = size_run(args, days).await;
            eprintln!(
                "  retention {days} d, run {}: {:.1} MB, {:.1} s sweeping",
                run + 1,
                size as f64 / 1e6,
                sweeping.as_secs_f64()
            );
            sizes.push(size);
            sweeps.push(sweeping.as_secs_f64());
        }
        let label = if days == 0 {
            "none".to_owned()
        } else {
            format!("{days} days")
        };
        println!(
            "| {label} | {:.1} | {:.1} |",
            median(sizes) as f64 / 1e6,
            median(sweeps)
        );
    }
}

async fn latency_table(args: &Args) {
    println!();
    println!(
        "intake journal write latency, 16 writers, {} s (median of {} runs)",
        args.latency_secs, args.runs
    );
    println!("| sweep | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for with_sweep in [false, true] {
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for _ in 0..args.runs {
            let (a, b, _) = latency_run(args.latency_secs, with_sweep).await;
            p50.push(a.as_secs_f64() * 1000.0);
            p99.push(b.as_secs_f64() * 1000.0);
        }
        println!(
            "| {} | {:.2} | {:.2} |",
            if with_sweep {
                "deleting 200,000 expired deliveries"
            } else {
                "none"
            },
            median(p50),
            median(p99)
        );
    }
}
