//! The journal's side of intake alone: `Journal::accept_delivery` of distinct R1 deliveries (each a
//! new delivery row and a new job, as `intake_load` sends them), from many tasks at once, with no HTTP
//! in front. It measures the cost of the journal's serial stage, the writer thread, with less of the
//! noise that the HTTP side and the load generator add on a small machine.
//!
//! ```sh
//! cargo run --release --example journal_intake -- --tasks 64 --seconds 5 --runs 5
//! ```
//!
//! Reported per run, then the median of the runs: deliveries journaled per second, p50 and p99 of one
//! `accept_delivery` (queue, group commit and flush), and CPU time per delivery of each journal
//! thread (`journal` is the writer, from `/proc/self/task/*/schedstat`). Each run starts on an empty
//! journal and checks that the journal holds as many deliveries and jobs as were acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coach_worker::journal::{Journal, NewDelivery, NewJob};
use serde_json::json;

struct Args {
    tasks: usize,
    seconds: u64,
    runs: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        tasks: 64,
        seconds: 5,
        runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--tasks" => args.tasks = value.parse().unwrap_or(args.tasks),
            "--seconds" => args.seconds = value.parse().unwrap_or(args.seconds),
            "--runs" => args.runs = value.parse().unwrap_or(args.runs),
            other => eprintln!("unknown flag {other}"),
        }
    }
    args
}

/// CPU time (ns) of each of this process's threads whose name starts with `journal`, with its
/// name, by thread id (a run's threads end after it, while the next run's start).
fn journal_threads_cpu() -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("journal") {
            continue;
        }
        let ns = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        out.push((tid, comm.to_owned(), ns));
    }
    out
}

/// CPU (µs per delivery) each thread name used between the two samples, summed over the threads
/// of that name alive at the second; a thread started in between counts from zero.
fn cpu_per_delivery(
    before: &[(u32, String, u64)],
    after: &[(u32, String, u64)],
    count: usize,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (tid, name, ns) in after {
        let start = before
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(0, |(_, _, ns)| *ns);
        let us = ns.saturating_sub(start) as f64 / 1e3 / count as f64;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += us,
            None => out.push((name.clone(), us)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A distinct, random-looking Airtable-shaped record id for delivery `n` of run `run`.
fn record_id(run: u64, n: u64) -> String {
    // SplitMix64's finaliser: a bijection, so distinct inputs give distinct ids.
    let mut z = (run << 40 | n).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::from("rec");
    for _ in 0..14 {
        id.push(ALPHABET[(z % 62) as usize] as char);
        z /= 62;
        if z == 0 {
            z = n.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        }
    }
    id
}

struct Run {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: Vec<(String, f64)>,
    checked: bool,
}

async fn one_run(args: &Args, run: u64) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(&dir.path().join("journal.db")).expect("open journal");
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = journal_threads_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    let step = args.tasks as u64;
    for t in 0..args.tasks {
        let journal = journal.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = t as u64;
            while !stop.load(Ordering::Relaxed) {
                let record = record_id(run, n);
                let body = format!(r#"{{"run_request_id":"{record}","requested_by":"ops"}}"#);
                let delivery = NewDelivery {
                    key: format!("r1:msg_{run}_{n}"),
                    scenario: "r1".into(),
                    body_hash: format!("{:064x}", u128::from(n) << 8 | u128::from(run)),
                    body,
                };
                let mut job = NewJob::new("r1", "r1", json!({ "run_request_id": record }));
                job.delivery_key = Some(delivery.key.clone());
                job.dedupe_key = Some(format!("r1:{record}"));
                let sent = Instant::now();
                journal
                    .accept_delivery(delivery, job, 202, coach_worker::http::hooks::queued_answer)
                    .await
                    .expect("accept");
                latencies.push(sent.elapsed());
                n += step;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = journal_threads_cpu();
    latencies.sort();
    let count = latencies.len();
    let at = |q: f64| latencies[((count as f64 * q) as usize).min(count - 1)].as_secs_f64() * 1e3;
    let cpu_us = cpu_per_delivery(&cpu_before, &cpu_after, count);
    drop(journal);
    let conn = rusqlite::Connection::open(dir.path().join("journal.db")).expect("reopen");
    let count_of = |table: &str| -> usize {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    let checked = count_of("deliveries") == count && count_of("jobs") == count;
    Run {
        per_second: count as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        cpu_us,
        checked,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let r = runtime.block_on(one_run(&args, run as u64));
        let cpu: Vec<String> = r
            .cpu_us
            .iter()
            .map(|(name, us)| format!("{name} {us:.1} µs"))
            .collect();
        println!(
            "run {}: {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, CPU per delivery: {}; journal holds what was acknowledged: {}",
            run + 1,
            r.per_second,
            r.p50_ms,
            r.p99_ms,
            cpu.join(", "),
            if r.checked { "yes" } else { "NO" }
        );
        runs.push(r);
    }
    let writer: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            r.cpu_us
                .iter()
                .find(|(n, _)| n == "journal")
                .map(|(_, us)| *us)
        })
        .collect();
    // The journal's three threads together: writer, flusher and checkpointer (`comm` is cut to 15
    // bytes, hence `journal-checkpo`).
    let threads: Vec<f64> = runs
        .iter()
        .map(|r| {
            r.cpu_us
                .iter()
                .filter(|(n, _)| n.starts_with("journal") && n != "journal_intake")
                .map(|(_, us)| *us)
                .sum()
        })
        .collect();
    println!(
        "median of {} runs of {} s, {} tasks: {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, writer thread {:.1} µs of CPU per delivery, the journal's three threads {:.1} µs; all checked: {}",
        runs.len(),
        args.seconds,
        args.tasks,
        median(runs.iter().map(|r| r.per_second).collect()),
        median(runs.iter().map(|r| r.p50_ms).collect()),
        median(runs.iter().map(|r| r.p99_ms).collect()),
        median(writer),
        median(threads),
        if runs.iter().all(|r| r.checked) {
            "yes"
        } else {
            "NO"
        }
    );
}
