use super::*;
use crate::config::builtin_skill_defaults;

const MIN: Duration = Duration::from_secs(60);

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").expect("t0")
}

fn at(mins: u64) -> Timestamp {
    t0().plus(MIN * mins as u32)
}

fn skill() -> Skill {
    builtin_skill_defaults()
}

fn agent(s: &str) -> AgentId {
    AgentId::new(s).expect("id")
}

fn open(first_time: bool) -> Conversation {
    Conversation::open(
        OpenRequest {
            id: ConversationId::new("c1").expect("id"),
            consumer_id: ConsumerId::new("u1").expect("id"),
            skill: skill().id,
            attributes: BTreeMap::new(),
            urgent: false,
            first_time,
            preferred_agent: None,
            seq: 1,
        },
        t0(),
        &skill(),
    )
}

fn assigned(a: &str) -> Conversation {
    let mut c = open(false);
    c.assign(&agent(a), c.epoch, at(1)).expect("assign");
    c
}

#[test]
fn opens_queued_actionable_with_the_right_sla() {
    let c = open(false);
    assert_eq!(c.state, Phase::Queued);
    assert!(c.actionable());
    assert_eq!(c.sla.map(|s| (s.kind, s.due_at)), Some((SlaKind::Normal, at(60))));
    let c = open(true);
    assert_eq!(c.sla.map(|s| (s.kind, s.due_at)), Some((SlaKind::FirstTime, at(30))));
}

#[test]
fn consumer_message_while_waiting_keeps_deadline_and_place() {
    let mut c = open(false);
    let key_before = c.queue_entry(&skill(), &RoutingPolicy::default()).expect("entry").key;
    c.consumer_message(at(5), &skill()).expect("open");
    assert_eq!(
        c.sla.map(|s| s.due_at),
        Some(at(60)),
        "a second message does not push the deadline"
    );
    assert_eq!(c.queued_at, Some(t0()), "wait time counts from the first entry");
    let key_after = c.queue_entry(&skill(), &RoutingPolicy::default()).expect("entry").key;
    assert!(key_after <= key_before, "a fresher message never moves it back");
}

#[test]
fn agent_reply_then_silence_makes_inactive_and_consumer_reply_restarts_sla() {
    let policy = RoutingPolicy::default();
    let s = skill();
    let mut c = assigned("a1");
    c.agent_message(&agent("a1"), at(2)).expect("held");
    assert_eq!(c.awaiting, Awaiting::Consumer);
    assert_eq!(c.sla, None);
    assert_eq!(c.next_deadline(at(2), &s, false, &policy), Some(at(12)));
    c.tick(at(12), &s, false, &policy);
    assert_eq!(c.activity, Activity::Inactive);
    assert_eq!(c.weight(&s), s.inactive_weight);
    c.consumer_message(at(30), &s).expect("open");
    assert_eq!(c.activity, Activity::Active);
    assert_eq!(c.sla.map(|x| x.due_at), Some(at(90)), "the SLA restarts at the reply");
}

#[test]
fn overdue_and_soon_overdue_flip_at_their_times() {
    let policy = RoutingPolicy::default();
    let s = skill();
    let mut c = open(false);
    assert_eq!(c.next_deadline(t0(), &s, false, &policy), Some(at(55)));
    c.tick(at(55), &s, false, &policy);
    assert!(c.soon_overdue && !c.overdue);
    assert_eq!(c.next_deadline(at(55), &s, false, &policy), Some(at(60)));
    c.tick(at(60), &s, false, &policy);
    assert!(c.overdue);
    let entry = c.queue_entry(&s, &policy).expect("entry");
    assert_eq!(entry.key.tier, crate::domain::rank::TIER_OVERDUE);
}

