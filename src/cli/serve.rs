//! `coach-worker serve [--demo]`: start the worker (HTTP server, job runner, poller).

use secrecy::{ExposeSecret, SecretString};

use coach_worker::config::ServeConfig;
use coach_worker::webhook::Secret;

/// Validates the settings (demo mode fills in a secret and a token first) and runs the worker until
/// it is stopped; returns the exit code.
pub fn run(mut config: ServeConfig, demo: bool) -> i32 {
    coach_worker::telemetry::init_logging(&config.log_format);
    // Generated values are only printed once the whole configuration has passed: a run that stops
    // on a configuration error prints no secret nobody can use.
    let mut generated_secret = None;
    if demo
        && config
            .webhook_secrets
            .iter()
            .all(|s| s.expose_secret().trim().is_empty())
    {
        let secret = Secret::generate();
        config.webhook_secrets = vec![SecretString::from(secret.text())];
        generated_secret = Some(secret);
    }
    let mut generated_token = None;
    if demo && config.admin_token.is_none() {
        let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
        config.admin_token = Some(SecretString::from(token.as_str()));
        generated_token = Some(token);
    }
    let secrets = match config.validate() {
        Ok(secrets) => secrets,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return 2;
        }
    };
    if let Some(secret) = generated_secret {
        println!(
            "demo webhook secret (sign requests with it): {}",
            secret.text()
        );
    }
    if let Some(token) = generated_token {
        println!("demo admin token (for /admin and `coach-worker runs`): {token}");
        println!(
            "  export COACH_URL=http://{} COACH_ADMIN_TOKEN={token}",
            config.listen
        );
    }
    let rt = super::runtime();
    rt.block_on(async move {
        match coach_worker::serve::run(config, secrets, demo).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    })
}
