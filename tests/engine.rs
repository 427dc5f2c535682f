//! The routing engine's behaviours, each on tokio's paused clock: a day passes in
//! milliseconds and every timer fires at its exact virtual time.

mod common;

use std::time::Duration;

use common::*;
use switchboard::domain::agent::AgentStatus;
use switchboard::domain::conversation::{Activity, Awaiting, ClosedBy, Phase};
use switchboard::domain::sla::SlaKind;
use switchboard::events::EventKind;

const ONE_SKILL: &str = r#"
[[skills]]
id = "general"
"#;

#[tokio::test(start_paused = true)]
async fn auto_accept_assigns_without_an_answer_from_the_agent() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    assert_eq!(busy(&r, "a1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn inactive_conversations_free_capacity_and_the_queue_drains_at_once() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    assert_eq!(
        holder(&r, "c2"),
        None,
        "1 slot + 0.5 overflow holds one active conversation"
    );

    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    settle(&r).await;
    pass(&r, 10 * MIN - Duration::from_secs(1)).await;
    assert_eq!(holder(&r, "c2"), None, "still active one second before inactive_after");
    pass(&r, Duration::from_secs(1)).await;
    assert_eq!(conv(&r, "c1").activity, Activity::Inactive);
    assert_eq!(
        holder(&r, "c2").as_deref(),
        Some("a1"),
        "c2 assigned the moment c1 went quiet"
    );
    assert!((busy(&r, "a1") - 1.1).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn consumer_reply_reactivates_and_restarts_the_sla() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    pass(&r, 15 * MIN).await;
    assert_eq!(conv(&r, "c1").activity, Activity::Inactive);
    let mut events = r.subscribe();
    let c = r.consumer_message(&cid("c1")).await.expect("consumer");
    settle(&r).await;
    assert_eq!(c.activity, Activity::Active);
    assert_eq!(c.awaiting, Awaiting::Agent);
    let now = r.clock().now();
    assert_eq!(
        c.sla.map(|s| s.due_at),
        Some(now.plus(30 * MIN)),
        "first-time SLA from the reply"
    );
    assert_eq!(busy(&r, "a1"), 1.0, "the agent carries its full weight again");
    let reactivated = std::iter::from_fn(|| events.try_recv().ok()).any(|e| e.kind == EventKind::Reactivated);
    assert!(reactivated);
}

#[tokio::test(start_paused = true)]
async fn consumer_message_does_not_send_a_conversation_to_the_back_of_the_queue() {
    let r = router(ONE_SKILL).await;
    open(&r, "c1", "u1", "general").await;
    pass(&r, MIN).await;
    open(&r, "c2", "u2", "general").await;
    pass(&r, MIN).await;
    open(&r, "c3", "u3", "general").await;
    pass(&r, 10 * MIN).await;
    r.consumer_message(&cid("c1")).await.expect("consumer writes again");
    r.consumer_message(&cid("c1")).await.expect("and again");
    settle(&r).await;
    let q = r.queue(&sid("general"), 10).await.expect("queue");
    let order: Vec<String> = q.conversations.iter().map(|c| c.conversation_id.to_string()).collect();
    assert_eq!(order, ["c1", "c2", "c3"]);
    assert_eq!(
        q.health.queue.max_wait_secs,
        12 * 60,
        "wait counts from the first entry"
    );

    agent_online(&r, "a1", &["general"], 1).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"), "c1 is still served first");
}

#[tokio::test(start_paused = true)]
async fn overdue_fires_at_the_due_time_and_jumps_the_queue() {
    let r = router(
        r#"
[[skills]]
id = "general"
sla = { normal_secs = 3600, first_time_secs = 3600 }
priority_rules = [{ attribute = "tier", equals = "vip", boost = 100 }]
"#,
    )
    .await;
    let mut events = r.subscribe();
    open(&r, "c1", "u1", "general").await;
    pass(&r, 60 * MIN - Duration::from_secs(1)).await;
    assert!(!conv(&r, "c1").overdue);
    assert!(conv(&r, "c1").soon_overdue);
    let vip = r
        .open_conversation(switchboard::router::OpenConversation {
            conversation_id: Some(cid("vip")),
            consumer_id: switchboard::ids::ConsumerId::new("u9").expect("id"),
            skill: sid("general"),
            attributes: [("tier".to_string(), "vip".to_string())].into(),
            urgent: false,
        })
        .await
        .expect("open");
    assert_eq!(vip.priority(&r.skill(&sid("general")).expect("skill")), 100);
    settle(&r).await;
    let first = r.queue(&sid("general"), 1).await.expect("queue").conversations[0]
        .conversation_id
        .to_string();
    assert_eq!(
        first, "vip",
        "500 minutes of priority beat a conversation not yet overdue"
    );
    pass(&r, Duration::from_secs(1)).await;
    let c = conv(&r, "c1");
    assert!(c.overdue);
    let first = r.queue(&sid("general"), 1).await.expect("queue").conversations[0]
        .conversation_id
        .to_string();
    assert_eq!(first, "c1", "overdue first of all");
    let kinds: Vec<EventKind> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.kind).collect();
    assert!(kinds.iter().any(|k| matches!(k, EventKind::SoonOverdue { .. })));
    assert!(kinds.iter().any(|k| matches!(
        k,
        EventKind::Overdue {
            kind: SlaKind::FirstTime,
            ..
        }
    )));
    let health = r.queue_health().await.expect("health");
    assert_eq!(health[&sid("general")].queue.overdue_unassigned, 1);
}

#[tokio::test(start_paused = true)]
async fn first_time_urgent_and_normal_slas() {
    let r = router(ONE_SKILL).await;
    let start = r.clock().now();
    let first = open(&r, "c1", "u1", "general").await;
    assert_eq!(
        first.sla.map(|s| (s.kind, s.due_at)),
        Some((SlaKind::FirstTime, start.plus(30 * MIN)))
    );
    let again = open(&r, "c2", "u1", "general").await;
    assert_eq!(
        again.sla.map(|s| (s.kind, s.due_at)),
        Some((SlaKind::Normal, start.plus(60 * MIN)))
    );
    pass(&r, 2 * MIN).await;
    let urgent = r.mark_urgent(&cid("c2")).await.expect("urgent");
    assert_eq!(
        urgent.sla.map(|s| (s.kind, s.due_at)),
        Some((SlaKind::Urgent, start.plus(10 * MIN))),
        "urgent applies to the running wait, from its start"
    );
}

