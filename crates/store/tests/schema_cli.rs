//! Schema migration (`airtable check|apply`) against the fake's Meta API. The command line around it
//! (exit codes, errors on stderr) is tested on the real binary, `tests/airtable_cli.rs`.

use std::path::PathBuf;

use coach_store::fake::FakeAirtable;
use coach_store::migrate::{self, Verdict};
use coach_store::{BaseSchema, StoreError};
use serde_json::{Value, json};

/// The test harness installs the TLS crypto provider, as the worker's `main` does (the crate
/// never installs one itself).
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The shipped schema minus the "Experiment Events" table, Runs."Cost USD" and Users."Email".
fn damaged() -> BaseSchema {
    let mut s = BaseSchema::embedded().unwrap();
    s.tables.retain(|t| t.name != "Experiment Events");
    s.table_mut("Runs")
        .unwrap()
        .fields
        .retain(|f| f.name != "Cost USD");
    s.table_mut("Users")
        .unwrap()
        .fields
        .retain(|f| f.name != "Email");
    s
}

/// The two commands with their options.
enum Command {
    Check { schema: Option<PathBuf>, json: bool },
    Apply { schema: Option<PathBuf>, yes: bool },
}

/// The verdict and the report of a command that must not fail.
async fn exec(fake: &FakeAirtable, cmd: Command) -> (Verdict, String) {
    let (result, out) = run(fake, cmd).await;
    match result {
        Ok(verdict) => (verdict, out),
        Err(e) => panic!("{e}"),
    }
}

/// The result and the report of a command.
async fn run(fake: &FakeAirtable, cmd: Command) -> (Result<Verdict, StoreError>, String) {
    let mut out = Vec::new();
    let mut cfg = fake.config();
    cfg.rate_per_sec = 1000.0;
    let result = match cmd {
        Command::Check { schema, json } => {
            migrate::check(schema.as_deref(), json, cfg, &mut out).await
        }
        Command::Apply { schema, yes } => {
            migrate::apply(schema.as_deref(), yes, cfg, &mut out).await
        }
    };
    (result, String::from_utf8(out).unwrap())
}

fn schema_path() -> Option<std::path::PathBuf> {
    Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../airtable/base-schema.json"))
}

#[tokio::test]
async fn check_reports_then_apply_creates_then_check_passes() {
    tls();
    let fake = FakeAirtable::builder()
        .rate_limit(None)
        .schema(damaged())
        .start()
        .await;
    let check = || Command::Check {
        schema: schema_path(),
        json: false,
    };

    let (verdict, out) = exec(&fake, check()).await;
    assert_eq!(verdict, Verdict::WorkLeft, "{out}");
    assert!(
        out.contains("table \"Experiment Events\" is missing"),
        "{out}"
    );
    assert!(
        out.contains("Runs: field \"Cost USD\" (currency) is missing"),
        "{out}"
    );
    assert!(
        out.contains("Users: field \"Email\" (email) is missing"),
        "{out}"
    );
    assert!(out.contains("3 differences"), "{out}");

    let (verdict, out) = exec(
        &fake,
        Command::Check {
            schema: schema_path(),
            json: true,
        },
    )
    .await;
    assert_eq!(verdict, Verdict::WorkLeft);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["differences"].as_array().unwrap().len(), 3);
    assert_eq!(v["differences"][0]["kind"], json!("missing_field"));

    // Dry run: prints the plan, changes nothing.
    let tables_before = fake.schema().tables.len();
    let (verdict, out) = exec(
        &fake,
        Command::Apply {
            schema: schema_path(),
            yes: false,
        },
    )
    .await;
    assert_eq!(verdict, Verdict::Done, "{out}");
    assert!(
        out.contains("would create table \"Experiment Events\""),
        "{out}"
    );
    assert!(out.contains("Dry run"), "{out}");
    assert_eq!(fake.schema().tables.len(), tables_before);

    let (verdict, out) = exec(
        &fake,
        Command::Apply {
            schema: schema_path(),
            yes: true,
        },
    )
    .await;
    assert_eq!(verdict, Verdict::Done, "{out}");
    let live = fake.schema();
    let events = live.table("Experiment Events").unwrap();
    assert_eq!(events.primary_field().unwrap().name, "Key");
    let run_link = events.field("Run").unwrap();
    assert_eq!(
        run_link.link_target(&live).unwrap().name,
        "Runs",
        "links created with the table id"
    );
    assert!(
        live.table("Runs")
            .unwrap()
            .field("Experiment Events")
            .is_some(),
        "inverse link added"
    );

    let (verdict, out) = exec(&fake, check()).await;
    assert_eq!(verdict, Verdict::Done, "{out}");
    assert!(out.contains("matches"), "{out}");

    // The created base accepts writes to the new table.
    let mut cfg = fake.config();
    cfg.rate_per_sec = 1000.0;
    let store = coach_store::Store::airtable(cfg).unwrap();
    let mut f = coach_store::Fields::new();
    f.insert("Key".into(), json!("ev"));
    f.insert("Type".into(), json!("attempt"));
    store.upsert("Experiment Events", vec![f]).await.unwrap();
}

