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
    /// Base URLs of the nodes (one, or every node of a cluster): requests go round
    /// robin, and one refused at connect or answered 503 is sent to the next.
    pub urls: Vec<String>,
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
    /// Send a conversation's requests to the node that named itself in the last
    /// answer about it ([`crate::api::forward::SERVED_BY`]), when it is one of `urls`.
    pub follow_owner: bool,
    /// Skills are `{skill_prefix}-0`, `-1`, ... (`lt-skill` by default): a prefix of
    /// its own keeps a run's conversations off other runs' agents on the same server.
    pub skill_prefix: String,
    /// Name conversations and agents with a placement key (`…~lt-skill-0`): in a
    /// cluster each is placed with its skill's queue (an agent with its first skill's).
    pub colocate: bool,
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
    /// Agents carrying more than their ceiling (`max_slots + overflow`) or holding more
    /// than `max_open`. An assignment never does that; with Smart Capacity a held
    /// conversation that becomes active again may (the load tool's lifecycles are
    /// shorter than `inactive_after_secs`, so in its runs none does).
    pub over_capacity: u64,
    /// Conversations by the state the server reports.
    pub states: BTreeMap<String, u64>,
    /// Requests that failed (the server unreachable or answering 5xx).
    pub unreadable: u64,
    /// The first few problems, named (conversation, what is wrong).
    pub examples: Vec<String>,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.reopened == 0
            && self.held_twice == 0
            && self.holder_mismatch == 0
            && self.over_capacity == 0
            && self.unreadable == 0
    }

    pub fn text(&self) -> String {
        format!(
            "reconciled {} acknowledged conversations: lost {}, closes undone {}, held by two agents {}, \
             holder mismatches {}, agents over capacity {}, unreadable {}\nstates: {:?}\n",
            self.acknowledged,
            self.lost,
            self.reopened,
            self.held_twice,
            self.holder_mismatch,
            self.over_capacity,
            self.unreadable,
            self.states
        ) + &self.examples.iter().map(|e| format!("  {e}\n")).collect::<String>()
    }
}

