//! One agent as a pure value: status, the conversations it holds with their weights,
//! offers in flight (reservations), and warm-up.
//!
//! The agent is the only authority on its room: [`Agent::reserve`] checks and takes
//! room in one step, so two queues offering at once cannot both fit into the last slot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::capacity::{self, CapacityLimits, NoRoom, Warmup, Weight};
use crate::domain::conversation::{Activity, UnassignReason};
use crate::domain::queue::AgentRoom;
use crate::domain::skill::RoutingPolicy;
use crate::ids::{AgentId, ConversationId, GroupId, SkillId};
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Receives new work.
    Online,
    /// A short break: no new work, keeps its conversations.
    BackSoon,
    /// No new work; keeps its conversations unless `routing.unassign.away_after_secs`
    /// is set (then those waiting for its answer go back to the queue).
    Away,
    /// As away, with `routing.unassign.offline_after_secs`.
    Offline,
}

impl AgentStatus {
    pub const ALL: [AgentStatus; 4] = [Self::Online, Self::BackSoon, Self::Away, Self::Offline];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::BackSoon => "back_soon",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

/// A conversation the agent holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub skill: SkillId,
    pub weight: Weight,
    pub activity: Activity,
    /// Since when the consumer waits for this agent's answer (see
    /// [`Conversation::pending_agent_since`](crate::domain::conversation::Conversation::pending_agent_since)).
    #[serde(default)]
    pub pending_since: Option<Timestamp>,
    pub assigned_at: Timestamp,
}

impl Held {
    fn new(skill: SkillId, holding: Holding, assigned_at: Timestamp) -> Held {
        Held {
            skill,
            weight: holding.weight,
            activity: holding.activity,
            pending_since: holding.pending_since,
            assigned_at,
        }
    }
}

/// What a conversation tells the agent that holds it, on assignment and on each change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holding {
    pub weight: Weight,
    pub activity: Activity,
    /// Since when the consumer waits for the agent's answer; `None` when they do not (or
    /// for a follow-up the agent promised).
    pub pending_since: Option<Timestamp>,
}

/// A held conversation that automatic unassignment gives back to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unassignment {
    pub conversation: ConversationId,
    pub reason: UnassignReason,
    /// The wait it was given back for: the conversation goes back only if the consumer
    /// is still waiting since then (the agent may have answered on the way).
    pub pending_since: Timestamp,
}

/// Room taken for an offer that is not settled yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub skill: SkillId,
    /// The skill queue that made the offer (differs from `skill` for fallback offers).
    pub queue: SkillId,
    pub weight: Weight,
    /// The conversation's queue epoch the offer was made for.
    pub epoch: u64,
    pub offered_at: Timestamp,
    /// Offer mode: when an unanswered offer goes to the next agent.
    pub expires_at: Option<Timestamp>,
    /// The agent accepted; waiting for the conversation to confirm.
    pub accepted: bool,
}

/// An offer as the agent receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingOffer {
    pub conversation: ConversationId,
    /// The conversation's own skill.
    pub skill: SkillId,
    /// The skill queue that made the offer.
    pub queue: SkillId,
    pub weight: Weight,
    /// The conversation's queue epoch when the offer was made.
    pub epoch: u64,
    /// `None`: auto-accept.
    pub offer_timeout: Option<Duration>,
}

/// The registration of an agent (`PUT /v1/agents/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub skills: Vec<SkillId>,
    pub max_slots: u32,
    pub max_open: Option<u32>,
    /// The agent's group, for skills that route to groups (`group_routing`).
    pub group: Option<GroupId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub skills: Vec<SkillId>,
    pub limits: CapacityLimits,
    pub status: AgentStatus,
    pub status_since: Timestamp,
    /// Why the agent is away (one of `routing.away_reasons`); `None` otherwise.
    #[serde(default)]
    pub status_reason: Option<String>,
    pub conversations: BTreeMap<ConversationId, Held>,
    pub reservations: BTreeMap<ConversationId, Reservation>,
    pub warmup: Warmup,
    pub last_assigned_at: Option<Timestamp>,
    #[serde(default)]
    pub group: Option<GroupId>,
}

