//! The conversation state machine: a pure value that changes only through the methods
//! below, each given `now`.
//!
//! Lifecycle: `queued → offered → assigned → … → closed`. Orthogonal to it:
//! - `awaiting`: who owes the next message (agent or consumer);
//! - `activity`: active, or inactive once the consumer went quiet (Smart Capacity);
//! - `sla`: the deadline of the current wait for an agent, or a manual follow-up;
//! - `epoch`: bumped every time the conversation enters or leaves a queue, so that an
//!   offer made for an older queue entry can be recognised as stale and voided.
//!
//! Time-driven changes (inactivity, overdue, follow-ups coming due, auto-close, the end
//! of a transfer's wait for a named agent, fallback) all happen in [`Conversation::tick`];
//! [`Conversation::next_deadline`] tells the actor when to call it next.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::agent::Holding;
use crate::domain::capacity::Weight;
use crate::domain::queue::{Because, QueueEntry};
use crate::domain::rank::{self, RankInputs};
use crate::domain::skill::{RoutingPolicy, Skill};
use crate::domain::sla::{Sla, SlaKind, SlaPolicy};
use crate::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use crate::time::Timestamp;

/// Where a conversation is in its life (the `state` field of the API's view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Queued,
    Offered,
    Assigned,
    Closed,
}

impl Phase {
    /// The snake_case name (as serialized), for store columns and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Offered => "offered",
            Phase::Assigned => "assigned",
            Phase::Closed => "closed",
        }
    }
}

/// Who owes the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Awaiting {
    Agent,
    Consumer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Active,
    Inactive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    Agent,
    Consumer,
    System,
}

/// Why an assigned conversation went back to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnassignReason {
    /// The agent asked for it: the conversation is actionable for the next agent.
    ReturnedByAgent,
    /// The agent went away or offline past `routing.unassign` (or had no room for it
    /// when an assignment reached a rebuilt agent).
    AgentUnavailable,
    /// An online agent left the consumer's message unanswered past
    /// `routing.unassign.unresponsive_after_secs`.
    Unresponsive,
    /// Transferred to another skill or agent.
    Transferred,
}

impl UnassignReason {
    /// The snake_case name (as serialized), for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            UnassignReason::ReturnedByAgent => "returned_by_agent",
            UnassignReason::AgentUnavailable => "agent_unavailable",
            UnassignReason::Unresponsive => "unresponsive",
            UnassignReason::Transferred => "transferred",
        }
    }
}

/// Hints for the skill queue's choice of agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHints {
    /// The consumer's last agent: preferred while they have room.
    #[serde(default)]
    pub preferred_agent: Option<AgentId>,
    /// The agent that gave the conversation back: another agent is preferred.
    #[serde(default)]
    pub avoid_agent: Option<AgentId>,
    /// A transfer to a named agent: only that agent, until `target_until`.
    #[serde(default)]
    pub target_agent: Option<AgentId>,
    #[serde(default)]
    pub target_until: Option<Timestamp>,
}

/// A command that does not fit the conversation's state. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("conversation is closed")]
    Closed,
    #[error("conversation is not assigned to agent {0}")]
    NotHeldBy(AgentId),
    #[error("conversation has no pending offer for agent {0}")]
    NoOfferFor(AgentId),
    #[error("the offer is stale: the conversation was routed elsewhere")]
    StaleOffer,
    #[error("conversation is already on skill {0}")]
    SameSkill(SkillId),
    #[error("follow-up must be in the future")]
    FollowUpNotInFuture,
    #[error("conversation is open: only a closed one can be reopened")]
    NotClosed,
}

/// How and when a conversation was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    pub by: ClosedBy,
    pub at: Timestamp,
}