#[test]
fn manual_sla_releases_weight_reactivates_before_due_and_survives_consumer_messages() {
    let policy = RoutingPolicy::default();
    let s = skill();
    let mut c = assigned("a1");
    c.set_follow_up(&agent("a1"), MIN * 120, at(2), &policy).expect("held");
    assert_eq!(c.activity, Activity::Inactive, "2 h > 30 min release threshold");
    assert_eq!(c.sla.map(|x| x.kind), Some(SlaKind::Manual));
    assert_eq!(c.next_deadline(at(2), &s, false, &policy), Some(at(112)));
    c.tick(at(112), &s, false, &policy);
    assert_eq!(c.activity, Activity::Active, "10 min before due");
    c.tick(at(122), &s, false, &policy);
    assert!(c.actionable(), "due: waits for the agent");
    assert!(c.overdue);
    c.consumer_message(at(123), &s).expect("open");
    assert_eq!(
        c.sla.map(|x| (x.kind, x.due_at)),
        Some((SlaKind::Manual, at(122))),
        "not reset"
    );
    c.agent_message(&agent("a1"), at(124)).expect("held");
    assert_eq!(c.sla, None, "the agent's message fulfils the follow-up");
}

#[test]
fn short_manual_sla_keeps_weight() {
    let policy = RoutingPolicy::default();
    let mut c = assigned("a1");
    c.set_follow_up(&agent("a1"), MIN * 20, at(2), &policy).expect("held");
    assert_eq!(c.activity, Activity::Active);
}

#[test]
fn stale_epochs_cannot_assign() {
    let mut c = open(false);
    let epoch = c.epoch;
    c.assign(&agent("a1"), epoch, at(1)).expect("current");
    assert_eq!(c.assign(&agent("a2"), epoch, at(1)), Err(ConversationError::StaleOffer));
    assert_eq!(c.agent_id, Some(agent("a1")));
}

#[test]
fn only_the_holder_may_act_for_the_agent() {
    let policy = RoutingPolicy::default();
    let mut c = assigned("a1");
    let snapshot = c.clone();
    assert!(c.agent_message(&agent("a2"), at(2)).is_err());
    assert!(c.set_follow_up(&agent("a2"), MIN, at(2), &policy).is_err());
    assert!(c
        .unassign(&agent("a2"), UnassignReason::ReturnedByAgent, at(2), &skill())
        .is_err());
    assert!(c.close(ClosedBy::Agent, Some(&agent("a2")), at(2)).is_err());
    assert_eq!(c, snapshot, "a rejected command changes nothing");
}

#[test]
fn return_to_queue_is_actionable_and_avoids_the_agent() {
    let mut c = assigned("a1");
    c.agent_message(&agent("a1"), at(2)).expect("held");
    c.unassign(&agent("a1"), UnassignReason::ReturnedByAgent, at(3), &skill())
        .expect("held");
    assert_eq!(c.state, Phase::Queued);
    assert!(c.actionable());
    assert!(c.returned_to_queue);
    assert_eq!(c.route.avoid_agent, Some(agent("a1")));
    assert_eq!(c.sla.map(|x| x.due_at), Some(at(63)));
}

#[test]
fn unavailable_agent_leaves_a_quiet_conversation_not_actionable() {
    let mut c = assigned("a1");
    c.agent_message(&agent("a1"), at(2)).expect("held");
    c.unassign(&agent("a1"), UnassignReason::AgentUnavailable, at(3), &skill())
        .expect("held");
    assert!(c.in_queue());
    assert!(!c.actionable(), "waits for the consumer, visible in the queue");
    c.consumer_message(at(4), &skill()).expect("open");
    assert!(c.actionable());
}

#[test]
fn a_skill_transfer_restarts_the_sla_at_the_transfer_with_the_new_skill() {
    let mut c = assigned("a1");
    let mut retention = skill();
    retention.id = SkillId::new("retention").expect("id");
    retention.sla.normal = MIN * 10;
    let previous = c.transfer_to_skill(&retention, at(5)).expect("open");
    assert_eq!(previous, Some(agent("a1")));
    assert_eq!(c.skill, retention.id);
    assert_eq!(c.transfers, 1);
    assert_eq!(
        c.sla.map(|x| x.due_at),
        Some(at(15)),
        "the new skill's 10 min from the transfer"
    );
    assert!(c.actionable());
}

