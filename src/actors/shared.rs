//! What every actor and the [`Router`](crate::Router) share: the clock, the routing
//! policy, the skills, the id → handle directories (`dashmap`), the timer service, the
//! event bus and a count of messages in flight.
//!
//! Conversation and agent state lives in a [`Handle`] beside the actor rather than
//! inside it: the actor commits each new state there after a message is handled, so a
//! supervisor can restart a crashed actor from its last state, and the API reads
//! snapshots without a round trip through the actor's mailbox.
//!
//! Conversations are virtual actors, as Orleans' grains: the handle is the
//! conversation, and a task serves its mailbox ([`Turns`]) only while it has work. A
//! message to a passive conversation activates it ([`Shared::tell_conversation`]); a
//! quiet one passivates; its deadlines wait in the [`Timers`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use dashmap::DashMap;
use ractor::ActorRef;
use tokio::sync::broadcast;

use crate::actors::agent::{AgentActivation, AgentMsg};
use crate::actors::consumers::Consumers;
use crate::actors::conversation::{Activation, ConversationMsg};
pub use crate::actors::envelope::{Envelope, InFlight};
use crate::actors::remote::{
    shard_of_agent, shard_of_conversation, shard_of_queue, Crossing, Remote, ToAgent, ToConversation, ToQueue,
};
use crate::actors::skill_queue::QueueMsg;
use crate::actors::supervisor::{Child, SupervisorMsg};
use crate::actors::timer::{TimerTarget, Timers};
pub use crate::actors::turns::{Delivery, Turns};
use crate::cluster::lease::Fenced;
use crate::domain::agent::Agent;
use crate::domain::conversation::Conversation;
use crate::domain::skill::{RoutingPolicy, Skill};
use crate::error::RouterError;
use crate::events::{EventKind, RouterEvent};
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::store::{Change, Store, Ticket};
use crate::time::{Clock, Timestamp};

/// The committed state of one conversation or agent, and where its messages go (`T`:
/// a conversation's [`Turns`], an agent's actor). The state outlives whatever serves it
/// (a restart after a crash resumes from it, a passive conversation is nothing else),
/// and the API reads it without a round trip through a mailbox.
#[derive(Debug)]
pub struct Handle<S, T> {
    state: Mutex<S>,
    pub(crate) slot: T,
}

impl<S: Clone, T> Handle<S, T> {
    /// A copy of the last committed state.
    pub fn snapshot(&self) -> S {
        self.lock().clone()
    }

    pub fn lock(&self) -> MutexGuard<'_, S> {
        // A poisoned lock is still sound to read. Conversations commit by replacing the
        // whole value, so a panic cannot leave one half-written. An agent changes its
        // state in place under this lock (`AgentActor::apply`): after a panic half-way,
        // its restart re-derives what it holds and has been offered from the
        // conversations' own records (`AgentActor::reconcile`).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn commit(&self, state: S) {
        *self.lock() = state;
    }
}

impl<S, M, A> Handle<S, Turns<M, A>> {
    /// A conversation or agent with no activation: the first message starts one (or,
    /// for an agent, its creator: see [`Shared::start_agent`]).
    pub fn passive(state: S) -> Arc<Self> {
        Arc::new(Handle {
            state: Mutex::new(state),
            slot: Turns::default(),
        })
    }
}

pub type QueueRef = ActorRef<Envelope<QueueMsg>>;
pub type ConversationHandle = Arc<Handle<Conversation, Turns<Envelope<ConversationMsg>, Activation>>>;
pub type AgentHandle = Arc<Handle<Agent, Turns<Envelope<AgentMsg>, AgentActivation>>>;