/// One conversation. Plain data: the store's record, read back at recovery and by a
/// node taking its shard over; shown in the API through a view of its own.
///
/// Its JSON form is the store's record (`conversations.record`), every field written.
/// Every field but the ids, `seq`, the phases, `opened_at`, `last_consumer_message_at`
/// and `epoch` also reads when left out (as its default: `null`, `false`, `0`,
/// empty), so that a later build may write compact records (about 500 B instead of
/// 900 B, the defaults left out) without stopping this one from reading them: a
/// cluster upgraded node by node has both builds reading the same rows. This build
/// still writes every field; see BENCHMARKS.md, "A compact record", for why not yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub consumer_id: ConsumerId,
    pub skill: SkillId,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub urgent: bool,
    /// The consumer's first conversation (first-time SLA).
    #[serde(default)]
    pub first_time: bool,
    /// Unique, increasing: the rank key's tie-breaker.
    pub seq: u64,
    pub state: Phase,
    pub awaiting: Awaiting,
    pub activity: Activity,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    /// The agent holding a pending offer (state `offered`).
    #[serde(default)]
    pub offered_to: Option<AgentId>,
    pub opened_at: Timestamp,
    /// When the current stay in the queue began; kept through consumer messages so a
    /// conversation never loses its place. `None` while assigned or closed.
    #[serde(default)]
    pub queued_at: Option<Timestamp>,
    pub last_consumer_message_at: Timestamp,
    #[serde(default)]
    pub last_agent_message_at: Option<Timestamp>,
    /// Start of the current wait for an agent: the anchor of the SLA.
    #[serde(default)]
    pub wait_started_at: Option<Timestamp>,
    #[serde(default)]
    pub sla: Option<Sla>,
    #[serde(default)]
    pub soon_overdue: bool,
    #[serde(default)]
    pub overdue: bool,
    /// A follow-up promised by the agent.
    #[serde(default)]
    pub manual_due_at: Option<Timestamp>,
    /// The follow-up was far enough away to release the conversation's weight.
    #[serde(default)]
    pub manual_release: bool,
    /// When the agent set the pending follow-up: a consumer message after it makes the
    /// conversation active (not actionable) until the agent answers.
    #[serde(default)]
    pub follow_up_set_at: Option<Timestamp>,
    #[serde(default)]
    pub transfers: u32,
    #[serde(default)]
    pub returned_to_queue: bool,
    /// Transferred (without a pending follow-up) and not assigned since: actionable even
    /// while it waits for the consumer (an agent transfer when the agent wrote last
    /// starts no SLA, but the conversation is still routed to the agent).
    #[serde(default)]
    pub in_transfer: bool,
    /// Assigned at least once: it no longer falls back to the fallback skill.
    #[serde(default)]
    pub was_assigned: bool,
    #[serde(default)]
    pub route: RouteHints,
    /// Also queued on the skill's fallback skill.
    #[serde(default)]
    pub fallback_active: bool,
    pub epoch: u64,
    #[serde(default)]
    pub first_response_at: Option<Timestamp>,
    #[serde(default)]
    pub closed: Option<Closure>,
    /// When the current agent got it (recovery gives the agent back this time).
    #[serde(default)]
    pub assigned_at: Option<Timestamp>,
}

/// What the consumer's first message says.
#[derive(Clone, Debug)]
pub struct OpenRequest {
    pub id: ConversationId,
    pub consumer_id: ConsumerId,
    pub skill: SkillId,
    pub attributes: BTreeMap<String, String>,
    pub urgent: bool,
    pub first_time: bool,
    pub preferred_agent: Option<AgentId>,
    pub seq: u64,
}

impl Conversation {
    pub fn open(req: OpenRequest, now: Timestamp, skill: &Skill) -> Self {
        let mut c = Conversation {
            id: req.id,
            consumer_id: req.consumer_id,
            skill: req.skill,
            attributes: req.attributes,
            urgent: req.urgent,
            first_time: req.first_time,
            seq: req.seq,
            state: Phase::Queued,
            awaiting: Awaiting::Agent,
            activity: Activity::Active,
            agent_id: None,
            offered_to: None,
            opened_at: now,
            queued_at: Some(now),
            last_consumer_message_at: now,
            last_agent_message_at: None,
            wait_started_at: Some(now),
            sla: None,
            soon_overdue: false,
            overdue: false,
            manual_due_at: None,
            follow_up_set_at: None,
            manual_release: false,
            transfers: 0,
            returned_to_queue: false,
            in_transfer: false,
            was_assigned: false,
            route: RouteHints {
                preferred_agent: req.preferred_agent,
                ..RouteHints::default()
            },
            fallback_active: false,
            epoch: 1,
            first_response_at: None,
            closed: None,
            assigned_at: None,
        };
        c.restart_sla(now, skill);
        c
    }

