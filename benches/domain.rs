//! Domain benches: a skill queue of 10^5 conversations (insert, re-key, match), and
//! the capacity check. `cargo bench --bench domain`.

mod common;

use common::{median_of, ns_per_op, report};
use switchboard::domain::agent::{Agent, AgentSpec, AgentStatus, IncomingOffer};
use switchboard::domain::capacity::Weight;
use switchboard::domain::conversation::RouteHints;
use switchboard::domain::queue::{AgentRoom, QueueEntry, SkillQueue};
use switchboard::domain::rank::{RankKey, TIER_NORMAL};
use switchboard::domain::skill::RoutingPolicy;
use switchboard::ids::{AgentId, ConversationId, SkillId};
use switchboard::time::Timestamp;

const N: usize = 100_000;
const RUNS: usize = 5;

fn entries(skill: &SkillId) -> Vec<QueueEntry> {
    (0..N)
        .map(|i| QueueEntry {
            conversation_id: ConversationId::new(format!("c{i}")).expect("id"),
            home_skill: skill.clone(),
            epoch: 1,
            actionable: true,
            // Scattered keys, as arrivals with different SLAs and priorities give.
            key: RankKey {
                tier: TIER_NORMAL,
                score: ((i as i64 * 7919) % N as i64) * 1000,
                seq: i as u64,
            },
            weight: Weight::from_slots(1.0),
            hints: RouteHints::default(),
            queued_at: Timestamp::from_millis(i as i64),
            due_at: None,
            overdue: false,
            priority: 0,
            in_fallback: false,
            because: Default::default(),
            first_time: false,
        })
        .collect()
}

fn main() {
    let skill = SkillId::new("s").expect("id");
    let base = entries(&skill);

    let insert = median_of(RUNS, || {
        let mut q = SkillQueue::new(skill.clone());
        let e = base.clone();
        ns_per_op(N, || e.into_iter().for_each(|x| q.upsert(x)))
    });
    report("queue_insert_1e5", insert, "ns/op");

    let rekey = median_of(RUNS, || {
        let mut q = SkillQueue::new(skill.clone());
        base.iter().cloned().for_each(|x| q.upsert(x));
        let updated: Vec<QueueEntry> = base
            .iter()
            .cloned()
            .map(|mut e| {
                e.key.score -= 250_000; // a fresher consumer message
                e
            })
            .collect();
        ns_per_op(N, || updated.into_iter().for_each(|x| q.upsert(x)))
    });
    report("queue_rekey_in_1e5", rekey, "ns/op");

    let pop = median_of(RUNS, || {
        let mut q = SkillQueue::new(skill.clone());
        base.iter().cloned().for_each(|x| q.upsert(x));
        for a in 0..1000 {
            let room = AgentRoom {
                online: true,
                away: false,
                accepting: true,
                free: Weight::from_slots(100.5),
                busy: Weight::ZERO,
                slots: Weight::from_slots(100.0),
            };
            q.set_agent(&AgentId::new(format!("a{a}")).expect("id"), room);
        }
        let mut offers = 0;
        let ns = ns_per_op(N, || offers = q.match_offers().len());
        assert_eq!(offers, N);
        ns
    });
    report("queue_match_pop_1e5", pop, "ns/offer");

    let policy = RoutingPolicy::default();
    let spec = AgentSpec {
        group: None,
        skills: vec![skill.clone()],
        max_slots: 4,
        max_open: None,
    };
    let mut agent = Agent::new(AgentId::new("a").expect("id"), spec, Timestamp::from_millis(0), &policy);
    agent.set_status(AgentStatus::Online, Timestamp::from_millis(0), &policy);
    let offer = IncomingOffer {
        conversation: ConversationId::new("c").expect("id"),
        skill: skill.clone(),
        queue: skill.clone(),
        weight: Weight::from_slots(1.0),
        epoch: 1,
        offer_timeout: None,
    };
    let checks = 1_000_000;
    let room = median_of(RUNS, || {
        let now = Timestamp::from_millis(1);
        ns_per_op(checks, || {
            for _ in 0..checks {
                std::hint::black_box(agent.room(now, &policy));
            }
        })
    });
    report("capacity_room_check", room, "ns/op");
    let reserve = median_of(RUNS, || {
        let now = Timestamp::from_millis(1);
        ns_per_op(checks, || {
            for _ in 0..checks {
                let _ = std::hint::black_box(agent.reserve(&offer, now, &policy));
                agent.release(&offer.conversation);
            }
        })
    });
    report("capacity_reserve_release", reserve, "ns/op");
}
