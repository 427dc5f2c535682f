//! An agent: a virtual actor served in turns, the only authority on whether it has room.
//!
//! In: `Offer` from skill queues (reserve room or decline), `Accept` / `Reject` from the
//! API (offer mode), `Confirmed` / `Update` / `Release` / `OfferVoid` from
//! conversations, `Configure` / `SetStatus` from the API, and its own `Tick` (offer
//! expiry, warm-up pacing, automatic unassignment per `routing.unassign`).
//!
//! Out: `Assign` / `Offered` / `OfferWithdrawn` / `Unassign` to conversations,
//! `OfferDeclined` and `AgentRoom` to its skill queues (the latter whenever its room
//! changes), and events.

use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use ractor::RpcReplyPort;

use crate::actors::conversation::{ConversationMsg, ConversationReply};
use crate::actors::shared::{AgentHandle, Envelope, InFlight, Shared};
use crate::actors::skill_queue::QueueMsg;
use crate::actors::supervisor::Child;
use crate::actors::timer::TimerTarget;
use crate::domain::agent::{Agent, AgentSpec, AgentStatus, Held, Holding, IncomingOffer, Reservation};
use crate::domain::capacity::{NoRoom, Weight};
use crate::domain::conversation::Phase;
use crate::domain::queue::{AgentRoom, Declined};
use crate::error::RouterError;
use crate::events::EventKind;
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::store::Change;
use crate::time::Timestamp;

pub type AgentReply = RpcReplyPort<Result<Agent, RouterError>>;

#[derive(Debug)]
pub enum AgentMsg {
    /// Replace skills and limits.
    Configure(AgentSpec, AgentReply),
    /// A new status, with a reason for `away` (checked against `routing.away_reasons`).
    SetStatus(AgentStatus, Option<String>, AgentReply),
    /// A skill queue offers a conversation: reserve room for it or decline.
    Offer {
        conversation: ConversationId,
        /// The conversation's own skill (its SLA and offer mode).
        skill: SkillId,
        /// The queue that made the offer.
        queue: SkillId,
        epoch: u64,
        weight: Weight,
    },
    /// Offer mode: the agent accepts. The conversation answers `reply`.
    Accept {
        conversation: ConversationId,
        reply: ConversationReply,
    },
    /// Offer mode: the agent rejects.
    Reject {
        conversation: ConversationId,
        reply: RpcReplyPort<Result<(), RouterError>>,
    },
    /// The conversation is assigned to this agent, at this weight.
    Confirmed {
        conversation: ConversationId,
        /// The conversation's skill (for an agent that holds no reservation for it).
        skill: SkillId,
        holding: Holding,
        /// When the conversation was assigned (its own record's time).
        assigned_at: Timestamp,
    },
    /// A held conversation changed weight, activity or pending wait.
    Update {
        conversation: ConversationId,
        holding: Holding,
    },
    /// The conversation left this agent (closed, transferred, returned).
    Release { conversation: ConversationId },
    /// Offers made for `epoch` or earlier are void (the conversation went elsewhere).
    OfferVoid { conversation: ConversationId, epoch: u64 },
    /// Tell the skill queues the room again (a queue restarted).
    Resync,
    /// These shards changed node (a cluster): the offers this agent took for their
    /// conversations may have been lost with the old node, so they are let go (the
    /// conversation, if it did assign itself, confirms again); then the room is told
    /// again, as on `Resync`. Never crosses nodes.
    ShardsMoved(Vec<u16>),
    /// Tell each skill queue which of its offers this agent holds, and its room again
    /// (a cluster, every few seconds): an offer lost between nodes stays in flight in
    /// its queue until the second word that does not name it, and a room lost between
    /// nodes (a node that was stale or cut off drops what it sends) is told again, so
    /// no queue waits for an agent that has room. Never crosses nodes.
    Reassert,
    /// The agent's deadline came due (offer expiry, warm-up, unassignment).
    Tick,
    #[cfg(any(test, feature = "fault-injection"))]
    Panic,
}

/// What an agent's activation keeps between its turns: what each skill queue was last
/// told. An agent is served in turns, as a conversation is (see
/// [`Turns`](super::turns::Turns)), but never passivates while it is in the directory.
#[derive(Debug, Default)]
pub struct AgentActivation {
    told: Vec<(SkillId, AgentRoom)>,
}

