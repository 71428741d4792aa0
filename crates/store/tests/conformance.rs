//! One conformance suite, run against both backends: SQLite (a temporary file) and Airtable (the
//! stateful fake, through the real HTTP client). Every scenario is a plain async fn over a `Harness`;
//! the macro at the bottom instantiates each one once per backend.

use coach_store::fake::FakeAirtable;
use coach_store::tables::{EXPERIMENT_EVENTS, RUN_REQUESTS, RUNS};
use coach_store::{Fields, Filter, ListQuery, Record, Store, StoreError, is_record_id};
use serde_json::{Value, json};

/// The test harness installs the TLS crypto provider, as the worker's `main` does (the crate
/// never installs one itself).
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

struct Harness {
    store: Store,
    fake: Option<FakeAirtable>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(&dir.path().join("store.db")).unwrap();
        Harness {
            store,
            fake: None,
            _dir: Some(dir),
        }
    }

    async fn airtable() -> Harness {
        // The fake's own 429 limit is off here (the rate tests cover it) so the suite runs in seconds.
        tls();
        let fake = FakeAirtable::builder().rate_limit(None).start().await;
        let mut cfg = fake.config();
        cfg.rate_per_sec = 1000.0;
        let store = Store::airtable(cfg).unwrap();
        Harness {
            store,
            fake: Some(fake),
            _dir: None,
        }
    }

    /// Requests seen by the fake for (method, table path + suffix); None on SQLite.
    fn calls(&self, method: &str, table: &str, suffix: &str) -> Option<usize> {
        self.fake
            .as_ref()
            .map(|f| f.calls_to(method, &format!("{}{suffix}", f.table_path(table))))
    }
}