    pub fn is_closed(&self) -> bool {
        self.state == Phase::Closed
    }

    /// Waits for an agent (the consumer wrote last, a follow-up came due, or it was
    /// transferred or returned).
    pub fn actionable(&self) -> bool {
        !self.is_closed() && (self.awaiting == Awaiting::Agent || self.in_transfer)
    }

    /// Since when a queued conversation has been waiting in line: when it entered the
    /// queue, or when it last became actionable there if that was later (a consumer who
    /// answers a conversation queued while waiting for them, a follow-up coming due).
    /// Waiting for the consumer is not waiting in line (LivePerson's time in queue).
    /// It ranks the queue, and is the wait reported and measured at assignment.
    pub fn in_line_since(&self) -> Option<Timestamp> {
        let queued = self.queued_at?;
        Some(match (self.awaiting, self.wait_started_at) {
            (Awaiting::Agent, Some(w)) => queued.max(w),
            _ => queued,
        })
    }

    /// Nothing will happen until the consumer writes or a deadline comes due: closed,
    /// waiting for the consumer while assigned, or in the queue but not actionable.
    /// Such a conversation needs no live activation (it is passivated).
    pub fn is_quiet(&self) -> bool {
        match self.state {
            Phase::Closed => true,
            Phase::Assigned => self.awaiting == Awaiting::Consumer,
            Phase::Queued => !self.actionable(),
            Phase::Offered => false,
        }
    }

    /// In a queue: unassigned and open.
    pub fn in_queue(&self) -> bool {
        matches!(self.state, Phase::Queued | Phase::Offered)
    }

    pub fn weight(&self, skill: &Skill) -> Weight {
        skill.weight(self.activity)
    }

    /// Since when the consumer has been waiting for the holding agent's answer, if they
    /// are: what automatic unassignment looks at. Counted from the assignment at the
    /// earliest (an agent who just got a conversation has had no time to answer yet). A
    /// follow-up the agent promised is not pending (it stays with its agent, even once
    /// due), nor is a conversation waiting for the consumer.
    pub fn pending_agent_since(&self) -> Option<Timestamp> {
        if self.state != Phase::Assigned || self.awaiting != Awaiting::Agent || self.manual_due_at.is_some() {
            return None;
        }
        let waited = self.wait_started_at?;
        Some(self.assigned_at.map_or(waited, |a| waited.max(a)))
    }

    /// What the holding agent is told of this conversation.
    pub fn holding(&self, skill: &Skill, policy: &RoutingPolicy) -> Holding {
        Holding {
            weight: self.weight(skill),
            activity: self.activity,
            pending_since: self.pending_for_agent(policy),
        }
    }

    /// The wait the holding agent keeps ([`Self::pending_agent_since`]) when automatic
    /// unassignment is on, its only reader; none when it is off, so that an answer
    /// from either side, which only moves the wait, tells the agent nothing.
    pub fn pending_for_agent(&self, policy: &RoutingPolicy) -> Option<Timestamp> {
        if policy.unassign.is_on() {
            self.pending_agent_since()
        } else {
            None
        }
    }

    fn ensure_open(&self) -> Result<(), ConversationError> {
        if self.is_closed() {
            Err(ConversationError::Closed)
        } else {
            Ok(())
        }
    }

    fn ensure_held_by(&self, agent: &AgentId) -> Result<(), ConversationError> {
        self.ensure_open()?;
        if self.state == Phase::Assigned && self.agent_id.as_ref() == Some(agent) {
            Ok(())
        } else {
            Err(ConversationError::NotHeldBy(agent.clone()))
        }
    }

