//! A cluster node: what `switchboard serve` runs with a `[cluster]` section. It ties
//! together the lease keeper (membership and shard leases in PostgreSQL), the store's
//! fenced writer, the transport (ractor_cluster between the nodes' gateways) and the
//! engine, and keeps the engine's content equal to the shards the node holds:
//!
//! - **Taking shards** (at start, after a node died, when a node leaves): the shards'
//!   records are read from the store and built into the running engine
//!   ([`Router::adopt`]: deadlines re-armed, passed ones fire once, queues told their
//!   entries, agents given what the conversations say they hold). Then every node is
//!   told ([`Note::Adopted`]): it routes the shards' messages here from now on, and its
//!   own conversations and agents re-tell what the new actors must know
//!   ([`Router::resync_for`]).
//! - **Losing shards** (handed over, or the leases ran out): their actors leave the
//!   engine at once, without a write ([`Router::drop_shards`]); the store refuses this
//!   node's writes for them anyway (fencing).
//!
//! Where a message or a request goes: the node holding the shard's lease, as the lease
//! table says (read by the keeper each round), or as the taker announced it, whichever
//! epoch is newer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use super::keeper::{Keeper, KeeperConfig, Ownership};
use super::transport::{members_of, send_frame, Body, Inbound, Linked, Note, Notes, Transport, TransportConfig};
use crate::actors::remote::{Crossing, Remote};
use crate::config::ClusterConfig;
use crate::events::RouterEvent;
use crate::store::{Fencing, Store, StoreConfig};
use crate::Router;

/// Where each shard is served, as this node knows it.
#[derive(Debug)]
pub struct Routes {
    node: String,
    ownership: watch::Receiver<Ownership>,
    /// Shards other nodes announced they took, with the lease epoch.
    announced: Mutex<HashMap<u16, (String, i64)>>,
    /// The shards whose records this engine holds (taken and read).
    adopted: RwLock<BTreeSet<u16>>,
}

/// Who serves a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This node, with the shard's records in its engine.
    Here,
    /// This node holds the lease but is still reading the records (or the other way
    /// round: it is letting go): ask again in a moment.
    Moving,
    Node(String),
    /// Nobody holds the lease (its node died and the lease has not expired yet).
    Nobody,
}

impl Routes {
    fn new(node: &str, ownership: watch::Receiver<Ownership>) -> Routes {
        Routes {
            node: node.to_string(),
            ownership,
            announced: Mutex::default(),
            adopted: RwLock::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node holds `shard`'s lease now.
    fn holds(&self, shard: u16) -> bool {
        self.ownership.borrow().serves(shard, Instant::now()).is_some()
    }

    /// Whether the engine still runs shards this node no longer holds (the adopter has
    /// not dropped them yet).
    fn is_stale(&self) -> bool {
        let o = self.ownership.borrow();
        let now = Instant::now();
        self.adopted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| o.serves(*s, now).is_none())
    }

    fn is_adopted(&self, shard: u16) -> bool {
        self.adopted.read().unwrap_or_else(|p| p.into_inner()).contains(&shard)
    }

    /// The other node serving `shard`: the newer of the lease table's owner and the
    /// last announcement.
    fn other(&self, shard: u16) -> Option<String> {
        let table = self.ownership.borrow().owners.get(&shard).cloned();
        let announced = self
            .announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shard)
            .cloned();
        let newest = match (table, announced) {
            (Some(t), Some(a)) => Some(if a.1 > t.1 { a } else { t }),
            (t, a) => t.or(a),
        };
        newest.map(|(n, _)| n).filter(|n| *n != self.node)
    }

    /// The shards `peer` serves, as this node sees them.
    fn served_by(&self, peer: &str) -> BTreeSet<u16> {
        (0..super::placement::SHARDS)
            .filter(|s| self.other(*s).as_deref() == Some(peer))
            .collect()
    }

    /// Who serves `shard`, for a request.
    pub fn owner(&self, shard: u16) -> Owner {
        match (self.holds(shard), self.is_adopted(shard)) {
            (true, true) => Owner::Here,
            (true, false) | (false, true) => Owner::Moving,
            (false, false) => self.other(shard).map_or(Owner::Nobody, Owner::Node),
        }
    }

    /// The HTTP address of a live member.
    pub fn http_addr(&self, node: &str) -> Option<String> {
        self.ownership
            .borrow()
            .members
            .iter()
            .find(|m| m.name == node)
            .map(|m| m.http_addr.clone())
    }

