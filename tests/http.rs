//! The real server on port 0, driven over HTTP: whole conversations, the agent event
//! stream, and every kind of bad input (each answered with a JSON error that changes
//! nothing).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use switchboard::api::RunningServer;
use switchboard::config::Config;
use switchboard::time::Clock;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 2048
EXTRA

[[skills]]
id = "general"

[[skills]]
id = "sales"
offer_timeout_secs = 60
"#;

async fn start(extra: &str) -> RunningServer {
    let config = Config::from_toml(&CONFIG.replace("EXTRA", extra), &BTreeMap::new()).expect("config");
    switchboard::api::start(config, Clock::system())
        .await
        .expect("server starts")
}

struct Api {
    base: String,
    http: Client,
    token: Option<String>,
}

impl Api {
    fn new(server: &RunningServer) -> Self {
        Api {
            base: format!("http://{}", server.addr),
            http: Client::new(),
            token: None,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Registers an agent of `skills` and puts it online.
    async fn agent_online(&self, id: &str, skills: &[&str], max_slots: u32) {
        let (s, a) = self
            .put(
                &format!("/v1/agents/{id}"),
                json!({"skills": skills, "max_slots": max_slots}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
        let (s, a) = self
            .post(&format!("/v1/agents/{id}/status"), json!({"status": "online"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
    }

    /// Opens conversation `id` of `consumer` on `skill`.
    async fn open(&self, id: &str, consumer: &str, skill: &str) {
        let (s, c) = self
            .post(
                "/v1/conversations",
                json!({"conversation_id": id, "consumer_id": consumer, "skill": skill}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: &'static str) -> (StatusCode, Value) {
        let resp = self
            .req(method, path)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// Polls a condition against the server with a deadline (no fixed sleeps).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

/// Reads SSE frames until one with an `event:` line; returns its id, name and data.
async fn next_frame<S>(stream: &mut S, buf: &mut String) -> (Option<u64>, String, Value)
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, None, Value::Null);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).expect("event JSON");
                }
            }
            if let Some(name) = name {
                return (id, name, data);
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("chunk");
        buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
}

/// Reads SSE frames until one of `event` type arrives; its data.
async fn next_event<S>(stream: &mut S, buf: &mut String, event: &str) -> Value
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    loop {
        let (_, name, data) = next_frame(stream, buf).await;
        if name == event {
            return data;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_receives_an_offer_on_its_event_stream_accepts_and_serves_the_conversation() {
    let server = start("").await;
    let api = Api::new(&server);
    let (s, _) = api
        .put("/v1/agents/ann", json!({"skills": ["sales"], "max_slots": 2}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, a) = api.post("/v1/agents/ann/status", json!({"status": "online"})).await;
    assert_eq!((s, a["status"].as_str()), (StatusCode::OK, Some("online")));

    let resp = api
        .req(reqwest::Method::GET, "/v1/agents/ann/events")
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();

    let (s, c) = api
        .post(
            "/v1/conversations",
            json!({"conversation_id": "conv-1", "consumer_id": "u1", "skill": "sales", "attributes": {"tier": "vip"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["conversation_id"], "conv-1");
    assert_eq!(c["sla"]["kind"], "first_time");

    let offer = next_event(&mut stream, &mut buf, "offer").await;
    assert_eq!(offer["conversation_id"], "conv-1");
    assert_eq!(offer["type"], "offer", "the JSON's type is the SSE event's name");
    assert!(offer["expires_at"].is_string());
    let (s, c) = api.get("/v1/conversations/conv-1").await;
    assert_eq!(
        (s, c["state"].as_str(), c["offered_to"].as_str()),
        (StatusCode::OK, Some("offered"), Some("ann"))
    );

    let (s, c) = api
        .post("/v1/conversations/conv-1/accept", json!({"agent_id": "ann"}))
        .await;
    assert_eq!(
        (s, c["state"].as_str(), c["agent_id"].as_str()),
        (StatusCode::OK, Some("assigned"), Some("ann")),
        "{c}"
    );
    let assigned = next_event(&mut stream, &mut buf, "assigned").await;
    assert_eq!(assigned["conversation_id"], "conv-1");

    let (s, c) = api
        .post(
            "/v1/conversations/conv-1/messages",
            json!({"from": "agent", "agent_id": "ann"}),
        )
        .await;
    assert_eq!((s, c["awaiting"].as_str()), (StatusCode::OK, Some("consumer")));
    let (s, c) = api
        .post("/v1/conversations/conv-1/messages", json!({"from": "consumer"}))
        .await;
    assert_eq!(
        (s, c["awaiting"].as_str(), c["actionable"].as_bool()),
        (StatusCode::OK, Some("agent"), Some(true))
    );
    let (s, c) = api
        .post(
            "/v1/conversations/conv-1/follow-up",
            json!({"agent_id": "ann", "due_in_secs": 7200}),
        )
        .await;
    assert_eq!(
        (s, c["sla"]["kind"].as_str(), c["activity"].as_str()),
        (StatusCode::OK, Some("manual"), Some("inactive"))
    );
    let (s, a) = api.get("/v1/agents/ann").await;
    assert_eq!((s, a["busy"].as_f64()), (StatusCode::OK, Some(0.1)), "{a}");

    let (s, c) = api
        .post(
            "/v1/conversations/conv-1/close",
            json!({"by": "agent", "agent_id": "ann"}),
        )
        .await;
    assert_eq!(
        (s, c["state"].as_str(), c["closed_by"].as_str()),
        (StatusCode::OK, Some("closed"), Some("agent"))
    );
    eventually("agent freed", || async {
        api.get("/v1/agents/ann").await.1["conversations"]
            .as_array()
            .is_some_and(|v| v.is_empty())
    })
    .await;

    let series = [
        "switchboard_assignments_total{skill=\"sales\"} 1",
        "switchboard_offers_total{outcome=\"offered\",skill=\"sales\"} 1",
        "switchboard_conversations_closed_total{by=\"agent\",skill=\"sales\"} 1",
        "switchboard_agent_event_streams 1",
        "switchboard_http_requests_total{method=\"POST\",route=\"/v1/conversations/{conversation_id}/accept\",status=\"200\"} 1",
    ];
    // The counters follow the router's events, which are published as the actors
    // handle them: a reply can come back a moment before its counter moves.
    eventually("every series counted", || async {
        let text = api.get("/metrics").await.1.as_str().unwrap_or_default().to_string();
        series.iter().all(|s| text.contains(s))
    })
    .await;
    let (_, metrics) = api.get("/metrics").await;
    let text = metrics.as_str().expect("text");
    for s in series {
        assert!(text.contains(s), "missing {s} in\n{text}");
    }
    assert!(
        !text.contains("\"conv-1\"") && !text.contains("\"ann\""),
        "no ids in labels"
    );

    // Shutdown ends the event stream cleanly.
    server.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the event stream ended with the server");
}

/// Queue backlog management over HTTP: answering a consumer message older than
/// `backlog_after_secs` frees the conversation's weight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_a_backlogged_conversation_frees_its_weight_over_http() {
    let server = start("[routing]\nbacklog_after_secs = 1").await;
    let api = Api::new(&server);
    api.open("c1", "u1", "general").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    api.agent_online("ann", &["general"], 2).await;
    eventually("assigned", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "ann"
    })
    .await;
    let (s, c) = api
        .post(
            "/v1/conversations/c1/messages",
            json!({"from": "agent", "agent_id": "ann"}),
        )
        .await;
    assert_eq!((s, c["activity"].as_str()), (StatusCode::OK, Some("inactive")), "{c}");
    eventually("the agent carries the inactive weight", || async {
        api.get("/v1/agents/ann").await.1["busy"].as_f64() == Some(0.1)
    })
    .await;
    server.stop().await;
}

/// A follow-up returned to the queue waits in line from when it comes due
/// (`reactivate_before_secs` ahead of its time), whatever the consumer writes meanwhile:
/// the queue row's `queued_at` is that instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_in_queue_counts_from_when_a_follow_up_comes_due_over_http() {
    let server = start("[routing]\nreactivate_before_secs = 1").await;
    let api = Api::new(&server);
    api.agent_online("ann", &["general"], 2).await;
    api.open("c1", "u1", "general").await;
    eventually("assigned", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "ann"
    })
    .await;
    let (s, set) = api
        .post(
            "/v1/conversations/c1/follow-up",
            json!({"agent_id": "ann", "due_in_secs": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{set}");
    api.post("/v1/agents/ann/status", json!({"status": "away"})).await;
    let (s, queued) = api
        .post("/v1/conversations/c1/return-to-queue", json!({"agent_id": "ann"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{queued}");
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["actionable"], false, "the follow-up is not due: {queued}");
    let (s, wrote) = api
        .post("/v1/conversations/c1/messages", json!({"from": "consumer"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        wrote["actionable"], false,
        "a consumer message does not change it: {wrote}"
    );
    assert_eq!(wrote["sla"]["kind"], "manual");
    eventually("actionable a second before it is due", || async {
        api.get("/v1/conversations/c1").await.1["actionable"] == true
    })
    .await;
    let due: chrono::DateTime<chrono::Utc> = set["follow_up_at"]
        .as_str()
        .expect("follow_up_at")
        .parse()
        .expect("time");
    let (_, q) = api.get("/v1/skills/general/queue").await;
    let row = &q["conversations"][0];
    assert_eq!(row["conversation_id"], "c1");
    let in_line: chrono::DateTime<chrono::Utc> = row["queued_at"].as_str().expect("queued_at").parse().expect("time");
    assert_eq!(due - in_line, chrono::Duration::seconds(1), "{row}");
    assert_ne!(row["queued_at"], queued["queued_at"], "not since it entered the queue");
    server.stop().await;
}

/// `[routing.unassign]` over HTTP: an online agent who leaves a consumer message
/// unanswered past `unresponsive_after_secs` loses the conversation to another agent
/// (its event stream says `unassigned` with reason `unresponsive`); one it answered, and
/// every conversation of an agent who goes away (no `away_after_secs`), stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_agent_loses_the_conversation_over_http() {
    let server = start("[routing.unassign]\nunresponsive_after_secs = 1").await;
    let api = Api::new(&server);
    api.agent_online("ann", &["general"], 3).await;
    let resp = api
        .req(reqwest::Method::GET, "/v1/agents/ann/events")
        .send()
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    api.open("c1", "u1", "general").await;
    api.open("c2", "u2", "general").await;
    let (s, _) = api
        .post(
            "/v1/conversations/c2/messages",
            json!({"from": "agent", "agent_id": "ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    api.agent_online("bob", &["general"], 3).await;
    let e = next_event(&mut stream, &mut buf, "unassigned").await;
    assert_eq!(
        (e["conversation_id"].as_str(), e["reason"].as_str()),
        (Some("c1"), Some("unresponsive")),
        "{e}"
    );
    eventually("c1 with bob", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "bob"
    })
    .await;
    let (_, c2) = api.get("/v1/conversations/c2").await;
    assert_eq!(c2["agent_id"], "ann", "answered: kept {c2}");
    // Away without `away_after_secs`: bob keeps c1, though it waits for him.
    let (s, _) = api.post("/v1/agents/bob/status", json!({"status": "away"})).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, c1) = api.get("/v1/conversations/c1").await;
    assert_eq!(c1["agent_id"], "bob", "away keeps its conversations by default: {c1}");
    server.stop().await;
}

/// Transfers and fallback as LivePerson over HTTP: `transfer_to` and
/// `fallback_when_away` set with `PUT /v1/skills` (an unknown skill refused, nothing
/// changed); an agent and a skill in one request (the agent wrote last: no SLA, routed
/// all the same); a transfer outside `transfer_to` is 409 and changes nothing; a
/// conversation returned to the queue does not fall back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_and_fallback_follow_liveperson_s_rules_over_http() {
    let server = start("").await;
    let api = Api::new(&server);
    let (s, e) = api.put("/v1/skills/vip", json!({"transfer_to": ["nope"]})).await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"), "{e}");
    assert_eq!(
        api.get("/v1/skills/vip").await.0,
        StatusCode::NOT_FOUND,
        "nothing created"
    );
    let (s, retention) = api
        .put("/v1/skills/retention", json!({"fallback_skill": "sales"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{retention}");
    assert_eq!(retention["fallback_when_away"], true, "the default");
    let (s, general) = api
        .put("/v1/skills/general", json!({"transfer_to": ["retention"]}))
        .await;
    assert_eq!(
        (s, &general["transfer_to"]),
        (StatusCode::OK, &json!(["retention"])),
        "{general}"
    );

    api.agent_online("ann", &["general"], 3).await;
    api.agent_online("rita", &["retention"], 3).await;
    api.open("c1", "u1", "general").await;
    eventually("c1 with ann", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "ann"
    })
    .await;
    api.post(
        "/v1/conversations/c1/messages",
        json!({"from": "agent", "agent_id": "ann"}),
    )
    .await;
    let (s, c) = api
        .post(
            "/v1/conversations/c1/transfer",
            json!({"agent_id": "rita", "skill": "retention"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        (&c["skill"], &c["sla"], &c["actionable"]),
        (&json!("retention"), &Value::Null, &json!(true)),
        "{c}"
    );
    eventually("c1 with rita", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "rita"
    })
    .await;

    api.open("c2", "u2", "general").await;
    eventually("c2 with ann", || async {
        api.get("/v1/conversations/c2").await.1["agent_id"] == "ann"
    })
    .await;
    let (s, e) = api
        .post("/v1/conversations/c2/transfer", json!({"skill": "sales"}))
        .await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "conflict"), "{e}");
    let (_, c2) = api.get("/v1/conversations/c2").await;
    assert_eq!(
        (&c2["skill"], &c2["agent_id"], &c2["transfers"]),
        (&json!("general"), &json!("ann"), &json!(0)),
        "{c2}"
    );

    // rita takes a break and gives c1 back: retention has no agent online, but c1 was
    // assigned once, so it does not fall back to sales (where bob is online).
    api.agent_online("bob", &["sales"], 3).await;
    api.post("/v1/agents/rita/status", json!({"status": "back_soon"})).await;
    let (s, c) = api
        .post("/v1/conversations/c1/return-to-queue", json!({"agent_id": "rita"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    api.post(
        "/v1/conversations",
        json!({"conversation_id": "c3", "consumer_id": "u3", "skill": "retention"}),
    )
    .await;
    eventually("a new retention conversation falls back to bob", || async {
        api.get("/v1/conversations/c3").await.1["agent_id"] == "bob"
    })
    .await;
    let (_, c1) = api.get("/v1/conversations/c1").await;
    assert_eq!(
        (&c1["state"], &c1["agent_id"]),
        (&json!("queued"), &Value::Null),
        "{c1}"
    );
    // Queue health tells why it waits (LivePerson's split).
    let (s, h) = api.get("/v1/queue-health").await;
    assert_eq!(s, StatusCode::OK);
    let r = &h["skills"]["retention"];
    assert_eq!(
        (
            &r["actionable"],
            &r["actionable_returned"],
            &r["actionable_transferred"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{r}"
    );
    assert!(r.get("estimated_wait_secs").is_some(), "{r}");
    server.stop().await;
}

/// `POST /v1/conversations/{id}/reopen`: the consumer's reopen goes back to the last
/// agent (`assigned` on its event stream); bad bodies are 400, an open conversation 409,
/// an agent without the skill 409, and none of them changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_conversation_is_reopened_over_http() {
    let server = start("").await;
    let api = Api::new(&server);
    api.agent_online("ann", &["general"], 3).await;
    api.agent_online("sam", &["sales"], 3).await;
    api.open("c1", "u1", "general").await;
    eventually("c1 with ann", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "ann"
    })
    .await;
    let (s, e) = api.post("/v1/conversations/c1/reopen", json!({"by": "consumer"})).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "conflict"), "open: {e}");
    let (s, _) = api
        .post("/v1/conversations/c1/close", json!({"by": "agent", "agent_id": "ann"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let resp = api
        .req(reqwest::Method::GET, "/v1/agents/ann/events")
        .send()
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    for (body, status) in [
        (json!({"by": "agent"}), StatusCode::BAD_REQUEST),
        (json!({"by": "consumer", "agent_id": "ann"}), StatusCode::BAD_REQUEST),
        (json!({"by": "system"}), StatusCode::BAD_REQUEST),
        (json!({"by": "agent", "agent_id": "sam"}), StatusCode::CONFLICT),
        (json!({"by": "agent", "agent_id": "nobody"}), StatusCode::NOT_FOUND),
    ] {
        let (s, e) = api.post("/v1/conversations/c1/reopen", body.clone()).await;
        assert_eq!(s, status, "{body}: {e}");
        let (_, c1) = api.get("/v1/conversations/c1").await;
        assert_eq!(c1["state"], "closed", "{body} changed nothing");
    }
    let (s, c) = api.post("/v1/conversations/c1/reopen", json!({"by": "consumer"})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!((&c["closed_at"], &c["actionable"]), (&Value::Null, &json!(true)), "{c}");
    let e = next_event(&mut stream, &mut buf, "assigned").await;
    assert_eq!(e["conversation_id"], "c1", "back to ann: {e}");
    let (_, c1) = api.get("/v1/conversations/c1").await;
    assert_eq!(
        (&c1["state"], &c1["agent_id"]),
        (&json!("assigned"), &json!("ann")),
        "{c1}"
    );
    server.stop().await;
}

/// Working hours in a named time zone over `PUT /v1/skills/{id}`, and the manual
/// off-hours switch: while on, the skill's waits have no deadline; switched back, they
/// have one again. Bad input changes nothing.
#[tokio::test]
async fn working_hours_in_a_time_zone_and_the_off_hours_switch_over_http() {
    let server = start("").await;
    let api = Api::new(&server);
    let hours = json!({"working_hours": {"time_zone": "Europe/Berlin", "monday": ["09:00-12:00", "11:00-17:00"]}});
    let (s, k) = api.put("/v1/skills/berlin", hours).await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(k["working_hours"]["time_zone"], "Europe/Berlin", "{k}");
    assert_eq!(k["working_hours"]["monday"], json!(["09:00-17:00"]), "merged: {k}");
    let (s, e) = api
        .put(
            "/v1/skills/berlin",
            json!({"working_hours": {"time_zone": "Mars/Olympus", "monday": ["09:00-17:00"]}}),
        )
        .await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"), "{e}");
    assert!(
        e["error"]["message"].as_str().is_some_and(|m| m.contains("time_zone")),
        "{e}"
    );
    let (_, k) = api.get("/v1/skills/berlin").await;
    assert_eq!(k["working_hours"]["time_zone"], "Europe/Berlin", "unchanged: {k}");

    let (s, o) = api.get("/v1/skills/general/off-hours").await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(
        (&o["off_hours"], &o["since"], &o["open_now"]),
        (&json!(false), &Value::Null, &json!(true)),
        "{o}"
    );
    api.open("c1", "u1", "general").await;
    let (_, c1) = api.get("/v1/conversations/c1").await;
    assert!(c1["sla"]["due_at"].is_string(), "{c1}");
    for (body, status) in [
        ("{}", StatusCode::BAD_REQUEST),
        (r#"{"off_hours": "yes"}"#, StatusCode::BAD_REQUEST),
        (r#"{"off_hours": true, "until": "tomorrow"}"#, StatusCode::BAD_REQUEST),
    ] {
        let (s, e) = api
            .raw(reqwest::Method::PUT, "/v1/skills/general/off-hours", body)
            .await;
        assert_eq!(s, status, "{body}: {e}");
        let (_, o) = api.get("/v1/skills/general/off-hours").await;
        assert_eq!(o["off_hours"], false, "{body} changed nothing");
    }
    let (s, e) = api.put("/v1/skills/nope/off-hours", json!({"off_hours": true})).await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "not_found"), "{e}");

    let (s, o) = api
        .put("/v1/skills/general/off-hours", json!({"off_hours": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!((&o["off_hours"], &o["open_now"]), (&json!(true), &json!(false)), "{o}");
    let since = o["since"].clone();
    assert!(since.is_string(), "{o}");
    let (_, again) = api
        .put("/v1/skills/general/off-hours", json!({"off_hours": true}))
        .await;
    assert_eq!(again["since"], since, "switching on again changes nothing");
    eventually("c1 without a deadline", || async {
        api.get("/v1/conversations/c1").await.1["sla"].is_null()
    })
    .await;
    // The skill's settings replaced: the switch stays.
    let (s, _) = api
        .put("/v1/skills/general", json!({"sla": {"normal_secs": 600}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, o) = api.get("/v1/skills/general/off-hours").await;
    assert_eq!(o["since"], since, "{o}");

    let (s, o) = api
        .put("/v1/skills/general/off-hours", json!({"off_hours": false}))
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(
        (&o["off_hours"], &o["since"], &o["open_now"]),
        (&json!(false), &Value::Null, &json!(true)),
        "{o}"
    );
    eventually("c1 with a deadline again", || async {
        api.get("/v1/conversations/c1").await.1["sla"]["due_at"].is_string()
    })
    .await;
    server.stop().await;
}

/// Agent groups over HTTP: a skill's `group_routing` (a split, then a cascade), agents
/// with a `group`, and `GET /v1/agents?group=`. Bad routing changes nothing.
#[tokio::test]
async fn skills_route_to_agent_groups_over_http() {
    let server = start("").await;
    let api = Api::new(&server);
    for (body, what) in [
        (json!({"group_routing": {"split": {"a": 50, "b": 40}}}), "sum 90"),
        (
            json!({"group_routing": {"cascade": ["a"], "split": {"a": 100}}}),
            "both",
        ),
        (json!({"group_routing": {"cascade": "a"}}), "not a list"),
    ] {
        let (s, e) = api.put("/v1/skills/vendors", body).await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{what}: {e}"
        );
        let (s, _) = api.get("/v1/skills/vendors").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{what} created nothing");
    }
    let (s, k) = api
        .put(
            "/v1/skills/vendors",
            json!({"group_routing": {"split": {"a": 50, "b": 50}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(k["group_routing"], json!({"split": {"a": 50, "b": 50}}), "{k}");
    for (id, group) in [("ann", "a"), ("bob", "b")] {
        let (s, a) = api
            .put(
                &format!("/v1/agents/{id}"),
                json!({"skills": ["vendors"], "max_slots": 10, "group": group}),
            )
            .await;
        assert_eq!((s, &a["group"]), (StatusCode::OK, &json!(group)), "{a}");
        api.post(&format!("/v1/agents/{id}/status"), json!({"status": "online"}))
            .await;
    }
    let (s, e) = api
        .put(
            "/v1/agents/eve",
            json!({"skills": ["vendors"], "max_slots": 1, "group": "no spaces"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    for i in 0..6 {
        api.open(&format!("v{i}"), &format!("u{i}"), "vendors").await;
    }
    eventually("six assigned, three to each group", || async {
        let (_, list) = api.get("/v1/agents?skill=vendors").await;
        let opens: Vec<u64> = list["agents"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["open"].as_u64()).collect())
            .unwrap_or_default();
        opens == vec![3, 3]
    })
    .await;
    let (s, list) = api.get("/v1/agents?group=b").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["agents"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        (&list["agents"][0]["agent_id"], &list["agents"][0]["group"]),
        (&json!("bob"), &json!("b"))
    );
    let (s, e) = api.get("/v1/agents?group=not%20an%20id").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    // A cascade: bob's group first, ann only once bob is full.
    let (s, _) = api
        .put("/v1/skills/vendors", json!({"group_routing": {"cascade": ["b", "a"]}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    for i in 6..14 {
        api.open(&format!("v{i}"), &format!("u{i}"), "vendors").await;
    }
    eventually("bob full (10 slots + 0.5), ann takes the rest", || async {
        let (_, bob) = api.get("/v1/agents/bob").await;
        let (_, ann) = api.get("/v1/agents/ann").await;
        bob["conversations"].as_array().map(Vec::len) == Some(10)
            && ann["conversations"].as_array().map(Vec::len) == Some(4)
    })
    .await;
    server.stop().await;
}

/// `routing.disconnected_away_after_secs`: an online agent with no event stream is set
/// away; one with a stream stays online; the agent's own view says whether it is
/// connected.
#[tokio::test]
async fn an_agent_without_an_event_stream_is_set_away_when_configured() {
    let server = start("[routing]\ndisconnected_away_after_secs = 1").await;
    let api = Api::new(&server);
    api.agent_online("ann", &["general"], 2).await;
    api.agent_online("bob", &["general"], 2).await;
    let (_, ann) = api.get("/v1/agents/ann").await;
    assert_eq!(ann["connected"], false, "{ann}");
    let resp = api
        .req(reqwest::Method::GET, "/v1/agents/bob/events")
        .send()
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let snapshot = next_event(&mut stream, &mut buf, "snapshot").await;
    assert_eq!(snapshot["connected"], true, "{snapshot}");
    let (_, bob) = api.get("/v1/agents/bob").await;
    assert_eq!(bob["connected"], true, "{bob}");
    eventually("ann away", || async {
        api.get("/v1/agents/ann").await.1["status"] == "away"
    })
    .await;
    // Well past the second: bob, connected, is still online.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, bob) = api.get("/v1/agents/bob").await;
    assert_eq!(
        (&bob["status"], &bob["connected"]),
        (&json!("online"), &json!(true)),
        "{bob}"
    );
    drop(stream);
    server.stop().await;
}

/// `GET /v1/agents` for supervisors: filtered by status and skill, each agent with its
/// status, reason, time in state, load, open and offered counts, and whether it has an
/// open event stream (`connected`; the count of those without is a metric). Bad filters
/// are 400 (unknown skill 404) and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_list_agents_with_status_reason_load_and_connection() {
    let server = start("[routing]\naway_reasons = [\"lunch\"]").await;
    let api = Api::new(&server);
    api.agent_online("ann", &["general"], 2).await;
    api.agent_online("bob", &["general", "sales"], 4).await;
    api.agent_online("cat", &["sales"], 1).await;
    let resp = api
        .req(reqwest::Method::GET, "/v1/agents/ann/events")
        .send()
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    next_event(&mut stream, &mut buf, "snapshot").await;
    api.open("c1", "u1", "general").await;
    let (s, a) = api
        .post("/v1/agents/cat/status", json!({"status": "away", "reason": "lunch"}))
        .await;
    assert_eq!((s, &a["reason"]), (StatusCode::OK, &json!("lunch")), "{a}");
    let (s, e) = api
        .post("/v1/agents/cat/status", json!({"status": "away", "reason": "nap"}))
        .await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "invalid_request"), "{e}");
    eventually("c1 assigned", || async {
        !api.get("/v1/conversations/c1").await.1["agent_id"].is_null()
    })
    .await;

    let (s, all) = api.get("/v1/agents").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let ids: Vec<&str> = all["agents"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["ann", "bob", "cat"]);
    let ann = &all["agents"][0];
    assert_eq!(
        (&ann["status"], &ann["connected"]),
        (&json!("online"), &json!(true)),
        "{ann}"
    );
    assert_eq!(all["agents"][1]["connected"], false);
    let open: u64 = all["agents"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["open"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(open, 1, "{all}");
    let (_, away) = api.get("/v1/agents?status=away").await;
    assert_eq!(away["agents"].as_array().map(Vec::len), Some(1), "{away}");
    let cat = &away["agents"][0];
    assert_eq!(
        (&cat["agent_id"], &cat["reason"], &cat["offered"]),
        (&json!("cat"), &json!("lunch"), &json!(0)),
        "{cat}"
    );
    assert!(cat["in_status_secs"].as_u64().is_some(), "{cat}");
    let (_, sales) = api.get("/v1/agents?skill=sales&status=online").await;
    assert_eq!(sales["agents"].as_array().map(Vec::len), Some(1), "{sales}");
    assert_eq!(sales["agents"][0]["agent_id"], "bob");
    for (query, status) in [
        ("/v1/agents?status=lunch", StatusCode::BAD_REQUEST),
        ("/v1/agents?group=not%20an%20id", StatusCode::BAD_REQUEST),
        ("/v1/agents?skill=nope", StatusCode::NOT_FOUND),
    ] {
        let (s, e) = api.get(query).await;
        assert_eq!(s, status, "{query}: {e}");
    }
    let metrics = api
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("switchboard_agents_disconnected{status=\"online\"} 1"),
        "bob has no stream"
    );
    assert!(
        metrics.contains("switchboard_agents_disconnected{status=\"away\"} 1"),
        "nor cat"
    );
    drop(stream);
    server.stop().await;
}

/// `GET /v1/events`: every event of the router with an id, filtered by type (and
/// skill); a client that reconnects with `Last-Event-ID` gets what it missed, and one
/// that asks for an id older than the log gets a `gap` event first. Bad filters are 400
/// (an unknown skill 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_event_stream_filters_and_resumes_with_last_event_id() {
    let server = start("").await;
    let api = Api::new(&server);
    let resp = api
        .req(reqwest::Method::GET, "/v1/events?type=assigned,closed&skill=general")
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    api.agent_online("ann", &["general", "sales"], 3).await;
    api.open("s1", "u0", "sales").await;
    api.open("c1", "u1", "general").await;
    let (assigned_id, name, e) = next_frame(&mut stream, &mut buf).await;
    assert_eq!(
        (name.as_str(), &e["conversation_id"]),
        ("assigned", &json!("c1")),
        "only general's: {e}"
    );
    let assigned_id = assigned_id.expect("an id");
    drop(stream);
    // Missed while disconnected: a message (not asked for) and the close.
    api.post(
        "/v1/conversations/c1/messages",
        json!({"from": "agent", "agent_id": "ann"}),
    )
    .await;
    api.post("/v1/conversations/c1/close", json!({"by": "agent", "agent_id": "ann"}))
        .await;
    let resp = api
        .req(reqwest::Method::GET, "/v1/events?type=assigned,closed&skill=general")
        .header("Last-Event-ID", assigned_id.to_string())
        .send()
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let (closed_id, name, e) = next_frame(&mut stream, &mut buf).await;
    assert_eq!(
        (name.as_str(), &e["conversation_id"], &e["by"]),
        ("closed", &json!("c1"), &json!("agent")),
        "{e}"
    );
    assert!(
        closed_id.expect("id") > assigned_id + 1,
        "the message's events were skipped, not lost"
    );
    drop(stream);
    // An id the log does not reach back to cannot be replayed in full: said so.
    let resp = api
        .req(reqwest::Method::GET, "/v1/events?type=closed")
        .header("Last-Event-ID", "0")
        .send()
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let (_, name, _) = next_frame(&mut stream, &mut buf).await;
    assert_eq!(name, "closed", "the log reaches back to the first event: no gap");
    drop(stream);
    // A Last-Event-ID that is not an event's id is 400; a cluster's cursor names no
    // entry of a single node: its stream starts from now.
    for (last, status) in [
        ("yesterday", StatusCode::BAD_REQUEST),
        ("node-a:", StatusCode::BAD_REQUEST),
        ("node-a:3,node-b:4", StatusCode::OK),
    ] {
        let resp = api
            .req(reqwest::Method::GET, "/v1/events")
            .header("Last-Event-ID", last)
            .send()
            .await
            .expect("sse");
        assert_eq!(resp.status(), status, "{last}");
    }
    for (query, status) in [
        ("/v1/events?type=nope", StatusCode::BAD_REQUEST),
        ("/v1/events?skill=nope", StatusCode::NOT_FOUND),
        ("/v1/events?colour=red", StatusCode::BAD_REQUEST),
    ] {
        let (s, e) = api.get(query).await;
        assert_eq!(s, status, "{query}: {e}");
    }
    let s = api
        .req(reqwest::Method::GET, "/v1/events")
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    server.stop().await;
}

/// The idle 3-slot agent gets the next conversation, not the 10-slot agent at 50%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_utilized_agent_gets_the_next_conversation_over_http() {
    let server = start("").await;
    let api = Api::new(&server);
    api.agent_online("big", &["general"], 10).await;
    for i in 0..5 {
        api.open(&format!("b{i}"), &format!("u{i}"), "general").await;
    }
    eventually("big holds five", || async {
        api.get("/v1/agents/big").await.1["conversations"]
            .as_array()
            .is_some_and(|c| c.len() == 5)
    })
    .await;
    api.agent_online("small", &["general"], 3).await;
    api.open("c6", "u6", "general").await;
    eventually("c6 assigned to small", || async {
        api.get("/v1/conversations/c6").await.1["agent_id"] == "small"
    })
    .await;
    assert_eq!(
        api.get("/v1/agents/big").await.1["conversations"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_accept_conversation_lifecycle_and_queue_views() {
    let server = start("").await;
    let api = Api::new(&server);
    api.put("/v1/agents/bob", json!({"skills": ["general"], "max_slots": 1}))
        .await;
    let (s, c) = api
        .post("/v1/conversations", json!({"consumer_id": "u2", "skill": "general"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = c["conversation_id"].as_str().expect("generated id").to_string();
    let (s, q) = api.get("/v1/skills/general/queue").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(q["conversations"][0]["conversation_id"], id.as_str());
    assert_eq!(q["health"]["actionable"], 1);
    let (_, h) = api.get("/v1/queue-health").await;
    assert_eq!(h["skills"]["general"]["online_agents"], 0);

    api.post("/v1/agents/bob/status", json!({"status": "online"})).await;
    let path = format!("/v1/conversations/{id}");
    eventually("assigned", || async { api.get(&path).await.1["agent_id"] == "bob" }).await;
    let (_, h) = api.get("/v1/queue-health").await;
    assert_eq!(h["skills"]["general"]["assigned"], 1);

    let (s, c) = api
        .post(&format!("{path}/return-to-queue"), json!({"agent_id": "bob"}))
        .await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("queued")));
    let (s, c) = api.post(&format!("{path}/transfer"), json!({"skill": "sales"})).await;
    assert_eq!(
        (s, c["skill"].as_str(), c["transfers"].as_u64()),
        (StatusCode::OK, Some("sales"), Some(1))
    );
    let (s, c) = api.post(&format!("{path}/urgent"), json!({})).await;
    assert_eq!((s, c["sla"]["kind"].as_str()), (StatusCode::OK, Some("urgent")));
    let (s, _) = api.put("/v1/skills/vip", json!({"sla": {"normal_secs": 120}, "priority_rules": [{"attribute": "tier", "equals": "gold", "boost": 3}]})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, k) = api.get("/v1/skills/vip").await;
    assert_eq!(
        (s, k["sla"]["normal_secs"].as_u64(), k["sla"]["urgent_secs"].as_u64()),
        (StatusCode::OK, Some(120), Some(600))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_and_changes_nothing() {
    let server = start("").await;
    let api = Api::new(&server);
    api.agent_online("a1", &["general"], 1).await;
    api.put("/v1/agents/a2", json!({"skills": ["general"], "max_slots": 1}))
        .await;
    api.open("c1", "u1", "general").await;
    eventually("assigned", || async {
        api.get("/v1/conversations/c1").await.1["agent_id"] == "a1"
    })
    .await;
    let (_, before) = api.get("/v1/conversations/c1").await;

    use reqwest::Method as M;
    let cases: Vec<(StatusCode, &str, (StatusCode, Value))> = vec![
        (
            StatusCode::BAD_REQUEST,
            "malformed JSON",
            api.raw(M::POST, "/v1/conversations/c1/messages", "{\"from\": ").await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "wrong type",
            api.raw(M::PUT, "/v1/agents/a3", r#"{"skills": "general", "max_slots": 1}"#)
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "unknown field",
            api.raw(
                M::POST,
                "/v1/conversations/c1/messages",
                r#"{"from": "consumer", "body": "hi"}"#,
            )
            .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "bad enum value",
            api.raw(M::POST, "/v1/agents/a1/status", r#"{"status": "sleeping"}"#)
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "bad id in path",
            api.raw(M::POST, "/v1/conversations/c%2F1/messages", r#"{"from": "consumer"}"#)
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "bad id in body",
            api.raw(
                M::POST,
                "/v1/conversations",
                r#"{"conversation_id": "has space", "consumer_id": "u", "skill": "general"}"#,
            )
            .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "id too long",
            api.send(
                M::POST,
                "/v1/conversations",
                Some(json!({"consumer_id": "u".repeat(129), "skill": "general"})),
            )
            .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "zero slots",
            api.raw(M::PUT, "/v1/agents/a3", r#"{"skills": ["general"], "max_slots": 0}"#)
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "missing agent",
            api.raw(M::POST, "/v1/conversations/c1/messages", r#"{"from": "agent"}"#)
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "no transfer target",
            api.raw(M::POST, "/v1/conversations/c1/transfer", r#"{}"#).await,
        ),
        (
            StatusCode::CONFLICT,
            "an agent without the new skill",
            api.raw(
                M::POST,
                "/v1/conversations/c1/transfer",
                r#"{"skill": "sales", "agent_id": "a2"}"#,
            )
            .await,
        ),
        (
            StatusCode::NOT_FOUND,
            "an agent in an unknown skill",
            api.raw(
                M::POST,
                "/v1/conversations/c1/transfer",
                r#"{"skill": "nope", "agent_id": "a2"}"#,
            )
            .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "bad skill spec",
            api.raw(M::PUT, "/v1/skills/x", r#"{"sla": {"normal_secs": 0}}"#).await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "auto-close under 25 minutes",
            api.raw(M::PUT, "/v1/skills/x", r#"{"auto_close_after_secs": 600}"#)
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "auto-close over 90 days",
            api.raw(M::PUT, "/v1/skills/general", r#"{"auto_close_after_secs": 7776001}"#)
                .await,
        ),
        (
            StatusCode::NOT_FOUND,
            "unknown conversation",
            api.raw(M::POST, "/v1/conversations/nope/messages", r#"{"from": "consumer"}"#)
                .await,
        ),
        (
            StatusCode::NOT_FOUND,
            "unknown agent",
            api.raw(
                M::POST,
                "/v1/conversations/c1/messages",
                r#"{"from": "agent", "agent_id": "ghost"}"#,
            )
            .await,
        ),
        (
            StatusCode::NOT_FOUND,
            "unknown skill",
            api.raw(M::POST, "/v1/conversations", r#"{"consumer_id": "u", "skill": "nope"}"#)
                .await,
        ),
        (
            StatusCode::NOT_FOUND,
            "unknown route",
            api.raw(M::GET, "/v1/nothing", "").await,
        ),
        (
            StatusCode::CONFLICT,
            "agent does not hold it",
            api.raw(
                M::POST,
                "/v1/conversations/c1/messages",
                r#"{"from": "agent", "agent_id": "a2"}"#,
            )
            .await,
        ),
        (
            StatusCode::CONFLICT,
            "no offer to accept",
            api.raw(M::POST, "/v1/conversations/c1/accept", r#"{"agent_id": "a2"}"#)
                .await,
        ),
        (
            StatusCode::CONFLICT,
            "id taken",
            api.raw(
                M::POST,
                "/v1/conversations",
                r#"{"conversation_id": "c1", "consumer_id": "u", "skill": "general"}"#,
            )
            .await,
        ),
        (
            StatusCode::CONFLICT,
            "close by non-holder",
            api.raw(
                M::POST,
                "/v1/conversations/c1/close",
                r#"{"by": "agent", "agent_id": "a2"}"#,
            )
            .await,
        ),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "wrong method",
            api.raw(M::DELETE, "/v1/conversations/c1", "").await,
        ),
    ];
    for (expected, what, (status, body)) in cases {
        assert_eq!(status, expected, "{what}: {body}");
        let expected_code = match expected {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            _ => "method_not_allowed",
        };
        assert_eq!(code(&body), expected_code, "{what}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }

    let big = "x".repeat(4096);
    let resp = api
        .req(M::POST, "/v1/conversations")
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&resp.json().await.expect("json")), "payload_too_large");

    let (_, after) = api.get("/v1/conversations/c1").await;
    assert_eq!(before, after, "rejected requests changed nothing");
    assert_eq!(
        api.get("/v1/agents/a3").await.0,
        StatusCode::NOT_FOUND,
        "the invalid agent was not created"
    );
    assert_eq!(
        api.get("/v1/skills/x").await.0,
        StatusCode::NOT_FOUND,
        "the invalid skill was not created"
    );
    assert_eq!(
        api.get("/v1/skills/general").await.1["auto_close_after_secs"],
        7_776_000,
        "the valid skill kept its auto-close (90 days by default)"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_v1_only() {
    let server = start("api_token = \"s3cret\"").await;
    let mut api = Api::new(&server);
    let (s, b) = api.get("/v1/queue-health").await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    api.token = Some("wrong".into());
    assert_eq!(api.get("/v1/queue-health").await.0, StatusCode::UNAUTHORIZED);
    api.token = Some("s3cret".into());
    assert_eq!(api.get("/v1/queue-health").await.0, StatusCode::OK);
    api.token = None;
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(api.get(open).await.0, StatusCode::OK, "{open} stays open");
    }
    server.stop().await;
}
