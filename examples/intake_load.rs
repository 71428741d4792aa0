//! Intake load test: starts the release worker, sends signed deliveries from this second process over
//! loopback on N keep-alive connections, and reports deliveries/s, p50/p99 latency, the worker's peak
//! RSS, its CPU time per delivery, its time from start to `/readyz`, and whether every acknowledged delivery is in the journal.
//!
//! ```sh
//! cargo build --release --bin coach-worker --example intake_load
//! target/release/examples/intake_load --worker target/release/coach-worker --connections 1,16,64,256 --seconds 10 --runs 3
//! ```
//!
//! Each delivery has its own `webhook-id` and, by default, its own Run Request id, so each is a new
//! journaled delivery and a new R1 job (the jobs fail fast: the requests do not exist in the empty
//! store). `--requests repeated` sends one Run Request in every delivery instead: after the first,
//! each delivery is a new journal row that joins the one active job, which is a cheaper path and is
//! reported as a row of its own. After each run the journal is read back: deliveries journaled must
//! equal deliveries acknowledged, and jobs must equal the distinct Run Requests sent.
//!
//! With `COACH_DATABASE_URL=postgres://…` in its environment the worker journals to Postgres, and the
//! read-back counts the rows each run added there (ids carry the invocation's start time and the
//! run's number, so runs never repeat one another's deliveries, nor do later invocations).
//! `--instances N` (Postgres only) starts N workers on that one journal and spreads the connections
//! over them round-robin; the peak RSS reported is then the largest of the instances'.
//!
//! `--check DIR` only prints the deliveries and jobs journaled in `DIR/journal.db` (used by
//! `bench/run.sh` after loading the worker with the peer's generator).
//!
//! `--replay FILE --target HOST:PORT` sends a file of pre-signed deliveries to any server instead
//! (see [`replay`]); `bench/side_by_side.sh` loads the worker and the Python peer with it.
//!
//! A plain HTTP/1.1 client, every connection a task on one event loop, keeps the load generator's
//! own cost low on a 2-core machine; its CPU time per delivery is reported beside the worker's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use coach_worker::webhook::{Secret, signature};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Args {
    worker: String,
    /// Run with the job runner paused (intake alone) and/or running (intake while R1 jobs run).
    modes: Vec<bool>,
    connections: Vec<usize>,
    /// `true`: one Run Request for every delivery (the repeated case); `false`: one per delivery.
    repeated: Vec<bool>,
    seconds: u64,
    runs: usize,
    /// Workers sharing the Postgres journal; connection `c` goes to worker `c % instances`.
    instances: usize,
    /// `--replay FILE`: send these pre-signed deliveries to `--target` instead (see [`replay`]).
    replay: Option<String>,
    target: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        worker: "target/release/coach-worker".into(),
        modes: vec![true, false],
        connections: vec![1, 16, 64, 256],
        repeated: vec![false],
        seconds: 10,
        runs: 3,
        instances: 1,
        replay: None,
        target: "127.0.0.1:8000".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--worker" => args.worker = value,
            "--connections" => {
                args.connections = value.split(',').filter_map(|v| v.parse().ok()).collect()
            }
            "--requests" => {
                args.repeated = value
                    .split(',')
                    .filter_map(|m| match m {
                        "distinct" => Some(false),
                        "repeated" => Some(true),
                        _ => None,
                    })
                    .collect()
            }
            "--check" => {
                let (deliveries, jobs) = count_journal(std::path::Path::new(&value));
                println!("deliveries={deliveries} jobs={jobs}");
                std::process::exit(0);
            }
            "--replay" => args.replay = Some(value),
            "--target" => args.target = value,
            "--seconds" => args.seconds = value.parse().unwrap_or(10),
            "--runs" => args.runs = value.parse().unwrap_or(3),
            "--instances" => args.instances = value.parse().unwrap_or(1).max(1),
            "--jobs" => {
                args.modes = value
                    .split(',')
                    .filter_map(|m| match m {
                        "paused" => Some(true),
                        "running" => Some(false),
                        _ => None,
                    })
                    .collect()
            }
            other => {
                eprintln!("unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    args
}

struct RunResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mb: f64,
    /// The workers' CPU time (user + system, all threads, all instances) per acknowledged delivery,
    /// in µs. A Postgres server's own CPU is not in it.
    cpu_us_per_delivery: f64,
    /// This generator's own CPU time (user + system) per acknowledged delivery, in µs: what the
    /// load itself takes from the cores the worker runs on.
    generator_cpu_us_per_delivery: f64,
    ready_ms: f64,
    acknowledged: u64,
    journaled: u64,
    jobs: u64,
    errors: u64,
}

