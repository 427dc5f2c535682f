//! Prometheus metrics. Labels are bounded: skill, status, state, kind, route — never a
//! conversation or agent id.
//!
//! Three sources feed them:
//! - domain events (a task subscribed to the router's event bus): counters and
//!   histograms of what happened (assignments, waits, SLA breaches, offers);
//! - a scan at scrape time: gauges of what is (queue depth, conversations by state,
//!   agents by status, available slots, load);
//! - the HTTP middleware: requests by matched route and status, with latency.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use prometheus::{Gauge, GaugeVec};
use tokio::sync::broadcast::error::RecvError;

use crate::domain::agent::AgentStatus;
use crate::domain::conversation::{Activity, Phase};
use crate::events::{EventKind, RouterEvent};
use crate::ids::AgentId;
use crate::Router;

/// Wait and response-time buckets, seconds: 1 s to 1 day.
const TIME_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];
/// HTTP latency buckets, seconds: 100 µs to 5 s.
const HTTP_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    // Events.
    pub conversations_opened: IntCounterVec,
    pub conversations_closed: IntCounterVec,
    pub assignments: IntCounterVec,
    pub unassignments: IntCounterVec,
    pub offers: IntCounterVec,
    pub wait_for_assignment: HistogramVec,
    pub time_to_first_response: HistogramVec,
    pub sla_breaches: IntCounterVec,
    pub sla_soon_overdue: IntCounterVec,
    pub transfers: IntCounterVec,
    pub events: IntCounterVec,
    pub events_lost: IntCounter,
    // Scrape-time gauges.
    pub queue_depth: IntGaugeVec,
    pub conversations: IntGaugeVec,
    pub overdue: IntGaugeVec,
    pub agents: IntGaugeVec,
    pub agents_disconnected: IntGaugeVec,
    pub available_slots: GaugeVec,
    pub agent_load: GaugeVec,
    pub queue_wait_max: GaugeVec,
    pub agents_online: IntGaugeVec,
    pub estimated_wait: GaugeVec,
    pub engine_in_flight: IntGauge,
    pub conversation_actors: IntGauge,
    pub conversation_activations: IntCounter,
    pub closed_retained: IntGauge,
    pub timer_deadlines: IntGauge,
    pub scrape_seconds: Gauge,
    // Store.
    pub recovery_seconds: Gauge,
    // HTTP.
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub sse_streams: IntGauge,
    pub sse_disconnected_slow: IntCounter,
    pub rejected_overload: IntCounter,
    pub forwarded: IntCounter,
    // A cluster node's series, registered when it joins.
    cluster: Arc<std::sync::OnceLock<ClusterSeries>>,
}

/// A cluster node's series: refreshed at scrape time from the node and its engine.
#[derive(Clone)]
struct ClusterSeries {
    node: Arc<crate::cluster::node::ClusterNode>,
    shards: IntGauge,
    peers: IntGaugeVec,
    peer_rtt: GaugeVec,
    peer_timeouts: IntGaugeVec,
    frames_refused: IntGauge,
    messages: IntCounterVec,
    frames_sent: IntCounter,
    shards_moved: IntCounterVec,
    adoption_seconds: Gauge,
}

impl std::fmt::Debug for ClusterSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSeries").finish_non_exhaustive()
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("register {name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("register {name}: {e}"));
    g
}

