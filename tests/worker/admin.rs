//! The admin API and CLI against a real worker: the real scenarios over the SQLite store with the
//! offline rules analyzer, wired exactly as `serve` wires them (`serve::worker_registry`), and an
//! admin token.

use crate::common;

use std::time::Instant;

use coach_store::tables;
use coach_worker::journal::{JobFilter, JobStatus, NewJob};
use coach_worker::scenarios;
use common::browser::{Browser, csrf_of};
use common::world::{World, WorldBuilder};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-tests-0123456789";

/// The real wiring of `serve` over SQLite and the rules analyzer, with `token` as the admin token.
fn world(token: Option<&str>) -> WorldBuilder {
    let builder = World::builder().wired_as_serve();
    match token {
        Some(token) => builder.admin_token(token),
        None => builder,
    }
}

impl World {
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, body, Some(&format!("Bearer {TOKEN}")))
            .await
    }

    /// Waits until no job is queued, running or waiting for a retry (ignoring `parked` ones).
    async fn settle(&self, parked: u64) {
        let active = JobFilter {
            statuses: vec![
                JobStatus::Queued,
                JobStatus::Running,
                JobStatus::RetryScheduled,
            ],
            ..Default::default()
        };
        self.run_until_idle().await;
        if self.app.journal.count_jobs(active).await.unwrap() > parked {
            panic!("jobs did not settle");
        }
    }

    /// A job that stays queued for an hour (nothing runs it during the test).
    async fn parked_job(&self, scenario: &str) -> String {
        let mut job = NewJob::new("parked", scenario, json!({"n": 1}));
        job.run_at = coach_worker::journal::now_ms() + 3_600_000;
        self.app.journal.enqueue(job).await.unwrap().0
    }

    /// A job of a kind no handler knows: the runner fails it at once (`UNKNOWN_JOB_KIND`).
    async fn failing_job(&self, scenario: &str) -> String {
        let job = NewJob::new("nope", scenario, json!({"n": 1}));
        self.app.journal.enqueue(job).await.unwrap().0
    }
}