    /// Resolves when the set of live members is no longer what it is now (a node
    /// joined or left), or the node stops.
    pub fn members_changed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ownership = self.ownership.clone();
        let names = |o: &Ownership| -> BTreeSet<String> { o.members.iter().map(|m| m.name.clone()).collect() };
        let now = names(&ownership.borrow_and_update());
        async move {
            while ownership.changed().await.is_ok() {
                if names(&ownership.borrow_and_update()) != now {
                    return;
                }
            }
        }
    }

    /// The other live members' names and HTTP addresses.
    pub fn peers(&self) -> Vec<(String, String)> {
        self.ownership
            .borrow()
            .members
            .iter()
            .filter(|m| m.name != self.node)
            .map(|m| (m.name.clone(), m.http_addr.clone()))
            .collect()
    }

    fn learn(&self, from: &str, shards: &[(u16, i64)]) {
        let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        for (shard, epoch) in shards {
            let newer = announced.get(shard).is_none_or(|(_, e)| epoch > e);
            if newer {
                announced.insert(*shard, (from.to_string(), *epoch));
            }
        }
    }

    /// The shards held and adopted, for `/v1/cluster`.
    pub fn adopted(&self) -> BTreeSet<u16> {
        self.adopted.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The engine's way out: messages for actors of other nodes' shards.
#[derive(Debug)]
struct Outbound(Arc<Routes>);

impl Remote for Outbound {
    fn elsewhere(&self, shard: u16) -> Option<String> {
        if self.0.holds(shard) {
            return None;
        }
        self.0.other(shard)
    }

    fn serves(&self, shard: u16) -> bool {
        self.0.holds(shard)
    }

    fn moving(&self, shard: u16) -> bool {
        matches!(self.0.owner(shard), Owner::Moving | Owner::Nobody)
    }

    fn send(&self, node: &str, msg: Crossing) {
        // A node that lost shards it still runs actors of (paused past its lease, cut
        // off) says nothing until those actors are dropped: what they would say is
        // stale, and other nodes serve their shards now.
        if self.0.is_stale() {
            tracing::debug!(to = node, "message from a node with stale shards dropped");
            return;
        }
        send_frame(&self.0.node, node, Body::Engine(msg));
    }

    fn event(&self, node: &str, event: &RouterEvent) {
        match serde_json::to_string(event) {
            Ok(json) => {
                send_frame(&self.0.node, node, Body::Note(Note::Event(json)));
            }
            Err(e) => tracing::error!(error = %e, "an event could not be encoded for another node"),
        }
    }
}

/// A running cluster node (the engine, its HTTP server and metrics are the caller's).
pub struct ClusterNode {
    pub routes: Arc<Routes>,
    pub store: Arc<Store>,
    keeper: Mutex<Option<Keeper>>,
    transport: Mutex<Option<Transport>>,
    adopter: tokio::task::JoinHandle<()>,
    repair: tokio::task::JoinHandle<()>,
    /// Counts of what the node did, for `/v1/cluster` and the metrics.
    pub stats: Arc<NodeStats>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node", &self.routes.node)
            .finish_non_exhaustive()
    }
}

/// What a node did since it started.
#[derive(Debug, Default)]
pub struct NodeStats {
    pub shards_adopted: std::sync::atomic::AtomicU64,
    pub shards_dropped: std::sync::atomic::AtomicU64,
    pub conversations_adopted: std::sync::atomic::AtomicU64,
    /// The last adoption's duration, from the lease to the records in the engine.
    pub last_adoption_ms: std::sync::atomic::AtomicU64,
}

/// What the node hands its events from other nodes to (the agents' event streams).
pub type EventSink = Arc<dyn Fn(RouterEvent) + Send + Sync>;

/// What runs on the node's store as soon as it is open, before the node takes any shard
/// (blocking: it may read the store). The API layer starts its event log's era there.
pub type OnStore = Box<dyn FnOnce(&Arc<Store>) -> anyhow::Result<()> + Send>;

/// What a node needs beyond its `[cluster]` section.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    pub cluster: ClusterConfig,
    pub store: StoreConfig,
    /// The HTTP address other nodes forward requests to.
    pub http_addr: String,
    /// Agents of the config: each is created by the node that takes its shard, if the
    /// store does not know it yet.
    pub agents: Vec<(
        crate::ids::AgentId,
        crate::domain::agent::AgentSpec,
        crate::domain::agent::AgentStatus,
    )>,
}

