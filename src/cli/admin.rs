//! `coach-worker runs list|show|replay|cancel`: the admin API from a terminal.
//!
//! The CLI talks to a running worker over HTTP (`--url`, `COACH_URL`) with the admin token
//! (`--token`, `COACH_ADMIN_TOKEN`) instead of opening the journal itself: the worker's SQLite file is
//! owned by its one writer thread, and the same command then works against a remote deployment.
//!
//! A bulk replay by filter first pages through the matching run ids, then sends them to
//! `POST /v1/admin/replay` in chunks of [`CHUNK`], drawing a progress bar on standard error after
//! each chunk. Chunking keeps each request short (a timeout or a dropped connection loses at most one
//! chunk, and the summary says which runs were not replayed) at the price of one audit entry per
//! chunk.
//!
//! Output goes through [`say!`]: a reader that stops early (`runs list | head -1`) closes the pipe,
//! and the command then exits 0 quietly instead of panicking in `println!`. The progress bar is only
//! drawn when standard error is a terminal, so logs and CI output get the summary alone.
//!
//! Exit codes: 0 everything asked for was done; 1 some runs were skipped (not finished, not found,
//! already active); 2 bad usage or an HTTP error.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `println!` that ends the process quietly (exit 0) when standard output was closed by its reader.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::admin::write_line(format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// Run ids sent per bulk replay request.
pub const CHUNK: usize = 50;
/// Page size used to collect the ids a filter matches.
const LIST_PAGE: usize = 500;

