//! A conversation: a virtual actor, served in turns while it has work.
//!
//! In: API commands (`Command`, answered on a reply port), `Assign` / `Offered` /
//! `OfferWithdrawn` from agents, `Unassign` from an agent going away, `ActivateFallback`
//! from its skill queue, `Resync` after a peer restarted, and `Tick` from the node's
//! timer service when its next deadline comes due.
//!
//! Out: `Upsert` / `Remove` to the skill queues it stands in, `Confirmed` / `SetWeight` /
//! `Release` / `OfferVoid` to agents, and domain events. What it sends is derived by
//! comparing the new state with what the peers were last told, so a restarted
//! activation (which has told nobody anything) simply tells everyone again.
//!
//! Lifetime: the conversation is its [`Handle`](super::shared::Handle) in the directory.
//! Its messages go to a mailbox ([`Turns`](super::turns::Turns)); a message to a
//! conversation that nobody serves starts a task ([`serve`]) that handles the mailbox
//! one message at a time, each turn a pure step of the domain followed by a commit,
//! and ends when the mailbox is empty. What it keeps between turns is its
//! [`Activation`]. A conversation that is quiet (see [`Conversation::is_quiet`]), or
//! that has had no work for `passivate_after`, passivates when its mailbox is empty:
//! what the peers were told is then exactly what the committed state says, so a new
//! activation derives it instead of keeping it. Its one deadline stays armed in the
//! timer service and activates it again. A turn that panics is restarted by the
//! supervisor from the committed state, with the messages still waiting.

use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use ractor::RpcReplyPort;

use crate::actors::agent::AgentMsg;
use crate::actors::shared::{ConversationHandle, Envelope, InFlight, Shared};
use crate::actors::skill_queue::QueueMsg;
use crate::actors::supervisor::Child;
use crate::actors::timer::TimerTarget;
use crate::domain::agent::Holding;
use crate::domain::conversation::{Activity, ClosedBy, Conversation, Phase, UnassignReason};
use crate::domain::queue::QueueEntry;
use crate::domain::skill::{RoutingPolicy, Skill};
use crate::error::RouterError;
use crate::events::EventKind;
use crate::ids::{AgentId, SkillId};
use crate::store::Change;
use crate::time::Timestamp;

pub type ConversationReply = RpcReplyPort<Result<Conversation, RouterError>>;

/// A command from the API.
#[derive(Debug, Clone)]
pub enum ConversationCommand {
    /// The conversation was just created: announce it and queue it.
    Open,
    ConsumerMessage,
    AgentMessage {
        agent: AgentId,
    },
    MarkUrgent,
    FollowUp {
        agent: AgentId,
        due_in: std::time::Duration,
    },
    TransferToSkill {
        skill: SkillId,
    },
    /// To a named agent; with `skill`, the conversation moves to that skill too.
    TransferToAgent {
        agent: AgentId,
        skill: Option<SkillId>,
    },
    ReturnToQueue {
        agent: AgentId,
    },
    /// A closed conversation comes back: the consumer wrote (`agent: None`), or that
    /// agent reopens it.
    Reopen {
        agent: Option<AgentId>,
    },
    Close {
        by: ClosedBy,
        agent: Option<AgentId>,
    },
    /// Offer mode, the agent on another node (a cluster): the conversation takes the
    /// agent's answer to its pending offer itself (it knows the offer: `offered_to` and
    /// its epoch). The agent learns an accept by `Confirmed` (its reservation becomes a
    /// hold) and a reject by `OfferVoid` (it drops the reservation, the queue moves on).
    AnswerOffer {
        agent: AgentId,
        accept: bool,
    },
}

