//! One harness for the suites that need the real scenarios behind a real worker: a
//! [`World`] is the worker on a random port (as [`TestApp`]), the [`Deps`] it runs on (so a test can
//! seed and read the store directly) and, when chosen, the Airtable and OpenAI fakes.
//!
//! The variations the suites need are picked on a [`WorldBuilder`]: the store (SQLite in the data
//! dir, or the Airtable fake with or without its 5/s rate limit), the provider (the rules analyzer
//! or the OpenAI fake, with a hook on its client settings), an admin token, a hook on the
//! [`ServeConfig`], the poll interval, and the wiring: `app::registry` (plus the admin API
//! when a token is set) by default, or exactly what `serve` builds (`serve::worker_registry`).
//!
//! A world can be prepared without its worker ([`WorldBuilder::prepare`], then [`World::launch`]):
//! jobs put in the journal before the launch are due when the runner starts, so it takes them at
//! once instead of at its next idle wake-up.
//!
//! Suite-specific helpers stay in their files as further `impl World` blocks (an inherent impl may
//! live anywhere in the crate that defines the type, and the test binary is that crate).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use coach_coaching::fake::FakeOpenAi;
use coach_coaching::{Analyzer, OpenAiClient, OpenAiConfig};
use coach_store::fake::FakeAirtable;
use coach_store::tables::{self, TableRecord, TranscriptFormat};
use coach_store::{Fields, ListQuery, Record, Store};
use coach_worker::config::ServeConfig;
use coach_worker::journal::{JobFilter, Journal};
use coach_worker::scenarios::Deps;
use coach_worker::startup::{Application, Registry};
use coach_worker::webhook::Secret;
use serde_json::{Value, json};

use super::{TestApp, client, tap_runner, test_config};

/// A sample transcript shipped in `samples/transcripts/`, with the format and meeting date it is
/// seeded with.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub file: &'static str,
    pub format: TranscriptFormat,
    pub date: &'static str,
}

/// The six samples: three baseline meetings (2026), then three follow-ups (dated far ahead, so they
/// always come after the baseline and any experiment).
pub const SAMPLES: [Sample; 6] = [
    Sample {
        file: "baseline-1-sprint-planning.vtt",
        format: TranscriptFormat::Vtt,
        date: "2026-10-01",
    },
    Sample {
        file: "baseline-2-incident-review.srt",
        format: TranscriptFormat::Srt,
        date: "2026-10-08",
    },
    Sample {
        file: "baseline-3-roadmap-sync.md",
        format: TranscriptFormat::Text,
        date: "2026-10-15",
    },
    Sample {
        file: "followup-1-design-review.json",
        format: TranscriptFormat::Json,
        date: "2099-01-01",
    },
    Sample {
        file: "followup-2-one-on-one.txt",
        format: TranscriptFormat::Text,
        date: "2099-01-02",
    },
    Sample {
        file: "followup-3-team-retro.vtt",
        format: TranscriptFormat::Vtt,
        date: "2099-01-03",
    },
];

/// The three baseline samples.
pub fn baselines() -> &'static [Sample] {
    &SAMPLES[..3]
}

/// The three follow-up samples.
pub fn follow_ups() -> &'static [Sample] {
    &SAMPLES[3..]
}

