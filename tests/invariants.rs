//! Randomized tests with thousands of events: agents of several skills, queues offering
//! concurrently, agents changing status, transfers, returns, closes and follow-ups.
//!
//! Checked after every step: no agent holds more than its capacity (weights are equal
//! here so that only an assignment can raise a load) or more than `max_open`.
//! Checked whenever the engine is idle (every few steps and at the end): every
//! conversation is accounted for, held by exactly the agent it names, never by two,
//! and no queue holds an actionable conversation while an agent of its skill has room.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use switchboard::actors::remote::{Crossing, Remote};
use switchboard::cluster::placement::{owner, shard_of};
use switchboard::cluster::transport::{Body, Frame};
use switchboard::config::Config;
use switchboard::domain::agent::{AgentSpec, AgentStatus};
use switchboard::domain::capacity::Weight;
use switchboard::domain::conversation::Conversation;
use switchboard::domain::conversation::{ClosedBy, Phase};
use switchboard::events::RouterEvent;
use switchboard::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use switchboard::router::{FaultTarget, OpenConversation};
use switchboard::store::{Store, StoreConfig};
use switchboard::time::Clock;
use switchboard::Router;

const SKILLS: [&str; 3] = ["s0", "s1", "s2"];

/// The engines a run drives: one, or several that split the actors by shard (each
/// agent, conversation and skill queue on the engine that rendezvous hashing gives its
/// id, messages between them crossing through the wire format). Every call goes to the
/// engine that owns its target, as a cluster's forwarding would send it.
#[derive(Clone)]
struct Nodes {
    engines: Vec<Router>,
    names: Vec<String>,
    /// What the engines' [`Loopback`]s reach each other through (they hold it weakly:
    /// the engines hold their loopbacks, so a strong hold would be a cycle, and every
    /// seed's three engines would stay in memory, about 24 MB a seed).
    _joined: Option<Arc<std::sync::OnceLock<Vec<Router>>>>,
}

impl Nodes {
    fn one(r: &Router) -> Nodes {
        Nodes {
            engines: vec![r.clone()],
            names: vec!["n0".into()],
            _joined: None,
        }
    }

    fn owner(&self, key: &str) -> &Router {
        let name = owner(shard_of(key), &self.names).expect("nodes");
        &self.engines[self.names.iter().position(|n| n == name).expect("a node")]
    }

    fn conv(&self, id: &ConversationId) -> &Router {
        self.owner(id.as_str())
    }

    fn agent(&self, id: &AgentId) -> &Router {
        self.owner(id.as_str())
    }

    fn queue(&self, skill: &SkillId) -> &Router {
        self.owner(skill.as_str())
    }

    /// Any engine: for the clock and the policy, the same on all.
    fn any(&self) -> &Router {
        &self.engines[0]
    }

    /// Messages the engines have sent, all together, since start.
    fn messages_sent(&self) -> u64 {
        self.engines.iter().map(|r| r.messages_sent()).sum()
    }

    /// Waits until no engine has a message in flight (messages cross while others settle).
    async fn settle(&self) {
        for _ in 0..1000 {
            for r in &self.engines {
                settle(r).await;
            }
            let mut idle = true;
            for r in &self.engines {
                idle &= r.quiesce(10).await;
            }
            if idle {
                return;
            }
        }
        panic!("the engines did not settle");
    }
}

/// Loops messages between engines in one process, through the transport's wire format.
#[derive(Debug)]
struct Loopback {
    me: usize,
    names: Vec<String>,
    /// Weak: see [`Nodes::_joined`].
    engines: std::sync::Weak<std::sync::OnceLock<Vec<Router>>>,
}

impl Remote for Loopback {
    fn elsewhere(&self, shard: u16) -> Option<String> {
        let name = owner(shard, &self.names).expect("nodes");
        (*name != self.names[self.me]).then(|| name.clone())
    }

