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
    let text = |b: Bytes| String::from_utf8(b.to_vec()).expect("utf-8");
    let mut recent = Box::pin(streams.open_platform(EventFilter::default(), Some(EVENT_LOG as u64 + 2)));
    let first = text(recent.next().await.expect("frame").expect("bytes"));
    let ids: Vec<&str> = first.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    let want: Vec<String> = (EVENT_LOG + 3..=EVENT_LOG + 5).map(|i| i.to_string()).collect();
    assert_eq!(ids, want, "{first}");
    assert!(!first.contains("event: gap"));
    let mut old = Box::pin(streams.open_platform(EventFilter::default(), Some(1)));
    let first = text(old.next().await.expect("frame").expect("bytes"));
    assert!(
        first.contains("event: gap\ndata: {\"missed_from\": 2, \"oldest_kept\": 6}"),
        "{}",
        &first[..200]
    );
    assert_eq!(first.matches("\nevent: reactivated").count(), EVENT_LOG);
}