/// The text of a sample transcript.
pub fn sample_text(file: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/samples/transcripts/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The coachee every seed creates; the samples are written with her as the coachee speaker.
pub const COACHEE: &str = "Maya Chen";

enum AirtableChoice {
    /// The fake as shipped: 5 requests/s, then 429.
    Limited,
    /// No limit on the fake and a client paced at 500/s: for suites where pacing only costs time.
    Unlimited,
}

/// How the worker's routes and jobs are wired.
enum Wiring {
    /// `app::registry` with the builder's poll interval, plus the admin API (not the page)
    /// when a token is set.
    Scenarios,
    /// `serve::worker_registry`, as the real `serve` builds it (poll interval from the config,
    /// admin API and page when a token is set).
    Serve,
}

type ServeTweak = Box<dyn FnOnce(&mut ServeConfig) + Send>;
type OpenAiTweak = Box<dyn FnOnce(&mut OpenAiConfig) + Send>;

/// Picks the world's variations; [`World::builder`] starts one with SQLite and the rules analyzer.
pub struct WorldBuilder {
    airtable: Option<AirtableChoice>,
    openai: Option<Vec<OpenAiTweak>>,
    serve: Vec<ServeTweak>,
    admin_token: Option<String>,
    poll: Duration,
    wiring: Wiring,
}

impl WorldBuilder {
    /// The Airtable fake as the store, with its 5 requests/s limit.
    pub fn airtable(mut self) -> Self {
        self.airtable = Some(AirtableChoice::Limited);
        self
    }

    /// The Airtable fake as the store, without a rate limit, and the client paced at 500/s.
    pub fn airtable_unlimited(mut self) -> Self {
        self.airtable = Some(AirtableChoice::Unlimited);
        self
    }

    /// The OpenAI fake as the provider, with the fake's own client settings.
    pub fn openai(self) -> Self {
        self.openai_with(|_| {})
    }

    /// The OpenAI fake as the provider; `tweak` adjusts the client settings (timeouts, backoffs,
    /// key) before the client is built. Tweaks given twice are applied in order.
    pub fn openai_with(mut self, tweak: impl FnOnce(&mut OpenAiConfig) + Send + 'static) -> Self {
        self.openai
            .get_or_insert_with(Vec::new)
            .push(Box::new(tweak));
        self
    }

    /// Adjusts the worker's settings after the test defaults (`test_config`), before validation.
    /// Tweaks given twice are applied in order.
    pub fn serve(mut self, tweak: impl FnOnce(&mut ServeConfig) + Send + 'static) -> Self {
        self.serve.push(Box::new(tweak));
        self
    }

    /// Sets the admin token (and so enables the admin routes).
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// The Airtable poller's interval under the default wiring (`ZERO`, the default, turns it off).
    pub fn poll(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// Wires the worker exactly as `serve` does (`serve::worker_registry`).
    pub fn wired_as_serve(mut self) -> Self {
        self.wiring = Wiring::Serve;
        self
    }

    /// Starts the worker.
    pub async fn start(self) -> World {
        let mut w = self.prepare().await;
        w.launch().await;
        w
    }

    /// The fakes, the store and the journal, without the worker (see [`World::launch`]).
    pub async fn prepare(self) -> World {
        let openai = match self.openai {
            Some(tweaks) => {
                let fake = FakeOpenAi::start().await;
                let mut config = fake.config();
                for tweak in tweaks {
                    tweak(&mut config);
                }
                Some((fake, config))
            }
            None => None,
        };
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path().to_path_buf());
        config.admin_token = self.admin_token.map(Into::into);
        for tweak in self.serve {
            tweak(&mut config);
        }
        let secrets = config.validate().unwrap();
        // A Postgres URL in the settings (`serve(|c| c.database_url = …)`) puts the journal there, as
        // `serve` does.
        let journal = match config.database_url.as_ref() {
            Some(url) => Journal::connect(secrecy::ExposeSecret::expose_secret(url))
                .await
                .unwrap(),
            None => Journal::open(&config.journal_path()).unwrap(),
        };
        let (store, airtable) = match self.airtable {
            None => (Store::sqlite(&config.store_path()).unwrap(), None),
            Some(AirtableChoice::Limited) => {
                let fake = FakeAirtable::start().await;
                (Store::airtable(fake.config()).unwrap(), Some(fake))
            }
            Some(AirtableChoice::Unlimited) => {
                let fake = FakeAirtable::builder().rate_limit(None).start().await;
                let mut airtable_config = fake.config();
                airtable_config.rate_per_sec = 500.0;
                (Store::airtable(airtable_config).unwrap(), Some(fake))
            }
        };
        let (analyzer, openai) = match openai {
            Some((fake, config)) => (
                Analyzer::OpenAi(OpenAiClient::new(config).unwrap()),
                Some(fake),
            ),
            None => (Analyzer::Rules, None),
        };
        let deps = Arc::new(Deps::new(store, analyzer, journal.clone()));
        World {
            app: TestApp {
                address: String::new(),
                client: client(),
                journal,
                data_dir,
                settled: None,
            },
            deps,
            airtable,
            openai,
            pending: Some(Pending {
                config,
                secrets,
                wiring: self.wiring,
                poll: self.poll,
            }),
        }
    }
}

/// What a prepared world needs to start its worker.
struct Pending {
    config: ServeConfig,
    secrets: Vec<Secret>,
    wiring: Wiring,
    poll: Duration,
}

/// A worker with the real scenarios, its dependencies and the fakes it talks to.
pub struct World {
    /// The worker over HTTP (its address is empty until [`World::launch`]) and its journal.
    pub app: TestApp,
    pub deps: Arc<Deps>,
    airtable: Option<FakeAirtable>,
    openai: Option<FakeOpenAi>,
    pending: Option<Pending>,
}

impl World {
    /// SQLite, the rules analyzer, no admin token, no poller, `app::registry`.
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            airtable: None,
            openai: None,
            serve: Vec::new(),
            admin_token: None,
            poll: Duration::ZERO,
            wiring: Wiring::Scenarios,
        }
    }

    /// Starts the worker of a prepared world.
    pub async fn launch(&mut self) {
        let Pending {
            config,
            secrets,
            wiring,
            poll,
        } = self.pending.take().expect("the world is launched once");
        let mut registry = match wiring {
            Wiring::Scenarios => {
                let mut registry: Registry =
                    coach_worker::app::registry(self.deps.clone(), poll, None);
                if let Some(token) = &config.admin_token {
                    use secrecy::ExposeSecret;
                    registry.routes.push(coach_worker::admin::routes_with_store(
                        token.expose_secret().to_owned(),
                        Some(self.deps.store.clone()),
                    ));
                }
                registry
            }
            Wiring::Serve => coach_worker::serve::worker_registry(&config, self.deps.clone()),
        };
        let tap = tap_runner(&mut registry);
        let app = Application::build_with(&config, secrets, self.app.journal.clone(), registry)
            .await
            .unwrap();
        self.app.address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        self.app.settled = Some(tap.await.expect("the worker starts its background tasks"));
    }

    /// Runs the worker until it is idle (see [`TestApp::run_until_idle`]).
    pub async fn run_until_idle(&self) {
        self.app.run_until_idle().await;
    }

    /// The Airtable fake; panics when the world runs on SQLite.
    pub fn airtable(&self) -> &FakeAirtable {
        self.airtable
            .as_ref()
            .expect("a world built with .airtable()")
    }

    /// Whether the store is the Airtable fake.
    pub fn on_airtable(&self) -> bool {
        self.airtable.is_some()
    }

    /// The OpenAI fake; panics when the world runs the rules analyzer.
    pub fn openai(&self) -> &FakeOpenAi {
        self.openai.as_ref().expect("a world built with .openai()")
    }

    /// Every record of a table, read past the worker's client (the fake's own view, or SQLite), so
    /// the test's reads are not counted as calls and spend neither rate budget nor injected
    /// failures.
    pub async fn records(&self, table: &str) -> Vec<Record> {
        match &self.airtable {
            Some(fake) => fake.records(table),
            None => self
                .deps
                .store
                .list(table, &ListQuery::new())
                .await
                .unwrap(),
        }
    }

    /// One record, read as [`World::records`] reads; panics when it is not there.
    pub async fn record<T: TableRecord>(&self, id: impl AsRef<str>) -> T {
        let id = id.as_ref();
        let all = self.records(T::TABLE).await;
        let r = all
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id} not in {}", T::TABLE));
        T::from_record(r).unwrap()
    }

    /// Every record of `T`'s table, typed, read as [`World::records`] reads.
    pub async fn all<T: TableRecord>(&self) -> Vec<T> {
        self.records(T::TABLE)
            .await
            .iter()
            .map(|r| T::from_record(r).unwrap())
            .collect()
    }

    /// Airtable calls the fake has answered since the last reset (0 on SQLite).
    pub fn calls(&self) -> usize {
        self.airtable.as_ref().map(|f| f.calls()).unwrap_or(0)
    }

    /// The Airtable calls since the last reset, one `METHOD table[/record]` line each (empty on SQLite).
    pub fn call_trace(&self) -> Vec<String> {
        let Some(f) = &self.airtable else {
            return Vec::new();
        };
        let prefix = f.table_path("");
        f.requests()
            .iter()
            .map(|c| {
                let path = c.path.strip_prefix(&prefix).unwrap_or(&c.path);
                format!("{} {path}", c.method)
            })
            .collect()
    }

    /// Resets the Airtable fake's counters (nothing on SQLite).
    pub fn reset_calls(&self) {
        if let Some(f) = &self.airtable {
            f.reset_counters();
        }
    }

    /// Creates one record through the store; returns its id.
    pub async fn create<T: TableRecord>(&self, record: &T) -> String {
        self.deps
            .store
            .create(T::TABLE, vec![record.to_fields()])
            .await
            .unwrap()[0]
            .id
            .clone()
    }

    /// The coachee.
    pub async fn user(&self) -> String {
        self.create(&tables::User {
            name: Some(COACHEE.into()),
            role: Some(tables::Role::Coachee),
            ..Default::default()
        })
        .await
    }

    /// The coachee and all six samples, one create each.
    pub async fn seed(&self) -> (String, Vec<String>) {
        self.seed_samples(&SAMPLES).await
    }

    /// The coachee and these samples, one create each; the ids come back in the samples' order.
    pub async fn seed_samples(&self, samples: &[Sample]) -> (String, Vec<String>) {
        let user = self.user().await;
        let mut ids = Vec::new();
        for s in samples {
            ids.push(self.create(&transcript_of(&user, s)).await);
        }
        (user, ids)
    }

    /// The coachee and these samples, all transcripts in one create call.
    pub async fn seed_samples_in_one_call(&self, samples: &[Sample]) -> (String, Vec<String>) {
        let user = self.user().await;
        let fields: Vec<Fields> = samples
            .iter()
            .map(|s| transcript_of(&user, s).to_fields())
            .collect();
        let ids = self
            .deps
            .store
            .create(tables::TRANSCRIPTS, fields)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        (user, ids)
    }

    /// A transcript whose text has no speaker labels, so R1 fails on it with `NO_SPEAKER_LABELS`.
    pub async fn unlabelled_transcript(&self, user: &str) -> String {
        self.create(&tables::Transcript {
            title: Some("no speakers".into()),
            user: vec![super::rid(user)],
            transcript: Some("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n>> HELLO THERE\n".into()),
            coachee_speaker: Some(COACHEE.into()),
            ..Default::default()
        })
        .await
    }

    /// The fix an operator makes: a properly labelled transcript in the record.
    pub async fn fix_transcript(&self, id: &str) {
        let mut fields = Fields::new();
        fields.insert(
            "Transcript".into(),
            json!(sample_text("followup-2-one-on-one.txt")),
        );
        fields.insert("Format".into(), json!("text"));
        self.deps
            .store
            .update(tables::TRANSCRIPTS, vec![(id.into(), fields)])
            .await
            .unwrap();
    }

    /// A queued Run Request from Make, upserted on its key; returns its id.
    pub async fn run_request(&self, key: &str, user: &str, transcript: &str) -> String {
        self.run_request_from(tables::RunRequestSource::Make, key, user, transcript)
            .await
    }

    /// A queued Run Request from `source`, upserted on its key; returns its id.
    pub async fn run_request_from(
        &self,
        source: tables::RunRequestSource,
        key: &str,
        user: &str,
        transcript: &str,
    ) -> String {
        let request = tables::RunRequest {
            key: Some(key.into()),
            user: vec![super::rid(user)],
            transcript: vec![super::rid(transcript)],
            status: Some(tables::RunRequestStatus::Queued),
            source: Some(source),
            ..Default::default()
        };
        self.deps
            .store
            .upsert(tables::RUN_REQUESTS, vec![request.to_fields()])
            .await
            .unwrap()[0]
            .id
            .clone()
    }

    /// Waits for a run and its follow-ups; returns the run as `/v1/runs` shows it then.
    pub async fn wait_all(&self, run_id: &str) -> Value {
        let run = self.app.wait_run(run_id).await;
        for f in run["follow_ups"].as_array().cloned().unwrap_or_default() {
            self.app.wait_run(f["run_id"].as_str().unwrap()).await;
        }
        self.app.get_json(&format!("/v1/runs/{run_id}")).await.1
    }

    /// A GET (or, for any other method, a POST with `body` as JSON) to the worker, with an optional
    /// `Authorization` header; returns the status and the JSON answer (`null` when not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.app.address);
        let mut req = match method {
            "GET" => self.app.client.get(url),
            _ => self.app.client.post(url),
        };
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends R1 for a Run Request (signed, as delivery `delivery`) and waits for the run and its
    /// follow-ups; returns the run as `/v1/runs` shows it then.
    pub async fn r1(&self, delivery: &str, request_id: &str) -> Value {
        let resp = self
            .app
            .post_signed("r1", delivery, &json!({ "run_request_id": request_id }))
            .await;
        assert_eq!(resp.status(), 202);
        let queued: Value = resp.json().await.unwrap();
        self.wait_all(queued["run_id"].as_str().unwrap()).await
    }

    /// The result of a finished run's first follow-up (the D1 after an R1, the E1 after a build).
    pub async fn follow_up_result(&self, run: &Value) -> Value {
        let id = run["follow_ups"][0]["run_id"].as_str().unwrap();
        self.app.get_json(&format!("/v1/runs/{id}")).await.1["result"].clone()
    }

    /// Jobs in the journal, whatever their state.
    pub async fn job_count(&self) -> u64 {
        self.app
            .journal
            .count_jobs(JobFilter::default())
            .await
            .unwrap()
    }
}

/// The Transcript record a sample is seeded as.
fn transcript_of(user: &str, s: &Sample) -> tables::Transcript {
    tables::Transcript {
        title: Some(s.file.into()),
        user: vec![super::rid(user)],
        meeting_date: Some(s.date.into()),
        format: Some(s.format),
        transcript: Some(sample_text(s.file)),
        coachee_speaker: Some(COACHEE.into()),
        ..Default::default()
    }
}
