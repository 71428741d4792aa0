//! `coach-worker sign`: print the headers (and a curl line) of a signed request, to try the API by
//! hand.

use std::path::PathBuf;

use coach_worker::webhook::{Scheme, Secret, signature};

#[derive(clap::Args)]
pub struct SignArgs {
    /// The webhook secret (`whsec_…` for the standard scheme, any text for the Make scheme).
    #[arg(long, env = "COACH_SIGN_SECRET", hide_env_values = true)]
    secret: String,
    /// File with the exact body to send (`-` for standard input).
    #[arg(long)]
    body: PathBuf,
    /// Signature scheme.
    #[arg(long, value_enum, default_value = "standard")]
    scheme: Scheme,
    /// Delivery id (default: a new random one).
    #[arg(long)]
    id: Option<String>,
    /// Unix timestamp to sign with (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// URL for the printed curl line.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/hooks/r1")]
    url: String,
    /// Print the headers as JSON instead.
    #[arg(long)]
    json: bool,
}

/// Prints the signed headers and a curl line; returns the exit code.
pub fn run(args: SignArgs) -> i32 {
    let secret = match Secret::parse(&args.secret) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --secret: {e}");
            return 2;
        }
    };
    let body = if args.body.as_os_str() == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            eprintln!("error: cannot read standard input: {e}");
            return 2;
        }
        buf
    } else {
        match std::fs::read(&args.body) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", args.body.display());
                return 2;
            }
        }
    };
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let id = args
        .id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let headers: Vec<(&str, String)> = match args.scheme {
        Scheme::Standard => match signature::sign_standard(&secret, &id, timestamp, &body) {
            Ok(sig) => vec![
                ("webhook-id", id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", sig),
            ],
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        Scheme::Make => vec![
            ("X-Coach-Delivery", id),
            ("X-Coach-Timestamp", timestamp.to_string()),
            (
                "X-Coach-Signature",
                signature::sign_make(&secret, timestamp, &body),
            ),
        ],
    };
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        println!("{}", serde_json::Value::Object(map));
        return 0;
    }
    for (name, value) in &headers {
        println!("{name}: {value}");
    }
    let mut curl = format!(
        "curl -sS -X POST '{}' -H 'Content-Type: application/json'",
        args.url
    );
    for (name, value) in &headers {
        curl.push_str(&format!(" -H '{name}: {value}'"));
    }
    let body_arg = if args.body.as_os_str() == "-" {
        "@-".to_string()
    } else {
        format!("@{}", args.body.display())
    };
    curl.push_str(&format!(" --data-binary '{body_arg}'"));
    println!();
    println!("{curl}");
    0
}
