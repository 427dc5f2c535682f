//! Messages between actors on different nodes: what crosses, and the seam where it
//! leaves and enters a node.
//!
//! Actors never hold each other's references: they tell each other by id through
//! [`Shared`](super::shared::Shared) (`tell_agent`, `tell_conversation`, `tell_queue`).
//! With a [`Remote`] installed (a cluster node), each of those first asks whose shard
//! the target is in: an agent by its id, a conversation by its id, a skill queue by
//! its skill's id ([`shard_of`]). A target of another node's shard goes out as a
//! [`Crossing`] (the wire form of the message, `serde` for bincode: no flattened or
//! skipped fields), and the receiving node delivers it to its own actor as if it had
//! been told locally ([`Shared::deliver_crossing`](super::shared::Shared::deliver_crossing)).
//!
//! What crosses: every message one actor tells another. What does not: messages that
//! carry a reply port (an API call is answered on the node that took it, so an API
//! request is forwarded to the owner first) and the timers' ticks (each node's timers
//! hold the deadlines of what it owns). The one actor-to-actor message with a reply
//! port, an offer-mode `accept`'s `Assign`, never needs to cross: an accept by an agent
//! of another node is taken by the conversation itself (`ConversationCommand::AnswerOffer`).
//! Should one try, it is refused with 503.

use serde::{Deserialize, Serialize};

use crate::cluster::placement::shard_of;
use crate::domain::agent::Holding;
use crate::domain::capacity::Weight;
use crate::domain::conversation::UnassignReason;
use crate::domain::queue::{AgentRoom, Declined, QueueEntry};
use crate::ids::{AgentId, ConversationId, GroupId, SkillId};
use crate::time::Timestamp;

use super::agent::AgentMsg;
use super::conversation::ConversationMsg;
use super::skill_queue::QueueMsg;

/// Where a node's actors' messages go when their target is another node's.
pub trait Remote: Send + Sync + std::fmt::Debug {
    /// The node that serves `shard`, when it is not this one.
    fn elsewhere(&self, shard: u16) -> Option<String>;
    /// Sends `msg` to `node` (best effort, as a local tell: a message to a node that is
    /// down is lost, and the protocol's resyncs and timeouts cover it).
    fn send(&self, node: &str, msg: Crossing);
    /// Whether this node serves `shard` itself. By default, when no other node does; a
    /// cluster node says so only under a lease (a shard between owners is served by
    /// nobody).
    fn serves(&self, shard: u16) -> bool {
        self.elsewhere(shard).is_none()
    }
    /// Whether `shard` is between owners as this node sees it (taken here and not yet
    /// built into the engine, or served by nobody): a request for one of its actors is
    /// answered "retry", not "not found".
    fn moving(&self, shard: u16) -> bool {
        let _ = shard;
        false
    }
    /// An event about an agent that `node` serves, for that node's event streams.
    fn event(&self, node: &str, event: &crate::events::RouterEvent) {
        let _ = (node, event);
    }
}

/// The shard of an actor, as placement sees it.
pub fn shard_of_agent(id: &AgentId) -> u16 {
    shard_of(id.as_str())
}

pub fn shard_of_conversation(id: &ConversationId) -> u16 {
    shard_of(id.as_str())
}

pub fn shard_of_queue(skill: &SkillId) -> u16 {
    shard_of(skill.as_str())
}

/// A message for an actor of another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Crossing {
    Agent { agent: AgentId, msg: ToAgent },
    Conversation { id: ConversationId, msg: ToConversation },
    Queue { skill: SkillId, msg: ToQueue },
}

/// [`AgentMsg`]'s variants that cross nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToAgent {
    Offer {
        conversation: ConversationId,
        skill: SkillId,
        queue: SkillId,
        epoch: u64,
        weight: Weight,
    },
    Confirmed {
        conversation: ConversationId,
        skill: SkillId,
        holding: Holding,
        assigned_at: Timestamp,
    },
    Update {
        conversation: ConversationId,
        holding: Holding,
    },
    Release {
        conversation: ConversationId,
    },
    OfferVoid {
        conversation: ConversationId,
        epoch: u64,
    },
    Resync,
}

