//! Memory per conversation, in process: heap bytes (counted by the allocator) and
//! resident bytes per conversation in each state, and the headline figure: N open
//! conversations, 90% of them waiting for the consumer (passive, no actor), 10% waiting
//! for their agent (a live actor).
//!
//! `cargo bench --bench memory` (N = 1 000 000);
//! `SWITCHBOARD_BENCH_OPEN=10000000 SWITCHBOARD_BENCH_AGENTS=100000 cargo bench --bench
//! memory -- --only-open --all-answered` for the 10 M run (RSS of the whole process is
//! printed as it goes). `SWITCHBOARD_BENCH_AGENTS` (default 10 000) sets how many agents
//! share them: an agent's work per message grows with what it holds, so 10 M over
//! 10 000 agents (1 000 each) measures the agents' maps more than the conversations.

mod common;

use std::time::{Duration, Instant};

use cap::Cap;
use common::{cid, open_req, report, rss_bytes};
use switchboard::domain::conversation::ClosedBy;
use switchboard::Router;

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

fn heap() -> u64 {
    ALLOCATOR.allocated() as u64
}

async fn router(agents: usize, max_slots: u32, closed_retention_max: usize) -> Router {
    let r = common::router(agents, max_slots, |p| {
        p.closed_retention_max = closed_retention_max;
        p.max_open_conversations = u64::MAX;
    })
    .await;
    assert!(r.quiesce(10_000_000).await);
    r
}

/// Opens conversations `range`, letting the engine settle every `batch`.
async fn open_all(r: &Router, range: std::ops::Range<u64>, label: &str) {
    let t = Instant::now();
    let total = range.end - range.start;
    for i in range.clone() {
        r.open_conversation(open_req(i)).await.expect("open");
        if (i - range.start) % 10_000 == 9_999 {
            assert!(r.quiesce(10_000_000).await);
        }
        if (i - range.start) % 1_000_000 == 999_999 {
            eprintln!(
                "{label}: {} of {total} opened in {:.0?}, rss {} MB",
                i - range.start + 1,
                t.elapsed(),
                rss_bytes() >> 20
            );
        }
    }
    assert!(r.quiesce(10_000_000).await);
}

/// The agent answers: the conversation waits for the consumer and passivates.
async fn agent_replies(r: &Router, range: impl Iterator<Item = u64>) {
    for (k, i) in range.enumerate() {
        let agent = r.conversation(&cid(i)).expect("conv").agent_id.expect("assigned");
        r.agent_message(&cid(i), &agent).await.expect("reply");
        if k % 10_000 == 9_999 {
            assert!(r.quiesce(10_000_000).await);
        }
    }
    assert!(r.quiesce(10_000_000).await);
}

/// Heap and resident bytes per conversation for each state, 100 000 at a time.
async fn per_state() {
    let n = 100_000u64;
    // Heap, not RSS: after the first state, memory freed by the allocator but kept
    // from the OS would make RSS deltas meaningless.
    let per = |before: u64| (heap() as f64 - before as f64) / n as f64;
    let snap = heap;

    // Online agents (a live actor each).
    let before = snap();
    let agents = router(2000, 60, 0).await;
    report(
        "heap_per_online_agent",
        (heap() as f64 - before as f64) / 2000.0,
        "bytes",
    );
    agents.shutdown().await;
    drop(agents);

    // Queued and actionable, no agent online: a live actor waits for an offer.
    let r = router(0, 1, 0).await;
    let base = snap();
    open_all(&r, 0..n, "queued").await;
    report("heap_per_conversation_queued_actionable", per(base), "bytes");
    r.shutdown().await;
    drop(r);

    // Assigned, waiting for the agent (live actor), then for the consumer (passive),
    // then inactive (passive, lighter on the agent).
    let r = router(1000, 1000, 0).await;
    let base = snap();
    open_all(&r, 0..n, "assigned").await;
    assert_eq!(r.num_active_conversations() as u64, n);
    report("heap_per_conversation_assigned_awaiting_agent", per(base), "bytes");
    agent_replies(&r, 0..n).await;
    assert_eq!(r.num_active_conversations(), 0, "all passive");
    report("heap_per_conversation_awaiting_consumer", per(base), "bytes");
    tokio::time::sleep(Duration::from_secs(11 * 60)).await;
    assert!(r.quiesce(10_000_000).await);
    report("heap_per_conversation_inactive", per(base), "bytes");

    // Closed within retention: no actor, the record only.
    for i in 0..n {
        r.close(&cid(i), ClosedBy::Consumer, None).await.expect("close");
        if i % 10_000 == 9_999 {
            assert!(r.quiesce(10_000_000).await);
        }
    }
    assert!(r.quiesce(10_000_000).await);
    assert_eq!(r.num_closed_retained(), 0, "closed_retention_max = 0 keeps none");
    report("heap_per_conversation_after_close_none_retained", per(base), "bytes");
    r.shutdown().await;
    drop(r);

    let r = router(1000, 1000, n as usize).await;
    let base = snap();
    open_all(&r, 0..n, "closed").await;
    for i in 0..n {
        r.close(&cid(i), ClosedBy::Consumer, None).await.expect("close");
    }
    assert!(r.quiesce(10_000_000).await);
    assert_eq!(r.num_closed_retained() as u64, n);
    report("heap_per_conversation_closed_retained", per(base), "bytes");
    r.shutdown().await;
}

