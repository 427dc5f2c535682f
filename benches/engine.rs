//! Engine benches, in process, no HTTP: the ractor round trip (the floor), conversation
//! lifecycles per second with 1 000 agents over 10 skills, the cost of a lifecycle
//! relative to the messages it needs, and time from open to assignment at a fixed
//! arrival rate. Memory is `benches/memory.rs`. `cargo bench --bench engine`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_req, percentile, report, router, Echo, Ping};
use dashmap::DashMap;
use ractor::{Actor, ActorRef};
use switchboard::domain::conversation::ClosedBy;
use switchboard::events::EventKind;
use switchboard::Router;
use tokio::sync::oneshot;

const AGENTS: usize = 1000;

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
) -> (f64, f64, [f64; 4]) {
    let sent_before = r.messages_sent();
    let by_way_before = r.messages_by_way();
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
    let (a, b) = (by_way_before, r.messages_by_way());
    let per = |x: u64, y: u64| (y - x) as f64 / total as f64;
    let by_way = [
        per(a.between_actors, b.between_actors),
        per(a.from_api, b.from_api),
        per(a.from_timers, b.from_timers),
        per(a.other, b.other),
    ];
    (total as f64 / elapsed, messages, by_way)
}

/// Open → assignment at a fixed arrival rate (open loop, from the intended time).
async fn assignment_latency(
    r: &Router,
    waiting: &Arc<DashMap<String, oneshot::Sender<Instant>>>,
    first: u64,
    rate: f64,
    seconds: f64,
) -> [Duration; 4] {
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
            let sent = Instant::now();
            let c = r.open_conversation(open_req(i)).await.expect("open");
            let at = rx.await.expect("assigned");
            let agent = r.conversation(&c.id).expect("conv").agent_id.expect("agent");
            r.close(&c.id, ClosedBy::Agent, Some(&agent)).await.expect("close");
            (at.saturating_duration_since(due), at.saturating_duration_since(sent))
        }));
    }
    let mut from_due = Vec::with_capacity(tasks.len());
    let mut from_sent = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (d, s) = t.await.expect("task");
        from_due.push(d);
        from_sent.push(s);
    }
    [
        percentile(&mut from_due, 0.5),
        percentile(&mut from_due, 0.99),
        percentile(&mut from_sent, 0.5),
        percentile(&mut from_sent, 0.99),
    ]
}

fn main() {
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

        let r = router(AGENTS, 100, |_| {}).await;
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
        let mut by_way = [0.0; 4];
        let mut next = 0u64;
        for _ in 0..5 {
            let (rate, m, w) = lifecycles(&r, &waiting, next, 2.0).await;
            next += 1_000_000;
            rates.push(rate);
            msgs = m;
            by_way = w;
        }
        rates.sort_by(f64::total_cmp);
        let rate = rates[2];
        report("engine_lifecycles_per_sec", rate, "lifecycles/s");
        report("engine_messages_per_lifecycle", msgs, "messages");
        // What a cluster would carry between nodes: messages between actors, each of
        // which crosses with probability (n-1)/n when placement is by id over n nodes.
        report("engine_messages_per_lifecycle_between_actors", by_way[0], "messages");
        report("engine_messages_per_lifecycle_from_api", by_way[1], "messages");
        report("engine_messages_per_lifecycle_from_timers", by_way[2], "messages");
        report("engine_messages_per_lifecycle_other", by_way[3], "messages");
        report(
            "engine_cross_node_messages_per_lifecycle_3_nodes_estimate",
            by_way[0] * 2.0 / 3.0,
            "messages",
        );
        let lifecycle_cpu_ns = 2.0 * 1e9 / rate;
        report("engine_lifecycle_cpu", lifecycle_cpu_ns, "ns");
        // A one-way message costs about half a round trip (one send, one handle).
        report(
            "engine_lifecycle_cost_over_message_floor",
            lifecycle_cpu_ns / (msgs * round_trip / 2.0),
            "x",
        );

        let mut runs: [Vec<Duration>; 4] = Default::default();
        for k in 0..3 {
            let figures = assignment_latency(&r, &waiting, 90_000_000 + k * 1_000_000, 2000.0, 3.0).await;
            for (run, f) in runs.iter_mut().zip(figures) {
                run.push(f);
            }
        }
        // From the intended send time (open loop, includes the ~1 ms granularity of the
        // tokio timer that paces the arrivals), and from the moment `open` was called.
        let names = [
            "engine_open_to_assigned_p50_at_2000_per_sec",
            "engine_open_to_assigned_p99_at_2000_per_sec",
            "engine_open_to_assigned_from_call_p50_at_2000_per_sec",
            "engine_open_to_assigned_from_call_p99_at_2000_per_sec",
        ];
        for (name, run) in names.iter().zip(runs.iter_mut()) {
            report(name, percentile(run, 0.5).as_secs_f64() * 1e6, "us");
        }
        r.shutdown().await;
    });
}
