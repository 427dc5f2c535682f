//! `switchboard loadtest`: drives a running server over HTTP the way a messaging
//! platform would, and reports what it measured.
//!
//! Open loop: conversation `i` is due at `start + i / rate`, and every latency is
//! measured from the instant a request was *due*, not from when it was sent, so a slow
//! server cannot hide its queueing behind a slowed-down client. Each agent listens on
//! its event stream; each conversation plays a lifecycle (the agent answers, the
//! consumer answers a few times or goes quiet, the agent closes). At the end every
//! conversation opened is looked up again: `lost` counts the ones the server does not
//! know.

pub mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use dashmap::DashMap;
use futures_util::StreamExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::loadtest::stats::{Recorder, Summary};
use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    /// Conversations opened per second.
    pub rate: f64,
    pub duration: Duration,
    pub agents: usize,
    pub skills: usize,
    pub token: Option<String>,
    pub seed: u64,
    /// How long to wait for lifecycles still running when arrivals stop.
    pub drain: Duration,
    /// Where to write what the server acknowledged (see [`Ledger`]).
    pub ledger: Option<std::path::PathBuf>,
}

/// What the server acknowledged with a 2xx during a run: `loadtest --ledger FILE`
/// writes it, `loadtest --reconcile-only --ledger FILE` checks a (restarted) server
/// against it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    pub run_id: String,
    pub agents: Vec<String>,
    /// Conversations whose open was answered 2xx.
    pub opened: Vec<String>,
    /// Conversations whose close was answered 2xx.
    pub closed: Vec<String>,
}

/// How a server's state compares with a [`Ledger`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    /// Acknowledged opens checked.
    pub acknowledged: u64,
    /// Acknowledged opens the server does not know (404).
    pub lost: u64,
    /// Acknowledged closes that the server does not show closed.
    pub reopened: u64,
    /// Conversations listed by more than one agent.
    pub held_twice: u64,
    /// Conversations an agent lists whose own record names another holder (or none).
    pub holder_mismatch: u64,
    /// Conversations by the state the server reports.
    pub states: BTreeMap<String, u64>,
    /// Requests that failed (the server unreachable or answering 5xx).
    pub unreadable: u64,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.reopened == 0
            && self.held_twice == 0
            && self.holder_mismatch == 0
            && self.unreadable == 0
    }

    pub fn text(&self) -> String {
        format!(
            "reconciled {} acknowledged conversations: lost {}, closes undone {}, held by two agents {}, \
             holder mismatches {}, unreadable {}\nstates: {:?}\n",
            self.acknowledged,
            self.lost,
            self.reopened,
            self.held_twice,
            self.holder_mismatch,
            self.unreadable,
            self.states
        )
    }
}

/// Checks a server against a ledger: every acknowledged conversation exists, every
/// acknowledged close holds, and no conversation is held by two agents or by an agent
/// its own record does not name.
pub async fn reconcile_ledger(url: &str, token: Option<&str>, ledger: &Ledger) -> anyhow::Result<Reconciliation> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let get = |path: String| {
        let r = http.get(format!("{url}{path}"));
        let r = match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        async move {
            match r.send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => Ok(None),
                Ok(resp) if resp.status().is_success() => Ok(resp.json::<Value>().await.ok()),
                Ok(resp) => Err(resp.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let mut out = Reconciliation::default();
    let closed: std::collections::HashSet<&String> = ledger.closed.iter().collect();
    let mut records: BTreeMap<String, Value> = BTreeMap::new();
    for id in &ledger.opened {
        out.acknowledged += 1;
        match get(format!("/v1/conversations/{id}")).await {
            Ok(Some(v)) => {
                let state = v["state"].as_str().unwrap_or("unknown").to_string();
                if closed.contains(id) && state != "closed" {
                    out.reopened += 1;
                }
                *out.states.entry(state).or_default() += 1;
                records.insert(id.clone(), v);
            }
            Ok(None) => out.lost += 1,
            Err(_) => out.unreadable += 1,
        }
    }
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for agent in &ledger.agents {
        match get(format!("/v1/agents/{agent}")).await {
            Ok(Some(v)) => {
                for c in v["conversations"].as_array().into_iter().flatten() {
                    if let Some(id) = c["conversation_id"].as_str() {
                        holders.entry(id.to_string()).or_default().push(agent.clone());
                    }
                }
            }
            Ok(None) => {}
            Err(_) => out.unreadable += 1,
        }
    }
    for (id, agents) in &holders {
        if agents.len() > 1 {
            out.held_twice += 1;
        }
        if let Some(v) = records.get(id) {
            let named = v["agent_id"].as_str();
            if v["state"] != "assigned" || !agents.iter().any(|a| Some(a.as_str()) == named) {
                out.holder_mismatch += 1;
            }
        }
    }
    // And the other way: an assigned conversation its agent does not list.
    for (id, v) in &records {
        if v["state"] == "assigned" && !holders.contains_key(id) {
            out.holder_mismatch += 1;
        }
    }
    Ok(out)
}

struct Shared {
    opts: Options,
    http: reqwest::Client,
    run_id: String,
    rec: Recorder,
    /// Conversations waiting for their `assigned` event: the instant it arrived, and the agent.
    waiting: DashMap<String, oneshot::Sender<(Instant, String)>>,
    opened: Mutex<Vec<String>>,
    closed: Mutex<Vec<String>>,
    sla_met: AtomicU64,
    sla_total: AtomicU64,
}

impl Shared {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.opts.url));
        match &self.opts.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends a request and records its latency from `due` under `endpoint`.
    async fn call(
        &self,
        endpoint: &'static str,
        due: Instant,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.send().await {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                self.rec.latency(endpoint, due.elapsed());
                if status.is_success() {
                    Some(serde_json::from_str(&text).unwrap_or(Value::Null))
                } else {
                    let code = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    self.rec.error(format!("{endpoint} {} {code}", status.as_u16()));
                    None
                }
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                self.rec.error(format!("{endpoint} {kind}"));
                None
            }
        }
    }
}

