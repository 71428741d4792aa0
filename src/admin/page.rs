//! The server-rendered admin page at `/admin`: failed and recent runs with filters, a run's detail
//! (error, attempts, Gate-1 report, output, redacted delivery), a replay button per run and a
//! replay-all-matching button with a confirmation step. Plain HTML forms; no JavaScript.
//!
//! Sessions. Logging in posts the admin token once; the answer sets a session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` when `COACH_COOKIE_SECURE` is set) whose
//! value is `expiry.nonce.mac`, the MAC being HMAC-SHA256 under a key drawn at random when the worker
//! starts. A session lasts an hour. The worker also keeps the nonces of open sessions in memory
//! ([`Sessions`]): logging out removes the nonce, so a saved copy of the cookie stops working at once,
//! and a restart (new key, empty table) logs everyone out. Failed logins are limited per client
//! address (a burst of 5, then one every 12 seconds) and answered 429 past that.
//!
//! CSRF. Every form that changes something (login, logout, replay, replay-all, its confirmation) is a
//! POST carrying a token: HMAC of the session nonce (or, for the login form, of a nonce in a
//! short-lived pre-login cookie), checked in constant time. `SameSite=Strict` would already keep
//! other sites' forms from sending the cookie; the token does not rely on the browser for that. The
//! filter form is a GET that changes nothing, so it deliberately carries no token: a token in a URL
//! would end up in logs and `Referer` headers.
//!
//! Escaping. Every value shown goes through [`esc`] (text and attribute context alike: `& < > " '`),
//! and the pages are served with a `Content-Security-Policy` that allows no script at all, so even a
//! value that slipped through could not run.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::api::{self, BulkReplay, FilterSpec, StatusList};
use super::auth::{AdminAuth, Sessions};
use super::replay::{self, Outcome};
use super::view;
use crate::http::AppState;
use crate::http::Routes;
use crate::journal::{JobFilter, JobStatus, now_ms};

type HmacSha256 = Hmac<Sha256>;

const SESSION_COOKIE: &str = "coach_admin";
const LOGIN_COOKIE: &str = "coach_admin_login";
const SESSION_SECS: i64 = 3600;
const PAGE_SIZE: usize = 50;

/// What the page handlers share: the token check and the session key.
pub struct PageKeys {
    auth: AdminAuth,
    /// HMAC keyed with 32 random bytes drawn at start-up; cloned for each use.
    mac: HmacSha256,
    secure: bool,
    sessions: Sessions,
    login_limit: crate::http::limit::RateLimiter,
}

impl PageKeys {
    fn mac(&self, parts: &[&str]) -> Vec<u8> {
        let mut mac = self.new_mac();
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"|");
        }
        mac.finalize().into_bytes().to_vec()
    }

    fn new_mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    fn verify(&self, parts: &[&str], hex_mac: &str) -> bool {
        let Ok(given) = hex::decode(hex_mac) else {
            return false;
        };
        let mut mac = self.new_mac();
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"|");
        }
        mac.verify_slice(&given).is_ok()
    }

    /// The session nonce of a valid, unexpired session cookie.
    fn session(&self, req: &HttpRequest) -> Option<String> {
        let cookie = req.cookie(SESSION_COOKIE)?;
        let mut parts = cookie.value().splitn(3, '.');
        let (exp, nonce, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry: i64 = exp.parse().ok()?;
        let now = now_ms() / 1000;
        (expiry > now
            && self.verify(&["session", exp, nonce], mac)
            && self.sessions.is_live(nonce, now))
        .then(|| nonce.to_owned())
    }

    fn csrf(&self, nonce: &str) -> String {
        hex::encode(self.mac(&["csrf", nonce]))
    }

    fn cookie<'c>(&self, name: &'c str, value: String, max_age: i64) -> Cookie<'c> {
        Cookie::build(name, value)
            .path("/admin")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .max_age(CookieDuration::seconds(max_age))
            .finish()
    }
}

/// The `/admin` page routes. Register them only when an admin token is configured.
pub fn routes(token: String, cookie_secure: bool) -> Routes {
    let key: [u8; 32] = rand::random();
    let keys = web::Data::new(PageKeys {
        auth: AdminAuth::new(&token),
        // HMAC takes keys of any length, so this never fails.
        mac: <HmacSha256 as KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
        secure: cookie_secure,
        sessions: Sessions::default(),
        login_limit: crate::http::limit::RateLimiter::new(5, 1.0 / 12.0),
    });
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::scope("/admin")
                .app_data(keys.clone())
                .route("", web::get().to(index))
                .route("/", web::get().to(index))
                .route("/login", web::post().to(login))
                .route("/logout", web::post().to(logout))
                .route("/runs/{run_id}", web::get().to(detail))
                .route("/runs/{run_id}/replay", web::post().to(replay_one))
                .route("/replay/confirm", web::post().to(confirm_bulk))
                .route("/replay", web::post().to(bulk)),
        );
    })
}

