//! The engine split over three nodes in one process, beside one engine alone, on the
//! same 2-worker runtime: what splitting costs before any network. Each node is an
//! engine joined to the others by a loopback `Remote` that encodes every message into a
//! transport frame and decodes it on the other side (the wire's work, not its
//! latency). Agents, conversations and skill queues are placed by rendezvous hashing
//! over the three names, as the lease keepers place them; each API call goes to the
//! engine that owns its conversation, as a forwarded request would.
//!
//! A third setup is split the same way with co-located ids: agent `a7~s7` and
//! conversation `c12~s2` carry their skill as placement key
//! ([`switchboard::cluster::placement`]), so each is placed with its skill's queue.
//!
//! Prints lifecycles per second alone, split and split co-located, the ratios, the
//! messages per lifecycle that cross between nodes (measured) in both splits, and the
//! mean frame size. `cargo bench --bench cluster`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{open_req, report, router, SKILLS};
use dashmap::DashMap;
use switchboard::actors::remote::{Crossing, Remote};
use switchboard::cluster::placement::{owner, shard_of};
use switchboard::cluster::transport::{Body, Frame};
use switchboard::config::EngineConfig;
use switchboard::domain::agent::{AgentSpec, AgentStatus};
use switchboard::domain::conversation::ClosedBy;
use switchboard::events::EventKind;
use switchboard::ids::{AgentId, ConversationId, SkillId};
use switchboard::time::{Clock, Timestamp};
use switchboard::Router;
use tokio::sync::oneshot;

const AGENTS: usize = 1000;
const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn owner_of(key: &str) -> usize {
    let name = owner(shard_of(key), &NODES).expect("nodes");
    NODES.iter().position(|n| n == name).expect("a node")
}

#[derive(Debug)]
struct Loopback {
    me: usize,
    nodes: Arc<OnceLock<Vec<Router>>>,
    bytes: Arc<AtomicU64>,
}

impl Remote for Loopback {
    fn elsewhere(&self, shard: u16) -> Option<String> {
        let name = owner(shard, &NODES).expect("nodes");
        (*name != NODES[self.me]).then(|| name.to_string())
    }

    fn send(&self, node: &str, msg: Crossing) {
        let bytes = Frame {
            from: NODES[self.me].to_string(),
            body: Body::Engine(msg),
        }
        .encode();
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let Ok(Frame {
            body: Body::Engine(msg),
            ..
        }) = Frame::decode(&bytes)
        else {
            panic!("a frame decodes")
        };
        let to = NODES.iter().position(|n| *n == node).expect("a node");
        self.nodes.get().expect("nodes")[to].deliver_crossing(msg);
    }
}

/// Agent `a`'s id: `a{a}`, or with `colocate` `a{a}~s{skill}` (placed with its skill).
fn agent_id(a: usize, colocate: bool) -> String {
    if colocate {
        format!("a{a}~s{}", a % SKILLS)
    } else {
        format!("a{a}")
    }
}

/// Conversation `i`'s id: `c{i}`, or with `colocate` `c{i}~s{skill}`.
fn conversation_id(i: u64, colocate: bool) -> String {
    if colocate {
        format!("c{i}~s{}", i as usize % SKILLS)
    } else {
        format!("c{i}")
    }
}

/// Three engines, each with every skill, each agent on the engine that owns it.
async fn split(bytes: &Arc<AtomicU64>, colocate: bool) -> Vec<Router> {
    let mut config = EngineConfig::default();
    for s in 0..SKILLS {
        let mut skill = config.skill_defaults.clone();
        skill.id = SkillId::new(format!("s{s}")).expect("id");
        config.skills.push(skill);
    }
    let shared = Arc::new(OnceLock::new());
    let mut nodes = Vec::new();
    for me in 0..NODES.len() {
        let r = Router::start(
            config.clone(),
            Clock::starting_at(Timestamp::from_millis(1_800_000_000_000)),
        )
        .await
        .expect("start");
        r.join_cluster(Arc::new(Loopback {
            me,
            nodes: Arc::clone(&shared),
            bytes: Arc::clone(bytes),
        }))
        .expect("join");
        nodes.push(r);
    }
    shared.set(nodes.clone()).expect("once");
    for a in 0..AGENTS {
        let id = AgentId::new(agent_id(a, colocate)).expect("id");
        let r = &nodes[owner_of(id.as_str())];
        let spec = AgentSpec {
            group: None,
            skills: vec![SkillId::new(format!("s{}", a % SKILLS)).expect("id")],
            max_slots: 100,
            max_open: None,
        };
        r.put_agent(id.clone(), spec).await.expect("agent");
        r.set_agent_status(&id, AgentStatus::Online).await.expect("online");
    }
    nodes
}

