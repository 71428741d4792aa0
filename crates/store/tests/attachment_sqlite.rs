//! Attachment downloads (size cap, timeout, allow-list, redirects) and SQLite-only properties
//! (persistence across reopen, WAL).

use std::time::Duration;

use coach_store::attachment::{AttachmentPolicy, download};
use coach_store::tables::{RUNS, Run, RunStatus, TableRecord};
use coach_store::{ListQuery, Store};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The test harness installs the TLS crypto provider, as the worker's `main` does (the crate
/// never installs one itself).
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn local_policy(max_bytes: u64, timeout: Duration) -> AttachmentPolicy {
    AttachmentPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        max_bytes,
        timeout,
        allow_insecure_http: true,
    }
}

#[tokio::test]
async fn downloads_within_the_cap_and_refuses_above_it() {
    tls();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/small.vtt"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"WEBVTT\n\n".to_vec()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/big.vtt"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'a'; 5000]))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/slow.vtt"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/gone.vtt"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/redirect"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://localhost:1/elsewhere"),
        )
        .mount(&server)
        .await;

    let p = local_policy(1000, Duration::from_secs(2));
    let body = download(&format!("{}/small.vtt", server.uri()), &p)
        .await
        .unwrap();
    assert_eq!(body, b"WEBVTT\n\n");
    let e = download(&format!("{}/big.vtt", server.uri()), &p)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ATTACHMENT_TOO_LARGE");
    let quick = local_policy(1000, Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = download(&format!("{}/slow.vtt", server.uri()), &quick)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let e = download(&format!("{}/gone.vtt", server.uri()), &p)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ATTACHMENT_HTTP_STATUS");
    let e = download(&format!("{}/redirect", server.uri()), &p)
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        "ATTACHMENT_REDIRECT_REFUSED",
        "redirect to a host off the allow-list is refused: {e}"
    );
    // The default policy refuses this local server outright.
    let e = download(
        &format!("{}/small.vtt", server.uri()),
        &AttachmentPolicy::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "ATTACHMENT_NOT_HTTPS");
}

#[tokio::test]
async fn sqlite_persists_across_reopen_and_typed_records_round_trip() {
    tls();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let id = {
        let store = Store::sqlite(&db).unwrap();
        assert_eq!(store.backend_name(), "sqlite");
        let run = Run {
            key: Some("r1:single".into()),
            status: Some(RunStatus::Running),
            attempt: Some(1),
            gate1_passed: Some(true),
            cost_usd: Some(0.0125),
            ..Default::default()
        };
        let out = store.upsert(RUNS, vec![run.to_fields()]).await.unwrap();
        out[0].id.clone()
    };
    let store = Store::sqlite(&db).unwrap();
    let rec = store.get(RUNS, &id).await.unwrap();
    let run = Run::from_record(&rec).unwrap();
    assert_eq!(run.id, id);
    assert_eq!(run.status, Some(RunStatus::Running));
    assert_eq!(run.cost_usd, Some(0.0125));
    assert_eq!(run.gate1_passed, Some(true));
    assert_eq!(store.list(RUNS, &ListQuery::new()).await.unwrap().len(), 1);
    let mode: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
