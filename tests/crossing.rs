//! The engine split across two nodes in one process: each node's engine serves the
//! actors of its shards, and the messages between actors of different nodes cross as
//! frames (encoded and decoded with the cluster transport's wire format, delivered to
//! the other engine). On tokio's paused clock.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use switchboard::actors::remote::{shard_of_agent, shard_of_conversation, shard_of_queue, Crossing, Remote};
use switchboard::cluster::transport::{Body, Frame};
use switchboard::domain::conversation::{Activity, ClosedBy};
use switchboard::Router;

const ONE_SKILL: &str = r#"
[[skills]]
id = "general"
"#;

/// Two nodes, "a" and "b": "a" serves the shards in `a_shards`, "b" every other.
#[derive(Debug)]
struct Loopback {
    me: &'static str,
    a_shards: Arc<HashSet<u16>>,
    peer: Arc<OnceLock<Router>>,
}

impl Remote for Loopback {
    fn elsewhere(&self, shard: u16) -> Option<String> {
        let owner = if self.a_shards.contains(&shard) { "a" } else { "b" };
        (owner != self.me).then(|| owner.to_string())
    }

    fn send(&self, node: &str, msg: Crossing) {
        assert_ne!(node, self.me, "never sent to itself");
        // Through the wire format, as the transport carries it.
        let bytes = Frame {
            from: self.me.to_string(),
            body: Body::Engine(msg.clone()),
        }
        .encode();
        let frame = Frame::decode(&bytes).expect("a frame decodes");
        let Body::Engine(back) = frame.body else {
            panic!("an engine frame")
        };
        assert_eq!(back, msg, "the message survives the wire");
        self.peer.get().expect("peer started").deliver_crossing(back);
    }
}

/// Two engines: "a" serves the skill's queue and the conversations, "b" the agent.
async fn two_nodes(conversations: &[&str], agent: &str) -> (Router, Router) {
    two_nodes_with(ONE_SKILL, conversations, agent).await
}

async fn two_nodes_with(config: &str, conversations: &[&str], agent: &str) -> (Router, Router) {
    let mut a_shards: HashSet<u16> = conversations.iter().map(|c| shard_of_conversation(&cid(c))).collect();
    a_shards.insert(shard_of_queue(&sid("general")));
    assert!(
        !a_shards.contains(&shard_of_agent(&aid(agent))),
        "the agent's shard is b's"
    );
    joined(config, a_shards).await
}

/// Two engines joined by a loopback: "a" serves `a_shards`, "b" every other shard.
async fn joined(config: &str, a_shards: HashSet<u16>) -> (Router, Router) {
    let a_shards = Arc::new(a_shards);
    let (to_a, to_b) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let (a, b) = (router(config).await, router(config).await);
    let remote = |me, peer: &Arc<OnceLock<Router>>| {
        Arc::new(Loopback {
            me,
            a_shards: Arc::clone(&a_shards),
            peer: Arc::clone(peer),
        })
    };
    a.join_cluster(remote("a", &to_b)).expect("a joins");
    b.join_cluster(remote("b", &to_a)).expect("b joins");
    to_a.set(a.clone()).expect("set");
    to_b.set(b.clone()).expect("set");
    (a, b)
}

/// Waits until neither engine has a message in flight.
async fn settle_both(a: &Router, b: &Router) {
    for _ in 0..100 {
        settle(a).await;
        settle(b).await;
        if a.quiesce(10).await && b.quiesce(10).await {
            return;
        }
    }
    panic!("the two engines did not settle");
}

#[tokio::test(start_paused = true)]
async fn a_conversation_of_one_node_goes_to_an_agent_of_another_and_capacity_holds_across() {
    let (a, b) = two_nodes(&["c1", "c2"], "ag").await;
    // The agent lives on b only; its room reaches the queue on a.
    agent(&b, "ag", &["general"], 1).await;
    b.set_agent_status(&aid("ag"), switchboard::domain::agent::AgentStatus::Online)
        .await
        .expect("online");
    settle_both(&a, &b).await;
    assert!(a.agent(&aid("ag")).is_err(), "a has no copy of the agent");

    // Opened on a: offered to the agent on b, reserved there, assigned on a, confirmed on b.
    open(&a, "c1", "u1", "general").await;
    settle_both(&a, &b).await;
    assert_eq!(holder(&a, "c1").as_deref(), Some("ag"));
    assert_eq!(busy(&b, "ag"), 1.0, "b's agent holds a's conversation");

    // One slot (+0.5 overflow) holds one active conversation: c2 waits, across nodes too.
    open(&a, "c2", "u2", "general").await;
    settle_both(&a, &b).await;
    assert_eq!(holder(&a, "c2"), None, "no agent over capacity");

    // c1 goes quiet: its lighter weight reaches b, and the room it frees brings c2.
    a.agent_message(&cid("c1"), &aid("ag")).await.expect("agent replies");
    settle_both(&a, &b).await;
    pass(&a, 10 * MIN + Duration::from_secs(1)).await;
    settle_both(&a, &b).await;
    assert_eq!(conv(&a, "c1").activity, Activity::Inactive);
    assert_eq!(
        holder(&a, "c2").as_deref(),
        Some("ag"),
        "c2 assigned once c1 went quiet"
    );
    assert!((busy(&b, "ag") - 1.1).abs() < 1e-9, "busy {}", busy(&b, "ag"));

    // Closing on a releases the agent on b.
    a.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close c1");
    a.close(&cid("c2"), ClosedBy::Consumer, None).await.expect("close c2");
    settle_both(&a, &b).await;
    assert_eq!(busy(&b, "ag"), 0.0, "released on b");

    let ((a_out, a_in, a_refused), (b_out, b_in, b_refused)) = (a.crossings(), b.crossings());
    assert!(
        a_out > 0 && b_out > 0,
        "messages crossed both ways: a {a_out}, b {b_out}"
    );
    assert_eq!((a_in, b_in), (b_out, a_out), "every message sent arrived");
    assert_eq!((a_refused, b_refused), (0, 0), "nothing node-local was sent across");
}

