//! Agent event streams: `GET /v1/agents/{id}/events` as Server-Sent Events.
//!
//! One task follows the router's event bus and hands each event that names an agent to
//! that agent's streams through bounded channels. A stream whose client does not keep
//! up fills its channel and is cut off: memory stays bounded whatever the client does.
//! Every stream ends when the server shuts down.
//!
//! `GET /v1/events` is the platform's stream: every event of this node's router, each
//! with an `id`, filterable by skill and type. The last `EVENT_LOG` events are kept in
//! memory and, with a store, the last `store.events_kept` in its `events` table, so a
//! client that reconnects with `Last-Event-ID` gets what it missed, across restarts
//! too (a `gap` event says when neither reaches back that far).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::web::Bytes;
use dashmap::DashMap;
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc, watch};

use crate::domain::agent::AgentStatus;
use crate::events::RouterEvent;
use crate::ids::AgentId;
use crate::metrics::Metrics;
use crate::store::{event_follows, Store};
use crate::Router;

/// Comment lines that keep idle connections (and proxies) alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct EventStreams {
    streams: DashMap<AgentId, Vec<mpsc::Sender<RouterEvent>>>,
    /// The platform stream's log: the last `EVENT_LOG` events with their ids.
    log: Mutex<EventLog>,
    platform: broadcast::Sender<Arc<(u64, RouterEvent)>>,
    /// With a store: where the log is kept too, and how many events it keeps.
    store: OnceLock<(Arc<Store>, u64)>,
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
            store: OnceLock::new(),
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

/// Events the platform stream keeps in memory for clients that reconnect (with a
/// store, older ones are read back from it).
pub const EVENT_LOG: usize = 10_000;

/// Most events a replay reads from the store, or frames, per chunk.
const REPLAY_PAGE: usize = 1000;

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
        self.wants_raw(e.skill.as_ref().map(|s| s.as_str()), e.kind.name())
    }

    /// The same, for a stored event's `skill` and `type` columns.
    fn wants_raw(&self, skill: Option<&str>, kind: &str) -> bool {
        (self.skills.is_empty() || skill.is_some_and(|s| self.skills.iter().any(|k| k.as_str() == s)))
            && (self.types.is_empty() || self.types.iter().any(|t| t == kind))
    }
}

fn push_frame(out: &mut String, id: u64, kind: &str, data: &str) {
    use std::fmt::Write;
    let _ = write!(out, "id: {id}\nevent: {kind}\ndata: {data}\n\n");
}

fn frame(id: u64, e: &RouterEvent) -> Bytes {
    let mut out = String::new();
    push_frame(
        &mut out,
        id,
        e.kind.name(),
        &serde_json::to_string(e).unwrap_or_default(),
    );
    Bytes::from(out)
}

fn push_gap(out: &mut String, missed_from: u64, oldest_kept: u64) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "event: gap\ndata: {{\"missed_from\": {missed_from}, \"oldest_kept\": {oldest_kept}}}\n\n"
    );
}