/// What a turn works with.
struct AgentState<'a> {
    shared: &'a Arc<Shared>,
    handle: &'a AgentHandle,
    told: &'a mut Vec<(SkillId, AgentRoom)>,
}

/// The agent's behaviour (its turns), a namespace.
#[derive(Debug)]
pub struct AgentActor;

/// Starts a task that serves the agent's mailbox until it is empty: a new activation
/// (the agent was just created or read back, or `restarted` after a crash), or the one
/// kept while the mailbox was idle.
pub(crate) fn serve(shared: Arc<Shared>, handle: AgentHandle, restarted: bool) {
    // Counted as work in flight until a new activation has told its queues its room.
    let token = shared.work();
    tokio::spawn(run(shared, handle, restarted, token));
}

async fn run(shared: Arc<Shared>, handle: AgentHandle, restarted: bool, token: InFlight) {
    let resumed = if restarted { None } else { handle.slot.resume() };
    let mut act = match resumed {
        Some(act) => act,
        None => match std::panic::catch_unwind(AssertUnwindSafe(|| AgentActor.start(&shared, &handle, restarted))) {
            Ok(act) => act,
            Err(_) => return crashed(&shared, &handle),
        },
    };
    drop(token);
    loop {
        if shared.stopping() {
            handle.slot.stop();
            return;
        }
        let Some((envelope, next)) = handle.slot.next(act, false) else {
            return;
        };
        act = next;
        // Many messages in a row yield to the other tasks now and then.
        tokio::task::consume_budget().await;
        let mut st = AgentState {
            shared: &shared,
            handle: &handle,
            told: &mut act.told,
        };
        if AssertUnwindSafe(AgentActor.handle(envelope, &mut st))
            .catch_unwind()
            .await
            .is_err()
        {
            return crashed(&shared, &handle);
        }
    }
}

/// A turn panicked (counted in flight by its crash guard): the supervisor restarts the
/// agent from its committed state, with its backoff.
fn crashed(shared: &Arc<Shared>, handle: &AgentHandle) {
    shared.restart_crashed(&handle.slot, Child::Agent(handle.lock().id.clone()));
}

impl AgentActor {
    /// A new activation: after a crash, what the agent holds is reconciled with the
    /// conversations' records; then its room is told to its queues.
    fn start(&self, shared: &Arc<Shared>, handle: &AgentHandle, restarted: bool) -> AgentActivation {
        let _crash = shared.crash_guard();
        shared.count_agent_activation();
        let mut act = AgentActivation::default();
        let mut agent = handle.snapshot();
        if restarted {
            self.reconcile(shared, &mut agent);
        }
        let mut st = AgentState {
            shared,
            handle,
            told: &mut act.told,
        };
        self.settle(&mut st, &agent);
        handle.commit(agent);
        act
    }

    async fn handle(&self, envelope: Envelope<AgentMsg>, st: &mut AgentState<'_>) -> Result<(), RouterError> {
        let Envelope { msg, token: _in_flight } = envelope;
        let shared = Arc::clone(st.shared);
        let _crash = shared.crash_guard();
        let now = shared.now();
        let policy = &shared.policy;
        match msg {
            // A change of configuration or status is durable before it is answered or
            // announced: made on a copy, committed once written.
            AgentMsg::Configure(spec, reply) => {
                let mut agent = st.handle.snapshot();
                if spec.group != agent.group {
                    // Its queues learn the new group with its room, told again.
                    st.told.clear();
                }
                agent.reconfigure(spec, policy);
                if let Err(lost) = shared.persist_committed(Change::Agent(Box::new(agent.clone()))).await {
                    let _ = reply.send(Err(lost.into()));
                    return Ok(());
                }
                let _ = reply.send(Ok(agent.clone()));
                self.settle(st, &agent);
                st.handle.commit(agent);
            }
            AgentMsg::SetStatus(status, reason, reply) => {
                let mut agent = st.handle.snapshot();
                if status != agent.status || reason != agent.status_reason {
                    agent.set_status(status, now, policy);
                    agent.status_reason = reason;
                    if let Err(lost) = shared.persist_committed(Change::Agent(Box::new(agent.clone()))).await {
                        let _ = reply.send(Err(lost.into()));
                        return Ok(());
                    }
                    shared.event(
                        now,
                        EventKind::AgentStatusChanged { status },
                        None,
                        Some(&agent.id),
                        None,
                    );
                }
                let _ = reply.send(Ok(agent.clone()));
                self.settle(st, &agent);
                st.handle.commit(agent);
            }
            // Every other message changes the committed state in place, under the
            // handle's lock (readers see it before or after, never half-way), so an
            // agent holding hundreds of conversations is not copied for each message.
            // Nothing in it waits, and nothing it calls takes an agent's lock.
            msg => {
                let handle = Arc::clone(st.handle);
                let mut agent = handle.lock();
                self.apply(st, &mut agent, msg, now);
                self.settle(st, &agent);
            }
        }
        Ok(())
    }

