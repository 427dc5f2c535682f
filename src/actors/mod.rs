//! The actor shell around the domain core. One file per actor:
//!
//! - [`conversation`]: the conversations, virtual actors served in turns while they have work.
//! - [`turns`]: a conversation's or agent's mailbox, and who serves it.
//! - [`agent`]: the agents, served in turns like conversations (never passivated), each
//!   the authority on its room.
//! - [`skill_queue`]: `SkillQueueActor`, a ractor actor per skill: ranking and matching.
//! - [`supervisor`]: spawns the skill queues, and restarts a crashed queue,
//!   conversation or agent from its last state.
//! - [`shared`]: the handles (virtual actors) and directories, clock, policy, event bus.
//! - [`consumers`]: the consumer directory, bounded in count.
//! - [`timer`]: the node's one timer service, which holds every deadline.
//! - [`envelope`]: messages with their in-flight token.
//! - [`remote`]: messages for actors of other nodes (a cluster), and their wire form.
//!
//! No handler awaits another actor's reply: requests that need an answer carry a reply
//! port that the last actor in the chain answers (e.g. `accept` goes to the agent, whose
//! `Assign` carries the caller's port to the conversation).

pub mod agent;
pub mod consumers;
pub mod conversation;
pub mod envelope;
pub mod remote;
pub mod shared;
pub mod skill_queue;
pub mod supervisor;
pub mod timer;
pub mod turns;
