//! Shared by the benches: medians of repeated runs, printed as `name value unit` lines,
//! and the engine set-up of the engine and memory benches.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use switchboard::config::EngineConfig;
use switchboard::domain::agent::{AgentSpec, AgentStatus};
use switchboard::domain::skill::RoutingPolicy;
use switchboard::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use switchboard::router::OpenConversation;
use switchboard::time::{Clock, Timestamp};
use switchboard::Router;

/// Skills `s0`..`s9`; agent `aN` has skill `s{N % SKILLS}`, conversation `cI` skill `s{I % SKILLS}`.
pub const SKILLS: usize = 10;

/// A router with `SKILLS` skills and `agents` online agents of `max_slots` each;
/// `routing` adjusts the engine-wide rules first.
pub async fn router(agents: usize, max_slots: u32, routing: impl FnOnce(&mut RoutingPolicy)) -> Router {
    let mut config = EngineConfig::default();
    routing(&mut config.routing);
    for s in 0..SKILLS {
        let mut skill = config.skill_defaults.clone();
        skill.id = SkillId::new(format!("s{s}")).expect("id");
        config.skills.push(skill);
    }
    let r = Router::start(config, Clock::starting_at(Timestamp::from_millis(1_800_000_000_000)))
        .await
        .expect("start");
    for a in 0..agents {
        let id = AgentId::new(format!("a{a}")).expect("id");
        let spec = AgentSpec {
            group: None,
            skills: vec![SkillId::new(format!("s{}", a % SKILLS)).expect("id")],
            max_slots,
            max_open: None,
        };
        r.put_agent(id.clone(), spec).await.expect("agent");
        r.set_agent_status(&id, AgentStatus::Online).await.expect("online");
    }
    r
}

pub fn cid(i: u64) -> ConversationId {
    ConversationId::new(format!("c{i}")).expect("id")
}

/// Conversation `c{i}` from consumer `u{i}`.
pub fn open_req(i: u64) -> OpenConversation {
    OpenConversation::new(
        ConsumerId::new(format!("u{i}")).expect("id"),
        SkillId::new(format!("s{}", i as usize % SKILLS)).expect("id"),
    )
    .with_id(cid(i))
}

/// Runs `f` `runs` times; returns the median of what it returns.
pub fn median_of<T: PartialOrd + Copy>(runs: usize, mut f: impl FnMut() -> T) -> T {
    let mut v: Vec<T> = (0..runs).map(|_| f()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Nanoseconds per operation of `ops` operations done by `f`.
pub fn ns_per_op(ops: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / ops as f64
}

pub fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.3} {unit}");
}

pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

/// Resident memory of this process, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// An actor that answers every call: the ractor round trip, the floor of the benches.
#[derive(Debug)]
pub struct Echo;
#[derive(Debug)]
pub struct Ping(pub RpcReplyPort<()>);
impl ractor::Message for Ping {}

impl Actor for Echo {
    type Msg = Ping;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Ping>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(&self, _: ActorRef<Ping>, Ping(reply): Ping, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(());
        Ok(())
    }
}
