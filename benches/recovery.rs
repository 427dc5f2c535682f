//! Recovery at start: how long `serve` takes to read N open conversations back from the
//! embedded SQLite store and rebuild the engine (skill queues re-told, deadlines
//! re-armed, agents holding what the conversations say) until it is quiet.
//!
//!   cargo bench --bench recovery                      # 1 000 000 open conversations
//!   SWITCHBOARD_BENCH_RECOVER=200000 cargo bench --bench recovery
//!
//! The store is written first (directly, in batches, not timed), in a temp directory
//! that is removed at the end. A third of the conversations are queued, a third
//! assigned and waiting for their agent, a third assigned and waiting for the consumer;
//! the 1 000 agents are away (within their grace period), so nothing is routed while
//! the recovery is measured.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{report, rss_bytes, SKILLS};
use switchboard::config::EngineConfig;
use switchboard::domain::agent::{Agent, AgentSpec, AgentStatus};
use switchboard::domain::conversation::{Conversation, OpenRequest};
use switchboard::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use switchboard::store::{Change, Row, Store, StoreConfig};
use switchboard::time::Clock;
use switchboard::Router;

const AGENTS: usize = 1000;

fn main() {
    let n: u64 = std::env::var("SWITCHBOARD_BENCH_RECOVER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("switchboard-bench-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("switchboard.db").display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let engine = EngineConfig::default();
        let clock = Clock::system();
        let now = clock.now();
        let skills: Vec<_> = (0..SKILLS)
            .map(|s| {
                let mut skill = engine.skill_defaults.clone();
                skill.id = SkillId::new(format!("s{s}")).expect("id");
                skill
            })
            .collect();

        let started = Instant::now();
        eprintln!("recovery: writing {n} open conversations to {url}");
        let mut backend = switchboard::store::open(&url, switchboard::store::Durability::Relaxed).expect("store");
        let mut rows: Vec<Row> = Vec::with_capacity(20_000);
        let mut flush = |rows: &mut Vec<Row>| {
            backend.commit(rows).expect("commit");
            rows.clear();
        };
        for skill in &skills {
            rows.push(Row::encode(Change::Skill(Arc::new(skill.clone()))).expect("row"));
        }
        for a in 0..AGENTS {
            let spec = AgentSpec {
                group: None,
                skills: vec![SkillId::new(format!("s{}", a % SKILLS)).expect("id")],
                max_slots: 100_000,
                max_open: None,
            };
            // Away (within the grace period, so they keep their conversations): the
            // queued conversations are not routed during the measurement, which is of
            // recovery only.
            let mut agent = Agent::new(AgentId::new(format!("a{a}")).expect("id"), spec, now, &engine.routing);
            agent.set_status(AgentStatus::Away, now, &engine.routing);
            rows.push(Row::encode(Change::Agent(Box::new(agent))).expect("row"));
        }
        for i in 0..n {
            let skill = &skills[i as usize % SKILLS];
            let mut conv = Conversation::open(
                OpenRequest {
                    id: ConversationId::new(format!("c{i}")).expect("id"),
                    consumer_id: ConsumerId::new(format!("u{i}")).expect("id"),
                    skill: skill.id.clone(),
                    attributes: Default::default(),
                    urgent: false,
                    first_time: false,
                    preferred_agent: None,
                    seq: i + 1,
                },
                now,
                skill,
            );
            if i % 3 != 0 {
                // Agents of skill s{k} are a{k}, a{k + SKILLS}, ...
                let agent = AgentId::new(format!(
                    "a{}",
                    (i as usize % SKILLS) + SKILLS * ((i as usize / SKILLS) % (AGENTS / SKILLS))
                ))
                .expect("id");
                let epoch = conv.epoch;
                conv.assign(&agent, epoch, now).expect("assign");
                if i % 3 == 2 {
                    conv.agent_message(&agent, now).expect("agent message");
                }
            }
            rows.push(Row::encode(Change::Conversation(Box::new(conv))).expect("row"));
            if rows.len() >= 20_000 {
                flush(&mut rows);
            }
        }
        flush(&mut rows);
        drop(backend);
        eprintln!("recovery: written in {:.1} s", started.elapsed().as_secs_f64());
        let file_mb = std::fs::metadata(dir.join("switchboard.db"))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1e6;

        let rss0 = rss_bytes();
        let t0 = Instant::now();
        let config = StoreConfig {
            url: Some(url.clone()),
            ..StoreConfig::default()
        };
        let (store, snapshot) = tokio::task::spawn_blocking(move || Store::open(&config))
            .await
            .expect("join")
            .expect("open");
        let read = t0.elapsed();
        let router = Router::boot(&engine, clock).await.expect("boot");
        let recovered = router.recover(store, snapshot).await.expect("recover");
        let rebuilt = t0.elapsed();
        let quiet = router.quiesce(100_000_000).await;
        let total = t0.elapsed();
        assert!(quiet, "the engine did not settle");
        assert_eq!(recovered.open as u64, n);
        let mut assigned = 0;
        router.visit_agents(|a| assigned += a.conversations.len());
        assert_eq!(
            assigned as u64,
            n - n.div_ceil(3),
            "every assigned conversation is held again"
        );
        report("recovery_conversations", n as f64, "open");
        report("recovery_store_file", file_mb, "MB");
        report("recovery_read_seconds", read.as_secs_f64(), "s");
        report("recovery_rebuild_seconds", (rebuilt - read).as_secs_f64(), "s");
        report("recovery_until_quiet_seconds", total.as_secs_f64(), "s");
        report(
            "recovery_rss_growth",
            (rss_bytes().saturating_sub(rss0)) as f64 / 1e6,
            "MB",
        );
        router.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
