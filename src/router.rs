//! The [`Router`] facade: the one entry point that the HTTP API, the simulator and the
//! load generator use. It validates requests, looks actors up in the directories and
//! talks to them with `call` (it is not an actor itself, so awaiting a reply is safe).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::actors::agent::{AgentMsg, AgentReply};
use crate::actors::conversation::{recovered_entries, ConversationCommand, ConversationMsg, ConversationReply};
use crate::actors::remote::{shard_of_agent, shard_of_conversation, shard_of_queue, Crossing, Remote};
use crate::actors::shared::{ConversationHandle, Envelope, Handle, QueueRef, Sent, SentByWay, Shared};
use crate::actors::skill_queue::QueueMsg;
use crate::actors::supervisor::{Supervisor, SupervisorMsg};
use crate::actors::timer::{TimerTarget, Timers};
use crate::config::{EngineConfig, SkillSpec};
use crate::domain::agent::{Agent, AgentSpec, AgentStatus, Held};
use crate::domain::consumer::ConsumerRecord;
use crate::domain::conversation::{ClosedBy, Conversation, OpenRequest, Phase};
use crate::domain::queue::{QueueEntry, QueueFigures, QueueRow};
use crate::domain::skill::{RoutingPolicy, Skill};
use crate::error::RouterError;
use crate::events::RouterEvent;
use crate::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use crate::store::{Change, Snapshot, Store};
use crate::time::{Clock, Timestamp};

/// The consumer's first message (the body of `POST /v1/conversations`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenConversation {
    /// Chosen by the server when absent.
    #[serde(default)]
    pub conversation_id: Option<ConversationId>,
    pub consumer_id: ConsumerId,
    pub skill: SkillId,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub urgent: bool,
}

impl OpenConversation {
    pub fn new(consumer_id: ConsumerId, skill: SkillId) -> Self {
        OpenConversation {
            conversation_id: None,
            consumer_id,
            skill,
            attributes: BTreeMap::new(),
            urgent: false,
        }
    }

    pub fn with_id(mut self, id: ConversationId) -> Self {
        self.conversation_id = Some(id);
        self
    }
}

/// `GET /v1/queue-health` figures of one skill.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueHealth {
    #[serde(flatten)]
    pub queue: QueueFigures,
    pub assigned: usize,
    pub overdue_assigned: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueSnapshot {
    pub skill_id: SkillId,
    pub conversations: Vec<QueueRow>,
    pub health: QueueHealth,
}

/// What [`Router::recover`] read back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    pub skills: usize,
    pub agents: usize,
    pub open: usize,
    pub closed: usize,
    /// Closed conversations past retention, deleted from the store.
    pub expired: usize,
    /// Offers pending at the crash: void, their conversations queued again.
    pub offers_voided: usize,
}

/// An actor to make panic (tests of supervision only).
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Clone, Debug)]
pub enum FaultTarget {
    Conversation(ConversationId),
    Agent(AgentId),
    Queue(SkillId),
}

/// The routing engine, running.
#[derive(Clone, Debug)]
pub struct Router {
    shared: Arc<Shared>,
    /// The timer service's driver task.
    timers: Arc<tokio::task::JoinHandle<()>>,
    skill_defaults: Arc<Skill>,
    /// Restarts crashed conversations and agents (served in turns, without an actor).
    restarter: ActorRef<Envelope<SupervisorMsg>>,
    /// Spawns the skill queues and restarts one that crashed.
    queues: ActorRef<Envelope<SupervisorMsg>>,
}

impl Router {
    /// Starts the supervisors and the configured skills and agents (no store: the
    /// simulator, the engine tests, `serve --ephemeral`).
    pub async fn start(config: EngineConfig, clock: Clock) -> Result<Router, RouterError> {
        let router = Router::boot(&config, clock).await?;
        router.install_config(config).await?;
        Ok(router)
    }

    /// Starts the supervisors, with no skill, agent or conversation yet: then
    /// [`Router::recover`] (with a store) and [`Router::install_config`].
    pub async fn boot(config: &EngineConfig, clock: Clock) -> Result<Router, RouterError> {
        let shared = Shared::new(clock, config.routing.clone(), config.event_capacity);
        let spawn = |shared: Arc<Shared>| async move {
            Actor::spawn(None, Supervisor, shared)
                .await
                .map(|(a, _)| a)
                .map_err(|e| RouterError::Unavailable(e.to_string()))
        };
        let restarter = spawn(Arc::clone(&shared)).await?;
        let _ = shared.restarter.set(restarter.clone());
        Ok(Router {
            timers: Arc::new(Timers::start(&shared)),
            restarter,
            queues: spawn(Arc::clone(&shared)).await?,
            skill_defaults: Arc::new(config.skill_defaults.clone()),
            shared,
        })
    }

    /// Applies the configured skills and agents over what the store held: a skill of
    /// the config replaces the stored one; an agent of the config is reconfigured, and
    /// takes the config's status only if it is new (a restart does not reset the
    /// status agents set over the API).
    pub async fn install_config(&self, config: EngineConfig) -> Result<(), RouterError> {
        for skill in config.skills {
            let skill = self.keeping_off_hours(skill);
            self.install_skill(skill).await?;
        }
        for (id, spec, status) in config.agents {
            let known = self.shared.agents.contains_key(&id);
            self.put_agent(id.clone(), spec).await?;
            if !known {
                self.set_agent_status(&id, status).await?;
            }
        }
        Ok(())
    }

    /// Rebuilds the engine from the store's records, and records every change from
    /// now on. Skills and their queues first, then the consumers, the conversations
    /// (passive: each tells its queues its entry, its deadline is armed; a deadline
    /// that passed while the node was down fires at once, and once; an offer pending
    /// at the crash is void, the conversation queued again), then the agents, holding
    /// what the conversations say they hold. Closed conversations past retention are
    /// deleted.
    pub async fn recover(&self, store: Arc<Store>, snapshot: Snapshot) -> Result<Recovered, RouterError> {
        self.attach_store(store);
        self.adopt(snapshot).await
    }

