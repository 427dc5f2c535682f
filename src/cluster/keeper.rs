//! A node's lease keeper: keeps the node registered and alive in the membership table,
//! takes the leases of the shards that rendezvous hashing gives it among the live
//! members, renews them, hands over those that now belong to another member, and
//! publishes what the node may serve ([`Ownership`]).
//!
//! What it publishes is conservative: a lease renewed by a request sent at `t` is
//! believed until `t + ttl - margin`, while the database keeps it until at least
//! `t + ttl`; another node can take it only after that. So, on one clock rate, two
//! nodes never both believe they hold a shard. A keeper that cannot reach the database
//! keeps serving what it holds until that belief runs out, then nothing.
//!
//! It runs on a thread of its own with its own connection (the `postgres` client is
//! synchronous, like the store's writer).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use super::lease::{Coordinator, Lease, Member};
use super::placement::owned_by;

/// How a keeper runs.
#[derive(Clone, Debug)]
pub struct KeeperConfig {
    pub url: String,
    pub node: String,
    pub cluster_addr: String,
    pub http_addr: String,
    /// How long a lease lasts without renewal; also how long a member stays live without
    /// a heartbeat.
    pub ttl: Duration,
    /// How often the keeper heartbeats, renews and rebalances (a third of `ttl` leaves
    /// two chances before a lease expires).
    pub tick: Duration,
}

impl KeeperConfig {
    pub fn new(url: &str, node: &str, cluster_addr: &str, http_addr: &str, ttl: Duration) -> KeeperConfig {
        KeeperConfig {
            url: url.to_string(),
            node: node.to_string(),
            cluster_addr: cluster_addr.to_string(),
            http_addr: http_addr.to_string(),
            ttl,
            tick: ttl / 3,
        }
    }

    /// What is taken off a lease's time in the node's belief: clock rates differ a
    /// little, and the check that uses the belief takes time too.
    fn margin(&self) -> Duration {
        self.ttl / 10
    }
}

/// What the node may serve: these leases, until `valid_until` (unless renewed by then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    pub leases: BTreeMap<u16, Lease>,
    pub valid_until: Option<Instant>,
    /// The live members, as last read (the transport dials them).
    pub members: Vec<Member>,
    /// Every live lease, as last read: shard to (owner, epoch). Where the node sends
    /// what belongs to another node's shard.
    pub owners: BTreeMap<u16, (String, i64)>,
}

impl Ownership {
    /// The lease of `shard` if the node may serve it at `now`.
    pub fn serves(&self, shard: u16, now: Instant) -> Option<Lease> {
        match self.valid_until {
            Some(until) if now < until => self.leases.get(&shard).copied(),
            _ => None,
        }
    }
}

/// A running keeper.
pub struct Keeper {
    ownership: watch::Receiver<Ownership>,
    stop: Arc<AtomicBool>,
    graceful: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("ownership", &*self.ownership.borrow())
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// Connects, registers, and starts keeping. The first ownership is published after
    /// the first round.
    pub fn start(config: KeeperConfig) -> anyhow::Result<Keeper> {
        let mut coordinator = Coordinator::connect(&config.url, &config.node)?;
        let incarnation = coordinator
            .register(&config.cluster_addr, &config.http_addr)
            .with_context(|| format!("registering node {}", config.node))?;
        let (tx, ownership) = watch::channel(Ownership::default());
        let stop = Arc::new(AtomicBool::new(false));
        let graceful = Arc::new(AtomicBool::new(false));
        let round = Round {
            config,
            coordinator,
            incarnation,
            now: Ownership::default(),
            tx,
        };
        let (s, g) = (Arc::clone(&stop), Arc::clone(&graceful));
        let thread = std::thread::Builder::new()
            .name("switchboard-leases".into())
            .spawn(move || round.run(&s, &g))
            .context("starting the lease keeper's thread")?;
        Ok(Keeper {
            ownership,
            stop,
            graceful,
            thread: Some(thread),
        })
    }