    /// The skill's open time changed (switched off hours or back): the running wait's
    /// deadline is computed again from its start.
    pub fn open_time_changed(&mut self, now: Timestamp, skill: &Skill) {
        self.restart_sla(now, skill);
    }

    /// Recomputes the deadline of the current wait (a manual SLA is kept as it is).
    fn restart_sla(&mut self, now: Timestamp, skill: &Skill) {
        if self.manual_due_at.is_none() {
            let kind = SlaPolicy::kind_for(self.urgent, self.first_time);
            self.sla = self.wait_started_at.and_then(|anchor| skill.due(anchor, kind));
        }
        self.refresh_sla_flags(now, None);
    }

    fn refresh_sla_flags(&mut self, now: Timestamp, policy: Option<&RoutingPolicy>) {
        match self.sla {
            Some(sla) => {
                self.overdue = now >= sla.due_at;
                let soon = policy.map_or(Duration::from_secs(300), |p| p.soon_overdue_before);
                self.soon_overdue = !self.overdue && now >= sla.due_at.minus(soon);
            }
            None => {
                self.overdue = false;
                self.soon_overdue = false;
            }
        }
    }

    /// Starts a wait for an agent at `now` unless one is running already.
    fn begin_wait(&mut self, now: Timestamp) {
        if self.awaiting == Awaiting::Consumer || self.wait_started_at.is_none() {
            self.awaiting = Awaiting::Agent;
            self.wait_started_at = Some(now);
        }
    }

    fn enter_queue(&mut self, now: Timestamp) {
        self.state = Phase::Queued;
        self.in_transfer = false;
        self.agent_id = None;
        self.assigned_at = None;
        self.offered_to = None;
        self.queued_at = Some(now);
        self.fallback_active = false;
        self.epoch += 1;
    }

    /// The consumer wrote. Starts a wait for an agent (restarting the SLA) unless one is
    /// running or the agent promised a follow-up (it stays as it is: actionable when it
    /// comes due); never moves the conversation back in its queue.
    pub fn consumer_message(&mut self, now: Timestamp, skill: &Skill) -> Result<(), ConversationError> {
        self.ensure_open()?;
        self.last_consumer_message_at = now;
        if self.awaiting == Awaiting::Consumer && self.manual_due_at.is_none() {
            self.begin_wait(now);
            self.restart_sla(now, skill);
        }
        self.activity = Activity::Active;
        Ok(())
    }

    /// The assigned agent wrote: the wait ends, a pending follow-up is fulfilled.
    pub fn agent_message(&mut self, agent: &AgentId, now: Timestamp) -> Result<(), ConversationError> {
        self.ensure_held_by(agent)?;
        self.last_agent_message_at = Some(now);
        self.first_response_at.get_or_insert(now);
        self.awaiting = Awaiting::Consumer;
        self.wait_started_at = None;
        self.manual_due_at = None;
        self.follow_up_set_at = None;
        self.manual_release = false;
        self.sla = None;
        self.refresh_sla_flags(now, None);
        self.activity = Activity::Active;
        Ok(())
    }

    /// The consumer asked for an urgent answer: the urgent SLA applies to the current
    /// wait (same anchor) and to later ones.
    pub fn mark_urgent(&mut self, now: Timestamp, skill: &Skill) -> Result<(), ConversationError> {
        self.ensure_open()?;
        self.urgent = true;
        self.restart_sla(now, skill);
        Ok(())
    }

    /// An agent received an offer for this conversation (offer mode).
    pub fn offer_made(&mut self, agent: &AgentId, epoch: u64) -> Result<(), ConversationError> {
        self.ensure_open()?;
        if self.state != Phase::Queued || epoch != self.epoch {
            return Err(ConversationError::StaleOffer);
        }
        self.state = Phase::Offered;
        self.offered_to = Some(agent.clone());
        Ok(())
    }