/// Escapes text for HTML text and attribute values alike.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · coach-worker admin</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}pre{{background:#f6f6f6;padding:.5rem;white-space:pre-wrap}}\
             .failed{{color:#a00}}.succeeded{{color:#070}}form.inline{{display:inline}}</style></head>\
             <body><h1>{t}</h1>{body}</body></html>",
            t = esc(title)
        ))
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

fn form_fields(bytes: &[u8]) -> HashMap<String, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| web::Query::<HashMap<String, String>>::from_query(s).ok())
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

fn keys_of(req: &HttpRequest) -> Option<&PageKeys> {
    req.app_data::<web::Data<PageKeys>>().map(|k| k.get_ref())
}

fn login_page(keys: &PageKeys, status: StatusCode, message: &str) -> HttpResponse {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let csrf = hex::encode(keys.mac(&["login", &nonce]));
    let note = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"failed\">{}</p>", esc(message))
    };
    let mut resp = html(
        status,
        "Admin login",
        &format!(
            "{note}<form method=\"post\" action=\"/admin/login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
             <button type=\"submit\">Log in</button></form>",
            esc(&csrf)
        ),
    );
    let _ = resp.add_cookie(&keys.cookie(LOGIN_COOKIE, nonce, 600));
    resp
}

fn forbidden(message: &str) -> HttpResponse {
    html(
        StatusCode::FORBIDDEN,
        "Refused",
        &format!(
            "<p class=\"failed\">{}</p><p><a href=\"/admin\">Back</a></p>",
            esc(message)
        ),
    )
}

/// A POST's session and CSRF check: the session nonce, or the page to answer with.
fn check_post(
    req: &HttpRequest,
    fields: &HashMap<String, String>,
) -> Result<String, Box<HttpResponse>> {
    let Some(keys) = keys_of(req) else {
        return Err(Box::new(forbidden("the admin page is not configured")));
    };
    let Some(nonce) = keys.session(req) else {
        return Err(Box::new(login_page(
            keys,
            StatusCode::UNAUTHORIZED,
            "Your session has expired; log in again.",
        )));
    };
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !keys.verify(&["csrf", &nonce], csrf) {
        return Err(Box::new(forbidden(
            "This form was refused: its CSRF token is missing or wrong. Reload the page and try again.",
        )));
    }
    Ok(nonce)
}

async fn login(req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let Some(keys) = keys_of(&req) else {
        return forbidden("the admin page is not configured");
    };
    let fields = form_fields(&bytes);
    let nonce = req
        .cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or("");
    if nonce.is_empty() || !keys.verify(&["login", &nonce], csrf) {
        return forbidden(
            "This form was refused: its CSRF token is missing or wrong. Reload the page and try again.",
        );
    }
    // The right token is always let in; only wrong ones spend the per-client budget. Behind a
    // proxy every client shares one address, and charging every attempt would let anyone lock the
    // admin out with one wrong login every few seconds.
    let client = crate::http::limit::client_of(&req);
    let token = fields.get("token").map(String::as_str).unwrap_or("");
    if !keys.auth.matches(token) {
        if let Err(wait) = keys.login_limit.check(client) {
            let mut page = login_page(
                keys,
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many login attempts; wait {wait} seconds and try again."),
            );
            if let Ok(value) = header::HeaderValue::from_str(&wait.to_string()) {
                page.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return page;
        }
        return login_page(
            keys,
            StatusCode::UNAUTHORIZED,
            "That is not the admin token.",
        );
    }
    let session = hex::encode(rand::random::<[u8; 16]>());
    let now = now_ms() / 1000;
    keys.sessions.open(&session, now + SESSION_SECS, now);
    let exp = (now + SESSION_SECS).to_string();
    let mac = hex::encode(keys.mac(&["session", &exp, &session]));
    let mut resp = see_other("/admin");
    let _ = resp.add_cookie(&keys.cookie(
        SESSION_COOKIE,
        format!("{exp}.{session}.{mac}"),
        SESSION_SECS,
    ));
    let _ = resp.add_removal_cookie(&keys.cookie(LOGIN_COOKIE, String::new(), 0));
    resp
}

async fn logout(req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let fields = form_fields(&bytes);
    let nonce = match check_post(&req, &fields) {
        Ok(nonce) => nonce,
        Err(page) => return *page,
    };
    let mut resp = see_other("/admin");
    if let Some(keys) = keys_of(&req) {
        keys.sessions.close(&nonce);
        let _ = resp.add_removal_cookie(&keys.cookie(SESSION_COOKIE, String::new(), 0));
    }
    resp
}

fn csrf_input(keys: &PageKeys, nonce: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&keys.csrf(nonce))
    )
}

