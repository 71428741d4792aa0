//! `coach-worker airtable check|apply` as installed: the real binary, run from a folder that is not the
//! checkout, against the Airtable fake with Airtable's own limit of 5 requests a second per base.

use std::process::Output;

use coach_store::BaseSchema;
use coach_store::fake::{FAKE_TOKEN, FakeAirtable};

async fn airtable(fake: &FakeAirtable, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"));
    cmd.arg("airtable")
        .args(args)
        .current_dir(dir.path())
        .env("AIRTABLE_TOKEN", FAKE_TOKEN)
        .env("AIRTABLE_BASE_ID", fake.base_id())
        .env("AIRTABLE_API_URL", fake.uri());
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().unwrap();
        drop(dir);
        out
    })
    .await
    .unwrap()
}

/// The shipped schema without the "Experiment Events" table.
fn without_events_table() -> BaseSchema {
    let mut s = BaseSchema::embedded().unwrap();
    s.tables.retain(|t| t.name != "Experiment Events");
    s
}

#[tokio::test]
async fn check_and_apply_work_outside_the_checkout_and_stay_under_the_rate_limit() {
    let fake = FakeAirtable::builder()
        .rate_limit(Some(5))
        .schema(without_events_table())
        .start()
        .await;

    let out = airtable(&fake, &["check"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("table \"Experiment Events\" is missing"),
        "{stdout}"
    );

    let out = airtable(&fake, &["apply", "--yes"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("create table \"Experiment Events\""),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fake.schema().table("Experiment Events").is_some());
    assert_eq!(fake.count_429(), 0, "Meta API calls were not paced");
    assert!(fake.max_rate_seen() <= 5, "{}", fake.max_rate_seen());

    let out = airtable(&fake, &["check"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn errors_go_to_stderr() {
    let fake = FakeAirtable::builder().rate_limit(None).start().await;
    let out = airtable(&fake, &["check", "--schema", "no-such-file.json"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read schema file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