    /// A pending offer was rejected or timed out: back to `queued`, same place.
    pub fn offer_withdrawn(&mut self, agent: &AgentId, epoch: u64) -> bool {
        if self.state == Phase::Offered && epoch == self.epoch && self.offered_to.as_ref() == Some(agent) {
            self.state = Phase::Queued;
            self.offered_to = None;
            true
        } else {
            false
        }
    }

    /// Assigns the conversation to `agent` if the offer's `epoch` is still current (and,
    /// while an offer is pending, if `agent` holds it). Returns the time it waited.
    pub fn assign(&mut self, agent: &AgentId, epoch: u64, now: Timestamp) -> Result<Duration, ConversationError> {
        self.ensure_open()?;
        if !self.in_queue() || epoch != self.epoch {
            return Err(ConversationError::StaleOffer);
        }
        if self.state == Phase::Offered && self.offered_to.as_ref() != Some(agent) {
            return Err(ConversationError::NoOfferFor(agent.clone()));
        }
        let waited = self.in_line_since().map_or(Duration::ZERO, |q| now.since(q));
        self.state = Phase::Assigned;
        self.in_transfer = false;
        self.was_assigned = true;
        self.agent_id = Some(agent.clone());
        self.assigned_at = Some(now);
        self.offered_to = None;
        self.queued_at = None;
        self.route = RouteHints::default();
        self.returned_to_queue = false;
        self.fallback_active = false;
        self.epoch += 1;
        Ok(waited)
    }

    /// Takes the conversation from `agent` back to the queue.
    pub fn unassign(
        &mut self,
        agent: &AgentId,
        reason: UnassignReason,
        now: Timestamp,
        skill: &Skill,
    ) -> Result<(), ConversationError> {
        self.ensure_held_by(agent)?;
        self.enter_queue(now);
        self.route.avoid_agent = Some(agent.clone());
        if reason == UnassignReason::ReturnedByAgent {
            self.returned_to_queue = true;
            // A follow-up keeps its time: actionable for the next agent when it comes due.
            if self.manual_due_at.is_none() {
                self.begin_wait(now);
                self.restart_sla(now, skill);
            }
        }
        Ok(())
    }

    /// Moves the conversation to `new_skill`; the SLA is recomputed from it. Returns the
    /// agent that held it, if any.
    pub fn transfer_to_skill(
        &mut self,
        new_skill: &Skill,
        now: Timestamp,
    ) -> Result<Option<AgentId>, ConversationError> {
        self.ensure_open()?;
        if new_skill.id == self.skill {
            return Err(ConversationError::SameSkill(new_skill.id.clone()));
        }
        let previous = self.agent_id.clone();
        self.skill = new_skill.id.clone();
        self.transferred(now, new_skill, true);
        Ok(previous)
    }

    /// Routes the conversation to a named agent, who has `max_wait` to take it before
    /// any agent of `skill` may; `skill` may be a new one for the conversation (an agent
    /// and a skill in one transfer). A consumer waiting keeps the wait's anchor (the SLA
    /// is recomputed with `skill`); when the agent wrote last, no SLA starts, and the
    /// conversation is routed all the same. Returns the agent that held it, if any.
    pub fn transfer_to_agent(
        &mut self,
        target: &AgentId,
        now: Timestamp,
        max_wait: Duration,
        skill: &Skill,
    ) -> Result<Option<AgentId>, ConversationError> {
        self.ensure_open()?;
        let previous = self.agent_id.clone();
        self.skill = skill.id.clone();
        self.transferred(now, skill, false);
        self.route.target_agent = Some(target.clone());
        self.route.target_until = Some(now.plus(max_wait));
        Ok(previous)
    }

    /// Back in the queue by a transfer. A follow-up keeps its time (actionable for the
    /// new agent when it comes due). Otherwise `restart` (a skill transfer) starts the
    /// SLA afresh at the transfer, with the new skill's response time; an agent transfer
    /// keeps a running wait, or, when the agent wrote last, starts none.
    fn transferred(&mut self, now: Timestamp, skill: &Skill, restart: bool) {
        self.enter_queue(now);
        self.transfers += 1;
        self.route = RouteHints::default();
        if self.manual_due_at.is_none() {
            if restart {
                self.awaiting = Awaiting::Agent;
                self.wait_started_at = Some(now);
            }
            self.in_transfer = true;
        }
        self.restart_sla(now, skill);
        self.activity = Activity::Active;
    }