fn start_worker(path: &str, data_dir: &std::path::Path, port: u16, paused: bool) -> (Child, f64) {
    let started = Instant::now();
    let child = Command::new(path)
        .arg("serve")
        .env("COACH_LISTEN", format!("127.0.0.1:{port}"))
        .env("COACH_DATA_DIR", data_dir)
        .env("COACH_WEBHOOK_SECRETS", SECRET)
        .env("COACH_POLL_INTERVAL_SECS", "0")
        .env("COACH_MAX_CONCURRENCY", "2")
        .env("COACH_PAUSE_JOBS", paused.to_string())
        .env("RUST_LOG", "warn")
        .env_remove("AIRTABLE_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the worker");
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(20) {
            panic!("worker did not become ready");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (child, started.elapsed().as_secs_f64() * 1000.0)
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) the process has used so far: fields 14 and 15 of `/proc/PID/stat`,
/// in clock ticks of `getconf CLK_TCK` (proc(5)).
fn cpu_seconds(pid: u32) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse::<f64>().ok())
            .expect("getconf CLK_TCK")
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the parenthesis, field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    (tick(11) + tick(12)) / ticks
}

/// One connection's loop: send signed deliveries until `stop`, record each latency in microseconds.
/// Every connection of a run is a task on one current-thread runtime (one epoll loop), so the
/// generator costs the cores little: no thread per connection to wake for each answer.
async fn connection_loop(
    port: u16,
    conn: usize,
    repeated: bool,
    stop: Arc<AtomicBool>,
) -> (Vec<u32>, u64) {
    let secret = Secret::parse(SECRET).expect("valid secret");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).ok();
    let mut latencies = Vec::with_capacity(200_000);
    let mut errors = 0;
    let mut buf = vec![0u8; 4096];
    let mut request = Vec::with_capacity(512);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // Distinct across runs and invocations too: a Postgres journal outlives a run, and a
        // repeated id would be answered from it as a replay instead of being a new delivery.
        let run = RUN.load(Ordering::Relaxed) % 100;
        let nonce = nonce();
        let id = format!("bench-{nonce}-{run}-{conn}-{i}");
        // A distinct Run Request per delivery (or always one), with an id shaped and spread like
        // Airtable's: `rec` and 14 random-looking characters, so the journal's dedupe index takes
        // each new one at a random place, as it does in production.
        let body = if repeated {
            r#"{"run_request_id":"recAAAAAAAAAAAAAA"}"#.to_owned()
        } else {
            format!(
                r#"{{"run_request_id":"{}"}}"#,
                record_id(run as u64, conn as u64, i)
            )
        };
        let body = body.as_bytes();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let sig = signature::sign_standard(&secret, &id, ts, body).expect("sign");
        request.clear();
        // One write per request, head and body together, as an HTTP client library sends a small one.
        write!(
            request,
            "POST /v1/hooks/r1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             webhook-id: {id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\n\r\n",
            body.len()
        )
        .expect("format");
        request.extend_from_slice(body);
        let sent = Instant::now();
        let status = exchange(&mut stream, &request, &mut buf).await;
        latencies.push(sent.elapsed().as_micros() as u32);
        if status != Some(202) {
            errors += 1;
        }
        if status.is_none() {
            break;
        }
    }
    (latencies, errors)
}

