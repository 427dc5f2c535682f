//! Supervisors: spawn the skill-queue actors linked to themselves and restart one that
//! crashed; restart a conversation or agent whose turn panicked (they have no actor of
//! their own: see [`turns`](super::turns)), all from their last committed state.
//!
//! Conversations and agents keep their state in a [`Handle`](super::shared::Handle)
//! outside the actor, so the new actor (or activation) starts where the old one stopped
//! and re-tells its peers. A skill queue's state is derived: a restarted queue starts
//! empty and every conversation and agent of the skill re-sends its entry or room
//! (`Resync`).
//!
//! A supervisor never exits while the router runs: in ractor, an exiting actor takes its
//! linked children with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::actors::agent::AgentMsg;
use crate::actors::conversation::ConversationMsg;
use crate::actors::shared::{Envelope, Shared};
use crate::actors::skill_queue::{QueueArgs, SkillQueueActor};
use crate::error::RouterError;
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::time::Timestamp;

/// A crashing child is restarted at once up to this many times per window; past that,
/// after a delay that doubles with each further crash (Akka's backoff supervisor).
/// It is never left stopped: an agent actor that stayed down would hold its
/// conversations forever, a conversation would never be routed again.
const MAX_RESTARTS: u32 = 5;
const RESTART_WINDOW_SECS: u64 = 60;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Past this many children with a restart count, those whose window has passed are
/// forgotten: every conversation that ever crashed would otherwise stay in the map.
const FORGET_ABOVE: usize = 1024;

type SpawnReply = RpcReplyPort<Result<(), RouterError>>;

/// Drops the restart counts whose window has passed (a new crash starts a new window).
fn forget_past_windows(restarts: &mut HashMap<Child, (Timestamp, u32)>, now: Timestamp, window: Duration) {
    restarts.retain(|_, (since, _)| now < since.plus(window));
}

#[derive(Debug)]
pub enum SupervisorMsg {
    /// A conversation's or agent's turn panicked: restart it (after a backoff if it
    /// keeps crashing).
    Crashed(Child),
    /// Restart a crashed child after its backoff delay.
    Restart(Child),
    SpawnQueue(SkillId, SpawnReply),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Conversation(ConversationId),
    Agent(AgentId),
    Queue(SkillId),
}

#[derive(Debug)]
pub struct Supervisor;

#[derive(Debug)]
pub struct SupervisorState {
    shared: Arc<Shared>,
    children: HashMap<ActorId, Child>,
    restarts: HashMap<Child, (Timestamp, u32)>,
}

impl Actor for Supervisor {
    type Msg = Envelope<SupervisorMsg>;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Envelope<SupervisorMsg>>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            children: HashMap::new(),
            restarts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Envelope<SupervisorMsg>>,
        envelope: Envelope<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let Envelope { msg, token: _in_flight } = envelope;
        let (child, reply) = match msg {
            SupervisorMsg::Crashed(child) => {
                self.crashed(&myself, st, child).await;
                return Ok(());
            }
            SupervisorMsg::SpawnQueue(skill, reply) => (Child::Queue(skill), reply),
            SupervisorMsg::Restart(child) => {
                self.restart(&myself, st, child).await;
                return Ok(());
            }
        };
        let result = self.spawn(&myself, st, child).await;
        let _ = reply.send(result);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Envelope<SupervisorMsg>>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(child) = st.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                tracing::warn!(?child, error = %err, "actor crashed; restarting from its last state");
                self.crashed(&myself, st, child).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                st.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

async fn spawn_linked<A: Actor>(actor: A, args: A::Arguments, supervisor: ActorCell) -> Result<ActorCell, RouterError> {
    Actor::spawn_linked(None, actor, args, supervisor)
        .await
        .map(|(a, _)| a.get_cell())
        .map_err(|e| RouterError::Unavailable(e.to_string()))
}

impl Supervisor {
    /// How long to wait before restarting `child`: nothing within the window's budget.
    fn backoff(&self, st: &mut SupervisorState, child: &Child) -> Option<Duration> {
        let now = st.shared.now();
        let window = Duration::from_secs(RESTART_WINDOW_SECS);
        if st.restarts.len() >= FORGET_ABOVE {
            forget_past_windows(&mut st.restarts, now, window);
        }
        let entry = st.restarts.entry(child.clone()).or_insert((now, 0));
        if now >= entry.0.plus(window) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        let excess = entry.1.checked_sub(MAX_RESTARTS + 1)?;
        Some(BACKOFF_FIRST.saturating_mul(1 << excess.min(16)).min(BACKOFF_MAX))
    }

    /// A child crashed: restart it now, or after a delay if it keeps crashing.
    async fn crashed(&self, myself: &ActorRef<Envelope<SupervisorMsg>>, st: &mut SupervisorState, child: Child) {
        match self.backoff(st, &child) {
            None => self.restart(myself, st, child).await,
            Some(delay) => {
                tracing::error!(?child, ?delay, "actor keeps crashing; restarting after a delay");
                // The crash stays counted in flight until the restart is done.
                let supervisor = myself.clone();
                let shared = Arc::clone(&st.shared);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    shared.tell(&supervisor, SupervisorMsg::Restart(child));
                });
            }
        }
    }

    /// Restarts a crashed child from its last committed state.
    async fn restart(&self, myself: &ActorRef<Envelope<SupervisorMsg>>, st: &mut SupervisorState, child: Child) {
        if let Err(e) = self.spawn(myself, st, child.clone()).await {
            tracing::error!(?child, error = %e, "restart failed");
        }
        if let Child::Queue(skill) = &child {
            self.resync_queue(&st.shared, skill);
        }
        st.shared.restart_done();
    }

    async fn spawn(
        &self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        st: &mut SupervisorState,
        child: Child,
    ) -> Result<(), RouterError> {
        let shared = &Arc::clone(&st.shared);
        let cell: ActorCell = myself.get_cell();
        // The child's `post_start` runs after `spawn_linked` returns and may send
        // messages: it holds this token, counted as in flight, until it ends.
        let spawn_token = shared.token();
        // Each actor puts itself in its directory in `pre_start`.
        let spawned = match &child {
            // Served in turns (no actor): a task serves its mailbox again.
            Child::Conversation(_) | Child::Agent(_) => {
                drop(spawn_token);
                return shared.serve_again(&child);
            }
            Child::Queue(skill) => {
                let args = QueueArgs {
                    shared: Arc::clone(shared),
                    skill: skill.clone(),
                    spawn_token,
                };
                spawn_linked(SkillQueueActor, args, cell).await?
            }
        };
        st.children.insert(spawned.get_id(), child);
        Ok(())
    }

    /// A new queue actor knows nothing: every conversation and agent re-tells it.
    fn resync_queue(&self, shared: &Shared, skill: &SkillId) {
        let conversations: Vec<ConversationId> = shared
            .conversations
            .iter()
            .filter(|h| {
                let c = h.lock();
                c.in_queue()
            })
            .map(|h| h.key().clone())
            .collect();
        for id in conversations {
            shared.tell_conversation(&id, ConversationMsg::Resync);
        }
        let agents: Vec<AgentId> = shared
            .agents
            .iter()
            .filter(|h| h.lock().skills.contains(skill))
            .map(|h| h.key().clone())
            .collect();
        for id in agents {
            shared.tell_agent(&id, AgentMsg::Resync);
        }
    }
}

#[cfg(test)]
mod tests;