#[derive(Debug)]
pub enum ConversationMsg {
    /// An API command; the reply carries the conversation after it.
    Command(ConversationCommand, ConversationReply),
    /// An agent took room for the conversation: assign it if the offer is current.
    /// `reply` answers the agent's `accept` call in offer mode.
    Assign {
        agent: AgentId,
        epoch: u64,
        reply: Option<ConversationReply>,
    },
    /// Offer mode: `agent` holds an offer for this conversation.
    Offered { agent: AgentId, epoch: u64 },
    /// The agent rejected the offer or let it expire.
    OfferWithdrawn { agent: AgentId, epoch: u64 },
    /// The agent gives the conversation up: back to the queue. With `pending_since`
    /// (automatic unassignment), only if the consumer is still waiting since then;
    /// without (the agent has no room for it), unconditionally.
    Unassign {
        agent: AgentId,
        reason: UnassignReason,
        pending_since: Option<Timestamp>,
    },
    /// The skill queue has no agent online: stand in the fallback skill's queue too.
    ActivateFallback { epoch: u64 },
    /// Tell the queues and the agent everything again (one of them restarted).
    Resync,
    /// The skill was switched off hours or back: compute the deadline again.
    OpenTimeChanged,
    /// The conversation's deadline came due (or may have: a tick is idempotent).
    Tick,
    /// Fault injection for supervision tests.
    #[cfg(any(test, feature = "fault-injection"))]
    Panic,
}

impl ConversationMsg {
    /// Back to the queue whatever the conversation waits for: its agent has no room for
    /// it (or is not known at all).
    pub fn no_room(agent: AgentId) -> ConversationMsg {
        ConversationMsg::Unassign {
            agent,
            reason: UnassignReason::AgentUnavailable,
            pending_since: None,
        }
    }
}

/// The skill a conversation of `from` is transferred to, if it exists and `from`'s
/// `transfer_to` allows it.
fn transfer_target(shared: &Shared, from: &Skill, to: &SkillId) -> Result<Arc<Skill>, RouterError> {
    let target = shared.skill(to).ok_or_else(|| RouterError::not_found("skill", to))?;
    if !from.may_transfer_to(to) {
        return Err(RouterError::Conflict(format!(
            "skill {} may transfer only to {:?} (its transfer_to), not to {to}",
            from.id,
            from.transfer_to.as_deref().unwrap_or_default()
        )));
    }
    Ok(target)
}

/// What the peers were last told about this conversation.
#[derive(Debug, Default)]
struct Told {
    queues: Vec<(SkillId, QueueEntry)>,
    agent: Option<(AgentId, Holding)>,
}

impl Told {
    /// What an actor that settled `conv` told its peers: the queue entry in each queue
    /// it stands in, and its weight to its agent.
    fn settled(conv: &Conversation, skill: &Skill, policy: &RoutingPolicy) -> Told {
        let queues = match conv.queue_entry(skill, policy) {
            Some(entry) => conv.queues(skill).into_iter().map(|q| (q, entry.clone())).collect(),
            None => Vec::new(),
        };
        Told {
            queues,
            agent: holder(conv, skill, policy),
        }
    }
}

/// A conversation read back from the store at start, passive: the entries its actor
/// would have told the (new) skill queues, so that an actor activated later derives
/// exactly what its peers know ([`Told::settled`]). Recovery tells them in batches.
pub(crate) fn recovered_entries(shared: &Shared, conv: &Conversation, skill: &Skill) -> Vec<(SkillId, QueueEntry)> {
    Told::settled(conv, skill, &shared.policy).queues
}

/// The only change is an offer made: not written to the store, where the conversation
/// stays queued. Recovery voids every offer pending at a crash, so the record of one
/// would change nothing, and the offer goes out without waiting for a commit. (A
/// withdrawn offer is written: the record may hold an offer made in the same step as
/// another change.)
fn only_offered(before: &Conversation, conv: &Conversation) -> bool {
    before.state == Phase::Queued && conv.state == Phase::Offered && {
        let mut queued = conv.clone();
        queued.state = Phase::Queued;
        queued.offered_to = None;
        queued == *before
    }
}

/// The conversation went to an agent (a new one, or its first).
fn newly_assigned(before: &Conversation, conv: &Conversation) -> bool {
    conv.state == Phase::Assigned && (before.state != Phase::Assigned || before.agent_id != conv.agent_id)
}

/// The agent holding the conversation, with its weight and activity (and the wait for
/// its answer when automatic unassignment is on).
fn holder(conv: &Conversation, skill: &Skill, policy: &RoutingPolicy) -> Option<(AgentId, Holding)> {
    match (&conv.state, &conv.agent_id) {
        (Phase::Assigned, Some(a)) => Some((a.clone(), conv.holding(skill, policy))),
        _ => None,
    }
}

