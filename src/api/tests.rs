//! Server behaviours that need the engine's internals to set up: overload, and a slow
//! event-stream client.

use actix_web::web::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::api::sse::EventStreams;
use crate::config::Config;
use crate::events::{EventKind, RouterEvent};
use crate::ids::AgentId;
use crate::metrics::Metrics;
use crate::time::{Clock, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_the_bound_gets_503_with_retry_after_and_no_change() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\nmax_in_flight = 10\n[[skills]]\nid = \"general\"\n";
    let config = Config::from_toml(text, &BTreeMap::new()).expect("config");
    let server = super::start(config, Clock::system()).await.expect("start");
    let url = format!("http://{}/v1/conversations", server.addr);
    let body = serde_json::json!({"conversation_id": "c1", "consumer_id": "u1", "skill": "general"});
    let shared = server.router.shared().clone();
    // Simulate a backlog: eleven messages counted as in flight.
    let backlog: Vec<_> = (0..11).map(|_| shared.token()).collect();
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers().get("Retry-After").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "overloaded");
    assert!(server
        .router
        .conversation(&crate::ids::ConversationId::new("c1").expect("id"))
        .is_err());
    let get = reqwest::get(format!("http://{}/v1/queue-health", server.addr))
        .await
        .expect("get");
    assert_eq!(get.status(), reqwest::StatusCode::OK, "reads still work");
    drop(backlog);
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_past_max_open_conversations_gets_503_until_one_closes() {
    let text =
        "[server]\nlisten = \"127.0.0.1:0\"\n[routing]\nmax_open_conversations = 1\n[[skills]]\nid = \"general\"\n";
    let config = Config::from_toml(text, &BTreeMap::new()).expect("config");
    let server = super::start(config, Clock::system()).await.expect("start");
    let base = format!("http://{}/v1/conversations", server.addr);
    let client = reqwest::Client::new();
    let open = |id: &str| {
        let body = serde_json::json!({"conversation_id": id, "consumer_id": id, "skill": "general"});
        client.post(&base).json(&body).send()
    };
    assert_eq!(open("c1").await.expect("send").status(), reqwest::StatusCode::CREATED);
    let refused = open("c2").await.expect("send");
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.headers().get("Retry-After").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let v: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(v["error"]["code"], "overloaded");
    let c2 = reqwest::get(format!("{base}/c2")).await.expect("get");
    assert_eq!(c2.status(), reqwest::StatusCode::NOT_FOUND, "nothing was created");
    let closed = client
        .post(format!("{base}/c1/close"))
        .json(&serde_json::json!({"by": "consumer"}))
        .send()
        .await
        .expect("close");
    assert_eq!(closed.status(), reqwest::StatusCode::OK);
    assert_eq!(open("c2").await.expect("send").status(), reqwest::StatusCode::CREATED);
    server.stop().await;
}

fn event(agent: &AgentId, n: i64) -> RouterEvent {
    RouterEvent {
        at: Timestamp::from_millis(n),
        conversation_id: None,
        agent_id: Some(agent.clone()),
        skill: None,
        kind: EventKind::Reactivated,
    }
}