#[tokio::test]
async fn without_a_token_configured_the_admin_routes_do_not_exist() {
    let w = world(None).start().await;
    let (status, _) = w.admin("GET", "/v1/admin/runs", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn no_token_or_a_wrong_token_gets_401_and_changes_nothing() {
    let mut w = world(Some(TOKEN)).prepare().await;
    let queued = w.parked_job("x").await;
    let failed = w.failing_job("y").await;
    w.launch().await;
    w.settle(1).await;
    let jobs_before = w.job_count().await;
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/admin/runs".into(), None),
        ("GET", format!("/v1/admin/runs/{failed}"), None),
        ("POST", format!("/v1/admin/runs/{failed}/replay"), None),
        ("POST", format!("/v1/admin/runs/{queued}/cancel"), None),
        (
            "POST",
            "/v1/admin/replay".into(),
            Some(json!({"filter": {"status": ["failed"]}})),
        ),
        // A malformed body must not tell a stranger anything either.
        (
            "POST",
            "/v1/admin/replay".into(),
            Some(json!("not an object")),
        ),
        ("GET", "/v1/admin/audit".into(), None),
    ];
    let wrong = [
        None,
        Some("Bearer wrong-token-wrong-token-00"),
        Some(&format!("Bearer {TOKEN}x")[..]),
        Some(&format!("Basic {TOKEN}")[..]),
        Some(TOKEN),
    ];
    for (method, path, body) in &routes {
        for auth in wrong {
            let (status, answer) = w.call(method, path, body.clone(), auth).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            assert_eq!(answer["error"]["code"], "ADMIN_UNAUTHORIZED");
        }
    }
    assert_eq!(w.job_count().await, jobs_before, "no job was replayed");
    let parked = w.app.journal.get_job(queued).await.unwrap();
    assert_eq!(parked.status, JobStatus::Queued, "nothing was cancelled");
    assert!(w.app.journal.audit_entries(10, 0).await.unwrap().is_empty());
    // The right token, with a lower-case scheme, works.
    let (status, _) = w
        .call(
            "GET",
            "/v1/admin/runs",
            None,
            Some(&format!("bearer {TOKEN}")),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn list_filters_by_status_scenario_and_time_and_pages() {
    let mut w = world(Some(TOKEN)).prepare().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(w.parked_job("x").await);
    }
    for _ in 0..5 {
        created.push(w.failing_job("y").await);
    }
    w.launch().await;
    w.settle(7).await;

    let (status, all) = w.admin("GET", "/v1/admin/runs", None).await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 12);
    assert_eq!(all["page"], 1);
    let (_, failed) = w.admin("GET", "/v1/admin/runs?status=failed", None).await;
    assert_eq!(failed["total"], 5);
    assert!(
        failed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "failed" && r["error"]["code"] == "UNKNOWN_JOB_KIND")
    );
    let (_, x) = w.admin("GET", "/v1/admin/runs?scenario=x", None).await;
    assert_eq!(x["total"], 7);
    let (_, both) = w
        .admin(
            "GET",
            "/v1/admin/runs?status=queued,failed&scenario=y",
            None,
        )
        .await;
    assert_eq!(both["total"], 5);

    // Paging: 12 runs, 5 a page → 5, 5, 2, without repeats, newest first.
    let mut seen = Vec::new();
    for (page, expect) in [(1, 5), (2, 5), (3, 2), (4, 0)] {
        let (_, p) = w
            .admin(
                "GET",
                &format!("/v1/admin/runs?page={page}&per_page=5"),
                None,
            )
            .await;
        let runs = p["runs"].as_array().unwrap();
        assert_eq!(runs.len(), expect, "page {page}");
        assert_eq!(p["total"], 12);
        seen.extend(
            runs.iter()
                .map(|r| r["run_id"].as_str().unwrap().to_owned()),
        );
    }
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 12, "no run on two pages");
    created.reverse();
    assert_eq!(
        seen, created,
        "newest first, in the order the runs were created"
    );

    // Time range: everything was created in the last minute.
    let past = "2020-01-01T00:00:00Z";
    let future = "2999-01-01T00:00:00Z";
    let (_, since) = w
        .admin(
            "GET",
            &format!("/v1/admin/runs?since={past}&until={future}"),
            None,
        )
        .await;
    assert_eq!(since["total"], 12);
    let (_, none) = w
        .admin("GET", &format!("/v1/admin/runs?since={future}"), None)
        .await;
    assert_eq!(none["total"], 0);
    let (_, none) = w
        .admin("GET", &format!("/v1/admin/runs?until={past}"), None)
        .await;
    assert_eq!(none["total"], 0);

    for (query, code) in [
        ("status=broken", "INVALID_FILTER"),
        ("since=yesterday", "INVALID_FILTER"),
        ("page=0", "INVALID_PAGE"),
        ("per_page=100000", "INVALID_PAGE"),
    ] {
        let (status, answer) = w
            .admin("GET", &format!("/v1/admin/runs?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(answer["error"]["code"], code, "{query}");
    }
}

#[tokio::test]
async fn show_gives_attempts_and_the_delivery_with_secrets_redacted() {
    let w = world(Some(TOKEN)).start().await;
    // A Run Request id that does not exist: the job fails at once, with the delivery journaled.
    let body = json!({
        "run_request_id": "recAAAAAAAAAAAAAA",
        "api_key": "sk-live-abcdef",
        "meta": {"password": "hunter2", "note": "kept"},
        "Authorization": "Bearer leaked",
    });
    let resp = w.app.post_signed("r1", "r1-secret", &body).await;
    assert_eq!(resp.status(), 202);
    let run_id = resp.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.app.wait_run(&run_id).await;

    let (status, run) = w
        .admin("GET", &format!("/v1/admin/runs/{run_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "RECORD_NOT_FOUND");
    assert_eq!(run["attempts_detail"][0]["outcome"], "failed");
    assert_eq!(
        run["attempts_detail"][0]["error"]["code"],
        "RECORD_NOT_FOUND"
    );
    let delivered = &run["delivery"]["body"];
    assert_eq!(delivered["run_request_id"], "recAAAAAAAAAAAAAA");
    assert_eq!(delivered["api_key"], "[redacted]");
    assert_eq!(delivered["meta"]["password"], "[redacted]");
    assert_eq!(delivered["meta"]["note"], "kept");
    assert_eq!(delivered["Authorization"], "[redacted]");
    let text = run.to_string();
    for secret in ["sk-live-abcdef", "hunter2", "leaked"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    let (status, missing) = w.admin("GET", "/v1/admin/runs/run_nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "RUN_NOT_FOUND");
}

#[tokio::test]
async fn show_gives_output_report_and_card_of_succeeded_runs_and_the_delivery_of_builds() {
    let w = world(Some(TOKEN)).start().await;
    let (user, ids) = w.seed().await;

    // A build from A1: its job has A1's delivery.
    let resp = w
        .app
        .post_signed(
            "a1",
            "a1-show",
            &json!({"user_id": user, "transcript_ids": &ids[..3], "build": true}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let build_id = resp.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let build = w.wait_all(&build_id).await;
    assert_eq!(build["status"], "succeeded", "{build}");

    // A single meeting through R1.
    let request = w.run_request("rr-show", &user, &ids[3]).await;
    let single = w.r1("r1-show", &request).await;
    assert_eq!(single["status"], "succeeded", "{single}");
    let single_id = single["run_id"].as_str().unwrap().to_owned();

    for (run_id, scenario) in [(&build_id, "a1"), (&single_id, "r1")] {
        let (status, run) = w
            .admin("GET", &format!("/v1/admin/runs/{run_id}"), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(run["delivery"]["scenario"], scenario, "{run}");
        assert!(run["output"].is_object(), "output of {scenario}: {run}");
        assert_eq!(run["gate1_report"]["passed"], true, "{run}");
        assert!(
            run["coaching_card"].as_str().is_some_and(|c| !c.is_empty()),
            "card of {scenario}: {run}"
        );
    }

    // The CLI shows the same.
    let address = w.app.address.clone();
    let id = single_id.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
            .args(["runs", "show", &id])
            .env("COACH_URL", address)
            .env("COACH_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\noutput     {"), "{text}");
    assert!(text.contains("\ngate-1     {"), "{text}");
    assert!(text.contains("\ncard\n"), "{text}");

    // The page opens on recent runs of every status.
    let mut b = Browser::new(&w.app.address);
    b.login(TOKEN).await;
    let page = b.get("/admin").await;
    assert!(page.body.contains(&single_id), "{}", page.body);
    assert!(
        page.body.contains("href=\"/admin?status=failed\""),
        "{}",
        page.body
    );

    // A succeeded run's page renders the Run record: the card as HTML, the Gate-1 report as a
    // table of passed checks, and one talk-share bar per speaker whose widths add up to the chart.
    for run_id in [&single_id, &build_id] {
        let detail = b.get(&format!("/admin/runs/{run_id}")).await;
        let body = &detail.body;
        assert_eq!(detail.status, 200);
        assert!(body.contains("<div class=\"card\"><h1>"), "{body}");
        assert!(body.contains("<table class=\"gate1\">"), "{body}");
        assert!(
            body.contains("<td class=\"check-pass\">pass</td>"),
            "{body}"
        );
        assert!(!body.contains("<td class=\"check-fail\">"), "{body}");
        let widths: Vec<f64> = body
            .split("<rect class=\"share\"")
            .skip(1)
            .map(|r| {
                let at = r.find("width=\"").unwrap() + 7;
                r[at..at + r[at..].find('"').unwrap()].parse().unwrap()
            })
            .collect();
        let charts = body.matches("<svg class=\"talk\"").count();
        assert_eq!(charts, if run_id == &build_id { 3 } else { 1 }, "{body}");
        assert!(widths.len() >= 2 * charts, "{widths:?}");
        // Each chart is 300 units wide at 100 %; shares are rounded to a tenth of a unit.
        let total: f64 = widths.iter().sum();
        assert!(
            (total - 300.0 * charts as f64).abs() < 0.1 * widths.len() as f64,
            "{widths:?}"
        );
        assert!(!body.contains("<script"), "{body}");
    }
}

#[tokio::test]
async fn replaying_a_fixed_r1_run_succeeds_links_the_run_and_duplicates_nothing() {
    let w = world(Some(TOKEN)).start().await;
    let user = w.user().await;
    let transcript = w.unlabelled_transcript(&user).await;
    let request = w.run_request("req-1", &user, &transcript).await;
    let resp = w
        .app
        .post_signed("r1", "r1-first", &json!({"run_request_id": request}))
        .await;
    let old_id = resp.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = w.app.wait_run(&old_id).await;
    assert_eq!(old["status"], "failed");
    assert_eq!(old["error"]["code"], "NO_SPEAKER_LABELS");
    let failed_request: tables::RunRequest = w.record(&request).await;
    let old_record = failed_request.run[0].clone();
    assert_eq!(w.records(tables::RUNS).await.len(), 1);

    // A dry run replays nothing, but is audited.
    let jobs_before = w.job_count().await;
    let (status, dry) = w
        .admin(
            "POST",
            &format!("/v1/admin/runs/{old_id}/replay"),
            Some(json!({"dry_run": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dry["would_replay"], true);
    assert_eq!(w.job_count().await, jobs_before);

    // The operator fixes the transcript, then replays.
    w.fix_transcript(&transcript).await;
    let (status, replay) = w
        .admin(
            "POST",
            &format!("/v1/admin/runs/{old_id}/replay"),
            Some(json!({"bypass_cache": true})),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["replay_of"], old_id.as_str());
    let new_id = replay["run_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    assert_eq!(replay["status_url"], format!("/v1/runs/{new_id}"));
    let new = w.app.wait_run(&new_id).await;
    assert_eq!(new["status"], "succeeded", "{new}");
    assert_eq!(new["replay_of"], old_id.as_str());

    let done: tables::RunRequest = w.record(&request).await;
    assert_eq!(done.status, Some(tables::RunRequestStatus::Done));
    let new_record = done.run[0].clone();
    assert_ne!(new_record, old_record, "a replay writes a new Run");
    let run: tables::Run = w.record(&new_record).await;
    assert_eq!(run.status, Some(tables::RunStatus::Succeeded));
    assert_eq!(run.replay_of, vec![old_record.clone()]);
    let old_run: tables::Run = w.record(&old_record).await;
    assert_eq!(old_run.status, Some(tables::RunStatus::Failed));
    // Exactly one Run per attempt, and one of everything else.
    assert_eq!(w.records(tables::RUNS).await.len(), 2);
    assert_eq!(w.records(tables::RUN_REQUESTS).await.len(), 1);
    assert_eq!(w.records(tables::TRANSCRIPTS).await.len(), 1);
    assert_eq!(w.records(tables::USERS).await.len(), 1);
    let parsed: tables::Transcript = w.record(&transcript).await;
    assert_eq!(parsed.parse_status, Some(tables::ParseStatus::Parsed));

    // The admin view of the new run shows the original delivery and the job's result.
    let (_, shown) = w
        .admin("GET", &format!("/v1/admin/runs/{new_id}"), None)
        .await;
    assert_eq!(shown["result"]["run_record_id"], new_record.as_str());
    assert_eq!(
        shown["delivery"]["body"]["run_request_id"],
        request.as_str()
    );

    // Replaying an unfinished run is refused; a missing one is 404.
    let parked = w.parked_job("x").await;
    let (status, refused) = w
        .admin("POST", &format!("/v1/admin/runs/{parked}/replay"), None)
        .await;
    assert_eq!(status, 409);
    assert_eq!(refused["error"]["code"], "RUN_NOT_FINISHED");
    let (status, _) = w
        .admin("POST", "/v1/admin/runs/run_nope/replay", None)
        .await;
    assert_eq!(status, 404);

    let (_, audit) = w.admin("GET", "/v1/admin/audit", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<(&str, bool, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["details"]["dry_run"].as_bool().unwrap(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    // Newest first: the refused replay, the replay, the dry run.
    assert_eq!(
        actions,
        vec![
            ("replay", false, 0),
            ("replay", false, 1),
            ("replay", true, 1)
        ]
    );
    assert_eq!(entries[1]["target"], old_id.as_str());
    assert_eq!(entries[1]["details"]["new_run_id"], new_id.as_str());
    assert_eq!(entries[1]["details"]["bypass_cache"], true);
}

#[tokio::test]
async fn bulk_replay_by_filter_and_by_ids_and_cancel_are_audited() {
    let mut w = world(Some(TOKEN)).prepare().await;
    let mut failed = Vec::new();
    for _ in 0..6 {
        failed.push(w.failing_job("y").await);
    }
    let other = w.failing_job("z").await;
    let parked = w.parked_job("x").await;
    w.launch().await;
    w.settle(1).await;

    // Dry run by filter: reports the six, enqueues nothing.
    let jobs_before = w.job_count().await;
    let (status, dry) = w
        .admin(
            "POST",
            "/v1/admin/replay",
            Some(json!({"filter": {"status": ["failed"], "scenario": "y"}, "dry_run": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["matched"], 6);
    assert_eq!(dry["replayed"].as_array().unwrap().len(), 6);
    assert!(dry["replayed"][0]["new_run_id"].is_null());
    assert_eq!(w.job_count().await, jobs_before);

    // For real: six new jobs, each linked to its original, oldest first.
    let (_, real) = w
        .admin(
            "POST",
            "/v1/admin/replay",
            Some(json!({"filter": {"scenario": "y"}})),
        )
        .await;
    assert_eq!(real["matched"], 6);
    let replayed = real["replayed"].as_array().unwrap();
    assert_eq!(replayed.len(), 6);
    let originals: Vec<&str> = replayed
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        originals,
        failed.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for r in replayed {
        let job = w
            .app
            .journal
            .get_job(r["new_run_id"].as_str().unwrap().into())
            .await
            .unwrap();
        assert_eq!(job.replay_of.as_deref(), r["run_id"].as_str());
        assert_eq!(job.scenario, "y");
    }
    assert_eq!(w.job_count().await, jobs_before + 6);
    w.settle(1).await;

    // By ids: found and finished ones replayed; unknown and unfinished ones skipped with a reason.
    let (_, by_ids) = w
        .admin(
            "POST",
            "/v1/admin/replay",
            Some(json!({"run_ids": [other, "run_missing", parked, failed[0], other]})),
        )
        .await;
    assert_eq!(by_ids["matched"], 4, "duplicates count once");
    assert_eq!(by_ids["replayed"].as_array().unwrap().len(), 1);
    assert_eq!(by_ids["replayed"][0]["run_id"], other.as_str());
    let skipped: Vec<(String, String)> = by_ids["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["run_id"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(skipped.contains(&("run_missing".into(), "RUN_NOT_FOUND".into())));
    assert!(skipped.contains(&(parked.clone(), "RUN_NOT_FINISHED".into())));
    assert!(
        skipped.contains(&(failed[0].clone(), "ALREADY_REPLAYED".into())),
        "the filter replay above covers it"
    );
    // …unless asked to include such runs.
    let (_, forced) = w
        .admin(
            "POST",
            "/v1/admin/replay",
            Some(json!({"run_ids": [failed[0]], "include_replayed": true})),
        )
        .await;
    assert_eq!(forced["replayed"].as_array().unwrap().len(), 1);

    // More ids than one call takes: refused whole, nothing replayed.
    let many: Vec<String> = (0..10_001).map(|i| format!("run_{i:032x}")).collect();
    let (status, too_many) = w
        .admin("POST", "/v1/admin/replay", Some(json!({"run_ids": many})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(too_many["error"]["code"], "TOO_MANY_RUNS");

    for bad in [
        json!({}),
        json!({"run_ids": [], "filter": {}}),
        json!({"filter": {"status": ["nope"]}}),
    ] {
        let (status, _) = w.admin("POST", "/v1/admin/replay", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}");
    }

    // Cancel: a queued job once; then it is no longer cancellable, nor is a finished one.
    let (status, cancelled) = w
        .admin("POST", &format!("/v1/admin/runs/{parked}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        w.app.journal.get_job(parked.clone()).await.unwrap().status,
        JobStatus::Cancelled
    );
    for id in [&parked, &other] {
        let (status, again) = w
            .admin("POST", &format!("/v1/admin/runs/{id}/cancel"), None)
            .await;
        assert_eq!(status, 409);
        assert_eq!(again["error"]["code"], "RUN_NOT_CANCELLABLE");
    }

    let (_, audit) = w.admin("GET", "/v1/admin/audit?per_page=100", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let summary: Vec<(&str, u64)> = entries
        .iter()
        .rev()
        .map(|e| (e["action"].as_str().unwrap(), e["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("bulk_replay", 6),
            ("bulk_replay", 6),
            ("bulk_replay", 1),
            ("bulk_replay", 1),
            ("cancel", 1),
            ("cancel", 0),
            ("cancel", 0),
        ]
    );
    for e in entries {
        let actor = e["actor"].as_str().unwrap();
        assert!(actor.starts_with("admin:") && actor.len() == 14, "{actor}");
        assert!(
            !e.to_string().contains(TOKEN),
            "the token never reaches the log"
        );
    }
    assert_eq!(entries.last().unwrap()["details"]["dry_run"], true);
    assert_eq!(
        entries.last().unwrap()["details"]["filter"]["scenario"],
        "y"
    );
}

/// `coach-worker runs replay --status failed` against the running worker: N R1 runs failed on an
/// unlabelled transcript, the transcript is fixed, one command replays them all and every Run Request
/// ends Done. N is 60 by default; `ADMIN_CLI_N=500` measures the figure in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_replays_every_failed_run_with_a_summary_and_exits_quietly_on_a_closed_pipe() {
    let n: usize = std::env::var("ADMIN_CLI_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut w = world(Some(TOKEN)).prepare().await;
    let user = w.user().await;
    let transcript = w.unlabelled_transcript(&user).await;
    let mut requests = Vec::new();
    for i in 0..n {
        let request = w
            .run_request(&format!("bulk-{i}"), &user, &transcript)
            .await;
        let mut job = NewJob::new(
            scenarios::JOB_SINGLE,
            "r1",
            json!({"run_request_id": request}),
        );
        job.dedupe_key = Some(scenarios::single::dedupe_key(&request));
        w.app.journal.enqueue(job).await.unwrap();
        requests.push(request);
    }
    w.launch().await;
    w.settle(0).await;
    let failed = JobFilter {
        statuses: vec![JobStatus::Failed],
        ..Default::default()
    };
    assert_eq!(
        w.app.journal.count_jobs(failed.clone()).await.unwrap(),
        n as u64
    );
    w.fix_transcript(&transcript).await;

    let address = w.app.address.clone();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
            .args(["runs", "replay", "--status", "failed", "--scenario", "r1"])
            .env("COACH_URL", address)
            .env("COACH_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let enqueue_secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "replayed {n} of {n}, skipped 0, already replayed 0, failed 0"
        )),
        "{stdout}"
    );
    // Standard error is a pipe here, not a terminal: no progress bar, only the summary.
    assert!(
        !stderr.contains("\r["),
        "progress bar drawn into a pipe: {stderr:?}"
    );
    w.settle(0).await;
    let total_secs = started.elapsed().as_secs_f64();
    println!(
        "CLI replay of {n} failed R1 runs: command {enqueue_secs:.2} s, all replays finished after {total_secs:.2} s"
    );

    let succeeded = JobFilter {
        statuses: vec![JobStatus::Succeeded],
        ..Default::default()
    };
    assert_eq!(w.app.journal.count_jobs(succeeded).await.unwrap(), n as u64);
    for request in &requests {
        let r: tables::RunRequest = w.record(request).await;
        assert_eq!(r.status, Some(tables::RunRequestStatus::Done));
    }
    assert_eq!(
        w.records(tables::RUNS).await.len(),
        2 * n,
        "one Run per attempt"
    );

    // The originals stay `failed`, but each is covered by its replay: the same command again replays
    // nothing, says why, and exits 0.
    let jobs_before = w.job_count().await;
    let address = w.app.address.clone();
    let again = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
            .args(["runs", "replay", "--status", "failed", "--json"])
            .env("COACH_URL", address)
            .env("COACH_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(again.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["matched"], n);
    assert_eq!(summary["already_replayed"], n);
    assert_eq!(summary["replayed"].as_array().unwrap().len(), 0);
    assert_eq!(w.job_count().await, jobs_before);

    // A wrong token is an HTTP error: exit 2.
    let address = w.app.address.clone();
    let denied = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
            .args(["runs", "list", "--token", "wrong-token-wrong-token"])
            .env("COACH_URL", address)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(denied.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("ADMIN_UNAUTHORIZED"));

    // `runs list | head -1`: the reader closes the pipe before the list is written; the command
    // exits 0 without a panic message.
    let address = w.app.address.clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
            .args(["runs", "list"])
            .env("COACH_URL", address)
            .env("COACH_ADMIN_TOKEN", TOKEN)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---- the /admin page, over plain HTTP (`common::browser`) ----

#[tokio::test]
async fn admin_page_login_sets_a_strict_httponly_session_and_refuses_forms_without_csrf() {
    let w = world(Some(TOKEN)).start().await;
    let mut b = Browser::new(&w.app.address);

    let login = b.get("/admin").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"token\""));
    let csrf = csrf_of(&login.body);
    // A login form posted without its CSRF token (or with another page's) is refused.
    let refused = b.post("/admin/login", &[("token", TOKEN)]).await;
    assert_eq!(refused.status, 403);
    let forged = b
        .post(
            "/admin/login",
            &[("csrf", &"0".repeat(64)), ("token", TOKEN)],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(!b.cookies.contains_key("coach_admin"));
    let wrong = b
        .post(
            "/admin/login",
            &[("csrf", &csrf), ("token", "not-the-token-at-all")],
        )
        .await;
    assert_eq!(wrong.status, 401);

    let fresh = b.get("/admin").await;
    let ok = b
        .post(
            "/admin/login",
            &[("csrf", &csrf_of(&fresh.body)), ("token", TOKEN)],
        )
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.location.as_deref(), Some("/admin"));
    let session = ok
        .set_cookies
        .iter()
        .find(|c| c.starts_with("coach_admin="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "not configured: {session}");
    assert!(!session.contains(TOKEN), "the cookie is not the token");

    let runs = b.get("/admin").await;
    assert_eq!(runs.status, 200);
    assert!(runs.body.contains("Log out"));
    assert!(runs.csp.unwrap().contains("default-src 'none'"));

    // Logged-in forms still need the token; without it nothing is replayed or logged out.
    let logout = b.post("/admin/logout", &[]).await;
    assert_eq!(logout.status, 403);
    let csrf = csrf_of(&runs.body);
    let out = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(!b.cookies.contains_key("coach_admin"));
    assert!(b.get("/admin").await.body.contains("name=\"token\""));

    // With COACH_COOKIE_SECURE the cookie is Secure.
    let mut secure = world(Some(TOKEN))
        .serve(|c| c.cookie_secure = true)
        .prepare()
        .await;
    secure.launch().await;
    let mut b = Browser::new(&secure.app.address);
    let page = b.get("/admin").await;
    let ok = b
        .post(
            "/admin/login",
            &[("csrf", &csrf_of(&page.body)), ("token", TOKEN)],
        )
        .await;
    assert!(
        ok.set_cookies
            .iter()
            .any(|c| c.starts_with("coach_admin=") && c.contains("Secure"))
    );
}

#[tokio::test]
async fn admin_page_shows_escaped_errors_and_replays_a_fixed_run_after_confirmation() {
    let mut w = world(Some(TOKEN)).prepare().await;
    let script = "<script>alert(1)</script>";
    let evil = {
        let job = NewJob::new(script, "y", json!({}));
        w.app.journal.enqueue(job).await.unwrap().0
    };
    let user = w.user().await;
    let transcript = w.unlabelled_transcript(&user).await;
    let request = w.run_request("page-1", &user, &transcript).await;
    let mut job = NewJob::new(
        scenarios::JOB_SINGLE,
        "r1",
        json!({"run_request_id": request}),
    );
    job.dedupe_key = Some(scenarios::single::dedupe_key(&request));
    let failed_r1 = w.app.journal.enqueue(job).await.unwrap().0;
    w.launch().await;
    w.settle(0).await;

    let mut b = Browser::new(&w.app.address);
    b.login(TOKEN).await;
    let list = b.get("/admin").await;
    assert!(list.body.contains(&failed_r1), "the failed run is listed");
    assert!(list.body.contains("NO_SPEAKER_LABELS"));
    assert!(list.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !list.body.contains(script),
        "shown as text, never as markup"
    );
    let detail = b.get(&format!("/admin/runs/{evil}")).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("&lt;script&gt;"));
    assert!(!detail.body.contains(script));

    // A replay form without the CSRF token does nothing.
    let jobs_before = w.job_count().await;
    let refused = b
        .post(&format!("/admin/runs/{failed_r1}/replay"), &[])
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(w.job_count().await, jobs_before);

    // Fix the cause, open the run, press replay, see the new attempt succeed.
    w.fix_transcript(&transcript).await;
    let detail = b.get(&format!("/admin/runs/{failed_r1}")).await;
    assert!(detail.body.contains("NO_SPEAKER_LABELS"));
    let csrf = csrf_of(&detail.body);
    let pressed = b
        .post(
            &format!("/admin/runs/{failed_r1}/replay"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(pressed.status, 303);
    let location = pressed.location.unwrap();
    let new_id = location.trim_start_matches("/admin/runs/").to_owned();
    w.app.wait_run(&new_id).await;
    let new_page = b.get(&location).await;
    assert!(
        new_page.body.contains("class=\"succeeded\">succeeded"),
        "{}",
        new_page.body
    );
    assert!(
        new_page.body.contains(&format!("/admin/runs/{failed_r1}")),
        "links the original"
    );
    let done: tables::RunRequest = w.record(&request).await;
    assert_eq!(done.status, Some(tables::RunRequestStatus::Done));

    // Replay all matching: a confirmation step first (a dry run), then the replay.
    let list = b.get("/admin?status=failed&scenario=y").await;
    let csrf = csrf_of(&list.body);
    let confirm = b
        .post(
            "/admin/replay/confirm",
            &[("csrf", &csrf), ("status", "failed"), ("scenario", "y")],
        )
        .await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("1 would be replayed"),
        "{}",
        confirm.body
    );
    assert_eq!(
        w.job_count().await,
        jobs_before + 1,
        "confirming replays nothing"
    );
    let without = b
        .post("/admin/replay", &[("status", "failed"), ("scenario", "y")])
        .await;
    assert_eq!(without.status, 403);
    let go = b
        .post(
            "/admin/replay",
            &[
                ("csrf", &csrf_of(&confirm.body)),
                ("status", "failed"),
                ("scenario", "y"),
            ],
        )
        .await;
    assert_eq!(go.status, 200);
    assert!(go.body.contains("Replayed 1 runs"), "{}", go.body);
    assert_eq!(w.job_count().await, jobs_before + 2);

    let (_, audit) = w.admin("GET", "/v1/admin/audit", None).await;
    let actions: Vec<(String, bool)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["details"]["dry_run"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("replay".to_owned(), false),
            ("bulk_replay".to_owned(), true),
            ("bulk_replay".to_owned(), false)
        ]
    );
}
