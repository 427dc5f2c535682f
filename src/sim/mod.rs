//! `switchboard simulate`: the real engine — the same actors and timers — driven by a
//! scenario on tokio's paused clock, so a day of a contact center passes in seconds.
//!
//! A single driver task plays the world: Poisson arrivals, consumers who answer or go
//! quiet, agents who reply after a handling time and close, shifts. It acts through the
//! [`Router`] API and learns what the engine decided (assignments, unassignments,
//! closes, SLA breaches) from its event stream, waking at the virtual instant each event
//! happens. All randomness is drawn by the driver from one seeded generator, in event
//! order, so a scenario and a seed give the same report.

pub mod dist;
pub mod erlang;
pub mod report;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast::error::RecvError;

use crate::config::EngineConfig;
use crate::domain::agent::{AgentSpec, AgentStatus};
use crate::domain::capacity::Weight;
use crate::domain::conversation::{Activity, ClosedBy};
use crate::events::{EventKind, RouterEvent};
use crate::ids::{AgentId, ConsumerId, ConversationId, GroupId};
use crate::router::OpenConversation;
use crate::sim::report::{Collector, Report};
use crate::sim::scenario::Scenario;
use crate::time::{Clock, Timestamp};
use crate::Router;

/// What the world does next.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Arrival {
        stream: usize,
    },
    AgentReply {
        conv: usize,
        agent: AgentId,
        generation: u32,
    },
    ConsumerReply {
        conv: usize,
    },
    AgentClose {
        conv: usize,
        agent: AgentId,
        generation: u32,
    },
    Abandon {
        conv: usize,
    },
    Shift {
        group: usize,
        online: bool,
    },
    Sample,
}

/// The world's view of one conversation.
#[derive(Debug)]
struct SimConv {
    id: ConversationId,
    stream: usize,
    arrived: Timestamp,
    measured: bool,
    /// Consumer messages still to come after the current one.
    rounds_left: u32,
    holder: Option<AgentId>,
    first_assigned: Option<Timestamp>,
    awaiting_agent: bool,
    /// Bumped whenever a scheduled agent action becomes void.
    generation: u32,
    done: bool,
    abandoned: bool,
    /// The skill's estimated wait when the conversation was opened (measured ones).
    estimated_wait: Option<Duration>,
}

struct World<'a> {
    sc: &'a Scenario,
    router: Router,
    rng: SmallRng,
    agenda: BinaryHeap<Reverse<(Timestamp, u64, Action)>>,
    seq: u64,
    convs: Vec<SimConv>,
    index: HashMap<ConversationId, usize>,
    agents: HashMap<AgentId, usize>,
    collector: Collector,
    end: Timestamp,
    /// Measured conversations not yet assigned, abandoned or closed.
    waiting_measured: usize,
    engine_errors: u64,
}

/// Runs a scenario on a fresh single-threaded runtime with a paused clock.
/// `progress` receives the simulated share of the duration, now and then.
pub fn run(scenario: &Scenario, progress: &mut dyn FnMut(f64)) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    runtime.block_on(simulate(scenario, progress))
}

