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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The consumer's first message.
    Opened {
        first_time: bool,
        urgent: bool,
    },
    /// Offer mode: an agent was offered the conversation. (`offer` in the JSON as in
    /// the SSE event name: [`EventKind::name`] and the serde tag are one name.)
    #[serde(rename = "offer")]
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
    /// A closed conversation came back (`by`: the consumer, or the agent named).
    Reopened {
        by: ClosedBy,
    },
    AgentStatusChanged {
        status: AgentStatus,
    },
}

/// Every event's name ([`EventKind::name`]), for the platform stream's `type` filter.
pub const EVENT_NAMES: [&str; 16] = [
    "opened",
    "offer",
    "offer_declined",
    "assigned",
    "unassigned",
    "first_response",
    "inactive",
    "reactivated",
    "soon_overdue",
    "overdue",
    "follow_up_set",
    "transferred",
    "fallback_activated",
    "closed",
    "reopened",
    "agent_status_changed",
];

impl EventKind {
    /// The snake_case name used as the SSE event name and the metrics label; the same
    /// as the JSON's `type` (unit test `the_json_type_is_the_event_name`).
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
            EventKind::Reopened { .. } => "reopened",
            EventKind::AgentStatusChanged { .. } => "agent_status_changed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::conversation::{ClosedBy, UnassignReason};

    #[test]
    fn the_json_type_is_the_event_name() {
        let at = Timestamp::from_millis(0);
        let skill = SkillId::new("s").expect("id");
        let agent = AgentId::new("a").expect("id");
        let kinds = [
            EventKind::Opened {
                first_time: true,
                urgent: false,
            },
            EventKind::Offered { expires_at: None },
            EventKind::OfferDeclined { expired: true },
            EventKind::Assigned { waited_ms: 1 },
            EventKind::Unassigned {
                reason: UnassignReason::Transferred,
            },
            EventKind::FirstResponse { after_ms: 1 },
            EventKind::Inactive,
            EventKind::Reactivated,
            EventKind::SoonOverdue {
                kind: SlaKind::Normal,
                due_at: at,
            },
            EventKind::Overdue {
                kind: SlaKind::Normal,
                due_at: at,
            },
            EventKind::FollowUpSet { due_at: at },
            EventKind::Transferred {
                from_skill: skill.clone(),
                to_agent: Some(agent),
            },
            EventKind::FallbackActivated { fallback_skill: skill },
            EventKind::Closed { by: ClosedBy::Agent },
            EventKind::Reopened { by: ClosedBy::Consumer },
            EventKind::AgentStatusChanged {
                status: AgentStatus::Online,
            },
        ];
        assert_eq!(kinds.len(), EVENT_NAMES.len(), "every event is named in EVENT_NAMES");
        for kind in kinds {
            let event = RouterEvent {
                at,
                conversation_id: None,
                agent_id: None,
                skill: None,
                kind: kind.clone(),
            };
            let json = serde_json::to_value(&event).expect("serializes");
            assert_eq!(json["type"], kind.name(), "{json}");
            assert!(EVENT_NAMES.contains(&kind.name()), "{} is in EVENT_NAMES", kind.name());
            let back: RouterEvent = serde_json::from_value(json).expect("reads back");
            assert_eq!(back.kind, kind);
        }
    }
}