/// What a conversation's activation keeps between its turns; dropped when it
/// passivates, and derived again from the committed state when it next activates.
#[derive(Debug)]
pub struct Activation {
    told: Told,
    /// When the activation last handled something other than a `Tick`: after
    /// `passivate_after` without work, even a conversation that is not quiet (waiting
    /// in the queue, or for its agent's answer) is passivated.
    last_work_at: Timestamp,
}

/// What the task serving a conversation does after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Keep the activation for the next message.
    Stay,
    /// The conversation is quiet: passivate it, unless a message waits.
    Passivate,
    /// Another node holds the conversation now: serve it no more.
    Stop,
}

/// What a handled message asks for besides the state change.
#[derive(Default)]
struct Outcome {
    reply: Option<(ConversationReply, Result<(), RouterError>)>,
    unassigned: Option<(AgentId, UnassignReason)>,
    transferred_from: Option<(SkillId, Option<AgentId>)>,
    /// Reopened: by that agent, or by the consumer (`None`).
    reopened_by: Option<Option<AgentId>>,
    /// A stale `Assign`: the agent must drop its reservation.
    void_offer: Option<(AgentId, u64)>,
    /// The agent withdrew its own offer: it has dropped the reservation already, and a
    /// void sent now could reach a newer offer made for the same epoch.
    withdrawn_by: Option<AgentId>,
    /// The conversation was just opened: its first state goes to the store.
    created: bool,
}

/// Starts a task that serves the conversation's mailbox until it is empty (a
/// [`Turns`](super::turns::Turns)): a new activation, or the one kept while the mailbox
/// was idle. `restarted`: after a crash, whatever the mailbox of the crashed task held
/// was kept, but what it was about to tell its peers may be lost.
pub(crate) fn serve(shared: Arc<Shared>, handle: ConversationHandle, restarted: bool) {
    // A restart counts as work in flight until its first turn is done.
    let token = restarted.then(|| shared.work());
    tokio::spawn(run(shared, handle, restarted, token));
}

async fn run(shared: Arc<Shared>, handle: ConversationHandle, restarted: bool, token: Option<InFlight>) {
    let resumed = if restarted { None } else { handle.slot.resume() };
    let (mut act, mut after) = match resumed {
        Some(act) => (act, After::Stay),
        None => match AssertUnwindSafe(Activation::start(&shared, &handle, restarted))
            .catch_unwind()
            .await
        {
            Ok(started) => started,
            Err(_) => return crashed(&shared, &handle),
        },
    };
    // The work in flight (the restart, then each message's) is let go only once the
    // slot has taken the turn's outcome (passive, idle, or the next message), when this
    // task returns or takes the next message: a settled engine (nothing in flight) then
    // has no live activation of a quiet conversation. Let go at the end of the turn, it
    // left a window in which the activation was still live with nothing in flight (the
    // virtual-actor invariant failed once in 5 943 seeds, 127 live for 126 with work).
    let mut _held = token;
    loop {
        if after == After::Stop || shared.stopping() {
            handle.slot.stop();
            return;
        }
        let Some((Envelope { msg, token }, next)) = handle.slot.next(act, after == After::Passivate) else {
            return;
        };
        _held = Some(token);
        act = next;
        // Many messages in a row yield to the other tasks now and then.
        tokio::task::consume_budget().await;
        match AssertUnwindSafe(act.turn(&shared, &handle, msg)).catch_unwind().await {
            Ok(next) => after = next,
            Err(_) => return crashed(&shared, &handle),
        }
    }
}

/// A turn panicked (counted in flight by its crash guard): the supervisor restarts the
/// conversation from its committed state, with its backoff.
fn crashed(shared: &Arc<Shared>, handle: &ConversationHandle) {
    shared.restart_crashed(&handle.slot, Child::Conversation(handle.lock().id.clone()));
}