impl Agent {
    /// A new agent starts offline.
    pub fn new(id: AgentId, spec: AgentSpec, now: Timestamp, policy: &RoutingPolicy) -> Self {
        Agent {
            id,
            skills: spec.skills,
            limits: CapacityLimits {
                max_slots: spec.max_slots,
                overflow: policy.overflow,
                max_open: spec.max_open,
            },
            status: AgentStatus::Offline,
            status_since: now,
            status_reason: None,
            conversations: BTreeMap::new(),
            reservations: BTreeMap::new(),
            warmup: Warmup::default(),
            last_assigned_at: None,
            group: spec.group,
        }
    }

    pub fn reconfigure(&mut self, spec: AgentSpec, policy: &RoutingPolicy) {
        self.skills = spec.skills;
        self.group = spec.group;
        self.limits = CapacityLimits {
            max_slots: spec.max_slots,
            overflow: policy.overflow,
            max_open: spec.max_open,
        };
    }

    /// Σ weights of held conversations and of offers in flight.
    pub fn busy(&self) -> Weight {
        self.conversations.values().map(|h| h.weight).sum::<Weight>()
            + self.reservations.values().map(|r| r.weight).sum::<Weight>()
    }

    /// Weight of held conversations only (what the agent shows as its load).
    pub fn busy_held(&self) -> Weight {
        self.conversations.values().map(|h| h.weight).sum()
    }

    pub fn num_open(&self) -> u32 {
        (self.conversations.len() + self.reservations.len()) as u32
    }

    /// The warm-up as it stands at `now` (a long time without assignments restarts it).
    fn warmup_at(&self, now: Timestamp, policy: &RoutingPolicy) -> Warmup {
        match (&policy.warmup, self.last_assigned_at) {
            (Some(w), Some(last)) if !self.warmup.warming && now >= last.plus(w.idle_reset) => Warmup::restart(),
            _ => self.warmup,
        }
    }

    fn check(&self, weight: Weight, now: Timestamp, policy: &RoutingPolicy) -> Result<(), NoRoom> {
        if self.status != AgentStatus::Online {
            return Err(NoRoom::NotOnline);
        }
        if let Some(w) = &policy.warmup {
            if !self.warmup_at(now, policy).allows(now, w) || (self.warmup.warming && !self.reservations.is_empty()) {
                return Err(NoRoom::WarmingUp);
            }
        }
        capacity::fits(self.busy(), self.num_open(), weight, &self.limits)
    }

    /// What the agent tells its skill queues.
    pub fn room(&self, now: Timestamp, policy: &RoutingPolicy) -> AgentRoom {
        let online = self.status == AgentStatus::Online;
        AgentRoom {
            online,
            away: matches!(self.status, AgentStatus::Away | AgentStatus::BackSoon),
            accepting: online && self.check(Weight::ZERO, now, policy).is_ok(),
            free: capacity::free_weight(self.busy(), &self.limits),
            busy: self.busy(),
            slots: Weight::from_slots(f64::from(self.limits.max_slots)),
        }
    }

    /// An offer of a conversation for a newer queue entry (a higher epoch) than the one
    /// the agent has a reservation for: the conversation has entered a queue again
    /// since (a transfer, a fallback entry), so the old offer can never be confirmed
    /// (the conversation voids the old epoch). Removes and returns that reservation, for
    /// its queue to be told; the new offer is then judged on its own
    /// ([`Agent::reserve`]), not refused as a duplicate.
    pub fn supersede(&mut self, conversation: &ConversationId, epoch: u64) -> Option<Reservation> {
        if self.reservations.get(conversation).is_some_and(|r| r.epoch < epoch) {
            self.reservations.remove(conversation)
        } else {
            None
        }
    }

    /// Takes room for an offer, or says why there is none. An older reservation of the
    /// same conversation is [`Agent::supersede`]d first (by the caller, which tells its
    /// queue); one for the same or a newer epoch is a duplicate.
    pub fn reserve(&mut self, offer: &IncomingOffer, now: Timestamp, policy: &RoutingPolicy) -> Result<(), NoRoom> {
        let id = &offer.conversation;
        if self.conversations.contains_key(id) || self.reservations.contains_key(id) {
            // Already ours (a duplicate offer): taking it twice would double its weight.
            return Err(NoRoom::AlreadyHeld);
        }
        self.check(offer.weight, now, policy)?;
        self.reservations.insert(
            id.clone(),
            Reservation {
                skill: offer.skill.clone(),
                queue: offer.queue.clone(),
                weight: offer.weight,
                epoch: offer.epoch,
                offered_at: now,
                expires_at: offer.offer_timeout.map(|t| now.plus(t)),
                accepted: offer.offer_timeout.is_none(),
            },
        );
        Ok(())
    }