    fn send(&self, node: &str, msg: Crossing) {
        let bytes = Frame {
            from: self.names[self.me].clone(),
            body: Body::Engine(msg),
        }
        .encode();
        let Ok(Frame {
            body: Body::Engine(msg),
            ..
        }) = Frame::decode(&bytes)
        else {
            panic!("a frame decodes")
        };
        let to = self.names.iter().position(|n| n == node).expect("a node");
        // After the seed the engines are gone: what is still sent is dropped with them.
        if let Some(engines) = self.engines.upgrade() {
            engines.get().expect("engines")[to].deliver_crossing(msg);
        }
    }
}

/// `n` engines joined as a cluster in this process, each with the config's skills.
async fn split(toml: &str, n: usize) -> Nodes {
    let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let shared = Arc::new(std::sync::OnceLock::new());
    let mut engines = Vec::new();
    for me in 0..n {
        let r = router(toml).await;
        r.join_cluster(Arc::new(Loopback {
            me,
            names: names.clone(),
            engines: Arc::downgrade(&shared),
        }))
        .expect("join");
        engines.push(r);
    }
    shared.set(engines.clone()).expect("once");
    Nodes {
        engines,
        names,
        _joined: Some(shared),
    }
}

/// The engine's config for a seed: a third of the seeds run without automatic
/// unassignment (the default, in which an agent is not told how long a conversation
/// waited for it), the rest with it.
fn config(equal_weights: bool, seed: u64) -> String {
    let unassign = if seed.is_multiple_of(3) {
        ""
    } else {
        "[routing.unassign]\naway_after_secs = 60\noffline_after_secs = 60\nunresponsive_after_secs = 120\n"
    };
    let weights = if equal_weights {
        "smart_capacity = { active_weight = 1.0, inactive_weight = 1.0, inactive_after_secs = 300 }"
    } else {
        "smart_capacity = { active_weight = 1.0, inactive_weight = 0.1, inactive_after_secs = 300 }"
    };
    format!(
        r#"
[routing]
offer_retry_after_secs = 20
transfer_to_agent_max_wait_secs = 600

{unassign}
[skill_defaults]
{weights}
auto_close_after_secs = 3600

[[skills]]
id = "s0"
group_routing = {{ split = {{ g0 = 60, g1 = 40 }} }}
[[skills]]
id = "s1"
group_routing = {{ cascade = ["g1", "g0"] }}
fallback_skill = "s0"
fallback_after_secs = 300
[[skills]]
id = "s2"
offer_timeout_secs = 30
fallback_skill = "s1"
fallback_after_secs = 120
"#
    )
}

struct World {
    rng: SmallRng,
    /// Share of steps that make a random actor panic.
    crash_rate: f64,
    queue_crashes: usize,
    crash_log: std::sync::Mutex<Vec<String>>,
    opened: Vec<ConversationId>,
    agents: Vec<String>,
    counts: BTreeMap<&'static str, u32>,
    log: std::sync::Mutex<(Vec<RouterEvent>, Vec<tokio::sync::broadcast::Receiver<RouterEvent>>)>,
}

async fn setup(nodes: &Nodes, rng: &mut SmallRng) -> Vec<String> {
    let mut agents = Vec::new();
    for i in 0..12 {
        let n = rng.gen_range(1..=3);
        let mut skills: Vec<SkillId> = Vec::new();
        while skills.len() < n {
            let s = sid(SKILLS[rng.gen_range(0..3)]);
            if !skills.contains(&s) {
                skills.push(s);
            }
        }
        let id = format!("a{i}");
        // Groups of the skills' routing, one no skill lists, and none.
        let group = ["g0", "g1", "g2", ""][rng.gen_range(0..4)];
        let spec = AgentSpec {
            group: switchboard::ids::GroupId::new(group).ok(),
            skills,
            max_slots: rng.gen_range(1..=4),
            max_open: rng.gen_bool(0.3).then(|| rng.gen_range(1..=3)),
        };
        let r = nodes.agent(&aid(&id));
        r.put_agent(aid(&id), spec).await.expect("agent");
        r.set_agent_status(&aid(&id), AgentStatus::Online)
            .await
            .expect("online");
        agents.push(id);
    }
    agents
}