/// An agent transfer keeps a running wait; when the agent wrote last it starts no SLA
/// and is actionable all the same, until assigned; it never falls back.
#[test]
fn an_agent_transfer_when_the_agent_wrote_last_starts_no_sla_and_is_routed() {
    let policy = RoutingPolicy::default();
    let s = skill();
    let mut c = assigned("a1");
    c.agent_message(&agent("a1"), at(2)).expect("held");
    c.transfer_to_agent(&agent("a7"), at(5), MIN * 120, &s).expect("open");
    assert_eq!((c.sla, c.awaiting), (None, Awaiting::Consumer));
    assert!(c.actionable() && c.in_transfer && !c.is_quiet());
    assert!(!c.may_fall_back());
    assert_eq!(c.queue_entry(&s, &policy).map(|e| e.actionable), Some(true));
    c.assign(&agent("a7"), c.epoch, at(6)).expect("queued");
    assert!(!c.in_transfer && !c.actionable(), "assigned: waits for the consumer");
    // A consumer waiting: the wait goes on.
    let mut w = assigned("a1");
    w.transfer_to_agent(&agent("a7"), at(5), MIN * 120, &s).expect("open");
    assert_eq!(w.wait_started_at, Some(t0()));
    assert_eq!(
        w.queue_entry(&s, &policy).map(|e| e.because),
        Some(crate::domain::queue::Because::Transferred)
    );
}

#[test]
fn transfer_to_agent_targets_until_max_wait() {
    let policy = RoutingPolicy::default();
    let s = skill();
    let mut c = assigned("a1");
    c.transfer_to_agent(&agent("a7"), at(5), MIN * 120, &s).expect("open");
    assert_eq!(c.route.target_agent, Some(agent("a7")));
    assert_eq!(
        c.next_deadline(at(5), &s, false, &policy),
        Some(at(55)),
        "soon overdue first"
    );
    c.tick(at(125), &s, false, &policy);
    assert_eq!(c.route.target_agent, None);
}

#[test]
fn time_in_line_counts_from_when_the_queued_conversation_became_actionable() {
    let policy = RoutingPolicy::default();
    let s = skill();
    // Opened at t0: in line since t0.
    let fresh = open(false);
    assert_eq!(fresh.in_line_since(), Some(t0()));
    // Assigned, answered (now waiting for the consumer), back to the queue at 5 min as
    // its agent went offline: in the queue, not actionable.
    let mut c = assigned("a1");
    c.agent_message(&agent("a1"), at(2)).expect("held");
    c.unassign(&agent("a1"), UnassignReason::AgentUnavailable, at(5), &s)
        .expect("unassigned");
    assert!(c.in_queue() && !c.actionable());
    // The consumer answers at 30 min: in line from then, not from 5 min.
    c.consumer_message(at(30), &s).expect("open");
    assert_eq!(c.in_line_since(), Some(at(30)));
    let entry = c.queue_entry(&s, &policy).expect("queued");
    assert_eq!(entry.queued_at, at(30));
    // Assigned at 31 min: it waited one minute.
    assert_eq!(c.assign(&agent("a2"), c.epoch, at(31)), Ok(MIN));
}

#[test]
fn an_answer_to_a_consumer_message_older_than_the_backlog_limit_makes_it_inactive_at_once() {
    let policy = RoutingPolicy::default();
    let s = skill();
    // The consumer wrote at t0; answered after 1 hour: active until `inactive_after`.
    let mut recent = assigned("a1");
    recent.agent_message(&agent("a1"), at(60)).expect("held");
    recent.tick(at(60), &s, false, &policy);
    assert_eq!(recent.activity, Activity::Active);
    // Answered after 2 hours (`backlog_after`): inactive at once.
    let mut old = assigned("a1");
    old.agent_message(&agent("a1"), at(120)).expect("held");
    old.tick(at(120), &s, false, &policy);
    assert_eq!(old.activity, Activity::Inactive);
    // The consumer writes again: active.
    old.consumer_message(at(121), &s).expect("open");
    old.tick(at(121), &s, false, &policy);
    assert_eq!(old.activity, Activity::Active);
}

