//! Signature schemes against the Standard Webhooks test vector and the `sign` command.

use crate::common;

use coach_worker::webhook::signature::{SignedHeaders, verify};
use coach_worker::webhook::{Scheme, Secret, SignatureError};
use serde_json::{Value, json};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/webhooks/standard-webhooks-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("shared data beside the checkout"))
        .unwrap()
}

#[test]
fn standard_webhooks_vector_verifies_and_negative_examples_are_refused() {
    let data = vectors();
    let v = &data["vectors"][0];
    let secret = Secret::parse(v["secret"].as_str().unwrap()).unwrap();
    let ts = v["timestamp"].as_i64().unwrap();
    let ts_text = ts.to_string();
    let id = v["msg_id"].as_str().unwrap();
    let payload = v["payload"].as_str().unwrap().as_bytes();
    let expected = v["expected_signature"].as_str().unwrap();

    assert_eq!(
        coach_worker::webhook::signature::sign_standard(&secret, id, ts, payload).unwrap(),
        expected
    );
    let headers = SignedHeaders {
        webhook_id: Some(id),
        webhook_timestamp: Some(&ts_text),
        webhook_signature: Some(expected),
        ..Default::default()
    };
    let ok = verify(std::slice::from_ref(&secret), &headers, payload, ts, 300).unwrap();
    assert_eq!(ok.scheme, Scheme::Standard);

    // Several signatures in one header: one valid is enough.
    let list = format!("v1,Zm9v {expected}");
    let several = SignedHeaders {
        webhook_signature: Some(&list),
        ..headers.clone()
    };
    assert!(verify(std::slice::from_ref(&secret), &several, payload, ts, 300).is_ok());

    let mut negatives: Vec<String> = vec![
        data["negative_examples"][0]["signature"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for s in data["negative_examples"][1]["signatures"]
        .as_array()
        .unwrap()
    {
        negatives.push(s.as_str().unwrap().to_owned());
    }
    for bad in &negatives {
        let h = SignedHeaders {
            webhook_signature: Some(bad),
            ..headers.clone()
        };
        let err = verify(std::slice::from_ref(&secret), &h, payload, ts, 300).unwrap_err();
        assert!(
            matches!(err, SignatureError::Invalid | SignatureError::Malformed(_)),
            "{bad}: {err:?}"
        );
    }
    // Tampered body, and a stale / future timestamp.
    assert_eq!(
        verify(
            std::slice::from_ref(&secret),
            &headers,
            b"{\"test\": 1}",
            ts,
            300
        ),
        Err(SignatureError::Invalid)
    );
    assert!(matches!(
        verify(
            std::slice::from_ref(&secret),
            &headers,
            payload,
            ts + 301,
            300
        ),
        Err(SignatureError::Stale { .. })
    ));
    assert!(matches!(
        verify(
            std::slice::from_ref(&secret),
            &headers,
            payload,
            ts - 301,
            300
        ),
        Err(SignatureError::Stale { .. })
    ));
}

#[tokio::test]
async fn the_sign_command_produces_headers_the_worker_accepts() {
    let app = common::spawn_app_with(accept_all(), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, br#"{"run_request_id":"recAAAAAAAAAAAAAA"}"#).unwrap();
    for (scheme, secret) in [("make", common::MAKE_SECRET), ("standard", common::SECRET)] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
            .args([
                "sign", "--secret", secret, "--scheme", scheme, "--json", "--body",
            ])
            .arg(&body_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let headers: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect();
        let resp = app
            .post_raw("r1", std::fs::read(&body_path).unwrap(), headers)
            .await;
        assert_eq!(resp.status(), 202, "{scheme}");
    }
    // The human-readable form carries a curl line with the same headers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coach-worker"))
        .args([
            "sign",
            "--secret",
            common::MAKE_SECRET,
            "--scheme",
            "make",
            "--body",
        ])
        .arg(&body_path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("X-Coach-Signature: v1="));
    assert!(text.contains("curl -sS -X POST"));
    let _ = json!({});
}

/// A registry whose `r1` hook accepts any body and queues a job nobody runs.
fn accept_all() -> coach_worker::startup::Registry {
    let mut r = coach_worker::startup::Registry::empty();
    struct H;
    #[async_trait::async_trait]
    impl coach_worker::http::Hook for H {
        fn validate(&self, b: &Value) -> Result<Value, coach_worker::error::ApiError> {
            Ok(b.clone())
        }
        fn job_kind(&self) -> Option<&str> {
            Some("none")
        }
    }
    r.hooks.insert("r1".into(), std::sync::Arc::new(H));
    r
}

/// A Standard Webhooks secret configured without its `whsec_` prefix (as the reference libraries
/// accept it) verifies Standard-signed deliveries; a worker with only Make secrets says which secret
/// is missing instead of blaming the body.
#[tokio::test]
async fn a_standard_secret_without_its_prefix_is_accepted() {
    let bare = common::SECRET.trim_start_matches("whsec_").to_owned();
    let app = common::spawn_app_with(accept_all(), move |c| {
        c.webhook_secrets = vec![bare.into()];
    })
    .await;
    let body = br#"{"run_request_id":"recAAAAAAAAAAAAAA"}"#.to_vec();
    let headers = common::standard_headers("bare-1", common::now(), &body);
    let resp = app.post_raw("r1", body.clone(), headers.clone()).await;
    assert_eq!(resp.status(), 202);

    let make_only = common::spawn_app_with(accept_all(), |c| {
        c.webhook_secrets = vec![common::MAKE_SECRET.into()];
    })
    .await;
    let resp = make_only.post_raw("r1", body, headers).await;
    assert_eq!(resp.status(), 401);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "SIGNATURE_INVALID");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("whsec_"),
        "{answer}"
    );
}

/// Signature work is bounded by the headers alone: a header stuffed with candidates is refused
/// before the body is read, and one with a handful (one of them right) is accepted.
#[tokio::test]
async fn signature_candidates_are_capped() {
    let app = common::spawn_app_with(accept_all(), |_| {}).await;
    let body = br#"{"run_request_id":"recAAAAAAAAAAAAAA"}"#.to_vec();
    let mut headers = common::standard_headers("cap-1", common::now(), &body);
    let good = headers[2].1.clone();
    let wrong = format!("v1,{}", "A".repeat(43) + "=");
    headers[2].1 = format!("{wrong} {wrong} {wrong} {wrong} {good}");
    assert_eq!(
        app.post_raw("r1", body.clone(), headers.clone())
            .await
            .status(),
        202
    );
    headers[0].1 = "cap-2".into();
    headers[2].1 = vec!["v1,"; 5000].join(" ");
    let resp = app.post_raw("r1", body, headers).await;
    assert_eq!(resp.status(), 401);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "SIGNATURE_MALFORMED");
}