impl World {
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        (!v.is_empty()).then(|| &v[self.rng.gen_range(0..v.len())])
    }

    /// One random action. Errors (conflicts from racing the engine) are expected and
    /// must change nothing; they are counted, not failed on.
    async fn step(&mut self, nodes: &Nodes, paused: bool) {
        if self.crash_rate > 0.0 && self.rng.gen_bool(self.crash_rate) {
            // Queues rarely: a supervisor gives up on an actor that crashes more than
            // five times a minute, and these runs last about a second.
            let target = match self.rng.gen_range(0..20) {
                0..=11 => self.pick(&self.opened.clone()).cloned().map(FaultTarget::Conversation),
                12..=18 => self.pick(&self.agents.clone()).map(|a| FaultTarget::Agent(aid(a))),
                _ => Some(FaultTarget::Queue(sid(SKILLS[self.queue_crashes % 3]))).inspect(|_| self.queue_crashes += 1),
            };
            if let Some(t) = target {
                let r = match &t {
                    FaultTarget::Conversation(c) => nodes.conv(c),
                    FaultTarget::Agent(a) => nodes.agent(a),
                    FaultTarget::Queue(q) => nodes.queue(q),
                };
                let at = r.clock().now();
                self.crash_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{at} crash {t:?}"));
                let hit = r.inject_panic(t);
                *self.counts.entry("crash").or_default() += u32::from(hit);
            }
        }
        let roll = self.rng.gen_range(0..100);
        let conv = self.pick(&self.opened.clone()).cloned();
        let holder_of = |id: &ConversationId| nodes.conv(id).conversation(id).ok().and_then(|c| c.agent_id);
        let name: &'static str;
        let ok = match roll {
            0..=24 => {
                name = "open";
                let id = ConversationId::new(format!("c{}", self.opened.len())).expect("id");
                let skill = sid(SKILLS[self.rng.gen_range(0..3)]);
                let consumer = ConsumerId::new(format!("u{}", self.rng.gen_range(0..40))).expect("id");
                let mut req = OpenConversation::new(consumer, skill).with_id(id.clone());
                req.urgent = self.rng.gen_bool(0.1);
                let res = nodes.conv(&id).open_conversation(req).await;
                if res.is_ok() {
                    self.opened.push(id);
                }
                res.is_ok()
            }
            25..=39 => {
                name = "consumer_message";
                match &conv {
                    Some(c) => nodes.conv(c).consumer_message(c).await.is_ok(),
                    None => false,
                }
            }
            40..=54 => {
                name = "agent_message";
                match conv.as_ref().and_then(|c| holder_of(c).map(|a| (c.clone(), a))) {
                    Some((c, a)) => nodes.conv(&c).agent_message(&c, &a).await.is_ok(),
                    None => false,
                }
            }
            55..=62 => {
                name = "close";
                match &conv {
                    Some(c) => match holder_of(c) {
                        Some(a) if self.rng.gen_bool(0.5) => {
                            nodes.conv(c).close(c, ClosedBy::Agent, Some(&a)).await.is_ok()
                        }
                        _ => nodes.conv(c).close(c, ClosedBy::Consumer, None).await.is_ok(),
                    },
                    None => false,
                }
            }
            63..=67 => {
                name = "return_to_queue";
                match conv.as_ref().and_then(|c| holder_of(c).map(|a| (c.clone(), a))) {
                    Some((c, a)) => nodes.conv(&c).return_to_queue(&c, &a).await.is_ok(),
                    None => false,
                }
            }
            68..=71 => {
                name = "transfer_to_skill";
                let to = sid(SKILLS[self.rng.gen_range(0..3)]);
                match &conv {
                    Some(c) => nodes.conv(c).transfer_to_skill(c, &to).await.is_ok(),
                    None => false,
                }
            }
            72..=74 => {
                name = "transfer_to_agent";
                let to = aid(self.pick(&self.agents.clone()).expect("agents"));
                match &conv {
                    Some(c) => {
                        // Half the time to the agent in a new skill, in one request.
                        let skill = self.rng.gen_bool(0.5).then(|| sid(SKILLS[self.rng.gen_range(0..3)]));
                        nodes.conv(c).transfer_to_agent(c, &to, skill.as_ref()).await.is_ok()
                    }
                    None => false,
                }
            }
            75..=78 => {
                name = "follow_up";
                let due = Duration::from_secs(self.rng.gen_range(60..7200));
                match conv.as_ref().and_then(|c| holder_of(c).map(|a| (c.clone(), a))) {
                    Some((c, a)) => nodes.conv(&c).follow_up(&c, &a, due).await.is_ok(),
                    None => false,
                }
            }
            79..=86 => {
                name = "agent_status";
                let a = aid(self.pick(&self.agents.clone()).expect("agents"));
                let status = match self.rng.gen_range(0..10) {
                    0..=5 => AgentStatus::Online,
                    6 => AgentStatus::BackSoon,
                    7 | 8 => AgentStatus::Away,
                    _ => AgentStatus::Offline,
                };
                nodes.agent(&a).set_agent_status(&a, status).await.is_ok()
            }
            87..=93 => {
                name = "answer_offer";
                let a = aid(self.pick(&self.agents.clone()).expect("agents"));
                let r = nodes.agent(&a);
                let pending = r.agent(&a).ok().and_then(|ag| {
                    ag.reservations
                        .iter()
                        .find(|(_, res)| !res.accepted)
                        .map(|(c, _)| c.clone())
                });
                match pending {
                    Some(c) if self.rng.gen_bool(0.7) => r.accept_offer(&c, &a).await.is_ok(),
                    Some(c) => r.reject_offer(&c, &a).await.is_ok(),
                    None => false,
                }
            }
            94 => {
                name = "urgent";
                match &conv {
                    Some(c) => nodes.conv(c).mark_urgent(c).await.is_ok(),
                    None => false,
                }
            }
            95 => {
                // A skill switched off hours by hand, or back, on every node (as the
                // API does): deadlines move under everything else going on.
                name = "off_hours";
                let skill = sid(SKILLS[self.rng.gen_range(0..3)]);
                let on = self.rng.gen_bool(0.5);
                let mut ok = true;
                for r in &nodes.engines {
                    ok &= r.set_off_hours(&skill, on).await.is_ok();
                }
                ok
            }
            _ => {
                name = "time_passes";
                if paused {
                    let secs = self.rng.gen_range(1..900);
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                true
            }
        };
        *self.counts.entry(name).or_default() += u32::from(ok);
    }
}

