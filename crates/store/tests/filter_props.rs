//! Property: for any string `s`, listing with `Key = s` on the fake Airtable (which parses and evaluates
//! the compiled formula) returns exactly the records whose `Key` equals `s` — so no input can break out
//! of its string literal. Also run on SQLite with the same inputs.

use coach_store::fake::FakeAirtable;
use coach_store::tables::RUN_REQUESTS;
use coach_store::{Fields, Filter, ListQuery, Store};
use proptest::prelude::*;
use serde_json::json;

/// The test harness installs the TLS crypto provider, as the worker's `main` does (the crate
/// never installs one itself).
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

const NAMED: &[&str] = &[
    r#"x", ""=""#,
    r"\' OR 1",
    r#"\"#,
    r#"\\""#,
    r#"" & "x"#,
    r#"") OR TRUE() OR (""#,
    "}",
    "{Key}",
    "a\nb",
    "\r\n\t",
    "日本語 ✓ émoji 🎉",
    "'",
    "''",
    " ",
];

fn fields(key: &str) -> Fields {
    let mut f = Fields::new();
    f.insert("Key".into(), json!(key));
    f
}

// Fields drop in order: the server and stores before the runtime they run on.
struct Env {
    fake: FakeAirtable,
    airtable: Store,
    sqlite: Store,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

fn env() -> Env {
    tls();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeAirtable::builder().rate_limit(None).start());
    let mut cfg = fake.config();
    cfg.rate_per_sec = 10_000.0;
    let airtable = rt.block_on(async { Store::airtable(cfg) }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::sqlite(&dir.path().join("p.db")).unwrap();
    Env {
        fake,
        airtable,
        sqlite,
        _dir: dir,
        rt,
    }
}

/// Stores `s`, near misses of `s` and the named injection strings, then filters on `Key = s`.
fn check(env: &Env, store: &Store, s: &str) -> Result<(), TestCaseError> {
    let mut keys: Vec<String> = vec![
        s.to_string(),
        format!("{s}x"),
        format!("x{s}"),
        format!("{s}\\"),
        s.to_uppercase(),
    ];
    keys.extend(NAMED.iter().map(|n| n.to_string()));
    env.rt.block_on(async {
        // Clean slate for this case.
        let old = store.list(RUN_REQUESTS, &ListQuery::new()).await.unwrap();
        store
            .delete(RUN_REQUESTS, old.into_iter().map(|r| r.id).collect())
            .await
            .unwrap();
        store
            .create(
                RUN_REQUESTS,
                keys.iter()
                    .filter(|k| !k.is_empty())
                    .map(|k| fields(k))
                    .collect(),
            )
            .await
            .unwrap();
        let found = store
            .list(RUN_REQUESTS, &ListQuery::new().filter(Filter::eq("Key", s)))
            .await
            .map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
        let expected = keys
            .iter()
            .filter(|k| k.as_str() == s && !s.is_empty())
            .count();
        if s.is_empty() {
            // `Key = ""` means blank; every stored record has a key.
            prop_assert_eq!(found.len(), 0);
        } else {
            prop_assert_eq!(found.len(), expected, "filter {:?} matched {:?}", s, found);
            prop_assert!(found.iter().all(|r| r.text("Key") == Some(s)));
        }
        // The negation returns the complement.
        let not = store
            .list(
                RUN_REQUESTS,
                &ListQuery::new().filter(Filter::not(Filter::eq("Key", s))),
            )
            .await
            .unwrap();
        let total = keys.iter().filter(|k| !k.is_empty()).count();
        prop_assert_eq!(not.len() + found.len(), total);
        Ok(())
    })
}

fn strings() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"'\\\\{}(),=&a-z \n]{0,12}",
        prop::sample::select(NAMED).prop_map(str::to_string),
    ]
}

#[test]
fn named_injection_strings_match_exactly() {
    let env = env();
    for s in NAMED {
        check(&env, &env.airtable, s).unwrap();
        check(&env, &env.sqlite, s).unwrap();
    }
    assert!(env.fake.calls() > 0, "the fake evaluated the formulas");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn equality_filter_matches_exactly_on_the_fake(s in strings()) {
        thread_local!(static ENV: Env = env());
        ENV.with(|env| check(env, &env.airtable, &s))?;
    }

    #[test]
    fn equality_filter_matches_exactly_on_sqlite(s in strings().prop_filter("no NUL", |s| !s.contains('\0'))) {
        thread_local!(static ENV: Env = env());
        ENV.with(|env| check(env, &env.sqlite, &s))?;
    }
}