    /// A message that does not wait: applied to the agent's committed state in place.
    fn apply(&self, st: &mut AgentState<'_>, agent: &mut Agent, msg: AgentMsg, now: crate::time::Timestamp) {
        let shared = Arc::clone(st.shared);
        let policy = &shared.policy;
        let id = agent.id.clone();
        match msg {
            AgentMsg::Offer {
                conversation,
                skill,
                queue,
                epoch,
                weight,
            } => {
                let offer_timeout = shared.skill(&skill).and_then(|s| s.offer_timeout);
                let offer = IncomingOffer {
                    conversation: conversation.clone(),
                    skill: skill.clone(),
                    queue: queue.clone(),
                    weight,
                    epoch,
                    offer_timeout,
                };
                if let Some(old) = agent.supersede(&conversation, epoch) {
                    // The conversation entered a queue again since the old offer (which
                    // it voids): that queue's entry, if it still has it, moved on.
                    shared.tell_queue(
                        &old.queue,
                        QueueMsg::OfferDeclined {
                            conversation: conversation.clone(),
                            epoch: old.epoch,
                            agent: id.clone(),
                            reason: Declined::Stale,
                            room: None,
                        },
                    );
                }
                match agent.reserve(&offer, now, policy) {
                    Ok(()) => {
                        // The queue lowered its view of this agent's room when it made the
                        // offer: it is told the room at the end of this turn even if the
                        // room did not change (the offer superseded a reservation of the
                        // same weight), or it would go on seeing the agent fuller than it
                        // is.
                        st.told.retain(|(s, _)| *s != queue);
                        match offer_timeout {
                            None => shared.tell_conversation(
                                &conversation,
                                ConversationMsg::Assign {
                                    agent: id.clone(),
                                    epoch,
                                    reply: None,
                                },
                            ),
                            Some(t) => {
                                shared.tell_conversation(
                                    &conversation,
                                    ConversationMsg::Offered {
                                        agent: id.clone(),
                                        epoch,
                                    },
                                );
                                let kind = EventKind::Offered {
                                    expires_at: Some(now.plus(t)),
                                };
                                shared.event(now, kind, Some(&conversation), Some(&id), Some(&skill));
                            }
                        }
                    }
                    Err(reason) => {
                        // The queue lowered its view of this agent's room when it made the
                        // offer: the decline carries the real room. A duplicate (a second
                        // queue offering what the agent already has) is declined as
                        // rejected, so that queue does not offer it here again.
                        let room = agent.room(now, policy);
                        let reason = if reason == NoRoom::AlreadyHeld {
                            Declined::Rejected
                        } else {
                            Declined::NoRoom
                        };
                        shared.tell_queue(
                            &queue,
                            QueueMsg::OfferDeclined {
                                conversation,
                                epoch,
                                agent: id.clone(),
                                reason,
                                room: Some(room),
                            },
                        );
                        // The queue now knows this room; don't send it twice.
                        if let Some((_, told)) = st.told.iter_mut().find(|(s, _)| *s == queue) {
                            *told = room;
                        }
                    }
                }
            }
            AgentMsg::Accept { conversation, reply } => match agent.reservations.get_mut(&conversation) {
                Some(r) if !r.accepted => {
                    r.accepted = true;
                    let epoch = r.epoch;
                    shared.tell_conversation(
                        &conversation,
                        ConversationMsg::Assign {
                            agent: id.clone(),
                            epoch,
                            reply: Some(reply),
                        },
                    );
                }
                _ => {
                    let _ = reply.send(Err(RouterError::Conflict(format!(
                        "agent {id} has no pending offer for conversation {conversation}"
                    ))));
                }
            },
            AgentMsg::Reject { conversation, reply } => {
                let pending = agent.reservations.get(&conversation).is_some_and(|r| !r.accepted);
                if pending {
                    self.withdraw(&shared, agent, &conversation, false);
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(RouterError::Conflict(format!(
                        "agent {id} has no pending offer for conversation {conversation}"
                    ))));
                }
            }
            AgentMsg::Confirmed {
                conversation,
                skill,
                holding,
                assigned_at,
            } => {
                if agent.conversations.contains_key(&conversation) {
                    // Sent again by a restarted conversation activation.
                    agent.update(&conversation, holding);
                } else if agent.reservations.contains_key(&conversation) {
                    if !agent.confirm(&conversation, holding, assigned_at, policy) {
                        // Heavier than the room taken for it, past the ceiling.
                        shared.tell_conversation(&conversation, ConversationMsg::no_room(id.clone()));
                    }
                } else if !agent.hold_unreserved(&conversation, skill, holding, assigned_at) {
                    // Assigned while this actor was not the one that took room for it (it
                    // was rebuilt: a shard move, a restart), and it does not fit now.
                    tracing::warn!(agent = %id, conversation = %conversation, "assigned without a reservation and no room: unassigned");
                    shared.tell_conversation(&conversation, ConversationMsg::no_room(id.clone()));
                }
            }
            AgentMsg::Update { conversation, holding } => {
                agent.update(&conversation, holding);
            }
            AgentMsg::Release { conversation } => {
                agent.release(&conversation);
            }
            AgentMsg::OfferVoid { conversation, epoch } => {
                if agent.reservations.get(&conversation).is_some_and(|r| r.epoch <= epoch) {
                    if let Some(r) = agent.reservations.remove(&conversation) {
                        // The queue still has the offer in flight: give the entry its place
                        // back, with this agent declined so the same offer is not repeated.
                        shared.tell_queue(
                            &r.queue,
                            QueueMsg::OfferDeclined {
                                conversation,
                                epoch,
                                agent: id.clone(),
                                reason: Declined::Rejected,
                                room: None,
                            },
                        );
                    }
                }
            }
            AgentMsg::Resync => st.told.clear(),
            AgentMsg::Reassert => {
                let mut queues: Vec<SkillId> = agent.skills.clone();
                for r in agent.reservations.values() {
                    if !queues.contains(&r.queue) {
                        queues.push(r.queue.clone());
                    }
                }
                for queue in queues {
                    let kept: Vec<ConversationId> = agent
                        .reservations
                        .iter()
                        .filter(|(_, r)| r.queue == queue)
                        .map(|(c, _)| c.clone())
                        .collect();
                    shared.tell_queue(
                        &queue,
                        QueueMsg::OffersHeld {
                            agent: id.clone(),
                            kept,
                        },
                    );
                }
                // The room is told again after this message, as on `Resync`.
                st.told.clear();
            }
            AgentMsg::ShardsMoved(shards) => {
                let lost: Vec<ConversationId> = agent
                    .reservations
                    .keys()
                    .filter(|c| shards.contains(&crate::actors::remote::shard_of_conversation(c)))
                    .cloned()
                    .collect();
                for conversation in lost {
                    if let Some(r) = agent.reservations.remove(&conversation) {
                        let_go(&shared, &id, conversation, &r, Declined::Lost);
                    }
                }
                st.told.clear();
            }
            AgentMsg::Tick => {
                for conversation in agent.expired_offers(now) {
                    self.withdraw(&shared, agent, &conversation, true);
                }
                for u in agent.take_unassignments(now, policy) {
                    shared.tell_conversation(
                        &u.conversation,
                        ConversationMsg::Unassign {
                            agent: id.clone(),
                            reason: u.reason,
                            pending_since: Some(u.pending_since),
                        },
                    );
                }
            }
            // Handled on a copy (`handle`).
            AgentMsg::Configure(..) | AgentMsg::SetStatus(..) => {}
            #[cfg(any(test, feature = "fault-injection"))]
            AgentMsg::Panic => panic!("injected fault in agent {id}"),
        }
    }
}

