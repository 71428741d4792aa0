//! D1's count of attempts toward an experiment's `Target Meetings`: from the journal's tally while the
//! target is out of reach, from the events in the store when the journal does not know the
//! experiment or the target is reached — so an experiment the worker never saw, an attempt event an
//! operator added or deleted by hand, and meetings finishing at the same moment all end with the
//! experiment completed once, at the right meeting.

use crate::common;

use coach_store::Fields;
use coach_store::tables::{self, EventType, ExperimentStatus};
use common::world::World;
use serde_json::{Value, json};

impl World {
    /// An active experiment made by hand (not by E1), set as the user's active one.
    async fn hand_experiment(&self, user: &str, target: i64) -> String {
        let id = self
            .create(&tables::Experiment {
                key: Some(format!("hand:{user}")),
                title: Some("Ask before answering".into()),
                user: vec![common::rid(user)],
                behavior: Some("Ask one open question before giving an answer".into()),
                success_signal: Some("Others speak first".into()),
                target_meetings: Some(target),
                status: Some(ExperimentStatus::Active),
                started_at: Some("2026-01-01T00:00:00.000Z".into()),
                ..Default::default()
            })
            .await;
        let mut f = Fields::new();
        f.insert("Active Experiment".into(), json!([id]));
        self.deps
            .store
            .update(tables::USERS, vec![(user.into(), f)])
            .await
            .unwrap();
        id
    }

    /// Sends R1 for a new request on `transcript` and waits for it and its D1; returns the D1's result.
    async fn meeting(&self, n: usize, user: &str, transcript: &str) -> Value {
        let request = self.run_request(&format!("m:{n}"), user, transcript).await;
        let run = self.r1(&format!("m-{n}"), &request).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["follow_ups"][0]["kind"], "d1", "{run}");
        self.follow_up_result(&run).await
    }

    async fn events_of(&self, kind: EventType) -> Vec<tables::ExperimentEvent> {
        self.all::<tables::ExperimentEvent>()
            .await
            .into_iter()
            .filter(|e| e.event_type == Some(kind))
            .collect()
    }
}

#[tokio::test]
async fn an_experiment_the_journal_never_saw_is_counted_from_the_store() {
    let w = World::builder().airtable_unlimited().start().await;
    let (user, transcripts) = w.seed().await;
    let experiment = w.hand_experiment(&user, 2).await;
    // An operator recorded an attempt by hand, without a run.
    w.create(&tables::ExperimentEvent {
        key: Some("hand:attempt".into()),
        experiment: vec![common::rid(&experiment)],
        event_type: Some(EventType::Attempt),
        attempted: Some(tables::Attempted::Yes),
        ..Default::default()
    })
    .await;

    w.reset_calls();
    let d1 = w.meeting(1, &user, &transcripts[3]).await;
    assert!(
        w.call_trace().iter().any(|c| c == "GET Experiment Events"),
        "the experiment is unknown to the journal, so its events are listed: {:?}",
        w.call_trace()
    );
    assert_eq!(d1["attempts"], 2, "{d1}");
    assert_eq!(d1["experiment_completed"], true, "{d1}");
    let e: tables::Experiment = w.record(&experiment).await;
    assert_eq!(e.status, Some(ExperimentStatus::Completed));
    assert_eq!(w.events_of(EventType::Completed).await.len(), 1);
    let u: tables::User = w.record(&user).await;
    assert!(u.active_experiment.is_empty());
}

#[tokio::test]
async fn a_tally_that_counts_a_deleted_event_is_corrected_before_completing() {
    let w = World::builder().start().await;
    let (user, transcripts) = w.seed().await;
    let experiment = w.hand_experiment(&user, 2).await;

    let first = w.meeting(1, &user, &transcripts[3]).await;
    assert_eq!(first["attempts"], 1, "{first}");
    // An operator deletes that attempt event: the tally still counts it.
    let attempts = w.events_of(EventType::Attempt).await;
    assert_eq!(attempts.len(), 1);
    w.deps
        .store
        .delete(tables::EXPERIMENT_EVENTS, vec![attempts[0].id.clone()])
        .await
        .unwrap();

    // By the tally this meeting reaches the target; the store says it does not.
    let second = w.meeting(2, &user, &transcripts[4]).await;
    assert_eq!(second["attempts"], 1, "{second}");
    assert_eq!(second["experiment_completed"], false, "{second}");
    let e: tables::Experiment = w.record(&experiment).await;
    assert_eq!(e.status, Some(ExperimentStatus::Active));
    assert!(w.events_of(EventType::Completed).await.is_empty());

    let third = w.meeting(3, &user, &transcripts[5]).await;
    assert_eq!(third["attempts"], 2, "{third}");
    assert_eq!(third["experiment_completed"], true, "{third}");
    let e: tables::Experiment = w.record(&experiment).await;
    assert_eq!(e.status, Some(ExperimentStatus::Completed));
}