#[test]
fn auto_close_after_consumer_silence() {
    let policy = RoutingPolicy::default();
    let s = skill();
    let mut c = assigned("a1");
    c.agent_message(&agent("a1"), at(2)).expect("held");
    // The default: 90 days of the consumer's silence.
    c.tick(at(1 + 90 * 24 * 60), &s, false, &policy);
    assert_eq!(c.closed, None);
    c.tick(at(2 + 90 * 24 * 60), &s, false, &policy);
    assert_eq!(c.closed.map(|x| x.by), Some(ClosedBy::System));
    assert!(
        c.close(ClosedBy::Consumer, None, at(3 + 90 * 24 * 60)).is_err(),
        "closing twice is a conflict"
    );
}

#[test]
fn fallback_after_a_time_in_queue() {
    let policy = RoutingPolicy::default();
    let mut s = skill();
    s.fallback_skill = Some(SkillId::new("general").expect("id"));
    s.fallback_after = Some(MIN * 15);
    let mut c = open(false);
    assert_eq!(c.queues(&s).len(), 1);
    assert_eq!(c.next_deadline(t0(), &s, true, &policy), Some(at(15)));
    c.tick(at(15), &s, true, &policy);
    assert_eq!(c.queues(&s).len(), 2);
}

#[test]
fn priority_rules_see_builtin_attributes() {
    let mut s = skill();
    s.priority_rules = vec![
        crate::domain::rank::PriorityRule {
            attribute: "tier".into(),
            equals: Some("vip".into()),
            at_least: None,
            boost: 5,
        },
        crate::domain::rank::PriorityRule {
            attribute: "returned_to_queue".into(),
            equals: Some("true".into()),
            at_least: None,
            boost: 2,
        },
    ];
    let mut c = open(false);
    c.attributes.insert("tier".into(), "vip".into());
    assert_eq!(c.priority(&s), 5);
    c.returned_to_queue = true;
    assert_eq!(c.priority(&s), 7);
}

#[test]
fn the_state_round_trips_through_serde() {
    let c = assigned("a1");
    let json = serde_json::to_string(&c).expect("serialize");
    let back: Conversation = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, c);
}

#[test]
fn unassign_reason_names_match_their_serialized_form() {
    for r in [
        UnassignReason::ReturnedByAgent,
        UnassignReason::AgentUnavailable,
        UnassignReason::Transferred,
    ] {
        assert_eq!(
            serde_json::to_value(r).expect("json"),
            serde_json::Value::from(r.as_str())
        );
    }
}