#[tokio::test(start_paused = true)]
async fn manual_sla_releases_capacity_and_comes_back_before_it_is_due() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    assert_eq!(holder(&r, "c2"), None);
    let mut events = r.subscribe();
    let c1 = r.follow_up(&cid("c1"), &aid("a1"), 120 * MIN).await.expect("follow-up");
    settle(&r).await;
    assert_eq!(
        c1.activity,
        Activity::Inactive,
        "a 2 h follow-up leaves the active load at once"
    );
    assert_eq!(
        holder(&r, "c2").as_deref(),
        Some("a1"),
        "and the freed room is used at once"
    );

    r.consumer_message(&cid("c1")).await.expect("consumer writes");
    settle(&r).await;
    let c1 = conv(&r, "c1");
    assert_eq!(
        c1.sla.map(|s| s.kind),
        Some(SlaKind::Manual),
        "a consumer message does not reset it"
    );
    let due = c1.manual_due_at.expect("due");
    // The consumer's message made it active; the agent answers, so it goes quiet again.
    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    r.follow_up(&cid("c1"), &aid("a1"), 60 * MIN)
        .await
        .expect("follow-up again");
    settle(&r).await;
    let due = conv(&r, "c1").manual_due_at.unwrap_or(due);
    assert_eq!(conv(&r, "c1").activity, Activity::Inactive);
    let until_reactivation = r.clock().until(due.minus(10 * MIN));
    pass(&r, until_reactivation).await;
    assert_eq!(
        conv(&r, "c1").activity,
        Activity::Active,
        "10 minutes before its due time"
    );
    assert!(
        conv(&r, "c1").actionable(),
        "and actionable: the agent owes the follow-up now"
    );
    assert!(!conv(&r, "c1").overdue);
    pass(&r, 10 * MIN).await;
    let c1 = conv(&r, "c1");
    assert!(c1.actionable(), "due: waits for the agent");
    assert!(c1.overdue);
    let kinds: Vec<&'static str> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind.name())
        .collect();
    assert!(
        kinds.contains(&"reactivated") && kinds.contains(&"overdue"),
        "{kinds:?}"
    );
}

const OFFER_MODE: &str = r#"
[routing]
offer_retry_after_secs = 60

[[skills]]
id = "general"
offer_timeout_secs = 30
"#;