fn replay_button(keys: &PageKeys, nonce: &str, run_id: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/admin/runs/{id}/replay\">{csrf}<button type=\"submit\">Replay</button></form>",
        id = esc(run_id),
        csrf = csrf_input(keys, nonce)
    )
}

fn header_bar(keys: &PageKeys, nonce: &str) -> String {
    format!(
        "<p><a href=\"/admin\">Recent runs</a> · <a href=\"/admin?status=failed\">Failed runs</a> · \
         <form class=\"inline\" method=\"post\" action=\"/admin/logout\">{}<button type=\"submit\">Log out</button></form></p>",
        csrf_input(keys, nonce)
    )
}

/// The list filter a page names. The list opens on recent runs of every status (`default` is "",
/// "any"), with "Failed runs" one click away in the header; a replay-all form without a status
/// replays failed runs only (`default` "failed"), as the API does.
fn page_filter(fields: &HashMap<String, String>, default: &str) -> (String, String) {
    let status = fields
        .get("status")
        .cloned()
        .unwrap_or_else(|| default.into());
    let scenario = fields.get("scenario").cloned().unwrap_or_default();
    (status, scenario)
}

fn filter_spec(status: &str, scenario: &str) -> FilterSpec {
    FilterSpec {
        status: Some(StatusList::Text(status.to_owned())),
        scenario: Some(scenario.to_owned()),
        since: None,
        until: None,
    }
}

fn filter_hidden(status: &str, scenario: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"status\" value=\"{}\"><input type=\"hidden\" name=\"scenario\" value=\"{}\">",
        esc(status),
        esc(scenario)
    )
}

async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(keys) = keys_of(&req) else {
        return forbidden("the admin page is not configured");
    };
    let Some(nonce) = keys.session(&req) else {
        return login_page(keys, StatusCode::OK, "");
    };
    let fields = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let (status, scenario) = page_filter(&fields, "");
    let page: usize = fields
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let filter: JobFilter = match filter_spec(&status, &scenario).to_filter() {
        Ok(f) => f,
        Err(e) => return forbidden(&e.message),
    };
    let (total, jobs) = match (
        state.journal.count_jobs(filter.clone()).await,
        state
            .journal
            .list_jobs(filter, PAGE_SIZE, (page - 1) * PAGE_SIZE)
            .await,
    ) {
        (Ok(t), Ok(j)) => (t, j),
        _ => return forbidden("the journal is unavailable; retry shortly"),
    };
    let mut rows = String::new();
    for job in &jobs {
        let v = view::run_view(job);
        let error = if v["error"].is_null() {
            String::new()
        } else {
            let message: String = text(&v["error"]["message"]).chars().take(200).collect();
            format!("[{}] {}", text(&v["error"]["code"]), message)
        };
        let action = if job.status.is_finished() {
            replay_button(keys, &nonce, &job.id)
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"/admin/runs/{id}\">{id}</a></td><td>{scenario}</td><td>{kind}</td>\
             <td class=\"{status}\">{status}</td><td>{attempts}</td><td>{created}</td><td>{error}</td><td>{action}</td></tr>",
            id = esc(&job.id),
            scenario = esc(&job.scenario),
            kind = esc(&job.kind),
            status = esc(job.status.as_str()),
            attempts = job.attempts,
            created = esc(&text(&v["created_at"])),
            error = esc(&error),
        ));
    }
    let options: String = [
        "failed",
        "",
        "succeeded",
        "cancelled",
        "queued,retry_scheduled,running",
    ]
    .iter()
    .map(|s| {
        let label = if s.is_empty() { "any" } else { s };
        let selected = if *s == status { " selected" } else { "" };
        format!(
            "<option value=\"{v}\"{selected}>{l}</option>",
            v = esc(s),
            l = esc(label)
        )
    })
    .collect();
    let pages = (total as usize).div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize| {
        format!(
            "/admin?status={}&amp;scenario={}&amp;page={p}",
            esc(&url_encode(&status)),
            esc(&url_encode(&scenario))
        )
    };
    let mut nav = format!("page {page} of {pages} ({total} runs)");
    if page > 1 {
        nav = format!("<a href=\"{}\">previous</a> · {nav}", link(page - 1));
    }
    if page < pages {
        nav = format!("{nav} · <a href=\"{}\">next</a>", link(page + 1));
    }
    let bulk = if total > 0 {
        format!(
            "<form method=\"post\" action=\"/admin/replay/confirm\">{csrf}{hidden}\
             <button type=\"submit\">{label}</button></form>",
            // The confirm page that follows shows the exact count of what would be replayed.
            label = if status.is_empty() {
                "Replay the failed runs among these…".to_owned()
            } else {
                format!("Replay all {total} matching…")
            },
            csrf = csrf_input(keys, &nonce),
            // An empty status replays failed runs only (see `replay_confirm`), so it is sent as such.
            hidden = filter_hidden(
                if status.is_empty() { "failed" } else { &status },
                &scenario
            )
        )
    } else {
        String::new()
    };
    let body = format!(
        "{bar}<form method=\"get\" action=\"/admin\"><label>Status <select name=\"status\">{options}</select></label> \
         <label>Scenario <input name=\"scenario\" value=\"{scenario}\" size=\"6\"></label> <button type=\"submit\">Filter</button></form>\
         {bulk}<p>{nav}</p><table><tr><th>Run</th><th>Scenario</th><th>Kind</th><th>Status</th><th>Attempts</th><th>Created</th>\
         <th>Error</th><th></th></tr>{rows}</table>",
        bar = header_bar(keys, &nonce),
        scenario = esc(&scenario),
    );
    html(StatusCode::OK, "Runs", &body)
}