/// An offer the agent holds no more: the conversation is told the offer is withdrawn
/// (it may still be on its way there), and the queue gets its entry back with this
/// agent declined for `reason`.
fn let_go(shared: &Shared, me: &AgentId, conversation: ConversationId, r: &Reservation, reason: Declined) {
    shared.tell_conversation(
        &conversation,
        ConversationMsg::OfferWithdrawn {
            agent: me.clone(),
            epoch: r.epoch,
        },
    );
    shared.tell_queue(
        &r.queue,
        QueueMsg::OfferDeclined {
            conversation,
            epoch: r.epoch,
            agent: me.clone(),
            reason,
            room: None,
        },
    );
}

impl AgentActor {
    /// After a crash, the message being handled is lost (an offer, a confirmation, a
    /// release, a void), and the state it changed may be half-done; the mailbox's other
    /// messages wait for the new activation. Re-derive what the agent holds from the
    /// conversations' own committed state, and let the queues take back offers that
    /// may have been lost (an offer still waiting in the mailbox then finds its queue
    /// has moved on, and is declined as stale or already held).
    fn reconcile(&self, shared: &Shared, agent: &mut Agent) {
        let me = agent.id.clone();
        let state_of = |id: &ConversationId| shared.conversations.get(id).map(|h| h.snapshot());
        agent.conversations.retain(|id, _| {
            state_of(id).is_some_and(|c| c.state == Phase::Assigned && c.agent_id.as_ref() == Some(&me))
        });
        let mut kept = Vec::new();
        for (id, r) in std::mem::take(&mut agent.reservations) {
            let c = state_of(&id);
            match c {
                Some(c) if c.state == Phase::Assigned && c.agent_id.as_ref() == Some(&me) => {
                    let weight = shared.skill(&c.skill).map_or(r.weight, |s| c.weight(&s));
                    let held = Held {
                        skill: c.skill.clone(),
                        weight,
                        activity: c.activity,
                        pending_since: c.pending_for_agent(&shared.policy),
                        assigned_at: shared.now(),
                    };
                    agent.conversations.insert(id, held);
                }
                Some(c) if c.state == Phase::Offered && c.offered_to.as_ref() == Some(&me) && c.epoch == r.epoch => {
                    kept.push(id.clone());
                    agent.reservations.insert(id, r);
                }
                _ => {
                    // Our `Offered` may still be on its way to the conversation: withdraw
                    // it (it arrives after), and give the queue its entry back.
                    let_go(shared, &me, id, &r, Declined::Lost);
                }
            }
        }
        for skill in &agent.skills {
            shared.tell_queue(
                skill,
                QueueMsg::AgentRestarted {
                    agent: me.clone(),
                    kept: kept.clone(),
                },
            );
        }
        tracing::info!(agent = %me, held = agent.conversations.len(), offers = agent.reservations.len(), "agent state reconciled after restart");
    }

