//! The cluster: several `switchboard serve` processes acting as one
//! router, with PostgreSQL as the record of state, membership and ownership.
//!
//! Built so far, and tested against a real PostgreSQL (`tests/cluster.rs`):
//! - [`placement`]: keys to shards, shards to live nodes (rendezvous hashing);
//! - [`lease`]: membership (register, heartbeat, leave) and shard leases (acquire,
//!   renew, release) with epoch fencing of writes;
//! - [`keeper`]: a node's lease keeper, which takes its rendezvous share of the shards
//!   among the live members, renews, hands over, rides out a restart of the database,
//!   and publishes what the node may serve;
//! - [`transport`]: ractor_cluster between nodes, one gateway actor per node carrying
//!   versioned bincode frames, with the failure detection and redialing that
//!   ractor_cluster lacks (tested between processes, `tests/transport.rs`).
//!
//! - [`node`]: a cluster node as `serve` runs it: the keeper, the fenced store and the
//!   transport joined to the engine; shards taken (records read into the engine) and
//!   lost (dropped), the repair of messages lost while shards move.
//!
//! The HTTP side (forwarding to the shard's node) is [`crate::api::forward`].
//! `cluster/README.md` shows a three-node cluster and lists what is not built yet.

pub mod keeper;
pub mod lease;
pub mod node;
pub mod placement;
pub mod transport;