/// Sends one request and reads its response (head, then `Content-Length` bytes of body). Returns
/// the status, or `None` if the connection failed or the response was malformed.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Option<u16> {
    stream.write_all(request).await.ok()?;
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => filled += n,
        }
        let Some(end) = find(&buf[..filled], b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status = head.get(9..12)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse()))
            .unwrap_or(Ok(0))
            .ok()?;
        if buf.len() < end + 4 + len {
            buf.resize(end + 4 + len, 0);
        }
        while filled < end + 4 + len {
            match stream.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => filled += n,
            }
        }
        return Some(status);
    }
}

/// `--replay FILE --target HOST:PORT`: sends the pre-signed deliveries of `FILE` (one JSON object a
/// line, as `../shared/peers/gen_requests.py` writes them: `path`, `body`, and either `headers` or
/// the Make-scheme `delivery`, `timestamp`, `signature`) to any server, each line once, over
/// `--connections` keep-alive connections for `--seconds`, and prints one line in the format of the
/// peers' `replay-load`, with this generator's own CPU time per request added:
/// `RESULT rps=… p50_ms=… p99_ms=… non2xx=… sent=… exhausted=… generator_cpu_us=…`.
/// The same client then loads the worker and the peer, at a smaller cost to the cores they share.
fn replay(args: &Args, file: &str) {
    let text = std::fs::read_to_string(file).expect("read the request file");
    let target = args.target.clone();
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let body = text("body");
            let mut r = format!(
                "POST {} HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                text("path"),
                body.len()
            );
            match v.get("headers").and_then(|h| h.as_object()) {
                Some(headers) => {
                    for (k, val) in headers {
                        r.push_str(&format!("{k}: {}\r\n", val.as_str().unwrap_or_default()));
                    }
                }
                None => r.push_str(&format!(
                    "X-Coach-Delivery: {}\r\nX-Coach-Timestamp: {}\r\nX-Coach-Signature: {}\r\n",
                    text("delivery"),
                    text("timestamp"),
                    text("signature")
                )),
            }
            r.push_str("\r\n");
            r.push_str(&body);
            r.into_bytes()
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let connections = args.connections.first().copied().unwrap_or(64);
    let cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let load = {
        let (requests, next, stop, target) = (
            requests.clone(),
            next.clone(),
            stop.clone(),
            args.target.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let tasks: Vec<_> = (0..connections)
                    .map(|_| {
                        let (requests, next, stop, target) =
                            (requests.clone(), next.clone(), stop.clone(), target.clone());
                        tokio::spawn(async move {
                            let mut stream = tokio::net::TcpStream::connect(target.as_str())
                                .await
                                .expect("connect");
                            stream.set_nodelay(true).ok();
                            let (mut latencies, mut bad) = (Vec::new(), 0u64);
                            let mut buf = vec![0u8; 4096];
                            while !stop.load(Ordering::Relaxed) {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(request) = requests.get(i) else {
                                    break;
                                };
                                let sent = Instant::now();
                                let status = exchange(&mut stream, request, &mut buf).await;
                                latencies.push(sent.elapsed().as_micros() as u32);
                                if !status.is_some_and(|s| (200..300).contains(&s)) {
                                    bad += 1;
                                }
                                if status.is_none() {
                                    break;
                                }
                            }
                            (latencies, bad)
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for task in tasks {
                    all.push(task.await.expect("connection task"));
                }
                all
            })
        })
    };
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut bad) = (Vec::new(), 0);
    for (l, b) in load.join().expect("load thread") {
        latencies.extend(l);
        bad += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id()) - cpu_before;
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q) as usize)
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    println!(
        "RESULT rps={:.0} p50_ms={:.3} p99_ms={:.3} non2xx={bad} sent={} exhausted={} generator_cpu_us={:.1}",
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        latencies.len(),
        next.load(Ordering::Relaxed) >= requests.len(),
        cpu * 1e6 / latencies.len().max(1) as f64
    );
}

/// Four base-36 digits of this invocation's start time (in seconds; they repeat after 19 days).
fn nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        base36(secs, 4)
    })
}

