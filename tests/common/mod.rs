//! Helpers for engine tests: a router on a fixed virtual start time, and ways to let
//! virtual time pass and the actors settle.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard::config::Config;
use switchboard::domain::agent::{AgentSpec, AgentStatus};
use switchboard::domain::conversation::{Conversation, Phase};
use switchboard::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use switchboard::router::OpenConversation;
use switchboard::time::{Clock, Timestamp};
use switchboard::Router;

pub const MIN: Duration = Duration::from_secs(60);

pub fn start_time() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").expect("start time")
}

/// A router configured from TOML, its clock starting at [`start_time`].
pub async fn router(toml: &str) -> Router {
    let config = Config::from_toml(toml, &BTreeMap::new()).expect("test config");
    Router::start(config.engine, Clock::starting_at(start_time()))
        .await
        .expect("router starts")
}

/// Waits until no message is in flight inside the engine. On the paused clock only
/// scheduler turns pass; on a multi-thread runtime, up to ten seconds of wall time.
pub async fn settle(r: &Router) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if r.quiesce(10_000).await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "engine did not settle: {} in flight",
            r.in_flight()
        );
        if !is_paused() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Injected panics print nothing; any other panic is reported as usual.
pub fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if !msg.starts_with("injected fault") {
            default(info);
        }
    }));
}

/// Lets `d` of virtual time pass (tokio's paused clock: no wall-clock wait), with every
/// timer in between firing in order, then settles.
pub async fn pass(r: &Router, d: Duration) {
    assert!(is_paused(), "tests only let virtual time pass");
    tokio::time::sleep(d).await;
    settle(r).await;
}

fn is_paused() -> bool {
    // On a paused clock, tokio's time does not move by itself.
    let t = tokio::time::Instant::now();
    std::thread::sleep(Duration::from_micros(50));
    tokio::time::Instant::now() == t
}

pub fn cid(s: &str) -> ConversationId {
    ConversationId::new(s).expect("id")
}

pub fn aid(s: &str) -> AgentId {
    AgentId::new(s).expect("id")
}

pub fn sid(s: &str) -> SkillId {
    SkillId::new(s).expect("id")
}

pub async fn agent_online(r: &Router, id: &str, skills: &[&str], max_slots: u32) {
    agent(r, id, skills, max_slots).await;
    r.set_agent_status(&aid(id), AgentStatus::Online).await.expect("status");
    settle(r).await;
}

pub async fn agent(r: &Router, id: &str, skills: &[&str], max_slots: u32) {
    agent_in_group(r, id, skills, max_slots, None).await;
}

/// Registers an agent of `group` (offline, as every new agent).
pub async fn agent_in_group(r: &Router, id: &str, skills: &[&str], max_slots: u32, group: Option<&str>) {
    let spec = AgentSpec {
        group: group.map(|g| switchboard::ids::GroupId::new(g).expect("group id")),
        skills: skills.iter().map(|s| sid(s)).collect(),
        max_slots,
        max_open: None,
    };
    r.put_agent(aid(id), spec).await.expect("put agent");
}

pub async fn open(r: &Router, id: &str, consumer: &str, skill: &str) -> Conversation {
    let c = r
        .open_conversation(OpenConversation::new(ConsumerId::new(consumer).expect("id"), sid(skill)).with_id(cid(id)))
        .await
        .expect("open");
    settle(r).await;
    c
}

pub fn conv(r: &Router, id: &str) -> Conversation {
    r.conversation(&cid(id)).expect("conversation exists")
}

pub fn holder(r: &Router, id: &str) -> Option<String> {
    let c = conv(r, id);
    (c.state == Phase::Assigned)
        .then(|| c.agent_id.map(|a| a.to_string()))
        .flatten()
}

pub fn busy(r: &Router, agent: &str) -> f64 {
    r.agent(&aid(agent)).expect("agent").busy().as_slots()
}