#[tokio::test]
async fn meetings_finishing_together_complete_the_experiment_once() {
    let w = World::builder()
        .serve(|c| c.max_concurrency = 8)
        .start()
        .await;
    let (user, transcripts) = w.seed().await;
    let experiment = w.hand_experiment(&user, 3).await;

    // Five requests at once: their D1s overlap. The deliveries are sent together, so that every R1
    // reads the experiment while it is still active; sent one after another on a busy machine, the
    // last R1 could start after three D1s had already completed it.
    let mut requests = Vec::new();
    for (i, t) in transcripts[..5].iter().enumerate() {
        requests.push(w.run_request(&format!("c:{i}"), &user, t).await);
    }
    let post = |i: usize| {
        let body = json!({ "run_request_id": requests[i] });
        let w = &w;
        async move {
            let queued: Value = w
                .app
                .post_signed("r1", &format!("c-{i}"), &body)
                .await
                .json()
                .await
                .unwrap();
            queued["run_id"].as_str().unwrap().to_owned()
        }
    };
    let (a, b, c, d, e) = tokio::join!(post(0), post(1), post(2), post(3), post(4));
    let sent = [a, b, c, d, e];
    let mut completing = 0;
    for id in &sent {
        let run = w.wait_all(id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["follow_ups"][0]["status"], "succeeded", "{run}");
        if w.follow_up_result(&run).await["attempts"] == 3 {
            completing += 1;
        }
    }
    assert_eq!(completing, 1, "exactly one meeting is the third attempt");
    assert_eq!(w.events_of(EventType::Attempt).await.len(), 5);
    let completed = w.events_of(EventType::Completed).await;
    assert_eq!(completed.len(), 1);
    assert!(
        completed[0].evidence.as_deref().is_some_and(
            |e| e.starts_with("3 of 3 target meetings observed since the experiment started: ")
        ),
        "the completion is written once, by the meeting that reached the target: {:?}",
        completed[0].evidence
    );
    let e: tables::Experiment = w.record(&experiment).await;
    assert_eq!(e.status, Some(ExperimentStatus::Completed));
}

#[tokio::test]
async fn replaying_a_meeting_updates_its_attempt_instead_of_counting_it_twice() {
    const TOKEN: &str = "attempts-admin-token";
    let w = World::builder().admin_token(TOKEN).start().await;
    let (user, transcripts) = w.seed().await;
    let experiment = w.hand_experiment(&user, 3).await;
    let request = w.run_request("replayed", &user, &transcripts[3]).await;
    let first = w.r1("replayed-1", &request).await;
    assert_eq!(first["follow_ups"][0]["status"], "succeeded", "{first}");

    // Replayed twice over (a replay of the replay), each with its own new Run.
    let mut replayed = first["run_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, answer) = w
            .call(
                "POST",
                &format!("/v1/admin/runs/{replayed}/replay"),
                Some(json!({ "bypass_cache": true })),
                Some(&format!("Bearer {TOKEN}")),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        replayed = answer["run_id"].as_str().unwrap().to_owned();
        let run = w.wait_all(&replayed).await;
        assert_eq!(run["follow_ups"][0]["status"], "succeeded", "{run}");
        let d1 = w.follow_up_result(&run).await;
        assert_eq!(d1["attempts"], 1, "the same meeting: {d1}");
    }

    let runs: Vec<tables::Run> = w.all().await;
    assert_eq!(runs.len(), 3);
    let attempts = w.events_of(EventType::Attempt).await;
    assert_eq!(attempts.len(), 1, "one attempt event for the meeting");
    let newest = runs
        .iter()
        .find(|r| {
            r.replay_of
                .first()
                .is_some_and(|p| runs.iter().any(|q| &q.id == p && !q.replay_of.is_empty()))
        })
        .expect("the replay of the replay");
    assert_eq!(
        attempts[0].run,
        vec![newest.id.clone()],
        "linked to the newest run"
    );

    // D1 asked by hand for the newest run finds the same attempt.
    let d1: Value = w
        .app
        .post_signed("d1", "replayed-d1", &json!({ "run_id": newest.id }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d1["attempts"], 1, "{d1}");
    assert_eq!(w.events_of(EventType::Attempt).await.len(), 1);
    let e: tables::Experiment = w.record(&experiment).await;
    assert_eq!(e.status, Some(ExperimentStatus::Active));
}
