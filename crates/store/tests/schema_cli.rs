//! `airtable check|apply` against the fake's Meta API.

use coach_store::BaseSchema;
use coach_store::cli::{Command, run_to};
use coach_store::fake::FakeAirtable;
use serde_json::{Value, json};

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

async fn exec(fake: &FakeAirtable, cmd: Command) -> (i32, String) {
    let (code, out, err) = exec_both(fake, cmd).await;
    assert!(err.is_empty(), "{err}");
    (code, out)
}

/// The exit code, standard output and standard error of a command.
async fn exec_both(fake: &FakeAirtable, cmd: Command) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut cfg = fake.config();
    cfg.rate_per_sec = 1000.0;
    let code = run_to(cmd, cfg, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn schema_path() -> Option<std::path::PathBuf> {
    Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../airtable/base-schema.json"))
}

#[tokio::test]
async fn check_reports_then_apply_creates_then_check_passes() {
    let fake = FakeAirtable::builder()
        .rate_limit(None)
        .schema(damaged())
        .start()
        .await;
    let check = || Command::Check {
        schema: schema_path(),
        json: false,
    };

    let (code, out) = exec(&fake, check()).await;
    assert_eq!(code, 1, "{out}");
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

    let (code, out) = exec(
        &fake,
        Command::Check {
            schema: schema_path(),
            json: true,
        },
    )
    .await;
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["differences"].as_array().unwrap().len(), 3);
    assert_eq!(v["differences"][0]["kind"], json!("missing_field"));

    // Dry run: prints the plan, changes nothing.
    let tables_before = fake.schema().tables.len();
    let (code, out) = exec(
        &fake,
        Command::Apply {
            schema: schema_path(),
            yes: false,
        },
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would create table \"Experiment Events\""),
        "{out}"
    );
    assert!(out.contains("Dry run"), "{out}");
    assert_eq!(fake.schema().tables.len(), tables_before);

    let (code, out) = exec(
        &fake,
        Command::Apply {
            schema: schema_path(),
            yes: true,
        },
    )
    .await;
    assert_eq!(code, 0, "{out}");
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

    let (code, out) = exec(&fake, check()).await;
    assert_eq!(code, 0, "{out}");
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

    let (code, out) = exec(
        &fake,
        Command::Apply {
            schema: Some(path.clone()),
            yes: true,
        },
    )
    .await;
    assert_eq!(code, 1, "manual work remains: {out}");
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

    let (code, out) = exec(
        &fake,
        Command::Check {
            schema: Some(path),
            json: false,
        },
    )
    .await;
    assert_eq!(code, 1);
    assert!(out.contains("Total") && out.contains("Cancelled"), "{out}");
}

#[tokio::test]
async fn bad_schema_path_is_a_usage_error_on_stderr() {
    let fake = FakeAirtable::builder().rate_limit(None).start().await;
    let (code, out, err) = exec_both(
        &fake,
        Command::Check {
            schema: Some("/nonexistent/schema.json".into()),
            json: false,
        },
    )
    .await;
    assert_eq!(code, 2);
    assert!(out.is_empty(), "errors belong on stderr: {out}");
    assert!(
        err.contains("STORE_CONFIG") && err.contains("cannot read schema file"),
        "{err}"
    );
}

#[tokio::test]
async fn without_schema_the_built_in_one_is_used() {
    let fake = FakeAirtable::builder().rate_limit(None).start().await;
    let (code, out) = exec(
        &fake,
        Command::Check {
            schema: None,
            json: false,
        },
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("matches the built-in schema"), "{out}");
}