/// Checks a server against a ledger: every acknowledged conversation exists, every
/// acknowledged close holds, no conversation is held by two agents or by an agent its
/// own record does not name, and no agent carries more than its capacity.
pub async fn reconcile_ledger(url: &str, token: Option<&str>, ledger: &Ledger) -> anyhow::Result<Reconciliation> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let get = |path: String| {
        let http = &http;
        let send = move || {
            let r = http.get(format!("{url}{path}"));
            match token {
                Some(t) => r.bearer_auth(t),
                None => r,
            }
            .send()
        };
        async move {
            // A 503 (a shard moving between nodes of a cluster) is asked again, for
            // up to 10 s.
            let mut sent = send().await;
            for _ in 0..100 {
                match &sent {
                    Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        sent = send().await;
                    }
                    _ => break,
                }
            }
            match sent {
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
    // The run's agents, and any other agent a conversation names (agents of earlier
    // runs on the same skills may have taken some).
    let mut agents: Vec<String> = ledger.agents.clone();
    for v in records.values() {
        if let Some(a) = v["agent_id"].as_str() {
            if !agents.iter().any(|x| x == a) {
                agents.push(a.to_string());
            }
        }
    }
    let mut over = Vec::new();
    for agent in &agents {
        match get(format!("/v1/agents/{agent}")).await {
            Ok(Some(v)) => {
                let held = v["conversations"].as_array().map_or(0, Vec::len) as u64;
                let busy = v["busy"].as_f64().unwrap_or(0.0);
                let ceiling = v["ceiling"].as_f64().unwrap_or(f64::INFINITY);
                let max_open = v["max_open"].as_u64().unwrap_or(u64::MAX);
                if busy > ceiling + 1e-9 || held > max_open {
                    over.push(format!(
                        "agent {agent}: busy {busy} of ceiling {ceiling}, {held} held (max_open {})",
                        v["max_open"]
                    ));
                }
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
    let example = |out: &mut Reconciliation, text: String| {
        if out.examples.len() < 10 {
            out.examples.push(text);
        }
    };
    for text in over {
        out.over_capacity += 1;
        example(&mut out, text);
    }
    for (id, agents) in &holders {
        if agents.len() > 1 {
            out.held_twice += 1;
            example(&mut out, format!("{id}: held by {agents:?}"));
        }
        if let Some(v) = records.get(id) {
            let named = v["agent_id"].as_str();
            if v["state"] != "assigned" || !agents.iter().any(|a| Some(a.as_str()) == named) {
                out.holder_mismatch += 1;
                example(
                    &mut out,
                    format!(
                        "{id}: listed by {agents:?}, its record says {} with {named:?}",
                        v["state"]
                    ),
                );
            }
        }
    }
    // And the other way: an assigned conversation its agent does not list.
    for (id, v) in &records {
        if v["state"] == "assigned" && !holders.contains_key(id) {
            out.holder_mismatch += 1;
            example(
                &mut out,
                format!("{id}: assigned to {} which does not list it", v["agent_id"]),
            );
        }
    }
    Ok(out)
}

/// What the tasks of one load run share.
struct RunState {
    opts: Options,
    http: reqwest::Client,
    run_id: String,
    rec: Recorder,
    /// Conversations waiting for their `assigned` event: the instant it arrived, and the agent.
    waiting: DashMap<String, oneshot::Sender<(Instant, String)>>,
    /// The next URL to use (round robin over `opts.urls`).
    next_url: std::sync::atomic::AtomicUsize,
    /// With `follow_owner`: the index in `opts.urls` of the node that served each
    /// open conversation's last request.
    owners: DashMap<String, usize>,
    opened: Mutex<Vec<String>>,
    closed: Mutex<Vec<String>>,
    sla_met: AtomicU64,
    sla_total: AtomicU64,
}

impl RunState {
    fn url(&self) -> &str {
        let n = self.next_url.fetch_add(1, Ordering::Relaxed);
        &self.opts.urls[n % self.opts.urls.len()]
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.req_at(self.url(), method, path)
    }

    fn req_at(&self, url: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{url}{path}"));
        match &self.opts.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// A GET that, with several nodes, moves on to the next one while a node refuses
    /// the connection or answers 503 (for up to 20 s).
    async fn get_moving_on(&self, id: &str, path: &str) -> reqwest::Result<reqwest::Response> {
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut owner = self.owner(id);
        loop {
            let sent = self.req_to(&mut owner, reqwest::Method::GET, path).send().await;
            self.learn_owner(id, &sent);
            let again = match &sent {
                Err(e) => e.is_connect(),
                Ok(r) => r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            };
            if !again || self.opts.urls.len() < 2 || Instant::now() >= give_up {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index in `opts.urls` of the node an answer names in its `SERVED_BY` header.
    fn served_by(&self, resp: &reqwest::Response) -> Option<usize> {
        let addr = resp.headers().get(crate::api::forward::SERVED_BY)?.to_str().ok()?;
        self.opts.urls.iter().position(|u| {
            let authority = u.split_once("://").map_or(u.as_str(), |(_, rest)| rest);
            authority.trim_end_matches('/') == addr
        })
    }

    /// A request to `owner` if it is given (taken: a retry goes round robin), else to
    /// the next node round robin.
    fn req_to(&self, owner: &mut Option<usize>, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        match owner.take() {
            Some(k) => self.req_at(&self.opts.urls[k], method, path),
            None => self.req(method, path),
        }
    }

    /// With `follow_owner`: the node that served conversation `id` last, if known.
    fn owner(&self, id: &str) -> Option<usize> {
        if !self.opts.follow_owner || id.is_empty() {
            return None;
        }
        self.owners.get(id).map(|o| *o)
    }

    /// With `follow_owner`: remembers which node served a request about `id` (a 2xx
    /// naming one of `urls`), or forgets it.
    fn learn_owner(&self, id: &str, sent: &reqwest::Result<reqwest::Response>) {
        if !self.opts.follow_owner || id.is_empty() {
            return;
        }
        match sent
            .as_ref()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| self.served_by(r))
        {
            Some(k) => {
                self.owners.insert(id.to_string(), k);
            }
            None => {
                self.owners.remove(id);
            }
        }
    }

    /// Sends a request about conversation `id` (empty: none) and records its latency
    /// from `due` under `endpoint`.
    async fn call(
        &self,
        id: &str,
        endpoint: &'static str,
        due: Instant,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        // With several nodes, one that refuses the connection (down) or answers 503 (a
        // shard moving between nodes, a backlog) did not act: the request goes to the
        // next node, for up to 20 s. With `follow_owner` the first try goes to the
        // node that served the conversation last, if known.
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut attempt = 0;
        let mut owner = self.owner(id);
        let sent = loop {
            let mut r = self.req_to(&mut owner, method.clone(), path);
            if let Some(b) = &body {
                r = r.json(b);
            }
            let sent = r.send().await;
            self.learn_owner(id, &sent);
            let again = match &sent {
                Err(e) => e.is_connect(),
                Ok(resp) => resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            };
            if !again || self.opts.urls.len() < 2 || Instant::now() >= give_up {
                break sent;
            }
            attempt += 1;
            self.rec.retried();
            tokio::time::sleep(Duration::from_millis((50 * attempt).min(500))).await;
        };
        match sent {
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
    let shared = Arc::new(RunState {
        opts: opts.clone(),
        http,
        run_id: run_id.clone(),
        rec: Recorder::default(),
        waiting: DashMap::new(),
        next_url: std::sync::atomic::AtomicUsize::new(0),
        owners: DashMap::new(),
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
            agents: (0..opts.agents).map(|a| agent(&opts, &run_id, a)).collect(),
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

fn skill(opts: &Options, i: usize) -> String {
    format!("{}-{i}", opts.skill_prefix)
}

/// Agent `i`: its first skill is `skill(i % skills)`, which places it with `colocate`.
fn agent(opts: &Options, run: &str, i: usize) -> String {
    if opts.colocate {
        format!("{run}-agent-{i}~{}", skill(opts, i % opts.skills))
    } else {
        format!("{run}-agent-{i}")
    }
}

async fn setup(s: &RunState) -> anyhow::Result<()> {
    let now = Instant::now();
    for k in 0..s.opts.skills {
        s.call(
            "",
            "setup",
            now,
            reqwest::Method::PUT,
            &format!("/v1/skills/{}", skill(&s.opts, k)),
            Some(json!({})),
        )
        .await
        .with_context(|| format!("creating skill {} at {}", skill(&s.opts, k), s.opts.urls.join(", ")))?;
    }
    for a in 0..s.opts.agents {
        let mut skills = vec![skill(&s.opts, a % s.opts.skills)];
        if s.opts.skills > 1 && a % 3 == 0 {
            skills.push(skill(&s.opts, (a + 1) % s.opts.skills));
        }
        let id = agent(&s.opts, &s.run_id, a);
        s.call(
            "",
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

/// One event stream per agent (spread over the nodes: in a cluster each is passed
/// through from the agent's node), then every agent goes online. A stream that ends
/// (its node went down) is opened again on the next node.
async fn listen(s: &Arc<RunState>) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(s.opts.agents);
    for a in 0..s.opts.agents {
        let id = agent(&s.opts, &s.run_id, a);
        let (first_tx, first_rx) = oneshot::channel::<anyhow::Result<()>>();
        let shared = Arc::clone(s);
        handles.push(tokio::spawn(async move {
            let mut first = Some(first_tx);
            for k in a.. {
                let url = shared.opts.urls[k % shared.opts.urls.len()].clone();
                let opened = shared
                    .req_at(&url, reqwest::Method::GET, &format!("/v1/agents/{id}/events"))
                    .timeout(Duration::from_secs(24 * 3600))
                    .send()
                    .await;
                let resp = match opened {
                    Ok(r) if r.status().is_success() => r,
                    other => {
                        let why = match other {
                            Ok(r) => format!("HTTP {}", r.status()),
                            Err(e) => e.to_string(),
                        };
                        if let Some(tx) = first.take() {
                            if k + 1 - a >= shared.opts.urls.len() {
                                let _ = tx.send(Err(anyhow::anyhow!("event stream for {id}: {why}")));
                                return;
                            }
                            first = Some(tx);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
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
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
        first_rx
            .await
            .map_err(|_| anyhow::anyhow!("the event stream task of {} stopped", agent(&s.opts, &s.run_id, a)))?
            .context("opening an agent event stream")?;
    }
    let now = Instant::now();
    for a in 0..s.opts.agents {
        let id = agent(&s.opts, &s.run_id, a);
        s.call(
            "",
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
async fn lifecycle(s: Arc<RunState>, i: u64, due: Instant, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let consumer = format!("{}-u{}", s.run_id, rng.gen_range(0..(1 + i / 2)));
    let skill = skill(&s.opts, rng.gen_range(0..s.opts.skills));
    let id = if s.opts.colocate {
        format!("{}-c{i}~{skill}", s.run_id)
    } else {
        format!("{}-c{i}", s.run_id)
    };
    let (tx, rx) = oneshot::channel();
    s.waiting.insert(id.clone(), tx);
    let body = json!({
        "conversation_id": id,
        "consumer_id": consumer,
        "skill": skill,
        "attributes": if rng.gen_bool(0.1) { json!({"tier": "vip"}) } else { json!({}) },
    });
    let Some(opened) = s
        .call(
            &id,
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
    let Some((assigned_at, agent)) = wait_for_assignment(&s, &id, rx).await else {
        s.waiting.remove(&id);
        s.owners.remove(&id);
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
                &id,
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
            &id,
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
            &id,
            "POST /close",
            at,
            reqwest::Method::POST,
            &format!("{path}/close"),
            Some(json!({"by": "agent", "agent_id": agent})),
        )
        .await;
    s.owners.remove(&id);
    if closed.is_some() {
        if let Ok(mut v) = s.closed.lock() {
            v.push(id);
        }
    }
}

/// The `assigned` event from the agent's stream; or, if none came within 2 s (a
/// stream being opened again on another node misses events), the conversation's own
/// record, read every 2 s, for up to 30 s.
async fn wait_for_assignment(
    s: &Arc<RunState>,
    id: &str,
    mut rx: oneshot::Receiver<(Instant, String)>,
) -> Option<(Instant, String)> {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_secs(2), &mut rx).await {
            Ok(Ok(got)) => return Some(got),
            Ok(Err(_)) => return None,
            Err(_) if Instant::now() >= give_up => return None,
            Err(_) => {}
        }
        let read = s.get_moving_on(id, &format!("/v1/conversations/{id}")).await;
        if let Ok(r) = read {
            if let Ok(v) = r.json::<Value>().await {
                if v["state"] == "assigned" {
                    if let Some(agent) = v["agent_id"].as_str() {
                        return Some((Instant::now(), agent.to_string()));
                    }
                }
            }
        }
    }
}

/// Every conversation opened, looked up again.
async fn reconcile(s: &Arc<RunState>) -> BTreeMap<String, u64> {
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
                let state = match s.get_moving_on("", &format!("/v1/conversations/{id}")).await {
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => "lost".to_string(),
                    // An answer without a state is counted under its status (and
                    // a failed request under its kind), so a report says which.
                    Ok(r) => {
                        let status = r.status();
                        r.json::<Value>()
                            .await
                            .ok()
                            .and_then(|v| v["state"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("unreadable (HTTP {})", status.as_u16()))
                    }
                    Err(e) if e.is_timeout() => "unreadable (timeout)".into(),
                    Err(e) if e.is_connect() => "unreadable (connect)".into(),
                    Err(_) => "unreadable (request failed)".into(),
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