/// An Airtable-shaped record id (`rec` and 14 letters and digits) that looks random but is distinct
/// for every (invocation, run, connection, delivery): those are packed into 64 bits (20 bits of the
/// invocation's start second, 7 of the run, 10 of the connection, 27 of the delivery's number) and
/// scrambled by a bijection of `u64` (the SplitMix64 finalizer: each of its steps can be undone), so
/// distinct inputs give distinct ids.
fn record_id(run: u64, conn: u64, i: u64) -> String {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let packed =
        (start & 0xF_FFFF) << 44 | (run & 0x7F) << 37 | (conn & 0x3FF) << 27 | (i & 0x7FF_FFFF);
    let mix = |mut x: u64| {
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = b"rec00000000000000".to_vec();
    // 11 base-62 digits hold any u64; the last 3 characters are filler from a second scramble.
    let (mut a, mut b) = (mix(packed), mix(packed ^ 0x5555_5555_5555_5555));
    for d in id[3..14].iter_mut().rev() {
        *d = ALPHABET[(a % 62) as usize];
        a /= 62;
    }
    for d in id[14..].iter_mut() {
        *d = ALPHABET[(b % 62) as usize];
        b /= 62;
    }
    String::from_utf8(id).unwrap_or_default()
}

/// The last `width` base-36 digits of `n`, upper case.
fn base36(mut n: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(digits).unwrap_or_default()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Deliveries and jobs in a journal. The rows a Make-scheme delivery keeps for its signed content
/// (`{scenario}:signed:{hash}`) are not deliveries of their own and are not counted.
/// With `COACH_DATABASE_URL` set (the worker inherits it and journals to Postgres) the rows are
/// counted there, and a run reports what it added.
fn count_journal(data_dir: &std::path::Path) -> (u64, u64) {
    if let Ok(url) = std::env::var("COACH_DATABASE_URL")
        && !url.is_empty()
    {
        return count_postgres(&url);
    }
    let conn = rusqlite::Connection::open(data_dir.join("journal.db")).expect("open journal");
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0) as u64;
    (
        count("SELECT COUNT(*) FROM deliveries WHERE key NOT LIKE '%:signed:%'"),
        count("SELECT COUNT(*) FROM jobs"),
    )
}

fn count_postgres(url: &str) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to COACH_DATABASE_URL");
        tokio::spawn(connection);
        let count = async |sql: &str| {
            client
                .query_one(sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0) as u64)
                .unwrap_or(0)
        };
        (
            count("SELECT COUNT(*) FROM deliveries WHERE key NOT LIKE '%:signed:%'").await,
            count("SELECT COUNT(*) FROM jobs").await,
        )
    })
}