async fn simulate(sc: &Scenario, progress: &mut dyn FnMut(f64)) -> anyhow::Result<Report> {
    let wall = Instant::now();
    let config = EngineConfig {
        routing: sc.routing.clone(),
        skills: sc.skills.clone(),
        event_capacity: 1 << 20,
        ..EngineConfig::default()
    };
    let router = Router::start(config, Clock::starting_at(sc.start)).await?;
    let mut events = router.subscribe();
    let mut world = World {
        sc,
        rng: SmallRng::seed_from_u64(sc.seed),
        agenda: BinaryHeap::new(),
        seq: 0,
        convs: Vec::new(),
        index: HashMap::new(),
        agents: HashMap::new(),
        collector: Collector::new(sc),
        end: sc.start.plus(Duration::from_secs(sc.duration_secs)),
        waiting_measured: 0,
        engine_errors: 0,
        router,
    };
    world.setup().await?;

    // Arrivals keep coming after the end so that the last measured conversations wait in
    // a queue as loaded as before; the run stops once they are all served, or at the cap.
    let cap = world
        .end
        .plus(Duration::from_secs((sc.duration_secs / 10).max(4 * 3600)));
    let mut last_progress = -1.0;
    loop {
        let now = world.router.clock().now();
        if (now >= world.end && world.waiting_measured == 0) || now >= cap {
            break;
        }
        let share = (now.since(sc.start).as_secs_f64() / sc.duration_secs as f64).min(1.0);
        if share - last_progress >= 0.01 {
            progress(share);
            last_progress = share;
        }
        let next = world.agenda.peek().map(|Reverse((t, _, _))| *t).unwrap_or(cap);
        let until = tokio::time::Instant::now() + world.router.clock().until(next);
        tokio::select! {
            biased;
            e = events.recv() => match e {
                Ok(e) => world.on_event(e),
                Err(RecvError::Lagged(n)) => anyhow::bail!("the simulation fell {n} events behind the engine"),
                Err(RecvError::Closed) => break,
            },
            _ = tokio::time::sleep_until(until) => {
                while world.agenda.peek().is_some_and(|Reverse((t, _, _))| *t <= world.router.clock().now()) {
                    if let Some(Reverse((_, _, action))) = world.agenda.pop() {
                        world.act(action).await;
                    }
                }
            }
        }
    }
    progress(1.0);
    let report = world.finish(wall.elapsed());
    Ok(report)
}