    /// The agent promises a follow-up by `now + due_in`. Later consumer messages do not
    /// move it; the agent's next message fulfils it.
    pub fn set_follow_up(
        &mut self,
        agent: &AgentId,
        due_in: Duration,
        now: Timestamp,
        policy: &RoutingPolicy,
    ) -> Result<(), ConversationError> {
        self.ensure_held_by(agent)?;
        if due_in.is_zero() {
            return Err(ConversationError::FollowUpNotInFuture);
        }
        let due_at = now.plus(due_in);
        self.manual_due_at = Some(due_at);
        self.follow_up_set_at = Some(now);
        self.manual_release = due_in > policy.manual_sla_release;
        self.awaiting = Awaiting::Consumer;
        self.wait_started_at = None;
        self.last_agent_message_at.get_or_insert(now);
        self.sla = Some(Sla {
            kind: SlaKind::Manual,
            due_at,
        });
        self.refresh_sla_flags(now, Some(policy));
        self.activity = self.desired_activity(now, None, policy);
        Ok(())
    }

    /// Closes the conversation. When an agent closes it, it must hold it. Returns the
    /// agent that held it, if any.
    pub fn close(
        &mut self,
        by: ClosedBy,
        agent: Option<&AgentId>,
        now: Timestamp,
    ) -> Result<Option<AgentId>, ConversationError> {
        self.ensure_open()?;
        if let Some(agent) = agent {
            if self.agent_id.as_ref() != Some(agent) {
                return Err(ConversationError::NotHeldBy(agent.clone()));
            }
        }
        let previous = self.agent_id.clone();
        self.state = Phase::Closed;
        self.closed = Some(Closure { by, at: now });
        self.queued_at = None;
        self.offered_to = None;
        self.fallback_active = false;
        self.epoch += 1;
        Ok(previous)
    }

    /// Brings a closed conversation back to its queue. The consumer (`agent: None`)
    /// wrote again: a wait starts (SLA from now) and the last agent is preferred while
    /// they have room. An agent (`Some`) reopens it to write to the consumer: routed to
    /// that agent alone for `max_wait`, then to any agent of the skill, with an SLA from
    /// now (the agent owes the next message). Returns the last agent.
    pub fn reopen(
        &mut self,
        agent: Option<&AgentId>,
        now: Timestamp,
        max_wait: Duration,
        skill: &Skill,
    ) -> Result<Option<AgentId>, ConversationError> {
        if !self.is_closed() {
            return Err(ConversationError::NotClosed);
        }
        let last = self.agent_id.take();
        self.closed = None;
        self.enter_queue(now);
        self.route = RouteHints::default();
        match agent {
            None => {
                self.last_consumer_message_at = now;
                self.route.preferred_agent = last.clone();
            }
            Some(a) => {
                self.route.target_agent = Some(a.clone());
                self.route.target_until = Some(now.plus(max_wait));
            }
        }
        self.manual_due_at = None;
        self.follow_up_set_at = None;
        self.manual_release = false;
        self.returned_to_queue = false;
        self.awaiting = Awaiting::Agent;
        self.wait_started_at = Some(now);
        self.sla = None;
        self.restart_sla(now, skill);
        self.activity = Activity::Active;
        Ok(last)
    }

    /// The activity the conversation should have at `now` (Smart Capacity).
    fn desired_activity(&self, now: Timestamp, skill: Option<&Skill>, policy: &RoutingPolicy) -> Activity {
        if self.awaiting == Awaiting::Agent {
            return Activity::Active;
        }
        if let Some(due) = self.manual_due_at {
            if now >= due.minus(policy.reactivate_before) {
                return Activity::Active;
            }
            // The consumer wrote since the follow-up was set: the agent has something to read.
            if self.follow_up_set_at.is_some_and(|t| self.last_consumer_message_at > t) {
                return Activity::Active;
            }
            if self.manual_release {
                return Activity::Inactive;
            }
        }
        match (self.last_agent_message_at, skill) {
            // Queue backlog management: the agent answered a message this old.
            (Some(t), _) if t.since(self.last_consumer_message_at) >= policy.backlog_after => Activity::Inactive,
            (Some(t), Some(skill)) if now >= t.plus(skill.inactive_after) => Activity::Inactive,
            (_, None) => self.activity,
            _ => Activity::Active,
        }
    }

