//! `SkillQueueActor`: owns the ranked queue of one skill and its view of which agents
//! have room, and matches on every event that can change the answer: an entry arrives
//! or becomes actionable, an agent reports room, an offer comes back. Never on a poll.
//!
//! In: `Upsert` / `Remove` from conversations, `AgentRoom` / `AgentGone` /
//! `OfferDeclined` from agents, snapshot calls from the API, its own `RetryDeclined`.
//! Out: `Offer` to agents, `ActivateFallback` to conversations when no agent of the
//! skill is online.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, RpcReplyPort};

use crate::actors::agent::AgentMsg;
use crate::actors::conversation::ConversationMsg;
use crate::actors::shared::{Envelope, InFlight, QueueRef, Shared};
use crate::actors::timer::TimerTarget;
use crate::domain::queue::{AgentRoom, Declined, QueueEntry, QueueFigures, QueueRow, SkillQueue};
use crate::ids::{AgentId, ConversationId, GroupId, SkillId};

#[derive(Debug)]
pub enum QueueMsg {
    /// A conversation's entry is new or changed.
    Upsert(QueueEntry),
    /// Entries of conversations read back from the store (recovery tells them in
    /// batches: one message, and one matching round, per batch).
    UpsertMany(Vec<QueueEntry>),
    /// The conversation left this queue (assigned, closed, transferred).
    Remove {
        conversation: ConversationId,
    },
    /// An agent of the skill reports its room.
    AgentRoom {
        agent: AgentId,
        room: AgentRoom,
        group: Option<GroupId>,
    },
    /// The agent no longer has this skill.
    AgentGone {
        agent: AgentId,
    },
    /// An offer came back; `room` is the agent's room when it declined for lack of it.
    OfferDeclined {
        conversation: ConversationId,
        epoch: u64,
        agent: AgentId,
        reason: Declined,
        room: Option<AgentRoom>,
    },
    /// The agent's actor restarted: offers in flight to it were lost, except `kept`.
    AgentRestarted {
        agent: AgentId,
        kept: Vec<ConversationId>,
    },
    /// The agent holds these of the queue's offers (the others in flight to it may be
    /// lost: taken back if still unanswered at its next word).
    OffersHeld {
        agent: AgentId,
        kept: Vec<ConversationId>,
    },
    /// Ranked rows, first is next.
    Rows {
        limit: usize,
        reply: RpcReplyPort<Vec<QueueRow>>,
    },
    Figures(RpcReplyPort<QueueFigures>),
    /// Only the estimated wait of a new conversation (no scan of the line).
    EstimatedWait(RpcReplyPort<Option<std::time::Duration>>),
    /// Offers declined by every agent are tried again.
    RetryDeclined,
    #[cfg(any(test, feature = "fault-injection"))]
    Panic,
}

#[derive(Debug)]
pub struct SkillQueueActor;

#[derive(Debug)]
pub struct QueueArgs {
    pub shared: Arc<Shared>,
    pub skill: SkillId,
    pub spawn_token: InFlight,
}

#[derive(Debug)]
pub struct QueueState {
    shared: Arc<Shared>,
    spawn_token: Option<InFlight>,
    queue: SkillQueue,
    /// A `RetryDeclined` is armed in the timer service.
    retry_armed: bool,
}

impl Actor for SkillQueueActor {
    type Msg = Envelope<QueueMsg>;
    type State = QueueState;
    type Arguments = QueueArgs;

    async fn pre_start(&self, myself: QueueRef, args: QueueArgs) -> Result<QueueState, ActorProcessingErr> {
        // Reachable at once: the directory points to this actor from now on.
        args.shared.queues.insert(args.skill.clone(), myself);
        let choice = args.shared.policy.agent_choice;
        Ok(QueueState {
            shared: args.shared,
            spawn_token: Some(args.spawn_token),
            queue: SkillQueue::with_choice(args.skill, choice),
            retry_armed: false,
        })
    }

    async fn post_start(&self, _myself: QueueRef, st: &mut QueueState) -> Result<(), ActorProcessingErr> {
        // Counted as in flight from the spawn until here (see `Supervisor::spawn`).
        st.spawn_token = None;
        Ok(())
    }