#[tokio::test(start_paused = true)]
async fn ignored_or_rejected_offers_go_to_the_next_agent() {
    let r = router(OFFER_MODE).await;
    agent_online(&r, "a1", &["general"], 4).await;
    agent_online(&r, "a2", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    let c = conv(&r, "c1");
    assert_eq!(c.state, Phase::Offered);
    assert_eq!(
        c.offered_to.as_ref().map(|a| a.to_string()).as_deref(),
        Some("a1"),
        "most room first"
    );
    assert_eq!(busy(&r, "a1"), 1.0, "an offer holds room until answered");

    pass(&r, 30 * Duration::from_secs(1)).await;
    let c = conv(&r, "c1");
    assert_eq!(
        c.offered_to.as_ref().map(|a| a.to_string()).as_deref(),
        Some("a2"),
        "ignored: next agent"
    );
    assert_eq!(busy(&r, "a1"), 0.0);

    let err = r
        .accept_offer(&cid("c1"), &aid("a1"))
        .await
        .expect_err("a1 holds no offer");
    assert!(matches!(err, switchboard::RouterError::Conflict(_)));
    r.reject_offer(&cid("c1"), &aid("a2")).await.expect("reject");
    settle(&r).await;
    assert_eq!(
        conv(&r, "c1").state,
        Phase::Queued,
        "both declined: waits for the retry"
    );
    pass(&r, 60 * Duration::from_secs(1)).await;
    assert_eq!(
        conv(&r, "c1").state,
        Phase::Offered,
        "offered again after offer_retry_after"
    );
    let holder_now = conv(&r, "c1").offered_to.expect("offered");
    let c = r.accept_offer(&cid("c1"), &holder_now).await.expect("accept");
    assert_eq!(c.state, Phase::Assigned);
    assert_eq!(c.agent_id.as_ref(), Some(&holder_now));
    settle(&r).await;
    assert_eq!(r.agent(&holder_now).expect("agent").conversations.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn transfer_to_skill_recomputes_the_sla_and_routes_there() {
    let r = router(
        r#"
[[skills]]
id = "general"
[[skills]]
id = "retention"
sla = { normal_secs = 600, first_time_secs = 600 }
"#,
    )
    .await;
    agent_online(&r, "a1", &["general"], 2).await;
    agent_online(&r, "r1", &["retention"], 2).await;
    open(&r, "c1", "u1", "general").await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    pass(&r, 2 * MIN).await;
    let transferred_at = r.clock().now();
    let c = r
        .transfer_to_skill(&cid("c1"), &sid("retention"))
        .await
        .expect("transfer");
    settle(&r).await;
    assert_eq!(
        c.sla.map(|s| s.due_at),
        Some(transferred_at.plus(10 * MIN)),
        "retention's 10 min, restarted at the transfer (LivePerson)"
    );
    assert_eq!(holder(&r, "c1").as_deref(), Some("r1"));
    assert_eq!(busy(&r, "a1"), 0.0, "the first agent is released");
    assert_eq!(conv(&r, "c1").transfers, 1);
}

const TRANSFERS: &str = r#"
[[skills]]
id = "general"
transfer_to = ["retention"]
[[skills]]
id = "retention"
sla = { normal_secs = 600, first_time_secs = 600 }
[[skills]]
id = "billing"
"#;

/// An agent and a new skill in one transfer; an agent transfer keeps a running wait (the
/// SLA recomputed with the new skill) and, when the agent wrote last, starts no SLA but
/// is routed all the same; `transfer_to` refuses other skills and changes nothing.
#[tokio::test(start_paused = true)]
async fn transfers_to_an_agent_and_skill_follow_liveperson_s_sla_rules() {
    let r = router(TRANSFERS).await;
    agent_online(&r, "a1", &["general"], 3).await;
    agent_online(&r, "r1", &["retention"], 3).await;
    open(&r, "waiting", "u1", "general").await;
    open(&r, "answered", "u2", "general").await;
    let opened = r.clock().now();
    r.agent_message(&cid("answered"), &aid("a1")).await.expect("reply");
    pass(&r, 2 * MIN).await;

    let c = r
        .transfer_to_agent(&cid("waiting"), &aid("r1"), Some(&sid("retention")))
        .await
        .expect("to r1 in retention");
    assert_eq!(c.skill, sid("retention"));
    assert_eq!(
        c.sla.map(|s| s.due_at),
        Some(opened.plus(10 * MIN)),
        "the consumer's wait goes on: retention's 10 min from it"
    );
    let c = r
        .transfer_to_agent(&cid("answered"), &aid("r1"), Some(&sid("retention")))
        .await
        .expect("to r1 in retention");
    assert_eq!(c.sla, None, "the agent wrote last: no SLA");
    assert!(c.actionable(), "but routed all the same");
    settle(&r).await;
    assert_eq!(holder(&r, "waiting").as_deref(), Some("r1"));
    assert_eq!(holder(&r, "answered").as_deref(), Some("r1"));
    assert_eq!(conv(&r, "answered").awaiting, Awaiting::Consumer);

    // general may transfer only to retention.
    open(&r, "c3", "u3", "general").await;
    let before = conv(&r, "c3");
    let err = r
        .transfer_to_skill(&cid("c3"), &sid("billing"))
        .await
        .expect_err("not in transfer_to");
    assert!(matches!(err, switchboard::RouterError::Conflict(_)), "{err:?}");
    agent_online(&r, "b1", &["billing"], 3).await;
    let err = r
        .transfer_to_agent(&cid("c3"), &aid("b1"), Some(&sid("billing")))
        .await
        .expect_err("not in transfer_to");
    assert!(matches!(err, switchboard::RouterError::Conflict(_)), "{err:?}");
    settle(&r).await;
    let after = conv(&r, "c3");
    assert_eq!(
        (after.skill.clone(), after.agent_id.clone(), after.transfers),
        (before.skill, before.agent_id, 0)
    );
    // An agent without the new skill: refused.
    let err = r
        .transfer_to_agent(&cid("c3"), &aid("a1"), Some(&sid("retention")))
        .await
        .expect_err("a1 has no retention");
    assert!(matches!(err, switchboard::RouterError::Conflict(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn transfer_to_agent_waits_for_that_agent_then_any_agent() {
    let r = router("[routing]\ntransfer_to_agent_max_wait_secs = 3600\n[[skills]]\nid = \"general\"\n").await;
    agent_online(&r, "a1", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    agent_online(&r, "a2", &["general"], 1).await;
    assert_eq!(holder(&r, "c2").as_deref(), Some("a2"));
    agent_online(&r, "a3", &["general"], 3).await;
    // a1 hands c1 to a2, who is full.
    r.transfer_to_agent(&cid("c1"), &aid("a2"), None)
        .await
        .expect("transfer");
    settle(&r).await;
    assert_eq!(holder(&r, "c1"), None, "a3 has room but c1 waits for a2");
    pass(&r, 30 * MIN).await;
    assert_eq!(holder(&r, "c1"), None);
    pass(&r, 30 * MIN).await;
    assert_eq!(
        holder(&r, "c1").as_deref(),
        Some("a3"),
        "after the maximum wait, any agent"
    );
}

#[tokio::test(start_paused = true)]
async fn transfer_to_agent_is_taken_as_soon_as_the_agent_has_room() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 1).await;
    agent_online(&r, "a2", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    let first = holder(&r, "c1").expect("assigned");
    let other = if first == "a1" { "a2" } else { "a1" };
    let c2_holder = holder(&r, "c2").expect("assigned");
    assert_eq!(c2_holder, other);
    r.transfer_to_agent(&cid("c1"), &aid(other), None)
        .await
        .expect("transfer");
    settle(&r).await;
    assert_eq!(holder(&r, "c1"), None);
    r.close(&cid("c2"), ClosedBy::Agent, Some(&aid(other)))
        .await
        .expect("close");
    settle(&r).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some(other));
}

#[tokio::test(start_paused = true)]
async fn return_to_queue_prefers_another_agent() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 4).await;
    open(&r, "c1", "u1", "general").await;
    agent_online(&r, "a2", &["general"], 2).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    let c = r.return_to_queue(&cid("c1"), &aid("a1")).await.expect("return");
    assert!(c.returned_to_queue);
    settle(&r).await;
    assert_eq!(
        holder(&r, "c1").as_deref(),
        Some("a2"),
        "a1 has more room but gave it back"
    );
    let err = r
        .return_to_queue(&cid("c1"), &aid("a1"))
        .await
        .expect_err("a1 no longer holds it");
    assert!(matches!(err, switchboard::RouterError::Conflict(_)));
}

/// Automatic unassignment is opt-in (LivePerson): an agent away or offline keeps every
/// conversation when `[routing.unassign]` is not set.
#[tokio::test(start_paused = true)]
async fn away_and_offline_agents_keep_their_conversations_by_default() {
    let r = router("[[skills]]\nid = \"general\"\n").await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    r.agent_message(&cid("c2"), &aid("a1")).await.expect("reply");
    agent_online(&r, "a2", &["general"], 3).await;
    r.set_agent_status(&aid("a1"), AgentStatus::Away).await.expect("away");
    pass(&r, 24 * 60 * MIN).await;
    r.set_agent_status(&aid("a1"), AgentStatus::Offline)
        .await
        .expect("offline");
    pass(&r, 24 * 60 * MIN).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"), "waiting for a1's answer, kept");
    assert_eq!(
        holder(&r, "c2").as_deref(),
        Some("a1"),
        "waiting for the consumer, kept"
    );
    assert_eq!(busy(&r, "a2"), 0.0);
}

/// `routing.unassign.away_after_secs`: past it, only the conversations waiting for the
/// agent's answer go back to the queue (one whose consumer writes later goes at once);
/// those waiting for the consumer and the follow-ups the agent promised stay.
#[tokio::test(start_paused = true)]
async fn away_after_gives_back_only_conversations_waiting_for_the_agent() {
    let r = router("[routing.unassign]\naway_after_secs = 120\n[[skills]]\nid = \"general\"\n").await;
    agent_online(&r, "a1", &["general"], 3).await;
    open(&r, "waiting", "u1", "general").await;
    open(&r, "answered", "u2", "general").await;
    open(&r, "follow-up", "u3", "general").await;
    r.agent_message(&cid("answered"), &aid("a1")).await.expect("reply");
    r.follow_up(&cid("follow-up"), &aid("a1"), 4 * 60 * MIN)
        .await
        .expect("follow-up");
    agent_online(&r, "a2", &["general"], 3).await;
    r.set_agent_status(&aid("a1"), AgentStatus::Away).await.expect("away");
    settle(&r).await;
    pass(&r, 119 * Duration::from_secs(1)).await;
    assert_eq!(holder(&r, "waiting").as_deref(), Some("a1"), "within away_after");
    pass(&r, Duration::from_secs(1)).await;
    assert_eq!(
        holder(&r, "waiting").as_deref(),
        Some("a2"),
        "waiting for an agent: reassigned"
    );
    assert_eq!(
        holder(&r, "answered").as_deref(),
        Some("a1"),
        "waiting for the consumer: kept"
    );
    assert_eq!(
        holder(&r, "follow-up").as_deref(),
        Some("a1"),
        "a follow-up stays with its agent"
    );
    pass(&r, 10 * MIN).await;
    r.consumer_message(&cid("answered")).await.expect("consumer");
    settle(&r).await;
    assert_eq!(
        holder(&r, "answered").as_deref(),
        Some("a2"),
        "the consumer wrote to an agent away past away_after: given back at once"
    );
    assert_eq!(conv(&r, "answered").route.avoid_agent, None, "assigned: hints cleared");
    assert_eq!(
        busy(&r, "a1"),
        0.1,
        "a1 holds the follow-up only (4 h away: inactive weight)"
    );
}

/// `routing.unassign.unresponsive_after_secs`: an online agent who leaves a consumer
/// message unanswered that long loses the conversation to the queue (reason
/// `unresponsive`); an answer in time keeps it.
#[tokio::test(start_paused = true)]
async fn an_unresponsive_online_agent_loses_the_conversation() {
    let r = router("[routing.unassign]\nunresponsive_after_secs = 60\n[[skills]]\nid = \"general\"\n").await;
    let mut events = r.subscribe();
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    let sla = conv(&r, "c1").sla;
    pass(&r, 59 * Duration::from_secs(1)).await;
    r.agent_message(&cid("c2"), &aid("a1")).await.expect("answered in time");
    agent_online(&r, "a2", &["general"], 2).await;
    pass(&r, Duration::from_secs(1)).await;
    assert_eq!(
        holder(&r, "c1").as_deref(),
        Some("a2"),
        "60 s unanswered: given to another agent"
    );
    assert_eq!(holder(&r, "c2").as_deref(), Some("a1"), "answered in time: kept");
    assert_eq!(conv(&r, "c1").sla, sla, "the SLA keeps its anchor");
    let mut reasons = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let switchboard::events::EventKind::Unassigned { reason } = e.kind {
            reasons.push((e.conversation_id.map(|c| c.to_string()), reason.as_str()));
        }
    }
    assert_eq!(reasons, vec![(Some("c1".to_string()), "unresponsive")]);
    // The consumer writes again to a2, who answers within the minute: nothing moves.
    r.consumer_message(&cid("c2")).await.expect("consumer");
    pass(&r, 30 * Duration::from_secs(1)).await;
    r.agent_message(&cid("c2"), &aid("a1")).await.expect("answer");
    pass(&r, 10 * MIN).await;
    assert_eq!(holder(&r, "c2").as_deref(), Some("a1"));
}

#[tokio::test(start_paused = true)]
async fn back_soon_keeps_conversations_but_gets_no_new_ones() {
    let r = router("[routing.unassign]\naway_after_secs = 60\n[[skills]]\nid = \"general\"\n").await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    r.set_agent_status(&aid("a1"), AgentStatus::BackSoon)
        .await
        .expect("status");
    open(&r, "c2", "u2", "general").await;
    pass(&r, 10 * MIN).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    assert_eq!(holder(&r, "c2"), None);
    r.set_agent_status(&aid("a1"), AgentStatus::Online)
        .await
        .expect("status");
    settle(&r).await;
    assert_eq!(
        holder(&r, "c2").as_deref(),
        Some("a1"),
        "back online: the backlog drains"
    );
}

const FALLBACK: &str = r#"
[[skills]]
id = "general"
[[skills]]
id = "billing"
fallback_skill = "general"
fallback_after_secs = 900
"#;

#[tokio::test(start_paused = true)]
async fn fallback_when_no_agent_of_the_skill_is_online() {
    let r = router(FALLBACK).await;
    agent_online(&r, "g1", &["general"], 2).await;
    open(&r, "c1", "u1", "billing").await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("g1"));
}

/// LivePerson's fallback: only conversations never assigned fall back (not one returned
/// to the queue); `fallback_when_away = false` counts an away (or back soon) agent of
/// the skill as available, so only `fallback_after` sends a conversation on.
#[tokio::test(start_paused = true)]
async fn fallback_takes_only_conversations_never_assigned_and_away_agents_count_as_the_skill_says() {
    for when_away in [true, false] {
        let r = router(&format!("{FALLBACK}fallback_when_away = {when_away}\n")).await;
        agent_online(&r, "b1", &["billing"], 2).await;
        open(&r, "c0", "u0", "billing").await;
        assert_eq!(holder(&r, "c0").as_deref(), Some("b1"));
        r.set_agent_status(&aid("b1"), AgentStatus::BackSoon)
            .await
            .expect("break");
        r.return_to_queue(&cid("c0"), &aid("b1")).await.expect("returned");
        agent_online(&r, "g1", &["general"], 3).await;
        open(&r, "c1", "u1", "billing").await;
        settle(&r).await;
        assert_eq!(holder(&r, "c0"), None, "returned: never falls back ({when_away})");
        let expected_c1 = if when_away { Some("g1") } else { None };
        assert_eq!(
            holder(&r, "c1").as_deref(),
            expected_c1,
            "fallback_when_away = {when_away}"
        );
        pass(&r, 15 * MIN).await;
        assert_eq!(holder(&r, "c1").as_deref(), Some("g1"), "fallback_after, either way");
        assert_eq!(holder(&r, "c0"), None, "still not the returned one");
    }
}

#[tokio::test(start_paused = true)]
async fn fallback_after_a_time_in_queue() {
    let r = router(FALLBACK).await;
    agent_online(&r, "b1", &["billing"], 1).await;
    agent_online(&r, "g1", &["general"], 2).await;
    open(&r, "c0", "u0", "billing").await;
    open(&r, "c1", "u1", "billing").await;
    assert_eq!(holder(&r, "c0").as_deref(), Some("b1"));
    assert_eq!(holder(&r, "c1"), None, "billing's agent is full, and online");
    pass(&r, 15 * MIN).await;
    assert_eq!(
        holder(&r, "c1").as_deref(),
        Some("g1"),
        "after fallback_after, general takes it"
    );
    assert_eq!(conv(&r, "c1").skill, sid("billing"), "it stays a billing conversation");
}

#[tokio::test(start_paused = true)]
async fn auto_close_when_the_consumer_stays_silent() {
    let r = router("[[skills]]\nid = \"general\"\nauto_close_after_secs = 7200\n").await;
    agent_online(&r, "a1", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    pass(&r, 119 * MIN).await;
    assert_eq!(conv(&r, "c1").state, Phase::Assigned);
    pass(&r, MIN).await;
    let c = conv(&r, "c1");
    assert_eq!(c.closed.map(|x| x.by), Some(ClosedBy::System));
    assert_eq!(busy(&r, "a1"), 0.0, "closing frees the agent");
}

/// LivePerson's routing logic: the agent of lowest utilization (`busy / max_slots`)
/// gets the next conversation, not the one with the most free slots; `most_free` on
/// request.
#[tokio::test(start_paused = true)]
async fn the_least_utilized_agent_gets_the_next_conversation() {
    for (routing, expected) in [("", "small"), ("[routing]\nagent_choice = \"most_free\"\n", "big")] {
        let r = router(&format!("{routing}[[skills]]\nid = \"general\"\n")).await;
        agent_online(&r, "big", &["general"], 10).await;
        for i in 0..5 {
            open(&r, &format!("b{i}"), &format!("u{i}"), "general").await;
        }
        settle(&r).await;
        assert_eq!(busy(&r, "big"), 5.0);
        agent_online(&r, "small", &["general"], 3).await;
        open(&r, "c6", "u6", "general").await;
        settle(&r).await;
        assert_eq!(holder(&r, "c6").as_deref(), Some(expected), "{routing:?}");
    }
}

/// Waiting for the consumer is not waiting in line: a follow-up returned to the queue
/// counts its time in queue from when it came due there (its rank, the queue's
/// figures, the wait measured at assignment), not from when it entered the queue.
#[tokio::test(start_paused = true)]
async fn time_in_queue_counts_from_when_the_conversation_became_actionable() {
    let r = router("[routing]\nreactivate_before_secs = 600\n[[skills]]\nid = \"general\"\n").await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    settle(&r).await;
    r.follow_up(&cid("c1"), &aid("a1"), 60 * MIN).await.expect("follow-up");
    r.set_agent_status(&aid("a1"), AgentStatus::Offline)
        .await
        .expect("offline");
    r.return_to_queue(&cid("c1"), &aid("a1")).await.expect("returned");
    let c = conv(&r, "c1");
    assert_eq!(
        (c.state, c.actionable()),
        (Phase::Queued, false),
        "back in the queue, not actionable before the follow-up comes due"
    );
    pass(&r, 50 * MIN).await;
    let came_due = c.manual_due_at.expect("due").minus(10 * MIN);
    assert!(conv(&r, "c1").actionable(), "10 minutes before it is due");
    pass(&r, MIN).await;
    let q = r.queue(&sid("general"), 10).await.expect("queue");
    let row = q
        .conversations
        .iter()
        .find(|x| x.conversation_id == cid("c1"))
        .expect("c1 in line");
    assert_eq!(
        row.queued_at, came_due,
        "in line since it came due, not since it was queued"
    );
    assert_eq!(q.health.queue.max_wait_secs, 60);
}

/// Queue backlog management: an agent who answers a consumer message older than
/// `routing.backlog_after_secs` (2 h) frees the conversation's weight at once.
#[tokio::test(start_paused = true)]
async fn answering_a_backlogged_conversation_gives_it_its_inactive_weight_at_once() {
    let r = router(ONE_SKILL).await;
    open(&r, "old", "u1", "general").await;
    pass(&r, 121 * MIN).await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "new", "u2", "general").await;
    settle(&r).await;
    assert_eq!(busy(&r, "a1"), 2.0, "both assigned, active");
    r.agent_message(&cid("old"), &aid("a1")).await.expect("reply");
    r.agent_message(&cid("new"), &aid("a1")).await.expect("reply");
    settle(&r).await;
    assert_eq!(
        conv(&r, "old").activity,
        Activity::Inactive,
        "its consumer wrote 2 h ago"
    );
    assert_eq!(conv(&r, "new").activity, Activity::Active);
    assert!((busy(&r, "a1") - 1.1).abs() < 1e-9, "busy {}", busy(&r, "a1"));
}

/// LivePerson's default: a conversation waits 90 days for its consumer before the
/// system closes it (bounds 25 minutes to 90 days, validated in the config).
#[tokio::test(start_paused = true)]
async fn by_default_a_silent_consumer_s_conversation_is_closed_after_90_days() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    let day = 24 * 60 * MIN;
    pass(&r, 89 * day).await;
    assert_eq!(conv(&r, "c1").state, Phase::Assigned, "still open after 89 days");
    pass(&r, day).await;
    assert_eq!(conv(&r, "c1").closed.map(|x| x.by), Some(ClosedBy::System));
}

#[tokio::test(start_paused = true)]
async fn closed_conversations_are_forgotten_after_retention() {
    let r = router("[routing]\nclosed_retention_secs = 600\n[[skills]]\nid = \"general\"\n").await;
    open(&r, "c1", "u1", "general").await;
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    pass(&r, 9 * MIN).await;
    assert_eq!(conv(&r, "c1").state, Phase::Closed);
    pass(&r, MIN).await;
    assert!(r.conversation(&cid("c1")).is_err(), "memory is bounded");
}

#[tokio::test(start_paused = true)]
async fn a_returning_consumer_goes_back_to_the_same_agent() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 4).await;
    agent_online(&r, "a2", &["general"], 4).await;
    open(&r, "c1", "u1", "general").await;
    let first = holder(&r, "c1").expect("assigned");
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    // Fill the other agent less than the first, so plain load balancing would pick it.
    open(&r, "x1", "u2", "general").await;
    pass(&r, 3 * 24 * 60 * MIN).await;
    open(&r, "c2", "u1", "general").await;
    assert_eq!(holder(&r, "c2").as_deref(), Some(first.as_str()));
}

