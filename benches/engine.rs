//! Engine benches, in process, no HTTP: memory per open conversation and per agent,
//! the ractor round trip (the floor), conversation lifecycles per second with 1 000
//! agents over 10 skills, the cost of a lifecycle relative to the messages it needs,
//! and time from open to assignment at a fixed arrival rate.
//! `cargo bench --bench engine`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{percentile, report, rss_bytes};
use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard::config::EngineConfig;
use switchboard::domain::agent::{AgentSpec, AgentStatus};
use switchboard::domain::conversation::ClosedBy;
use switchboard::events::EventKind;
use switchboard::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use switchboard::router::OpenConversation;
use switchboard::time::{Clock, Timestamp};
use switchboard::Router;
use tokio::sync::oneshot;

const SKILLS: usize = 10;
const AGENTS: usize = 1000;

async fn router(agents: usize, max_slots: u32) -> Router {
    let mut config = EngineConfig::default();
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
            skills: vec![SkillId::new(format!("s{}", a % SKILLS)).expect("id")],
            max_slots,
            max_open: None,
        };
        r.put_agent(id.clone(), spec).await.expect("agent");
        r.set_agent_status(&id, AgentStatus::Online).await.expect("online");
    }
    r
}

fn open_req(i: u64) -> OpenConversation {
    OpenConversation::new(
        ConsumerId::new(format!("u{i}")).expect("id"),
        SkillId::new(format!("s{}", i as usize % SKILLS)).expect("id"),
    )
    .with_id(ConversationId::new(format!("c{i}")).expect("id"))
}

/// Resident bytes per open conversation (100 000, half inactive) and per online agent.
fn memory() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let before = rss_bytes();
        let r = router(2000, 60).await;
        assert!(r.quiesce(10_000_000).await);
        let with_agents = rss_bytes();
        report(
            "memory_per_online_agent",
            (with_agents - before) as f64 / 2000.0,
            "bytes",
        );
        let n = 100_000u64;
        for i in 0..n {
            r.open_conversation(open_req(i)).await.expect("open");
        }
        assert!(r.quiesce(10_000_000).await);
        for i in (0..n).step_by(2) {
            let id = ConversationId::new(format!("c{i}")).expect("id");
            let agent = r.conversation(&id).expect("conv").agent_id.expect("assigned");
            r.agent_message(&id, &agent).await.expect("reply");
        }
        tokio::time::sleep(Duration::from_secs(11 * 60)).await;
        assert!(r.quiesce(10_000_000).await);
        let mut inactive = 0;
        r.visit_conversations(|c| {
            inactive += usize::from(c.activity == switchboard::domain::conversation::Activity::Inactive)
        });
        assert_eq!(inactive, n as usize / 2, "half inactive");
        let after = rss_bytes();
        report(
            "memory_per_open_conversation",
            (after - with_agents) as f64 / n as f64,
            "bytes",
        );
        r.shutdown().await;
    });
}

#[derive(Debug)]
struct Echo;
#[derive(Debug)]
struct Ping(RpcReplyPort<()>);
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