#[tokio::test(start_paused = true)]
async fn ids_with_their_skill_as_placement_key_keep_a_lifecycle_on_one_node() {
    // "a" serves general's shard (its queue, and every id placed by `~general`).
    let (a, b) = joined(ONE_SKILL, HashSet::from([shard_of_queue(&sid("general"))])).await;
    let spread = (0..)
        .map(|i| format!("c{i}"))
        .find(|c| shard_of_conversation(&cid(c)) != shard_of_queue(&sid("general")))
        .expect("an id of b's");
    assert_eq!(shard_of_agent(&aid("ag~general")), shard_of_queue(&sid("general")));
    agent(&a, "ag~general", &["general"], 2).await;
    a.set_agent_status(&aid("ag~general"), switchboard::domain::agent::AgentStatus::Online)
        .await
        .expect("online");
    settle_both(&a, &b).await;
    let crossed = |a: &Router, b: &Router| a.crossings().0 + b.crossings().0;
    let before = crossed(&a, &b);

    // A whole lifecycle of a co-located conversation: nothing crosses.
    open(&a, "c1~general", "u1", "general").await;
    settle_both(&a, &b).await;
    assert_eq!(holder(&a, "c1~general").as_deref(), Some("ag~general"));
    a.agent_message(&cid("c1~general"), &aid("ag~general"))
        .await
        .expect("agent replies");
    a.consumer_message(&cid("c1~general")).await.expect("consumer replies");
    a.close(&cid("c1~general"), ClosedBy::Consumer, None)
        .await
        .expect("close");
    settle_both(&a, &b).await;
    assert_eq!(busy(&a, "ag~general"), 0.0);
    assert_eq!(crossed(&a, &b), before, "a co-located lifecycle sent nothing across");

    // The same lifecycle for an id placed by its own hash, on b: its messages to the
    // queue and the agent on a cross.
    open(&b, &spread, "u2", "general").await;
    settle_both(&a, &b).await;
    assert_eq!(holder(&b, &spread).as_deref(), Some("ag~general"));
    b.close(&cid(&spread), ClosedBy::Consumer, None).await.expect("close");
    settle_both(&a, &b).await;
    assert_eq!(busy(&a, "ag~general"), 0.0);
    assert!(crossed(&a, &b) > before, "a spread conversation's messages crossed");
}

#[tokio::test(start_paused = true)]
async fn offer_mode_an_agent_of_another_node_accepts_and_rejects_at_the_conversation_s_node() {
    let offer_mode = r#"
[[skills]]
id = "general"
offer_timeout_secs = 60
"#;
    let (a, b) = two_nodes_with(offer_mode, &["c1", "c2"], "ag").await;
    agent(&b, "ag", &["general"], 2).await;
    b.set_agent_status(&aid("ag"), switchboard::domain::agent::AgentStatus::Online)
        .await
        .expect("online");
    settle_both(&a, &b).await;
    let reserved = |r: &Router| -> Vec<String> {
        let ag = r.agent(&aid("ag")).expect("agent on b");
        ag.reservations.keys().map(ToString::to_string).collect()
    };

    // Offered across: the reservation is on b, the offer in the conversation on a.
    open(&a, "c1", "u1", "general").await;
    settle_both(&a, &b).await;
    assert_eq!(
        conv(&a, "c1").offered_to.as_ref().map(ToString::to_string).as_deref(),
        Some("ag")
    );
    assert_eq!(reserved(&b), vec!["c1".to_string()]);

    // The accept comes to the conversation's node (the API forwards it there).
    let accepted = a.accept_offer(&cid("c1"), &aid("ag")).await.expect("accepted on a");
    assert_eq!(
        accepted.agent_id.as_ref().map(ToString::to_string).as_deref(),
        Some("ag")
    );
    settle_both(&a, &b).await;
    assert_eq!(holder(&a, "c1").as_deref(), Some("ag"));
    assert!(reserved(&b).is_empty(), "the reservation became a hold");
    assert_eq!(busy(&b, "ag"), 1.0);

    // A reject: the offer is voided on b, and the same agent is not offered it again.
    open(&a, "c2", "u2", "general").await;
    settle_both(&a, &b).await;
    assert_eq!(reserved(&b), vec!["c2".to_string()]);
    let rejected = a.reject_offer(&cid("c2"), &aid("ag")).await.expect("rejected on a");
    assert_eq!(rejected.offered_to, None);
    settle_both(&a, &b).await;
    assert!(reserved(&b).is_empty(), "the voided offer left b's agent");
    assert_eq!(
        conv(&a, "c2").offered_to,
        None,
        "not offered again to the agent that rejected it"
    );
    assert_eq!(busy(&b, "ag"), 1.0);

    // No pending offer: 409, nothing changed.
    let again = a.accept_offer(&cid("c2"), &aid("ag")).await;
    assert!(matches!(again, Err(switchboard::RouterError::Conflict(_))), "{again:?}");
    assert_eq!(holder(&a, "c2"), None);
}