impl ClusterNode {
    /// Registers the node, opens the fenced store, joins the engine to the transport,
    /// and starts taking shards. Returns once the keeper's first round is adopted (or
    /// after two lease times, if it never comes).
    pub async fn start(
        setup: NodeSetup,
        router: Router,
        events: EventSink,
        on_store: OnStore,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        let c = &setup.cluster;
        let url = setup
            .store
            .url
            .clone()
            .context("a cluster node needs [store] url = \"postgres://...\"")?;
        let keeper_config = KeeperConfig::new(&url, &c.node, &c.listen.to_string(), &setup.http_addr, c.lease);
        let keeper = tokio::task::spawn_blocking(move || Keeper::start(keeper_config))
            .await
            .context("the lease keeper's start")?
            .context("starting the lease keeper")?;
        let ownership = keeper.ownership();
        let fencing = Fencing {
            node: c.node.clone(),
            ownership: ownership.clone(),
        };
        let store_config = setup.store.clone();
        let store = tokio::task::spawn_blocking(move || {
            let store = Store::open_fenced(&store_config, fencing)?;
            on_store(&store)?;
            anyhow::Ok(store)
        })
        .await
        .context("opening the store")??;
        router.attach_store(Arc::clone(&store));
        let routes = Arc::new(Routes::new(&c.node, ownership.clone()));
        router
            .join_cluster(Arc::new(Outbound(Arc::clone(&routes))))
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let mut tc = TransportConfig::new(&c.node, c.listen, &c.cookie);
        tc.tls = c.tls.clone();
        let r = router.clone();
        tc.inbound = Some(Inbound(Arc::new(move |msg: Crossing| r.deliver_crossing(msg))));
        let (r, rt) = (router.clone(), Arc::clone(&routes));
        let handle = tokio::runtime::Handle::current();
        tc.notes = Some(Notes(Arc::new(move |from: &str, note: Note| match note {
            Note::Adopted(shards) => {
                rt.learn(from, &shards);
                let r = r.clone();
                let set: BTreeSet<u16> = shards.iter().map(|(s, _)| *s).collect();
                handle.spawn(async move {
                    if let Err(e) = r.resync_for(&set).await {
                        tracing::warn!(error = %e, "re-telling a node's new shards failed");
                    }
                });
            }
            Note::Event(json) => match serde_json::from_str::<RouterEvent>(&json) {
                Ok(event) => events(event),
                Err(e) => tracing::warn!(error = %e, "an event from another node does not decode"),
            },
        })));
        // A link that comes up (a peer started, or is back from a partition or a
        // pause): what was told to its shards while the link was down was dropped, and
        // a queue entry or an agent's hold lost that way is not told again by itself
        // (seen: conversations queued in their record and absent from their queue
        // after a partition healed, when node-c took its shards back before its links
        // were up). Re-told as for a shard move, a moment after the link is up both ways.
        let (r, rt) = (router.clone(), Arc::clone(&routes));
        let handle = tokio::runtime::Handle::current();
        tc.linked = Some(Linked(Arc::new(move |peer: &str| {
            let (r, rt, peer) = (r.clone(), Arc::clone(&rt), peer.to_string());
            handle.spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let shards = rt.served_by(&peer);
                if shards.is_empty() {
                    return;
                }
                tracing::info!(%peer, shards = shards.len(), "link up: re-telling the peer's shards");
                if let Err(e) = r.resync_for(&shards).await {
                    tracing::warn!(error = %e, "re-telling a linked node's shards failed");
                }
            });
        })));
        let transport = Transport::start(tc, members_of(ownership.clone())).await?;

        let stats = Arc::new(NodeStats::default());
        // The repair of what a message lost between nodes leaves behind, every 5 s:
        // offers still in flight in a queue that their agent does not hold, and
        // conversations an agent holds that the store says it does not.
        let repair = {
            let (router, routes, store) = (router.clone(), Arc::clone(&routes), Arc::clone(&store));
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    router.reassert_agents();
                    check_held(router.clone(), Arc::clone(&store), routes.adopted(), Duration::ZERO).await;
                }
            })
        };
        let (first_tx, mut first_rx) = watch::channel(false);
        let adopter = tokio::spawn(adopt_loop(
            router.clone(),
            Arc::clone(&routes),
            Arc::clone(&store),
            ownership,
            setup.agents.clone(),
            Arc::clone(&stats),
            first_tx,
        ));
        let _ = tokio::time::timeout(c.lease * 2, first_rx.wait_for(|d| *d)).await;
        Ok(Arc::new(ClusterNode {
            routes,
            store,
            keeper: Mutex::new(Some(keeper)),
            transport: Mutex::new(Some(transport)),
            adopter,
            repair,
            stats,
        }))
    }

    /// Hands the shards over (a clean shutdown): what is queued for the store is
    /// committed first, then the leases are released and the node leaves the
    /// membership, so the others take the shards at their next round.
    pub async fn leave(&self) {
        self.store.flush().await;
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(k) = keeper {
            match tokio::task::spawn_blocking(move || k.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "leaving the cluster"),
                Err(e) => tracing::warn!(error = %e, "leaving the cluster"),
            }
        }
        self.adopter.abort();
        self.repair.abort();
        let transport = self.transport.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = transport {
            t.stop();
        }
    }

    /// The transport's view of the peers.
    pub async fn transport_status(&self) -> Option<super::transport::TransportStatus> {
        let t = {
            let guard = self.transport.lock().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().map(|t| t.status_handle())
        };
        match t {
            Some(h) => h.status().await.ok(),
            None => None,
        }
    }
}

