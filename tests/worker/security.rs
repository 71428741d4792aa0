//! What an outside caller can and cannot get from a running worker: the public run view's content,
//! run ids, admin sessions and the login form, replays of captured Make-scheme requests, response
//! headers, and the data folder's permissions.

use crate::common;

use coach_store::tables;
use coach_worker::journal::NewJob;
use common::browser::{Browser, csrf_of};
use common::world::{COACHEE, World, sample_text};
use common::*;
use serde_json::Value;

const TOKEN: &str = "security-suite-admin-token-0123456789";

/// The public view of a failed run carries the error code only; the admin API keeps the message
/// that names the transcript's speakers.
#[tokio::test]
async fn the_public_run_view_shows_the_code_but_not_names_or_quotes() {
    let w = World::builder().admin_token(TOKEN).start().await;
    let user = w.user().await;
    let transcript = w
        .create(&tables::Transcript {
            title: Some("wrong coachee".into()),
            user: vec![common::rid(&user)],
            transcript: Some(sample_text("followup-2-one-on-one.txt")),
            format: Some(tables::TranscriptFormat::Text),
            coachee_speaker: Some("Quentin Nobody".into()),
            ..Default::default()
        })
        .await;
    let request = w.run_request("sec-1", &user, &transcript).await;
    let run = w.r1("sec-del-1", &request).await;
    assert_eq!(run["status"], "failed", "{run}");
    let code = run["error"]["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("COACHEE"), "{run}");

    let first_name = COACHEE.split(' ').next().unwrap();
    let public = run.to_string();
    assert!(!public.contains(first_name), "{public}");
    assert!(!public.contains("Quentin"), "{public}");
    assert!(run["error"]["details"].as_object().unwrap().is_empty());

    let run_id = run["run_id"].as_str().unwrap();
    let (status, admin) = w
        .call(
            "GET",
            &format!("/v1/admin/runs/{run_id}"),
            None,
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
    assert_eq!(status, 200);
    assert!(admin.to_string().contains(first_name), "{admin}");
}

/// Ids minted in one burst share their millisecond but nothing after it: no counter makes them
/// consecutive.
#[test]
fn run_ids_of_one_burst_are_not_consecutive() {
    let ids: Vec<String> = (0..2000)
        .map(|_| NewJob::new("k", "s", Value::Null).id)
        .collect();
    let mut pairs = 0;
    for pair in ids.windows(2) {
        let (a, b) = (&pair[0]["run_".len()..], &pair[1]["run_".len()..]);
        // Same millisecond: hex digits 0..12 are the time, 12 the version.
        if a[..12] != b[..12] {
            continue;
        }
        pairs += 1;
        // With a counter, ids minted one after the other share the counter's high digits; random
        // bits share these eight digits (30 random bits) about once in a billion.
        assert_ne!(a[13..21], b[13..21], "{a} then {b}");
    }
    assert!(pairs > 100, "the burst spread over too many milliseconds");
}

/// The unauthenticated run view answers 429 with `Retry-After` past its budget.
#[tokio::test]
async fn the_public_run_view_is_rate_limited() {
    let w = World::builder().start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = w.app.client.clone();
        let url = format!("{}/v1/runs/run_0000", w.app.address);
        tasks.spawn(async move {
            for _ in 0..1000 {
                let resp = client.get(&url).send().await.unwrap();
                if resp.status() == 429 {
                    let retry = resp.headers().get("retry-after").cloned();
                    let body: Value = resp.json().await.unwrap();
                    return Some((retry, body));
                }
            }
            None
        });
    }
    let mut limited = None;
    while let Some(done) = tasks.join_next().await {
        if let Some(hit) = done.unwrap() {
            limited = Some(hit);
        }
    }
    let (retry, body) = limited.expect("8000 requests at once were all served");
    assert!(retry.is_some());
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
}

/// A captured Make-scheme request sent again with a new `X-Coach-Delivery` (or `Idempotency-Key`)
/// gets the first delivery's answer and starts no job; a re-signed retry of the same delivery is
/// still that delivery.
#[tokio::test]
async fn a_make_request_replayed_with_a_new_delivery_id_starts_no_job() {
    let w = World::builder().start().await;
    let body = br#"{"run_request_id":"recAAAAAAAAAAAAAA"}"#.to_vec();
    let ts = now();
    let first = w
        .app
        .post_raw(
            "r1",
            body.clone(),
            make_headers(Some("mk-first"), ts, &body),
        )
        .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let jobs = w.job_count().await;

    let mut captured = make_headers(None, ts, &body);
    captured.push(("X-Coach-Delivery".into(), "mk-forged".into()));
    let mut with_key = make_headers(None, ts, &body);
    with_key.push(("Idempotency-Key".into(), "idem-forged".into()));
    for headers in [
        captured,
        with_key,
        make_headers(Some("mk-first"), ts + 1, &body),
    ] {
        let resp = w.app.post_raw("r1", body.clone(), headers).await;
        assert!(resp.status().is_success(), "{}", resp.status());
        let again: Value = resp.json().await.unwrap();
        assert_eq!(again["run_id"], first["run_id"]);
    }
    assert_eq!(w.job_count().await, jobs);
}

/// Hardening headers: nosniff everywhere, no-store on the admin API, `Allow` on 405s, and the
/// contract's JSON body on the framework's own 413.
#[tokio::test]
async fn answers_carry_hardening_headers_and_json_errors() {
    let w = World::builder().admin_token(TOKEN).start().await;
    let client = &w.app.client;
    let base = &w.app.address;
    for path in ["/healthz", "/v1/runs/run_none", "/nothing"] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    let resp = client
        .get(format!("{base}/v1/admin/runs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");

    let resp = client
        .get(format!("{base}/v1/hooks/r1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = client
        .post(format!("{base}/v1/runs/run_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");

    let resp = client
        .post(format!("{base}/v1/admin/replay"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BODY_TOO_LARGE", "{body}");
}

/// Logging out ends the session on the server: the saved cookie and its CSRF token no longer work.
/// Sessions last an hour at most, and wrong tokens on the login form are limited.
#[tokio::test]
async fn logout_ends_the_session_and_the_login_form_is_rate_limited() {
    let w = World::builder()
        .admin_token(TOKEN)
        .wired_as_serve()
        .start()
        .await;
    let mut b = Browser::new(&w.app.address);
    let login = b.get("/admin").await;
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("base-uri 'none'"), "{csp}");
    let csrf = csrf_of(&login.body);
    let page = b
        .post("/admin/login", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(page.status, 303);
    let set_cookie = page.headers["set-cookie"].to_str().unwrap().to_owned();
    let max_age: i64 = set_cookie
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 3600, "{set_cookie}");

    let index = b.get("/admin").await;
    assert_eq!(index.status, 200);
    let session_csrf = csrf_of(&index.body);
    let saved = b.cookies.clone();
    assert_eq!(
        b.post("/admin/logout", &[("csrf", &session_csrf)])
            .await
            .status,
        303
    );

    // Someone who copied the cookie before the logout replays a form with it.
    b.cookies = saved;
    let replay = b
        .post("/admin/runs/run_x/replay", &[("csrf", &session_csrf)])
        .await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert!(replay.body.contains("name=\"token\""));

    // Wrong tokens: a few are answered 401, then 429 with Retry-After.
    let mut b = Browser::new(&w.app.address);
    let csrf = csrf_of(&b.get("/admin").await.body);
    let login_cookie = b.cookies.clone();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        b.cookies = login_cookie.clone();
        let page = b
            .post("/admin/login", &[("csrf", &csrf), ("token", "wrong-token")])
            .await;
        if page.status == 429 {
            assert!(page.headers.contains_key("retry-after"));
        }
        statuses.push(page.status);
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");

    // Wrong logins from the same address (everyone, behind a proxy) do not lock the admin out.
    b.cookies = login_cookie;
    let admin = b
        .post("/admin/login", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(admin.status, 303, "{}", admin.body);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A new data folder is 0700 with its databases 0600; an existing one left open is tightened.
#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_and_databases_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();

    let fresh = root.path().join("fresh").join("data");
    let mut config = test_config(fresh.clone());
    config.airtable_token = None;
    let secrets = config.validate().unwrap();
    let built = coach_worker::serve::build(&config, secrets.clone())
        .await
        .unwrap();
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&config.journal_path()), 0o600);
    assert_eq!(mode(&config.store_path()), 0o600);
    drop(built);

    let old = root.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["journal.db", "store.db"] {
        let path = old.join(name);
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let config = test_config(old.clone());
    let built = coach_worker::serve::build(&config, secrets).await.unwrap();
    assert_eq!(mode(&old), 0o700);
    assert_eq!(mode(&old.join("journal.db")), 0o600);
    assert_eq!(mode(&old.join("store.db")), 0o600);
    drop(built);
}