/// Holds at every instant when inactive and active weights are equal.
fn check_capacity(nodes: &Nodes, agents: &[String], strict_weight: bool) {
    for id in agents {
        let a = nodes.agent(&aid(id)).agent(&aid(id)).expect("agent");
        if strict_weight {
            assert!(
                a.busy() <= a.limits.ceiling(),
                "agent {id} over capacity: busy {:?} > {:?} ({} held, {} offered)",
                a.busy(),
                a.limits.ceiling(),
                a.conversations.len(),
                a.reservations.len()
            );
        }
        if let Some(max) = a.limits.max_open {
            assert!(
                a.num_open() <= max,
                "agent {id} holds {} > max_open {max}",
                a.num_open()
            );
        }
    }
}

/// The events of one conversation, and the crashes, for a failure message.
fn history(world: &World, id: &ConversationId) -> String {
    history_events(world, id) + &crashes(world)
}

/// The crashes injected so far, one per line.
fn crashes(world: &World) -> String {
    world
        .crash_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|l| format!("\n  {l}"))
        .collect()
}

fn history_events(world: &World, id: &ConversationId) -> String {
    let mut log = world.log.lock().unwrap_or_else(|p| p.into_inner());
    let (seen, receivers) = &mut *log;
    for rx in receivers {
        while let Ok(e) = rx.try_recv() {
            seen.push(e);
        }
    }
    seen.sort_by_key(|e| e.at);
    seen.iter()
        .filter(|e| e.conversation_id.as_ref() == Some(id))
        .map(|e| {
            format!(
                "\n  {} {:?} agent={:?} skill={:?}",
                e.at,
                e.kind,
                e.agent_id.as_ref().map(|a| a.to_string()),
                e.skill.as_ref().map(|s| s.to_string())
            )
        })
        .collect()
}