    /// Records every change from now on in `store` (a cluster node, which reads its
    /// records shard by shard as it takes them: [`Router::adopt`]).
    pub fn attach_store(&self, store: Arc<Store>) {
        let _ = self.shared.store.set(Arc::clone(&store));
        let _ = self.shared.consumers.store.set(store);
    }

    /// Builds the records of `snapshot` into the running engine, as [`Router::recover`]
    /// describes: what a node does at start, and a cluster node each time it takes
    /// shards over (then `snapshot` holds those shards' records and every skill). What
    /// the engine holds already is kept. Queues are spawned for the skills whose queue
    /// this node serves. A conversation held by an agent of another node (or by one this
    /// node already runs) re-tells its holder (`Resync`); the conversations other nodes
    /// hold for the agents taken here are re-told by those nodes
    /// ([`Router::resync_for`]).
    pub async fn adopt(&self, snapshot: Snapshot) -> Result<Recovered, RouterError> {
        let shared = &self.shared;
        let now = shared.now();
        let mut recovered = Recovered::default();
        for skill in snapshot.skills {
            if !shared.skills.contains_key(&skill.id) {
                shared.skills.insert(skill.id.clone(), Arc::new(skill));
                recovered.skills += 1;
            }
        }
        self.spawn_served_queues().await?;
        for (id, record) in snapshot.consumers {
            shared.consumers.restore(id, record);
        }
        // What the conversations tell their peers, gathered: queue entries in batches
        // (one message per batch), deadlines armed in one go once every queue has its
        // entries (a deadline due at once must not reach a queue before the entry it
        // changes), held conversations built into each agent's map at once.
        const BATCH: usize = 1024;
        let mut held: HashMap<AgentId, Vec<(ConversationId, Held)>> = HashMap::new();
        let mut entries: HashMap<SkillId, Vec<QueueEntry>> = HashMap::new();
        let mut deadlines: Vec<(TimerTarget, Timestamp)> = Vec::new();
        let mut closed = Vec::new();
        let mut voided: Vec<(AgentId, ConversationId, u64)> = Vec::new();
        let mut max_seq = 0;
        // What the agents taken hold on other nodes (a cluster).
        for conv in &snapshot.held_elsewhere {
            if let (Some(agent), Some(skill)) = (&conv.agent_id, shared.skill(&conv.skill)) {
                held.entry(agent.clone())
                    .or_default()
                    .push((conv.id.clone(), held_by(conv, &skill, &shared.policy, now)));
            }
        }
        for mut conv in snapshot.conversations {
            if shared.conversations.contains_key(&conv.id) {
                continue;
            }
            max_seq = max_seq.max(conv.seq);
            if let Some(closure) = conv.closed {
                if now >= closure.at.plus(shared.policy.closed_retention) {
                    shared.persist(Change::ForgetConversation(conv.id.clone()));
                    recovered.expired += 1;
                } else {
                    closed.push((conv.id.clone(), closure.at));
                    shared.conversations.insert(conv.id.clone(), Handle::passive(conv));
                }
                continue;
            }
            shared.restore_open();
            recovered.open += 1;
            if let Some(skill) = shared.skill(&conv.skill) {
                if conv.state == Phase::Offered {
                    // The agent (alive on another node, in a cluster) lets go of the
                    // offer; one rebuilt here has no reservation anyway.
                    if let Some(agent) = &conv.offered_to {
                        voided.push((agent.clone(), conv.id.clone(), conv.epoch));
                    }
                    conv.renew_queue_entry();
                    shared.persist(Change::Conversation(Box::new(conv.clone())));
                    recovered.offers_voided += 1;
                }
                if let (Phase::Assigned, Some(agent)) = (conv.state, &conv.agent_id) {
                    held.entry(agent.clone())
                        .or_default()
                        .push((conv.id.clone(), held_by(&conv, &skill, &shared.policy, now)));
                }
                for (queue, entry) in recovered_entries(shared, &conv, &skill) {
                    let batch = entries.entry(queue.clone()).or_default();
                    batch.push(entry);
                    if batch.len() >= BATCH {
                        shared.tell_queue(&queue, QueueMsg::UpsertMany(std::mem::take(batch)));
                    }
                }
                let has_fallback = shared.has_fallback(&skill);
                // A deadline that passed while the node was down is due now (once: its
                // tick records what it did, e.g. the overdue mark). Most deadlines are
                // still ahead: only the others need the trial tick.
                let next = match conv.earliest_deadline(&skill, has_fallback, &shared.policy) {
                    Some(at) if at <= now => {
                        let mut ticked = conv.clone();
                        ticked.tick(now, &skill, has_fallback, &shared.policy);
                        if ticked != conv {
                            Some(now)
                        } else {
                            conv.next_deadline(now, &skill, has_fallback, &shared.policy)
                        }
                    }
                    ahead => ahead,
                };
                let id = conv.id.clone();
                // In the directory before its deadline is armed: a deadline that has
                // passed fires at once, and must find the conversation.
                shared.conversations.insert(id.clone(), Handle::passive(conv));
                deadlines.extend(next.map(|at| (TimerTarget::Conversation(id), at)));
            } else {
                tracing::error!(conversation = %conv.id, skill = %conv.skill, "recovered conversation on an unknown skill");
                shared.conversations.insert(conv.id.clone(), Handle::passive(conv));
            }
        }
        for (queue, batch) in entries {
            if !batch.is_empty() {
                shared.tell_queue(&queue, QueueMsg::UpsertMany(batch));
            }
        }
        shared.timers.arm_new(shared, deadlines);
        recovered.closed = closed.len();
        shared.restore_closed(closed);
        shared.restore_seq(max_seq);
        for (agent, conversation, epoch) in voided {
            shared.tell_agent(&agent, AgentMsg::OfferVoid { conversation, epoch });
        }
        for mut agent in snapshot.agents {
            if shared.agents.contains_key(&agent.id) {
                continue;
            }

            agent.conversations = held.remove(&agent.id).map(BTreeMap::from_iter).unwrap_or_default();
            agent.reservations.clear();
            recovered.agents += 1;
            let id = agent.id.clone();
            let handle = Handle::passive(agent);
            shared.agents.insert(id, Arc::clone(&handle));
            shared.start_agent(&handle);
        }
        for (agent, conversations) in held {
            // Held by an agent of another node, or one running here already: the
            // conversation tells its holder again.
            // (In a cluster the agent's shard may be between owners, or taken here in a
            // later batch: never unassigned for that.)
            let known = shared.remote.get().is_some()
                || shared.agents.contains_key(&agent)
                || shared.serves_elsewhere(shard_of_agent(&agent));
            for (id, _) in conversations {
                if known {
                    shared.tell_conversation(&id, ConversationMsg::Resync);
                } else {
                    // Assigned to an agent the store does not know: back to the queue.
                    tracing::warn!(conversation = %id, agent = %agent, "recovered conversation held by an unknown agent: queued again");
                    shared.tell_conversation(&id, ConversationMsg::no_room(agent.clone()));
                }
            }
        }
        Ok(recovered)
    }