/// Lifecycles (open → assigned → agent reply → consumer reply → close) with 64
/// concurrent callers, each call on the engine that owns the conversation.
async fn lifecycles(
    nodes: &[Router],
    waiting: &Arc<DashMap<String, oneshot::Sender<()>>>,
    first: u64,
    seconds: f64,
    colocate: bool,
) -> (f64, u64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let counter = Arc::new(AtomicU64::new(first));
    let t = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let nodes = nodes.to_vec();
            let waiting = Arc::clone(waiting);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let id = conversation_id(i, colocate);
                    let req = open_req(i).with_id(ConversationId::new(&id).expect("id"));
                    let r = if nodes.len() == 1 {
                        &nodes[0]
                    } else {
                        &nodes[owner_of(&id)]
                    };
                    let (tx, rx) = oneshot::channel();
                    waiting.insert(id, tx);
                    let c = r.open_conversation(req).await.expect("open");
                    rx.await.expect("assigned");
                    let agent = r.conversation(&c.id).expect("conv").agent_id.expect("agent");
                    r.agent_message(&c.id, &agent).await.expect("agent reply");
                    r.consumer_message(&c.id).await.expect("consumer reply");
                    r.close(&c.id, ClosedBy::Agent, Some(&agent)).await.expect("close");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    (total as f64 / t.elapsed().as_secs_f64(), total)
}

/// Signals `waiting` when an engine assigns a conversation.
fn watch_assignments(r: &Router, waiting: &Arc<DashMap<String, oneshot::Sender<()>>>) {
    let mut events = r.subscribe();
    let w = Arc::clone(waiting);
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let (EventKind::Assigned { .. }, Some(id)) = (&e.kind, &e.conversation_id) {
                if let Some((_, tx)) = w.remove(id.as_str()) {
                    let _ = tx.send(());
                }
            }
        }
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let waiting: Arc<DashMap<String, oneshot::Sender<()>>> = Arc::new(DashMap::new());
        let alone = vec![router(AGENTS, 100, |_| {}).await];
        watch_assignments(&alone[0], &waiting);
        let bytes = Arc::new(AtomicU64::new(0));
        let nodes = split(&bytes, false).await;
        let colocated = split(&bytes, true).await;
        for r in nodes.iter().chain(&colocated) {
            watch_assignments(r, &waiting);
        }
        let mut per_node = [0usize; NODES.len()];
        for s in 0..SKILLS {
            per_node[owner_of(&format!("s{s}"))] += 1;
        }
        println!("# skills' queues per node (co-located: their agents and conversations with them): {per_node:?}");

        // Alternating runs, so that all see the same machine.
        let (mut rates_alone, mut rates_split, mut crossed, mut frame_bytes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut rates_colocated, mut crossed_colocated) = (Vec::new(), Vec::new());
        let mut next = 0u64;
        for _ in 0..5 {
            let (rate, _) = lifecycles(&alone, &waiting, next, 2.0, false).await;
            rates_alone.push(rate);
            next += 1_000_000;
            for (engines, colocate) in [(&nodes, false), (&colocated, true)] {
                let out_before: u64 = engines.iter().map(|r| r.crossings().0).sum();
                let bytes_before = bytes.load(Ordering::Relaxed);
                let (rate, total) = lifecycles(engines, &waiting, next, 2.0, colocate).await;
                next += 1_000_000;
                let out: u64 = engines.iter().map(|r| r.crossings().0).sum::<u64>() - out_before;
                if colocate {
                    rates_colocated.push(rate);
                    crossed_colocated.push(out as f64 / total as f64);
                } else {
                    rates_split.push(rate);
                    crossed.push(out as f64 / total as f64);
                    frame_bytes.push((bytes.load(Ordering::Relaxed) - bytes_before) as f64 / out.max(1) as f64);
                }
            }
        }
        let refused: u64 = nodes.iter().chain(&colocated).map(|r| r.crossings().2).sum();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (alone_rate, split_rate) = (median(&mut rates_alone), median(&mut rates_split));
        let colocated_rate = median(&mut rates_colocated);
        let crossings = median(&mut crossed);
        report("cluster_lifecycles_per_sec_one_engine", alone_rate, "lifecycles/s");
        report(
            "cluster_lifecycles_per_sec_three_engines_one_process",
            split_rate,
            "lifecycles/s",
        );
        report("cluster_split_over_alone", split_rate / alone_rate, "x");
        report(
            "cluster_cross_node_messages_per_lifecycle_3_nodes",
            crossings,
            "messages",
        );
        report(
            "cluster_lifecycles_per_sec_three_engines_colocated",
            colocated_rate,
            "lifecycles/s",
        );
        report("cluster_colocated_over_alone", colocated_rate / alone_rate, "x");
        report(
            "cluster_cross_node_messages_per_lifecycle_3_nodes_colocated",
            median(&mut crossed_colocated),
            "messages",
        );
        report("cluster_frame_bytes_mean", median(&mut frame_bytes), "bytes");
        report("cluster_messages_refused_total", refused as f64, "messages");
        for r in nodes.iter().chain(&colocated).chain(&alone) {
            r.shutdown().await;
        }
    });
}
