//! The node's one timer service: every deadline of every conversation, agent and skill
//! queue lives here, in a `tokio_util` [`DelayQueue`] (a hierarchical timing wheel on
//! tokio's clock, so the paused-clock tests and the simulator keep working).
//!
//! Each target has at most one deadline: arming replaces the previous one, so nothing
//! stale piles up however often a conversation re-arms (its auto-close moves with every
//! message). A passivated conversation has no actor, only its entry here: when it comes
//! due, the directory activates the conversation to handle it.
//!
//! Arming is synchronous (a short lock), so an actor's `settle` and its timer can never
//! disagree. One driver task delivers what comes due; a fired deadline is a plain
//! `Tick`, and every tick handler is idempotent (it applies whatever is due at `now`),
//! so a tick that races with a re-arm is harmless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::time::delay_queue::{DelayQueue, Key};

use crate::actors::envelope::InFlight;
use crate::actors::shared::Shared;
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::time::Timestamp;

/// The wheel holds deadlines up to about two years ahead; a later one (a follow-up a
/// year out is allowed) is armed at this horizon and simply re-armed when it fires.
const HORIZON: Duration = Duration::from_secs(400 * 86_400);

/// Whose deadline it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TimerTarget {
    Conversation(ConversationId),
    Agent(AgentId),
    /// A skill queue's retry of declined offers.
    Queue(SkillId),
    /// The oldest closed conversation leaves the directory.
    ClosedSweep,
}

#[derive(Debug, Default)]
struct Wheel {
    queue: DelayQueue<TimerTarget>,
    armed: HashMap<TimerTarget, (Key, Timestamp)>,
}

impl Wheel {
    /// Sets `target`'s deadline to `at` (`now` is tokio's, for the horizon); a no-op
    /// when already so.
    fn set(&mut self, shared: &Shared, target: TimerTarget, at: Timestamp, now: tokio::time::Instant) {
        let when = shared.clock.instant(at).min(now + HORIZON);
        match self.armed.get_mut(&target) {
            Some((_, old)) if *old == at => {}
            Some((key, old)) => {
                self.queue.reset_at(key, when);
                *old = at;
            }
            None => {
                let key = self.queue.insert_at(target.clone(), when);
                self.armed.insert(target, (key, at));
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Timers {
    wheel: Mutex<Wheel>,
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, Wheel> {
        // Every operation leaves the wheel consistent before it can panic.
        self.wheel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `target`'s deadline to `at`, or clears it with `None`; a no-op when already so.
    pub fn arm(&self, shared: &Shared, target: TimerTarget, at: Option<Timestamp>) {
        let mut wheel = self.lock();
        match at {
            Some(at) => wheel.set(shared, target, at, tokio::time::Instant::now()),
            None => {
                if let Some((key, _)) = wheel.armed.remove(&target) {
                    wheel.queue.remove(&key);
                }
            }
        }
    }

    /// Arms many deadlines under one lock (recovery arms every open conversation's).
    pub fn arm_new(&self, shared: &Shared, deadlines: Vec<(TimerTarget, Timestamp)>) {
        let now = tokio::time::Instant::now();
        let mut wheel = self.lock();
        wheel.queue.reserve(deadlines.len());
        wheel.armed.reserve(deadlines.len());
        for (target, at) in deadlines {
            wheel.set(shared, target, at, now);
        }
    }

    pub fn disarm(&self, shared: &Shared, target: TimerTarget) {
        self.arm(shared, target, None);
    }

    /// The deadline armed for `target`, if any.
    pub fn deadline(&self, target: &TimerTarget) -> Option<Timestamp> {
        self.lock().armed.get(target).map(|(_, at)| *at)
    }

    /// Deadlines armed (one per target).
    pub fn len(&self) -> usize {
        self.lock().armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the driver: it delivers each deadline as it comes due, until the router
    /// is dropped (it holds only a weak reference) or the task is aborted.
    pub fn start(shared: &Arc<Shared>) -> JoinHandle<()> {
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let in_flight = shared.in_flight_counter();
        tokio::spawn(async move {
            loop {
                let Some(timers) = weak.upgrade().map(|s| Arc::clone(&s.timers)) else {
                    return;
                };
                let due = std::future::poll_fn(|cx| {
                    let mut wheel = timers.lock();
                    let mut due = Vec::new();
                    while let std::task::Poll::Ready(Some(expired)) = wheel.queue.poll_expired(cx) {
                        let target = expired.into_inner();
                        wheel.armed.remove(&target);
                        // In flight from the moment it leaves the wheel until its message
                        // is sent (and counted on its own): an engine that looks settled
                        // in between has a deadline gone and its work not begun.
                        due.push((target, InFlight::new(&in_flight)));
                    }
                    // An empty wheel answers `Ready(None)` above and registers no waker:
                    // `insert_at` wakes this task when the first deadline is armed.
                    if due.is_empty() {
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(due)
                    }
                })
                .await;
                let Some(shared) = weak.upgrade() else { return };
                for (target, _in_flight) in due {
                    shared.deliver_due(target);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::skill::RoutingPolicy;
    use crate::time::Clock;

    fn conv(s: &str) -> TimerTarget {
        TimerTarget::Conversation(ConversationId::new(s).expect("id"))
    }

    #[tokio::test(start_paused = true)]
    async fn one_deadline_per_target_rearming_replaces_it() {
        let shared = Shared::new(
            Clock::starting_at(Timestamp::from_millis(0)),
            RoutingPolicy::default(),
            16,
        );
        let t = |ms| Some(Timestamp::from_millis(ms));
        shared.arm(conv("c1"), t(10_000));
        shared.arm(conv("c1"), t(20_000));
        shared.arm(conv("c2"), t(5_000));
        assert_eq!(shared.timers.len(), 2, "re-arming replaced c1's deadline");
        assert_eq!(shared.timers.deadline(&conv("c1")), t(20_000));
        shared.timers.disarm(&shared, conv("c2"));
        assert_eq!(shared.timers.deadline(&conv("c2")), None);
        // Far beyond the wheel's horizon: armed at the horizon, the real deadline kept.
        shared.arm(conv("c3"), t(3 * 365 * 86_400_000));
        assert_eq!(shared.timers.deadline(&conv("c3")), t(3 * 365 * 86_400_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_deadline_is_delivered_once_and_forgotten() {
        let shared = Shared::new(
            Clock::starting_at(Timestamp::from_millis(0)),
            RoutingPolicy::default(),
            16,
        );
        let driver = Timers::start(&shared);
        // A conversation unknown to the directory: delivery drops the tick.
        shared.arm(conv("c1"), Some(Timestamp::from_millis(1_000)));
        tokio::time::sleep(std::time::Duration::from_millis(999)).await;
        tokio::task::yield_now().await;
        assert_eq!(shared.timers.len(), 1, "not due yet");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert!(shared.timers.is_empty(), "fired and removed");
        driver.abort();
    }
}