/// Runs the load test; `progress` lines go to stderr.
pub async fn run(opts: Options) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        opts.rate > 0.0 && opts.rate.is_finite(),
        "--rate must be a positive number"
    );
    anyhow::ensure!(
        opts.agents > 0 && opts.skills > 0,
        "--agents and --skills must be at least 1"
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let run_id = format!("lt{:x}", rand::random::<u32>());
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        http,
        run_id: run_id.clone(),
        rec: Recorder::default(),
        waiting: DashMap::new(),
        opened: Mutex::new(Vec::new()),
        closed: Mutex::new(Vec::new()),
        sla_met: AtomicU64::new(0),
        sla_total: AtomicU64::new(0),
    });
    setup(&shared).await?;
    let streams = listen(&shared).await?;

    let total = (opts.rate * opts.duration.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(200);
    let mut progress = Progress::new("loadtest");
    let mut tasks = tokio::task::JoinSet::new();
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut next_report = start;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / opts.rate);
        tokio::time::sleep_until(due.into()).await;
        let s = Arc::clone(&shared);
        let seed = rng.gen();
        tasks.spawn(async move { lifecycle(s, i, due, seed).await });
        if Instant::now() >= next_report {
            progress.set(i as f64 / total as f64);
            next_report = Instant::now() + Duration::from_millis(500);
        }
        while let Some(done) = tasks.try_join_next() {
            let _ = done;
        }
    }
    let sent_for = start.elapsed();
    progress.finish();
    eprintln!(
        "loadtest: arrivals done; waiting up to {:?} for running conversations",
        opts.drain
    );
    let _ = tokio::time::timeout(opts.drain, async { while tasks.join_next().await.is_some() {} }).await;
    let unfinished = tasks.len();
    tasks.abort_all();
    for s in streams {
        s.abort();
    }
    if let Some(path) = &opts.ledger {
        let ledger = Ledger {
            run_id: run_id.clone(),
            agents: (0..opts.agents).map(|a| agent(&run_id, a)).collect(),
            opened: shared.opened.lock().map(|v| v.clone()).unwrap_or_default(),
            closed: shared.closed.lock().map(|v| v.clone()).unwrap_or_default(),
        };
        std::fs::write(path, serde_json::to_string(&ledger)?)
            .with_context(|| format!("writing the ledger {}", path.display()))?;
    }
    let reconciliation = reconcile(&shared).await;
    let opened = shared.opened.lock().map(|v| v.len()).unwrap_or(0) as u64;
    Ok(shared.rec.summary(
        &opts,
        opened,
        sent_for,
        unfinished as u64,
        reconciliation,
        (
            shared.sla_met.load(Ordering::Relaxed),
            shared.sla_total.load(Ordering::Relaxed),
        ),
    ))
}

fn skill(i: usize) -> String {
    format!("lt-skill-{i}")
}

fn agent(run: &str, i: usize) -> String {
    format!("{run}-agent-{i}")
}

async fn setup(s: &Shared) -> anyhow::Result<()> {
    let now = Instant::now();
    for k in 0..s.opts.skills {
        s.call(
            "setup",
            now,
            reqwest::Method::PUT,
            &format!("/v1/skills/{}", skill(k)),
            Some(json!({})),
        )
        .await
        .with_context(|| format!("creating skill {} at {}", skill(k), s.opts.url))?;
    }
    for a in 0..s.opts.agents {
        let mut skills = vec![skill(a % s.opts.skills)];
        if s.opts.skills > 1 && a % 3 == 0 {
            skills.push(skill((a + 1) % s.opts.skills));
        }
        let id = agent(&s.run_id, a);
        s.call(
            "setup",
            now,
            reqwest::Method::PUT,
            &format!("/v1/agents/{id}"),
            Some(json!({"skills": skills, "max_slots": 6})),
        )
        .await
        .context("creating agents")?;
    }
    Ok(())
}