/// The number of the current run, part of every id the generator sends.
static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn run_once(args: &Args, connections: usize, port: u16, paused: bool, repeated: bool) -> RunResult {
    RUN.fetch_add(1, Ordering::Relaxed);
    let dir = tempfile::tempdir().expect("tempdir");
    // A shared Postgres journal keeps earlier runs' rows: the check counts what this run added. A
    // SQLite journal is new with every run, and is read only once the worker has stopped.
    let postgres = std::env::var("COACH_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    if args.instances > 1 && !postgres {
        eprintln!("--instances needs COACH_DATABASE_URL: instances share only a Postgres journal");
        std::process::exit(2);
    }
    let mut workers = Vec::with_capacity(args.instances);
    let mut dirs = Vec::with_capacity(args.instances);
    for n in 0..args.instances {
        let own = tempfile::tempdir().expect("tempdir");
        let data = if n == 0 { dir.path() } else { own.path() };
        workers.push(start_worker(&args.worker, data, port + n as u16, paused));
        dirs.push(own);
    }
    let ready_ms = workers.iter().map(|w| w.1).fold(0.0, f64::max);
    let (deliveries_before, jobs_before) = if postgres {
        count_journal(dir.path())
    } else {
        (0, 0)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let generator_cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let instances = args.instances as u16;
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let tasks: Vec<_> = (0..connections)
                    .map(|c| {
                        let port = port + (c as u16 % instances);
                        tokio::spawn(connection_loop(port, c, repeated, stop.clone()))
                    })
                    .collect();
                let mut results = Vec::with_capacity(tasks.len());
                for task in tasks {
                    results.push(task.await.expect("connection task"));
                }
                results
            })
        })
    };
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for (l, e) in load.join().expect("load thread") {
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let generator_cpu = cpu_seconds(std::process::id()) - generator_cpu_before;
    let peak = workers
        .iter()
        .map(|(child, _)| peak_rss_mb(child.id()))
        .fold(0.0, f64::max);
    let cpu: f64 = workers
        .iter()
        .map(|(child, _)| cpu_seconds(child.id()))
        .sum();
    for (child, _) in &workers {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for (child, _) in &mut workers {
        let _ = child.wait();
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
    };
    let acknowledged = latencies.len() as u64 - errors;
    let (journaled, jobs) = count_journal(dir.path());
    let (journaled, jobs) = (journaled - deliveries_before, jobs - jobs_before);
    RunResult {
        rate: acknowledged as f64 / elapsed,
        p50_ms: pct(0.50).copied().unwrap_or(0) as f64 / 1000.0,
        p99_ms: pct(0.99).copied().unwrap_or(0) as f64 / 1000.0,
        peak_rss_mb: peak,
        cpu_us_per_delivery: cpu * 1e6 / (acknowledged.max(1) as f64),
        generator_cpu_us_per_delivery: generator_cpu * 1e6 / (acknowledged.max(1) as f64),
        ready_ms,
        acknowledged,
        journaled,
        jobs,
        errors,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Whether a run's journal holds what was acknowledged: every acknowledged delivery, and one job per
/// distinct Run Request. With one repeated Run Request and the jobs running, a finished job lets the
/// next delivery start a new one, so only "at least one, at most one per delivery" can be asserted.
fn consistent(r: &RunResult, paused: bool, repeated: bool) -> bool {
    let jobs_ok = match (repeated, paused) {
        (false, _) => r.jobs == r.acknowledged,
        (true, true) => r.jobs == 1,
        (true, false) => r.jobs >= 1 && r.jobs <= r.acknowledged,
    };
    r.errors == 0 && r.journaled == r.acknowledged && jobs_ok
}

fn main() {
    let args = parse_args();
    if let Some(file) = &args.replay {
        replay(&args, file);
        return;
    }
    println!(
        "| Run Requests | jobs | instances | connections | deliveries/s | p50 ms | p99 ms | peak RSS MB | worker CPU µs/delivery | generator CPU µs/delivery | start→ready ms | journaled = acknowledged, jobs = Run Requests |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut port = 18_500;
    for &repeated in &args.repeated {
        for &paused in &args.modes {
            for &connections in &args.connections {
                let mut results = Vec::new();
                for _ in 0..args.runs {
                    port += args.instances as u16;
                    results.push(run_once(&args, connections, port, paused, repeated));
                }
                println!(
                    "| {} | {} | {} | {connections} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
                    if repeated {
                        "one, repeated"
                    } else {
                        "distinct"
                    },
                    if paused { "paused" } else { "running" },
                    args.instances,
                    median(results.iter().map(|r| r.rate).collect()),
                    median(results.iter().map(|r| r.p50_ms).collect()),
                    median(results.iter().map(|r| r.p99_ms).collect()),
                    median(results.iter().map(|r| r.peak_rss_mb).collect()),
                    median(results.iter().map(|r| r.cpu_us_per_delivery).collect()),
                    median(
                        results
                            .iter()
                            .map(|r| r.generator_cpu_us_per_delivery)
                            .collect()
                    ),
                    median(results.iter().map(|r| r.ready_ms).collect()),
                    results
                        .iter()
                        .map(|r| format!(
                            "{} {}/{} deliveries, {} jobs{}",
                            if consistent(r, paused, repeated) {
                                "yes"
                            } else {
                                "NO"
                            },
                            r.journaled,
                            r.acknowledged,
                            r.jobs,
                            if r.errors > 0 {
                                format!(", {} errors", r.errors)
                            } else {
                                String::new()
                            }
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
    }
}