#[tokio::test(start_paused = true)]
async fn warm_up_paces_a_fresh_agent() {
    let r = router("[routing.warmup]\ninterval_secs = 90\n[[skills]]\nid = \"general\"\n").await;
    for i in 0..4 {
        open(&r, &format!("c{i}"), &format!("u{i}"), "general").await;
    }
    agent_online(&r, "a1", &["general"], 3).await;
    let held = || r.agent(&aid("a1")).expect("agent").conversations.len();
    assert_eq!(held(), 1, "one at once");
    pass(&r, 89 * Duration::from_secs(1)).await;
    assert_eq!(held(), 1);
    pass(&r, Duration::from_secs(1)).await;
    assert_eq!(held(), 2, "one more after the interval");
    pass(&r, 90 * Duration::from_secs(1)).await;
    assert_eq!(held(), 3, "full: warm-up over");
    r.agent_message(&cid("c0"), &aid("a1")).await.expect("reply");
    pass(&r, 10 * MIN).await;
    assert_eq!(held(), 4, "after warm-up, freed room is used at once");
}

#[tokio::test(start_paused = true)]
async fn max_open_caps_assignments_whatever_the_weight() {
    let r = router(ONE_SKILL).await;
    let spec = switchboard::domain::agent::AgentSpec {
        group: None,
        skills: vec![sid("general")],
        max_slots: 4,
        max_open: Some(2),
    };
    r.put_agent(aid("a1"), spec).await.expect("agent");
    r.set_agent_status(&aid("a1"), AgentStatus::Online)
        .await
        .expect("online");
    for i in 0..3 {
        open(&r, &format!("c{i}"), &format!("u{i}"), "general").await;
    }
    assert_eq!(r.agent(&aid("a1")).expect("agent").conversations.len(), 2);
}

