//! Membership and shard leases in PostgreSQL: the cluster's record of who is alive and
//! who owns what, kept by the database rather than by a consensus of our own.
//!
//! - **Members** register (a new *incarnation* each start), heartbeat, and leave; the
//!   live members are those whose heartbeat is recent. A process that finds its
//!   incarnation superseded (its name registered again by a newer process) must stop.
//! - **Leases**: a shard is served only by the node holding its lease (owner, epoch,
//!   expiry). Taking a free or expired lease raises its epoch, so every epoch has at
//!   most one owner, ever. The holder renews well before expiry; a node that could not
//!   renew in time has lost the shard, whatever it believes.
//! - **Fencing**: a write for a shard checks, inside its own transaction, that the node
//!   still holds the shard under the epoch it was granted, and locks the lease row
//!   (`FOR SHARE`) until the transaction ends, so no takeover can commit in between. A
//!   node paused past its lease (`SIGSTOP`, a partition, a long GC-like stall) wakes to
//!   find its writes refused; since the engine tells nobody of a change before it is
//!   committed, the woken node cannot act on a shard another node has taken.
//!
//! Every time is the database's (`clock_timestamp()`), so the nodes' clocks never have
//! to agree.

use std::time::Duration;

use anyhow::Context;
use postgres::GenericClient;

/// The cluster's tables, beside the store's (same database).
pub const CLUSTER_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS cluster_nodes (name TEXT PRIMARY KEY, cluster_addr TEXT NOT NULL, \
     http_addr TEXT NOT NULL, incarnation BIGINT NOT NULL, started_at TIMESTAMPTZ NOT NULL, \
     heartbeat_at TIMESTAMPTZ NOT NULL, left_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS shard_leases (shard INTEGER PRIMARY KEY, owner TEXT, \
     epoch BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)",
];

/// A live member, as the table says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Where its cluster transport listens.
    pub cluster_addr: String,
    /// Where its HTTP API listens (requests are forwarded there).
    pub http_addr: String,
    pub incarnation: i64,
}

/// A member stands for its name where placement asks for node names.
impl AsRef<str> for Member {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// A lease granted or held: the shard, and the epoch every write for it must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lease {
    pub shard: u16,
    pub epoch: i64,
}

/// A lease row, for inspection and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: u16,
    pub owner: Option<String>,
    pub epoch: i64,
    pub live: bool,
}

/// A write refused: the node no longer holds these leases (taken over, expired or
/// released).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fenced: node {node} no longer holds shard(s) {shards:?} under the epochs it was granted")]
pub struct Fenced {
    pub node: String,
    pub shards: Vec<u16>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn columns(leases: &[Lease]) -> (Vec<i32>, Vec<i64>) {
    leases.iter().map(|l| (i32::from(l.shard), l.epoch)).unzip()
}

/// One node's view of membership and leases: a connection of its own (the store's
/// writer has another).
pub struct Coordinator {
    client: crate::store::postgres::PgClient,
    url: String,
    node: String,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Connects as `node`, creating the cluster's tables if they are missing.
    pub fn connect(url: &str, node: &str) -> anyhow::Result<Coordinator> {
        let shown = crate::store::redact_url(url);
        let mut client = crate::store::postgres::connect(url)
            .with_context(|| format!("connecting to the cluster's PostgreSQL {shown}"))?;
        let mut tx = client.transaction()?;
        // Nodes starting together must not create the tables twice.
        tx.execute("SELECT pg_advisory_xact_lock(7305516282)", &[])?;
        for statement in CLUSTER_SCHEMA {
            tx.execute(*statement, &[])?;
        }
        tx.commit()
            .with_context(|| format!("creating the cluster's tables in {shown}"))?;
        Ok(Coordinator {
            client,
            url: url.to_string(),
            node: node.to_string(),
        })
    }

    /// Connects again if the connection was lost (the database restarted).
    pub fn reconnect_if_lost(&mut self) -> anyhow::Result<()> {
        crate::store::postgres::reconnect_if_lost(&mut self.client, &self.url, "the cluster's PostgreSQL")?;
        Ok(())
    }

    /// Registers this node (again): returns its new incarnation.
    pub fn register(&mut self, cluster_addr: &str, http_addr: &str) -> anyhow::Result<i64> {
        let row = self.client.query_one(
            "INSERT INTO cluster_nodes (name, cluster_addr, http_addr, incarnation, started_at, heartbeat_at, left_at) \
             VALUES ($1, $2, $3, 1, clock_timestamp(), clock_timestamp(), NULL) \
             ON CONFLICT (name) DO UPDATE SET cluster_addr = excluded.cluster_addr, http_addr = excluded.http_addr, \
             incarnation = cluster_nodes.incarnation + 1, started_at = excluded.started_at, \
             heartbeat_at = excluded.heartbeat_at, left_at = NULL \
             RETURNING incarnation",
            &[&self.node, &cluster_addr, &http_addr],
        )?;
        Ok(row.get(0))
    }

    /// Records that this incarnation is alive; `false` if it was superseded (the name was
    /// registered again) or has left: the process must then stop serving.
    pub fn heartbeat(&mut self, incarnation: i64) -> anyhow::Result<bool> {
        let n = self.client.execute(
            "UPDATE cluster_nodes SET heartbeat_at = clock_timestamp() \
             WHERE name = $1 AND incarnation = $2 AND left_at IS NULL",
            &[&self.node, &incarnation],
        )?;
        Ok(n == 1)
    }