    /// Applies every change that is due at `now`.
    pub fn tick(&mut self, now: Timestamp, skill: &Skill, fallback: bool, policy: &RoutingPolicy) {
        if self.is_closed() {
            return;
        }
        if let Some(at) = self.follow_up_actionable_at(policy) {
            if now >= at {
                self.awaiting = Awaiting::Agent;
                self.wait_started_at = Some(at);
            }
        }
        self.activity = self.desired_activity(now, Some(skill), policy);
        self.refresh_sla_flags(now, Some(policy));
        if let Some(until) = self.route.target_until {
            if now >= until {
                self.route.target_agent = None;
                self.route.target_until = None;
            }
        }
        if let Some(at) = self.fallback_at(skill, fallback) {
            if now >= at {
                self.fallback_active = true;
            }
        }
        if let Some(at) = self.auto_close_at(skill) {
            if now >= at {
                // Cannot fail: the conversation is open and no agent is named.
                let _ = self.close(ClosedBy::System, None, now);
            }
        }
    }

    /// When a follow-up not yet actionable becomes so: `reactivate_before` ahead of its
    /// due time (LivePerson's manual SLA), whatever the consumer wrote meanwhile.
    fn follow_up_actionable_at(&self, policy: &RoutingPolicy) -> Option<Timestamp> {
        match (self.awaiting, self.manual_due_at) {
            (Awaiting::Consumer, Some(due)) => Some(due.minus(policy.reactivate_before)),
            _ => None,
        }
    }

    fn auto_close_at(&self, skill: &Skill) -> Option<Timestamp> {
        if self.awaiting != Awaiting::Consumer || self.manual_due_at.is_some() {
            return None;
        }
        let quiet_since = self.last_agent_message_at.unwrap_or(self.opened_at);
        Some(quiet_since.plus(skill.auto_close_after))
    }

    /// Whether the conversation may fall back at all (LivePerson: only conversations
    /// never assigned, not those returned, transferred or unassigned).
    pub fn may_fall_back(&self) -> bool {
        !self.was_assigned && self.transfers == 0
    }

    fn fallback_at(&self, skill: &Skill, has_fallback: bool) -> Option<Timestamp> {
        if !has_fallback || self.fallback_active || !self.in_queue() || !self.actionable() || !self.may_fall_back() {
            return None;
        }
        Some(self.in_line_since()?.plus(skill.fallback_after?))
    }

    /// The next instant after `now` at which [`tick`](Self::tick) would change something.
    pub fn next_deadline(
        &self,
        now: Timestamp,
        skill: &Skill,
        fallback: bool,
        policy: &RoutingPolicy,
    ) -> Option<Timestamp> {
        // Anything at or before `now` was applied by the tick that preceded this call.
        self.deadlines(skill, fallback, policy)
            .into_iter()
            .filter(|t| *t > now)
            .min()
    }

    /// The earliest of the conversation's deadlines, passed or not: one at or before
    /// `now` means a [`Conversation::tick`] is due. (Recovery uses it to tick only the
    /// conversations whose deadlines passed while the node was down.)
    pub fn earliest_deadline(&self, skill: &Skill, fallback: bool, policy: &RoutingPolicy) -> Option<Timestamp> {
        self.deadlines(skill, fallback, policy).into_iter().min()
    }