/// [`ConversationMsg`]'s variants that cross nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToConversation {
    Assign {
        agent: AgentId,
        epoch: u64,
    },
    Offered {
        agent: AgentId,
        epoch: u64,
    },
    OfferWithdrawn {
        agent: AgentId,
        epoch: u64,
    },
    Unassign {
        agent: AgentId,
        reason: UnassignReason,
        pending_since: Option<Timestamp>,
    },
    ActivateFallback {
        epoch: u64,
    },
    Resync,
}

/// [`QueueMsg`]'s variants that cross nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToQueue {
    Upsert(QueueEntry),
    UpsertMany(Vec<QueueEntry>),
    Remove {
        conversation: ConversationId,
    },
    AgentRoom {
        agent: AgentId,
        room: AgentRoom,
        group: Option<GroupId>,
    },
    AgentGone {
        agent: AgentId,
    },
    OfferDeclined {
        conversation: ConversationId,
        epoch: u64,
        agent: AgentId,
        reason: Declined,
        room: Option<AgentRoom>,
    },
    AgentRestarted {
        agent: AgentId,
        kept: Vec<ConversationId>,
    },
    RetryDeclined,
    OffersHeld {
        agent: AgentId,
        kept: Vec<ConversationId>,
    },
}

impl TryFrom<AgentMsg> for ToAgent {
    /// A message that stays on its node comes back.
    type Error = AgentMsg;

    fn try_from(msg: AgentMsg) -> Result<ToAgent, AgentMsg> {
        Ok(match msg {
            AgentMsg::Offer {
                conversation,
                skill,
                queue,
                epoch,
                weight,
            } => ToAgent::Offer {
                conversation,
                skill,
                queue,
                epoch,
                weight,
            },
            AgentMsg::Confirmed {
                conversation,
                skill,
                holding,
                assigned_at,
            } => ToAgent::Confirmed {
                conversation,
                skill,
                holding,
                assigned_at,
            },
            AgentMsg::Update { conversation, holding } => ToAgent::Update { conversation, holding },
            AgentMsg::Release { conversation } => ToAgent::Release { conversation },
            AgentMsg::OfferVoid { conversation, epoch } => ToAgent::OfferVoid { conversation, epoch },
            AgentMsg::Resync => ToAgent::Resync,
            local => return Err(local),
        })
    }
}

impl From<ToAgent> for AgentMsg {
    fn from(msg: ToAgent) -> AgentMsg {
        match msg {
            ToAgent::Offer {
                conversation,
                skill,
                queue,
                epoch,
                weight,
            } => AgentMsg::Offer {
                conversation,
                skill,
                queue,
                epoch,
                weight,
            },
            ToAgent::Confirmed {
                conversation,
                skill,
                holding,
                assigned_at,
            } => AgentMsg::Confirmed {
                conversation,
                skill,
                holding,
                assigned_at,
            },
            ToAgent::Update { conversation, holding } => AgentMsg::Update { conversation, holding },
            ToAgent::Release { conversation } => AgentMsg::Release { conversation },
            ToAgent::OfferVoid { conversation, epoch } => AgentMsg::OfferVoid { conversation, epoch },
            ToAgent::Resync => AgentMsg::Resync,
        }
    }
}

impl TryFrom<ConversationMsg> for ToConversation {
    type Error = ConversationMsg;

    fn try_from(msg: ConversationMsg) -> Result<ToConversation, ConversationMsg> {
        Ok(match msg {
            ConversationMsg::Assign {
                agent,
                epoch,
                reply: None,
            } => ToConversation::Assign { agent, epoch },
            ConversationMsg::Offered { agent, epoch } => ToConversation::Offered { agent, epoch },
            ConversationMsg::OfferWithdrawn { agent, epoch } => ToConversation::OfferWithdrawn { agent, epoch },
            ConversationMsg::Unassign {
                agent,
                reason,
                pending_since,
            } => ToConversation::Unassign {
                agent,
                reason,
                pending_since,
            },
            ConversationMsg::ActivateFallback { epoch } => ToConversation::ActivateFallback { epoch },
            ConversationMsg::Resync => ToConversation::Resync,
            local => return Err(local),
        })
    }
}

