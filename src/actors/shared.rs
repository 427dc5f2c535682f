//! What every actor and the [`Router`](crate::Router) share: the clock, the routing
//! policy, the skills, and the id → actor directories (`dashmap`), plus the event bus
//! and a count of messages in flight.
//!
//! Conversation and agent state lives in a [`Handle`] beside the actor rather than
//! inside it: the actor commits each new state there after a message is handled, so a
//! supervisor can restart a crashed actor from its last state, and the API reads
//! snapshots without a round trip through the actor's mailbox.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use ractor::{ActorRef, Message};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::actors::agent::AgentMsg;
use crate::actors::conversation::ConvMsg;
use crate::actors::skill_queue::QueueMsg;
use crate::domain::agent::Agent;
use crate::domain::conversation::Conversation;
use crate::domain::skill::{RoutingPolicy, Skill};
use crate::events::{EventKind, RouterEvent};
use crate::ids::{AgentId, ConsumerId, ConversationId, SkillId};
use crate::time::{Clock, Timestamp};

/// The committed state of one actor, and the actor currently serving it.
#[derive(Debug)]
pub struct Handle<S, M: Message> {
    state: Mutex<S>,
    actor: RwLock<Option<ActorRef<M>>>,
}

impl<S: Clone, M: Message> Handle<S, M> {
    pub fn new(state: S) -> Arc<Self> {
        Arc::new(Handle {
            state: Mutex::new(state),
            actor: RwLock::new(None),
        })
    }

    /// A copy of the last committed state.
    pub fn snapshot(&self) -> S {
        self.lock().clone()
    }

    pub fn lock(&self) -> MutexGuard<'_, S> {
        // A panic while the lock is held cannot leave a half-written state: commits
        // replace the whole value. So a poisoned lock is still sound to read.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn commit(&self, state: S) {
        *self.lock() = state;
    }

    pub fn actor(&self) -> Option<ActorRef<M>> {
        self.actor.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_actor(&self, actor: Option<ActorRef<M>>) {
        *self.actor.write().unwrap_or_else(|p| p.into_inner()) = actor;
    }
}

pub type ConvRef = ActorRef<Envelope<ConvMsg>>;
pub type AgentRef = ActorRef<Envelope<AgentMsg>>;
pub type QueueRef = ActorRef<Envelope<QueueMsg>>;
pub type ConversationHandle = Arc<Handle<Conversation, Envelope<ConvMsg>>>;
pub type AgentHandle = Arc<Handle<Agent, Envelope<AgentMsg>>>;

/// The last agent who served a consumer (return to the same agent).
#[derive(Clone, Debug)]
pub struct ConsumerRecord {
    pub last_agent: Option<(AgentId, Timestamp)>,
}

#[derive(Debug)]
pub struct Shared {
    pub clock: Clock,
    pub policy: RoutingPolicy,
    pub skills: DashMap<SkillId, Arc<Skill>>,
    pub conversations: DashMap<ConversationId, ConversationHandle>,
    pub agents: DashMap<AgentId, AgentHandle>,
    pub queues: DashMap<SkillId, QueueRef>,
    pub consumers: DashMap<ConsumerId, ConsumerRecord>,
    events: broadcast::Sender<RouterEvent>,
    /// Messages sent to actors and not yet handled (see [`Envelope`]).
    in_flight: Arc<AtomicI64>,
    /// Crashes whose restart is not done yet (each also counted in `in_flight`).
    crashes_pending: AtomicI64,
    /// Messages sent since start (benchmarks relate a lifecycle's cost to it).
    sent_total: AtomicU64,
    seq: AtomicU64,
}

/// One unit of the engine's in-flight count, released when dropped: with the message
/// it travels in once handled, or when the message is refused or lost with a mailbox.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicI64>);

impl InFlight {
    fn new(counter: &Arc<AtomicI64>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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

/// A message with its in-flight token: what every actor's mailbox carries.
#[derive(Debug)]
pub struct Envelope<M> {
    pub msg: M,
    pub token: InFlight,
}

impl<M: Send + 'static> ractor::Message for Envelope<M> {}

impl Shared {
    pub fn new(clock: Clock, policy: RoutingPolicy, event_capacity: usize) -> Arc<Self> {
        let (events, _) = broadcast::channel(event_capacity.max(16));
        Arc::new(Shared {
            clock,
            policy,
            skills: DashMap::new(),
            conversations: DashMap::new(),
            agents: DashMap::new(),
            queues: DashMap::new(),
            consumers: DashMap::new(),
            events,
            in_flight: Arc::new(AtomicI64::new(0)),
            crashes_pending: AtomicI64::new(0),
            sent_total: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A token that counts as one message in flight until dropped.
    pub fn token(&self) -> InFlight {
        self.sent_total.fetch_add(1, Ordering::Relaxed);
        InFlight::new(&self.in_flight)
    }

    pub fn sent_total(&self) -> u64 {
        self.sent_total.load(Ordering::Relaxed)
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

    pub fn queue(&self, skill: &SkillId) -> Option<QueueRef> {
        self.queues.get(skill).map(|q| q.clone())
    }

    pub fn conversation_actor(&self, id: &ConversationId) -> Option<ConvRef> {
        self.conversations.get(id).and_then(|h| h.actor())
    }

    pub fn agent_actor(&self, id: &AgentId) -> Option<AgentRef> {
        self.agents.get(id).and_then(|h| h.actor())
    }

    pub fn tell_queue(&self, skill: &SkillId, msg: QueueMsg) {
        if let Some(q) = self.queue(skill) {
            self.tell(&q, msg);
        }
    }

    pub fn tell_conversation(&self, id: &ConversationId, msg: ConvMsg) {
        if let Some(c) = self.conversation_actor(id) {
            self.tell(&c, msg);
        }
    }

    pub fn tell_agent(&self, id: &AgentId, msg: AgentMsg) {
        if let Some(a) = self.agent_actor(id) {
            self.tell(&a, msg);
        }
    }
}

/// One generation-tagged timer per actor. Re-arming aborts the previous task, and a
/// message from a timer that was replaced carries an old generation and is dropped.
#[derive(Debug, Default)]
pub struct Timer {
    task: Option<JoinHandle<()>>,
    generation: u64,
    at: Option<Timestamp>,
}

impl Timer {
    /// Arms the timer for `at` (or disarms it with `None`); no-op if already set so.
    pub fn arm<M: Send + 'static>(
        &mut self,
        shared: &Arc<Shared>,
        at: Option<Timestamp>,
        target: &ActorRef<Envelope<M>>,
        make: impl FnOnce(u64) -> M + Send + 'static,
    ) {
        if at == self.at {
            return;
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.generation += 1;
        self.at = at;
        if let Some(at) = at {
            let delay: Duration = shared.clock.until(at);
            let generation = self.generation;
            let shared = Arc::clone(shared);
            let target = target.clone();
            self.task = Some(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.tell(&target, make(generation));
            }));
        }
    }

    /// Whether a timer message is from the current arming; marks the timer as fired.
    pub fn fired(&mut self, generation: u64) -> bool {
        if generation == self.generation {
            self.at = None;
            self.task = None;
            true
        } else {
            false
        }
    }

    pub fn is_armed(&self) -> bool {
        self.at.is_some()
    }

    pub fn cancel(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.at = None;
        self.generation += 1;
    }
}
