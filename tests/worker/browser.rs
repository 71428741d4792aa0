//! The `/admin` page in a real headless Chromium, driven through ChromeDriver's W3C WebDriver HTTP
//! API (https://www.w3.org/TR/webdriver2/) with plain `reqwest` calls, so no WebDriver crate is
//! needed. The worker is real: the real scenarios over the SQLite store with the offline rules
//! analyzer, as `serve` wires them, and an admin token.
//!
//! What a browser proves that the `admin` suite (plain HTTP, cookies by hand) cannot: that a browser
//! keeps the `SameSite=Strict`, `HttpOnly` session cookie across the login redirect, that the forms
//! as rendered (not as the test believes they are) submit what the server wants, and that an error
//! text holding `<script>` reaches the screen as text, with no script element in the document.
//!
//! Chromium and ChromeDriver are Debian's (`chromium`, `chromium-driver`), which `.ci/run` installs.
//! Their absence fails the test with that instruction: a browser test that silently passes without
//! a browser would prove nothing. ChromeDriver runs as a child in its own process group; a guard
//! ends the session and kills that group when the test ends, panics included, so no Chromium
//! outlives the test. Every wait is a poll with a deadline, never a bare sleep.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coach_store::tables::{self, TableRecord};
use coach_worker::journal::NewJob;
use coach_worker::scenarios;
use common::world::World;
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-browser-tests-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key under which a found element's id comes back.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const SCRIPT: &str = "<script>window.__pwned=1</script>";
/// Generous for a 2-core CI machine; a healthy run takes a fraction of it.
const WAIT: Duration = Duration::from_secs(30);

// ---- ChromeDriver as a child process ----

/// ChromeDriver and the Chromium it starts; ends both when dropped.
struct Driver {
    /// `None` once killed, so a process id is never signalled after it may have been reused.
    child: Option<Child>,
    port: u16,
    session: Option<String>,
    /// Chromium's profile and ChromeDriver's log; removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: install Debian's chromium and chromium-driver \
                 (`apt-get update && apt-get install -y chromium chromium-driver`; .ci/run does this)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("chromedriver.log");
        let mut driver = Driver {
            child: None,
            port: 0,
            session: None,
            dir,
        };
        // The port is free when asked for but could be taken before ChromeDriver binds it, so a
        // ChromeDriver that exits at once is retried on another port.
        for _ in 0..3 {
            driver.port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(&log_path).unwrap();
            driver.child = Some(
                Command::new(CHROMEDRIVER)
                    .arg(format!("--port={}", driver.port))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    // Its own process group, so the guard can end Chromium's processes with it.
                    .process_group(0)
                    .spawn()
                    .unwrap(),
            );
            if driver.wait_ready().await {
                return driver;
            }
            driver.kill();
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("chromedriver did not start; its last log:\n{log}");
    }

    /// Polls `GET /status` until ChromeDriver answers ready; false if it exited or never did.
    async fn wait_ready(&mut self) -> bool {
        let http = http();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let Some(child) = self.child.as_mut() else {
                return false;
            };
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(resp) = http
                .get(format!("http://127.0.0.1:{}/status", self.port))
                .send()
                .await
                && let Ok(v) = resp.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A new browser session: headless Chromium with a fresh profile and no background traffic
    /// (this machine's closed network refuses it, and it would only slow the start).
    async fn session(&mut self, base: &str) -> Browser {
        let profile = self.dir.path().join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let http = http();
        let resp = http
            .post(format!("http://127.0.0.1:{}/session", self.port))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session ({status}): {answer}"))
            .to_owned();
        self.session = Some(id.clone());
        Browser {
            http,
            url: format!("http://127.0.0.1:{}/session/{id}", self.port),
            base: base.to_owned(),
        }
    }

    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The group id is the child's pid (`process_group(0)`); `-` before it names the group. The
        // child is not reaped yet, so its pid (and the group id) cannot have been reused.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ask ChromeDriver to quit Chromium cleanly first. Blocking std I/O on purpose: Drop cannot
        // await, and this also runs while a panic unwinds.
        if let Some(id) = self.session.take()
            && let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            );
            // ChromeDriver answers once Chromium has quit; it keeps the connection open after
            // that, so read only up to the end of the headers.
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        }
        self.kill();
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