    async fn post_stop(&self, _myself: QueueRef, st: &mut QueueState) -> Result<(), ActorProcessingErr> {
        st.shared.arm(TimerTarget::Queue(st.queue.skill.clone()), None);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: QueueRef,
        envelope: Envelope<QueueMsg>,
        st: &mut QueueState,
    ) -> Result<(), ActorProcessingErr> {
        let Envelope { msg, token: _in_flight } = envelope;
        let shared = Arc::clone(&st.shared);
        let _crash = shared.crash_guard();
        let mut check_fallback = false;
        match msg {
            QueueMsg::Upsert(entry) => self.upsert(&shared, st, entry),
            QueueMsg::UpsertMany(entries) => {
                for entry in entries {
                    self.upsert(&shared, st, entry);
                }
            }
            QueueMsg::Remove { conversation } => {
                st.queue.remove_at(&conversation, shared.now());
            }
            QueueMsg::AgentRoom { agent, room, group } => {
                check_fallback = !room.online;
                st.queue.set_agent_in_group(&agent, room, group);
            }
            QueueMsg::AgentGone { agent } => {
                st.queue.remove_agent(&agent);
                check_fallback = true;
            }
            QueueMsg::AgentRestarted { agent, kept } => {
                st.queue.agent_restarted(&agent, &kept);
            }
            QueueMsg::OffersHeld { agent, kept } => {
                st.queue.offers_held(&agent, &kept);
            }
            QueueMsg::OfferDeclined {
                conversation,
                epoch,
                agent,
                reason,
                room,
            } => {
                st.queue.offer_declined(&conversation, epoch, &agent, reason, room);
            }
            QueueMsg::Rows { limit, reply } => {
                let _ = reply.send(st.queue.rows(limit));
                return Ok(());
            }
            QueueMsg::Figures(reply) => {
                let weight = new_weight(&shared, &st.queue.skill);
                let _ = reply.send(st.queue.figures(shared.now(), weight));
                return Ok(());
            }
            QueueMsg::EstimatedWait(reply) => {
                let weight = new_weight(&shared, &st.queue.skill);
                let _ = reply.send(st.queue.estimated_wait(shared.now(), weight));
                return Ok(());
            }
            QueueMsg::RetryDeclined => {
                st.retry_armed = false;
                st.queue.forget_declines();
            }
            #[cfg(any(test, feature = "fault-injection"))]
            QueueMsg::Panic => panic!("injected fault in queue {}", st.queue.skill),
        }
        if check_fallback && !self.has_available_agent(&shared, st) {
            self.send_to_fallback(&shared, st);
        }
        // The skill's group routing as it is now (`PUT /v1/skills` may change it).
        if let Some(skill) = shared.skill(&st.queue.skill) {
            st.queue.set_groups(skill.group_routing.as_ref());
        }
        for offer in st.queue.match_offers() {
            // Fallback entries carry their home skill: its offer mode and SLA apply.
            let home = st
                .queue
                .home_skill(&offer.conversation_id)
                .unwrap_or_else(|| st.queue.skill.clone());
            shared.tell_agent(
                &offer.agent_id,
                AgentMsg::Offer {
                    conversation: offer.conversation_id,
                    skill: home,
                    queue: st.queue.skill.clone(),
                    epoch: offer.epoch,
                    weight: offer.weight,
                },
            );
        }
        if st.queue.take_retry_wanted() {
            let at = shared.now().plus(shared.policy.offer_retry_after);
            if !st.retry_armed {
                st.retry_armed = true;
                shared.arm(TimerTarget::Queue(st.queue.skill.clone()), Some(at));
            }
        }
        Ok(())
    }
}

impl SkillQueueActor {
    /// A conversation's entry is new or changed: ranked, or (no agent online and the
    /// skill has a fallback) sent on to the fallback.
    fn upsert(&self, shared: &Shared, st: &mut QueueState, entry: QueueEntry) {
        if entry.actionable
            && !entry.in_fallback
            && self.has_fallback(shared, &st.queue.skill)
            && !self.has_available_agent(shared, st)
        {
            shared.tell_conversation(
                &entry.conversation_id,
                ConversationMsg::ActivateFallback { epoch: entry.epoch },
            );
        }
        st.queue.upsert(entry);
    }

    /// An agent keeps this skill's conversations from falling back: one online, or one
    /// away when the skill's `fallback_when_away` is off.
    fn has_available_agent(&self, shared: &Shared, st: &QueueState) -> bool {
        let away_counts = shared.skill(&st.queue.skill).is_some_and(|s| !s.fallback_when_away);
        st.queue.has_available_agent(away_counts)
    }

    fn has_fallback(&self, shared: &Shared, skill: &SkillId) -> bool {
        shared.skill(skill).is_some_and(|s| shared.has_fallback(&s))
    }

    /// No agent of this skill is online: actionable conversations also stand in the
    /// fallback skill's queue.
    fn send_to_fallback(&self, shared: &Shared, st: &QueueState) {
        if !self.has_fallback(shared, &st.queue.skill) {
            return;
        }
        for (id, epoch) in st.queue.fallback_candidates() {
            shared.tell_conversation(id, ConversationMsg::ActivateFallback { epoch });
        }
    }
}

/// What a new conversation of `skill` weighs (its active weight).
fn new_weight(shared: &Shared, skill: &SkillId) -> crate::domain::capacity::Weight {
    shared
        .skill(skill)
        .map_or(crate::domain::capacity::Weight::from_slots(1.0), |s| s.active_weight)
}
