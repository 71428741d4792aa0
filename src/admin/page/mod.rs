//! The server-rendered admin page at `/admin`: failed and recent runs with filters, a run's detail
//! (error, attempts, Gate-1 report as a table, coaching card, talk share, output, redacted
//! delivery), a replay button per run and a replay-all-matching button with a confirmation step.
//! Plain HTML forms; no JavaScript.
//!
//! Layout. This module holds the routes, sessions and CSRF; [`render`] the templates, which take
//! plain data and know nothing of actix; [`card`], [`gate1`] and [`talk`] the coaching card's
//! markdown, the Gate-1 table and the talk-share chart. A finished run keeps its output, report,
//! card and metrics on its Run record, which the detail page reads from the store when it has one.
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
//! Escaping. The pages are maud templates (see [`render`]): every interpolated value is escaped by
//! the template itself, so there is no escape call to forget; prepared HTML needs an explicit
//! `PreEscaped`, used only for the fixed stylesheet and the filtered card markdown ([`card`]). The
//! pages are also served with a `Content-Security-Policy` that allows no script at all (inline
//! styles only), so even a value that slipped through could not run.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use hmac::{Hmac, KeyInit, Mac};
use maud::Markup;
use serde_json::{Value, json};
use sha2::Sha256;

use super::api::{self, BulkReplay, FilterSpec, StatusList};
use super::auth::{AdminAuth, Sessions};
use super::replay::{self, Outcome};
use super::view;
use crate::http::AppState;
use crate::http::Routes;
use crate::journal::{Job, JobFilter, JobStatus, now_ms};
use coach_store::Store;
use render::RunHead;

mod card;
mod gate1;
mod render;
mod talk;

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
    /// Where a finished run's Run record is read from (none in tests that wire the page alone).
    store: Option<Store>,
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
    routes_with_store(token, cookie_secure, None)
}

/// The `/admin` page routes, reading finished runs' Run records (output, Gate-1 report, card and
/// metrics) from `store`.
pub fn routes_with_store(token: String, cookie_secure: bool, store: Option<Store>) -> Routes {
    let key: [u8; 32] = rand::random();
    let keys = web::Data::new(PageKeys {
        auth: AdminAuth::new(&token),
        // HMAC takes keys of any length, so this never fails.
        mac: <HmacSha256 as KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
        secure: cookie_secure,
        sessions: Sessions::default(),
        login_limit: crate::http::limit::RateLimiter::new(5, 1.0 / 12.0),
        store,
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

/// An HTML answer with the page's security headers.
fn html(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(render::layout(title, body).into_string())
}

/// A JSON value as the page shows it: a string without its quotes, null as nothing.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
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
    let mut resp = html(status, "Admin login", render::login(&csrf, message));
    let _ = resp.add_cookie(&keys.cookie(LOGIN_COOKIE, nonce, 600));
    resp
}

fn forbidden(message: &str) -> HttpResponse {
    html(
        StatusCode::FORBIDDEN,
        "Refused",
        render::notice(message, Some(("/admin", "Back"))),
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
    let runs: Vec<RunHead> = jobs.iter().map(|job| run_head(job, true)).collect();
    let list = render::List {
        status: &status,
        scenario: &scenario,
        page,
        pages: (total as usize).div_ceil(PAGE_SIZE).max(1),
        total,
        runs: &runs,
    };
    html(
        StatusCode::OK,
        "Runs",
        render::list(&keys.csrf(&nonce), &list),
    )
}

/// What the templates show of `job`; `with_error` adds its error, cut short, for the list.
fn run_head(job: &Job, with_error: bool) -> RunHead {
    let v = view::run_view(job);
    let error = if !with_error || v["error"].is_null() {
        String::new()
    } else {
        let message: String = text(&v["error"]["message"]).chars().take(200).collect();
        format!("[{}] {}", text(&v["error"]["code"]), message)
    };
    RunHead {
        id: job.id.clone(),
        scenario: job.scenario.clone(),
        kind: job.kind.clone(),
        status: job.status.as_str().to_owned(),
        attempts: job.attempts,
        created: text(&v["created_at"]),
        finished: text(&v["finished_at"]),
        error,
        replay_of: job.replay_of.clone(),
        replayable: job.status.is_finished(),
    }
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
                render::notice(&e.message, Some(("/admin", "Back"))),
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
    let mut v = view::run_detail(&job, &children, &attempts, delivery.as_ref());
    if let Some(store) = &keys.store {
        let mut fields = view::RECORD_FIELDS.to_vec();
        fields.push(view::RunField::Metrics);
        view::add_run_record_fields(&mut v, &job, store, &fields).await;
    }
    html(
        StatusCode::OK,
        &format!("Run {}", job.id),
        render::detail(&keys.csrf(&nonce), &run_head(&job, false), &v),
    )
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
            return html(e.status, "Run not found", render::notice(&e.message, None));
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
            render::not_replayed(&id, reason),
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
            return html(e.status, "Not replayed", render::notice(&e.message, None));
        }
    };
    let replayed = answer["replayed"].as_array().map_or(0, Vec::len);
    let skipped = answer["skipped"].as_array().map_or(0, Vec::len);
    let csrf = keys.csrf(&nonce);
    let body = if dry_run {
        render::confirm(
            &csrf,
            &render::Confirm {
                status: &status,
                scenario: &scenario,
                matched: answer["matched"].as_u64().unwrap_or(0),
                replayed,
                skipped,
            },
        )
    } else {
        render::replay_started(&csrf, replayed, skipped)
    };
    html(
        StatusCode::OK,
        if dry_run {
            "Replay all matching?"
        } else {
            "Replay started"
        },
        body,
    )
}