impl Activation {
    /// A new activation: derives what its peers know, then settles what came due.
    async fn start(shared: &Arc<Shared>, handle: &ConversationHandle, restarted: bool) -> (Activation, After) {
        let _crash = shared.crash_guard();
        shared.count_activation();
        let mut act = Activation {
            told: Told::default(),
            last_work_at: shared.now(),
        };
        let current = handle.snapshot();
        let mut conv = current.clone();
        if restarted {
            // A restarted activation has told nobody anything yet.
            Self::renew_after_restart(shared, &mut conv);
        } else if let Some(skill) = shared.skill(&conv.skill) {
            // An activated one: its predecessor told the peers what the state says.
            // (Derived with the skill as it is now: a skill replaced over the API while
            // the conversation was passive reaches its queue entry and agent weight when
            // the conversation next changes; a live activation re-tells them at its next
            // message.)
            act.told = Told::settled(&conv, &skill, &shared.policy);
        }
        let after = act.settle(shared, handle, &current, conv, Outcome::default()).await;
        (act, after)
    }

    /// Handles one message.
    async fn turn(&mut self, shared: &Arc<Shared>, handle: &ConversationHandle, msg: ConversationMsg) -> After {
        let _crash = shared.crash_guard();
        let now = shared.now();
        let before = handle.snapshot();
        let mut conv = before.clone();
        let Some(skill) = shared.skill(&conv.skill) else {
            tracing::error!(conversation = %conv.id, skill = %conv.skill, "conversation on unknown skill");
            return After::Passivate;
        };
        let mut out = Outcome::default();
        if !matches!(msg, ConversationMsg::Tick) {
            self.last_work_at = now;
        }
        match msg {
            ConversationMsg::Command(ConversationCommand::Open, reply) => {
                // A new conversation: nobody was told anything about it.
                self.told = Told::default();
                shared.event(
                    now,
                    EventKind::Opened {
                        first_time: conv.first_time,
                        urgent: conv.urgent,
                    },
                    Some(&conv.id),
                    None,
                    Some(&conv.skill),
                );
                shared.consumers.opened(&conv.consumer_id);
                out.created = true;
                out.reply = Some((reply, Ok(())));
            }
            ConversationMsg::Command(cmd, reply) => {
                let result = Self::command(shared, &mut conv, cmd, now, &skill, &mut out);
                out.reply = Some((reply, result));
            }
            ConversationMsg::Assign { agent, epoch, reply } => match conv.assign(&agent, epoch, now) {
                Ok(_) => {
                    if let Some(reply) = reply {
                        out.reply = Some((reply, Ok(())));
                    }
                }
                Err(e) => {
                    out.void_offer = Some((agent, epoch));
                    if let Some(reply) = reply {
                        out.reply = Some((reply, Err(e.into())));
                    }
                }
            },
            ConversationMsg::Offered { agent, epoch } => {
                if conv.offer_made(&agent, epoch).is_err() {
                    out.void_offer = Some((agent, epoch));
                }
            }
            ConversationMsg::OfferWithdrawn { agent, epoch } => {
                if conv.offer_withdrawn(&agent, epoch) {
                    out.withdrawn_by = Some(agent);
                }
            }
            ConversationMsg::Unassign {
                agent,
                reason,
                pending_since,
            } => {
                // Automatic unassignment asked for the wait it saw: an agent who answered
                // on the way keeps the conversation.
                let still_pending = pending_since.is_none() || conv.pending_agent_since() == pending_since;
                if still_pending && conv.unassign(&agent, reason, now, &skill).is_ok() {
                    out.unassigned = Some((agent, reason));
                }
            }
            ConversationMsg::ActivateFallback { epoch } => {
                conv.activate_fallback(epoch);
            }
            ConversationMsg::Resync => self.told = Told::default(),
            ConversationMsg::OpenTimeChanged => conv.open_time_changed(now, &skill),
            // `settle` applies whatever is due.
            ConversationMsg::Tick => {}
            #[cfg(any(test, feature = "fault-injection"))]
            ConversationMsg::Panic => panic!("injected fault in conversation {}", conv.id),
        }
        self.settle(shared, handle, &before, conv, out).await
    }
    /// After a crash, an agent's `Assign` or `Offered` may have been lost with the old
    /// mailbox while the agent keeps the room it took. Renew the queue entry (a new
    /// epoch) and void every older offer wherever it may be held.
    fn renew_after_restart(shared: &Shared, conv: &mut Conversation) {
        conv.renew_queue_entry();
        let old_epoch = conv.epoch.saturating_sub(1);
        let mut skills = vec![conv.skill.clone()];
        skills.extend(shared.skill(&conv.skill).and_then(|s| s.fallback_skill.clone()));
        let agents: Vec<AgentId> = shared
            .agents
            .iter()
            .filter(|h| h.lock().skills.iter().any(|s| skills.contains(s)))
            .map(|h| h.key().clone())
            .collect();
        for agent in agents {
            shared.tell_agent(
                &agent,
                AgentMsg::OfferVoid {
                    conversation: conv.id.clone(),
                    epoch: old_epoch,
                },
            );
        }
        tracing::info!(conversation = %conv.id, old_epoch, "queue entry renewed after restart");
    }

