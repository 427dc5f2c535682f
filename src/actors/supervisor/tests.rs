//! A panic inside an actor loses neither state nor assignments.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::actors::agent::AgentMsg;
use crate::actors::conversation::ConversationMsg;
use crate::actors::skill_queue::QueueMsg;
use crate::config::Config;
use crate::domain::agent::{AgentSpec, AgentStatus};
use crate::domain::conversation::{Awaiting, ClosedBy, Phase};
use crate::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use crate::router::OpenConversation;
use crate::time::{Clock, Timestamp};
use crate::Router;

async fn setup(max_slots: u32) -> Router {
    let config = Config::from_toml("[[skills]]\nid = \"general\"\n", &BTreeMap::new()).expect("config");
    let r = Router::start(config.engine, Clock::starting_at(Timestamp::from_millis(0)))
        .await
        .expect("start");
    let spec = AgentSpec {
        group: None,
        skills: vec![skill()],
        max_slots,
        max_open: None,
    };
    r.put_agent(agent(), spec).await.expect("agent");
    r.set_agent_status(&agent(), AgentStatus::Online).await.expect("online");
    settle(&r).await;
    r
}

fn skill() -> SkillId {
    SkillId::new("general").expect("id")
}

fn agent() -> AgentId {
    AgentId::new("a1").expect("id")
}

fn cid(s: &str) -> ConversationId {
    ConversationId::new(s).expect("id")
}

async fn settle(r: &Router) {
    assert!(r.quiesce(100_000).await);
}

async fn open(r: &Router, id: &str) {
    r.open_conversation(
        OpenConversation::new(ConsumerId::new(format!("u-{id}")).expect("id"), skill()).with_id(cid(id)),
    )
    .await
    .expect("open");
    settle(r).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_conversation_loses_neither_the_conversation_nor_its_assignment() {
    let r = setup(2).await;
    open(&r, "c1").await;
    let shared = r.shared();
    let before = shared.activations();
    shared.tell_conversation(&cid("c1"), ConversationMsg::Panic);
    settle(&r).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle(&r).await;

    assert_eq!(
        shared.activations(),
        before + 1,
        "a new activation serves the conversation"
    );
    let c = r.conversation(&cid("c1")).expect("conversation kept");
    assert_eq!((c.state, c.agent_id.clone()), (Phase::Assigned, Some(agent())));
    let a = r.agent(&agent()).expect("agent");
    assert!(a.conversations.contains_key(&cid("c1")), "the agent still holds it");
    assert_eq!(a.busy().as_slots(), 1.0, "and counts it once");

    // The restarted actor works: timers and commands.
    let c = r.agent_message(&cid("c1"), &agent()).await.expect("reply");
    assert_eq!(c.awaiting, Awaiting::Consumer);
    tokio::time::sleep(Duration::from_secs(600)).await;
    settle(&r).await;
    assert_eq!(
        r.agent(&agent()).expect("agent").busy().as_slots(),
        0.1,
        "inactivity timer re-armed"
    );
    r.close(&cid("c1"), ClosedBy::Agent, Some(&agent()))
        .await
        .expect("close");
    settle(&r).await;
    assert!(r.agent(&agent()).expect("agent").conversations.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_agent_keeps_its_conversations_and_room() {
    let r = setup(1).await;
    open(&r, "c1").await;
    open(&r, "c2").await;
    let shared = r.shared();
    let before = shared.agent_activations();
    shared.tell_agent(&agent(), AgentMsg::Panic);
    settle(&r).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle(&r).await;
    assert_eq!(
        shared.agent_activations(),
        before + 1,
        "a new activation serves the agent"
    );
    let a = r.agent(&agent()).expect("agent");
    assert_eq!(a.status, AgentStatus::Online);
    assert!(a.conversations.contains_key(&cid("c1")));
    assert_eq!(
        r.conversation(&cid("c2")).expect("c2").state,
        Phase::Queued,
        "still no room for c2"
    );
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    settle(&r).await;
    assert_eq!(
        r.conversation(&cid("c2")).expect("c2").agent_id,
        Some(agent()),
        "room announced after restart"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_queue_actor_is_rebuilt_from_conversations_and_agents() {
    let r = setup(1).await;
    open(&r, "c1").await;
    open(&r, "c2").await;
    open(&r, "c3").await;
    let shared = r.shared();
    let before = shared.queue(&skill()).expect("queue");
    shared.tell(&before, QueueMsg::Panic);
    settle(&r).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    settle(&r).await;
    assert_ne!(shared.queue(&skill()).expect("restarted").get_id(), before.get_id());
    let q = r.queue(&skill(), 10).await.expect("queue");
    let ids: Vec<String> = q.conversations.iter().map(|c| c.conversation_id.to_string()).collect();
    assert_eq!(ids, ["c2", "c3"], "rebuilt in the same order");
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    settle(&r).await;
    assert_eq!(
        r.conversation(&cid("c2")).expect("c2").agent_id,
        Some(agent()),
        "matching works again"
    );
}

/// An actor that keeps crashing is restarted after a growing delay, never left stopped:
/// an agent left down would hold its conversations forever.
#[tokio::test(start_paused = true)]
async fn an_actor_that_keeps_crashing_is_restarted_after_a_backoff() {
    let r = setup(2).await;
    open(&r, "c1").await;
    let shared = r.shared();
    let before = shared.agent_activations();
    for crash in 0..8u64 {
        shared.tell_agent(&agent(), AgentMsg::Panic);
        // Within the budget (5 in a window) a crash is restarted at once; past it,
        // after a backoff (100 ms, then doubling), waited in virtual time.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            shared.agent_activations() == before + crash + 1,
            crash < 5,
            "crash {crash}: restarted at once only within the budget"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        settle(&r).await;
    }
    assert_eq!(shared.agent_activations(), before + 8, "restarted every time");
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    open(&r, "c2").await;
    settle(&r).await;
    let a = r.agent(&agent()).expect("agent");
    assert!(
        !a.conversations.contains_key(&cid("c1")),
        "the release reached the live actor"
    );
    assert_eq!(r.conversation(&cid("c2")).expect("c2").agent_id, Some(agent()));
}

/// Restart counts are kept per child only while their window runs: a node whose
/// conversations crash now and then does not keep an entry for each of them forever.
#[test]
fn restart_counts_past_their_window_are_forgotten() {
    use super::{forget_past_windows, Child};
    use std::collections::HashMap;
    let window = Duration::from_secs(60);
    let mut restarts = HashMap::new();
    restarts.insert(Child::Conversation(cid("old")), (Timestamp::from_millis(0), 3));
    restarts.insert(Child::Conversation(cid("recent")), (Timestamp::from_millis(50_000), 1));
    forget_past_windows(&mut restarts, Timestamp::from_millis(70_000), window);
    assert_eq!(
        restarts.keys().collect::<Vec<_>>(),
        vec![&Child::Conversation(cid("recent"))],
        "the old window (0-60 s) has passed at 70 s; the recent one (50-110 s) runs"
    );
}
