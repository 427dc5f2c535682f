//! What every actor's mailbox carries: a message with its in-flight token.
//!
//! The engine counts messages sent and not yet handled, so that tests and the
//! simulator can wait until it is idle ([`Router::quiesce`](crate::Router::quiesce)) and
//! the API can refuse work when the backlog is too deep. The count must survive every
//! way a message can end: handled, refused by a stopped actor, lost with the mailbox of
//! a crashed one, or buffered while a passive conversation is activated. A drop guard
//! travelling with the message covers all of them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// One unit of the engine's in-flight count, released when dropped: with the message
/// it travels in once handled, or when the message is refused or lost with a mailbox.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicI64>);

impl InFlight {
    pub(crate) fn new(counter: &Arc<AtomicI64>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A message with its in-flight token.
#[derive(Debug)]
pub struct Envelope<M> {
    pub msg: M,
    pub token: InFlight,
}

impl<M: Send + 'static> ractor::Message for Envelope<M> {}
