//! Agent event streams: `GET /v1/agents/{id}/events` as Server-Sent Events.
//!
//! One task follows the router's event bus and hands each event that names an agent to
//! that agent's streams through bounded channels. A stream whose client does not keep
//! up fills its channel and is cut off: memory stays bounded whatever the client does.
//! Every stream ends when the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use dashmap::DashMap;
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc, watch};

use crate::events::RouterEvent;
use crate::ids::AgentId;
use crate::metrics::Metrics;
use crate::Router;

/// Comment lines that keep idle connections (and proxies) alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct EventStreams {
    streams: DashMap<AgentId, Vec<mpsc::Sender<RouterEvent>>>,
    buffer: usize,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl EventStreams {
    pub fn new(buffer: usize, shutdown: watch::Receiver<bool>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(EventStreams {
            streams: DashMap::new(),
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
                        Ok(e) => this.dispatch(e),
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

/// Keeps the open-streams gauge true however a stream ends.
struct StreamGuard {
    metrics: Arc<Metrics>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.sse_streams.dec();
    }
}
