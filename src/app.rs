//! The composition root: what the worker serves, wired from the parts below it. The scenarios
//! (`crate::scenarios`) are plain functions; the web layer (`crate::http::hooks`) puts them on HTTP;
//! the job handlers (`crate::scenarios::jobs`) put them in the runner; this module registers both,
//! with the readiness check and the R1 poller, in a [`Registry`] that [`crate::startup`] runs.
//! Nothing below this module (scenarios, http, jobs, journal, admin) imports it or `startup`.

use std::sync::Arc;

use crate::http::hooks::{
    a1::A1Hook, build::BuildHook, d1::D1Hook, e1::E1Hook, r1::R1Hook, s1::S1Hook,
};
use crate::http::{Hooks, Routes, futures_ready::ReadyFuture};
use crate::jobs::{JobHandler, RunnerHandle};
use crate::scenarios::{self, Deps};

/// A task that runs beside the server (the poller), given the runner and a stop signal.
pub type BackgroundTask =
    Box<dyn FnOnce(RunnerHandle, tokio::sync::watch::Receiver<bool>) -> ReadyFuture + Send>;

/// The scenarios a worker serves: its hooks, job handlers, readiness check and background tasks.
pub struct Registry {
    pub hooks: Hooks,
    pub handlers: Vec<(String, Arc<dyn JobHandler>)>,
    pub ready: Arc<dyn Fn() -> ReadyFuture + Send + Sync>,
    /// Tasks that run beside the server (the poller); given the runner handle, stopped on shutdown.
    pub background: Vec<BackgroundTask>,
    /// Extra routes (the admin API and page).
    pub routes: Vec<Routes>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry {
            hooks: Hooks::new(),
            handlers: Vec::new(),
            ready: Arc::new(|| Box::pin(async { Ok(()) })),
            background: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// The worker's scenarios: hooks, job handlers, readiness check and the R1 poller.
pub fn registry(
    deps: Arc<Deps>,
    poll_interval: std::time::Duration,
    ping: Option<Arc<tokio::sync::Notify>>,
) -> Registry {
    let mut registry = Registry::empty();
    let hooks: [(&str, Arc<dyn crate::http::Hook>); 7] = [
        ("a1", Arc::new(A1Hook(deps.clone()))),
        ("a2", Arc::new(BuildHook)),
        ("s3", Arc::new(BuildHook)),
        ("r1", Arc::new(R1Hook)),
        ("s1", Arc::new(S1Hook(deps.clone()))),
        ("d1", Arc::new(D1Hook(deps.clone()))),
        ("e1", Arc::new(E1Hook(deps.clone()))),
    ];
    for (name, hook) in hooks {
        registry.hooks.insert(name.into(), hook);
    }
    registry.handlers = scenarios::jobs::handlers(deps.clone());
    let store = deps.store.clone();
    registry.ready = Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.ready().await.map_err(|e| e.to_string()) })
    });
    if !poll_interval.is_zero() || ping.is_some() {
        let deps = deps.clone();
        registry.background.push(Box::new(move |runner, stop| {
            Box::pin(scenarios::poller::run(
                deps,
                poll_interval,
                ping,
                runner,
                stop,
            ))
        }));
    }
    registry
}