/// Connection settings and the operation.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Base URL of the running worker.
    #[arg(
        long,
        env = "COACH_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The worker's admin token (COACH_ADMIN_TOKEN).
    #[arg(long, env = "COACH_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// The filter options shared by `list` and `replay`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Statuses, comma-separated (queued, running, retry_scheduled, succeeded, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Scenario (a1, a2, s3, r1, s1, d1, e1).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Only runs created at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs created before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.scenario.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (name, value) in [
            ("status", &self.status),
            ("scenario", &self.scenario),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = value {
                q.push((name, v.clone()));
            }
        }
        q
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: usize,
        /// Runs per page (at most 500).
        #[arg(long = "per-page", default_value_t = 50)]
        per_page: usize,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show one run: its delivery (secrets redacted), attempts, error, Gate-1 report, output.
    Show {
        run_id: String,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Replay runs by id, or every run a filter matches (`--status failed` …).
    Replay {
        /// Run ids to replay (or give a filter instead).
        run_ids: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Only report what would be replayed.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Run the analysis again instead of answering from the cache.
        #[arg(long = "bypass-cache")]
        bypass_cache: bool,
        /// Also replay runs an earlier replay already covers (skipped by default, so running the
        /// same command twice does not replay everything twice).
        #[arg(long = "include-replayed")]
        include_replayed: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or retry-scheduled run.
    Cancel {
        run_id: String,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// Why a command could not be carried out (exit code 2).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the worker at {url}: {source}; check --url / COACH_URL and that it runs")]
    Connect { url: String, source: reqwest::Error },
    #[error("the worker answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the worker's answer is not the expected JSON: {0}")]
    BadAnswer(String),
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| CliError::Connect {
                url: self.url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| CliError::Connect {
            url: self.url.clone(),
            source,
        })?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|_| CliError::BadAnswer(format!("HTTP {status}: {}", short(&text))))?;
        if !(200..300).contains(&status) {
            let hint = if status == 401 {
                " (check --token / COACH_ADMIN_TOKEN)"
            } else if status == 404 && body["error"]["code"].is_null() {
                " (is COACH_ADMIN_TOKEN set on the worker?)"
            } else {
                ""
            };
            return Err(CliError::Api {
                status,
                code: body["error"]["code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_owned(),
                message: format!(
                    "{}{hint}",
                    body["error"]["message"].as_str().unwrap_or("no message")
                ),
            });
        }
        Ok(body)
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.send(self.client.get(format!("{}{path}", self.url)).query(query))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.client.post(format!("{}{path}", self.url)).json(body))
            .await
    }
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Runs a `runs` command and returns the process exit code.
pub async fn run(args: RunsArgs) -> i32 {
    match execute(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

async fn execute(args: RunsArgs) -> Result<i32, CliError> {
    let token = args.token.filter(|t| !t.is_empty()).ok_or_else(|| {
        CliError::Usage("set the admin token with --token or COACH_ADMIN_TOKEN".into())
    })?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
    let api = Api {
        client,
        url: args.url.trim_end_matches('/').to_owned(),
        token,
    };
    match args.command {
        RunsCommand::List {
            filter,
            page,
            per_page,
            json,
        } => list(&api, &filter, page, per_page, json).await,
        RunsCommand::Show { run_id, json } => show(&api, &run_id, json).await,
        RunsCommand::Replay {
            run_ids,
            filter,
            dry_run,
            bypass_cache,
            include_replayed,
            json,
        } => {
            let flags = ReplayFlags {
                dry_run,
                bypass_cache,
                include_replayed,
                json,
            };
            replay(&api, run_ids, &filter, flags).await
        }
        RunsCommand::Cancel { run_id, json } => {
            let answer = api
                .post(&format!("/v1/admin/runs/{run_id}/cancel"), &json!({}))
                .await?;
            if json {
                say!("{answer}");
            } else {
                say!("cancelled {run_id}");
            }
            Ok(0)
        }
    }
}

async fn list(
    api: &Api,
    filter: &FilterArgs,
    page: usize,
    per_page: usize,
    json: bool,
) -> Result<i32, CliError> {
    let mut query = filter.query();
    query.push(("page", page.to_string()));
    query.push(("per_page", per_page.to_string()));
    let answer = api.get("/v1/admin/runs", &query).await?;
    if json {
        say!("{answer}");
        return Ok(0);
    }
    let runs = answer["runs"].as_array().cloned().unwrap_or_default();
    say!(
        "{:<36}  {:<8}  {:<8}  {:<15}  {:>3}  {:<24}  ERROR",
        "RUN ID",
        "SCENARIO",
        "KIND",
        "STATUS",
        "TRY",
        "CREATED"
    );
    for run in &runs {
        let error = run["error"]["code"].as_str().unwrap_or("");
        say!(
            "{:<36}  {:<8}  {:<8}  {:<15}  {:>3}  {:<24}  {error}",
            text(&run["run_id"]),
            text(&run["scenario"]),
            text(&run["kind"]),
            text(&run["status"]),
            run["attempts"].as_u64().unwrap_or(0),
            text(&run["created_at"]),
        );
    }
    let total = answer["total"].as_u64().unwrap_or(0);
    let per_page = answer["per_page"].as_u64().unwrap_or(1).max(1);
    say!(
        "page {} of {} ({total} runs)",
        answer["page"].as_u64().unwrap_or(1),
        total.div_ceil(per_page).max(1)
    );
    Ok(0)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

async fn show(api: &Api, run_id: &str, json: bool) -> Result<i32, CliError> {
    let run = api.get(&format!("/v1/admin/runs/{run_id}"), &[]).await?;
    if json {
        say!("{run}");
        return Ok(0);
    }
    say!("run        {}", text(&run["run_id"]));
    say!(
        "scenario   {} (job {})",
        text(&run["scenario"]),
        text(&run["kind"])
    );
    say!(
        "status     {} after {} attempt(s)",
        text(&run["status"]),
        run["attempts"]
    );
    say!("created    {}", text(&run["created_at"]));
    say!("finished   {}", text(&run["finished_at"]));
    if !run["replay_of"].is_null() {
        say!("replay of  {}", text(&run["replay_of"]));
    }
    if !run["error"].is_null() {
        say!(
            "error      [{}] {}",
            text(&run["error"]["code"]),
            text(&run["error"]["message"])
        );
    }
    for a in run["attempts_detail"].as_array().into_iter().flatten() {
        say!(
            "attempt {}  {}  {}",
            a["attempt"],
            text(&a["outcome"]),
            a["error"]["code"].as_str().unwrap_or("")
        );
    }
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    if !run["delivery"].is_null() {
        say!("delivery   {}", pretty(&run["delivery"]));
    }
    if !run["gate1_report"].is_null() {
        say!("gate-1     {}", pretty(&run["gate1_report"]));
    }
    if !run["output"].is_null() {
        say!("output     {}", pretty(&run["output"]));
    }
    if let Some(card) = run["coaching_card"].as_str() {
        say!("card\n{card}");
    } else if !run["coaching_card"].is_null() {
        say!("card       {}", pretty(&run["coaching_card"]));
    }
    Ok(0)
}

/// A progress bar on standard error: `\r[#####.....] 123/500`.
fn progress(done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = "#".repeat(filled) + &".".repeat(WIDTH - filled);
    let mut err = std::io::stderr();
    let _ = write!(err, "\r[{bar}] {done}/{total}");
    let _ = err.flush();
}

/// Collects every run id a filter matches, paging through the list route.
async fn matching_ids(api: &Api, filter: &FilterArgs) -> Result<Vec<String>, CliError> {
    let mut ids = Vec::new();
    let mut page = 1;
    loop {
        let mut query = filter.query();
        query.push(("page", page.to_string()));
        query.push(("per_page", LIST_PAGE.to_string()));
        let answer = api.get("/v1/admin/runs", &query).await?;
        let runs = answer["runs"]
            .as_array()
            .ok_or_else(|| CliError::BadAnswer("`runs` is missing".into()))?;
        ids.extend(
            runs.iter()
                .filter_map(|r| r["run_id"].as_str().map(String::from)),
        );
        if runs.len() < LIST_PAGE {
            break;
        }
        page += 1;
    }
    // The list is newest first; replay oldest first, in arrival order.
    ids.reverse();
    Ok(ids)
}

struct ReplayFlags {
    dry_run: bool,
    bypass_cache: bool,
    include_replayed: bool,
    json: bool,
}

async fn replay(
    api: &Api,
    run_ids: Vec<String>,
    filter: &FilterArgs,
    flags: ReplayFlags,
) -> Result<i32, CliError> {
    let ReplayFlags {
        dry_run,
        bypass_cache,
        include_replayed,
        json,
    } = flags;
    let started = Instant::now();
    let ids = match (run_ids.is_empty(), filter.is_empty()) {
        (false, true) => run_ids,
        (true, false) => {
            let mut filter = filter.clone();
            // Like the API: a filter without a status replays the failed runs.
            filter.status.get_or_insert_with(|| "failed".into());
            matching_ids(api, &filter).await?
        }
        _ => {
            return Err(CliError::Usage(
                "give run ids, or a filter such as --status failed, but not both".into(),
            ));
        }
    };
    let total = ids.len();
    let mut replayed: Vec<Value> = Vec::new();
    let mut skipped: Vec<Value> = Vec::new();
    let mut failed: Vec<Value> = Vec::new();
    let show_bar = total > 1 && std::io::stderr().is_terminal();
    if show_bar {
        progress(0, total);
    }
    for chunk in ids.chunks(CHUNK) {
        let body = json!({
            "run_ids": chunk,
            "dry_run": dry_run,
            "bypass_cache": bypass_cache,
            "include_replayed": include_replayed,
        });
        match api.post("/v1/admin/replay", &body).await {
            Ok(answer) => {
                replayed.extend(answer["replayed"].as_array().cloned().unwrap_or_default());
                skipped.extend(answer["skipped"].as_array().cloned().unwrap_or_default());
            }
            // One chunk failing does not stop the rest; its runs are reported as not replayed.
            Err(e) => failed.extend(
                chunk
                    .iter()
                    .map(|id| json!({"run_id": id, "reason": e.to_string()})),
            ),
        }
        if show_bar {
            progress(replayed.len() + skipped.len() + failed.len(), total);
        }
    }
    if show_bar {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    // Runs an earlier replay covers are expected on a second pass; they are not a problem to report.
    let (covered, skipped): (Vec<Value>, Vec<Value>) = skipped
        .into_iter()
        .partition(|s| s["reason"] == "ALREADY_REPLAYED");
    if json {
        say!(
            "{}",
            json!({
                "dry_run": dry_run,
                "matched": total,
                "replayed": replayed,
                "skipped": skipped,
                "already_replayed": covered.len(),
                "failed": failed,
                "seconds": seconds,
            })
        );
    } else {
        let verb = if dry_run { "would replay" } else { "replayed" };
        for r in &replayed {
            match r["new_run_id"].as_str() {
                Some(new_id) if total <= 20 => say!("{} -> {new_id}", text(&r["run_id"])),
                _ => {}
            }
        }
        for s in skipped.iter().chain(failed.iter()) {
            say!("skipped {}: {}", text(&s["run_id"]), text(&s["reason"]));
        }
        say!(
            "{verb} {} of {total}, skipped {}, already replayed {}, failed {} in {seconds:.2} s",
            replayed.len(),
            skipped.len(),
            covered.len(),
            failed.len()
        );
    }
    Ok(
        if !failed.is_empty() && replayed.is_empty() && skipped.is_empty() && covered.is_empty() {
            2
        } else if skipped.is_empty() && failed.is_empty() {
            0
        } else {
            1
        },
    )
}