/// Holds whenever no message is in flight.
async fn check_consistency(nodes: &Nodes, world: &World) {
    nodes.settle().await;
    let mut holders: HashMap<ConversationId, Vec<String>> = HashMap::new();
    for id in &world.agents {
        let a = nodes.agent(&aid(id)).agent(&aid(id)).expect("agent");
        for c in a.conversations.keys().chain(a.reservations.keys()) {
            holders.entry(c.clone()).or_default().push(id.clone());
        }
        for (c, res) in &a.reservations {
            let conv = nodes.conv(c).conversation(c).expect("reserved conversation exists");
            assert_eq!(
                conv.state,
                Phase::Offered,
                "{id} holds a reservation {res:?} for {c} which is {:?}{}",
                conv.state,
                history(world, c)
            );
            assert_eq!(conv.offered_to.as_ref(), Some(&aid(id)));
            assert!(
                res.expires_at.is_some(),
                "auto-accept leaves no reservation behind when idle"
            );
        }
    }
    // Virtual actors: at rest, only conversations with work may hold a live actor.
    let (mut with_work, mut live) = (0, 0);
    for r in &nodes.engines {
        r.visit_conversations(|c| with_work += usize::from(!c.is_quiet()));
        live += r.num_active_conversations();
    }
    assert!(
        live <= with_work,
        "{live} live conversation actors but only {with_work} conversations with work"
    );
    let mut queued: HashMap<SkillId, Vec<ConversationId>> = HashMap::new();
    for id in &world.opened {
        let Ok(c) = nodes.conv(id).conversation(id) else {
            // Forgotten after closing and retention: fine, but only if it was closed.
            continue;
        };
        let held_by = holders.remove(id).unwrap_or_default();
        match c.state {
            Phase::Assigned => {
                let a = c.agent_id.as_ref().expect("assigned has an agent").to_string();
                assert_eq!(
                    held_by,
                    vec![a.clone()],
                    "{id} is assigned to {a} and held by {held_by:?}{}",
                    history(world, id)
                );
            }
            Phase::Offered => {
                let a = c.offered_to.as_ref().expect("offered has an agent").to_string();
                assert_eq!(
                    held_by,
                    vec![a],
                    "{id} offered, reserved by {held_by:?}{}",
                    history(world, id)
                );
            }
            Phase::Queued => {
                let detail: Vec<String> = held_by
                    .iter()
                    .map(|a| {
                        format!(
                            "{:?}",
                            nodes
                                .agent(&aid(a))
                                .agent(&aid(a))
                                .map(|x| (x.conversations.get(id).cloned(), x.reservations.get(id).cloned()))
                        )
                    })
                    .collect();
                assert!(
                    held_by.is_empty(),
                    "{id} queued (epoch {}) but held by {held_by:?} {detail:?}{}",
                    c.epoch,
                    history(world, id)
                );
                queued.entry(c.skill.clone()).or_default().push(id.clone());
            }
            Phase::Closed => assert!(held_by.is_empty(), "{id} closed but held by {held_by:?}"),
        }
    }
    assert!(holders.is_empty(), "agents hold unknown conversations: {holders:?}");

    // Nothing lost: every queued conversation is in its skill queue.
    for (skill, ids) in &queued {
        let q = nodes.queue(skill).queue(skill, usize::MAX).await.expect("queue");
        for id in ids {
            assert!(
                q.conversations.iter().any(|row| &row.conversation_id == id),
                "{id} lost from queue {skill}"
            );
        }
        // Backlog drained: an auto-accept skill leaves no ranked conversation behind while
        // an agent of the skill has room.
        if skill.as_str() == "s2" {
            continue;
        }
        // The reads below are not one snapshot: a deadline coming due between them (a
        // run stalled past an offer's timeout, say) changes what they see. A failure
        // counts only if the engine did nothing while it was read; otherwise it settles
        // and reads again.
        for attempt in 0.. {
            let before = nodes.messages_sent();
            let Some(failure) = backlog_failure(nodes, world, skill).await else {
                break;
            };
            let moved = nodes.messages_sent() != before;
            if moved && attempt < 5 {
                nodes.settle().await;
                continue;
            }
            panic!("{failure}\nthe engine moved while this was read: {moved}; attempts {attempt}");
        }
    }
}