    /// What the node may serve, as it changes.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.ownership.clone()
    }

    /// Hands every lease over and leaves the membership (a clean shutdown): the other
    /// members take the shards at their next round instead of after expiry.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.graceful.store(true, Ordering::Release);
        self.join()
    }

    /// Stops keeping without handing anything over, as a crash would: the leases run
    /// out on their own. (For tests of failover.)
    pub fn abandon(mut self) -> anyhow::Result<()> {
        self.join()
    }

    fn join(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("the lease keeper panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

struct Round {
    config: KeeperConfig,
    coordinator: Coordinator,
    incarnation: i64,
    /// What the node holds now, published after each change.
    now: Ownership,
    tx: watch::Sender<Ownership>,
}

impl Round {
    fn run(mut self, stop: &AtomicBool, graceful: &AtomicBool) -> anyhow::Result<()> {
        loop {
            let started = Instant::now();
            if let Err(e) = self.once() {
                if e.downcast_ref::<Superseded>().is_some() {
                    self.publish_nothing();
                    return Err(e);
                }
                // The database is unreachable or failing (or a lease row is locked by
                // a paused node's write): keep what is held until its belief runs out
                // (with what this round renewed), and try again next round.
                self.publish();
                tracing::warn!(node = %self.config.node, error = %format!("{e:#}"), "lease round failed");
            }
            while started.elapsed() < self.config.tick {
                if stop.load(Ordering::Acquire) {
                    if graceful.load(Ordering::Acquire) {
                        self.hand_over();
                    }
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10).min(self.config.tick));
            }
        }
    }

    /// One round: heartbeat, read the members, renew, hand over, acquire, publish.
    fn once(&mut self) -> anyhow::Result<()> {
        self.coordinator.reconnect_if_lost()?;
        if !self.coordinator.heartbeat(self.incarnation)? {
            return Err(Superseded(self.config.node.clone()).into());
        }
        self.now.members = self.coordinator.members(self.config.ttl)?;
        let desired = owned_by(&self.config.node, &self.now.members);

        let sent = Instant::now();
        let leases: Vec<Lease> = self.now.leases.values().copied().collect();
        let renewed = self.coordinator.renew(&leases, self.config.ttl)?;
        self.now.leases.retain(|shard, _| renewed.contains(shard));
        self.now.valid_until = Some(sent + self.config.ttl - self.config.margin());

        // Shards that now belong to another member: handed over at once.
        let leaving: Vec<Lease> = self
            .now
            .leases
            .values()
            .filter(|l| !desired.contains(&l.shard))
            .copied()
            .collect();
        if !leaving.is_empty() {
            for l in &leaving {
                self.now.leases.remove(&l.shard);
            }
            // Unpublished first: the node stops serving them before anyone can take them.
            self.publish();
            self.coordinator.release(&leaving)?;
        }

        let wanted: Vec<u16> = desired
            .into_iter()
            .filter(|s| !self.now.leases.contains_key(s))
            .collect();
        if !wanted.is_empty() {
            // Granted leases expire `ttl` after the request at the earliest: believed
            // from the same point as the renewed ones, which were sent earlier.
            for lease in self.coordinator.acquire(&wanted, self.config.ttl)? {
                self.now.leases.insert(lease.shard, lease);
            }
        }
        self.now.owners = self
            .coordinator
            .leases()?
            .into_iter()
            .filter(|l| l.live)
            .filter_map(|l| Some((l.shard, (l.owner?, l.epoch))))
            .collect();
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.tx.send_if_modified(|o| {
            let changed = *o != self.now;
            if changed {
                o.clone_from(&self.now);
            }
            changed
        });
    }

    fn publish_nothing(&mut self) {
        self.now.leases.clear();
        self.now.valid_until = None;
        self.publish();
    }

    fn hand_over(&mut self) {
        let leases: Vec<Lease> = self.now.leases.values().copied().collect();
        self.publish_nothing();
        if let Err(e) = self
            .coordinator
            .release(&leases)
            .and_then(|()| self.coordinator.leave(self.incarnation))
        {
            tracing::warn!(node = %self.config.node, error = %format!("{e:#}"), "handing the leases over failed: they will expire");
        }
    }
}

/// Another process registered under this node's name.
#[derive(Debug, thiserror::Error)]
#[error("node {0} was registered again by another process: this one stops serving")]
struct Superseded(String);