/// `total` open conversations over `agents` agents, 90% waiting for the consumer: opened
/// in batches of 10 000, the agent answering 9 in 10 right after assignment (as agents
/// do), with 31 s of virtual time every 100 000 so that live actors never pile up
/// beyond 10 000.
///
/// With `all_answered` every conversation waits for the consumer (no actor at all) and
/// no virtual time passes: the quick way to open 10 M (`--all-answered`).
async fn open_mix(total: u64, agents: usize, all_answered: bool) {
    let slots = u32::try_from(total / agents as u64 * 2).unwrap_or(u32::MAX).max(100);
    let setup = Instant::now();
    let r = router(agents, slots, 0).await;
    eprintln!("{agents} agents online ({slots} slots each) in {:.0?}", setup.elapsed());
    // RSS deltas mean something only when this runs first (`--only-open`).
    let (h0, rss0) = (heap(), rss_bytes());
    let t = Instant::now();
    let batch = 10_000;
    let mut start = 0;
    while start < total {
        let end = (start + batch).min(total);
        for i in start..end {
            r.open_conversation(open_req(i)).await.expect("open");
        }
        assert!(r.quiesce(10_000_000).await);
        agent_replies(&r, (start..end).filter(|i| all_answered || i % 10 != 0)).await;
        start = end;
        // Time passes as conversations arrive: every 100 000, let `passivate_after`
        // go by so the 10% still waiting for their agent give up their actors (and
        // whatever deadlines come due meanwhile fire).
        if !all_answered && start % 100_000 == 0 && start < total {
            tokio::time::sleep(Duration::from_secs(31)).await;
            assert!(r.quiesce(10_000_000).await);
        }
        if start % 1_000_000 == 0 {
            eprintln!(
                "open: {start} of {total} in {:.0?}, rss {} MB",
                t.elapsed(),
                rss_bytes() >> 20
            );
        }
    }
    let (h, rss) = (heap(), rss_bytes());
    eprintln!("{total} open in {:.0?}", t.elapsed());
    assert_eq!(r.num_open_conversations(), total);
    report("open_conversations", total as f64, "conversations");
    report(
        "open_mix_heap_per_conversation",
        (h - h0) as f64 / total as f64,
        "bytes",
    );
    report(
        "open_mix_rss_per_conversation",
        (rss - rss0) as f64 / total as f64,
        "bytes",
    );
    report("open_mix_process_rss", (rss >> 20) as f64, "MB");
    // The 10% waiting for their agent give up their actors after `passivate_after`.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(r.quiesce(10_000_000).await);
    assert_eq!(r.num_active_conversations(), 0);
    report(
        "open_mix_heap_per_conversation_after_idle_passivation",
        (heap() - h0) as f64 / total as f64,
        "bytes",
    );
    r.shutdown().await;
}

fn main() {
    let total: u64 = std::env::var("SWITCHBOARD_BENCH_OPEN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let agents: usize = std::env::var("SWITCHBOARD_BENCH_AGENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let only_open = std::env::args().any(|a| a == "--only-open");
    let all_answered = std::env::args().any(|a| a == "--all-answered");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        if !only_open {
            per_state().await;
        }
        open_mix(total, agents, all_answered).await;
    });
}