/// Keeps the engine's content equal to the shards held: reads and builds the taken
/// ones, drops the lost ones, announces what it took.
async fn adopt_loop(
    router: Router,
    routes: Arc<Routes>,
    store: Arc<Store>,
    mut ownership: watch::Receiver<Ownership>,
    agents: Vec<(
        crate::ids::AgentId,
        crate::domain::agent::AgentSpec,
        crate::domain::agent::AgentStatus,
    )>,
    stats: Arc<NodeStats>,
    first: watch::Sender<bool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let node = routes.node.clone();
    // The other nodes' leases as last seen in the lease table.
    let mut others: BTreeMap<u16, (String, i64)> = BTreeMap::new();
    loop {
        // Shards another node took since the last look: re-told as on its note, a
        // moment later (it reads the records first). The note may never come: it is
        // sent once, and a node that just started has no link to this one yet.
        let moved: BTreeSet<u16> = {
            let o = ownership.borrow();
            let now: BTreeMap<u16, (String, i64)> = o
                .owners
                .iter()
                .filter(|(_, (n, _))| *n != node)
                .map(|(s, v)| (*s, v.clone()))
                .collect();
            let moved = now
                .iter()
                .filter(|(s, v)| others.get(s) != Some(v))
                .map(|(s, _)| *s)
                .collect();
            others = now;
            moved
        };
        if !moved.is_empty() {
            let r = router.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = r.resync_for(&moved).await {
                    tracing::warn!(error = %e, "re-telling shards another node took failed");
                }
            });
        }
        let (held, until, seen): (BTreeMap<u16, i64>, Option<Instant>, bool) = {
            let o = ownership.borrow_and_update();
            let now = Instant::now();
            let held = o
                .leases
                .iter()
                .filter(|(s, _)| o.serves(**s, now).is_some())
                .map(|(s, l)| (*s, l.epoch))
                .collect();
            (held, o.valid_until, o.valid_until.is_some() || !o.members.is_empty())
        };
        let adopted = routes.adopted();
        let lost: BTreeSet<u16> = adopted.iter().filter(|s| !held.contains_key(s)).copied().collect();
        if !lost.is_empty() {
            routes
                .adopted
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|s| !lost.contains(s));
            let (c, a) = router.drop_shards(&lost);
            stats.shards_dropped.fetch_add(lost.len() as u64, Relaxed);
            tracing::info!(node = %node, shards = lost.len(), conversations = c, agents = a, "shards lost: dropped from the engine");
        }
        let gained: Vec<u16> = held.keys().filter(|s| !adopted.contains(s)).copied().collect();
        if !gained.is_empty() {
            let started = Instant::now();
            // Every change queued so far is committed or refused before the records
            // are read: a change of an actor dropped with these shards (they were
            // lost, and are taken again under the same lease) must not land after the
            // read, where the engine would never see it.
            store.flush().await;
            let s = Arc::clone(&store);
            let wanted = gained.clone();
            let read = tokio::task::spawn_blocking(move || s.read_shards(&wanted)).await;
            match read {
                Ok(Ok(snapshot)) => match router.adopt(snapshot).await {
                    Ok(recovered) => {
                        routes
                            .adopted
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(gained.iter().copied());
                        let set: BTreeSet<u16> = gained.iter().copied().collect();
                        install_config_agents(&router, &agents, &set).await;
                        if let Err(e) = router.resync_for(&set).await {
                            tracing::warn!(error = %e, "re-telling the new shards failed");
                        }
                        let note: Vec<(u16, i64)> = gained.iter().map(|s| (*s, held[s])).collect();
                        for (peer, _) in routes.peers() {
                            send_frame(&node, &peer, Body::Note(Note::Adopted(note.clone())));
                        }
                        // After the note on the same links: a queue that frees its offers
                        // to these agents offers them again here, not to the old node.
                        router.agents_taken(&set);
                        tokio::spawn(check_held(
                            router.clone(),
                            Arc::clone(&store),
                            set.clone(),
                            Duration::from_secs(2),
                        ));
                        let took = started.elapsed();
                        stats.shards_adopted.fetch_add(gained.len() as u64, Relaxed);
                        stats.conversations_adopted.fetch_add(recovered.open as u64, Relaxed);
                        stats.last_adoption_ms.store(took.as_millis() as u64, Relaxed);
                        tracing::info!(
                            node = %node,
                            shards = gained.len(),
                            open = recovered.open,
                            closed = recovered.closed,
                            agents = recovered.agents,
                            took_ms = took.as_millis() as u64,
                            "shards taken: their records are served here"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "building taken shards into the engine failed"),
                },
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "reading taken shards failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => tracing::error!(error = %e, "reading taken shards panicked"),
            }
        }
        if seen {
            first.send_replace(true);
        }
        // Wake at the next publication, or when the belief runs out without one (the
        // keeper cannot reach the database).
        let wait_until = until.filter(|u| *u > Instant::now());
        tokio::select! {
            changed = ownership.changed() => if changed.is_err() { return },
            _ = async {
                match wait_until {
                    Some(u) => tokio::time::sleep_until(tokio::time::Instant::from_std(u)).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// A while after taking agents (the other nodes have re-told them what they hold),
/// checks what they hold against the store: a conversation closed, queued again or
/// assigned to another agent while the agent moved (its release was lost with the old
/// node) is let go. A hold newer than the read is left alone.
async fn check_held(router: Router, store: Arc<Store>, shards: BTreeSet<u16>, after: Duration) {
    tokio::time::sleep(after).await;
    let held = router.held_in(&shards);
    if held.is_empty() {
        return;
    }
    let read_at = router.clock().now();
    let ids: Vec<String> = held.iter().map(|(_, c, _)| c.to_string()).collect();
    let states = match tokio::task::spawn_blocking(move || store.read_states(&ids)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::warn!(error = %format!("{e:#}"), "checking the taken agents' conversations"),
        Err(e) => return tracing::warn!(error = %e, "checking the taken agents' conversations"),
    };
    let states: HashMap<String, (String, Option<String>)> = states
        .into_iter()
        .map(|(id, state, agent)| (id, (state, agent)))
        .collect();
    let mut released = 0;
    for (agent, conversation, assigned_at) in held {
        let holds = states
            .get(conversation.as_str())
            .is_some_and(|(state, a)| state == "assigned" && a.as_deref() == Some(agent.as_str()));
        if !holds && assigned_at.plus(Duration::from_secs(1)) < read_at {
            tracing::info!(agent = %agent, conversation = %conversation, stored = ?states.get(conversation.as_str()), "a taken agent lets go of a conversation it no longer holds");
            router.release_held(&agent, conversation);
            released += 1;
        }
    }
    if released > 0 {
        tracing::info!(released, "taken agents let go of conversations they no longer hold");
    }
}

/// Creates the config's agents of `shards` that the engine does not know (their
/// records were never written: the cluster's first start).
async fn install_config_agents(
    router: &Router,
    agents: &[(
        crate::ids::AgentId,
        crate::domain::agent::AgentSpec,
        crate::domain::agent::AgentStatus,
    )],
    shards: &BTreeSet<u16>,
) {
    for (id, spec, status) in agents {
        if !shards.contains(&crate::actors::remote::shard_of_agent(id)) || router.agent(id).is_ok() {
            continue;
        }
        let created = async {
            router.put_agent(id.clone(), spec.clone()).await?;
            router.set_agent_status(id, *status).await
        };
        if let Err(e) = created.await {
            tracing::warn!(agent = %id, error = %e, "creating a configured agent failed");
        }
    }
}
