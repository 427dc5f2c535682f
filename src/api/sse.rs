//! Agent event streams: `GET /v1/agents/{id}/events` as Server-Sent Events.
//!
//! One task follows the router's event bus and hands each event that names an agent to
//! that agent's streams through bounded channels. A stream whose client does not keep
//! up fills its channel and is cut off: memory stays bounded whatever the client does.
//! Every stream ends when the server shuts down.
//!
//! `GET /v1/events` is the platform's stream: every event of this node's router, each
//! with an `id`, filterable by skill and type. The last `EVENT_LOG` events are kept in
//! memory, so a client that reconnects with `Last-Event-ID` gets what it missed (a
//! `gap` event says when the log no longer reaches back that far).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use dashmap::DashMap;
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc, watch};

use crate::domain::agent::AgentStatus;
use crate::events::RouterEvent;
use crate::ids::AgentId;
use crate::metrics::Metrics;
use crate::Router;

/// Comment lines that keep idle connections (and proxies) alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct EventStreams {
    streams: DashMap<AgentId, Vec<mpsc::Sender<RouterEvent>>>,
    /// The platform stream's log: the last `EVENT_LOG` events with their ids.
    log: Mutex<EventLog>,
    platform: broadcast::Sender<Arc<(u64, RouterEvent)>>,
    buffer: usize,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl EventStreams {
    pub fn new(buffer: usize, shutdown: watch::Receiver<bool>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(EventStreams {
            streams: DashMap::new(),
            log: Mutex::new(EventLog::default()),
            platform: broadcast::channel(buffer.max(1024)).0,
            buffer,
            shutdown,
            metrics,
        })
    }

    /// Follows the router's events until it stops or the server shuts down.
    pub fn spawn_fanout(self: &Arc<Self>, router: &Router) -> tokio::task::JoinHandle<()> {
        let mut events = router.subscribe();
        let this = Arc::clone(self);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(e) => {
                            this.record(&e);
                            this.dispatch(e);
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "agent event streams fell behind the router");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
            this.streams.clear();
        })
    }

    pub(crate) fn dispatch(&self, event: RouterEvent) {
        let Some(agent) = event.agent_id.clone() else { return };
        let Some(mut senders) = self.streams.get_mut(&agent) else {
            return;
        };
        senders.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(agent = %agent, "agent event stream fell too far behind; disconnecting it");
                self.metrics.sse_disconnected_slow.inc();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if senders.is_empty() {
            drop(senders);
            self.streams.remove_if(&agent, |_, v| v.is_empty());
        }
    }

    /// `routing.disconnected_away_after`: an online agent without an open event stream
    /// for `after` is set away (an agent that never opened one counts from when this
    /// task first saw it online). Checks four times per `after`, at most every 5 s.
    pub fn spawn_disconnected_away(self: &Arc<Self>, router: &Router, after: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        let router = router.clone();
        let mut shutdown = self.shutdown.clone();
        let every = (after / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut since: std::collections::HashMap<AgentId, tokio::time::Instant> = Default::default();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let now = tokio::time::Instant::now();
                let mut online = std::collections::HashSet::new();
                router.visit_agents(|a| {
                    if a.status == AgentStatus::Online {
                        online.insert(a.id.clone());
                    }
                });
                since.retain(|id, _| online.contains(id));
                for id in online {
                    if this.connected(&id) {
                        since.remove(&id);
                        continue;
                    }
                    let from = *since.entry(id.clone()).or_insert(now);
                    if now.duration_since(from) >= after {
                        since.remove(&id);
                        match router.set_agent_status(&id, AgentStatus::Away).await {
                            Ok(_) => tracing::info!(agent = %id, "no event stream for {after:?}: set away"),
                            Err(e) => {
                                tracing::warn!(agent = %id, error = %e, "could not set a disconnected agent away")
                            }
                        }
                    }
                }
            }
        })
    }

    /// Whether `agent` has an open event stream here (a client gone is noticed at the
    /// next event or keep-alive, within 15 s).
    pub fn connected(&self, agent: &AgentId) -> bool {
        self.streams
            .get(agent)
            .is_some_and(|v| v.iter().any(|tx| !tx.is_closed()))
    }

    /// A new stream for `agent`. Its first frame is `hello`: the handler sends the
    /// agent's current state (`event: snapshot`), so a client that reconnects (after a
    /// restart of the server, say) sees its conversations and offers at once.
    pub fn open(
        self: &Arc<Self>,
        agent: AgentId,
        hello: Bytes,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        let (tx, rx) = mpsc::channel(self.buffer);
        self.streams.entry(agent.clone()).or_default().push(tx);
        let guard = StreamGuard {
            metrics: Arc::clone(&self.metrics),
        };
        self.metrics.sse_streams.inc();
        let state = (rx, self.shutdown.clone(), guard, Some(hello));
        futures_util::stream::unfold(state, |(mut rx, mut shutdown, guard, hello)| async move {
            if let Some(hello) = hello {
                return Some((Ok(hello), (rx, shutdown, guard, None)));
            }
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                e = rx.recv() => {
                    let e = e?;
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    let frame = format!("event: {}\ndata: {}\n\n", e.kind.name(), data);
                    Some((Ok(Bytes::from(frame)), (rx, shutdown, guard, None)))
                }
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (rx, shutdown, guard, None)))
                }
                _ = shutdown.changed() => None,
            }
        })
    }
}