impl From<ToConversation> for ConversationMsg {
    fn from(msg: ToConversation) -> ConversationMsg {
        match msg {
            ToConversation::Assign { agent, epoch } => ConversationMsg::Assign {
                agent,
                epoch,
                reply: None,
            },
            ToConversation::Offered { agent, epoch } => ConversationMsg::Offered { agent, epoch },
            ToConversation::OfferWithdrawn { agent, epoch } => ConversationMsg::OfferWithdrawn { agent, epoch },
            ToConversation::Unassign {
                agent,
                reason,
                pending_since,
            } => ConversationMsg::Unassign {
                agent,
                reason,
                pending_since,
            },
            ToConversation::ActivateFallback { epoch } => ConversationMsg::ActivateFallback { epoch },
            ToConversation::Resync => ConversationMsg::Resync,
        }
    }
}

impl TryFrom<QueueMsg> for ToQueue {
    type Error = QueueMsg;

    fn try_from(msg: QueueMsg) -> Result<ToQueue, QueueMsg> {
        Ok(match msg {
            QueueMsg::Upsert(entry) => ToQueue::Upsert(entry),
            QueueMsg::UpsertMany(entries) => ToQueue::UpsertMany(entries),
            QueueMsg::Remove { conversation } => ToQueue::Remove { conversation },
            QueueMsg::AgentRoom { agent, room, group } => ToQueue::AgentRoom { agent, room, group },
            QueueMsg::AgentGone { agent } => ToQueue::AgentGone { agent },
            QueueMsg::OfferDeclined {
                conversation,
                epoch,
                agent,
                reason,
                room,
            } => ToQueue::OfferDeclined {
                conversation,
                epoch,
                agent,
                reason,
                room,
            },
            QueueMsg::AgentRestarted { agent, kept } => ToQueue::AgentRestarted { agent, kept },
            QueueMsg::OffersHeld { agent, kept } => ToQueue::OffersHeld { agent, kept },
            QueueMsg::RetryDeclined => ToQueue::RetryDeclined,
            local => return Err(local),
        })
    }
}