fn fgauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("register {name}: {e}"));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("register {name}: {e}"));
    h
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")),
    )
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    r.register(Box::new(m.clone()))
        .unwrap_or_else(|e| panic!("register: {e}"));
    m
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds and registers every series. The names are fixed, so registration cannot
    /// fail unless this function registers a name twice (a bug caught by the tests).
    /// Adds the store's series (commit latency, batch sizes, errors, rows written, changes
    /// pending, the change log's applies and size).
    pub fn register_store(&self, store: &crate::store::StoreMetrics) {
        register(&self.registry, store.rows_fenced.clone());
        register(&self.registry, store.commit_seconds.clone());
        register(&self.registry, store.batch_rows.clone());
        register(&self.registry, store.errors.clone());
        register(&self.registry, store.rows_written.clone());
        register(&self.registry, store.pending.clone());
        register(&self.registry, store.apply_seconds.clone());
        register(&self.registry, store.apply_rows.clone());
        register(&self.registry, store.log_bytes.clone());
    }

    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            conversations_opened: counter(
                &r,
                "switchboard_conversations_opened_total",
                "Conversations opened (consumer's first message).",
                &["skill"],
            ),
            conversations_closed: counter(
                &r,
                "switchboard_conversations_closed_total",
                "Conversations closed, by who closed them.",
                &["skill", "by"],
            ),
            assignments: counter(
                &r,
                "switchboard_assignments_total",
                "Conversations assigned to an agent.",
                &["skill"],
            ),
            unassignments: counter(
                &r,
                "switchboard_unassignments_total",
                "Conversations taken back from an agent, by reason.",
                &["skill", "reason"],
            ),
            offers: counter(
                &r,
                "switchboard_offers_total",
                "Offers in offer mode, by outcome (offered, rejected, expired).",
                &["skill", "outcome"],
            ),
            wait_for_assignment: histogram(
                &r,
                "switchboard_wait_for_assignment_seconds",
                "Time from entering the queue to assignment.",
                &["skill"],
                TIME_BUCKETS,
            ),
            time_to_first_response: histogram(
                &r,
                "switchboard_time_to_first_response_seconds",
                "Time from open to the agent's first message.",
                &["skill"],
                TIME_BUCKETS,
            ),
            sla_breaches: counter(
                &r,
                "switchboard_sla_breaches_total",
                "Conversations that became overdue, by SLA kind.",
                &["skill", "kind"],
            ),
            sla_soon_overdue: counter(
                &r,
                "switchboard_sla_soon_overdue_total",
                "Conversations that entered the soon-overdue window.",
                &["skill", "kind"],
            ),
            transfers: counter(
                &r,
                "switchboard_transfers_total",
                "Transfers, by the skill they left.",
                &["skill"],
            ),
            events: counter(
                &r,
                "switchboard_events_total",
                "Domain events published, by type.",
                &["type"],
            ),
            events_lost: register(
                &r,
                IntCounter::new(
                    "switchboard_metrics_events_lost_total",
                    "Events the metrics task missed because it fell behind.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            queue_depth: gauge(
                &r,
                "switchboard_queue_depth",
                "Unassigned conversations in each skill queue, by actionability.",
                &["skill", "actionable"],
            ),
            conversations: gauge(
                &r,
                "switchboard_conversations",
                "Open conversations by skill, state and activity.",
                &["skill", "state", "activity"],
            ),
            overdue: gauge(
                &r,
                "switchboard_conversations_overdue",
                "Overdue conversations now, assigned or not.",
                &["skill", "assigned"],
            ),
            agents: gauge(&r, "switchboard_agents", "Agents by status.", &["status"]),
            agents_disconnected: gauge(
                &r,
                "switchboard_agents_disconnected",
                "Agents by status with no open event stream on this node (offline ones not counted).",
                &["status"],
            ),
            available_slots: fgauge(
                &r,
                "switchboard_available_slots",
                "Free capacity (slots) of accepting agents, per skill.",
                &["skill"],
            ),
            agent_load: fgauge(
                &r,
                "switchboard_agent_load",
                "Average load (busy / max_slots) of online agents, per skill.",
                &["skill"],
            ),
            queue_wait_max: fgauge(
                &r,
                "switchboard_queue_max_wait_seconds",
                "Longest current wait among actionable unassigned conversations.",
                &["skill"],
            ),
            agents_online: gauge(
                &r,
                "switchboard_skill_agents_online",
                "Online agents of each skill, as its queue knows them (in a cluster: on the queue's node; sum by skill).",
                &["skill"],
            ),
            estimated_wait: fgauge(
                &r,
                "switchboard_queue_estimated_wait_seconds",
                "How long a conversation opened now would wait (the line ahead over its pace in the last 15 min); absent while unknown.",
                &["skill"],
            ),
            engine_in_flight: register(
                &r,
                IntGauge::new(
                    "switchboard_engine_in_flight_messages",
                    "Messages sent to actors and not yet handled.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            conversation_actors: int_gauge(
                &r,
                "switchboard_conversation_actors",
                "Conversations with a live activation, served or between turns (the rest are passive records).",
            ),
            conversation_activations: register(
                &r,
                IntCounter::new(
                    "switchboard_conversation_activations_total",
                    "Conversation activations started (of passive conversations, and restarts after a crash).",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            closed_retained: int_gauge(
                &r,
                "switchboard_conversations_closed_retained",
                "Closed conversations still readable (bounded by closed_retention_secs and closed_retention_max).",
            ),
            timer_deadlines: int_gauge(
                &r,
                "switchboard_timer_deadlines",
                "Deadlines armed in the node's timer service (one per conversation, agent or queue at most).",
            ),
            scrape_seconds: register(
                &r,
                Gauge::new(
                    "switchboard_metrics_scrape_seconds",
                    "Time the last scrape spent scanning the engine.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            recovery_seconds: register(
                &r,
                Gauge::new(
                    "switchboard_store_recovery_seconds",
                    "Time the last start spent reading the store back and rebuilding the engine (0 without a store).",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            http_requests: counter(
                &r,
                "switchboard_http_requests_total",
                "HTTP requests by matched route, method and status.",
                &["route", "method", "status"],
            ),
            http_latency: histogram(
                &r,
                "switchboard_http_request_duration_seconds",
                "HTTP request latency by matched route and method.",
                &["route", "method"],
                HTTP_BUCKETS,
            ),
            sse_streams: register(
                &r,
                IntGauge::new("switchboard_agent_event_streams", "Open event streams (SSE): the agents' and the platform's (GET /v1/events).")
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            sse_disconnected_slow: register(
                &r,
                IntCounter::new(
                    "switchboard_agent_event_streams_dropped_total",
                    "Event streams cut off because the client fell too far behind.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            forwarded: register(
                &r,
                IntCounter::new(
                    "switchboard_http_forwarded_total",
                    "Requests forwarded to the cluster node serving their shard.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            cluster: Arc::default(),
            rejected_overload: register(
                &r,
                IntCounter::new(
                    "switchboard_http_rejected_overload_total",
                    "Requests answered 503 because the engine's backlog passed its bound.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            registry: r,
        }
    }

    /// Counts one domain event.
    pub fn observe(&self, e: &RouterEvent) {
        self.events.with_label_values(&[e.kind.name()]).inc();
        let skill = e.skill.as_ref().map_or("", |s| s.as_str());
        match &e.kind {
            EventKind::Opened { .. } => self.conversations_opened.with_label_values(&[skill]).inc(),
            EventKind::Closed { by } => self.conversations_closed.with_label_values(&[skill, by_str(*by)]).inc(),
            EventKind::Assigned { waited_ms } => {
                self.assignments.with_label_values(&[skill]).inc();
                self.wait_for_assignment
                    .with_label_values(&[skill])
                    .observe(*waited_ms as f64 / 1000.0);
            }
            EventKind::Unassigned { reason } => self.unassignments.with_label_values(&[skill, reason.as_str()]).inc(),
            EventKind::Offered { .. } => self.offers.with_label_values(&[skill, "offered"]).inc(),
            EventKind::OfferDeclined { expired } => self
                .offers
                .with_label_values(&[skill, if *expired { "expired" } else { "rejected" }])
                .inc(),
            EventKind::FirstResponse { after_ms } => self
                .time_to_first_response
                .with_label_values(&[skill])
                .observe(*after_ms as f64 / 1000.0),
            EventKind::Overdue { kind, .. } => self.sla_breaches.with_label_values(&[skill, sla_str(*kind)]).inc(),
            EventKind::SoonOverdue { kind, .. } => {
                self.sla_soon_overdue.with_label_values(&[skill, sla_str(*kind)]).inc()
            }
            EventKind::Transferred { from_skill, .. } => self.transfers.with_label_values(&[from_skill.as_str()]).inc(),
            _ => {}
        }
    }

    /// Follows the router's events until the router stops publishing.
    pub fn spawn_event_task(self: &Arc<Self>, router: &Router) -> tokio::task::JoinHandle<()> {
        let mut events = router.subscribe();
        let metrics = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => metrics.observe(&e),
                    Err(RecvError::Lagged(n)) => metrics.events_lost.inc_by(n),
                    Err(RecvError::Closed) => break,
                }
            }
        })
    }

    /// Adds a cluster node's series: shards served, peers by state and round trip,
    /// engine messages across nodes, shards taken and lost, the last takeover's time.
    pub fn register_cluster(&self, node: &Arc<crate::cluster::node::ClusterNode>, _router: &Router) {
        let r = &self.registry;
        let series = ClusterSeries {
            node: Arc::clone(node),
            shards: int_gauge(r, "switchboard_cluster_shards", "Shards this node serves (held and read)."),
            peers: gauge(
                r,
                "switchboard_cluster_peers",
                "Other members as this node's transport sees them, by state (up, connecting, down).",
                &["state"],
            ),
            peer_rtt: fgauge(
                r,
                "switchboard_cluster_peer_rtt_seconds",
                "The last ping's round trip to each peer's gateway.",
                &["peer"],
            ),
            peer_timeouts: gauge(
                r,
                "switchboard_cluster_peer_timeouts",
                "Times each peer was declared down after a silence, since start.",
                &["peer"],
            ),
            frames_refused: int_gauge(
                r,
                "switchboard_cluster_frames_refused",
                "Frames from other nodes refused (unknown version, not decodable), since start.",
            ),
            messages: counter(
                r,
                "switchboard_cluster_engine_messages_total",
                "Engine messages between nodes: sent to another node, delivered from one, refused (node-local messages for another node's actor).",
                &["way"],
            ),
            frames_sent: register(
                r,
                IntCounter::new(
                    "switchboard_cluster_frames_sent_total",
                    "Frames sent to other nodes' gateways: each carries the messages, notes and pings gathered for one peer since the last (one write on the link; pings are about two frames per peer per ping interval).",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            shards_moved: counter(
                r,
                "switchboard_cluster_shards_moved_total",
                "Shards taken (their records read into this engine) and lost (dropped from it).",
                &["way"],
            ),
            adoption_seconds: register(
                r,
                Gauge::new(
                    "switchboard_cluster_last_takeover_seconds",
                    "How long the last takeover took, from the lease to the records in the engine.",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
        };
        let _ = self.cluster.set(series);
    }

    async fn refresh_cluster(&self, router: &Router) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(c) = self.cluster.get() else { return };
        c.shards.set(c.node.routes.adopted().len() as i64);
        let (out, delivered, refused) = router.crossings();
        for (way, now) in [("out", out), ("in", delivered), ("refused", refused)] {
            let m = c.messages.with_label_values(&[way]);
            m.inc_by(now.saturating_sub(m.get()));
        }
        let frames = crate::cluster::transport::frames_sent(c.node.routes.node());
        c.frames_sent.inc_by(frames.saturating_sub(c.frames_sent.get()));
        for (way, now) in [
            ("taken", c.node.stats.shards_adopted.load(Relaxed)),
            ("lost", c.node.stats.shards_dropped.load(Relaxed)),
        ] {
            let m = c.shards_moved.with_label_values(&[way]);
            m.inc_by(now.saturating_sub(m.get()));
        }
        c.adoption_seconds
            .set(c.node.stats.last_adoption_ms.load(Relaxed) as f64 / 1000.0);
        if let Some(status) = c.node.transport_status().await {
            c.peers.reset();
            c.peer_rtt.reset();
            for state in ["up", "connecting", "down"] {
                c.peers.with_label_values(&[state]).set(0);
            }
            for p in &status.peers {
                c.peers.with_label_values(&[p.state]).inc();
                if let Some(ms) = p.rtt_ms {
                    c.peer_rtt.with_label_values(&[&p.name]).set(ms / 1000.0);
                }
                c.peer_timeouts.with_label_values(&[&p.name]).set(p.timeouts as i64);
            }
            c.frames_refused.set(status.frames_refused as i64);
        }
    }

    /// Refreshes the scrape-time gauges from the engine and renders the text format.
    /// `connected`: whether an agent has an open event stream (the API layer knows).
    pub async fn render(&self, router: &Router, connected: &(dyn Fn(&AgentId) -> bool + Sync)) -> String {
        let started = std::time::Instant::now();
        self.refresh(router, connected).await;
        self.scrape_seconds.set(started.elapsed().as_secs_f64());
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    async fn refresh(&self, router: &Router, connected: &(dyn Fn(&AgentId) -> bool + Sync)) {
        self.refresh_cluster(router).await;
        self.engine_in_flight.set(router.in_flight());
        self.conversation_actors.set(router.num_active_conversations() as i64);
        let activations = router.conversation_activations();
        self.conversation_activations
            .inc_by(activations.saturating_sub(self.conversation_activations.get()));
        self.closed_retained.set(router.num_closed_retained() as i64);
        self.timer_deadlines.set(router.armed_deadlines() as i64);
        let health = router.queue_health().await.unwrap_or_default();
        for skill in router.skills() {
            let id = skill.id.as_str();
            let h = health.get(&skill.id).cloned().unwrap_or_default();
            self.queue_depth
                .with_label_values(&[id, "true"])
                .set(h.queue.actionable as i64);
            self.queue_depth
                .with_label_values(&[id, "false"])
                .set(h.queue.not_actionable as i64);
            self.available_slots
                .with_label_values(&[id])
                .set(h.queue.available_slots);
            self.queue_wait_max
                .with_label_values(&[id])
                .set(h.queue.max_wait_secs as f64);
            self.agents_online
                .with_label_values(&[id])
                .set(h.queue.online_agents as i64);
            match h.queue.estimated_wait_secs {
                Some(secs) => self.estimated_wait.with_label_values(&[id]).set(secs as f64),
                None => {
                    let _ = self.estimated_wait.remove_label_values(&[id]);
                }
            }
            self.overdue
                .with_label_values(&[id, "false"])
                .set(h.queue.overdue_unassigned as i64);
            self.overdue
                .with_label_values(&[id, "true"])
                .set(h.overdue_assigned as i64);
        }
        // Conversations by state and activity.
        let mut by_state: HashMap<(String, Phase, Activity), i64> = HashMap::new();
        router.visit_conversations(|c| {
            if c.state != Phase::Closed {
                *by_state.entry((c.skill.to_string(), c.state, c.activity)).or_default() += 1;
            }
        });
        self.conversations.reset();
        for skill in router.skills() {
            for state in [Phase::Queued, Phase::Offered, Phase::Assigned] {
                for activity in [Activity::Active, Activity::Inactive] {
                    let n = by_state
                        .get(&(skill.id.to_string(), state, activity))
                        .copied()
                        .unwrap_or(0);
                    self.conversations
                        .with_label_values(&[skill.id.as_str(), state_str(state), activity_str(activity)])
                        .set(n);
                }
            }
        }
        // Agents by status, load per skill.
        let mut statuses: HashMap<AgentStatus, i64> = HashMap::new();
        let mut disconnected: HashMap<AgentStatus, i64> = HashMap::new();
        let mut load: HashMap<String, (f64, u32)> = HashMap::new();
        router.visit_agents(|a| {
            *statuses.entry(a.status).or_default() += 1;
            if a.status != AgentStatus::Offline && !connected(&a.id) {
                *disconnected.entry(a.status).or_default() += 1;
            }
            if a.status == AgentStatus::Online {
                for s in &a.skills {
                    let e = load.entry(s.to_string()).or_default();
                    e.0 += a.load();
                    e.1 += 1;
                }
            }
        });
        for status in AgentStatus::ALL {
            self.agents
                .with_label_values(&[status.as_str()])
                .set(statuses.get(&status).copied().unwrap_or(0));
            if status != AgentStatus::Offline {
                self.agents_disconnected
                    .with_label_values(&[status.as_str()])
                    .set(disconnected.get(&status).copied().unwrap_or(0));
            }
        }
        for skill in router.skills() {
            let (sum, n) = load.get(skill.id.as_str()).copied().unwrap_or((0.0, 0));
            self.agent_load
                .with_label_values(&[skill.id.as_str()])
                .set(if n == 0 { 0.0 } else { sum / f64::from(n) });
        }
    }

    /// A histogram handle for one route (used by the HTTP middleware).
    pub fn http_histogram(&self, route: &str, method: &str) -> Histogram {
        self.http_latency.with_label_values(&[route, method])
    }
}

fn by_str(by: crate::domain::conversation::ClosedBy) -> &'static str {
    use crate::domain::conversation::ClosedBy::*;
    match by {
        Agent => "agent",
        Consumer => "consumer",
        System => "system",
    }
}

fn sla_str(kind: crate::domain::sla::SlaKind) -> &'static str {
    use crate::domain::sla::SlaKind::*;
    match kind {
        Normal => "normal",
        Urgent => "urgent",
        FirstTime => "first_time",
        Manual => "manual",
    }
}

fn state_str(s: Phase) -> &'static str {
    s.as_str()
}

fn activity_str(a: Activity) -> &'static str {
    match a {
        Activity::Active => "active",
        Activity::Inactive => "inactive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_registers_once() {
        let m = Metrics::new();
        m.conversations_opened.with_label_values(&["general"]).inc();
        assert!(!m.registry.gather().is_empty());
    }
}