// ---- virtual conversation actors ----

#[tokio::test(start_paused = true)]
async fn a_conversation_waiting_for_the_consumer_has_no_actor_and_wakes_on_a_message() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    assert_eq!(r.num_active_conversations(), 1, "waiting for the agent: live actor");
    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    settle(&r).await;
    assert_eq!(r.num_active_conversations(), 0, "waiting for the consumer: passivated");
    assert_eq!(conv(&r, "c1").awaiting, Awaiting::Consumer);

    let activations = r.conversation_activations();
    let c = r.consumer_message(&cid("c1")).await.expect("consumer");
    settle(&r).await;
    assert_eq!(
        r.conversation_activations(),
        activations + 1,
        "the message activated it"
    );
    assert_eq!(c.awaiting, Awaiting::Agent);
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"), "still with its agent");
    assert_eq!(busy(&r, "a1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_passive_conversations_deadline_wakes_it() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    r.agent_message(&cid("c1"), &aid("a1")).await.expect("reply");
    settle(&r).await;
    assert_eq!(r.num_active_conversations(), 0);
    pass(&r, 10 * MIN).await;
    assert_eq!(
        conv(&r, "c1").activity,
        Activity::Inactive,
        "inactive_after fired while passive"
    );
    assert!((busy(&r, "a1") - 0.1).abs() < 1e-9, "the agent was told the new weight");
    assert_eq!(r.num_active_conversations(), 0, "and it went back to sleep");
}

#[tokio::test(start_paused = true)]
async fn closed_conversations_have_no_actor_and_are_bounded_in_count() {
    let r = router("[routing]\nclosed_retention_max = 2\n[[skills]]\nid = \"general\"\n").await;
    for id in ["c1", "c2", "c3"] {
        open(&r, id, id, "general").await;
        r.close(&cid(id), ClosedBy::Consumer, None).await.expect("close");
        settle(&r).await;
    }
    assert_eq!(r.num_active_conversations(), 0);
    assert_eq!(r.num_closed_retained(), 2);
    assert!(r.conversation(&cid("c1")).is_err(), "the oldest closed one went first");
    assert_eq!(conv(&r, "c3").state, Phase::Closed);
    assert_eq!(r.num_open_conversations(), 0);
}

#[tokio::test(start_paused = true)]
async fn opening_past_max_open_conversations_is_refused_and_changes_nothing() {
    let r = router("[routing]\nmax_open_conversations = 2\n[[skills]]\nid = \"general\"\n").await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    let refused = r
        .open_conversation(
            switchboard::router::OpenConversation::new(
                switchboard::ids::ConsumerId::new("u3").expect("id"),
                sid("general"),
            )
            .with_id(cid("c3")),
        )
        .await;
    assert_eq!(refused.err(), Some(switchboard::RouterError::Overloaded));
    assert!(r.conversation(&cid("c3")).is_err());
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    settle(&r).await;
    open(&r, "c3", "u3", "general").await;
    assert_eq!(r.num_open_conversations(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_idle_conversation_waiting_for_an_agent_gives_up_its_actor_and_is_still_routed() {
    let r = router(ONE_SKILL).await;
    agent(&r, "a1", &["general"], 2).await;
    open(&r, "c1", "u1", "general").await;
    assert_eq!(r.num_active_conversations(), 1, "waiting for an agent: live actor");
    pass(&r, MIN).await;
    assert_eq!(r.num_active_conversations(), 0, "no work for passivate_after (30 s)");
    assert!(conv(&r, "c1").actionable());
    r.set_agent_status(&aid("a1"), AgentStatus::Online)
        .await
        .expect("online");
    settle(&r).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"), "the queue's offer woke it");
}

/// LivePerson's queue health: actionable split by why each waits, first-time consumers
/// waiting, and the estimated wait for a new conversation (the line ahead + 1, times
/// the gap between departures while every agent was busy).
#[tokio::test(start_paused = true)]
async fn queue_health_splits_the_actionable_and_estimates_the_wait_of_a_new_conversation() {
    let r = router(ONE_SKILL).await;
    agent_online(&r, "a1", &["general"], 1).await;
    for i in 0..4 {
        open(&r, &format!("c{i}"), &format!("u{i}"), "general").await;
    }
    let health = |r: &switchboard::Router| {
        let r = r.clone();
        async move { r.queue_health().await.expect("health")[&sid("general")].queue.clone() }
    };
    let f = health(&r).await;
    assert_eq!(
        (f.actionable, f.actionable_consumer_wrote_last, f.first_time_unassigned),
        (3, 3, 3)
    );
    assert_eq!(f.estimated_wait_secs, None, "nothing left the line yet: unknown");
    for (i, at) in [(0, 60), (1, 120)] {
        pass(&r, 60 * Duration::from_secs(1)).await;
        r.close(&cid(&format!("c{i}")), ClosedBy::Agent, Some(&aid("a1")))
            .await
            .expect("close");
        settle(&r).await;
        assert_eq!(holder(&r, &format!("c{}", i + 1)).as_deref(), Some("a1"), "at {at} s");
    }
    let f = health(&r).await;
    assert_eq!(f.actionable, 1, "c3 waits");
    assert_eq!(
        f.estimated_wait_secs,
        Some(120),
        "one ahead + itself, one departure a minute while a1 was busy"
    );
    // Returned by its agent: counted as such.
    r.return_to_queue(&cid("c2"), &aid("a1")).await.expect("return");
    settle(&r).await;
    let f = health(&r).await;
    assert_eq!(
        (f.actionable_returned + f.actionable_consumer_wrote_last, f.actionable),
        (1, 1),
        "{f:?}"
    );
}

/// Reopen (LivePerson): within retention a closed conversation comes back; the
/// consumer's reopen prefers the last agent, an agent's reopen goes to that agent; an
/// open conversation or one past retention cannot be reopened. A consumer who writes
/// after an auto-close starts a new conversation that goes to the last agent.
#[tokio::test(start_paused = true)]
async fn reopen_brings_a_closed_conversation_back_to_its_last_agent() {
    let r =
        router("[routing]\nclosed_retention_secs = 3600\n[[skills]]\nid = \"general\"\nauto_close_after_secs = 1800\n")
            .await;
    let mut events = r.subscribe();
    agent_online(&r, "a1", &["general"], 4).await;
    open(&r, "c1", "u1", "general").await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    agent_online(&r, "a2", &["general"], 4).await;
    open(&r, "x", "u9", "general").await; // a2 is less utilized after this: a1 1/4, a2 1/4
    r.close(&cid("c1"), ClosedBy::Agent, Some(&aid("a1")))
        .await
        .expect("close");
    settle(&r).await;
    let err = r.reopen(&cid("x"), None, None).await.expect_err("open");
    assert!(matches!(err, switchboard::RouterError::Conflict(_)), "{err:?}");

    pass(&r, 10 * MIN).await;
    let c = r.reopen(&cid("c1"), None, None).await.expect("reopen");
    assert_eq!((c.state, c.actionable(), c.closed), (Phase::Queued, true, None));
    assert_eq!(
        c.sla.map(|s| s.due_at),
        Some(r.clock().now().plus(30 * MIN)),
        "a new wait: the first-time SLA from now"
    );
    settle(&r).await;
    assert_eq!(
        holder(&r, "c1").as_deref(),
        Some("a1"),
        "the last agent, while it has room"
    );
    let kinds: Vec<&str> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind.name())
        .collect();
    assert!(kinds.contains(&"reopened"), "{kinds:?}");

    // The agent reopens it after a close: routed to that agent.
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    let c = r
        .reopen(&cid("c1"), Some(&aid("a2")), None)
        .await
        .expect("agent reopen");
    assert_eq!(c.route.target_agent, Some(aid("a2")));
    settle(&r).await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a2"));

    // Past retention: forgotten, 404.
    r.close(&cid("c1"), ClosedBy::Consumer, None).await.expect("close");
    pass(&r, 61 * MIN).await;
    let err = r.reopen(&cid("c1"), None, None).await.expect_err("forgotten");
    assert!(matches!(err, switchboard::RouterError::NotFound { .. }), "{err:?}");

    // Auto-closed after 30 min of silence; the consumer comes back in a new conversation,
    // which goes to the last agent although a2 is less utilized.
    open(&r, "c2", "u2", "general").await;
    let last = holder(&r, "c2").expect("assigned");
    r.agent_message(&cid("c2"), &aid(&last)).await.expect("reply");
    pass(&r, 31 * MIN).await;
    assert_eq!(conv(&r, "c2").closed.map(|c| c.by), Some(ClosedBy::System));
    open(&r, "c3", "u2", "general").await;
    assert_eq!(holder(&r, "c3"), Some(last));
}

/// Away reasons for supervisors: `{"status": "away", "reason"}` from
/// `routing.away_reasons`; a reason outside the list, or with another status, is
/// refused and changes nothing; a new reason keeps the time in state; leaving away
/// drops it.
#[tokio::test(start_paused = true)]
async fn an_away_agent_gives_a_reason_from_the_configured_list() {
    let r = router("[routing]\naway_reasons = [\"lunch\", \"meeting\"]\n[[skills]]\nid = \"general\"\n").await;
    agent_online(&r, "a1", &["general"], 2).await;
    let a = r
        .set_agent_status_with_reason(&aid("a1"), AgentStatus::Away, Some("lunch".into()))
        .await
        .expect("away for lunch");
    assert_eq!(
        (a.status, a.status_reason.as_deref()),
        (AgentStatus::Away, Some("lunch"))
    );
    let since = a.status_since;
    pass(&r, 10 * MIN).await;
    for (status, reason) in [(AgentStatus::Away, "nap"), (AgentStatus::BackSoon, "lunch")] {
        let err = r
            .set_agent_status_with_reason(&aid("a1"), status, Some(reason.into()))
            .await
            .expect_err("refused");
        assert!(matches!(err, switchboard::RouterError::InvalidRequest(_)), "{err:?}");
    }
    let a = r.agent(&aid("a1")).expect("agent");
    assert_eq!(
        (a.status, a.status_reason.as_deref()),
        (AgentStatus::Away, Some("lunch")),
        "unchanged"
    );
    let a = r
        .set_agent_status_with_reason(&aid("a1"), AgentStatus::Away, Some("meeting".into()))
        .await
        .expect("meeting");
    assert_eq!(
        (a.status_reason.as_deref(), a.status_since),
        (Some("meeting"), since),
        "same away, new reason"
    );
    let a = r
        .set_agent_status(&aid("a1"), AgentStatus::Online)
        .await
        .expect("online");
    assert_eq!(a.status_reason, None);
}

#[tokio::test(start_paused = true)]
async fn working_hours_in_a_named_zone_and_off_hours_by_hand_stop_the_sla_clock() {
    let r = router(
        r#"
[[skills]]
id = "general"
sla = { normal_secs = 3600, first_time_secs = 3600 }

[[skills]]
id = "ny"
sla = { normal_secs = 3600, first_time_secs = 3600 }
working_hours = { time_zone = "America/New_York", monday = ["09:00-17:00"], tuesday = ["09:00-12:00", "11:00-17:00"] }
"#,
    )
    .await;
    // 10:00 UTC on a Tuesday in November is 05:00 in New York (UTC-5): the clock starts
    // at the 09:00 opening, 14:00 UTC.
    open(&r, "ny1", "u0", "ny").await;
    assert_eq!(
        conv(&r, "ny1").sla.map(|s| s.due_at),
        Some(switchboard::time::Timestamp::parse_rfc3339("2026-11-24T15:00:00Z").expect("time"))
    );

    agent_online(&r, "a1", &["general"], 1).await;
    open(&r, "c1", "u1", "general").await;
    open(&r, "c2", "u2", "general").await;
    assert_eq!(holder(&r, "c1").as_deref(), Some("a1"));
    assert_eq!(holder(&r, "c2"), None, "queued");
    let t0 = r.clock().now();
    pass(&r, 20 * MIN).await;
    let general = sid("general");
    let skill = r.set_off_hours(&general, true).await.expect("switch");
    assert_eq!(skill.off_hours.since(), Some(t0.plus(20 * MIN)));
    settle(&r).await;
    for c in ["c1", "c2"] {
        assert_eq!(conv(&r, c).sla, None, "{c}: no deadline while off hours");
    }
    open(&r, "c3", "u3", "general").await;
    assert_eq!(conv(&r, "c3").sla, None, "a wait that starts off hours has none either");
    pass(&r, 3 * 60 * MIN).await;
    for c in ["c1", "c2", "c3"] {
        assert!(!conv(&r, c).overdue, "{c}: three hours off hours are not late");
    }
    // Back: c1 and c2 used 20 minutes before the switch, c3 nothing.
    let back = r.clock().now();
    r.set_off_hours(&general, false).await.expect("switch back");
    settle(&r).await;
    assert_eq!(conv(&r, "c1").sla.map(|s| s.due_at), Some(back.plus(40 * MIN)));
    assert_eq!(conv(&r, "c2").sla.map(|s| s.due_at), Some(back.plus(40 * MIN)));
    assert_eq!(conv(&r, "c3").sla.map(|s| s.due_at), Some(back.plus(60 * MIN)));
    pass(&r, 40 * MIN - Duration::from_secs(1)).await;
    assert!(!conv(&r, "c2").overdue);
    pass(&r, Duration::from_secs(1)).await;
    assert!(conv(&r, "c1").overdue, "the timer armed again");
    assert!(conv(&r, "c2").overdue);
    let first = r.queue(&general, 1).await.expect("queue").conversations[0]
        .conversation_id
        .to_string();
    assert_eq!(first, "c2", "the overdue queued conversation first");
    // A skill's settings replaced over the API keep the switch.
    r.set_off_hours(&general, true).await.expect("switch");
    let spec: switchboard::config::SkillSpec = serde_json::from_str(r#"{"sla": {"normal_secs": 600}}"#).expect("spec");
    let replaced = r.put_skill(general.clone(), &spec).await.expect("put");
    assert!(replaced.off_hours.since().is_some());
    assert!(r.set_off_hours(&sid("nope"), true).await.is_err(), "unknown skill");
}

#[tokio::test(start_paused = true)]
async fn skills_route_to_agent_groups_by_cascade_or_percentage_split() {
    let r = router(
        r#"
[[skills]]
id = "split"
group_routing = { split = { vendor-a = 60, vendor-b = 40 } }

[[skills]]
id = "cascade"
group_routing = { cascade = ["inhouse", "vendor-a"] }
"#,
    )
    .await;
    for (id, group) in [("a1", "vendor-a"), ("b1", "vendor-b")] {
        agent_in_group(&r, id, &["split"], 100, Some(group)).await;
        r.set_agent_status(&aid(id), AgentStatus::Online).await.expect("online");
    }
    settle(&r).await;
    for i in 0..50 {
        open(&r, &format!("s{i}"), &format!("u{i}"), "split").await;
    }
    let to_a = (0..50)
        .filter(|i| holder(&r, &format!("s{i}")).as_deref() == Some("a1"))
        .count();
    assert_eq!(to_a, 30, "60% of 50 to vendor-a, the rest to vendor-b");

    // Cascade: the in-house agent (2 slots) first, the vendor only when it is full; an
    // agent of no listed group after both.
    agent_in_group(&r, "v1", &["cascade"], 10, Some("vendor-a")).await;
    agent_in_group(&r, "free", &["cascade"], 10, None).await;
    agent_in_group(&r, "i1", &["cascade"], 2, Some("inhouse")).await;
    for id in ["v1", "free", "i1"] {
        r.set_agent_status(&aid(id), AgentStatus::Online).await.expect("online");
    }
    settle(&r).await;
    for i in 0..4 {
        open(&r, &format!("c{i}"), &format!("w{i}"), "cascade").await;
    }
    let holders: Vec<Option<String>> = (0..4).map(|i| holder(&r, &format!("c{i}"))).collect();
    assert_eq!(
        holders,
        ["i1", "i1", "v1", "v1"].map(|a| Some(a.to_string())).to_vec(),
        "2 slots + 0.5 overflow hold two active conversations in-house"
    );
    // The agent moves to another group: its queues learn it at once.
    let spec = switchboard::domain::agent::AgentSpec {
        group: Some(switchboard::ids::GroupId::new("inhouse").expect("id")),
        skills: vec![sid("cascade")],
        max_slots: 10,
        max_open: None,
    };
    r.put_agent(aid("free"), spec).await.expect("regroup");
    settle(&r).await;
    open(&r, "c9", "w9", "cascade").await;
    assert_eq!(
        holder(&r, "c9").as_deref(),
        Some("free"),
        "now in-house, before the vendor"
    );
}