#[derive(Debug)]
pub struct Shared {
    pub clock: Clock,
    pub policy: RoutingPolicy,
    pub skills: DashMap<SkillId, Arc<Skill>>,
    pub conversations: DashMap<ConversationId, ConversationHandle>,
    pub agents: DashMap<AgentId, AgentHandle>,
    pub queues: DashMap<SkillId, QueueRef>,
    pub consumers: Consumers,
    pub timers: Arc<Timers>,
    /// The durable record, when the node has one (set before any actor starts).
    pub store: OnceLock<Arc<Store>>,
    /// Restarts crashed conversations and agents (set once the supervisor runs).
    pub(crate) restarter: OnceLock<ActorRef<Envelope<SupervisorMsg>>>,
    /// This, for the tasks that serve conversations.
    me: Weak<Shared>,
    /// The router is shutting down: conversations are no longer served.
    stopping: AtomicBool,
    /// Where messages for other nodes' actors go (a cluster node); none on a single node.
    pub(crate) remote: OnceLock<Arc<dyn Remote>>,
    crossings: Crossings,
    /// Closed conversations still readable, oldest first: bounded in age
    /// (`closed_retention`) and in count (`closed_retention_max`).
    closed: Mutex<VecDeque<(ConversationId, Timestamp)>>,
    /// Conversations that are not closed (the bound of `max_open_conversations`).
    open: AtomicU64,
    events: broadcast::Sender<RouterEvent>,
    /// Messages sent to actors and not yet handled (see [`Envelope`]).
    in_flight: Arc<AtomicI64>,
    /// Crashes whose restart is not done yet (each also counted in `in_flight`).
    crashes_pending: AtomicI64,
    /// Messages sent since start (benchmarks relate a lifecycle's cost to it).
    sent_total: AtomicU64,
    /// Messages sent since start by way (see [`Sent`]).
    sent: [AtomicU64; Sent::WAYS],
    /// Conversation activations started (of passive conversations, and restarts) since start.
    activations: AtomicU64,
    /// Agent activations started (creations, recoveries and restarts) since start.
    agent_activations: AtomicU64,
    seq: AtomicU64,
}

/// Counts of messages between nodes.
#[derive(Debug, Default)]
struct Crossings {
    out: AtomicU64,
    delivered: AtomicU64,
    refused: AtomicU64,
}

/// The ways a message is sent, as counted for [`Shared::sent_by_way`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sent {
    ToQueue,
    ToAgent,
    ToConversation,
    /// A deadline's delivery (also counted by its target).
    FromTimers,
    /// A call from the API's facade (not counted by target).
    FacadeCall,
    /// A command told by the API's facade (also counted by its target).
    FacadeTell,
}

impl Sent {
    const WAYS: usize = 6;
}

/// Messages sent since start, by where they come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentByWay {
    /// From one actor to another (conversation, agent, skill queue): in a cluster, the
    /// ones that may cross nodes.
    pub between_actors: u64,
    /// Deadlines coming due (delivered on the node that owns the target).
    pub from_timers: u64,
    /// Calls and commands of the API (after forwarding, on the owner's node).
    pub from_api: u64,
    /// The rest: supervision, activation.
    pub other: u64,
}

/// Held by a handler while it runs: if the handler panics, the crash counts as work in
/// flight until the supervisor has restarted the actor ([`Shared::restart_done`]).
#[derive(Debug)]
pub struct CrashGuard<'a>(&'a Shared);