/// LivePerson's manual SLA: a follow-up becomes actionable `reactivate_before` ahead of
/// its time, at the top of its queue (after the overdue); consumer messages meanwhile
/// do not change that, nor does a return to the queue or a transfer.
#[test]
fn a_follow_up_becomes_actionable_before_it_is_due_and_nothing_else_makes_it_so() {
    let policy = RoutingPolicy::default(); // reactivate_before: 10 min
    let s = skill();
    let mut other = skill();
    other.id = SkillId::new("other").expect("id");
    for how in ["kept", "returned", "transferred"] {
        let mut c = assigned("a1");
        c.set_follow_up(&agent("a1"), 60 * MIN, at(2), &policy).expect("held");
        assert!(!c.actionable(), "{how}");
        match how {
            "returned" => c
                .unassign(&agent("a1"), UnassignReason::ReturnedByAgent, at(3), &s)
                .expect("held"),
            "transferred" => {
                c.transfer_to_skill(&other, at(3)).expect("open");
            }
            _ => {}
        }
        c.consumer_message(at(4), &s).expect("open");
        c.tick(at(4), &s, false, &policy);
        assert!(!c.actionable(), "{how}: a consumer message does not make it actionable");
        assert_eq!(
            c.sla.map(|x| (x.kind, x.due_at)),
            Some((SlaKind::Manual, at(62))),
            "{how}"
        );
        assert_eq!(
            c.activity,
            Activity::Active,
            "{how}: the consumer wrote, the agent has something to read"
        );
        let fallback = false;
        assert_eq!(
            c.next_deadline(at(4), &s, fallback, &policy)
                .filter(|t| *t <= at(52))
                .map(|_| ()),
            Some(()),
            "{how}: a deadline wakes it in time"
        );
        c.tick(at(51), &s, false, &policy);
        assert!(!c.actionable(), "{how}");
        c.tick(at(52), &s, false, &policy);
        assert!(c.actionable(), "{how}: 10 minutes before it is due");
        assert_eq!(
            c.pending_agent_since(),
            None,
            "{how}: a follow-up is never auto-unassigned"
        );
        if how != "kept" {
            assert_eq!(c.in_line_since(), Some(at(52)), "{how}: in line since it came due");
            let entry = c.queue_entry(&s, &policy).expect("queued");
            assert!(entry.actionable);
            assert_eq!(entry.key.tier, crate::domain::rank::TIER_FOLLOW_UP, "{how}: at the top");
        }
    }
}

/// Automatic unassignment looks at the consumer's wait for *this* agent: from the
/// assignment at the earliest, and not at all for a conversation waiting for the consumer.
#[test]
fn pending_for_the_agent_counts_from_the_assignment_at_the_earliest() {
    let s = skill();
    let c = open(false);
    assert_eq!(c.pending_agent_since(), None, "queued: no agent");
    let mut c = assigned("a1");
    assert_eq!(
        c.pending_agent_since(),
        Some(at(1)),
        "waiting since t0, assigned at 1 min"
    );
    c.agent_message(&agent("a1"), at(2)).expect("held");
    assert_eq!(c.pending_agent_since(), None, "waiting for the consumer");
    c.consumer_message(at(7), &s).expect("open");
    assert_eq!(c.pending_agent_since(), Some(at(7)));
}

/// The agent is told of the wait only when automatic unassignment, its only reader, is
/// on: otherwise an answer from either side changes nothing the agent keeps, and
/// needs no message to it.
#[test]
fn the_holding_agent_keeps_the_wait_only_when_unassignment_is_on() {
    let s = skill();
    let off = RoutingPolicy::default();
    assert!(!off.unassign.is_on());
    let mut on = off.clone();
    on.unassign.unresponsive_after = Some(Duration::from_secs(60));
    let mut c = assigned("a1");
    assert_eq!(c.holding(&s, &on).pending_since, Some(at(1)));
    assert_eq!(c.holding(&s, &off).pending_since, None);
    let waiting = c.holding(&s, &off);
    c.agent_message(&agent("a1"), at(2)).expect("held");
    assert_eq!(c.holding(&s, &on).pending_since, None);
    assert_eq!(c.holding(&s, &off), waiting, "off: the agent's reply tells it nothing");
    c.consumer_message(at(7), &s).expect("open");
    assert_eq!(c.holding(&s, &on).pending_since, Some(at(7)));
    assert_eq!(c.holding(&s, &off), waiting, "off: nor the consumer's");
}

/// Leaves out of a JSON record every field at its default (`null`, `false`, `0`, empty),
/// inner objects too: the compact record a later build may write.
fn compact(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(fields) => serde_json::Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, compact(v)))
                .filter(|(_, v)| match v {
                    serde_json::Value::Null | serde_json::Value::Bool(false) => false,
                    serde_json::Value::Number(n) => n.as_u64() != Some(0),
                    serde_json::Value::Object(o) => !o.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        v => v,
    }
}