// ---- the WebDriver commands this test uses ----

struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    url: String,
    /// The worker's address.
    base: String,
}

impl Browser {
    /// One WebDriver command: its `value`, or the W3C error object as `Err`.
    async fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.send().await.unwrap();
        let ok = resp.status().is_success();
        let answer: Value = resp.json().await.unwrap();
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path} failed: {e}"),
        }
    }

    async fn goto(&self, path: &str) {
        self.cmd(
            "POST",
            "/url",
            json!({"url": format!("{}{path}", self.base)}),
        )
        .await;
    }

    async fn refresh(&self) {
        self.cmd("POST", "/refresh", json!({})).await;
    }

    async fn current_path(&self) -> String {
        let url = self.cmd("GET", "/url", Value::Null).await;
        url.as_str()
            .unwrap()
            .trim_start_matches(&self.base)
            .to_owned()
    }

    async fn find(&self, css: &str) -> Option<String> {
        self.try_cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        )
        .await
        .ok()
        .map(|v| v[ELEMENT].as_str().unwrap().to_owned())
    }

    /// Waits until `css` matches an element of the current page.
    async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(el) = self.find(css).await {
                return el;
            }
            assert!(
                Instant::now() < deadline,
                "no `{css}` within {WAIT:?} on {}; the page says:\n{}",
                self.current_path().await,
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The element's rendered text (WebDriver's "Get Element Text": what a user sees).
    async fn text(&self, element: &str) -> String {
        let v = self
            .cmd("GET", &format!("/element/{element}/text"), Value::Null)
            .await;
        v.as_str().unwrap().to_owned()
    }

    async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn body_text(&self) -> String {
        let v = self
            .try_cmd(
                "POST",
                "/execute/sync",
                json!({"script": "return document.body ? document.body.innerText : '';", "args": []}),
            )
            .await;
        v.ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The HTTP status of the page now shown (Navigation Timing's `responseStatus`).
    async fn page_status(&self) -> u64 {
        self.exec(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap()
    }
}

// ---- the worker ----

impl World {
    /// The real wiring of `serve` over SQLite and the rules analyzer, with the admin token, not yet
    /// launched: jobs seeded before [`World::launch`] are due when the runner starts, so it takes
    /// them at once instead of at its next idle wake-up (5 s).
    async fn prepare_for_browser() -> World {
        World::builder()
            .wired_as_serve()
            .admin_token(TOKEN)
            .prepare()
            .await
    }

    /// An R1 job for a Run Request on `transcript`, enqueued as the webhook would.
    async fn r1_job(&self, user: &str, transcript: &str) -> (String, String) {
        let request = self.run_request("browser-1", user, transcript).await;
        let mut job = NewJob::new(
            scenarios::JOB_SINGLE,
            "r1",
            json!({"run_request_id": request}),
        );
        job.dedupe_key = Some(scenarios::single::dedupe_key(&request));
        (self.app.journal.enqueue(job).await.unwrap().0, request)
    }

    async fn wait_finished(&self, id: &str) -> String {
        self.app
            .until(WAIT, async || {
                let job = self.app.journal.get_job(id.into()).await.unwrap();
                job.status
                    .is_finished()
                    .then(|| job.status.as_str().to_owned())
            })
            .await
            .unwrap_or_else(|| panic!("job {id} did not finish"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_logs_in_sees_a_failed_run_replays_it_and_forms_and_errors_are_safe() {
    let started = Instant::now();
    let mut w = World::prepare_for_browser().await;
    let user = w.user().await;
    let transcript = w.unlabelled_transcript(&user).await;
    let (failed_r1, request) = w.r1_job(&user, &transcript).await;
    // A kind no handler knows fails at once with `no handler for job kind `…``: the error text
    // carries the script tag verbatim.
    let evil = w
        .app
        .journal
        .enqueue(NewJob::new(&format!("evil{SCRIPT}"), "y", json!({})))
        .await
        .unwrap()
        .0;
    w.launch().await;
    assert_eq!(w.wait_finished(&failed_r1).await, "failed");
    assert_eq!(w.wait_finished(&evil).await, "failed");

    let mut driver = Driver::start().await;
    let b = driver.session(&w.app.address).await;

    // 1. Log in through the form.
    b.goto("/admin").await;
    let token = b
        .wait_for("form[action='/admin/login'] input[name='token']")
        .await;
    b.type_into(&token, TOKEN).await;
    let submit = b
        .wait_for("form[action='/admin/login'] button[type='submit']")
        .await;
    b.click(&submit).await;
    b.wait_for("form[action='/admin/logout']").await;
    assert_eq!(
        b.current_path().await,
        "/admin",
        "the login redirects to the list"
    );

    // 2. The failed run is listed (failed, with its error); open it and read the error.
    let link = b
        .wait_for(&format!("a[href='/admin/runs/{failed_r1}']"))
        .await;
    let row = b
        .exec(
            "return arguments[0].closest('tr').innerText;",
            json!([{ELEMENT: link}]),
        )
        .await;
    let row = row.as_str().unwrap();
    assert!(row.contains("failed"), "{row}");
    assert!(row.contains("NO_SPEAKER_LABELS"), "{row}");
    b.click(&link).await;
    let error = b
        .wait_for("h2 + pre") // the first section after the run table is its error
        .await;
    assert_eq!(b.current_path().await, format!("/admin/runs/{failed_r1}"));
    let heading = b
        .exec(
            "return arguments[0].previousElementSibling.innerText;",
            json!([{ELEMENT: error}]),
        )
        .await;
    assert_eq!(heading, "Error");
    let error_text = b.text(&error).await;
    assert!(error_text.contains("NO_SPEAKER_LABELS"), "{error_text}");
    let status = b.wait_for("td.failed").await;
    assert_eq!(b.text(&status).await, "failed");

    // 3. Fix the cause, press replay, and see the new attempt succeed.
    w.fix_transcript(&transcript).await;
    let jobs_before_replay = w.job_count().await;
    let replay = b
        .wait_for(&format!(
            "form[action='/admin/runs/{failed_r1}/replay'] button[type='submit']"
        ))
        .await;
    b.click(&replay).await;
    let deadline = Instant::now() + WAIT;
    let new_path = loop {
        let path = b.current_path().await;
        // A redirect shows the new run; a page at the form's own address means it was refused.
        assert!(
            !path.ends_with("/replay"),
            "the replay was refused:\n{}",
            b.body_text().await
        );
        if path.starts_with("/admin/runs/") && path != format!("/admin/runs/{failed_r1}") {
            break path;
        }
        assert!(
            Instant::now() < deadline,
            "replay did not open the new run: {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_id = new_path.trim_start_matches("/admin/runs/").to_owned();
    assert_eq!(w.job_count().await, jobs_before_replay + 1);
    // The page is rendered when the replay is enqueued; reload it until the runner has finished.
    let deadline = Instant::now() + WAIT;
    loop {
        b.wait_for("form[action='/admin/logout']").await;
        if let Some(cell) = b.find("td.succeeded").await {
            assert_eq!(b.text(&cell).await, "succeeded");
            break;
        }
        assert!(
            b.find("td.failed").await.is_none(),
            "the replay failed:\n{}",
            b.body_text().await
        );
        assert!(
            Instant::now() < deadline,
            "the replay did not succeed within {WAIT:?}:\n{}",
            b.body_text().await
        );
        w.run_until_idle().await;
        b.refresh().await;
    }
    let original = b
        .wait_for(&format!("a[href='/admin/runs/{failed_r1}']"))
        .await;
    assert_eq!(b.text(&original).await, failed_r1, "links the replayed run");
    // The succeeded run shows its card as HTML, its Gate-1 checks and a drawn talk-share chart,
    // all under the page's CSP (no script, inline styles only).
    let drawn = b
        .exec(
            "const bars = [...document.querySelectorAll('svg.talk rect.share')];             return {card: document.querySelectorAll('div.card h1').length,                     passes: document.querySelectorAll('table.gate1 td.check-pass').length,                     fails: document.querySelectorAll('table.gate1 td.check-fail').length,                     bars: bars.length,                     width: bars.reduce((sum, r) => sum + r.getBBox().width, 0)};",
            json!([]),
        )
        .await;
    assert_eq!(drawn["card"], 1, "{drawn}");
    assert!(drawn["passes"].as_u64().unwrap() >= 1, "{drawn}");
    assert_eq!(drawn["fails"], 0, "{drawn}");
    assert!(
        drawn["bars"].as_u64().unwrap() >= 2,
        "one bar per speaker: {drawn}"
    );
    let width = drawn["width"].as_f64().unwrap();
    assert!(
        (width - 300.0).abs() < 1.0,
        "the shares fill the chart: {drawn}"
    );
    let replayed = w.app.journal.get_job(new_id.clone()).await.unwrap();
    assert_eq!(replayed.replay_of.as_deref(), Some(failed_r1.as_str()));
    let done: tables::RunRequest = tables::RunRequest::from_record(
        &w.deps
            .store
            .get(tables::RunRequest::TABLE, &request)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(done.status, Some(tables::RunRequestStatus::Done));

    // 4. A replay form stripped of its CSRF token is refused, and nothing is enqueued.
    b.goto(&format!("/admin/runs/{evil}")).await;
    let form = format!("form[action='/admin/runs/{evil}/replay']");
    b.wait_for(&format!("{form} input[name='csrf']")).await;
    let left = b
        .exec(
            "const f = document.querySelector(arguments[0]);\
             f.querySelectorAll('input[name=csrf]').forEach(i => i.remove());\
             return f.querySelectorAll('input').length;",
            json!([form]),
        )
        .await;
    assert_eq!(left, 0, "the form now carries no token");
    let jobs_before = w.job_count().await;
    let button = b.wait_for(&format!("{form} button[type='submit']")).await;
    b.click(&button).await;
    let refusal = b.wait_for("p.failed").await;
    assert_eq!(b.current_path().await, format!("/admin/runs/{evil}/replay"));
    assert_eq!(b.page_status().await, 403);
    let h1 = b.wait_for("h1").await;
    assert_eq!(b.text(&h1).await, "Refused");
    let why = b.text(&refusal).await;
    assert!(why.contains("CSRF token is missing or wrong"), "{why}");
    assert_eq!(w.job_count().await, jobs_before, "no job was created");
    assert_eq!(
        w.app
            .journal
            .get_job(evil.clone())
            .await
            .unwrap()
            .status
            .as_str(),
        "failed"
    );

    // 5. An error holding `<script>` is shown as text, on the run's page and in the list.
    for path in [format!("/admin/runs/{evil}"), "/admin".to_owned()] {
        b.goto(&path).await;
        b.wait_for("form[action='/admin/logout']").await;
        let seen = b
            .exec(
                "return {pwned: typeof window.__pwned, scripts: document.scripts.length, \
                 text: document.body.innerText};",
                json!([]),
            )
            .await;
        assert_eq!(seen["pwned"], "undefined", "{path}: the script ran");
        assert_eq!(seen["scripts"], 0, "{path}: a script element was parsed");
        let text = seen["text"].as_str().unwrap();
        assert!(
            text.contains(&format!("no handler for job kind `evil{SCRIPT}`")),
            "{path}: the error text is not shown verbatim:\n{text}"
        );
    }

    drop(b);
    drop(driver);
    eprintln!("browser test took {:?}", started.elapsed());
}
