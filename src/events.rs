//! Domain events: what happened, for metrics, the agents' event streams and a journal.
//!
//! Actors publish on a `tokio::sync::broadcast` channel. A subscriber that falls behind
//! loses the oldest events (and is told how many), never slows the router down.

use serde::{Deserialize, Serialize};

use crate::domain::agent::AgentStatus;
use crate::domain::conversation::{ClosedBy, UnassignReason};
use crate::domain::sla::SlaKind;
use crate::ids::{AgentId, ConversationId, SkillId};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterEvent {
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill: Option<SkillId>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The consumer's first message.
    Opened {
        first_time: bool,
        urgent: bool,
    },
    /// Offer mode: an agent was offered the conversation.
    Offered {
        expires_at: Option<Timestamp>,
    },
    /// The agent rejected an offer, or let it time out.
    OfferDeclined {
        expired: bool,
    },
    /// The conversation was assigned; `waited_ms` is its time in the queue.
    Assigned {
        waited_ms: u64,
    },
    Unassigned {
        reason: UnassignReason,
    },
    /// The agent answered for the first time (time to first response).
    FirstResponse {
        after_ms: u64,
    },
    /// The consumer went quiet: the conversation now weighs its inactive weight.
    Inactive,
    /// Active again: the consumer wrote, or a manual SLA comes due soon.
    Reactivated,
    SoonOverdue {
        kind: SlaKind,
        due_at: Timestamp,
    },
    Overdue {
        kind: SlaKind,
        due_at: Timestamp,
    },
    FollowUpSet {
        due_at: Timestamp,
    },
    Transferred {
        from_skill: SkillId,
        to_agent: Option<AgentId>,
    },
    FallbackActivated {
        fallback_skill: SkillId,
    },
    Closed {
        by: ClosedBy,
    },
    AgentStatusChanged {
        status: AgentStatus,
    },
}

impl EventKind {
    /// The snake_case name used as the SSE event name and the metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Opened { .. } => "opened",
            EventKind::Offered { .. } => "offer",
            EventKind::OfferDeclined { .. } => "offer_declined",
            EventKind::Assigned { .. } => "assigned",
            EventKind::Unassigned { .. } => "unassigned",
            EventKind::FirstResponse { .. } => "first_response",
            EventKind::Inactive => "inactive",
            EventKind::Reactivated => "reactivated",
            EventKind::SoonOverdue { .. } => "soon_overdue",
            EventKind::Overdue { .. } => "overdue",
            EventKind::FollowUpSet { .. } => "follow_up_set",
            EventKind::Transferred { .. } => "transferred",
            EventKind::FallbackActivated { .. } => "fallback_activated",
            EventKind::Closed { .. } => "closed",
            EventKind::AgentStatusChanged { .. } => "agent_status_changed",
        }
    }
}