/// The stored record reads back whole, and also reads with every field at its default
/// left out (how a later build may write it: a cluster upgraded node by node has old
/// and new builds reading the same rows).
#[test]
fn the_stored_record_reads_with_its_defaults_left_out() {
    // A record as this build writes it, every field present.
    let full = r#"{"id":"c1","consumer_id":"u1","skill":"general","attributes":{},"urgent":false,"first_time":true,"seq":1,"state":"queued","awaiting":"agent","activity":"active","agent_id":null,"offered_to":null,"opened_at":"2026-12-04T15:45:02.539Z","queued_at":"2026-12-04T15:45:02.539Z","last_consumer_message_at":"2026-12-04T15:45:02.558Z","last_agent_message_at":null,"wait_started_at":"2026-12-04T15:45:02.539Z","sla":{"kind":"first_time","due_at":"2026-12-04T16:15:02.539Z"},"soon_overdue":false,"overdue":false,"manual_due_at":null,"manual_release":false,"follow_up_set_at":null,"transfers":0,"returned_to_queue":false,"in_transfer":false,"was_assigned":false,"route":{"preferred_agent":null,"avoid_agent":null,"target_agent":null,"target_until":null},"fallback_active":false,"epoch":1,"first_response_at":null,"closed":null,"assigned_at":null}"#;
    let read: Conversation = serde_json::from_str(full).expect("a full record");
    assert_eq!(serde_json::to_string(&read).expect("json"), full, "written as read");
    let short = compact(serde_json::from_str(full).expect("json")).to_string();
    assert!(
        short.len() * 5 < full.len() * 3,
        "{} B against {} B: {short}",
        short.len(),
        full.len()
    );
    assert_eq!(
        serde_json::from_str::<Conversation>(&short).expect("a compact record"),
        read
    );

    // Every optional field set, then each of them back at its default in turn: the
    // compact form of each reads back as the conversation.
    let mut set = assigned("a1");
    set.attributes.insert("tier".into(), "gold".into());
    set.urgent = true;
    set.offered_to = Some(agent("a2"));
    set.queued_at = Some(at(2));
    set.last_agent_message_at = Some(at(3));
    set.soon_overdue = true;
    set.overdue = true;
    set.manual_due_at = Some(at(90));
    set.manual_release = true;
    set.follow_up_set_at = Some(at(4));
    set.transfers = 2;
    set.returned_to_queue = true;
    set.in_transfer = true;
    set.route = RouteHints {
        preferred_agent: Some(agent("a3")),
        avoid_agent: Some(agent("a4")),
        target_agent: Some(agent("a5")),
        target_until: Some(at(9)),
    };
    set.fallback_active = true;
    set.first_response_at = Some(at(5));
    set.closed = Some(Closure {
        by: ClosedBy::Agent,
        at: at(6),
    });
    let mut variants = vec![set.clone(), open(false)];
    for field in 0..20 {
        let mut c = set.clone();
        match field {
            0 => c.attributes.clear(),
            1 => c.urgent = false,
            2 => c.offered_to = None,
            3 => c.queued_at = None,
            4 => c.last_agent_message_at = None,
            5 => c.soon_overdue = false,
            6 => c.manual_due_at = None,
            7 => c.manual_release = false,
            8 => c.follow_up_set_at = None,
            9 => c.transfers = 0,
            10 => c.returned_to_queue = false,
            11 => c.in_transfer = false,
            12 => c.route = RouteHints::default(),
            13 => c.route.target_until = None,
            14 => c.fallback_active = false,
            15 => c.first_response_at = None,
            16 => c.closed = None,
            17 => c.agent_id = None,
            18 => c.sla = None,
            _ => c.assigned_at = None,
        }
        variants.push(c);
    }
    for c in variants {
        let short = compact(serde_json::to_value(&c).expect("json")).to_string();
        assert_eq!(
            serde_json::from_str::<Conversation>(&short).expect(&short),
            c,
            "{short}"
        );
    }
}
