//! # switchboard
//!
//! An actor-based router for asynchronous messaging conversations (memory is the working
//! copy, a store on disk the record): which
//! waiting conversations should reach an agent now, and which agents really have room.
//!
//! Map of the crate:
//! - [`domain`]: the pure core — conversation state machine, Smart Capacity, rank key,
//!   SLAs and working hours, skill-queue matching. No actors, no clock: `now` is passed in.
//! - [`actors`]: the actor shell — conversations (virtual actors) and agents served in
//!   turns on tokio tasks, one ractor actor per skill queue, supervisors that restart
//!   them from their last state.
//! - [`router`]: the [`Router`] facade used by the API, the simulator and the load tool.
//! - [`api`]: the HTTP/JSON API (actix-web), agent event streams (SSE).
//! - [`metrics`]: Prometheus series.
//! - [`store`]: the durable record (SQLite or PostgreSQL), its writer and recovery.
//! - [`cluster`]: placement, membership and shard leases for running several nodes
//!   as one (in the making).
//! - [`loadtest`]: `switchboard loadtest`, an open-loop HTTP load generator.
//! - [`sim`]: `switchboard simulate`, the engine on virtual time against a scenario.
//! - [`events`]: domain events published on a broadcast channel.
//! - [`config`]: TOML configuration, validated into typed settings.
//! - [`ids`], [`time`], [`error`]: identifiers, timestamps and the clock, errors.

pub mod actors;
pub mod api;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod ids;
pub mod loadtest;
pub mod metrics;
pub mod progress;
pub mod router;
pub mod sim;
pub mod store;
pub mod strict;
pub mod time;

pub use error::RouterError;
pub use router::Router;