impl World<'_> {
    fn now(&self) -> Timestamp {
        self.router.clock().now()
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.seq += 1;
        self.agenda.push(Reverse((at, self.seq, action)));
    }

    fn schedule_in(&mut self, delay: Duration, action: Action) {
        let at = self.now().plus(delay);
        self.schedule(at, action);
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        let sc = self.sc;
        for (g, group) in sc.groups.iter().enumerate() {
            for i in 0..group.count {
                let id = AgentId::new(format!("{}-{i}", group.name))?;
                let spec = AgentSpec {
                    // The scenario's agent group is the agents' group for `group_routing`.
                    group: GroupId::new(&group.name).ok(),
                    skills: group.skills.clone(),
                    max_slots: group.max_slots,
                    max_open: group.max_open,
                };
                self.router.put_agent(id.clone(), spec).await?;
                self.agents.insert(id, g);
            }
            if group.shifts.is_empty() {
                self.set_group_status(g, true).await;
            } else {
                self.schedule_shifts(g);
            }
        }
        for s in 0..sc.arrivals.len() {
            self.schedule_next_arrival(s);
        }
        self.schedule(sc.start, Action::Sample);
        Ok(())
    }

    fn schedule_shifts(&mut self, g: usize) {
        let sc = self.sc;
        let day = 86_400i64;
        let first_day = sc.start.as_secs().div_euclid(day);
        let last_day = self.end.as_secs().div_euclid(day) + 2;
        for d in first_day..=last_day {
            for &(start, end) in &sc.groups[g].shifts {
                let on = Timestamp::from_millis((d * day + i64::from(start)) * 1000);
                let off = Timestamp::from_millis((d * day + i64::from(end)) * 1000);
                if off > sc.start {
                    self.schedule(on.max(sc.start), Action::Shift { group: g, online: true });
                    self.schedule(
                        off,
                        Action::Shift {
                            group: g,
                            online: false,
                        },
                    );
                }
            }
        }
    }

    async fn set_group_status(&mut self, g: usize, online: bool) {
        let status = if online {
            AgentStatus::Online
        } else {
            AgentStatus::Offline
        };
        let ids: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, gi)| **gi == g)
            .map(|(id, _)| id.clone())
            .collect();
        let mut ids = ids;
        ids.sort();
        for id in ids {
            if self.router.set_agent_status(&id, status).await.is_err() {
                self.engine_errors += 1;
            }
        }
    }

    /// Poisson arrivals with an hourly rate, by thinning a process at the peak rate.
    fn schedule_next_arrival(&mut self, stream: usize) {
        let arrivals = &self.sc.arrivals[stream];
        let peak = arrivals.max_rate();
        if peak <= 0.0 {
            return;
        }
        let mut t = self.now();
        for _ in 0..1_000_000 {
            let gap = -(1.0 - self.rng.gen::<f64>()).ln() / peak;
            t = t.plus(Duration::from_secs_f64(gap));
            let hour = (t.as_secs().rem_euclid(86_400) / 3600) as usize;
            if self.rng.gen::<f64>() * peak <= arrivals.rate_by_hour[hour] {
                self.schedule(t, Action::Arrival { stream });
                return;
            }
        }
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Arrival { stream } => self.arrive(stream).await,
            Action::AgentReply {
                conv,
                agent,
                generation,
            } => {
                let Some(id) = self.still_held(conv, &agent, generation) else {
                    return;
                };
                if self.router.agent_message(&id, &agent).await.is_err() {
                    self.engine_errors += 1;
                    return;
                }
                let c = &mut self.convs[conv];
                c.awaiting_agent = false;
                if c.rounds_left == 0 {
                    let delay = self.sc.close_after.sample_duration(&mut self.rng);
                    self.schedule_in(
                        delay,
                        Action::AgentClose {
                            conv,
                            agent,
                            generation,
                        },
                    );
                } else if self.rng.gen::<f64>() < self.sc.reply_probability {
                    let delay = self.sc.reply_delay.sample_duration(&mut self.rng);
                    self.schedule_in(delay, Action::ConsumerReply { conv });
                }
            }
            Action::ConsumerReply { conv } => {
                if self.convs[conv].done {
                    return;
                }
                let id = self.convs[conv].id.clone();
                if self.router.consumer_message(&id).await.is_err() {
                    self.engine_errors += 1;
                    return;
                }
                let c = &mut self.convs[conv];
                c.rounds_left = c.rounds_left.saturating_sub(1);
                c.awaiting_agent = true;
                if let Some(agent) = c.holder.clone() {
                    self.start_handling(conv, agent);
                }
            }
            Action::AgentClose {
                conv,
                agent,
                generation,
            } => {
                let Some(id) = self.still_held(conv, &agent, generation) else {
                    return;
                };
                if self.router.close(&id, ClosedBy::Agent, Some(&agent)).await.is_err() {
                    self.engine_errors += 1;
                }
            }
            Action::Abandon { conv } => {
                let c = &self.convs[conv];
                if c.done || c.first_assigned.is_some() {
                    return;
                }
                let id = c.id.clone();
                if self.router.close(&id, ClosedBy::Consumer, None).await.is_ok() {
                    self.convs[conv].abandoned = true;
                }
            }
            Action::Shift { group, online } => self.set_group_status(group, online).await,
            Action::Sample => {
                self.sample().await;
                let every = Duration::from_secs(self.sc.sample_every_secs);
                self.schedule_in(every, Action::Sample);
            }
        }
    }

    async fn arrive(&mut self, stream: usize) {
        self.schedule_next_arrival(stream);
        let now = self.now();
        let n = self.convs.len();
        let arrivals = &self.sc.arrivals[stream];
        let id = match ConversationId::new(format!("c{n}")) {
            Ok(id) => id,
            Err(_) => return,
        };
        let consumer = match arrivals.consumers {
            Some(pool) => format!("u{stream}-{}", self.rng.gen_range(0..pool)),
            None => format!("u{n}"),
        };
        let Ok(consumer) = ConsumerId::new(consumer) else {
            return;
        };
        let mut req = OpenConversation::new(consumer, arrivals.skill.clone()).with_id(id.clone());
        req.urgent = self.rng.gen::<f64>() < arrivals.urgent_share;
        let shares = arrivals.attributes.clone();
        req.attributes = scenario::attributes_for(&shares, || self.rng.gen());
        let messages = self.sc.messages.sample(&mut self.rng).round().max(1.0) as u32;
        let patience = self.sc.patience.map(|p| p.sample_duration(&mut self.rng));
        let measured = now >= self.sc.start.plus(Duration::from_secs(self.sc.warmup_secs)) && now < self.end;
        self.index.insert(id.clone(), n);
        self.convs.push(SimConv {
            id,
            stream,
            arrived: now,
            measured,
            rounds_left: messages - 1,
            holder: None,
            first_assigned: None,
            awaiting_agent: true,
            generation: 0,
            done: false,
            abandoned: false,
            estimated_wait: None,
        });
        if measured {
            self.waiting_measured += 1;
            // What `GET /v1/queue-health` would have promised this consumer.
            let estimate = self.router.estimated_wait(&arrivals.skill).await.ok().flatten();
            // Whole seconds, as the endpoint reports it.
            self.convs[n].estimated_wait = estimate.map(|d| Duration::from_secs(d.as_secs()));
        }
        if self.router.open_conversation(req).await.is_err() {
            self.engine_errors += 1;
            return;
        }
        if let Some(p) = patience {
            self.schedule_in(p, Action::Abandon { conv: n });
        }
    }

    /// The conversation's id if `agent` still holds it and the action is not void.
    fn still_held(&self, conv: usize, agent: &AgentId, generation: u32) -> Option<ConversationId> {
        let c = &self.convs[conv];
        (!c.done && c.generation == generation && c.holder.as_ref() == Some(agent)).then(|| c.id.clone())
    }

    fn start_handling(&mut self, conv: usize, agent: AgentId) {
        let c = &mut self.convs[conv];
        c.generation += 1;
        let generation = c.generation;
        let delay = self.sc.handling.sample_duration(&mut self.rng);
        self.schedule_in(
            delay,
            Action::AgentReply {
                conv,
                agent,
                generation,
            },
        );
    }

    fn on_event(&mut self, e: RouterEvent) {
        let Some(&conv) = e.conversation_id.as_ref().and_then(|id| self.index.get(id)) else {
            return;
        };
        match e.kind {
            EventKind::Assigned { .. } => {
                let Some(agent) = e.agent_id else { return };
                let c = &mut self.convs[conv];
                c.holder = Some(agent.clone());
                if c.first_assigned.is_none() {
                    c.first_assigned = Some(e.at);
                    if c.measured {
                        self.waiting_measured -= 1;
                    }
                }
                if c.awaiting_agent {
                    self.start_handling(conv, agent);
                }
            }
            EventKind::Unassigned { .. } => {
                let c = &mut self.convs[conv];
                c.holder = None;
                c.generation += 1;
            }
            EventKind::Closed { .. } => {
                let c = &mut self.convs[conv];
                if !c.done && c.first_assigned.is_none() && c.measured {
                    self.waiting_measured -= 1;
                }
                c.done = true;
                c.holder = None;
                c.generation += 1;
            }
            EventKind::Overdue { .. } => {
                let c = &self.convs[conv];
                if c.measured {
                    self.collector.breach(c.stream);
                }
            }
            _ => {}
        }
    }

    async fn sample(&mut self) {
        let now = self.now();
        // Sums in exact thousandths of a slot: the agents are visited in no fixed order,
        // and float sums in another order would make two runs of one seed differ.
        let mut per_group: Vec<(u64, u64, u64, u32)> = vec![(0, 0, 0, 0); self.sc.groups.len()];
        let agents = &self.agents;
        self.router.visit_agents(|a| {
            if a.status != AgentStatus::Online {
                return;
            }
            let Some(&g) = agents.get(&a.id) else { return };
            let inactive: Weight = a
                .conversations
                .values()
                .filter(|h| h.activity == Activity::Inactive)
                .map(|h| h.weight)
                .sum();
            let e = &mut per_group[g];
            e.0 += u64::from(a.busy_held().0);
            e.1 += u64::from(inactive.0);
            e.2 += u64::from(a.limits.max_slots) * 1000;
            e.3 += 1;
        });
        let mut depth = Vec::with_capacity(self.sc.skills.len());
        for s in &self.sc.skills {
            let f = self.router.queue_figures(&s.id).await.unwrap_or_default();
            depth.push(f.actionable as u32);
        }
        let per_group: Vec<(f64, f64, f64, u32)> = per_group
            .into_iter()
            .map(|(busy, inactive, slots, n)| {
                (busy as f64 / 1000.0, inactive as f64 / 1000.0, slots as f64 / 1000.0, n)
            })
            .collect();
        self.collector.sample(now, &per_group, depth);
    }

    fn finish(mut self, wall: Duration) -> Report {
        for c in self.convs.iter().filter(|c| c.measured) {
            let wait = c.first_assigned.map(|t| t.since(c.arrived));
            self.collector
                .conversation(c.stream, wait, c.abandoned, c.estimated_wait);
        }
        self.collector.finish(self.sc, wall, self.engine_errors)
    }
}