/// CPU nanoseconds (2 worker threads × wall) per plain ractor `call` round trip, with
/// 64 callers on 64 actors.
async fn ractor_round_trip() -> f64 {
    let actors: Vec<ActorRef<Ping>> =
        futures_util::future::join_all((0..64).map(|_| async { Actor::spawn(None, Echo, ()).await.expect("spawn").0 }))
            .await;
    let per_caller = 20_000;
    let t = Instant::now();
    let tasks: Vec<_> = actors
        .iter()
        .cloned()
        .map(|a| {
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    a.call(Ping, None).await.expect("call");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let ns = 2.0 * t.elapsed().as_nanos() as f64 / (64 * per_caller) as f64;
    for a in actors {
        a.stop(None);
    }
    ns
}

/// Conversation lifecycles (open → assigned → agent reply → consumer reply → close)
/// with 64 concurrent callers: lifecycles per second and messages per lifecycle.
async fn lifecycles(
    r: &Router,
    waiting: &Arc<DashMap<String, oneshot::Sender<Instant>>>,
    first: u64,
    seconds: f64,
) -> (f64, f64) {
    let sent_before = r.messages_sent();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(first));
    let t = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let r = r.clone();
            let waiting = Arc::clone(waiting);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (tx, rx) = oneshot::channel();
                    waiting.insert(format!("c{i}"), tx);
                    let c = r.open_conversation(open_req(i)).await.expect("open");
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
    let elapsed = t.elapsed().as_secs_f64();
    let messages = (r.messages_sent() - sent_before) as f64 / total as f64;
    (total as f64 / elapsed, messages)
}

/// Open → assignment at a fixed arrival rate (open loop, from the intended time).
async fn assignment_latency(
    r: &Router,
    waiting: &Arc<DashMap<String, oneshot::Sender<Instant>>>,
    first: u64,
    rate: f64,
    seconds: f64,
) -> (Duration, Duration) {
    let n = (rate * seconds) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(n as usize);
    for k in 0..n {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let i = first + k;
        let (tx, rx) = oneshot::channel();
        waiting.insert(format!("c{i}"), tx);
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let c = r.open_conversation(open_req(i)).await.expect("open");
            let at = rx.await.expect("assigned");
            let agent = r.conversation(&c.id).expect("conv").agent_id.expect("agent");
            r.close(&c.id, ClosedBy::Agent, Some(&agent)).await.expect("close");
            at.saturating_duration_since(due)
        }));
    }
    let mut waits = Vec::with_capacity(tasks.len());
    for t in tasks {
        waits.push(t.await.expect("task"));
    }
    (percentile(&mut waits, 0.5), percentile(&mut waits, 0.99))
}

fn main() {
    memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut rts = Vec::new();
        for _ in 0..5 {
            rts.push(ractor_round_trip().await);
        }
        rts.sort_by(f64::total_cmp);
        let round_trip = rts[2];
        report("ractor_call_round_trip_cpu", round_trip, "ns");

        let r = router(AGENTS, 100).await;
        let waiting: Arc<DashMap<String, oneshot::Sender<Instant>>> = Arc::new(DashMap::new());
        let mut events = r.subscribe();
        let w = Arc::clone(&waiting);
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if let (EventKind::Assigned { .. }, Some(id)) = (&e.kind, &e.conversation_id) {
                    if let Some((_, tx)) = w.remove(id.as_str()) {
                        let _ = tx.send(Instant::now());
                    }
                }
            }
        });
        let mut rates = Vec::new();
        let mut msgs = 0.0;
        let mut next = 0u64;
        for _ in 0..5 {
            let (rate, m) = lifecycles(&r, &waiting, next, 2.0).await;
            next += 1_000_000;
            rates.push(rate);
            msgs = m;
        }
        rates.sort_by(f64::total_cmp);
        let rate = rates[2];
        report("engine_lifecycles_per_sec", rate, "lifecycles/s");
        report("engine_messages_per_lifecycle", msgs, "messages");
        let lifecycle_cpu_ns = 2.0 * 1e9 / rate;
        report("engine_lifecycle_cpu", lifecycle_cpu_ns, "ns");
        // A one-way message costs about half a round trip (one send, one handle).
        report(
            "engine_lifecycle_cost_over_message_floor",
            lifecycle_cpu_ns / (msgs * round_trip / 2.0),
            "x",
        );

        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for k in 0..3 {
            let (p50, p99) = assignment_latency(&r, &waiting, 90_000_000 + k * 1_000_000, 2000.0, 3.0).await;
            p50s.push(p50);
            p99s.push(p99);
        }
        report(
            "engine_open_to_assigned_p50_at_2000_per_sec",
            percentile(&mut p50s, 0.5).as_secs_f64() * 1e6,
            "us",
        );
        report(
            "engine_open_to_assigned_p99_at_2000_per_sec",
            percentile(&mut p99s, 0.5).as_secs_f64() * 1e6,
            "us",
        );
        r.shutdown().await;
    });
}