    /// Spawns the queue of every known skill that has none here and whose queue this
    /// node serves (every skill's, outside a cluster).
    async fn spawn_served_queues(&self) -> Result<(), RouterError> {
        let skill_ids: Vec<SkillId> = self
            .shared
            .skills
            .iter()
            .map(|s| s.key().clone())
            .filter(|id| self.shared.queue(id).is_none() && self.shared.serves(shard_of_queue(id)))
            .collect();
        for id in skill_ids {
            self.call_supervisor(&self.queues, |reply| SupervisorMsg::SpawnQueue(id, reply))
                .await?;
        }
        Ok(())
    }

    /// A cluster node lost these shards (handed over, or its leases ran out): their
    /// conversations, agents and skill queues leave this engine without a write (the
    /// store refuses this node's writes for them already; the new owner reads them
    /// back). Returns how many conversations and agents were dropped.
    pub fn drop_shards(&self, shards: &std::collections::BTreeSet<u16>) -> (usize, usize) {
        let shared = &self.shared;
        let conversations = take_where(&shared.conversations, |id| shards.contains(&shard_of_conversation(id)));
        for handle in &conversations {
            if handle.lock().closed.is_none() {
                shared.forget_open();
            }
            handle.slot.stop();
        }
        let agents = take_where(&shared.agents, |id| shards.contains(&shard_of_agent(id)));
        for handle in &agents {
            handle.slot.stop();
        }
        for queue in take_where(&shared.queues, |skill| shards.contains(&shard_of_queue(skill))) {
            queue.stop(Some("shard lost".into()));
        }
        (conversations.len(), agents.len())
    }

    /// Another node (or this one) took these shards: every conversation here whose
    /// queue or holder is in one of them tells it again, and every agent here whose
    /// skills' queue is in one of them tells its room again (what a restarted actor's
    /// peers do, across nodes).
    pub async fn resync_for(&self, shards: &std::collections::BTreeSet<u16>) -> Result<(), RouterError> {
        let shared = &self.shared;
        self.spawn_served_queues().await?;
        let queue_moved = |s: &SkillId| shards.contains(&shard_of_queue(s));
        let conversations: Vec<ConversationId> = shared
            .conversations
            .iter()
            .filter(|h| {
                let c = h.lock();
                c.closed.is_none()
                    && ((c.in_queue()
                        && (queue_moved(&c.skill)
                            || shared
                                .skill(&c.skill)
                                .is_some_and(|k| k.fallback_skill.as_ref().is_some_and(&queue_moved))))
                        || c.agent_id.as_ref().is_some_and(|a| shards.contains(&shard_of_agent(a))))
            })
            .map(|h| h.key().clone())
            .collect();
        for id in conversations {
            shared.tell_conversation(&id, ConversationMsg::Resync);
        }
        let agents: Vec<AgentId> = shared
            .agents
            .iter()
            .filter(|h| {
                let a = h.lock();
                a.skills.iter().any(&queue_moved)
                    || a.reservations
                        .keys()
                        .any(|c| shards.contains(&shard_of_conversation(c)))
            })
            .map(|h| h.key().clone())
            .collect();
        let moved: Vec<u16> = shards.iter().copied().collect();
        for id in agents {
            shared.tell_agent(&id, AgentMsg::ShardsMoved(moved.clone()));
        }
        Ok(())
    }

    /// The conversations that the agents of `shards` hold here, as `(agent, conversation,
    /// assigned_at)`: what a cluster node checks against the store after taking agents.
    pub fn held_in(&self, shards: &std::collections::BTreeSet<u16>) -> Vec<(AgentId, ConversationId, Timestamp)> {
        let mut out = Vec::new();
        for h in self.shared.agents.iter() {
            if shards.contains(&shard_of_agent(h.key())) {
                let a = h.lock();
                out.extend(
                    a.conversations
                        .iter()
                        .map(|(c, held)| (a.id.clone(), c.clone(), held.assigned_at)),
                );
            }
        }
        out
    }

    /// The agents of `shards` were taken here: the skill queues (on any node) forget
    /// the offers they had in flight to those agents' previous actors, which were lost
    /// with them (a taken agent holds no reservation). Sent after the other nodes were
    /// told who serves the shards now, so a queue's next offer comes here.
    pub fn agents_taken(&self, shards: &std::collections::BTreeSet<u16>) {
        let shared = &self.shared;
        let taken: Vec<(AgentId, Vec<SkillId>)> = shared
            .agents
            .iter()
            .filter(|h| shards.contains(&shard_of_agent(h.key())))
            .map(|h| (h.key().clone(), h.lock().skills.clone()))
            .collect();
        for (agent, skills) in taken {
            for skill in skills {
                shared.tell_queue(
                    &skill,
                    QueueMsg::AgentRestarted {
                        agent: agent.clone(),
                        kept: Vec::new(),
                    },
                );
            }
        }
    }

