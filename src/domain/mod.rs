//! The pure domain core: no actors, no clocks, no I/O. Time comes in as `now`.
//!
//! - [`conversation`]: the conversation state machine, its SLA and timers-to-be.
//! - [`consumer`]: what is remembered of a consumer (first time, last agent).
//! - [`agent`]: an agent's status, held conversations, offers and warm-up.
//! - [`capacity`]: Smart Capacity arithmetic in exact thousandths of a slot.
//! - [`queue`]: a skill queue's ranking and the rule that pairs conversations with agents.
//! - [`rank`]: the time-invariant rank key and business-priority rules.
//! - [`sla`]: SLA kinds and deadlines, working hours.
//! - [`skill`]: per-skill and engine-wide routing settings.

pub mod agent;
pub mod capacity;
pub mod consumer;
pub mod conversation;
pub mod queue;
pub mod rank;
pub mod skill;
pub mod sla;