    fn command(
        shared: &Shared,
        conv: &mut Conversation,
        cmd: ConversationCommand,
        now: Timestamp,
        skill: &Skill,
        out: &mut Outcome,
    ) -> Result<(), RouterError> {
        let policy = &shared.policy;
        match cmd {
            ConversationCommand::Open => {}
            ConversationCommand::ConsumerMessage => conv.consumer_message(now, skill)?,
            ConversationCommand::AgentMessage { agent } => conv.agent_message(&agent, now)?,
            ConversationCommand::MarkUrgent => conv.mark_urgent(now, skill)?,
            ConversationCommand::FollowUp { agent, due_in } => conv.set_follow_up(&agent, due_in, now, policy)?,
            ConversationCommand::TransferToSkill { skill: to } => {
                let target = transfer_target(shared, skill, &to)?;
                let from = conv.skill.clone();
                let previous = conv.transfer_to_skill(&target, now)?;
                Self::note_transfer(out, from, previous, None);
            }
            ConversationCommand::TransferToAgent { agent, skill: to } => {
                let target = match to {
                    Some(to) if to != conv.skill => transfer_target(shared, skill, &to)?,
                    _ => Arc::new(skill.clone()),
                };
                let from = conv.skill.clone();
                let previous = conv.transfer_to_agent(&agent, now, policy.transfer_to_agent_max_wait, &target)?;
                Self::note_transfer(out, from, previous, Some(agent));
            }
            ConversationCommand::ReturnToQueue { agent } => {
                conv.unassign(&agent, UnassignReason::ReturnedByAgent, now, skill)?;
                out.unassigned = Some((agent, UnassignReason::ReturnedByAgent));
            }
            ConversationCommand::Reopen { agent } => {
                conv.reopen(agent.as_ref(), now, policy.transfer_to_agent_max_wait, skill)?;
                out.reopened_by = Some(agent);
            }
            ConversationCommand::Close { by, agent } => {
                conv.close(by, agent.as_ref(), now)?;
            }
            ConversationCommand::AnswerOffer { agent, accept } => {
                if conv.state != Phase::Offered || conv.offered_to.as_ref() != Some(&agent) {
                    return Err(RouterError::Conflict(format!(
                        "agent {agent} has no pending offer for conversation {}",
                        conv.id
                    )));
                }
                let epoch = conv.epoch;
                if accept {
                    conv.assign(&agent, epoch, now)?;
                } else {
                    // `settle` voids the agent's offer (it was not withdrawn by the agent).
                    conv.offer_withdrawn(&agent, epoch);
                    shared.event(
                        now,
                        EventKind::OfferDeclined { expired: false },
                        Some(&conv.id),
                        Some(&agent),
                        Some(&conv.skill),
                    );
                }
            }
        }
        Ok(())
    }

    fn note_transfer(out: &mut Outcome, from: SkillId, previous: Option<AgentId>, to_agent: Option<AgentId>) {
        if let Some(prev) = previous {
            out.unassigned = Some((prev, UnassignReason::Transferred));
        }
        out.transferred_from = Some((from, to_agent));
    }