impl EventStreams {
    /// Keeps the platform stream's events in `store` too (the newest `keep`; `0` keeps
    /// none), numbered from `era`'s first id on ([`crate::store::event_era_base`]).
    /// Called before the engine reads the store back, so every event of this start is
    /// numbered in the era.
    pub fn attach_store(&self, store: Arc<Store>, era: u64, keep: u64) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.next_id = log.next_id.max(crate::store::event_era_base(era));
        if keep > 0 {
            let _ = self.store.set((store, keep));
        }
    }

    /// Gives the event its id, keeps it in the log (and the store) and hands it to
    /// platform streams.
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
        // Only the fan-out task records: the store receives the events in id order.
        if let Some((store, keep)) = self.store.get() {
            store.write_event(entry.0, &entry.1);
            if entry.0 % (keep / 2).clamp(1, 4096) == 0 {
                store.trim_events(*keep, entry.0);
            }
        }
        let _ = self.platform.send(entry);
    }

    /// The next chunk of a replay of the events in `after+1..=through`: from memory
    /// when the log reaches back to `after`, else from the store (a page at a time),
    /// with a `gap` event where neither holds what follows `after`. Returns the frames
    /// and the id replayed to; an error when the store cannot be read (the stream ends
    /// and the client resumes: nothing is skipped for a passing failure).
    async fn replay_page(&self, filter: &EventFilter, after: u64, through: u64) -> anyhow::Result<(String, u64)> {
        let mut out = String::new();
        let oldest = {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = log.events.front().map_or(log.next_id + 1, |e| e.0);
            if after + 1 >= oldest {
                let mut to = through;
                let from = log.events.partition_point(|e| e.0 <= after);
                for (n, e) in log.events.range(from..).take_while(|e| e.0 <= through).enumerate() {
                    if n == REPLAY_PAGE {
                        to = e.0 - 1;
                        break;
                    }
                    if filter.wants(&e.1) {
                        push_frame(
                            &mut out,
                            e.0,
                            e.1.kind.name(),
                            &serde_json::to_string(&e.1).unwrap_or_default(),
                        );
                    }
                }
                return Ok((out, to));
            }
            oldest
        };
        // Memory no longer reaches back: the store, up to what memory holds.
        let upto = through.min(oldest - 1);
        let mut anchored = false;
        if let Some((store, _)) = self.store.get() {
            let page = stored_page(Arc::clone(store), None, filter.clone(), after, upto).await?;
            if let Some(last) = page.last {
                return Ok((page.out, last));
            }
            anchored = page.anchored;
        }
        if !event_follows(after, oldest, anchored) {
            push_gap(&mut out, after + 1, oldest);
        }
        Ok((out, upto))
    }

    /// A platform stream: first what the log holds after `last_id` (memory, then the
    /// store; a `gap` event where neither reaches back that far), then an id-only frame
    /// with the position replayed to (the client's `Last-Event-ID` from then on, though
    /// its filter passed none of the events), then live events; all filtered. A client
    /// that falls more than the channel behind is cut off, and resumes from its
    /// `Last-Event-ID`.
    pub fn open_platform(
        self: &Arc<Self>,
        filter: EventFilter,
        last_id: Option<u64>,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        let live = self.platform.subscribe();
        let replayed_to = self.log.lock().unwrap_or_else(|p| p.into_inner()).next_id;
        self.metrics.sse_streams.inc();
        let state = Platform {
            streams: Arc::clone(self),
            live,
            shutdown: self.shutdown.clone(),
            _guard: StreamGuard {
                metrics: Arc::clone(&self.metrics),
            },
            filter,
            replayed_to,
            step: PlatformStep::Hello {
                after: last_id.unwrap_or(replayed_to),
            },
            sent_at: tokio::time::Instant::now(),
        };
        futures_util::stream::unfold(state, |mut s| async move {
            loop {
                if *s.shutdown.borrow() {
                    return None;
                }
                match s.step {
                    PlatformStep::Hello { after } => {
                        s.step = PlatformStep::Replay { after };
                        return Some((Ok(Bytes::from_static(b": switchboard events\n\n")), s));
                    }
                    PlatformStep::Replay { after } if after < s.replayed_to => {
                        let (chunk, to) = match s.streams.replay_page(&s.filter, after, s.replayed_to).await {
                            Ok(page) => page,
                            Err(e) => {
                                tracing::warn!(error = %format!("{e:#}"), "could not read events back from the store; ending the stream (the client resumes)");
                                return None;
                            }
                        };
                        s.step = PlatformStep::Replay {
                            after: to.max(after + 1),
                        };
                        if !chunk.is_empty() {
                            s.sent_at = tokio::time::Instant::now();
                            return Some((Ok(Bytes::from(chunk)), s));
                        }
                    }
                    PlatformStep::Replay { .. } => {
                        s.step = PlatformStep::Live;
                        if s.replayed_to > 0 {
                            s.sent_at = tokio::time::Instant::now();
                            let position = format!("id: {}\n\n", s.replayed_to);
                            return Some((Ok(Bytes::from(position)), s));
                        }
                    }
                    PlatformStep::Live => {
                        // Counted from the last frame sent, not from the last event seen:
                        // a filter that passes none of a steady flow still keeps the
                        // connection alive.
                        let keep_alive = tokio::time::sleep_until(s.sent_at + KEEP_ALIVE);
                        tokio::select! {
                            e = s.live.recv() => match e {
                                Ok(e) if e.0 > s.replayed_to && s.filter.wants(&e.1) => {
                                    s.sent_at = tokio::time::Instant::now();
                                    return Some((Ok(frame(e.0, &e.1)), s));
                                }
                                Ok(_) => continue,
                                // Fell behind, or the server is stopping: the client resumes
                                // with its Last-Event-ID.
                                Err(_) => return None,
                            },
                            _ = keep_alive => {
                                s.sent_at = tokio::time::Instant::now();
                                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s));
                            }
                            _ = s.shutdown.changed() => return None,
                        }
                    }
                }
            }
        })
    }
}