    /// The conversation confirmed the assignment: the reservation becomes a held conversation.
    pub fn confirm(
        &mut self,
        conversation: &ConversationId,
        holding: Holding,
        now: Timestamp,
        policy: &RoutingPolicy,
    ) -> bool {
        let weight = holding.weight;
        let Some(r) = self.reservations.get(conversation) else {
            return false;
        };
        // The room was taken at the offer's weight; a skill reconfigured since may have
        // made the conversation heavier. Never hold more than the ceiling by assignment.
        if weight > r.weight && self.busy() - r.weight + weight > self.limits.ceiling() {
            return false;
        }
        let Some(r) = self.reservations.remove(conversation) else {
            return false;
        };
        self.conversations
            .insert(conversation.clone(), Held::new(r.skill, holding, now));
        if policy.warmup.is_some() {
            self.warmup = self.warmup_at(now, policy);
            self.warmup
                .on_assigned(now, self.conversations.len() as u32, self.limits.max_slots);
        }
        self.last_assigned_at = Some(now);
        true
    }

    /// Holds a conversation assigned to this agent for which it has no reservation: the
    /// room was taken by an earlier actor of the agent (rebuilt on a shard move or a
    /// restart while the assignment was on its way). Held only if it fits the agent's
    /// capacity now and the agent is not offline; otherwise the caller unassigns it.
    pub fn hold_unreserved(
        &mut self,
        conversation: &ConversationId,
        skill: SkillId,
        holding: Holding,
        assigned_at: Timestamp,
    ) -> bool {
        if self.status == AgentStatus::Offline
            || self.conversations.contains_key(conversation)
            || capacity::fits(self.busy(), self.num_open(), holding.weight, &self.limits).is_err()
        {
            return false;
        }
        self.conversations
            .insert(conversation.clone(), Held::new(skill, holding, assigned_at));
        self.last_assigned_at = Some(self.last_assigned_at.map_or(assigned_at, |t| t.max(assigned_at)));
        true
    }

    /// Drops a conversation or an offer for it; returns whether anything was dropped.
    pub fn release(&mut self, conversation: &ConversationId) -> bool {
        self.conversations.remove(conversation).is_some() | self.reservations.remove(conversation).is_some()
    }

    /// What the conversation told of itself; returns whether anything changed.
    pub fn update(&mut self, conversation: &ConversationId, holding: Holding) -> bool {
        match self.conversations.get_mut(conversation) {
            Some(h)
                if (h.weight, h.activity, h.pending_since)
                    != (holding.weight, holding.activity, holding.pending_since) =>
            {
                h.weight = holding.weight;
                h.activity = holding.activity;
                h.pending_since = holding.pending_since;
                true
            }
            _ => false,
        }
    }

    pub fn set_status(&mut self, status: AgentStatus, now: Timestamp, policy: &RoutingPolicy) {
        if status != AgentStatus::Away {
            self.status_reason = None;
        }
        if status == self.status {
            return;
        }
        if status == AgentStatus::Online && policy.warmup.is_some() {
            self.warmup = Warmup::restart();
        }
        self.status = status;
        self.status_since = now;
    }

    /// When automatic unassignment gives `held` back to the queue, if it does: an online
    /// agent after `unresponsive_after` without answering; an away or offline agent
    /// once it has been so for `away_after` / `offline_after` (at once for a consumer
    /// who writes later). Only conversations pending the agent's answer go back.
    fn unassign_time(&self, held: &Held, policy: &RoutingPolicy) -> Option<(Timestamp, UnassignReason)> {
        let pending = held.pending_since?;
        let rules = &policy.unassign;
        let after_status = |after: Option<Duration>| after.map(|a| self.status_since.plus(a).max(pending));
        match self.status {
            AgentStatus::Online => rules
                .unresponsive_after
                .map(|a| (pending.plus(a), UnassignReason::Unresponsive)),
            AgentStatus::Away => after_status(rules.away_after).map(|t| (t, UnassignReason::AgentUnavailable)),
            AgentStatus::Offline => after_status(rules.offline_after).map(|t| (t, UnassignReason::AgentUnavailable)),
            AgentStatus::BackSoon => None,
        }
    }

    /// The next time automatic unassignment gives a held conversation back.
    pub fn unassign_at(&self, policy: &RoutingPolicy) -> Option<Timestamp> {
        self.conversations
            .values()
            .filter_map(|h| self.unassign_time(h, policy))
            .map(|(t, _)| t)
            .min()
    }