    /// Applies due timers, commits (to the store too, and waits for it with commit
    /// durability: what the engine decided is durable before anyone hears of it), tells
    /// peers what changed, publishes events, answers the caller, re-arms the deadline,
    /// and passivates a quiet conversation.
    async fn settle(
        &mut self,
        shared: &Arc<Shared>,
        handle: &ConversationHandle,
        before: &Conversation,
        mut conv: Conversation,
        out: Outcome,
    ) -> After {
        let now = shared.now();
        let Some(skill) = shared.skill(&conv.skill) else {
            return After::Passivate;
        };
        let has_fallback = shared.has_fallback(&skill);
        conv.tick(now, &skill, has_fallback, &shared.policy);
        handle.commit(conv.clone());
        if let (Some(agent), true) = (&conv.agent_id, newly_assigned(before, &conv)) {
            // The consumer comes back to this agent (written before the conversation,
            // so the conversation's commit covers it).
            shared
                .consumers
                .write(&conv.consumer_id, |r| r.last_agent = Some((agent.clone(), now)));
        }
        if out.created || (conv != *before && !only_offered(before, &conv)) {
            let n = shared.persist(Change::Conversation(Box::new(conv.clone())));
            if let Err(lost) = shared.persisted(n).await {
                // Another node holds the shard now: nobody hears of this change, the
                // caller is told to retry (the owner answers), and this copy stops.
                tracing::warn!(conversation = %conv.id, error = %lost, "change refused by fencing; not told");
                if let Some((reply, _)) = out.reply {
                    let _ = reply.send(Err(lost.into()));
                }
                return After::Stop;
            }
        }

        // Counted as closed before the caller hears of it: an open right after a close
        // finds the room the close made.
        if let (Some(closure), None) = (conv.closed, before.closed) {
            shared.note_closed(&conv.id, closure.at);
        }
        self.tell_peers(shared, before, &conv, &skill, &out);
        Self::publish(shared, before, &conv, now, &out);
        if let Some((reply, result)) = out.reply {
            let _ = reply.send(result.map(|()| conv.clone()));
        }

        let idle_at = self.last_work_at.plus(shared.policy.passivate_after);
        let passivate = conv.is_quiet() || now >= idle_at;
        let mut next = conv.next_deadline(now, &skill, has_fallback, &shared.policy);
        if !passivate {
            next = Some(next.map_or(idle_at, |t| t.min(idle_at)));
        }
        shared.arm(TimerTarget::Conversation(conv.id.clone()), next);
        if passivate {
            After::Passivate
        } else {
            After::Stay
        }
    }

    fn tell_peers(
        &mut self,
        shared: &Shared,
        before: &Conversation,
        conv: &Conversation,
        skill: &Skill,
        out: &Outcome,
    ) {
        // The holding agent first: a release must reach the agent before the queue can
        // offer the conversation to that same agent again.
        let id = &conv.id;
        let holder = holder(conv, skill, &shared.policy);
        match (&self.told.agent, &holder) {
            (Some((old, _)), Some((new, holding))) if old == new => {
                if self.told.agent.as_ref() != holder.as_ref() {
                    shared.tell_agent(
                        new,
                        AgentMsg::Update {
                            conversation: id.clone(),
                            holding: *holding,
                        },
                    );
                }
            }
            (told, _) => {
                if let Some((old, ..)) = told {
                    shared.tell_agent(
                        old,
                        AgentMsg::Release {
                            conversation: id.clone(),
                        },
                    );
                }
                if let Some((new, holding)) = &holder {
                    shared.tell_agent(
                        new,
                        AgentMsg::Confirmed {
                            conversation: id.clone(),
                            skill: conv.skill.clone(),
                            holding: *holding,
                            assigned_at: conv.assigned_at.unwrap_or_else(|| shared.now()),
                        },
                    );
                }
            }
        }
        self.told.agent = holder;

        // An offer that lost its conversation (assigned elsewhere, closed, moved).
        if let Some(offered) = &before.offered_to {
            let moved_on = conv.offered_to.as_ref() != Some(offered) && conv.agent_id.as_ref() != Some(offered);
            if moved_on && out.withdrawn_by.as_ref() != Some(offered) {
                shared.tell_agent(
                    offered,
                    AgentMsg::OfferVoid {
                        conversation: id.clone(),
                        epoch: before.epoch,
                    },
                );
            }
        }
        if let Some((agent, epoch)) = &out.void_offer {
            shared.tell_agent(
                agent,
                AgentMsg::OfferVoid {
                    conversation: id.clone(),
                    epoch: *epoch,
                },
            );
        }

        // Queues: remove from those it left, upsert where the entry changed.
        let wanted = conv.queues(skill);
        let entry = conv.queue_entry(skill, &shared.policy);
        self.told.queues.retain(|(q, _)| {
            let keep = wanted.contains(q);
            if !keep {
                shared.tell_queue(
                    q,
                    QueueMsg::Remove {
                        conversation: conv.id.clone(),
                    },
                );
            }
            keep
        });
        if let Some(entry) = entry {
            for q in wanted {
                match self.told.queues.iter_mut().find(|(s, _)| *s == q) {
                    Some((_, told)) if *told == entry => {}
                    Some((_, told)) => {
                        *told = entry.clone();
                        shared.tell_queue(&q, QueueMsg::Upsert(entry.clone()));
                    }
                    None => {
                        self.told.queues.push((q.clone(), entry.clone()));
                        shared.tell_queue(&q, QueueMsg::Upsert(entry.clone()));
                    }
                }
            }
        }
    }