/// A page of stored events as a replay sends it.
struct StoredPage {
    /// The frames (a `gap` first when the store's first event does not follow `after`).
    out: String,
    /// The last event read; `None`: the store holds nothing after `after` up to the end.
    last: Option<u64>,
    /// The store holds `after` itself (so what follows it there follows it).
    anchored: bool,
}

/// Reads `node`'s (this node's: `None`) stored events after `after` up to `through`, a
/// page, with `after` itself when stored: where the store's next event does not follow
/// it, a `gap` event comes first.
async fn stored_page(
    store: Arc<Store>,
    node: Option<String>,
    filter: EventFilter,
    after: u64,
    through: u64,
) -> anyhow::Result<StoredPage> {
    let rows = tokio::task::spawn_blocking(move || {
        let from = after.saturating_sub(1);
        match &node {
            None => store.read_events(from, through, REPLAY_PAGE + 1),
            Some(node) => store.read_events_of(node, from, through, REPLAY_PAGE + 1),
        }
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("the store read stopped: {e}")))?;
    let anchored = after > 0 && rows.first().is_some_and(|e| e.id == after);
    let rows = &rows[usize::from(anchored)..];
    let mut out = String::new();
    if let Some(first) = rows.first() {
        if !event_follows(after, first.id, anchored) {
            push_gap(&mut out, after + 1, first.id);
        }
    }
    for e in rows {
        if filter.wants_raw(e.skill.as_deref(), &e.kind) {
            push_frame(&mut out, e.id, &e.kind, &e.record);
        }
    }
    Ok(StoredPage {
        out,
        last: rows.last().map(|e| e.id),
        anchored,
    })
}

impl EventStreams {
    /// The stored events of `node`, a cluster node that is no longer live, after
    /// `after` (a cluster stream resuming where that node was: what it committed before
    /// it stopped, a `gap` first when the store no longer reaches back to `after`),
    /// then nothing more. A failed read ends it (and so the cluster stream: the client
    /// resumes). Nothing without a store.
    pub fn open_stored(
        self: &Arc<Self>,
        node: String,
        filter: EventFilter,
        after: u64,
    ) -> futures_util::stream::BoxStream<'static, Result<Bytes, String>> {
        use futures_util::StreamExt;
        let store = self.store.get().map(|(s, _)| Arc::clone(s));
        let pages = futures_util::stream::unfold(Some(after), move |after| {
            let (store, node, filter) = (store.clone(), node.clone(), filter.clone());
            async move {
                let (after, store) = (after?, store?);
                match stored_page(store, Some(node), filter, after, i64::MAX as u64).await {
                    Ok(StoredPage { last: None, .. }) => None,
                    Ok(page) => Some((Ok(Bytes::from(page.out)), page.last)),
                    Err(e) => Some((Err(format!("reading a node's events from the store: {e:#}")), None)),
                }
            }
        });
        // Then quiet: the cluster stream ends when a node's stream ends.
        pages.chain(futures_util::stream::pending()).boxed()
    }
}

/// Where a platform stream is.
#[derive(Clone, Copy, Debug)]
enum PlatformStep {
    /// The opening comment, then a replay from `after`.
    Hello {
        after: u64,
    },
    /// Replayed up to `after`.
    Replay {
        after: u64,
    },
    Live,
}

struct Platform {
    streams: Arc<EventStreams>,
    live: broadcast::Receiver<Arc<(u64, RouterEvent)>>,
    shutdown: watch::Receiver<bool>,
    _guard: StreamGuard,
    filter: EventFilter,
    /// The last id when the stream opened: replayed up to it, live after it.
    replayed_to: u64,
    step: PlatformStep,
    /// When the last frame went out (keep-alives count from it).
    sent_at: tokio::time::Instant,
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