impl From<ToQueue> for QueueMsg {
    fn from(msg: ToQueue) -> QueueMsg {
        match msg {
            ToQueue::Upsert(entry) => QueueMsg::Upsert(entry),
            ToQueue::UpsertMany(entries) => QueueMsg::UpsertMany(entries),
            ToQueue::Remove { conversation } => QueueMsg::Remove { conversation },
            ToQueue::AgentRoom { agent, room, group } => QueueMsg::AgentRoom { agent, room, group },
            ToQueue::AgentGone { agent } => QueueMsg::AgentGone { agent },
            ToQueue::OfferDeclined {
                conversation,
                epoch,
                agent,
                reason,
                room,
            } => QueueMsg::OfferDeclined {
                conversation,
                epoch,
                agent,
                reason,
                room,
            },
            ToQueue::AgentRestarted { agent, kept } => QueueMsg::AgentRestarted { agent, kept },
            ToQueue::OffersHeld { agent, kept } => QueueMsg::OffersHeld { agent, kept },
            ToQueue::RetryDeclined => QueueMsg::RetryDeclined,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::transport::{Body, Frame};
    use crate::domain::conversation::{Activity, RouteHints};
    use crate::domain::rank::RankKey;

    fn every_crossing() -> Vec<Crossing> {
        let (c, a, s) = (
            ConversationId::new("c1").expect("id"),
            AgentId::new("a1").expect("id"),
            SkillId::new("general").expect("id"),
        );
        let at = Timestamp::from_millis(1_800_000_000_123);
        let room = AgentRoom {
            online: true,
            away: false,
            accepting: false,
            free: Weight(7),
            busy: Weight(3),
            slots: Weight(10),
        };
        let entry = QueueEntry {
            conversation_id: c.clone(),
            home_skill: s.clone(),
            epoch: 3,
            actionable: true,
            key: RankKey {
                tier: 1,
                score: -5,
                seq: 9,
            },
            weight: Weight(10),
            hints: RouteHints {
                preferred_agent: Some(a.clone()),
                avoid_agent: None,
                target_agent: Some(a.clone()),
                target_until: Some(at),
            },
            queued_at: at,
            due_at: None,
            overdue: true,
            priority: -2,
            in_fallback: false,
            because: crate::domain::queue::Because::Transferred,
            first_time: true,
        };
        let agent = |msg| Crossing::Agent { agent: a.clone(), msg };
        let conversation = |msg| Crossing::Conversation { id: c.clone(), msg };
        let queue = |msg| Crossing::Queue { skill: s.clone(), msg };
        vec![
            agent(ToAgent::Offer {
                conversation: c.clone(),
                skill: s.clone(),
                queue: s.clone(),
                epoch: 4,
                weight: Weight(10),
            }),
            agent(ToAgent::Confirmed {
                conversation: c.clone(),
                skill: s.clone(),
                holding: Holding {
                    weight: Weight(10),
                    activity: Activity::Inactive,
                    pending_since: None,
                },
                assigned_at: at,
            }),
            agent(ToAgent::Update {
                conversation: c.clone(),
                holding: Holding {
                    weight: Weight(1),
                    activity: Activity::Active,
                    pending_since: Some(at),
                },
            }),
            agent(ToAgent::Release {
                conversation: c.clone(),
            }),
            agent(ToAgent::OfferVoid {
                conversation: c.clone(),
                epoch: 2,
            }),
            agent(ToAgent::Resync),
            conversation(ToConversation::Assign {
                agent: a.clone(),
                epoch: 1,
            }),
            conversation(ToConversation::Offered {
                agent: a.clone(),
                epoch: 1,
            }),
            conversation(ToConversation::OfferWithdrawn {
                agent: a.clone(),
                epoch: 1,
            }),
            conversation(ToConversation::Unassign {
                agent: a.clone(),
                reason: UnassignReason::AgentUnavailable,
                pending_since: None,
            }),
            conversation(ToConversation::Unassign {
                agent: a.clone(),
                reason: UnassignReason::Unresponsive,
                pending_since: Some(at),
            }),
            conversation(ToConversation::ActivateFallback { epoch: 5 }),
            conversation(ToConversation::Resync),
            queue(ToQueue::Upsert(entry.clone())),
            queue(ToQueue::UpsertMany(vec![entry.clone(), entry])),
            queue(ToQueue::Remove {
                conversation: c.clone(),
            }),
            queue(ToQueue::AgentRoom {
                agent: a.clone(),
                room,
                group: Some(GroupId::new("vendor-a").expect("id")),
            }),
            queue(ToQueue::AgentGone { agent: a.clone() }),
            queue(ToQueue::OfferDeclined {
                conversation: c.clone(),
                epoch: 6,
                agent: a.clone(),
                reason: Declined::NoRoom,
                room: Some(room),
            }),
            queue(ToQueue::AgentRestarted {
                agent: a.clone(),
                kept: vec![c.clone()],
            }),
            queue(ToQueue::RetryDeclined),
            queue(ToQueue::OffersHeld {
                agent: a.clone(),
                kept: vec![c.clone()],
            }),
        ]
    }

    #[test]
    fn every_crossing_message_survives_the_wire_and_the_way_back_to_an_actor_message() {
        for msg in every_crossing() {
            let frame = Frame {
                from: "n1".into(),
                body: Body::Engine(msg.clone()),
            };
            assert_eq!(Frame::decode(&frame.encode()), Ok(frame), "{msg:?}");
            // To the actor's own message and back: nothing lost on the way.
            match msg.clone() {
                Crossing::Agent { msg: wire, .. } => {
                    assert_eq!(ToAgent::try_from(AgentMsg::from(wire.clone())).ok(), Some(wire))
                }
                Crossing::Conversation { msg: wire, .. } => {
                    assert_eq!(
                        ToConversation::try_from(ConversationMsg::from(wire.clone())).ok(),
                        Some(wire)
                    )
                }
                Crossing::Queue { msg: wire, .. } => {
                    assert_eq!(ToQueue::try_from(QueueMsg::from(wire.clone())).ok(), Some(wire))
                }
            }
        }
    }

    #[test]
    fn messages_with_a_reply_port_or_a_tick_stay_on_their_node() {
        assert!(ToAgent::try_from(AgentMsg::Tick).is_err());
        assert!(ToConversation::try_from(ConversationMsg::Tick).is_err());
        let (tx, _rx) = ractor::concurrency::oneshot();
        let assign = ConversationMsg::Assign {
            agent: AgentId::new("a1").expect("id"),
            epoch: 1,
            reply: Some(tx.into()),
        };
        assert!(
            ToConversation::try_from(assign).is_err(),
            "an accept's reply port cannot cross"
        );
    }
}