    fn publish(shared: &Shared, before: &Conversation, conv: &Conversation, now: Timestamp, out: &Outcome) {
        let id = Some(&conv.id);
        let skill = Some(&conv.skill);
        let agent = conv.agent_id.as_ref();
        let event = |kind: EventKind, agent: Option<&AgentId>| shared.event(now, kind, id, agent, skill);

        if let Some((from, to_agent)) = &out.transferred_from {
            event(
                EventKind::Transferred {
                    from_skill: from.clone(),
                    to_agent: to_agent.clone(),
                },
                to_agent.as_ref(),
            );
        }
        if let Some((agent, reason)) = &out.unassigned {
            event(EventKind::Unassigned { reason: *reason }, Some(agent));
        }
        if newly_assigned(before, conv) {
            let waited = before.queued_at.map_or(0, |q| now.since(q).as_millis() as u64);
            event(EventKind::Assigned { waited_ms: waited }, agent);
        }
        if before.first_response_at.is_none() {
            if let Some(t) = conv.first_response_at {
                event(
                    EventKind::FirstResponse {
                        after_ms: t.since(conv.opened_at).as_millis() as u64,
                    },
                    agent,
                );
            }
        }
        if !conv.is_closed() && before.activity != conv.activity {
            let kind = match conv.activity {
                Activity::Inactive => EventKind::Inactive,
                Activity::Active => EventKind::Reactivated,
            };
            event(kind, agent);
        }
        if let (Some(sla), false) = (conv.sla, conv.is_closed()) {
            if conv.soon_overdue && !before.soon_overdue {
                event(
                    EventKind::SoonOverdue {
                        kind: sla.kind,
                        due_at: sla.due_at,
                    },
                    agent,
                );
            }
            if conv.overdue && !before.overdue {
                event(
                    EventKind::Overdue {
                        kind: sla.kind,
                        due_at: sla.due_at,
                    },
                    agent,
                );
            }
        }
        if let Some(due) = conv.manual_due_at {
            if before.manual_due_at != Some(due) {
                event(EventKind::FollowUpSet { due_at: due }, agent);
            }
        }
        if conv.fallback_active && !before.fallback_active {
            if let Some(f) = shared.skill(&conv.skill).and_then(|s| s.fallback_skill.clone()) {
                event(EventKind::FallbackActivated { fallback_skill: f }, None);
            }
        }
        if let (Some(closure), None) = (conv.closed, before.closed) {
            event(EventKind::Closed { by: closure.by }, before.agent_id.as_ref());
        }
        if let Some(by) = &out.reopened_by {
            let kind = EventKind::Reopened {
                by: if by.is_some() {
                    ClosedBy::Agent
                } else {
                    ClosedBy::Consumer
                },
            };
            event(kind, by.as_ref());
        }
    }
}
