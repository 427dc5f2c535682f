//! Durability, end to end: the real `switchboard` binary with a store, killed with
//! SIGKILL and started again on the same store. Each test makes its own temporary
//! directory; the PostgreSQL test starts its own server (`initdb` + `pg_ctl` on a
//! 127.0.0.1 port) and stops it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

mod pg;

use pg::{Postgres, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

const CONFIG: &str = r#"
[routing]
overflow = 0
closed_retention_secs = 3600

[skill_defaults]
sla = { normal_secs = 3600, urgent_secs = 600, first_time_secs = 1800 }
smart_capacity = { active_weight = 1.0, inactive_weight = 0.25, inactive_after_secs = 1 }

[[skills]]
id = "general"

[[skills]]
id = "sales"
offer_timeout_secs = 600

[[skills]]
id = "retention"

[[skills]]
id = "fast"
sla = { normal_secs = 3, urgent_secs = 3, first_time_secs = 3 }
"#;

/// `switchboard serve` as a child process.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts the server on a port the kernel picks (read back from its log: a port
    /// chosen beforehand could be taken by a concurrent test's server) and waits until
    /// `/readyz` answers 200.
    async fn start(dir: &Path, run: usize, args: &[&str]) -> Server {
        let log = dir.join(format!("server-{run}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("switchboard serve starts");
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        server.wait_ready().await;
        server
    }

    /// The address from the log's "switchboard listening" line.
    fn listening_on(&self) -> Option<String> {
        let text = self.log_text();
        let line = text.lines().find(|l| l.contains("switchboard listening"))?;
        let at = line.find("127.0.0.1:")?;
        let port: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
        Some(format!("http://127.0.0.1:{port}"))
    }

    async fn wait_ready(&mut self) {
        let http = Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.base.is_empty() {
                self.base = self.listening_on().unwrap_or_default();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before it was ready:\n{}", self.log_text());
            }
            if !self.base.is_empty() {
                if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                    if r.status() == StatusCode::OK {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "not ready after 60 s:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Api {
    base: String,
    http: Client,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            base: server.base.clone(),
            http: Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.send(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn open(&self, id: &str, consumer: &str, skill: &str) -> Value {
        self.post(
            "/v1/conversations",
            json!({"conversation_id": id, "consumer_id": consumer, "skill": skill}),
        )
        .await
    }

    async fn agent(&self, id: &str, skills: &[&str], max_slots: u32, status: &str) {
        self.put(
            &format!("/v1/agents/{id}"),
            json!({"skills": skills, "max_slots": max_slots}),
        )
        .await;
        self.post(&format!("/v1/agents/{id}/status"), json!({"status": status}))
            .await;
    }

    /// Polls a conversation until `check` holds (5 s at most).
    async fn until(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.get(&format!("/v1/conversations/{id}")).await;
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{id}: not {what} after 5 s: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the store's writer has committed every change queued so far
    /// (`switchboard_store_pending_changes` is 0): what was written without a waiter,
    /// such as the platform stream's log, is then on disk.
    async fn store_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pending = self.series("switchboard_store_pending_changes", "").await;
            if pending == [0.0] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the store's writer still has {pending:?} pending after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The sum of a metric's series that carry `label` (e.g. `skill="fast"`).
    async fn metric(&self, name: &str, label: &str) -> f64 {
        self.series(name, label).await.iter().sum()
    }

    /// The value of each of a metric's series that carry `label` (all of them for "").
    async fn series(&self, name: &str, label: &str) -> Vec<f64> {
        let (_, text) = self.send(reqwest::Method::GET, "/metrics", None).await;
        let text = text.as_str().unwrap_or_default().to_string();
        text.lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .filter(|l| l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect()
    }
}

/// A frame of the platform stream: its id (none for a `gap`), event name and
/// conversation id (the `gap`'s data instead).
type Frame = (Option<u64>, String, String);

/// The platform stream (`GET /v1/events`) resumed after `last`, read until it has been
/// quiet for 700 ms (the replay comes at once; nothing else happens meanwhile).
async fn platform_events(api: &Api, last: u64) -> Vec<Frame> {
    let resp = api
        .http
        .get(format!("{}/v1/events", api.base))
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .expect("event stream");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_millis(700), body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    let mut frames = Vec::new();
    // Events and gaps (not comments, nor the id-only frame of the position replayed to).
    for block in text
        .split("\n\n")
        .filter(|b| b.lines().any(|l| l.starts_with("event: ")))
    {
        let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
        let data = field("data: ").unwrap_or_default();
        let kind = field("event: ").unwrap_or_default();
        let conversation = match kind.as_str() {
            "gap" => data,
            _ => {
                let v: Value = serde_json::from_str(&data).expect("event JSON");
                v["conversation_id"].as_str().unwrap_or_default().to_string()
            }
        };
        frames.push((
            field("id: ").map(|i| i.parse().expect("numeric id")),
            kind,
            conversation,
        ));
    }
    frames
}

/// An event id's era: `id >> 40` (docs/api.md).
fn era(id: Option<u64>) -> u64 {
    id.expect("an event with an id") >> 40
}

/// The fields of a conversation that must read back exactly as acknowledged.
fn durable_view(v: &Value) -> Value {
    let keys = [
        "conversation_id",
        "consumer_id",
        "skill",
        "state",
        "awaiting",
        "activity",
        "agent_id",
        "urgent",
        "first_time",
        "attributes",
        "opened_at",
        "queued_at",
        "last_consumer_message_at",
        "last_agent_message_at",
        "sla",
        "follow_up_at",
        "closed_by",
        "closed_at",
        "transfers",
    ];
    Value::Object(keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
}

/// The fields of an agent that must read back exactly (offers are void after a crash).
fn agent_view(v: &Value) -> Value {
    let keys = [
        "agent_id",
        "status",
        "status_since",
        "skills",
        "max_slots",
        "max_open",
        "busy",
        "conversations",
    ];
    Value::Object(keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
}

const CONVERSATIONS: &[&str] = &[
    "c-active",
    "c-inactive",
    "c-follow",
    "c-transfer",
    "c-queued",
    "c-closed",
    "c-offered",
    "c-fast",
];
const AGENTS: &[&str] = &["a1", "a2", "a3", "a4", "s1"];

/// Traffic in every state, `kill -9`, a restart on the same store: everything reads
/// back as acknowledged, and routing goes on.
async fn restart_keeps_every_acknowledged_state(dir: &Path, config: &str, store_args: &[&str]) {
    std::fs::write(dir.join("config.toml"), config).expect("config");
    let server = Server::start(dir, 1, store_args).await;
    let api = Api::new(&server);

    api.agent("a1", &["general"], 5, "online").await;
    api.agent("s1", &["sales"], 1, "online").await;
    api.open("c-active", "u-active", "general").await;
    api.open("c-inactive", "u-inactive", "general").await;
    api.open("c-follow", "u-follow", "general").await;
    api.open("c-transfer", "u-transfer", "general").await;
    api.open("c-closed", "u-closed", "general").await;
    for id in ["c-active", "c-inactive", "c-follow", "c-transfer", "c-closed"] {
        api.until(id, "assigned to a1", |v| {
            v["state"] == "assigned" && v["agent_id"] == "a1"
        })
        .await;
    }
    api.post(
        "/v1/conversations/c-inactive/messages",
        json!({"from": "agent", "agent_id": "a1"}),
    )
    .await;
    api.post(
        "/v1/conversations/c-follow/follow-up",
        json!({"agent_id": "a1", "due_in_secs": 7200}),
    )
    .await;
    api.post("/v1/conversations/c-transfer/transfer", json!({"skill": "retention"}))
        .await;
    api.post("/v1/conversations/c-closed/close", json!({"by": "consumer"}))
        .await;
    api.open("c-queued", "u-queued", "retention").await;
    api.open("c-offered", "u-offered", "sales").await;
    api.until("c-offered", "offered to s1", |v| {
        v["state"] == "offered" && v["offered_to"] == "s1"
    })
    .await;
    // Agents in every status.
    api.agent("a2", &["general"], 2, "back_soon").await;
    api.agent("a3", &["general"], 2, "away").await;
    api.agent("a4", &["general"], 2, "offline").await;
    api.until("c-inactive", "inactive", |v| v["activity"] == "inactive")
        .await;
    // Its SLA (3 s) passes while the server is down.
    let fast = api.open("c-fast", "u-fast", "fast").await;
    assert_eq!(fast["sla"]["overdue"], false);
    let opened_fast = Instant::now();

    let mut before = std::collections::BTreeMap::new();
    for id in CONVERSATIONS {
        before.insert(id.to_string(), api.get(&format!("/v1/conversations/{id}")).await);
    }
    let mut agents_before = std::collections::BTreeMap::new();
    for id in AGENTS {
        agents_before.insert(id.to_string(), api.get(&format!("/v1/agents/{id}")).await);
    }
    assert_eq!(before["c-transfer"]["state"], "queued");
    assert_eq!(before["c-transfer"]["skill"], "retention");
    assert!(before["c-follow"]["follow_up_at"].is_string());
    assert_eq!(before["c-closed"]["state"], "closed");
    assert_eq!(agents_before["a1"]["conversations"].as_array().map(Vec::len), Some(3));
    // A skill switched off hours by hand stays so, though the config names the skill.
    let off = api.put("/v1/skills/sales/off-hours", json!({"off_hours": true})).await;
    assert!(off["since"].is_string(), "{off}");
    // The platform stream's log: every event of this start, in order, of one era. Their
    // rows are queued for the writer before the events are streamed, and committed
    // without anyone waiting: the crash comes once the writer has nothing pending.
    let logged = platform_events(&api, 0).await;
    assert!(logged.len() > 20, "{logged:?}");
    assert!(logged.iter().all(|f| f.1 != "gap"), "{logged:?}");
    assert!(logged.windows(2).all(|w| w[0].0 < w[1].0), "ids grow: {logged:?}");
    let first_era = era(logged[0].0);
    assert!(
        first_era >= 1 && logged.iter().all(|f| era(f.0) == first_era),
        "{logged:?}"
    );
    api.store_settled().await;

    server.kill9();
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(opened_fast.elapsed()) + Duration::from_millis(300)).await;

    let server = Server::start(dir, 2, store_args).await;
    let api = Api::new(&server);
    for id in CONVERSATIONS {
        let now = api.get(&format!("/v1/conversations/{id}")).await;
        match *id {
            // An offer pending at the crash is void: the conversation is queued again
            // (and may be offered again, to the only agent of the skill).
            "c-offered" => {
                assert!(
                    now["state"] == "queued" || (now["state"] == "offered" && now["offered_to"] == "s1"),
                    "{now}"
                );
                assert_eq!(now["agent_id"], Value::Null);
            }
            // Its SLA passed while the server was down: overdue now (checked below).
            "c-fast" => {
                let mut expected = durable_view(&before[*id]);
                let now = api.until(id, "overdue", |v| v["sla"]["overdue"] == true).await;
                expected["sla"]["overdue"] = json!(true);
                expected["sla"]["soon_overdue"] = now["sla"]["soon_overdue"].clone();
                assert_eq!(durable_view(&now), expected, "{id}");
            }
            _ => assert_eq!(
                durable_view(&now),
                durable_view(&before[*id]),
                "{id} reads back as acknowledged"
            ),
        }
    }
    // The platform stream resumes across the crash: the events before it, read back
    // from the store, exactly as they were streamed, then this start's, of a later era.
    let resumed = platform_events(&api, 0).await;
    assert!(resumed.len() > logged.len(), "{resumed:?}");
    assert_eq!(
        resumed[..logged.len()],
        logged[..],
        "the stored log reads back as streamed"
    );
    let now_era = era(resumed[logged.len()].0);
    assert!(now_era > first_era, "a restart starts a new era");
    assert!(
        resumed[logged.len()..].iter().all(|f| era(f.0) == now_era),
        "{resumed:?}"
    );
    // From the middle of the old era: what followed, no more.
    let middle = logged[logged.len() / 2].0.expect("id");
    let rest = platform_events(&api, middle).await;
    assert_eq!(
        rest[..logged.len() - logged.len() / 2 - 1],
        logged[logged.len() / 2 + 1..]
    );
    assert_eq!(rest.len(), resumed.len() - logged.len() / 2 - 1, "{rest:?}");

    let still = api.get("/v1/skills/sales/off-hours").await;
    assert_eq!(
        (&still["off_hours"], &still["since"]),
        (&json!(true), &off["since"]),
        "{still}"
    );
    for id in AGENTS {
        let now = api.get(&format!("/v1/agents/{id}")).await;
        assert_eq!(
            agent_view(&now),
            agent_view(&agents_before[*id]),
            "agent {id} reads back"
        );
        let offers = now["offers"].as_array().map(Vec::len).unwrap_or(0);
        assert!(offers <= 1, "{now}");
    }

    // An agent's event stream, reconnected, starts with what the agent holds.
    let resp = api
        .http
        .get(format!("{}/v1/agents/a1/events", api.base))
        .send()
        .await
        .expect("event stream");
    let mut body = resp.bytes_stream();
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a first event within 5 s")
            .expect("stream open")
            .expect("chunk");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(first.starts_with("event: snapshot"), "{first}");
    for id in ["c-active", "c-inactive", "c-follow"] {
        assert!(first.contains(id), "the snapshot lists {id}: {first}");
    }
    drop(body);

    // The SLA that passed while down fired once, and only once.
    let breaches = ("switchboard_sla_breaches_total", "skill=\"fast\"");
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.metric(breaches.0, breaches.1).await < 1.0 {
        assert!(Instant::now() < deadline, "no SLA breach counted after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.metric(breaches.0, breaches.1).await,
        1.0,
        "the passed deadline fired once"
    );

    // Routing goes on: an agent for `retention` takes the two queued there.
    api.agent("r1", &["retention"], 4, "online").await;
    for id in ["c-queued", "c-transfer"] {
        api.until(id, "assigned to r1", |v| {
            v["state"] == "assigned" && v["agent_id"] == "r1"
        })
        .await;
    }
    // A returning consumer is not a first-timer, and goes back to their agent.
    let back = api.open("c-return", "u-closed", "general").await;
    assert_eq!(back["first_time"], false, "{back}");
    api.until("c-return", "assigned to a1", |v| v["agent_id"] == "a1").await;
    // The store is readable by the next start too (no damage from the first crash).
    server.kill9();
    let server = Server::start(dir, 3, store_args).await;
    let api = Api::new(&server);
    let again = api.get("/v1/conversations/c-return").await;
    assert_eq!(again["agent_id"], "a1");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_and_restart_loses_nothing_acknowledged() {
    let dir = TempDir::new("restart-sqlite");
    let data = dir.0.join("data");
    let data = data.to_str().expect("utf-8 path");
    restart_keeps_every_acknowledged_state(&dir.0, CONFIG, &["--data-dir", data]).await;
    assert!(dir.0.join("data/switchboard.db").exists());
    assert!(
        change_log_segments(&dir.0.join("data")) >= 1,
        "the default writes a change log"
    );
}

/// The change log's files (its segments and spare) in a data directory.
fn change_log_segments(data: &Path) -> usize {
    std::fs::read_dir(data)
        .expect("data dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains("-changes."))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_the_change_log_kill_9_and_restart_loses_nothing_acknowledged() {
    // The default commits groups to the change log; this is the path that commits
    // them to the tables (`[store] change_log = false`).
    let dir = TempDir::new("restart-sqlite-tables");
    let data = dir.0.join("data");
    let data = data.to_str().expect("utf-8 path");
    let config = format!("{CONFIG}\n[store]\nchange_log = false\n");
    restart_keeps_every_acknowledged_state(&dir.0, &config, &["--data-dir", data]).await;
    assert_eq!(change_log_segments(&dir.0.join("data")), 0, "no change log is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_stops_start_up_with_an_error_naming_the_file() {
    let dir = TempDir::new("corrupt");
    std::fs::write(dir.0.join("config.toml"), CONFIG).expect("config");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let db = data.join("switchboard.db");
    let garbage = vec![0x5a_u8; 64 * 1024];
    std::fs::write(&db, &garbage).expect("garbage");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(dir.0.join("config.toml"))
        .output()
        .expect("runs");
    assert!(!out.status.success(), "a corrupt store must stop start-up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&db.display().to_string()),
        "the error names the file: {err}"
    );
    assert_eq!(std::fs::read(&db).expect("still there"), garbage, "never replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_and_restart_loses_nothing_acknowledged() {
    let dir = TempDir::new("restart-postgres");
    let pg = Postgres::start(&dir.0);
    // The store's url goes in the config; the rest is the same test.
    let text = format!("{CONFIG}\n[store]\nurl = \"{}\"\n", pg.url());
    let sub = dir.0.join("run");
    std::fs::create_dir_all(&sub).expect("run dir");
    restart_keeps_every_acknowledged_state(&sub, &text, &[]).await;
    // The rows are there for psql.
    let out = pg
        .command("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "switchboard",
            "-d",
            "postgres",
            "-tAc",
        ])
        .arg("SELECT count(*) FROM conversations WHERE state = 'closed'")
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(pg);
}

/// The store keeps the newest `store.events_kept` events: a client resuming from
/// before them after a restart is told of the gap, then gets what is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_in_the_store_keeps_its_window_and_says_what_is_missed() {
    let dir = TempDir::new("event-window");
    std::fs::write(
        dir.0.join("config.toml"),
        format!("{CONFIG}\n[store]\nevents_kept = 20\n"),
    )
    .expect("config");
    let data = dir.0.join("data");
    let data = data.to_str().expect("utf-8 path").to_string();
    let server = Server::start(&dir.0, 1, &["--data-dir", &data]).await;
    let api = Api::new(&server);
    api.agent("a1", &["general"], 50, "online").await;
    for n in 0..25 {
        api.open(&format!("c{n}"), &format!("u{n}"), "general").await;
    }
    for n in 0..25 {
        api.until(&format!("c{n}"), "assigned", |v| v["state"] == "assigned")
            .await;
    }
    let logged = platform_events(&api, 0).await;
    assert!(logged.len() >= 40, "{logged:?}");
    api.store_settled().await;
    server.kill9();

    let server = Server::start(&dir.0, 2, &["--data-dir", &data]).await;
    let api = Api::new(&server);
    let resumed = platform_events(&api, 0).await;
    let kept: Vec<&Frame> = resumed
        .iter()
        .filter(|f| f.0.is_some_and(|id| id >> 40 == era(logged[0].0)))
        .collect();
    // Trimmed every 10 events to the newest 20: 20 to 29 kept, the newest of them.
    assert!((20..30).contains(&kept.len()), "{resumed:?}");
    let newest: Vec<&Frame> = logged[logged.len() - kept.len()..].iter().collect();
    assert_eq!(kept, newest);
    assert_eq!(resumed[0].1, "gap", "{resumed:?}");
    let first_kept = kept[0].0.expect("id");
    assert_eq!(
        serde_json::from_str::<Value>(&resumed[0].2).expect("gap JSON"),
        json!({"missed_from": 1, "oldest_kept": first_kept})
    );
    // From an id still kept: no gap.
    let rest = platform_events(&api, first_kept).await;
    assert_eq!(rest[0], *kept[1], "{rest:?}");
    drop(server);
}

/// The store survives a restart of its PostgreSQL: commits fail while it is down
/// (`/readyz` says so, the requests wait), the writer connects again, and what was
/// acknowledged before and after is all there after a `kill -9` of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_is_ridden_out() {
    let dir = TempDir::new("pg-restart");
    let pg = Postgres::start(&dir.0);
    let run = dir.0.join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    let config = format!("{CONFIG}\n[store]\nurl = \"{}\"\n", pg.url());
    std::fs::write(run.join("config.toml"), config).expect("config");
    let server = Server::start(&run, 1, &[]).await;
    let api = Api::new(&server);
    api.open("before", "u1", "general").await;

    let down = tokio::task::spawn_blocking(move || {
        pg.restart(Duration::from_secs(2));
        pg
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Sent while the database is down: answered once it is back and the commit is done.
    let during = {
        let api = Api::new(&server);
        tokio::spawn(async move {
            api.send(
                reqwest::Method::POST,
                "/v1/conversations",
                Some(json!({"conversation_id": "during", "consumer_id": "u2", "skill": "general"})),
            )
            .await
            .0
        })
    };
    // Meanwhile the node says it is not ready.
    let readyz = format!("{}/readyz", server.base);
    let mut unready = false;
    for _ in 0..30 {
        let status = Client::new().get(&readyz).send().await.expect("readyz").status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unready, "/readyz answers 503 while commits fail");
    let status = during.await.expect("request task");
    assert!(status.is_success(), "{status}");
    let pg = down.await.expect("restarted");
    let status = Client::new().get(&readyz).send().await.expect("readyz").status();
    assert_eq!(status, StatusCode::OK, "ready again");
    api.open("after", "u3", "general").await;
    assert!(
        server.log_text().contains("connected again to the PostgreSQL store"),
        "{}",
        server.log_text()
    );

    server.kill9();
    let server = Server::start(&run, 2, &[]).await;
    let api = Api::new(&server);
    for id in ["before", "during", "after"] {
        let c = api.get(&format!("/v1/conversations/{id}")).await;
        assert_eq!(c["conversation_id"], id);
    }
    drop(server);
    drop(pg);
}

/// `switchboard loadtest` against a server that is killed mid-run and restarted: the
/// load tool's ledger of acknowledged conversations reconciles with 0 lost, no
/// acknowledged close undone, none held by two agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_nothing_acknowledged() {
    let dir = TempDir::new("crash-load");
    std::fs::write(dir.0.join("config.toml"), "[routing]\n").expect("config");
    let data = dir.0.join("data");
    let data = data.to_str().expect("utf-8 path").to_string();
    let server = Server::start(&dir.0, 1, &["--data-dir", &data]).await;
    let ledger = dir.0.join("ledger.json");
    let mut load = Command::new(BIN)
        .args(["loadtest", "--url", &server.base, "--rate", "150", "--duration", "4s"])
        .args(["--agents", "20", "--skills", "2", "--drain", "2s", "--ledger"])
        .arg(&ledger)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadtest starts");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    // The load tool goes on against a dead server (its requests fail: nothing more is
    // acknowledged) and writes its ledger.
    let status = tokio::task::spawn_blocking(move || load.wait())
        .await
        .expect("join")
        .expect("wait");
    let _ = status; // it fails: conversations were unreachable mid-run
    let text = std::fs::read_to_string(&ledger).expect("the ledger is written");
    let ledger_value: Value = serde_json::from_str(&text).expect("ledger JSON");
    let acknowledged = ledger_value["opened"].as_array().map(Vec::len).unwrap_or(0);
    let closed = ledger_value["closed"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        acknowledged > 100,
        "the run acknowledged {acknowledged} opens before the crash"
    );
    assert!(closed > 0, "and {closed} closes");

    let server = Server::start(&dir.0, 2, &["--data-dir", &data]).await;
    let out = Command::new(BIN)
        .args(["loadtest", "--url", &server.base, "--reconcile-only", "--ledger"])
        .arg(&ledger)
        .arg("--json")
        .arg(dir.0.join("reconciled.json"))
        .output()
        .expect("reconcile runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.0.join("reconciled.json")).expect("json"))
        .expect("reconciliation JSON");
    assert_eq!(r["acknowledged"], acknowledged as u64);
    assert_eq!(r["lost"], 0, "{report}");
    assert_eq!(r["reopened"], 0, "{report}");
    assert_eq!(r["held_twice"], 0, "{report}");
    assert_eq!(r["holder_mismatch"], 0, "{report}");
    eprintln!("{report}");
    drop(server);
}