    fn deadlines(&self, skill: &Skill, fallback: bool, policy: &RoutingPolicy) -> Vec<Timestamp> {
        if self.is_closed() {
            return Vec::new();
        }
        let mut candidates: Vec<Timestamp> = Vec::with_capacity(8);
        if let Some(sla) = self.sla {
            if !self.soon_overdue && !self.overdue {
                candidates.push(sla.due_at.minus(policy.soon_overdue_before));
            }
            if !self.overdue {
                candidates.push(sla.due_at);
            }
        }
        if self.awaiting == Awaiting::Consumer {
            candidates.extend(self.follow_up_actionable_at(policy));
            if self.activity == Activity::Active {
                if let Some(t) = self.last_agent_message_at {
                    candidates.push(t.plus(skill.inactive_after));
                }
            }
        }
        candidates.extend(self.route.target_until);
        candidates.extend(self.fallback_at(skill, fallback));
        candidates.extend(self.auto_close_at(skill));
        candidates
    }

    /// Value of an attribute for priority rules, including the built-in ones.
    pub fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "transfers" => Some(Cow::Owned(self.transfers.to_string())),
            "returned_to_queue" => Some(Cow::Borrowed(bool_str(self.returned_to_queue))),
            "urgent" => Some(Cow::Borrowed(bool_str(self.urgent))),
            "first_time" => Some(Cow::Borrowed(bool_str(self.first_time))),
            _ => self.attributes.get(name).map(|v| Cow::Borrowed(v.as_str())),
        }
    }

    pub fn priority(&self, skill: &Skill) -> i32 {
        rank::priority(&skill.priority_rules, |name| self.attribute(name))
    }

    /// The entry this conversation should have in its skill queues, if it is in one.
    pub fn queue_entry(&self, skill: &Skill, policy: &RoutingPolicy) -> Option<QueueEntry> {
        if !self.in_queue() {
            return None;
        }
        let queued_at = self.in_line_since()?;
        let priority = self.priority(skill);
        let key = rank::rank_key(
            &RankInputs {
                overdue: self.overdue,
                follow_up: self.actionable() && self.manual_due_at.is_some(),
                due_at: self.sla.map_or(queued_at, |s| s.due_at),
                queued_at,
                last_consumer_message_at: self.last_consumer_message_at,
                priority,
                seq: self.seq,
            },
            &policy.ranking,
        );
        Some(QueueEntry {
            conversation_id: self.id.clone(),
            home_skill: self.skill.clone(),
            epoch: self.epoch,
            actionable: self.actionable(),
            key,
            weight: skill.active_weight,
            hints: self.route.clone(),
            queued_at,
            due_at: self.sla.map(|s| s.due_at),
            overdue: self.overdue,
            priority,
            in_fallback: self.fallback_active,
            because: if self.manual_due_at.is_some() {
                Because::FollowUpDue
            } else if self.in_transfer {
                Because::Transferred
            } else if self.returned_to_queue {
                Because::Returned
            } else {
                Because::ConsumerWroteLast
            },
            first_time: self.first_time,
        })
    }

    /// After a crash of its actor: answers to offers may have been lost with the old
    /// mailbox, so the queue entry is renewed (new epoch; a pending offer is dropped).
    /// Returns the old epoch, whose offers must be voided, if it is in a queue.
    pub fn renew_queue_entry(&mut self) -> Option<u64> {
        if !self.in_queue() {
            return None;
        }
        let old = self.epoch;
        self.epoch += 1;
        self.state = Phase::Queued;
        self.offered_to = None;
        Some(old)
    }

    /// The skill queue found no agent online in the skill: use the fallback skill now.
    pub fn activate_fallback(&mut self, epoch: u64) -> bool {
        if self.in_queue() && epoch == self.epoch && !self.fallback_active && self.may_fall_back() {
            self.fallback_active = true;
            true
        } else {
            false
        }
    }

    /// The queues this conversation stands in: its skill, and its fallback when active.
    pub fn queues(&self, skill: &Skill) -> Vec<SkillId> {
        if !self.in_queue() {
            return Vec::new();
        }
        let mut queues = vec![self.skill.clone()];
        if self.fallback_active {
            queues.extend(skill.fallback_skill.clone());
        }
        queues
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests;