/// A ranked conversation of `skill` waiting while an agent of the skill has room,
/// described for a failure message; `None` if there is none.
async fn backlog_failure(nodes: &Nodes, world: &World, skill: &SkillId) -> Option<String> {
    let q = nodes.queue(skill).queue(skill, usize::MAX).await.expect("queue");
    // (Entries standing here as the fallback of the offer-mode skill may wait for
    // their retry after agents declined them.)
    let ranked: Vec<&ConversationId> = q
        .conversations
        .iter()
        .filter(|row| row.place == "ranked" && row.fallback_from.is_none())
        .map(|row| &row.conversation_id)
        .collect();
    if ranked.is_empty() {
        return None;
    }
    let debug = std::env::var("INVARIANT_DEBUG").is_ok();
    for id in &world.agents {
        let a = nodes.agent(&aid(id)).agent(&aid(id)).expect("agent");
        let now = nodes.any().clock().now();
        let room = a.room(now, nodes.any().policy());
        if a.skills.contains(skill) && room.accepting && room.free >= Weight::from_slots(1.0) {
            // What each waiting conversation went through, the agent's events, the
            // crashes and the clock: this failure was seen once in 18 172 seeds and
            // once in 13 500 (a run stalled for minutes), and not reproduced.
            let mut histories: String = ranked
                .iter()
                .map(|c| format!("\n{c}:{}", history_events(world, c)))
                .collect();
            for (i, e) in nodes.engines.iter().enumerate().filter(|_| debug) {
                let q = e.queue(skill, usize::MAX).await.expect("queue");
                histories += &format!(
                    "\nENGINE {i} ({}) queue {skill}: {:?}",
                    nodes.names[i],
                    q.conversations
                        .iter()
                        .map(|r| r.conversation_id.to_string())
                        .collect::<Vec<_>>()
                );
            }
            if nodes.engines.len() > 1 {
                histories += &format!(
                    "\nowner of {skill}: {:?}, of {id}: {:?}, check reads {:?}",
                    owner(shard_of(skill.as_str()), &nodes.names),
                    owner(shard_of(id), &nodes.names),
                    ranked
                        .iter()
                        .map(|c| owner(shard_of(c.as_str()), &nodes.names))
                        .collect::<Vec<_>>()
                );
            }
            let _ = history_events(world, &ConversationId::new("zz").expect("id"));
            {
                let log = world.log.lock().unwrap_or_else(|p| p.into_inner());
                for e in log
                    .0
                    .iter()
                    .filter(|e| e.agent_id.as_ref().map(|a| a.as_str()) == Some(id.as_str()))
                {
                    histories += &format!(
                        "\nAGENT {} {:?} conv={:?}",
                        e.at,
                        e.kind,
                        e.conversation_id.as_ref().map(|c| c.to_string())
                    );
                }
            }
            return Some(format!(
                "skill {skill} has waiting conversations while {id} has room {room:?} (engine clock {now})\n\
                 agent: {a:?}\nqueue rows: {:?}{histories}\ncrashes:{}",
                q.conversations,
                crashes(world)
            ));
        }
    }
    None
}

async fn run(nodes: &Nodes, seed: u64, steps: usize, paused: bool, strict_weight: bool) -> World {
    run_with_crashes(nodes, seed, steps, paused, strict_weight, 0.0).await
}