    /// Members that have not left and heartbeat within `within`, by name.
    pub fn members(&mut self, within: Duration) -> anyhow::Result<Vec<Member>> {
        let rows = self.client.query(
            "SELECT name, cluster_addr, http_addr, incarnation FROM cluster_nodes \
             WHERE left_at IS NULL AND heartbeat_at > clock_timestamp() - $1::bigint * interval '1 millisecond' \
             ORDER BY name",
            &[&millis(within)],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| Member {
                name: r.get(0),
                cluster_addr: r.get(1),
                http_addr: r.get(2),
                incarnation: r.get(3),
            })
            .collect())
    }

    /// Leaves the cluster (a graceful shutdown): the others stop counting this node at
    /// once instead of after its heartbeat ages.
    pub fn leave(&mut self, incarnation: i64) -> anyhow::Result<()> {
        self.client.execute(
            "UPDATE cluster_nodes SET left_at = clock_timestamp() WHERE name = $1 AND incarnation = $2",
            &[&self.node, &incarnation],
        )?;
        Ok(())
    }

    /// Takes the leases of those `shards` that are free (never taken, released or
    /// expired) for `ttl`; returns the ones granted, each under a new epoch. A shard
    /// this node already holds is not granted again: renew it.
    pub fn acquire(&mut self, shards: &[u16], ttl: Duration) -> anyhow::Result<Vec<Lease>> {
        let shards: Vec<i32> = shards.iter().map(|s| i32::from(*s)).collect();
        let rows = self.client.query(
            "INSERT INTO shard_leases (shard, owner, epoch, expires_at) \
             SELECT s, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond' FROM UNNEST($1::int[]) AS s \
             ON CONFLICT (shard) DO UPDATE SET owner = excluded.owner, epoch = shard_leases.epoch + 1, \
             expires_at = excluded.expires_at \
             WHERE shard_leases.owner IS NULL OR shard_leases.expires_at <= clock_timestamp() \
             RETURNING shard, epoch",
            &[&shards, &self.node, &millis(ttl)],
        )?;
        let mut granted: Vec<Lease> = rows
            .into_iter()
            .map(|r| Lease {
                shard: r.get::<_, i32>(0) as u16,
                epoch: r.get(1),
            })
            .collect();
        granted.sort();
        Ok(granted)
    }

    /// Extends the leases this node still holds, unexpired, under their epochs, by `ttl`
    /// from now; returns the shards renewed. Any other is lost.
    pub fn renew(&mut self, leases: &[Lease], ttl: Duration) -> anyhow::Result<Vec<u16>> {
        let (shards, epochs) = columns(leases);
        let rows = self.client.query(
            "UPDATE shard_leases AS l SET expires_at = clock_timestamp() + $3::bigint * interval '1 millisecond' \
             FROM UNNEST($1::int[], $2::bigint[]) AS h(shard, epoch) \
             WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $4 AND l.expires_at > clock_timestamp() \
             RETURNING l.shard",
            &[&shards, &epochs, &millis(ttl), &self.node],
        )?;
        let mut renewed: Vec<u16> = rows.into_iter().map(|r| r.get::<_, i32>(0) as u16).collect();
        renewed.sort_unstable();
        Ok(renewed)
    }

    /// Gives leases back (a graceful handover): another node may take them at once.
    pub fn release(&mut self, leases: &[Lease]) -> anyhow::Result<()> {
        let (shards, epochs) = columns(leases);
        self.client.execute(
            "UPDATE shard_leases AS l SET owner = NULL, expires_at = clock_timestamp() \
             FROM UNNEST($1::int[], $2::bigint[]) AS h(shard, epoch) \
             WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $3",
            &[&shards, &epochs, &self.node],
        )?;
        Ok(())
    }

    /// Every lease row, by shard.
    pub fn leases(&mut self) -> anyhow::Result<Vec<LeaseRow>> {
        let rows = self.client.query(
            "SELECT shard, owner, epoch, owner IS NOT NULL AND expires_at > clock_timestamp() \
             FROM shard_leases ORDER BY shard",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| LeaseRow {
                shard: r.get::<_, i32>(0) as u16,
                owner: r.get(1),
                epoch: r.get(2),
                live: r.get(3),
            })
            .collect())
    }
}

/// Inside a write transaction: checks that `node` holds every one of `leases`, unexpired,
/// under its epoch, and keeps their rows locked against takeover until the transaction
/// ends. On `Err` the caller rolls back.
pub fn fence(tx: &mut impl GenericClient, node: &str, leases: &[Lease]) -> anyhow::Result<Result<(), Fenced>> {
    let (shards, epochs) = columns(leases);
    let rows = tx.query(
        "SELECT l.shard FROM shard_leases AS l \
         JOIN UNNEST($1::int[], $2::bigint[]) AS h(shard, epoch) ON l.shard = h.shard AND l.epoch = h.epoch \
         WHERE l.owner = $3 AND l.expires_at > clock_timestamp() \
         FOR SHARE OF l",
        &[&shards, &epochs, &node],
    )?;
    let held: std::collections::BTreeSet<u16> = rows.into_iter().map(|r| r.get::<_, i32>(0) as u16).collect();
    let mut lost: Vec<u16> = leases.iter().map(|l| l.shard).filter(|s| !held.contains(s)).collect();
    lost.sort_unstable();
    lost.dedup();
    Ok(if lost.is_empty() {
        Ok(())
    } else {
        Err(Fenced {
            node: node.to_string(),
            shards: lost,
        })
    })
}