#[tokio::test]
async fn apply_refuses_computed_fields_and_reports_manual_work() {
    tls();
    let fake = FakeAirtable::builder().rate_limit(None).start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut desired = BaseSchema::embedded().unwrap();
    let runs = desired.table_mut("Runs").unwrap();
    runs.fields.push(
        serde_json::from_value(
            json!({"name": "Total", "type": "formula", "options": {"formula": "1"}}),
        )
        .unwrap(),
    );
    runs.fields
        .push(serde_json::from_value(json!({"name": "Note", "type": "singleLineText"})).unwrap());
    let status = runs.fields.iter_mut().find(|f| f.name == "Status").unwrap();
    status.options = Some(json!({"choices": [{"name": "Queued"}, {"name": "Cancelled"}]}));
    let path = dir.path().join("schema.json");
    std::fs::write(&path, serde_json::to_string(&desired).unwrap()).unwrap();

    let (verdict, out) = exec(
        &fake,
        Command::Apply {
            schema: Some(path.clone()),
            yes: true,
        },
    )
    .await;
    assert_eq!(verdict, Verdict::WorkLeft, "manual work remains: {out}");
    assert!(
        out.contains("by hand: Runs: add field \"Total\" of type formula"),
        "{out}"
    );
    assert!(
        out.contains("add the options Cancelled to field \"Status\""),
        "{out}"
    );
    assert!(
        fake.schema().table("Runs").unwrap().field("Note").is_some(),
        "creatable field created"
    );
    assert!(
        fake.schema()
            .table("Runs")
            .unwrap()
            .field("Total")
            .is_none()
    );

    let (verdict, out) = exec(
        &fake,
        Command::Check {
            schema: Some(path),
            json: false,
        },
    )
    .await;
    assert_eq!(verdict, Verdict::WorkLeft);
    assert!(out.contains("Total") && out.contains("Cancelled"), "{out}");
}

#[tokio::test]
async fn bad_schema_path_is_a_typed_configuration_error_with_nothing_printed() {
    tls();
    let fake = FakeAirtable::builder().rate_limit(None).start().await;
    let (result, out) = run(
        &fake,
        Command::Check {
            schema: Some("/nonexistent/schema.json".into()),
            json: false,
        },
    )
    .await;
    assert!(out.is_empty(), "errors are returned, not printed: {out}");
    let err = result.expect_err("no schema file");
    assert_eq!(err.code(), "STORE_CONFIG");
    assert!(err.to_string().contains("cannot read schema file"), "{err}");
}

#[tokio::test]
async fn without_schema_the_built_in_one_is_used() {
    tls();
    let fake = FakeAirtable::builder().rate_limit(None).start().await;
    let (verdict, out) = exec(
        &fake,
        Command::Check {
            schema: None,
            json: false,
        },
    )
    .await;
    assert_eq!(verdict, Verdict::Done, "{out}");
    assert!(out.contains("matches the built-in schema"), "{out}");
}