#[tokio::test]
async fn a_client_that_falls_behind_is_disconnected_not_buffered_without_bound() {
    let (_tx, rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let streams = EventStreams::new(4, rx, Arc::clone(&metrics));
    let agent = AgentId::new("a1").expect("id");
    let stream = streams.open(agent.clone(), Bytes::from_static(b": connected\n\n"));
    // The client reads nothing while six events arrive: four fit, the fifth cuts it off.
    for n in 0..6 {
        streams.dispatch(event(&agent, n));
    }
    assert_eq!(metrics.sse_disconnected_slow.get(), 1);
    let frames: Vec<_> = stream.collect().await;
    assert_eq!(frames.len(), 1 + 4, "the hello, the four buffered events, then the end");
}

#[tokio::test]
async fn streams_end_on_shutdown() {
    let (tx, rx) = watch::channel(false);
    let streams = EventStreams::new(4, rx, Arc::new(Metrics::new()));
    let mut stream = Box::pin(streams.open(AgentId::new("a1").expect("id"), Bytes::from_static(b": connected\n\n")));
    assert!(stream.next().await.is_some(), "hello");
    tx.send(true).expect("send");
    assert!(stream.next().await.is_none());
}

/// The platform stream keeps the last `EVENT_LOG` events: a client resuming from an id
/// the log still holds gets exactly what followed it; one resuming from an older id is
/// told of the gap first, then gets what is kept.
#[tokio::test]
async fn the_platform_stream_replays_its_log_and_says_when_it_no_longer_reaches_back() {
    use crate::api::sse::{EventFilter, EVENT_LOG};
    let (_tx, rx) = watch::channel(false);
    let streams = EventStreams::new(4, rx, Arc::new(Metrics::new()));
    let a = AgentId::new("a1").expect("id");
    for n in 0..(EVENT_LOG as i64 + 5) {
        streams.record(&event(&a, n));
    }
    // What a stream sends up to the frame of event `last` (pages of a replay included).
    async fn up_to(
        stream: &mut (impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + Unpin),
        last: usize,
    ) -> String {
        let mut text = String::new();
        while !text.contains(&format!("id: {last}\n")) {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
                .await
                .expect("a frame within 5 s")
                .expect("open")
                .expect("bytes");
            text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
        text
    }
    // The ids of the events' frames (not of the id-only position frame).
    fn event_ids(text: &str) -> Vec<&str> {
        text.split("\n\n")
            .filter(|f| f.contains("\nevent: "))
            .filter_map(|f| f.strip_prefix("id: ")?.lines().next())
            .collect()
    }
    let mut live = Box::pin(streams.open_platform(EventFilter::default(), Some(EVENT_LOG as u64 + 2)));
    let recent = up_to(&mut live, EVENT_LOG + 5).await;
    let want: Vec<String> = (EVENT_LOG + 3..=EVENT_LOG + 5).map(|i| i.to_string()).collect();
    assert_eq!(event_ids(&recent), want, "{recent}");
    assert!(!recent.contains("event: gap"));
    // Then the position replayed to, as an id-only frame.
    let position = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
        .await
        .expect("a frame")
        .expect("open")
        .expect("bytes");
    assert_eq!(&position[..], format!("id: {}\n\n", EVENT_LOG + 5).as_bytes());
    let mut old = Box::pin(streams.open_platform(EventFilter::default(), Some(1)));
    let old = up_to(&mut old, EVENT_LOG + 5).await;
    assert!(
        old.contains("event: gap\ndata: {\"missed_from\": 2, \"oldest_kept\": 6}"),
        "{}",
        &old[..200]
    );
    assert_eq!(old.matches("\nevent: reactivated").count(), EVENT_LOG);
    let ids: Vec<u64> = event_ids(&old).iter().filter_map(|i| i.parse().ok()).collect();
    assert_eq!(
        ids,
        (6..=EVENT_LOG as u64 + 5).collect::<Vec<_>>(),
        "every kept event once, in order"
    );
}

// ---- handlers without a socket (`app()`), one test per kind of input schemathesis
// found refused wrongly or accepted wrongly ----

mod handlers {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use actix_web::http::StatusCode;
    use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
    use serde_json::Value;
    use tokio::sync::watch;

    use crate::api::sse::EventStreams;
    use crate::api::{app, AppState};
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::time::Clock;
    use crate::Router;

    /// Opens conversation `c1` in `general`.
    const OPEN_C1: &str = r#"{"conversation_id": "c1", "consumer_id": "u1", "skill": "general"}"#;

    const CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[[skills]]\nid = \"general\"\n";

    /// The state of a fresh node, ready, and the router to look behind the API with.
    async fn state() -> (actix_web::web::Data<AppState>, Router) {
        let config = Config::from_toml(CONFIG, &BTreeMap::new()).expect("config");
        let router = Router::boot(&config.engine, Clock::system()).await.expect("boot");
        for skill in config.engine.skills.clone() {
            router.install_skill(skill).await.expect("skill");
        }
        let metrics = Arc::new(Metrics::new());
        let (_tx, rx) = watch::channel(false);
        let streams = EventStreams::new(16, rx, Arc::clone(&metrics));
        let state = AppState::new(router.clone(), metrics, streams, &config.server).expect("state");
        state.set_ready(true);
        (state, router)
    }

    macro_rules! call {
        ($svc:expr, $req:expr) => {{
            let res = call_service(&$svc, $req.to_request()).await;
            let status = res.status();
            let body: Value = if status == StatusCode::NO_CONTENT {
                Value::Null
            } else {
                read_body_json(res).await
            };
            (status, body)
        }};
    }

    fn put(path: &str, body: &str) -> TestRequest {
        TestRequest::put()
            .uri(path)
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
    }

    fn post(path: &str, body: &str) -> TestRequest {
        TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_is_not_an_object_is_refused_and_changes_nothing() {
        let (state, router) = state().await;
        let svc = init_service(app(state)).await;
        let (status, body) = call!(svc, put("/v1/agents/a1", r#"[["general"], 3, null]"#));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert!(
            router.agent(&crate::ids::AgentId::new("a1").expect("id")).is_err(),
            "no agent made"
        );
        // Nested settings too: `"sla": [60, 30, 45]` is not an SLA.
        let (status, body) = call!(svc, put("/v1/skills/s2", r#"{"sla": [60, 30, 45]}"#));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            router.skill(&crate::ids::SkillId::new("s2").expect("id")).is_err(),
            "no skill made"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_numbers_may_be_written_with_a_zero_fraction_and_nothing_else() {
        let (state, _router) = state().await;
        let svc = init_service(app(state)).await;
        let (status, body) = call!(
            svc,
            put("/v1/agents/a1", r#"{"skills": ["general"], "max_slots": 3.0}"#)
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["max_slots"], 3);
        let (status, body) = call!(
            svc,
            put("/v1/agents/a2", r#"{"skills": ["general"], "max_slots": 3.5}"#)
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = call!(
            svc,
            put(
                "/v1/agents/a2",
                r#"{"skills": ["general"], "max_slots": 2, "max_open": 0}"#
            )
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn who_acts_is_one_shape_per_author_and_a_transfer_names_a_target() {
        let (state, router) = state().await;
        let svc = init_service(app(state)).await;
        let (status, _) = call!(svc, post("/v1/conversations", OPEN_C1));
        assert_eq!(status, StatusCode::CREATED);
        for (path, body, says) in [
            ("/v1/conversations/c1/messages", r#"{"from": "agent"}"#, "agent_id"),
            (
                "/v1/conversations/c1/messages",
                r#"{"from": "consumer", "agent_id": "a1"}"#,
                "agent_id",
            ),
            ("/v1/conversations/c1/close", r#"{"by": "agent"}"#, "agent_id"),
            (
                "/v1/conversations/c1/close",
                r#"{"by": "system", "agent_id": "a1"}"#,
                "agent_id",
            ),
            ("/v1/conversations/c1/reopen", r#"{"by": "agent"}"#, "agent_id"),
            ("/v1/conversations/c1/transfer", r#"{}"#, "skill"),
            ("/v1/conversations/c1/transfer", r#"{"skill": null}"#, "skill"),
        ] {
            let (status, body) = call!(svc, post(path, body));
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{path}: {message}");
        }
        let c = router
            .conversation(&crate::ids::ConversationId::new("c1").expect("id"))
            .expect("open");
        assert!(c.closed.is_none() && c.transfers == 0, "nothing changed");
        // The message shapes that are right pass.
        let (status, body) = call!(svc, post("/v1/conversations/c1/messages", r#"{"from": "consumer"}"#));
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = call!(svc, post("/v1/conversations/c1/close", r#"{"by": "system"}"#));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["closed_by"], "system");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn out_of_range_settings_and_filters_are_refused_not_clamped() {
        let (state, router) = state().await;
        let svc = init_service(app(state)).await;
        let (status, body) = call!(svc, TestRequest::get().uri("/v1/skills/general/queue?limit=10001"));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = call!(svc, TestRequest::get().uri("/v1/skills/general/queue?limit=10000"));
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call!(
            svc,
            put("/v1/skills/general", r#"{"sla": {"urgent_secs": 9223372036854775808}}"#)
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = call!(svc, put("/v1/skills/general", r#"{"sla": {"urgent_secs": 31622401}}"#));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let skill = router
            .skill(&crate::ids::SkillId::new("general").expect("id"))
            .expect("skill");
        assert_eq!(skill.sla.urgent.as_secs(), 600, "unchanged");
        let (status, body) = call!(svc, TestRequest::get().uri("/v1/events?type=opened,,closed"));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = call!(svc, TestRequest::get().uri("/v1/skills/a%20b"));
        assert_eq!(status, StatusCode::BAD_REQUEST, "a bad id in the path: {body}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn optional_bodies_may_be_left_out_and_405_names_the_methods() {
        let (state, _router) = state().await;
        let svc = init_service(app(state)).await;
        let (status, body) = call!(svc, TestRequest::put().uri("/v1/skills/fresh"));
        assert_eq!(status, StatusCode::OK, "every default: {body}");
        assert_eq!(body["skill_id"], "fresh");
        let (status, _) = call!(svc, post("/v1/conversations", OPEN_C1));
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = call!(svc, TestRequest::post().uri("/v1/conversations/c1/urgent"));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["urgent"], true);
        let res = call_service(&svc, TestRequest::delete().uri("/v1/conversations/c1").to_request()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_and_its_assets_are_served_with_a_policy_that_loads_only_from_here() {
        let (state, _router) = state().await;
        let svc = init_service(app(state)).await;
        for (path, kind) in [
            ("/", "text/html"),
            ("/app.js", "text/javascript"),
            ("/app.css", "text/css"),
        ] {
            let res = call_service(&svc, TestRequest::get().uri(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            assert!(header("content-type").starts_with(kind), "{path}");
            assert!(
                header("content-security-policy").contains("default-src 'none'"),
                "{path}"
            );
            let body = actix_web::test::read_body(res).await;
            let text = String::from_utf8(body.to_vec()).expect("utf-8");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{path} names no other origin"
            );
        }
    }
}
