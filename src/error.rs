//! The engine's error type: what a caller of the [`Router`](crate::Router) can get back.
//! Each variant maps to one HTTP status in the API layer.

use crate::domain::conversation::ConversationError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The request itself is wrong (a bad field, an unknown skill named in a body).
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// The request does not fit the current state; nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// The engine's inbound queue is past its bound; try again later.
    #[error("the router is overloaded, retry later")]
    Overloaded,
    /// An actor did not answer (shutting down, or crashed while handling the request).
    #[error("the router could not complete the request: {0}")]
    Unavailable(String),
}

impl RouterError {
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        RouterError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// A cluster's shard between owners: the client retries in a moment.
    pub fn shard_moving(shard: u16) -> Self {
        RouterError::Unavailable(format!(
            "shard {shard} is moving between nodes (a node left or died); retry in a moment"
        ))
    }
}

impl From<ConversationError> for RouterError {
    fn from(e: ConversationError) -> Self {
        RouterError::Conflict(e.to_string())
    }
}

/// This node lost the shard of what it was changing (a cluster): the change was not
/// recorded and nobody was told; the shard's new owner answers a retry.
impl From<crate::cluster::lease::Fenced> for RouterError {
    fn from(e: crate::cluster::lease::Fenced) -> Self {
        RouterError::Unavailable(e.to_string())
    }
}

impl<T> From<ractor::MessagingErr<T>> for RouterError {
    fn from(e: ractor::MessagingErr<T>) -> Self {
        RouterError::Unavailable(e.to_string())
    }
}
