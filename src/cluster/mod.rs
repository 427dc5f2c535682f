//! The cluster, in the making: several `switchboard serve` processes acting as one
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
//! Not built yet (`cluster/README.md` keeps the list): the engine's messages over the
//! transport, failover of the engine's state (loading a taken shard's records),
//! forwarding of API requests to the owner, and fencing in the store's writer. Until
//! then `serve` is a single node.

pub mod keeper;
pub mod lease;
pub mod node;
pub mod placement;
pub mod transport;