/// Percent-encodes a query value (only what the filters can hold needs it, but do it all).
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn detail(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(keys) = keys_of(&req) else {
        return forbidden("the admin page is not configured");
    };
    let Some(nonce) = keys.session(&req) else {
        return login_page(keys, StatusCode::OK, "");
    };
    let id = path.into_inner();
    let job = match api::load(&state, &id).await {
        Ok(job) => job,
        Err(e) => {
            return html(
                e.status,
                "Run not found",
                &format!(
                    "<p>{}</p><p><a href=\"/admin\">Back</a></p>",
                    esc(&e.message)
                ),
            );
        }
    };
    let children = state
        .journal
        .child_jobs(id.clone())
        .await
        .unwrap_or_default();
    let attempts = state
        .journal
        .job_attempts(id.clone())
        .await
        .unwrap_or_default();
    let delivery = state
        .journal
        .delivery_for_job(id.clone())
        .await
        .ok()
        .flatten();
    let v = view::run_detail(&job, &children, &attempts, delivery.as_ref());
    let mut body = header_bar(keys, &nonce);
    body.push_str(&format!(
        "<table><tr><th>Run</th><td>{id}</td></tr><tr><th>Scenario / kind</th><td>{sc} / {kind}</td></tr>\
         <tr><th>Status</th><td class=\"{st}\">{st}</td></tr><tr><th>Attempts</th><td>{att}</td></tr>\
         <tr><th>Created</th><td>{cr}</td></tr><tr><th>Finished</th><td>{fi}</td></tr>",
        id = esc(&job.id),
        sc = esc(&job.scenario),
        kind = esc(&job.kind),
        st = esc(job.status.as_str()),
        att = job.attempts,
        cr = esc(&text(&v["created_at"])),
        fi = esc(&text(&v["finished_at"])),
    ));
    if let Some(old) = &job.replay_of {
        body.push_str(&format!(
            "<tr><th>Replay of</th><td><a href=\"/admin/runs/{o}\">{o}</a></td></tr>",
            o = esc(old)
        ));
    }
    body.push_str("</table>");
    if job.status.is_finished() {
        body.push_str(&format!("<p>{}</p>", replay_button(keys, &nonce, &job.id)));
    }
    for (title, value) in [
        ("Error", &v["error"]),
        ("Gate-1 report", &v["gate1_report"]),
        ("Output", &v["output"]),
        ("Result", &v["result"]),
        ("Delivery (secrets redacted)", &v["delivery"]),
        ("Attempts", &v["attempts_detail"]),
        ("Follow-ups", &v["follow_ups"]),
    ] {
        let empty = value.is_null() || value.as_array().is_some_and(|a| a.is_empty());
        if !empty {
            body.push_str(&format!(
                "<h2>{}</h2><pre>{}</pre>",
                esc(title),
                esc(&pretty(value))
            ));
        }
    }
    html(StatusCode::OK, &format!("Run {}", job.id), &body)
}