    /// The held conversations that automatic unassignment gives back at `now`. Each is
    /// asked for once: it stays held (with no pending wait) until the conversation
    /// releases it, or tells of a new wait.
    pub fn take_unassignments(&mut self, now: Timestamp, policy: &RoutingPolicy) -> Vec<Unassignment> {
        let due: Vec<Unassignment> = self
            .conversations
            .iter()
            .filter_map(|(id, h)| {
                let (at, reason) = self.unassign_time(h, policy)?;
                let pending_since = h.pending_since?;
                (now >= at).then(|| Unassignment {
                    conversation: id.clone(),
                    reason,
                    pending_since,
                })
            })
            .collect();
        for u in &due {
            if let Some(h) = self.conversations.get_mut(&u.conversation) {
                h.pending_since = None;
            }
        }
        due
    }

    /// Pending offers whose time is up at `now`.
    pub fn expired_offers(&self, now: Timestamp) -> Vec<ConversationId> {
        self.reservations
            .iter()
            .filter(|(_, r)| !r.accepted && r.expires_at.is_some_and(|t| now >= t))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The next instant at which time alone changes something for this agent.
    pub fn next_deadline(&self, now: Timestamp, policy: &RoutingPolicy) -> Option<Timestamp> {
        let offers = self
            .reservations
            .values()
            .filter(|r| !r.accepted)
            .filter_map(|r| r.expires_at);
        let warmup = policy
            .warmup
            .as_ref()
            .and_then(|w| self.warmup_at(now, policy).next_allowed_at(w))
            .filter(|t| *t > now);
        offers.chain(self.unassign_at(policy)).chain(warmup).min()
    }

    pub fn load(&self) -> f64 {
        capacity::load(self.busy_held(), self.limits.max_slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &str) -> ConversationId {
        ConversationId::new(s).expect("id")
    }

    fn offer(
        conversation: &ConversationId,
        weight: Weight,
        epoch: u64,
        offer_timeout: Option<Duration>,
    ) -> IncomingOffer {
        let skill = SkillId::new("billing").expect("id");
        IncomingOffer {
            conversation: conversation.clone(),
            skill: skill.clone(),
            queue: skill,
            weight,
            epoch,
            offer_timeout,
        }
    }

    fn holding(weight: Weight, activity: Activity) -> Holding {
        Holding {
            weight,
            activity,
            pending_since: None,
        }
    }

    fn agent(max_slots: u32, policy: &RoutingPolicy) -> Agent {
        let spec = AgentSpec {
            group: None,
            skills: vec![SkillId::new("billing").expect("id")],
            max_slots,
            max_open: None,
        };
        let mut a = Agent::new(AgentId::new("a1").expect("id"), spec, Timestamp::from_millis(0), policy);
        a.set_status(AgentStatus::Online, Timestamp::from_millis(0), policy);
        a
    }

    #[test]
    fn reservations_count_against_room_so_concurrent_offers_cannot_overfill() {
        let policy = RoutingPolicy::default();
        let mut a = agent(1, &policy);
        let now = Timestamp::from_millis(0);
        let one = Weight::from_slots(1.0);
        assert!(a.reserve(&offer(&ids("c1"), one, 1, None), now, &policy).is_ok());
        // 1 slot + 0.5 overflow: a second full-weight conversation does not fit.
        assert_eq!(
            a.reserve(&offer(&ids("c2"), one, 1, None), now, &policy),
            Err(NoRoom::Weight)
        );
        assert!(a.confirm(&ids("c1"), holding(one, Activity::Active), now, &policy));
        assert!(a.update(&ids("c1"), holding(Weight::from_slots(0.1), Activity::Inactive)));
        assert!(a.reserve(&offer(&ids("c2"), one, 1, None), now, &policy).is_ok());
    }

    /// A conversation transferred while an offer of it was on its way to the agent is
    /// offered again for its new queue entry: the old reservation gives way (it could
    /// never be confirmed) instead of making the new offer look refused, which held
    /// the conversation back from an agent with room until the decline's retry (the
    /// rare backlog failure of the concurrent invariant test).
    #[test]
    fn an_offer_for_a_newer_queue_entry_supersedes_the_old_reservation() {
        let policy = RoutingPolicy::default();
        let mut a = agent(1, &policy);
        let now = Timestamp::from_millis(0);
        let one = Weight::from_slots(1.0);
        a.reserve(&offer(&ids("c1"), one, 1, None), now, &policy).expect("room");
        // The same entry offered again (a fallback queue's duplicate): refused, kept.
        assert_eq!(a.supersede(&ids("c1"), 1), None);
        assert_eq!(
            a.reserve(&offer(&ids("c1"), one, 1, None), now, &policy),
            Err(NoRoom::AlreadyHeld)
        );
        // A newer entry: the old reservation goes, and its weight with it.
        let old = a.supersede(&ids("c1"), 2).expect("superseded");
        assert_eq!(old.epoch, 1);
        a.reserve(&offer(&ids("c1"), one, 2, None), now, &policy)
            .expect("room for the new offer: the old one no longer counts");
        assert_eq!(a.reservations.get(&ids("c1")).map(|r| r.epoch), Some(2));
        assert_eq!(a.busy(), one, "one reservation's weight, not two");
        // An older one never displaces a newer one.
        assert_eq!(a.supersede(&ids("c1"), 1), None);
        assert_eq!(a.reservations.get(&ids("c1")).map(|r| r.epoch), Some(2));
    }

    #[test]
    fn an_assignment_without_a_reservation_is_held_only_when_it_fits() {
        let policy = RoutingPolicy::default();
        let mut a = agent(1, &policy);
        let now = Timestamp::from_millis(0);
        let one = Weight::from_slots(1.0);
        let skill = SkillId::new("s").expect("id");
        // A rebuilt actor: no reservation, room for one.
        assert!(a.hold_unreserved(&ids("c1"), skill.clone(), holding(one, Activity::Active), now));
        assert_eq!(a.busy(), one);
        // Held already: not twice.
        assert!(!a.hold_unreserved(&ids("c1"), skill.clone(), holding(one, Activity::Active), now));
        // 1 slot + 0.5 overflow: a second full-weight one is past the ceiling.
        assert!(!a.hold_unreserved(&ids("c2"), skill.clone(), holding(one, Activity::Active), now));
        assert_eq!(a.busy(), one);
        // An offline agent holds nothing new.
        let mut b = agent(4, &policy);
        b.set_status(AgentStatus::Offline, now, &policy);
        assert!(!b.hold_unreserved(&ids("c3"), skill, holding(one, Activity::Active), now));
    }

    #[test]
    fn not_online_has_no_room_and_keeps_its_conversations_by_default() {
        let policy = RoutingPolicy::default();
        let mut a = agent(2, &policy);
        let now = Timestamp::from_millis(0);
        a.reserve(&offer(&ids("c1"), Weight::from_slots(1.0), 1, None), now, &policy)
            .expect("room");
        let pending = Holding {
            pending_since: Some(now),
            ..holding(Weight::from_slots(1.0), Activity::Active)
        };
        a.confirm(&ids("c1"), pending, now, &policy);
        a.set_status(AgentStatus::BackSoon, now, &policy);
        assert!(!a.room(now, &policy).accepting);
        assert_eq!(a.unassign_at(&policy), None, "back soon keeps its conversations");
        for status in [AgentStatus::Away, AgentStatus::Offline, AgentStatus::Online] {
            a.set_status(status, now, &policy);
            assert_eq!(a.unassign_at(&policy), None, "auto-unassign is opt-in ({status:?})");
        }
    }

    /// Auto-unassign takes only what waits for the agent: when the agent is away long
    /// enough (at once for a consumer who writes later), or when an online agent leaves
    /// a message unanswered; each is asked for once.
    #[test]
    fn auto_unassign_takes_only_conversations_pending_the_agents_answer() {
        let secs = Duration::from_secs;
        let policy = RoutingPolicy {
            unassign: crate::domain::skill::UnassignPolicy {
                away_after: Some(secs(300)),
                offline_after: None,
                unresponsive_after: Some(secs(60)),
            },
            ..RoutingPolicy::default()
        };
        let t0 = Timestamp::from_millis(0);
        let mut a = agent(4, &policy);
        let w = Weight::from_slots(1.0);
        let pending_at = |t: Timestamp| Holding {
            pending_since: Some(t),
            ..holding(w, Activity::Active)
        };
        assert!(a.hold_unreserved(&ids("waiting"), SkillId::new("s").expect("id"), pending_at(t0), t0));
        assert!(a.hold_unreserved(
            &ids("answered"),
            SkillId::new("s").expect("id"),
            holding(w, Activity::Active),
            t0
        ));

        // Online: the unanswered message is given back 60 s after it came.
        assert_eq!(a.unassign_at(&policy), Some(t0.plus(secs(60))));
        assert!(a.take_unassignments(t0.plus(secs(59)), &policy).is_empty());
        let due = a.take_unassignments(t0.plus(secs(60)), &policy);
        assert_eq!(
            due,
            vec![Unassignment {
                conversation: ids("waiting"),
                reason: UnassignReason::Unresponsive,
                pending_since: t0,
            }]
        );
        assert_eq!(a.unassign_at(&policy), None, "asked for once");
        assert!(a.take_unassignments(t0.plus(secs(61)), &policy).is_empty());

        // The conversation did not go (the agent answered on the way), and the consumer
        // wrote again: a new wait.
        let t1 = t0.plus(secs(100));
        assert!(a.update(&ids("waiting"), pending_at(t1)));
        // Away at t1 + 10: the away rule (300 s after the status) replaces the online one.
        let away = t1.plus(secs(10));
        a.set_status(AgentStatus::Away, away, &policy);
        assert_eq!(a.unassign_at(&policy), Some(away.plus(secs(300))));
        // A consumer who writes after that is given back at once.
        assert!(a.update(&ids("answered"), pending_at(away.plus(secs(900)))));
        let due = a.take_unassignments(away.plus(secs(900)), &policy);
        let got: Vec<(String, UnassignReason)> = due.iter().map(|u| (u.conversation.to_string(), u.reason)).collect();
        assert_eq!(
            got,
            vec![
                ("answered".to_string(), UnassignReason::AgentUnavailable),
                ("waiting".to_string(), UnassignReason::AgentUnavailable),
            ]
        );
        // Offline has no rule here: nothing pending is given back.
        assert!(a.update(&ids("waiting"), pending_at(away.plus(secs(1000)))));
        a.set_status(AgentStatus::Offline, away.plus(secs(1000)), &policy);
        assert_eq!(a.unassign_at(&policy), None);
    }

    #[test]
    fn offers_expire_in_offer_mode() {
        let policy = RoutingPolicy::default();
        let mut a = agent(2, &policy);
        let now = Timestamp::from_millis(0);
        let timeout = Some(Duration::from_secs(30));
        a.reserve(&offer(&ids("c1"), Weight::from_slots(1.0), 7, timeout), now, &policy)
            .expect("room");
        assert_eq!(a.next_deadline(now, &policy), Some(now.plus(Duration::from_secs(30))));
        assert!(a.expired_offers(now.plus(Duration::from_secs(29))).is_empty());
        assert_eq!(a.expired_offers(now.plus(Duration::from_secs(30))), vec![ids("c1")]);
    }

    #[test]
    fn warmup_restarts_after_an_idle_hour() {
        let policy = RoutingPolicy {
            warmup: Some(capacity::WarmupPolicy {
                interval: Duration::from_secs(90),
                idle_reset: Duration::from_secs(3600),
            }),
            ..RoutingPolicy::default()
        };
        let mut a = agent(2, &policy);
        let t0 = Timestamp::from_millis(0);
        let one = Weight::from_slots(1.0);
        a.reserve(&offer(&ids("c1"), one, 1, None), t0, &policy)
            .expect("first at once");
        a.confirm(&ids("c1"), holding(one, Activity::Active), t0, &policy);
        assert_eq!(
            a.reserve(
                &offer(&ids("c2"), one, 1, None),
                t0.plus(Duration::from_secs(10)),
                &policy
            ),
            Err(NoRoom::WarmingUp)
        );
        let t1 = t0.plus(Duration::from_secs(90));
        a.reserve(&offer(&ids("c2"), one, 1, None), t1, &policy)
            .expect("second after 90 s");
        a.confirm(&ids("c2"), holding(one, Activity::Active), t1, &policy);
        assert!(!a.warmup.warming, "full: warm-up over");
        a.release(&ids("c1"));
        a.release(&ids("c2"));
        let t2 = t1.plus(Duration::from_secs(3600));
        assert!(a.room(t2, &policy).accepting, "first after the idle hour comes at once");
        a.reserve(&offer(&ids("c3"), one, 1, None), t2, &policy).expect("room");
        a.confirm(&ids("c3"), holding(one, Activity::Active), t2, &policy);
        assert!(
            !a.room(t2.plus(Duration::from_secs(1)), &policy).accepting,
            "paced again"
        );
    }
}