fn fields(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn keys(records: &[Record]) -> Vec<String> {
    let mut k: Vec<String> = records
        .iter()
        .map(|r| r.text("Key").unwrap_or("").to_string())
        .collect();
    k.sort();
    k
}

async fn crud_roundtrip(h: Harness) {
    let s = &h.store;
    let created = s
        .create(
            RUN_REQUESTS,
            vec![fields(
                json!({"Key": "rr-1", "Status": "Queued", "Source": "make"}),
            )],
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    let rec = &created[0];
    assert!(is_record_id(&rec.id), "{}", rec.id);
    assert!(
        rec.created_time.ends_with('Z') && rec.created_time.len() == 24,
        "{}",
        rec.created_time
    );
    let got = s.get(RUN_REQUESTS, &rec.id).await.unwrap();
    assert_eq!(got, *rec);

    let updated = s
        .update(
            RUN_REQUESTS,
            vec![(
                rec.id.clone(),
                fields(json!({"Status": "Failed", "Error": "boom"})),
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        updated[0].text("Key"),
        Some("rr-1"),
        "PATCH merges, it does not replace"
    );
    assert_eq!(updated[0].text("Status"), Some("Failed"));
    let cleared = s
        .update(
            RUN_REQUESTS,
            vec![(rec.id.clone(), fields(json!({"Error": null})))],
        )
        .await
        .unwrap();
    assert!(!cleared[0].fields.contains_key("Error"));
    assert_eq!(
        s.get(RUN_REQUESTS, &rec.id).await.unwrap().text("Status"),
        Some("Failed")
    );

    s.delete(RUN_REQUESTS, vec![rec.id.clone()]).await.unwrap();
    let e = s.get(RUN_REQUESTS, &rec.id).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
    assert!(s.ready().await.is_ok());
}

async fn ids_are_validated_before_any_request(h: Harness) {
    let before = h.fake.as_ref().map(|f| f.calls());
    for bad in ["", "rec123", "recAAAAAAAAAAAAAA/../x", "tblAAAAAAAAAAAAAA"] {
        let e = h.store.get(RUNS, bad).await.unwrap_err();
        assert_eq!(e.code(), "INVALID_RECORD_ID");
        assert!(e.is_client_error());
    }
    let e = h
        .store
        .update(RUNS, vec![("nope".into(), Fields::new())])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_RECORD_ID");
    let e = h.store.delete(RUNS, vec!["x".into()]).await.unwrap_err();
    assert_eq!(e.code(), "INVALID_RECORD_ID");
    assert_eq!(
        h.fake.as_ref().map(|f| f.calls()),
        before,
        "no request for a bad id"
    );
    let e = h.store.get(RUNS, "recAAAAAAAAAAAAAA").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
    assert!(!e.is_transient());
}

async fn list_filters_selects_and_caps(h: Harness) {
    let s = &h.store;
    let rows = [
        json!({"Key": "a", "Status": "Queued", "Attempt": 1, "Gate1 Passed": true, "Model": "m1"}),
        json!({"Key": "b", "Status": "Queued", "Attempt": 2}),
        json!({"Key": "c", "Status": "Failed", "Attempt": 2, "Model": "m1"}),
        json!({"Key": "d", "Status": "Succeeded", "Gate1 Passed": false, "Model": ""}),
    ];
    s.create(RUNS, rows.into_iter().map(fields).collect())
        .await
        .unwrap();
    let list =
        |f: Filter| async move { keys(&s.list(RUNS, &ListQuery::new().filter(f)).await.unwrap()) };

    assert_eq!(list(Filter::eq("Status", "Queued")).await, ["a", "b"]);
    assert_eq!(list(Filter::eq("Attempt", 2i64)).await, ["b", "c"]);
    assert_eq!(list(Filter::eq("Gate1 Passed", true)).await, ["a"]);
    assert_eq!(
        list(Filter::eq("Gate1 Passed", false)).await,
        ["b", "c", "d"]
    );
    assert_eq!(list(Filter::is_blank("Model")).await, ["b", "d"]);
    assert_eq!(list(Filter::eq("Model", "")).await, ["b", "d"]);
    assert_eq!(
        list(Filter::not(Filter::is_blank("Model"))).await,
        ["a", "c"]
    );
    assert_eq!(
        list(Filter::and([
            Filter::eq("Status", "Queued"),
            Filter::eq("Attempt", 2i64)
        ]))
        .await,
        ["b"]
    );
    assert_eq!(
        list(Filter::or([
            Filter::eq("Status", "Failed"),
            Filter::eq("Key", "a")
        ]))
        .await,
        ["a", "c"]
    );
    assert_eq!(
        list(Filter::not(Filter::eq("Status", "Queued"))).await,
        ["c", "d"]
    );
    assert_eq!(list(Filter::and([])).await, ["a", "b", "c", "d"]);
    assert!(list(Filter::or([])).await.is_empty());
    assert!(
        list(Filter::eq("Status", "queued")).await.is_empty(),
        "equality is case-sensitive"
    );

    let sel = s
        .list(
            RUNS,
            &ListQuery::new()
                .filter(Filter::eq("Key", "a"))
                .fields(["Key", "Attempt"]),
        )
        .await
        .unwrap();
    assert_eq!(sel.len(), 1);
    let names: Vec<&String> = sel[0].fields.keys().collect();
    assert_eq!(names, ["Attempt", "Key"]);
    let capped = s
        .list(RUNS, &ListQuery::new().max_records(3))
        .await
        .unwrap();
    assert_eq!(keys(&capped), ["a", "b", "c"], "creation order, capped");
    assert!(
        s.list(RUNS, &ListQuery::new().max_records(0))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn link_contains_matches_primary_values(h: Harness) {
    let s = &h.store;
    let runs = s
        .create(
            RUNS,
            vec![
                fields(json!({"Key": "run-a"})),
                fields(json!({"Key": "run-ab"})),
            ],
        )
        .await
        .unwrap();
    let (a, ab) = (runs[0].id.clone(), runs[1].id.clone());
    s.create(
        EXPERIMENT_EVENTS,
        vec![
            fields(json!({"Key": "e1", "Run": [a]})),
            fields(json!({"Key": "e2", "Run": [ab]})),
            fields(json!({"Key": "e3", "Run": [ab, a]})),
            fields(json!({"Key": "e4"})),
        ],
    )
    .await
    .unwrap();
    let found = s
        .list(
            EXPERIMENT_EVENTS,
            &ListQuery::new().filter(Filter::link_contains("Run", "run-a")),
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&found),
        ["e1", "e3"],
        "whole-value match on the linked primary field, not substring"
    );
    let by_id = s
        .list(
            EXPERIMENT_EVENTS,
            &ListQuery::new().filter(Filter::link_contains("Run", &a)),
        )
        .await
        .unwrap();
    assert!(
        by_id.is_empty(),
        "formulas see primary values, not record ids"
    );
    let unlinked = s
        .list(
            EXPERIMENT_EVENTS,
            &ListQuery::new().filter(Filter::is_blank("Run")),
        )
        .await
        .unwrap();
    assert_eq!(keys(&unlinked), ["e4"]);
}

async fn upsert_is_idempotent(h: Harness) {
    let s = &h.store;
    let first = s
        .upsert(
            RUNS,
            vec![fields(
                json!({"Key": "d1:exp:run", "Status": "Queued", "Attempt": 1}),
            )],
        )
        .await
        .unwrap();
    let second = s
        .upsert(
            RUNS,
            vec![fields(json!({"Key": "d1:exp:run", "Status": "Succeeded"}))],
        )
        .await
        .unwrap();
    assert_eq!(first[0].id, second[0].id);
    let all = s.list(RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(all.len(), 1, "same Key twice → one record");
    assert_eq!(all[0].text("Status"), Some("Succeeded"));
    assert_eq!(
        all[0].fields.get("Attempt"),
        Some(&json!(1)),
        "upsert merges"
    );

    // Same key twice in one call, and a mixed batch.
    let mixed = s
        .upsert(
            RUNS,
            vec![
                fields(json!({"Key": "k2", "Attempt": 1})),
                fields(json!({"Key": "d1:exp:run", "Attempt": 5})),
                fields(json!({"Key": "k2", "Attempt": 2})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(mixed.len(), 3);
    assert_eq!(mixed[0].id, mixed[2].id);
    assert_eq!(mixed[1].id, first[0].id);
    let all = s.list(RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(keys(&all), ["d1:exp:run", "k2"]);
    let k2 = all.iter().find(|r| r.text("Key") == Some("k2")).unwrap();
    assert_eq!(k2.fields.get("Attempt"), Some(&json!(2)));

    let e = s
        .upsert(RUNS, vec![fields(json!({"Status": "Queued"}))])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_RECORDS");
}

async fn concurrent_upserts_of_one_key_leave_one_record(h: Harness) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = h.store.clone();
        tasks.push(tokio::spawn(async move {
            s.upsert(RUNS, vec![fields(json!({"Key": "same", "Attempt": i}))])
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        h.store.list(RUNS, &ListQuery::new()).await.unwrap().len(),
        1
    );
}

async fn batches_are_split_by_ten(h: Harness) {
    let s = &h.store;
    let recs: Vec<Fields> = (0..25)
        .map(|i| fields(json!({"Key": format!("k{i:02}")})))
        .collect();
    let created = s.create(RUNS, recs.clone()).await.unwrap();
    assert_eq!(created.len(), 25);
    assert_eq!(
        created[24].text("Key"),
        Some("k24"),
        "results keep input order"
    );
    assert_eq!(
        h.calls("POST", RUNS, ""),
        h.fake.as_ref().map(|_| 3),
        "25 records → 3 requests"
    );

    let ups: Vec<Fields> = (0..25)
        .map(|i| fields(json!({"Key": format!("k{i:02}"), "Attempt": 2})))
        .collect();
    let upserted = s.upsert(RUNS, ups).await.unwrap();
    assert_eq!(upserted.len(), 25);
    assert_eq!(h.calls("PATCH", RUNS, ""), h.fake.as_ref().map(|_| 3));

    let updates: Vec<(String, Fields)> = created
        .iter()
        .map(|r| (r.id.clone(), fields(json!({"Attempt": 3}))))
        .collect();
    s.update(RUNS, updates).await.unwrap();
    assert_eq!(h.calls("PATCH", RUNS, ""), h.fake.as_ref().map(|_| 6));
    let all = s.list(RUNS, &ListQuery::new()).await.unwrap();
    assert_eq!(all.len(), 25);
    assert!(
        all.iter()
            .all(|r| r.fields.get("Attempt") == Some(&json!(3)))
    );

    s.delete(RUNS, created.iter().map(|r| r.id.clone()).collect())
        .await
        .unwrap();
    assert_eq!(h.calls("DELETE", RUNS, ""), h.fake.as_ref().map(|_| 3));
    assert!(s.list(RUNS, &ListQuery::new()).await.unwrap().is_empty());
}

async fn lists_page_through_everything(h: Harness) {
    let s = &h.store;
    for chunk in 0..25 {
        let recs: Vec<Fields> = (0..10)
            .map(|i| fields(json!({"Key": format!("p{:03}", chunk * 10 + i), "Status": "Queued"})))
            .collect();
        s.create(RUN_REQUESTS, recs).await.unwrap();
    }
    let all = s.list(RUN_REQUESTS, &ListQuery::new()).await.unwrap();
    assert_eq!(all.len(), 250);
    let in_order: Vec<String> = all
        .iter()
        .map(|r| r.text("Key").unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..250).map(|i| format!("p{i:03}")).collect();
    assert_eq!(in_order, expected, "every record once, in creation order");
    assert_eq!(
        h.calls("GET", RUN_REQUESTS, ""),
        h.fake.as_ref().map(|_| 3),
        "pages of 100"
    );
    let capped = s
        .list(
            RUN_REQUESTS,
            &ListQuery::new()
                .filter(Filter::eq("Status", "Queued"))
                .max_records(120),
        )
        .await
        .unwrap();
    assert_eq!(capped.len(), 120);
}

async fn errors_are_typed_alike(h: Harness) {
    let s = &h.store;
    let code = |r: Result<Vec<Record>, StoreError>| r.unwrap_err().code();
    assert_eq!(
        code(s.list("Nope", &ListQuery::new()).await),
        "TABLE_NOT_FOUND"
    );
    assert_eq!(
        s.get("Nope", "recAAAAAAAAAAAAAA").await.unwrap_err().code(),
        "TABLE_NOT_FOUND"
    );
    assert_eq!(
        code(s.create("Nope", vec![fields(json!({"Key": "x"}))]).await),
        "TABLE_NOT_FOUND"
    );
    assert_eq!(
        code(s.create(RUNS, vec![fields(json!({"Colour": "red"}))]).await),
        "UNKNOWN_FIELD_NAME"
    );
    let e = s
        .create(RUNS, vec![fields(json!({"Status": "Exploded"}))])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_MULTIPLE_CHOICE_OPTIONS");
    assert!(e.is_client_error() && !e.is_transient());
    assert_eq!(
        code(
            s.create(RUNS, vec![fields(json!({"Attempt": "two"}))])
                .await
        ),
        "INVALID_VALUE_FOR_COLUMN"
    );
    assert_eq!(
        code(s.create(RUNS, vec![fields(json!({"User": ["bob"]}))]).await),
        "INVALID_VALUE_FOR_COLUMN"
    );
    assert_eq!(
        code(
            s.upsert(RUNS, vec![fields(json!({"Key": "k", "Nope": 1}))])
                .await
        ),
        "UNKNOWN_FIELD_NAME"
    );
    assert_eq!(
        code(s.list(RUNS, &ListQuery::new().fields(["Nope"])).await),
        "UNKNOWN_FIELD_NAME"
    );
    assert_eq!(
        code(
            s.list(RUNS, &ListQuery::new().filter(Filter::eq("Nope", "x")))
                .await
        ),
        "INVALID_FILTER"
    );
    assert_eq!(
        code(
            s.update(
                RUNS,
                vec![("recAAAAAAAAAAAAAA".into(), fields(json!({"Attempt": 1})))]
            )
            .await
        ),
        "NOT_FOUND"
    );
    assert_eq!(
        s.delete(RUNS, vec!["recAAAAAAAAAAAAAA".into()])
            .await
            .unwrap_err()
            .code(),
        "NOT_FOUND"
    );
    // A rejected write leaves nothing behind.
    assert!(s.list(RUNS, &ListQuery::new()).await.unwrap().is_empty());
}

async fn empty_values_read_as_absent(h: Harness) {
    let created = h
        .store
        .create(
            RUNS,
            vec![fields(json!({"Key": "e", "Model": "", "Gate1 Passed": false, "Transcripts": [], "Error": null}))],
        )
        .await
        .unwrap();
    let got = h.store.get(RUNS, &created[0].id).await.unwrap();
    let names: Vec<&String> = got.fields.keys().collect();
    assert_eq!(names, ["Key"]);
}

async fn tricky_strings_round_trip_and_match(h: Harness) {
    let values = [
        r#"x", ""=""#,
        r"\' OR 1",
        "back\\slash\\",
        "quote\"inside",
        "{Key} = 1",
        "new\nline",
        "ünïcødé ✓ 日本",
        "'single'",
    ];
    let recs: Vec<Fields> = values.iter().map(|v| fields(json!({"Key": v}))).collect();
    h.store.create(RUN_REQUESTS, recs).await.unwrap();
    for v in values {
        let found = h
            .store
            .list(RUN_REQUESTS, &ListQuery::new().filter(Filter::eq("Key", v)))
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{v:?}");
        assert_eq!(found[0].text("Key"), Some(v));
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Harness::sqlite().await).await })*
        }
        mod airtable {
            $(#[tokio::test] async fn $name() { super::$name(super::Harness::airtable().await).await })*
        }
    };
}

conformance!(
    crud_roundtrip,
    ids_are_validated_before_any_request,
    list_filters_selects_and_caps,
    link_contains_matches_primary_values,
    upsert_is_idempotent,
    concurrent_upserts_of_one_key_leave_one_record,
    batches_are_split_by_ten,
    lists_page_through_everything,
    errors_are_typed_alike,
    empty_values_read_as_absent,
    tricky_strings_round_trip_and_match,
);
