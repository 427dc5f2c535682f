//! `Turns`: the mailbox of a virtual actor that has no actor of its own.
//!
//! A conversation is served in turns, as Orleans runs grains on a shared pool: a
//! message to it goes into this mailbox, and if nothing is serving it, the sender
//! starts a task that handles what the mailbox holds, one message at a time, and ends
//! when the mailbox is empty. Between turns nothing runs and nothing is allocated but
//! the mailbox itself, so starting (activating) a conversation costs a task spawn and a
//! box, where a ractor actor cost four channels, a task, a registry entry and two
//! messages to its supervisor.
//!
//! What the server of the mailbox keeps between turns (`A`, the activation: what the
//! conversation told its peers, when it last had work) stays here while the mailbox is
//! idle; passivating drops it with the mailbox, and the next message starts afresh from
//! the committed state. At most one task serves a mailbox at a time: that is what makes
//! the conversation an actor.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// What [`Turns::deliver`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In the mailbox: the task serving it will handle it (or it was dropped, the
    /// conversation having left this node).
    Queued,
    /// In the mailbox, which nobody serves: the caller must start a task to serve it.
    Serve,
}

/// Who serves a live mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Nobody: the activation waits here for the next message.
    Idle,
    /// A task is handling turns.
    Running,
    /// The task panicked: messages wait until the supervisor restarts it.
    Crashed,
    /// The conversation left this node (or the node stops): messages are dropped.
    Stopped,
}

#[derive(Debug)]
struct Live<M, A> {
    mailbox: VecDeque<M>,
    run: Run,
    activation: Option<A>,
}

/// A conversation's mailbox: nothing at all while it is passive.
#[derive(Debug)]
pub struct Turns<M, A> {
    live: Mutex<Option<Box<Live<M, A>>>>,
}

impl<M, A> Default for Turns<M, A> {
    fn default() -> Self {
        Turns { live: Mutex::new(None) }
    }
}

impl<M, A> Turns<M, A> {
    fn lock(&self) -> MutexGuard<'_, Option<Box<Live<M, A>>>> {
        // Every transition below is made under the lock with no code that can panic
        // half-way (a push, a pop, assignments).
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `msg` in the mailbox. On [`Delivery::Serve`] the caller starts a task that
    /// calls [`Turns::resume`] and then [`Turns::next`] until it returns `None`.
    pub fn deliver(&self, msg: M) -> Delivery {
        let mut live = self.lock();
        match live.as_deref_mut() {
            None => {
                *live = Some(Box::new(Live {
                    mailbox: VecDeque::from([msg]),
                    run: Run::Running,
                    activation: None,
                }));
                Delivery::Serve
            }
            Some(l) => match l.run {
                Run::Idle => {
                    l.mailbox.push_back(msg);
                    l.run = Run::Running;
                    Delivery::Serve
                }
                Run::Running | Run::Crashed => {
                    l.mailbox.push_back(msg);
                    Delivery::Queued
                }
                Run::Stopped => Delivery::Queued,
            },
        }
    }

    /// The activation kept while the mailbox was idle (none: a new activation starts).
    pub fn resume(&self) -> Option<A> {
        self.lock().as_deref_mut().and_then(|l| l.activation.take())
    }

    /// After a turn: the next message to handle, with the activation given back. With
    /// none, the serving task must end: the activation is kept for the next message,
    /// or dropped with the mailbox if `passivate` (the conversation is quiet).
    pub fn next(&self, activation: A, passivate: bool) -> Option<(M, A)> {
        let mut live = self.lock();
        let l = live.as_deref_mut()?;
        if l.run == Run::Stopped {
            return None;
        }
        if let Some(msg) = l.mailbox.pop_front() {
            return Some((msg, activation));
        }
        if passivate {
            *live = None;
        } else {
            l.activation = Some(activation);
            l.run = Run::Idle;
        }
        None
    }

    /// The serving task panicked: the activation is gone, and messages wait in the
    /// mailbox for [`Turns::claim`].
    pub fn crashed(&self) {
        if let Some(l) = self.lock().as_deref_mut() {
            if l.run != Run::Stopped {
                l.run = Run::Crashed;
                l.activation = None;
            }
        }
    }

