//! The HTTP floor of webhook intake: an actix-web server configured as the worker's (its default
//! worker count, one per core; keep-alive HTTP/1.1) that answers every POST with a 202 and a JSON
//! body of the worker's answer's size, and does nothing else: no signature check, no parsing, no
//! journal. Loaded by `intake_load`, it shows what the same generator on the same cores gets from the
//! HTTP server and the kernel's loopback TCP alone, and what they cost per delivery, so the worker's
//! own cost can be read as the difference (`bench/run.sh` reports both).
//!
//! ```sh
//! cargo build --release --example http_floor --example intake_load
//! target/release/examples/intake_load --worker target/release/examples/http_floor --jobs paused --connections 64 --seconds 8 --runs 3
//! ```
//!
//! It listens on `COACH_LISTEN` and answers `GET /readyz`, as `intake_load` expects of the worker,
//! and ignores its arguments. It journals nothing, so `intake_load`'s read-back reports 0 journaled.

use actix_web::{App, HttpResponse, HttpServer, web};

/// Answers a delivery as the worker's queued answer does, with the same length of body.
async fn accept(body: web::Bytes) -> HttpResponse {
    let run_id = format!("run_{:032x}", body.len());
    HttpResponse::Accepted()
        .content_type("application/json")
        .body(format!(
            r#"{{"run_id":"{run_id}","status":"queued","status_url":"/v1/runs/{run_id}"}}"#
        ))
}

fn main() -> std::io::Result<()> {
    let listen = std::env::var("COACH_LISTEN").unwrap_or_else(|_| "127.0.0.1:8000".into());
    let listener = std::net::TcpListener::bind(&listen)?;
    actix_web::rt::System::new().block_on(
        HttpServer::new(|| {
            App::new()
                .route("/readyz", web::get().to(HttpResponse::Ok))
                .default_service(web::post().to(accept))
        })
        .disable_signals()
        .listen(listener)?
        .run(),
    )
}