    /// An offer the agent rejected or let expire: free the room, send it to the next agent.
    fn withdraw(&self, shared: &Shared, agent: &mut Agent, conversation: &ConversationId, expired: bool) {
        let Some(r) = agent.reservations.remove(conversation) else {
            return;
        };
        let now = shared.now();
        let id = agent.id.clone();
        let_go(shared, &id, conversation.clone(), &r, Declined::Rejected);
        shared.event(
            now,
            EventKind::OfferDeclined { expired },
            Some(conversation),
            Some(&id),
            Some(&r.skill),
        );
    }

    /// Tells the skill queues about a change of room and re-arms the timer (the caller
    /// commits the state, or changed it in place).
    fn settle(&self, st: &mut AgentState<'_>, agent: &Agent) {
        let shared = Arc::clone(st.shared);
        let now = shared.now();
        let room = agent.room(now, &shared.policy);
        // Skills it left: the queue forgets the agent.
        st.told.retain(|(skill, _)| {
            let keep = agent.skills.contains(skill);
            if !keep {
                shared.tell_queue(
                    skill,
                    QueueMsg::AgentGone {
                        agent: agent.id.clone(),
                    },
                );
            }
            keep
        });
        for skill in &agent.skills {
            match st.told.iter_mut().find(|(s, _)| s == skill) {
                Some((_, told)) if *told == room => continue,
                Some((_, told)) => *told = room,
                None => st.told.push((skill.clone(), room)),
            }
            shared.tell_queue(
                skill,
                QueueMsg::AgentRoom {
                    agent: agent.id.clone(),
                    room,
                    group: agent.group.clone(),
                },
            );
        }
        let next = agent.next_deadline(now, &shared.policy);
        shared.arm(TimerTarget::Agent(agent.id.clone()), next);
    }
}