async fn replay_one(
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let fields = form_fields(&bytes);
    if let Err(page) = check_post(&req, &fields) {
        return *page;
    }
    let Some(keys) = keys_of(&req) else {
        return forbidden("the admin page is not configured");
    };
    let id = path.into_inner();
    let job = match api::load(&state, &id).await {
        Ok(job) => job,
        Err(e) => {
            return html(
                e.status,
                "Run not found",
                &format!("<p>{}</p>", esc(&e.message)),
            );
        }
    };
    let outcome = match replay::replay_one(&state.journal, &job, false, false).await {
        Ok(o) => o,
        Err(_) => return forbidden("the journal is unavailable; retry shortly"),
    };
    let (count, details, to) = match &outcome {
        Outcome::Replayed {
            new_run_id: Some(new_id),
        } => (
            1,
            json!({"new_run_id": new_id}),
            format!("/admin/runs/{new_id}"),
        ),
        Outcome::Skipped { reason } => (0, json!({"skipped": reason}), String::new()),
        Outcome::Replayed { new_run_id: None } => (0, json!({}), String::new()),
    };
    let mut details = details;
    details["via"] = json!("page");
    details["dry_run"] = json!(false);
    details["bypass_cache"] = json!(false);
    if api::write_audit(
        &state,
        &keys.auth,
        "replay",
        Some(id.clone()),
        count,
        details,
    )
    .await
    .is_err()
    {
        return forbidden("the journal is unavailable; retry shortly");
    }
    match outcome {
        Outcome::Replayed {
            new_run_id: Some(_),
        } => {
            state.runner.wake();
            see_other(&to)
        }
        Outcome::Skipped { reason } => html(
            StatusCode::CONFLICT,
            "Not replayed",
            &format!(
                "<p>Run {} was not replayed: {}.</p><p><a href=\"/admin/runs/{}\">Back to the run</a></p>",
                esc(&id),
                esc(reason),
                esc(&id)
            ),
        ),
        Outcome::Replayed { new_run_id: None } => see_other("/admin"),
    }
}

async fn confirm_bulk(
    req: HttpRequest,
    bytes: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    run_bulk_page(req, bytes, state, true).await
}

async fn bulk(req: HttpRequest, bytes: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    run_bulk_page(req, bytes, state, false).await
}

/// The confirmation step (a dry run, audited as one) and the replay itself.
async fn run_bulk_page(
    req: HttpRequest,
    bytes: web::Bytes,
    state: web::Data<AppState>,
    dry_run: bool,
) -> HttpResponse {
    let fields = form_fields(&bytes);
    let nonce = match check_post(&req, &fields) {
        Ok(n) => n,
        Err(page) => return *page,
    };
    let Some(keys) = keys_of(&req) else {
        return forbidden("the admin page is not configured");
    };
    let (status, scenario) = page_filter(&fields, "failed");
    if status
        .split(',')
        .any(|s| JobStatus::parse(s.trim()).is_some_and(|s| !s.is_finished()))
    {
        return forbidden(
            "only finished runs can be replayed; filter on failed, succeeded or cancelled runs",
        );
    }
    let request = BulkReplay {
        run_ids: None,
        filter: Some(filter_spec(&status, &scenario)),
        dry_run,
        bypass_cache: false,
        include_replayed: false,
    };
    let answer = match api::run_bulk(&state, &keys.auth, request).await {
        Ok(a) => a,
        Err(e) => {
            return html(
                e.status,
                "Not replayed",
                &format!("<p>{}</p>", esc(&e.message)),
            );
        }
    };
    let replayed = answer["replayed"].as_array().map_or(0, Vec::len);
    let skipped = answer["skipped"].as_array().map_or(0, Vec::len);
    let what = if scenario.is_empty() {
        format!("status “{status}”")
    } else {
        format!("status “{status}” and scenario “{scenario}”")
    };
    let body = if dry_run {
        format!(
            "{bar}<p>{matched} runs match {what}: {replayed} would be replayed, {skipped} skipped \
             (already replayed, or not finished).</p>\
             <form method=\"post\" action=\"/admin/replay\">{csrf}{hidden}\
             <button type=\"submit\">Yes, replay {replayed} runs</button></form> <p><a href=\"/admin\">Cancel</a></p>",
            bar = header_bar(keys, &nonce),
            matched = answer["matched"],
            what = esc(&what),
            csrf = csrf_input(keys, &nonce),
            hidden = filter_hidden(&status, &scenario),
        )
    } else {
        format!(
            "{bar}<p>Replayed {replayed} runs; {skipped} skipped.</p><p><a href=\"/admin?status=\">See recent runs</a></p>",
            bar = header_bar(keys, &nonce),
        )
    };
    html(
        StatusCode::OK,
        if dry_run {
            "Replay all matching?"
        } else {
            "Replay started"
        },
        &body,
    )
}