    /// Every agent here tells its queues which offers it holds ([`AgentMsg::Reassert`]):
    /// a cluster node's periodic repair of offers lost between nodes.
    pub fn reassert_agents(&self) {
        let ids: Vec<AgentId> = self.shared.agents.iter().map(|h| h.key().clone()).collect();
        for id in ids {
            self.shared.tell_agent(&id, AgentMsg::Reassert);
        }
    }

    /// Tells `agent` to let go of `conversation` (which the store says it does not
    /// hold: its release was lost while the agent moved between nodes).
    pub fn release_held(&self, agent: &AgentId, conversation: ConversationId) {
        self.shared.tell_agent(agent, AgentMsg::Release { conversation });
    }

    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    pub fn policy(&self) -> &RoutingPolicy {
        &self.shared.policy
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RouterEvent> {
        self.shared.subscribe()
    }

    /// Messages sent to actors since start (including calls from this facade).
    pub fn messages_sent(&self) -> u64 {
        self.shared.sent_total()
    }

    /// Messages sent to actors since start, by where they come from.
    pub fn messages_by_way(&self) -> SentByWay {
        self.shared.sent_by_way()
    }

    /// Makes this engine one node of several: messages for actors of shards that
    /// `remote` says another node serves go there ([`crate::actors::remote`]). Set once,
    /// before traffic; an error if it was set already.
    pub fn join_cluster(&self, remote: Arc<dyn Remote>) -> Result<(), RouterError> {
        self.shared
            .remote
            .set(remote)
            .map_err(|_| RouterError::Conflict("this engine is already part of a cluster".into()))
    }

    /// A message from another node's actor for an actor here.
    pub fn deliver_crossing(&self, msg: Crossing) {
        self.shared.deliver_crossing(msg);
    }

    /// Messages sent to other nodes, delivered from them, and refused (node-local
    /// messages for another node's actor), since start.
    pub fn crossings(&self) -> (u64, u64, u64) {
        self.shared.crossings()
    }

    /// Messages sent to actors and not yet handled: the engine's inbound backlog.
    pub fn in_flight(&self) -> i64 {
        self.shared.in_flight()
    }

    /// Waits until no message is in flight (timers may still be pending). Timer tasks
    /// that are due but not yet run hold no count, so "idle" must hold over several
    /// scheduler turns in a row. Returns false if that did not happen within
    /// `max_rounds` yields.
    pub async fn quiesce(&self, max_rounds: usize) -> bool {
        const STABLE_TURNS: usize = 3;
        let mut idle_turns = 0;
        for _ in 0..max_rounds {
            if self.shared.in_flight() == 0 {
                idle_turns += 1;
                if idle_turns >= STABLE_TURNS {
                    return true;
                }
            } else {
                idle_turns = 0;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    async fn call_supervisor(
        &self,
        to: &ActorRef<Envelope<SupervisorMsg>>,
        msg: impl FnOnce(RpcReplyPort<Result<(), RouterError>>) -> SupervisorMsg,
    ) -> Result<(), RouterError> {
        self.call(to, msg).await?
    }

    /// `call` with in-flight accounting.
    async fn call<M: Send + 'static, T: Send + 'static>(
        &self,
        to: &ActorRef<Envelope<M>>,
        msg: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, RouterError> {
        let shared = &self.shared;
        shared.count_sent(Sent::FacadeCall);
        match to.call(|reply| shared.envelope(msg(reply)), None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            Ok(_) => Err(RouterError::Unavailable("the actor stopped before answering".into())),
            Err(e) => Err(e.into()),
        }
    }

    // ---- skills ----

    /// Resolves a skill spec against the configured defaults and validates it.
    pub fn resolve_skill(&self, id: SkillId, spec: &SkillSpec) -> Result<Skill, RouterError> {
        let skill = spec
            .resolve(id, &self.skill_defaults, "")
            .map_err(|e| RouterError::InvalidRequest(e.to_string()))?;
        if let Some(fb) = &skill.fallback_skill {
            if !self.shared.skills.contains_key(fb) {
                return Err(RouterError::InvalidRequest(format!(
                    "fallback_skill: unknown skill {fb:?}"
                )));
            }
        }
        for (i, to) in skill.transfer_to.iter().flatten().enumerate() {
            if !self.shared.skills.contains_key(to) && *to != skill.id {
                return Err(RouterError::InvalidRequest(format!(
                    "transfer_to[{i}]: unknown skill {to:?}"
                )));
            }
        }
        Ok(skill)
    }

    /// Creates or replaces a skill. Its manual off-hours switch stays as it is.
    pub async fn put_skill(&self, id: SkillId, spec: &SkillSpec) -> Result<Arc<Skill>, RouterError> {
        let skill = self.resolve_skill(id, spec)?;
        let skill = self.keeping_off_hours(skill);
        self.install_skill(skill).await
    }

    /// `skill` with the off-hours switch of the skill it replaces: state, not settings.
    fn keeping_off_hours(&self, mut skill: Skill) -> Skill {
        if let Some(old) = self.shared.skill(&skill.id) {
            skill.off_hours = old.off_hours.clone();
        }
        skill
    }

    /// Switches a skill off hours by hand, or back (LivePerson's shift scheduler in
    /// manual mode): while off, the SLA clocks of its waits stand still, as outside its
    /// working hours. Every open conversation of the skill on this node computes its
    /// deadline again. Switching to what already is changes nothing.
    pub async fn set_off_hours(&self, id: &SkillId, on: bool) -> Result<Arc<Skill>, RouterError> {
        let current = self.skill(id)?;
        let mut skill = (*current).clone();
        if !skill.off_hours.switch(on, self.shared.now()) {
            return Ok(current);
        }
        let skill = self.install_skill(skill).await?;
        let open: Vec<ConversationId> = self
            .shared
            .conversations
            .iter()
            .filter(|h| {
                let c = h.lock();
                c.skill == *id && c.closed.is_none()
            })
            .map(|h| h.key().clone())
            .collect();
        for conversation in open {
            self.shared
                .tell_conversation(&conversation, ConversationMsg::OpenTimeChanged);
        }
        Ok(skill)
    }

    pub async fn install_skill(&self, skill: Skill) -> Result<Arc<Skill>, RouterError> {
        let id = skill.id.clone();
        let skill = Arc::new(skill);
        self.shared.persist_committed(Change::Skill(Arc::clone(&skill))).await?;
        self.shared.skills.insert(id.clone(), Arc::clone(&skill));
        if self.shared.queue(&id).is_none() && self.shared.serves(shard_of_queue(&id)) {
            self.call_supervisor(&self.queues, |reply| SupervisorMsg::SpawnQueue(id, reply))
                .await?;
        }
        Ok(skill)
    }

    pub fn skill(&self, id: &SkillId) -> Result<Arc<Skill>, RouterError> {
        self.shared.skill(id).ok_or_else(|| RouterError::not_found("skill", id))
    }

    pub fn skills(&self) -> Vec<Arc<Skill>> {
        let mut v: Vec<Arc<Skill>> = self.shared.skills.iter().map(|s| Arc::clone(&s)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    // ---- agents ----

    /// Creates or reconfigures an agent. A new agent starts offline.
    pub async fn put_agent(&self, id: AgentId, spec: AgentSpec) -> Result<Agent, RouterError> {
        if let Some(missing) = spec.skills.iter().find(|s| !self.shared.skills.contains_key(*s)) {
            return Err(RouterError::not_found("skill", missing));
        }
        if self.shared.agents.contains_key(&id) {
            return self
                .shared
                .call_agent(&id, |reply: AgentReply| AgentMsg::Configure(spec, reply))
                .await?;
        }
        let agent = Agent::new(id.clone(), spec, self.shared.now(), &self.shared.policy);
        let handle = Handle::passive(agent.clone());
        match self.shared.agents.entry(id.clone()) {
            dashmap::Entry::Occupied(_) => return Err(RouterError::Conflict(format!("agent {id} is being created"))),
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::clone(&handle));
            }
        }
        // Recorded before its actor runs: anything the actor records comes after.
        if let Err(lost) = self.shared.persist_committed(Change::Agent(Box::new(agent))).await {
            self.shared.agents.remove(&id);
            return Err(lost.into());
        }
        self.shared.start_agent(&handle);
        Ok(handle.snapshot())
    }

    pub async fn set_agent_status(&self, id: &AgentId, status: AgentStatus) -> Result<Agent, RouterError> {
        self.set_agent_status_with_reason(id, status, None).await
    }

    /// A new status, with a reason for `away` from `routing.away_reasons` (a reason
    /// with another status, or one not in the list, is refused and changes nothing).
    pub async fn set_agent_status_with_reason(
        &self,
        id: &AgentId,
        status: AgentStatus,
        reason: Option<String>,
    ) -> Result<Agent, RouterError> {
        if let Some(r) = &reason {
            if status != AgentStatus::Away {
                return Err(RouterError::InvalidRequest(
                    "a reason goes only with status away".into(),
                ));
            }
            if !self.shared.policy.away_reasons.contains(r) {
                return Err(RouterError::InvalidRequest(format!(
                    "reason {r:?} is not one of routing.away_reasons {:?}",
                    self.shared.policy.away_reasons
                )));
            }
        }
        self.shared
            .call_agent(id, |reply: AgentReply| AgentMsg::SetStatus(status, reason, reply))
            .await?
    }

    pub fn agent(&self, id: &AgentId) -> Result<Agent, RouterError> {
        self.shared
            .agents
            .get(id)
            .map(|h| h.snapshot())
            .ok_or_else(|| RouterError::not_found("agent", id))
    }

    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.shared.agents.iter().map(|h| h.key().clone()).collect()
    }

    /// Offer mode: the agent accepts the offer; returns the assigned conversation.
    pub async fn accept_offer(
        &self,
        conversation: &ConversationId,
        agent: &AgentId,
    ) -> Result<Conversation, RouterError> {
        self.ensure_conversation(conversation)?;
        if self.agent_elsewhere(agent) {
            return self.answer_at_conversation(conversation, agent, true).await;
        }
        let conversation = conversation.clone();
        self.shared
            .call_agent(agent, |reply: ConversationReply| AgentMsg::Accept {
                conversation,
                reply,
            })
            .await?
    }

    /// The agent's actor runs on another node (a cluster): the request came to the
    /// conversation's node.
    pub fn agent_elsewhere(&self, agent: &AgentId) -> bool {
        !self.shared.agents.contains_key(agent) && self.shared.serves_elsewhere(shard_of_agent(agent))
    }

    /// Offer mode with the agent on another node: the conversation takes the answer.
    async fn answer_at_conversation(
        &self,
        conversation: &ConversationId,
        agent: &AgentId,
        accept: bool,
    ) -> Result<Conversation, RouterError> {
        self.command(
            conversation,
            ConversationCommand::AnswerOffer {
                agent: agent.clone(),
                accept,
            },
        )
        .await
    }

    /// Offer mode: the agent rejects the offer; the conversation goes to the next agent.
    pub async fn reject_offer(
        &self,
        conversation: &ConversationId,
        agent: &AgentId,
    ) -> Result<Conversation, RouterError> {
        self.ensure_conversation(conversation)?;
        if self.agent_elsewhere(agent) {
            return self.answer_at_conversation(conversation, agent, false).await;
        }
        let id = conversation.clone();
        self.shared
            .call_agent(agent, |reply| AgentMsg::Reject {
                conversation: id,
                reply,
            })
            .await??;
        self.conversation(conversation)
    }

    // ---- conversations ----

    fn ensure_conversation(&self, id: &ConversationId) -> Result<(), RouterError> {
        if self.shared.conversations.contains_key(id) {
            Ok(())
        } else {
            Err(RouterError::not_found("conversation", id))
        }
    }

    /// A new id, in a shard this node serves (in a cluster, a node serves about 1/n of
    /// the shards: a few draws). None if it serves none.
    fn new_conversation_id(&self) -> Option<ConversationId> {
        for _ in 0..4096 {
            let candidate = format!("c-{:x}-{:04x}", self.shared.next_seq(), rand::random::<u16>());
            if let Ok(id) = ConversationId::new(candidate) {
                if !self.shared.conversations.contains_key(&id) && self.shared.serves(shard_of_conversation(&id)) {
                    return Some(id);
                }
            }
        }
        None
    }

    /// What is known of a consumer. In a cluster their last conversation may have been
    /// on another node: the stored record is read (the newer of it and this node's, by
    /// the last assignment; this node's alone if the store cannot be read).
    async fn consumer_record(&self, id: &ConsumerId) -> Option<ConsumerRecord> {
        let here = self.shared.consumers.get(id);
        let store = match (self.shared.remote.get(), self.shared.consumers.store.get()) {
            (Some(_), Some(store)) => Arc::clone(store),
            _ => return here,
        };
        let key = id.clone();
        let stored = match tokio::task::spawn_blocking(move || store.read_consumer(&key)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(consumer = %id, error = %format!("{e:#}"), "reading a consumer's record failed: this node's is used");
                return here;
            }
            Err(_) => return here,
        };
        let newest = match (here, stored) {
            (Some(h), Some(s)) => Some(
                if s.last_agent.as_ref().map(|l| l.1) > h.last_agent.as_ref().map(|l| l.1) {
                    s
                } else {
                    h
                },
            ),
            (h, s) => h.or(s),
        };
        if let Some(r) = &newest {
            self.shared.consumers.restore(id.clone(), r.clone());
        }
        newest
    }

    /// The consumer's first message: creates the conversation and queues it.
    pub async fn open_conversation(&self, req: OpenConversation) -> Result<Conversation, RouterError> {
        let consumer_id = req.consumer_id;
        let skill_id = req.skill;
        let skill = self.skill(&skill_id)?;
        let id = match req.conversation_id {
            Some(id) => id,
            None => self
                .new_conversation_id()
                .ok_or_else(|| RouterError::Unavailable("this node serves no shard yet".into()))?,
        };
        let now = self.shared.now();
        if !self.shared.admit_open() {
            return Err(RouterError::Overloaded);
        }
        let record = self.consumer_record(&consumer_id).await;
        let first_time = record.is_none();
        let preferred_agent = record.and_then(|r| r.preferred_agent(now, self.shared.policy.sticky_window));
        let conv = Conversation::open(
            OpenRequest {
                id: id.clone(),
                consumer_id: consumer_id.clone(),
                skill: skill_id.clone(),
                attributes: req.attributes,
                urgent: req.urgent,
                first_time,
                preferred_agent,
                seq: self.shared.next_seq(),
            },
            now,
            &skill,
        );
        let handle = Handle::passive(conv);
        match self.shared.conversations.entry(id.clone()) {
            dashmap::Entry::Occupied(_) => {
                self.shared.forget_open();
                return Err(RouterError::Conflict(format!("conversation {id} exists")));
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::clone(&handle));
            }
        }
        // The actor announces and queues it.
        let opened = self.send_command(&handle, ConversationCommand::Open).await;
        if opened.is_err() {
            self.shared.conversations.remove(&id);
            self.shared.forget_open();
        }
        opened
    }

    async fn command(&self, id: &ConversationId, cmd: ConversationCommand) -> Result<Conversation, RouterError> {
        let handle = self
            .shared
            .conversation(id)
            .ok_or_else(|| self.missing("conversation", id, shard_of_conversation(id)))?;
        self.send_command(&handle, cmd).await
    }

    /// Sends a command to the conversation (activating it if passive) and waits for
    /// the answer.
    async fn send_command(
        &self,
        handle: &ConversationHandle,
        cmd: ConversationCommand,
    ) -> Result<Conversation, RouterError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply: ConversationReply = tx.into();
        self.shared.count_sent(Sent::FacadeTell);
        self.shared
            .send_conversation(handle, ConversationMsg::Command(cmd, reply));
        rx.await
            .map_err(|_| RouterError::Unavailable("the conversation stopped before answering".into()))?
    }

    /// The agent exists, as far as this node can tell: an agent of another node's shard
    /// is not checked here (the conversation checks that the agent holds it, and the
    /// agent's own node drops messages for an unknown agent).
    fn ensure_agent(&self, id: &AgentId) -> Result<(), RouterError> {
        let shard = shard_of_agent(id);
        if self.shared.agents.contains_key(id) || self.shared.serves_elsewhere(shard) {
            Ok(())
        } else {
            Err(self.missing("agent", id, shard))
        }
    }

    /// Not found here: "not found", or in a cluster while the id's shard is between
    /// owners, "retry" (its actors are being built here or on another node).
    fn missing(&self, kind: &'static str, id: impl ToString, shard: u16) -> RouterError {
        if self.shared.shard_moving(shard) {
            RouterError::shard_moving(shard)
        } else {
            RouterError::not_found(kind, id)
        }
    }

    pub async fn consumer_message(&self, id: &ConversationId) -> Result<Conversation, RouterError> {
        self.command(id, ConversationCommand::ConsumerMessage).await
    }

    pub async fn agent_message(&self, id: &ConversationId, agent: &AgentId) -> Result<Conversation, RouterError> {
        self.ensure_agent(agent)?;
        self.command(id, ConversationCommand::AgentMessage { agent: agent.clone() })
            .await
    }

    pub async fn mark_urgent(&self, id: &ConversationId) -> Result<Conversation, RouterError> {
        self.command(id, ConversationCommand::MarkUrgent).await
    }

    /// A manual SLA: the agent will follow up within `due_in`.
    pub async fn follow_up(
        &self,
        id: &ConversationId,
        agent: &AgentId,
        due_in: Duration,
    ) -> Result<Conversation, RouterError> {
        self.ensure_agent(agent)?;
        if due_in.is_zero() || due_in > Duration::from_secs(366 * 86_400) {
            return Err(RouterError::InvalidRequest(
                "due_in_secs must be between 1 and 31622400".into(),
            ));
        }
        self.command(
            id,
            ConversationCommand::FollowUp {
                agent: agent.clone(),
                due_in,
            },
        )
        .await
    }

    pub async fn transfer_to_skill(&self, id: &ConversationId, skill: &SkillId) -> Result<Conversation, RouterError> {
        self.skill(skill)?;
        self.command(id, ConversationCommand::TransferToSkill { skill: skill.clone() })
            .await
    }

    /// Transfers to one agent of this node; with `skill`, to that skill too.
    pub async fn transfer_to_agent(
        &self,
        id: &ConversationId,
        agent: &AgentId,
        skill: Option<&SkillId>,
    ) -> Result<Conversation, RouterError> {
        let skills = self.agent(agent)?.skills;
        self.transfer_to_agent_with_skills(id, agent, &skills, skill).await
    }

    /// Transfers to one agent whose skills are `skills` (and to `skill`, if given): an
    /// agent of another node (a cluster) is not known here, and the API layer asks that
    /// node for them.
    pub async fn transfer_to_agent_with_skills(
        &self,
        id: &ConversationId,
        agent: &AgentId,
        skills: &[SkillId],
        skill: Option<&SkillId>,
    ) -> Result<Conversation, RouterError> {
        if let Some(s) = skill {
            self.skill(s)?;
        }
        let conv = self.conversation(id)?;
        ensure_has_skill(agent, skills, skill.unwrap_or(&conv.skill))?;
        if conv.agent_id.as_ref() == Some(agent) {
            return Err(RouterError::Conflict(format!(
                "conversation {id} is already assigned to {agent}"
            )));
        }
        self.command(
            id,
            ConversationCommand::TransferToAgent {
                agent: agent.clone(),
                skill: skill.cloned(),
            },
        )
        .await
    }

    /// Brings a closed conversation (within retention) back: the consumer wrote again
    /// (`agent: None`; the last agent preferred), or that agent reopens it (checked to
    /// have the conversation's skill: `agent_skills`, or this node's record of them). It
    /// counts against `max_open_conversations` again.
    pub async fn reopen(
        &self,
        id: &ConversationId,
        agent: Option<&AgentId>,
        agent_skills: Option<&[SkillId]>,
    ) -> Result<Conversation, RouterError> {
        if let Some(a) = agent {
            let skills = match agent_skills {
                Some(s) => s.to_vec(),
                None => self.agent(a)?.skills,
            };
            ensure_has_skill(a, &skills, &self.conversation(id)?.skill)?;
        }
        if !self.shared.admit_open() {
            return Err(RouterError::Overloaded);
        }
        let result = self
            .command(id, ConversationCommand::Reopen { agent: agent.cloned() })
            .await;
        if result.is_err() {
            self.shared.forget_open();
        }
        result
    }

    pub async fn return_to_queue(&self, id: &ConversationId, agent: &AgentId) -> Result<Conversation, RouterError> {
        self.ensure_agent(agent)?;
        self.command(id, ConversationCommand::ReturnToQueue { agent: agent.clone() })
            .await
    }

    pub async fn close(
        &self,
        id: &ConversationId,
        by: ClosedBy,
        agent: Option<&AgentId>,
    ) -> Result<Conversation, RouterError> {
        if let Some(a) = agent {
            self.ensure_agent(a)?;
        }
        if by == ClosedBy::Agent && agent.is_none() {
            return Err(RouterError::InvalidRequest(
                "agent_id is required when an agent closes".into(),
            ));
        }
        self.command(
            id,
            ConversationCommand::Close {
                by,
                agent: agent.cloned(),
            },
        )
        .await
    }

    /// The conversation as last committed by its actor.
    pub fn conversation(&self, id: &ConversationId) -> Result<Conversation, RouterError> {
        self.shared
            .conversations
            .get(id)
            .map(|h| h.snapshot())
            .ok_or_else(|| RouterError::not_found("conversation", id))
    }

    /// Visits every conversation's committed state without copying it (a scan: for
    /// metrics and admin views, not for request paths).
    pub fn visit_conversations(&self, mut f: impl FnMut(&Conversation)) {
        for h in self.shared.conversations.iter() {
            f(&h.lock());
        }
    }

    /// Visits every agent's committed state.
    pub fn visit_agents(&self, mut f: impl FnMut(&Agent)) {
        for h in self.shared.agents.iter() {
            f(&h.lock());
        }
    }

    /// Number of conversations the router holds (open, and closed within retention).
    pub fn num_conversations(&self) -> usize {
        self.shared.conversations.len()
    }

    /// Conversations that are not closed.
    pub fn num_open_conversations(&self) -> u64 {
        self.shared.num_open()
    }

    /// Closed conversations still readable (bounded by `closed_retention_secs` and
    /// `closed_retention_max`).
    pub fn num_closed_retained(&self) -> usize {
        self.shared.num_closed()
    }

    /// Conversations with a live activation right now (the rest are passive).
    pub fn num_active_conversations(&self) -> usize {
        self.shared.conversations.iter().filter(|h| h.slot.is_live()).count()
    }

    /// Conversation activations started since start (of passive conversations, and restarts).
    pub fn conversation_activations(&self) -> u64 {
        self.shared.activations()
    }

    /// Deadlines armed in the timer service (at most one per conversation, agent and queue).
    pub fn armed_deadlines(&self) -> usize {
        self.shared.timers.len()
    }

    // ---- queues ----

    pub async fn queue(&self, skill: &SkillId, limit: usize) -> Result<QueueSnapshot, RouterError> {
        let q = self
            .shared
            .queue(skill)
            .ok_or_else(|| RouterError::not_found("skill", skill))?;
        let rows = self.call(&q, |reply| QueueMsg::Rows { limit, reply }).await?;
        let health = self.queue_health_of(skill).await?;
        Ok(QueueSnapshot {
            skill_id: skill.clone(),
            conversations: rows,
            health,
        })
    }

    /// The queue's own figures, without the scan of assigned conversations.
    pub async fn queue_figures(&self, skill: &SkillId) -> Result<QueueFigures, RouterError> {
        let q = self
            .shared
            .queue(skill)
            .ok_or_else(|| RouterError::not_found("skill", skill))?;
        self.call(&q, QueueMsg::Figures).await
    }

    /// What `GET /v1/queue-health` would promise a conversation opened now on `skill`:
    /// the queue's estimate alone, without its figures' scan of the line.
    pub async fn estimated_wait(&self, skill: &SkillId) -> Result<Option<Duration>, RouterError> {
        let q = self
            .shared
            .queue(skill)
            .ok_or_else(|| RouterError::not_found("skill", skill))?;
        self.call(&q, QueueMsg::EstimatedWait).await
    }

    async fn queue_health_of(&self, skill: &SkillId) -> Result<QueueHealth, RouterError> {
        Ok(self.health(Some(skill)).await?.remove(skill).unwrap_or_default())
    }

    /// Figures of every skill: the queue's own, plus assigned and overdue-assigned counts
    /// from the conversations (a scan: meant for dashboards, not per-request paths).
    pub async fn queue_health(&self) -> Result<BTreeMap<SkillId, QueueHealth>, RouterError> {
        self.health(None).await
    }

    /// Health of one skill, or of all of them.
    async fn health(&self, only: Option<&SkillId>) -> Result<BTreeMap<SkillId, QueueHealth>, RouterError> {
        let wanted = |s: &SkillId| only.is_none_or(|o| o == s);
        let mut out: BTreeMap<SkillId, QueueHealth> = BTreeMap::new();
        let queues: Vec<(SkillId, QueueRef)> = self
            .shared
            .queues
            .iter()
            .filter(|e| wanted(e.key()))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (skill, q) in queues {
            let figures = self.call(&q, QueueMsg::Figures).await?;
            out.insert(
                skill,
                QueueHealth {
                    queue: figures,
                    ..QueueHealth::default()
                },
            );
        }
        let mut assigned: HashMap<SkillId, (usize, usize)> = HashMap::new();
        for h in self.shared.conversations.iter() {
            let c = h.lock();
            if c.state == Phase::Assigned && wanted(&c.skill) {
                let e = assigned.entry(c.skill.clone()).or_default();
                e.0 += 1;
                e.1 += usize::from(c.overdue);
            }
        }
        for (skill, (n, overdue)) in assigned {
            let h = out.entry(skill).or_default();
            h.assigned = n;
            h.overdue_assigned = overdue;
        }
        Ok(out)
    }

    /// Stops every actor and the timer service.
    /// False while the store's last commit failed (none: always true).
    pub fn store_healthy(&self) -> bool {
        self.shared.store.get().is_none_or(|s| s.is_healthy())
    }

    pub async fn shutdown(&self) {
        if let Some(store) = self.shared.store.get() {
            // Relaxed writes not committed yet reach the store before the process ends.
            store.flush().await;
        }
        self.timers.abort();
        self.shared.stop_serving();
        for sup in [&self.restarter, &self.queues] {
            sup.stop(None);
        }
    }

    /// Makes an actor panic while handling a message (tests of supervision only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_panic(&self, target: FaultTarget) -> bool {
        use crate::actors::agent::AgentMsg as A;
        use crate::actors::conversation::ConversationMsg as C;
        match target {
            FaultTarget::Conversation(id) => self
                .shared
                .conversation(&id)
                .map(|h| self.shared.send_conversation(&h, C::Panic))
                .is_some(),
            FaultTarget::Agent(id) => {
                let known = self.shared.agents.contains_key(&id);
                self.shared.tell_agent(&id, A::Panic);
                known
            }
            FaultTarget::Queue(id) => self
                .shared
                .queue(&id)
                .map(|a| self.shared.tell(&a, QueueMsg::Panic))
                .is_some(),
        }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// An agent whose skills are `skills` may take a conversation of `skill` (409 otherwise).
fn ensure_has_skill(agent: &AgentId, skills: &[SkillId], skill: &SkillId) -> Result<(), RouterError> {
    if skills.contains(skill) {
        Ok(())
    } else {
        Err(RouterError::Conflict(format!(
            "agent {agent} does not have skill {skill}"
        )))
    }
}

/// What an agent holds for an assigned conversation, as its record says.
fn held_by(conv: &Conversation, skill: &Skill, policy: &RoutingPolicy, now: Timestamp) -> Held {
    Held {
        skill: conv.skill.clone(),
        weight: conv.weight(skill),
        activity: conv.activity,
        pending_since: conv.pending_for_agent(policy),
        assigned_at: conv.assigned_at.unwrap_or(now),
    }
}

/// Removes the entries whose key `pick` accepts; returns their values.
fn take_where<K, V>(map: &dashmap::DashMap<K, V>, pick: impl Fn(&K) -> bool) -> Vec<V>
where
    K: Eq + std::hash::Hash + Clone,
{
    let keys: Vec<K> = map.iter().filter(|e| pick(e.key())).map(|e| e.key().clone()).collect();
    keys.iter().filter_map(|k| map.remove(k).map(|(_, v)| v)).collect()
}