/// One event stream per agent, then every agent goes online.
async fn listen(s: &Arc<Shared>) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(s.opts.agents);
    for a in 0..s.opts.agents {
        let id = agent(&s.run_id, a);
        let resp = s
            .req(reqwest::Method::GET, &format!("/v1/agents/{id}/events"))
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .context("opening an agent event stream")?;
        anyhow::ensure!(
            resp.status().is_success(),
            "event stream for {id}: HTTP {}",
            resp.status()
        );
        let shared = Arc::clone(s);
        handles.push(tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    if !frame.starts_with("event: assigned") {
                        continue;
                    }
                    let at = Instant::now();
                    let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    let (Some(conv), Some(agent)) = (v["conversation_id"].as_str(), v["agent_id"].as_str()) else {
                        continue;
                    };
                    if let Some((_, tx)) = shared.waiting.remove(conv) {
                        let _ = tx.send((at, agent.to_string()));
                    }
                }
            }
        }));
    }
    let now = Instant::now();
    for a in 0..s.opts.agents {
        let id = agent(&s.run_id, a);
        s.call(
            "setup",
            now,
            reqwest::Method::POST,
            &format!("/v1/agents/{id}/status"),
            Some(json!({"status": "online"})),
        )
        .await
        .context("setting agents online")?;
    }
    Ok(handles)
}

/// A conversation's life: open, wait for the assignment, a few exchanges, close.
async fn lifecycle(s: Arc<Shared>, i: u64, due: Instant, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let id = format!("{}-c{i}", s.run_id);
    let (tx, rx) = oneshot::channel();
    s.waiting.insert(id.clone(), tx);
    let body = json!({
        "conversation_id": id,
        "consumer_id": format!("{}-u{}", s.run_id, rng.gen_range(0..(1 + i / 2))),
        "skill": skill(rng.gen_range(0..s.opts.skills)),
        "attributes": if rng.gen_bool(0.1) { json!({"tier": "vip"}) } else { json!({}) },
    });
    let Some(opened) = s
        .call(
            "POST /v1/conversations",
            due,
            reqwest::Method::POST,
            "/v1/conversations",
            Some(body),
        )
        .await
    else {
        s.waiting.remove(&id);
        return;
    };
    if let Ok(mut v) = s.opened.lock() {
        v.push(id.clone());
    }
    let due_at = opened["sla"]["due_at"]
        .as_str()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok());
    let Ok(Ok((assigned_at, agent))) = tokio::time::timeout(Duration::from_secs(30), rx).await else {
        s.waiting.remove(&id);
        s.rec.error("assignment timeout (30 s)".to_string());
        return;
    };
    s.rec.assignment(assigned_at.saturating_duration_since(due));
    let path = format!("/v1/conversations/{id}");
    let rounds = rng.gen_range(1..=3);
    for round in 0..rounds {
        let at = Instant::now() + Duration::from_millis(rng.gen_range(300..1500));
        tokio::time::sleep_until(at.into()).await;
        let reply = s
            .call(
                "POST /messages (agent)",
                at,
                reqwest::Method::POST,
                &format!("{path}/messages"),
                Some(json!({"from": "agent", "agent_id": agent})),
            )
            .await;
        if round == 0 {
            if let Some(due) = due_at {
                s.sla_total.fetch_add(1, Ordering::Relaxed);
                if reply.is_some() && chrono::Utc::now() <= due {
                    s.sla_met.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if round + 1 == rounds || rng.gen_bool(0.2) {
            break; // done, or the consumer goes quiet
        }
        let at = Instant::now() + Duration::from_millis(rng.gen_range(500..3000));
        tokio::time::sleep_until(at.into()).await;
        s.call(
            "POST /messages (consumer)",
            at,
            reqwest::Method::POST,
            &format!("{path}/messages"),
            Some(json!({"from": "consumer"})),
        )
        .await;
    }
    let at = Instant::now() + Duration::from_millis(rng.gen_range(200..1000));
    tokio::time::sleep_until(at.into()).await;
    let closed = s
        .call(
            "POST /close",
            at,
            reqwest::Method::POST,
            &format!("{path}/close"),
            Some(json!({"by": "agent", "agent_id": agent})),
        )
        .await;
    if closed.is_some() {
        if let Ok(mut v) = s.closed.lock() {
            v.push(id);
        }
    }
}

/// Every conversation opened, looked up again.
async fn reconcile(s: &Arc<Shared>) -> BTreeMap<String, u64> {
    let ids: Vec<String> = s.opened.lock().map(|v| v.clone()).unwrap_or_default();
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let chunks: Vec<Vec<String>> = ids
        .chunks(ids.len().div_ceil(32).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for chunk in chunks {
        let s = Arc::clone(s);
        let counts = Arc::clone(&counts);
        set.spawn(async move {
            for id in chunk {
                let state = match s
                    .req(reqwest::Method::GET, &format!("/v1/conversations/{id}"))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => "lost".to_string(),
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["state"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "unreadable".into()),
                    Err(_) => "unreadable".into(),
                };
                if let Ok(mut c) = counts.lock() {
                    *c.entry(state).or_default() += 1;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let out = counts.lock().map(|c| c.clone()).unwrap_or_default();
    out
}
