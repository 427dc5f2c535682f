//! What the API shows: JSON views of the engine's state, shaped by `docs/api.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{GroupRoutingSpec, SlaSpec, SmartCapacitySpec, WorkingHoursSpec};
use crate::domain::agent::{Agent, AgentStatus};
use crate::domain::conversation::{Activity, Awaiting, ClosedBy, Conversation, Phase};
use crate::domain::skill::{GroupRouting, Skill};
use crate::domain::sla::{SlaKind, Span};
use crate::ids::{AgentId, ConsumerId, ConversationId, GroupId, SkillId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlaView {
    pub kind: SlaKind,
    pub due_at: Timestamp,
    pub overdue: bool,
    pub soon_overdue: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConversationView {
    pub conversation_id: ConversationId,
    pub consumer_id: ConsumerId,
    pub skill: SkillId,
    pub state: Phase,
    pub awaiting: Awaiting,
    pub actionable: bool,
    pub activity: Activity,
    pub agent_id: Option<AgentId>,
    pub offered_to: Option<AgentId>,
    pub priority: i32,
    pub urgent: bool,
    pub first_time: bool,
    pub attributes: BTreeMap<String, String>,
    pub opened_at: Timestamp,
    pub queued_at: Option<Timestamp>,
    pub last_consumer_message_at: Timestamp,
    pub last_agent_message_at: Option<Timestamp>,
    pub sla: Option<SlaView>,
    pub follow_up_at: Option<Timestamp>,
    pub closed_by: Option<ClosedBy>,
    pub closed_at: Option<Timestamp>,
    pub transfers: u32,
}

impl ConversationView {
    pub fn new(c: &Conversation, skill: Option<&Skill>) -> Self {
        ConversationView {
            conversation_id: c.id.clone(),
            consumer_id: c.consumer_id.clone(),
            skill: c.skill.clone(),
            state: c.state,
            awaiting: c.awaiting,
            actionable: c.actionable(),
            activity: c.activity,
            agent_id: c.agent_id.clone(),
            offered_to: c.offered_to.clone(),
            priority: skill.map_or(0, |s| c.priority(s)),
            urgent: c.urgent,
            first_time: c.first_time,
            attributes: c.attributes.clone(),
            opened_at: c.opened_at,
            queued_at: c.queued_at,
            last_consumer_message_at: c.last_consumer_message_at,
            last_agent_message_at: c.last_agent_message_at,
            sla: c.sla.map(|s| SlaView {
                kind: s.kind,
                due_at: s.due_at,
                overdue: c.overdue,
                soon_overdue: c.soon_overdue,
            }),
            follow_up_at: c.manual_due_at,
            closed_by: c.closed.map(|x| x.by),
            closed_at: c.closed.map(|x| x.at),
            transfers: c.transfers,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeldView {
    pub conversation_id: ConversationId,
    pub skill: SkillId,
    pub weight: f64,
    pub activity: Activity,
    pub assigned_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OfferView {
    pub conversation_id: ConversationId,
    pub skill: SkillId,
    pub offered_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub accepted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    pub agent_id: AgentId,
    pub status: AgentStatus,
    pub status_since: Timestamp,
    /// Why the agent is away (one of `routing.away_reasons`).
    pub reason: Option<String>,
    pub skills: Vec<SkillId>,
    /// The agent's group (`group_routing`).
    pub group: Option<GroupId>,
    /// Has an open event stream; false: `disconnected` (see `GET /v1/agents`).
    pub connected: bool,
    pub max_slots: u32,
    pub max_open: Option<u32>,
    /// Σ weights of held conversations.
    pub busy: f64,
    /// `busy / max_slots`.
    pub load: f64,
    /// The most weight it may carry: `max_slots + overflow`.
    pub ceiling: f64,
    /// Weight it may still take, counting offers in flight: `max_slots + overflow - busy`.
    pub free: f64,
    pub warming_up: bool,
    pub conversations: Vec<HeldView>,
    pub offers: Vec<OfferView>,
}

impl AgentView {
    pub fn new(a: &Agent, connected: bool) -> Self {
        AgentView {
            agent_id: a.id.clone(),
            status: a.status,
            status_since: a.status_since,
            reason: a.status_reason.clone(),
            skills: a.skills.clone(),
            group: a.group.clone(),
            connected,
            max_slots: a.limits.max_slots,
            max_open: a.limits.max_open,
            busy: a.busy_held().as_slots(),
            load: a.load(),
            ceiling: a.limits.ceiling().as_slots(),
            free: crate::domain::capacity::free_weight(a.busy(), &a.limits).as_slots(),
            warming_up: a.warmup.warming,
            conversations: a
                .conversations
                .iter()
                .map(|(id, h)| HeldView {
                    conversation_id: id.clone(),
                    skill: h.skill.clone(),
                    weight: h.weight.as_slots(),
                    activity: h.activity,
                    assigned_at: h.assigned_at,
                })
                .collect(),
            offers: a
                .reservations
                .iter()
                .map(|(id, r)| OfferView {
                    conversation_id: id.clone(),
                    skill: r.skill.clone(),
                    offered_at: r.offered_at,
                    expires_at: r.expires_at,
                    accepted: r.accepted,
                })
                .collect(),
        }
    }
}

/// An agent in `GET /v1/agents`: what a supervisor's list shows.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentSummary {
    pub agent_id: AgentId,
    pub status: AgentStatus,
    pub reason: Option<String>,
    pub status_since: Timestamp,
    /// Seconds in the current status.
    pub in_status_secs: u64,
    /// Has an open event stream (`GET /v1/agents/{id}/events`); an agent without one is
    /// `disconnected` to its supervisor.
    pub connected: bool,
    pub skills: Vec<SkillId>,
    pub group: Option<GroupId>,
    pub max_slots: u32,
    pub busy: f64,
    pub load: f64,
    /// Conversations held.
    pub open: usize,
    /// Offers in flight.
    pub offered: usize,
}

impl AgentSummary {
    pub fn new(a: &Agent, now: Timestamp, connected: bool) -> Self {
        AgentSummary {
            agent_id: a.id.clone(),
            status: a.status,
            reason: a.status_reason.clone(),
            status_since: a.status_since,
            in_status_secs: now.since(a.status_since).as_secs(),
            connected,
            skills: a.skills.clone(),
            group: a.group.clone(),
            max_slots: a.limits.max_slots,
            busy: a.busy_held().as_slots(),
            load: a.load(),
            open: a.conversations.len(),
            offered: a.reservations.len(),
        }
    }
}

/// A skill as `PUT /v1/skills/{id}` would set it, with every default filled in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkillView {
    pub skill_id: SkillId,
    pub sla: SlaSpec,
    pub smart_capacity: SmartCapacitySpec,
    pub auto_close_after_secs: u64,
    pub fallback_skill: Option<SkillId>,
    pub fallback_after_secs: Option<u64>,
    pub fallback_when_away: bool,
    /// The skills it may transfer to; null: any.
    pub transfer_to: Option<Vec<SkillId>>,
    /// Null: assignments are auto-accepted.
    pub offer_timeout_secs: Option<u64>,
    pub priority_rules: Vec<crate::domain::rank::PriorityRule>,
    pub working_hours: Option<WorkingHoursSpec>,
    /// Null: agent groups play no part.
    pub group_routing: Option<GroupRoutingSpec>,
}

fn hhmm(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

fn spans(v: &[Span]) -> Vec<String> {
    v.iter().map(|s| format!("{}-{}", hhmm(s.start), hhmm(s.end))).collect()
}

impl SkillView {
    pub fn new(s: &Skill) -> Self {
        let working_hours = s.working_hours.as_ref().map(|h| WorkingHoursSpec {
            time_zone: h.time_zone.map(|tz| tz.name().to_string()),
            utc_offset_secs: h.utc_offset_secs,
            monday: spans(&h.weekly[0]),
            tuesday: spans(&h.weekly[1]),
            wednesday: spans(&h.weekly[2]),
            thursday: spans(&h.weekly[3]),
            friday: spans(&h.weekly[4]),
            saturday: spans(&h.weekly[5]),
            sunday: spans(&h.weekly[6]),
            special: h.special.iter().map(|(d, v)| (d.to_string(), spans(v))).collect(),
        });
        SkillView {
            skill_id: s.id.clone(),
            sla: SlaSpec {
                normal_secs: Some(s.sla.normal.as_secs()),
                urgent_secs: Some(s.sla.urgent.as_secs()),
                first_time_secs: Some(s.sla.first_time.as_secs()),
            },
            smart_capacity: SmartCapacitySpec {
                active_weight: Some(s.active_weight.as_slots()),
                inactive_weight: Some(s.inactive_weight.as_slots()),
                inactive_after_secs: Some(s.inactive_after.as_secs()),
            },
            auto_close_after_secs: s.auto_close_after.as_secs(),
            fallback_skill: s.fallback_skill.clone(),
            fallback_after_secs: s.fallback_after.map(|d| d.as_secs()),
            fallback_when_away: s.fallback_when_away,
            transfer_to: s.transfer_to.clone(),
            offer_timeout_secs: s.offer_timeout.map(|d| d.as_secs()),
            priority_rules: s.priority_rules.clone(),
            working_hours,
            group_routing: s.group_routing.as_ref().map(|g| match g {
                GroupRouting::Cascade(list) => GroupRoutingSpec {
                    cascade: Some(list.iter().map(|g| g.to_string()).collect()),
                    split: None,
                },
                GroupRouting::Split(shares) => GroupRoutingSpec {
                    cascade: None,
                    split: Some(shares.iter().map(|(g, p)| (g.to_string(), *p)).collect()),
                },
            }),
        }
    }
}

/// `GET` and `PUT /v1/skills/{skill_id}/off-hours`: the manual off-hours switch.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OffHoursView {
    pub skill_id: SkillId,
    /// Switched off hours by hand: SLA clocks of the skill stand still.
    pub off_hours: bool,
    /// Since when, while `off_hours`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Whether the skill's SLA clocks run now: inside its working hours (always, without
    /// them) and not off hours.
    pub open_now: bool,
}

impl OffHoursView {
    pub fn new(s: &Skill, now: Timestamp) -> Self {
        let since = s.off_hours.since();
        OffHoursView {
            skill_id: s.id.clone(),
            off_hours: since.is_some(),
            since,
            open_now: since.is_none() && s.working_hours.as_ref().is_none_or(|h| h.is_open(now)),
        }
    }
}

/// `GET /v1/skills`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkillList {
    pub skills: Vec<SkillView>,
}

/// `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentSummary>,
}

/// `GET /v1/queue-health`: each skill's figures, by skill id.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthList {
    pub skills: BTreeMap<SkillId, crate::router::QueueHealth>,
}

/// `GET /healthz` and `GET /readyz`: `ok` and `ready`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Liveness {
    pub status: String,
}