/// Events the platform stream keeps for clients that reconnect.
pub const EVENT_LOG: usize = 10_000;

#[derive(Debug, Default)]
struct EventLog {
    next_id: u64,
    events: VecDeque<Arc<(u64, RouterEvent)>>,
}

/// What a client of `GET /v1/events` wants: events of these skills and types (empty:
/// all), after this id.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub skills: Vec<crate::ids::SkillId>,
    pub types: Vec<String>,
}

impl EventFilter {
    fn wants(&self, e: &RouterEvent) -> bool {
        (self.skills.is_empty() || e.skill.as_ref().is_some_and(|s| self.skills.contains(s)))
            && (self.types.is_empty() || self.types.iter().any(|t| t == e.kind.name()))
    }
}

fn frame(id: u64, e: &RouterEvent) -> Bytes {
    let data = serde_json::to_string(e).unwrap_or_default();
    Bytes::from(format!("id: {id}\nevent: {}\ndata: {data}\n\n", e.kind.name()))
}

impl EventStreams {
    /// Gives the event its id, keeps it in the log and hands it to platform streams.
    pub(crate) fn record(&self, e: &RouterEvent) {
        let entry = {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            log.next_id += 1;
            let entry = Arc::new((log.next_id, e.clone()));
            if log.events.len() == EVENT_LOG {
                log.events.pop_front();
            }
            log.events.push_back(Arc::clone(&entry));
            entry
        };
        let _ = self.platform.send(entry);
    }

    /// A platform stream: first what the log holds after `last_id` (a `gap` event when
    /// it no longer reaches back that far), then live events; all filtered. A client
    /// that falls more than the channel behind is cut off, and resumes from its
    /// `Last-Event-ID`.
    pub fn open_platform(
        self: &Arc<Self>,
        filter: EventFilter,
        last_id: Option<u64>,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        let live = self.platform.subscribe();
        let mut first = String::from(": switchboard events\n\n");
        let replayed_to;
        {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(last) = last_id {
                let oldest = log.events.front().map_or(log.next_id + 1, |e| e.0);
                if last + 1 < oldest {
                    first.push_str(&format!(
                        "event: gap\ndata: {{\"missed_from\": {}, \"oldest_kept\": {oldest}}}\n\n",
                        last + 1
                    ));
                }
                for e in log.events.iter().filter(|e| e.0 > last) {
                    if filter.wants(&e.1) {
                        first.push_str(std::str::from_utf8(&frame(e.0, &e.1)).unwrap_or_default());
                    }
                }
            }
            replayed_to = log.next_id;
        }
        self.metrics.sse_streams.inc();
        let guard = StreamGuard {
            metrics: Arc::clone(&self.metrics),
        };
        let state = (
            live,
            self.shutdown.clone(),
            guard,
            Some(Bytes::from(first)),
            filter,
            replayed_to,
        );
        futures_util::stream::unfold(
            state,
            |(mut live, mut shutdown, guard, hello, filter, replayed_to)| async move {
                if let Some(hello) = hello {
                    return Some((Ok(hello), (live, shutdown, guard, None, filter, replayed_to)));
                }
                loop {
                    if *shutdown.borrow() {
                        return None;
                    }
                    tokio::select! {
                        e = live.recv() => match e {
                            Ok(e) if e.0 > replayed_to && filter.wants(&e.1) => {
                                let f = frame(e.0, &e.1);
                                return Some((Ok(f), (live, shutdown, guard, None, filter, replayed_to)));
                            }
                            Ok(_) => continue,
                            // Fell behind, or the server is stopping: the client resumes
                            // with its Last-Event-ID.
                            Err(_) => return None,
                        },
                        _ = tokio::time::sleep(KEEP_ALIVE) => {
                            let k = Bytes::from_static(b": keep-alive\n\n");
                            return Some((Ok(k), (live, shutdown, guard, None, filter, replayed_to)));
                        }
                        _ = shutdown.changed() => return None,
                    }
                }
            },
        )
    }
}

/// Keeps the open-streams gauge true however a stream ends.
struct StreamGuard {
    metrics: Arc<Metrics>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.sse_streams.dec();
    }
}