async fn run_with_crashes(
    nodes: &Nodes,
    seed: u64,
    steps: usize,
    paused: bool,
    strict_weight: bool,
    crash_rate: f64,
) -> World {
    let mut rng = SmallRng::seed_from_u64(seed);
    let agents = setup(nodes, &mut rng).await;
    let log = std::sync::Mutex::new((Vec::new(), nodes.engines.iter().map(|r| r.subscribe()).collect()));
    let mut world = World {
        rng,
        crash_rate,
        queue_crashes: 0,
        crash_log: std::sync::Mutex::new(Vec::new()),
        opened: Vec::new(),
        agents,
        counts: BTreeMap::new(),
        log,
    };
    for i in 0..steps {
        world.step(nodes, paused).await;
        if std::env::var("INVARIANT_TRACE").is_ok() {
            println!("seed {seed} step {i}");
        }
        check_capacity(nodes, &world.agents, strict_weight);
        if i % 25 == 24 {
            check_consistency(nodes, &world).await;
        }
    }
    check_consistency(nodes, &world).await;
    println!(
        "seed {seed}: {} conversations, successful actions {:?}",
        world.opened.len(),
        world.counts
    );
    world
}

/// How many seeds each test runs: 3 by default, more with `INVARIANT_SEEDS=N` for a
/// deeper search (a failure prints its seed).
fn seeds() -> u64 {
    std::env::var("INVARIANT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// The seeds a variant runs: `INVARIANT_SEEDS` of them (3 by default) after its `base`,
/// skipping `INVARIANT_SEED_OFFSET` (so a long search can go on where the last stopped).
/// A deep run reports its progress every 100 seeds on stderr.
fn seed_range(base: u64) -> impl Iterator<Item = u64> {
    let offset: u64 = std::env::var("INVARIANT_SEED_OFFSET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (first, n) = (base + offset + 1, seeds());
    let started = std::time::Instant::now();
    (first..first + n).inspect(move |seed| {
        let done = seed - first;
        if n >= 100 && done > 0 && done % 100 == 0 {
            eprintln!(
                "seeds {first}..{}: {done} of {n} passed, {:.0} s",
                seed - 1,
                started.elapsed().as_secs_f64()
            );
        }
    })
}

/// Real parallelism: queue, agent and conversation actors on two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_offers_never_overfill_an_agent_and_lose_nothing() {
    for seed in seed_range(0) {
        let r = router(&config(true, seed)).await;
        let world = run(&Nodes::one(&r), seed, 1500, false, true).await;
        assert!(world.counts.get("open").copied().unwrap_or(0) > 200);
        r.shutdown().await;
    }
}

/// Virtual time: inactivity, overdue, offer expiry, grace periods, fallback and
/// auto-close fire in between the random actions.
#[tokio::test(start_paused = true)]
async fn timers_racing_commands_keep_every_conversation_accounted_for() {
    let only: Option<u64> = std::env::var("INVARIANT_ONLY_SEED").ok().and_then(|s| s.parse().ok());
    for seed in seed_range(1000).filter(|s| only.is_none_or(|o| o == *s)) {
        let r = router(&config(false, seed)).await;
        run(&Nodes::one(&r), seed, 1500, true, false).await;
        r.shutdown().await;
    }
}

/// Actors panic at random while the traffic goes on (about one step in fifty): each is
/// restarted from its last committed state, messages lost with its mailbox are
/// reconciled, and every invariant above still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_actors_lose_nothing_under_concurrency() {
    quiet_injected_panics();
    for seed in seed_range(2000) {
        let r = router(&config(true, seed)).await;
        let world = run_with_crashes(&Nodes::one(&r), seed, 1500, false, true, 0.02).await;
        assert!(world.counts.get("crash").copied().unwrap_or(0) > 10);
        r.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn crashing_actors_lose_nothing_on_virtual_time() {
    quiet_injected_panics();
    for seed in seed_range(3000) {
        let r = router(&config(false, seed)).await;
        run_with_crashes(&Nodes::one(&r), seed, 1500, true, false, 0.02).await;
        r.shutdown().await;
    }
}

/// The same traffic on three engines that split the actors by shard, as three cluster
/// nodes would (each call sent to the engine that owns its target): offers, reservations
/// and assignments race across engines, and no agent is ever over capacity, no
/// conversation held by two agents or lost from its queue. (An offer-mode `accept` of
/// another node's conversation is refused, as the engine does not carry it yet: the
/// offer then expires, as an ignored one does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_three_nodes_offers_never_overfill_an_agent_and_lose_nothing() {
    for seed in seed_range(5000) {
        let nodes = split(&config(true, seed), 3).await;
        let world = run(&nodes, seed, 1500, false, true).await;
        assert!(world.counts.get("open").copied().unwrap_or(0) > 200);
        let crossed: u64 = nodes.engines.iter().map(|r| r.crossings().0).sum();
        assert!(crossed > 300, "messages crossed between the engines: {crossed}");
        for r in &nodes.engines {
            r.shutdown().await;
        }
    }
}

/// Across three engines on virtual time: timers of each engine fire between the random
/// actions, their effects crossing to the other engines.
#[tokio::test(start_paused = true)]
async fn across_three_nodes_timers_racing_commands_keep_every_conversation_accounted_for() {
    for seed in seed_range(6000) {
        let nodes = split(&config(false, seed), 3).await;
        run(&nodes, seed, 1500, true, false).await;
        for r in &nodes.engines {
            r.shutdown().await;
        }
    }
}

/// A router on a store, as `serve` starts one: boot, read the store back, apply the config.
async fn durable_router(toml: &str, store: &StoreConfig, clock: Clock) -> Router {
    let config = Config::from_toml(toml, &BTreeMap::new()).expect("config");
    let r = Router::boot(&config.engine, clock).await.expect("boot");
    let (s, snapshot) = Store::open(store).expect("store opens");
    r.recover(s, snapshot).await.expect("recovers");
    r.install_config(config.engine).await.expect("config");
    r
}

/// With a store (SQLite, commit durability) and actors crashing throughout: the same
/// invariants hold; once the engine is idle the store holds exactly what memory holds;
/// and a router recovered from that store keeps every invariant (offers void and made
/// again, every conversation held by the agent it names, queues drained into room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_store_memory_and_record_agree_and_a_recovered_router_keeps_every_invariant() {
    quiet_injected_panics();
    for seed in seed_range(4000) {
        let dir = std::env::temp_dir().join(format!("switchboard-invariants-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = StoreConfig {
            url: Some(format!("sqlite://{}", dir.join("switchboard.db").display())),
            ..StoreConfig::default()
        };
        let r = durable_router(&config(true, seed), &store, Clock::starting_at(start_time())).await;
        let world = run_with_crashes(&Nodes::one(&r), seed, 600, false, true, 0.02).await;
        settle(&r).await;
        let now = r.clock().now();
        r.shutdown().await;

        let (_, snapshot) = Store::open(&store).expect("store reopens");
        let stored: HashMap<ConversationId, Conversation> =
            snapshot.conversations.into_iter().map(|c| (c.id.clone(), c)).collect();
        for id in &world.opened {
            match r.conversation(id) {
                Ok(c) => {
                    // An offer made is not written (recovery voids offers): an offered
                    // conversation may be stored as the queued one it was.
                    let mut queued = c.clone();
                    if c.state == Phase::Offered {
                        queued.state = Phase::Queued;
                        queued.offered_to = None;
                    }
                    let held = stored.get(id);
                    assert!(
                        held == Some(&c) || held == Some(&queued),
                        "seed {seed}: {id}: the store holds what memory holds\n stored: {held:?}\n memory: {c:?}"
                    );
                }
                Err(_) => assert!(!stored.contains_key(id), "seed {seed}: {id} forgotten but still stored"),
            }
        }

        let r2 = durable_router(&config(true, seed), &store, Clock::starting_at(now)).await;
        check_consistency(&Nodes::one(&r2), &world).await;
        r2.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