impl Drop for CrashGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.in_flight.fetch_add(1, Ordering::AcqRel);
            self.0.crashes_pending.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Shared {
    pub fn new(clock: Clock, policy: RoutingPolicy, event_capacity: usize) -> Arc<Self> {
        let (events, _) = broadcast::channel(event_capacity.max(16));
        let consumers = Consumers::new(policy.max_consumers);
        Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            stopping: AtomicBool::new(false),
            clock,
            policy,
            skills: DashMap::new(),
            conversations: DashMap::new(),
            agents: DashMap::new(),
            queues: DashMap::new(),
            consumers,
            timers: Arc::new(Timers::default()),
            store: OnceLock::new(),
            restarter: OnceLock::new(),
            remote: OnceLock::new(),
            crossings: Crossings::default(),
            closed: Mutex::new(VecDeque::new()),
            open: AtomicU64::new(0),
            events,
            in_flight: Arc::new(AtomicI64::new(0)),
            crashes_pending: AtomicI64::new(0),
            sent_total: AtomicU64::new(0),
            sent: Default::default(),
            activations: AtomicU64::new(0),
            agent_activations: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Queues a change for the store (none without a store); see [`Shared::persisted`].
    pub fn persist(&self, change: Change) -> Option<Ticket> {
        self.store.get().map(|s| s.write(change))
    }

    /// Waits until a change is durable, as the store's durability says (at once in
    /// relaxed mode or without a store). In a cluster, the store refuses a change whose
    /// shard this node no longer holds: then nobody may be told of it.
    pub async fn persisted(&self, t: Option<Ticket>) -> Result<(), Fenced> {
        match (self.store.get(), t) {
            (Some(store), Some(t)) => store.committed(t).await,
            _ => Ok(()),
        }
    }

    /// Queues a change and waits until it is durable (or refused: see
    /// [`Shared::persisted`]).
    pub async fn persist_committed(&self, change: Change) -> Result<(), Fenced> {
        let t = self.persist(change);
        self.persisted(t).await
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A token that counts as one message in flight until dropped.
    pub fn token(&self) -> InFlight {
        self.sent_total.fetch_add(1, Ordering::Relaxed);
        self.work()
    }

    /// Work in flight that is not a message (an activation starting): the engine is
    /// not quiet until it is dropped, and it is not counted in `sent_total`.
    pub(crate) fn work(&self) -> InFlight {
        InFlight::new(&self.in_flight)
    }

    /// The in-flight counter itself, for the timer driver: it counts a due deadline
    /// from the moment it leaves the wheel ([`super::timer::Timers::start`]).
    pub(crate) fn in_flight_counter(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.in_flight)
    }

    pub fn sent_total(&self) -> u64 {
        self.sent_total.load(Ordering::Relaxed)
    }

    pub(crate) fn count_sent(&self, way: Sent) {
        self.sent[way as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Messages sent since start, by way: what a cluster would carry between nodes is
    /// the messages between actors (the others stay on the node that owns their target).
    pub fn sent_by_way(&self) -> SentByWay {
        let n = |w: Sent| self.sent[w as usize].load(Ordering::Relaxed);
        let told = n(Sent::ToQueue) + n(Sent::ToAgent) + n(Sent::ToConversation);
        let between = told.saturating_sub(n(Sent::FromTimers) + n(Sent::FacadeTell));
        let facade = n(Sent::FacadeCall) + n(Sent::FacadeTell);
        SentByWay {
            between_actors: between,
            from_timers: n(Sent::FromTimers),
            from_api: facade,
            other: self.sent_total().saturating_sub(between + n(Sent::FromTimers) + facade),
        }
    }

    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
    }

    pub(crate) fn count_activation(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }

    /// Agent activations started since start: one per agent created or read back, and
    /// one per restart after a crash.
    pub fn agent_activations(&self) -> u64 {
        self.agent_activations.load(Ordering::Relaxed)
    }

    pub(crate) fn count_agent_activation(&self) {
        self.agent_activations.fetch_add(1, Ordering::Relaxed);
    }

    /// Wraps a message with its in-flight token.
    pub fn envelope<M>(&self, msg: M) -> Envelope<M> {
        Envelope {
            msg,
            token: self.token(),
        }
    }

    /// Sends a message; it counts as in flight until handled (or refused, or lost).
    pub fn tell<M: Send + 'static>(&self, to: &ActorRef<Envelope<M>>, msg: M) {
        // A refused message comes back inside the error and is dropped with its token.
        let _ = to.cast(self.envelope(msg));
    }

    /// Every handler holds one while it runs.
    pub fn crash_guard(&self) -> CrashGuard<'_> {
        CrashGuard(self)
    }

    /// A supervisor finished handling a crash (restarted the actor or gave up on it).
    pub fn restart_done(&self) {
        let marked = self
            .crashes_pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then(|| n - 1))
            .is_ok();
        if marked {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn publish(&self, event: RouterEvent) {
        // An agent of another node has its event streams there.
        if let Some(agent) = &event.agent_id {
            if let Some((remote, node)) = self.elsewhere(shard_of_agent(agent)) {
                remote.event(&node, &event);
            }
        }
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub fn event(
        &self,
        at: Timestamp,
        kind: EventKind,
        conversation: Option<&ConversationId>,
        agent: Option<&AgentId>,
        skill: Option<&SkillId>,
    ) {
        self.publish(RouterEvent {
            at,
            conversation_id: conversation.cloned(),
            agent_id: agent.cloned(),
            skill: skill.cloned(),
            kind,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RouterEvent> {
        self.events.subscribe()
    }

    pub fn skill(&self, id: &SkillId) -> Option<Arc<Skill>> {
        self.skills.get(id).map(|s| Arc::clone(&s))
    }

    /// The skill's fallback skill exists (a fallback may be named before it is created).
    pub fn has_fallback(&self, skill: &Skill) -> bool {
        skill
            .fallback_skill
            .as_ref()
            .is_some_and(|f| self.skills.contains_key(f))
    }

    pub fn queue(&self, skill: &SkillId) -> Option<QueueRef> {
        self.queues.get(skill).map(|q| q.clone())
    }

    pub fn conversation(&self, id: &ConversationId) -> Option<ConversationHandle> {
        self.conversations.get(id).map(|h| Arc::clone(&h))
    }

    /// Sends to a skill queue (on the node that serves its shard).
    pub fn tell_queue(&self, skill: &SkillId, msg: QueueMsg) {
        let msg = match self.elsewhere(shard_of_queue(skill)) {
            None => msg,
            Some((remote, node)) => match ToQueue::try_from(msg) {
                Ok(wire) => {
                    return self.cross(
                        remote,
                        &node,
                        Crossing::Queue {
                            skill: skill.clone(),
                            msg: wire,
                        },
                    )
                }
                Err(local) => return self.stays_local(&node, &format!("{local:?}")),
            },
        };
        self.tell_local_queue(skill, msg);
    }

    fn tell_local_queue(&self, skill: &SkillId, msg: QueueMsg) {
        if let Some(q) = self.queue(skill) {
            self.count_sent(Sent::ToQueue);
            self.tell(&q, msg);
        }
    }

    /// Sends to a conversation (on the node that serves its shard), activating it if it
    /// is passive. Unknown ids (closed and forgotten) drop the message.
    pub fn tell_conversation(&self, id: &ConversationId, msg: ConversationMsg) {
        let msg = match self.elsewhere(shard_of_conversation(id)) {
            None => msg,
            Some((remote, node)) => match ToConversation::try_from(msg) {
                Ok(wire) => {
                    return self.cross(
                        remote,
                        &node,
                        Crossing::Conversation {
                            id: id.clone(),
                            msg: wire,
                        },
                    )
                }
                Err(ConversationMsg::Assign { reply: Some(reply), .. }) => {
                    self.crossings.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Err(RouterError::Unavailable(format!(
                        "accepting an offer for a conversation of another node ({node}) is not supported yet"
                    ))));
                    return;
                }
                Err(local) => return self.stays_local(&node, &format!("{local:?}")),
            },
        };
        if let Some(handle) = self.conversation(id) {
            self.send_conversation(&handle, msg);
        }
    }

    /// The node serving `shard`, when a cluster is set up and it is not this one.
    fn elsewhere(&self, shard: u16) -> Option<(&Arc<dyn Remote>, String)> {
        let remote = self.remote.get()?;
        remote.elsewhere(shard).map(|node| (remote, node))
    }

    /// Another node serves `shard` (a cluster).
    pub fn serves_elsewhere(&self, shard: u16) -> bool {
        self.elsewhere(shard).is_some()
    }

    /// `shard` is between owners (a cluster; never outside one).
    pub fn shard_moving(&self, shard: u16) -> bool {
        self.remote.get().is_some_and(|r| r.moving(shard))
    }

    /// This node serves `shard` (always, outside a cluster).
    pub fn serves(&self, shard: u16) -> bool {
        self.remote.get().is_none_or(|r| r.serves(shard))
    }

    fn cross(&self, remote: &Arc<dyn Remote>, node: &str, msg: Crossing) {
        self.crossings.out.fetch_add(1, Ordering::Relaxed);
        remote.send(node, msg);
    }

    /// A message that cannot cross (it carries a reply port, or is a timer's tick) for
    /// an actor of another node: dropped, and counted.
    fn stays_local(&self, node: &str, what: &str) {
        self.crossings.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            node,
            message = what,
            "a node-local message for an actor of another node; dropped"
        );
    }

    /// Delivers a message from another node to the actor here, as a local tell would.
    /// It is not sent on again: if this node no longer serves the target, the target is
    /// not here and the message is dropped, as one to an unknown actor is.
    pub fn deliver_crossing(&self, msg: Crossing) {
        self.crossings.delivered.fetch_add(1, Ordering::Relaxed);
        match msg {
            Crossing::Agent { agent, msg } => self.tell_local_agent(&agent, msg.into()),
            Crossing::Conversation { id, msg } => {
                if let Some(handle) = self.conversation(&id) {
                    self.send_conversation(&handle, msg.into());
                }
            }
            Crossing::Queue { skill, msg } => self.tell_local_queue(&skill, msg.into()),
        }
    }

    /// Messages that left for other nodes, arrived from them, and were refused (they
    /// cannot cross), since start.
    pub fn crossings(&self) -> (u64, u64, u64) {
        let c = &self.crossings;
        (
            c.out.load(Ordering::Relaxed),
            c.delivered.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
        )
    }

    pub fn send_conversation(&self, handle: &ConversationHandle, msg: ConversationMsg) {
        self.count_sent(Sent::ToConversation);
        if handle.slot.deliver(self.envelope(msg)) == Delivery::Serve {
            self.serve_conversation(handle, false);
        }
    }

    /// Starts a task that serves the conversation's mailbox (see [`Turns`]).
    pub(crate) fn serve_conversation(&self, handle: &ConversationHandle, restarted: bool) {
        let Some(me) = self.me.upgrade() else { return };
        crate::actors::conversation::serve(me, Arc::clone(handle), restarted);
    }

    /// A conversation's or agent's turn panicked (the crash is counted in flight): its
    /// mailbox is marked crashed, keeping what waited, and the supervisor serves it
    /// again, with its backoff. Before the supervisor runs (a router booting), it is
    /// served again at once.
    pub(crate) fn restart_crashed<M, A>(&self, slot: &Turns<M, A>, child: Child) {
        slot.crashed();
        tracing::warn!(?child, "crashed; restarting from its last state");
        match self.restarter.get() {
            Some(supervisor) => self.tell(supervisor, SupervisorMsg::Crashed(child)),
            None => {
                if let Err(e) = self.serve_again(&child) {
                    tracing::error!(?child, error = %e, "restart failed");
                }
                self.restart_done();
            }
        }
    }

    /// Serves a crashed conversation or agent again, from its committed state; its
    /// mailbox kept what waited. A queue is an actor: its supervisor spawns it.
    pub(crate) fn serve_again(&self, child: &Child) -> Result<(), RouterError> {
        match child {
            Child::Conversation(id) => {
                let handle = self
                    .conversation(id)
                    .ok_or_else(|| RouterError::not_found("conversation", id))?;
                if handle.slot.claim() {
                    self.serve_conversation(&handle, true);
                }
            }
            Child::Agent(id) => {
                let handle = self.agents.get(id).map(|h| Arc::clone(&h));
                let handle = handle.ok_or_else(|| RouterError::not_found("agent", id))?;
                if handle.slot.claim() {
                    self.serve_agent(&handle, true);
                }
            }
            Child::Queue(_) => {}
        }
        Ok(())
    }

    /// The router stops: conversation tasks end after their turn.
    pub(crate) fn stop_serving(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sends to an agent (on the node that serves its shard).
    pub fn tell_agent(&self, id: &AgentId, msg: AgentMsg) {
        let msg = match self.elsewhere(shard_of_agent(id)) {
            None => msg,
            Some((remote, node)) => match ToAgent::try_from(msg) {
                Ok(wire) => {
                    return self.cross(
                        remote,
                        &node,
                        Crossing::Agent {
                            agent: id.clone(),
                            msg: wire,
                        },
                    )
                }
                Err(local) => return self.stays_local(&node, &format!("{local:?}")),
            },
        };
        self.tell_local_agent(id, msg);
    }

    fn tell_local_agent(&self, id: &AgentId, msg: AgentMsg) {
        if let Some(handle) = self.agents.get(id).map(|h| Arc::clone(&h)) {
            self.count_sent(Sent::ToAgent);
            if handle.slot.deliver(self.envelope(msg)) == Delivery::Serve {
                self.serve_agent(&handle, false);
            }
        }
    }

    /// Sends a message that carries a reply port to an agent of this node, and waits
    /// for the answer.
    pub(crate) async fn call_agent<T: Send + 'static>(
        &self,
        id: &AgentId,
        msg: impl FnOnce(ractor::RpcReplyPort<T>) -> AgentMsg,
    ) -> Result<T, RouterError> {
        let handle = self.agents.get(id).map(|h| Arc::clone(&h));
        let handle = handle.ok_or_else(|| RouterError::not_found("agent", id))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.count_sent(Sent::FacadeCall);
        if handle.slot.deliver(self.envelope(msg(tx.into()))) == Delivery::Serve {
            self.serve_agent(&handle, false);
        }
        rx.await
            .map_err(|_| RouterError::Unavailable("the agent stopped before answering".into()))
    }

    /// A new agent (created, or read back from the store) starts: its first activation
    /// tells its skill queues its room.
    pub(crate) fn start_agent(&self, handle: &AgentHandle) {
        if handle.slot.claim() {
            self.serve_agent(handle, false);
        }
    }

    /// Starts a task that serves the agent's mailbox (see [`Turns`]).
    pub(crate) fn serve_agent(&self, handle: &AgentHandle, restarted: bool) {
        let Some(me) = self.me.upgrade() else { return };
        crate::actors::agent::serve(me, Arc::clone(handle), restarted);
    }

    /// A deadline from the [`Timers`] came due.
    pub(crate) fn deliver_due(&self, target: TimerTarget) {
        if !matches!(target, TimerTarget::ClosedSweep) {
            self.count_sent(Sent::FromTimers);
        }
        match target {
            TimerTarget::Conversation(id) => self.tell_conversation(&id, ConversationMsg::Tick),
            TimerTarget::Agent(id) => self.tell_agent(&id, AgentMsg::Tick),
            TimerTarget::Queue(skill) => self.tell_queue(&skill, QueueMsg::RetryDeclined),
            TimerTarget::ClosedSweep => self.sweep_closed(),
        }
    }

    pub fn arm(&self, target: TimerTarget, at: Option<Timestamp>) {
        self.timers.arm(self, target, at);
    }

    // ---- open and closed conversations ----

    /// Counts a new conversation against `max_open_conversations`; `false` (and no
    /// count) when the bound is reached.
    pub(crate) fn admit_open(&self) -> bool {
        let max = self.policy.max_open_conversations;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// An admitted conversation was not created after all.
    pub(crate) fn forget_open(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// An open conversation read back from the store (counted whatever the bound).
    pub(crate) fn restore_open(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }

    /// Closed conversations read back from the store, still within retention.
    pub(crate) fn restore_closed(&self, mut closed: Vec<(ConversationId, Timestamp)>) {
        closed.sort_by_key(|(_, at)| *at);
        let mut evicted = Vec::new();
        {
            let mut list = self.closed_list();
            list.extend(closed);
            while list.len() > self.policy.closed_retention_max {
                evicted.extend(list.pop_front());
            }
        }
        for (id, at) in evicted {
            self.forget_closed(&id, at);
        }
        self.arm_sweep();
    }

    /// Sequence numbers go on after the highest one recovered.
    pub(crate) fn restore_seq(&self, max: u64) {
        self.seq.fetch_max(max, Ordering::AcqRel);
    }

    /// Conversations that are not closed.
    pub fn num_open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    fn closed_list(&self) -> MutexGuard<'_, VecDeque<(ConversationId, Timestamp)>> {
        self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of closed conversations still readable.
    pub fn num_closed(&self) -> usize {
        self.closed_list().len()
    }

    /// A conversation closed at `at`: it stays readable within the retention bounds.
    pub(crate) fn note_closed(&self, id: &ConversationId, at: Timestamp) {
        self.forget_open();
        let mut evicted = Vec::new();
        {
            let mut closed = self.closed_list();
            closed.push_back((id.clone(), at));
            while closed.len() > self.policy.closed_retention_max {
                evicted.extend(closed.pop_front());
            }
        }
        for (id, at) in evicted {
            self.forget_closed(&id, at);
        }
        self.arm_sweep();
    }

    /// Forgets closed conversations past their retention.
    fn sweep_closed(&self) {
        let now = self.now();
        let mut expired = Vec::new();
        {
            let mut closed = self.closed_list();
            while closed
                .front()
                .is_some_and(|(_, at)| now >= at.plus(self.policy.closed_retention))
            {
                expired.extend(closed.pop_front());
            }
        }
        for (id, at) in expired {
            self.forget_closed(&id, at);
        }
        self.arm_sweep();
    }

    fn arm_sweep(&self) {
        let next = self
            .closed_list()
            .front()
            .map(|(_, at)| at.plus(self.policy.closed_retention));
        self.arm(TimerTarget::ClosedSweep, next);
    }

    /// Removes the conversation from the directory if it is still the one closed at `at`.
    fn forget_closed(&self, id: &ConversationId, at: Timestamp) {
        let removed = self
            .conversations
            .remove_if(id, |_, h| h.lock().closed.is_some_and(|c| c.at == at));
        if removed.is_some() {
            self.timers.disarm(self, TimerTarget::Conversation(id.clone()));
            self.persist(Change::ForgetConversation(id.clone()));
        }
    }
}