    /// Someone (the supervisor after a crash, or whoever just created the actor) wants
    /// a new activation to serve the mailbox: true if the caller must start a task with
    /// one. False if a task serves it already or will, or if it was stopped.
    pub fn claim(&self) -> bool {
        let mut live = self.lock();
        match live.as_deref_mut() {
            Some(l) if l.run == Run::Crashed => {
                l.run = Run::Running;
                true
            }
            // Served (a crash restarted twice), or stopped: nothing to do.
            Some(_) => false,
            None => {
                *live = Some(Box::new(Live {
                    mailbox: VecDeque::new(),
                    run: Run::Running,
                    activation: None,
                }));
                true
            }
        }
    }

    /// The conversation leaves this node: what waits in the mailbox is dropped, the
    /// task serving it ends after its turn, and further messages are dropped.
    pub fn stop(&self) {
        let mut live = self.lock();
        match live.as_deref_mut() {
            Some(l) => {
                l.mailbox.clear();
                l.activation = None;
                l.run = Run::Stopped;
            }
            None => {
                *live = Some(Box::new(Live {
                    mailbox: VecDeque::new(),
                    run: Run::Stopped,
                    activation: None,
                }))
            }
        }
    }

    /// Something serves the conversation or will: a task, or an activation waiting for
    /// its next message, or a restart.
    pub fn is_live(&self) -> bool {
        self.lock().as_deref().is_some_and(|l| l.run != Run::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_asks_for_a_server_and_the_next_ones_queue_behind_it() {
        let t: Turns<u32, &str> = Turns::default();
        assert!(!t.is_live());
        assert_eq!(t.deliver(1), Delivery::Serve);
        assert_eq!(t.deliver(2), Delivery::Queued);
        assert_eq!(t.resume(), None, "a new activation");
        assert_eq!(t.next("act", false), Some((1, "act")));
        assert_eq!(t.next("act", false), Some((2, "act")));
        assert_eq!(t.next("act", false), None, "empty: the task ends");
        assert!(t.is_live(), "the activation is kept while idle");
        assert_eq!(t.deliver(3), Delivery::Serve, "an idle mailbox needs a server again");
        assert_eq!(t.resume(), Some("act"), "which resumes the activation");
        assert_eq!(
            t.next("act", true),
            Some((3, "act")),
            "a message waiting forbids passivating"
        );
        assert_eq!(t.next("act", true), None);
        assert!(!t.is_live(), "passivated: nothing is kept");
        assert_eq!(t.deliver(4), Delivery::Serve);
    }

    #[test]
    fn a_crash_keeps_the_mailbox_for_the_restart() {
        let t: Turns<u32, &str> = Turns::default();
        assert_eq!(t.deliver(1), Delivery::Serve);
        assert_eq!(t.deliver(2), Delivery::Queued);
        assert_eq!(t.next("act", false), Some((1, "act")));
        t.crashed();
        assert_eq!(t.deliver(3), Delivery::Queued, "no server until the restart");
        assert!(t.claim());
        assert!(!t.claim(), "one restart per crash");
        assert_eq!(t.resume(), None, "the activation died with the task");
        assert_eq!(t.next("new", false), Some((2, "new")));
        assert_eq!(t.next("new", false), Some((3, "new")));
        assert_eq!(t.next("new", false), None);
    }

    #[test]
    fn a_stopped_mailbox_drops_everything() {
        let t: Turns<u32, &str> = Turns::default();
        assert_eq!(t.deliver(1), Delivery::Serve);
        t.stop();
        assert_eq!(t.next("act", false), None, "the serving task ends");
        assert_eq!(t.deliver(2), Delivery::Queued);
        assert!(!t.is_live());
        assert!(!t.claim());
        let passive: Turns<u32, &str> = Turns::default();
        passive.stop();
        assert_eq!(passive.deliver(1), Delivery::Queued, "dropped");
    }
}
