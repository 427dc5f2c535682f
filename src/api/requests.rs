//! What the API accepts: request bodies and query strings, each refusing unknown
//! fields. Their schemas are the OpenAPI document's (`GET /openapi.json`).

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::agent::AgentStatus;
use crate::domain::conversation::ClosedBy;
use crate::ids::{AgentId, SkillId};

/// `PUT /v1/agents/{agent_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAgent {
    /// Skills the agent serves (at least one, each known).
    #[schema(value_type = Vec<SkillId>, min_items = 1)]
    pub skills: Vec<String>,
    /// Smart Capacity slots: Σ weights of held conversations may reach it.
    #[serde(deserialize_with = "crate::strict::de")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_slots: u32,
    /// At most this many conversations held, whatever their weight.
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1)]
    pub max_open: Option<u32>,
    /// The agent's group, for skills that route to groups (`group_routing`).
    pub group: Option<crate::ids::GroupId>,
}

/// `PUT /v1/skills/{skill_id}/off-hours`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffHoursBody {
    /// true: off hours from now until switched back; false: back to the working hours.
    pub off_hours: bool,
}

/// `POST /v1/agents/{agent_id}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: AgentStatus,
    /// With `away`: one of `routing.away_reasons`.
    pub reason: Option<String>,
}

/// `POST /v1/conversations/{conversation_id}/messages`: `{"from": "consumer"}` or
/// `{"from": "agent", "agent_id"}` (an agent holding the conversation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum MessageBody {
    Consumer {},
    Agent { agent_id: AgentId },
}

/// An agent acting on a conversation: accept, reject, return to the queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    pub agent_id: AgentId,
}

/// A body with no fields (`{}` or none at all).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /v1/conversations/{conversation_id}/follow-up`: a manual SLA.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUpBody {
    pub agent_id: AgentId,
    /// Seconds from now, at most 366 days.
    #[serde(deserialize_with = "crate::strict::de")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub due_in_secs: u64,
}

/// `POST /v1/conversations/{conversation_id}/transfer`: a skill, an agent, or both
/// (at least one given).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    pub skill: Option<SkillId>,
    pub agent_id: Option<AgentId>,
}

impl utoipa::PartialSchema for TransferBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, AllOfBuilder, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Type,
        };
        let id_or_null = |r: &str| {
            OneOfBuilder::new()
                .item(utoipa::openapi::Ref::from_schema_name(r))
                .item(ObjectBuilder::new().schema_type(Type::Null))
        };
        let needs = |field: &str, r: &str| {
            ObjectBuilder::new()
                .property(field, utoipa::openapi::Ref::from_schema_name(r))
                .required(field)
        };
        let any_of = AnyOfBuilder::new()
            .item(needs("skill", "SkillId"))
            .item(needs("agent_id", "AgentId"));
        let fields = ObjectBuilder::new()
            .property("skill", id_or_null("SkillId"))
            .property("agent_id", id_or_null("AgentId"))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        AllOfBuilder::new()
            .description(Some(
                "To a skill, to an agent, or to an agent in a new skill: at least one given",
            ))
            .item(fields)
            .item(any_of)
            .into()
    }
}

impl ToSchema for TransferBody {}

/// `POST /v1/conversations/{conversation_id}/reopen`: `{"by": "consumer"}` or
/// `{"by": "agent", "agent_id"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReopenBody {
    /// The consumer wrote again: the last agent is preferred.
    Consumer {},
    /// The agent reopens it for themselves.
    Agent { agent_id: AgentId },
}

/// `POST /v1/conversations/{conversation_id}/close`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloseBody {
    /// The agent holding it.
    Agent {
        agent_id: AgentId,
    },
    Consumer {},
    System {},
}

impl CloseBody {
    pub fn split(self) -> (ClosedBy, Option<AgentId>) {
        match self {
            CloseBody::Agent { agent_id } => (ClosedBy::Agent, Some(agent_id)),
            CloseBody::Consumer {} => (ClosedBy::Consumer, None),
            CloseBody::System {} => (ClosedBy::System, None),
        }
    }
}

/// `GET /v1/skills/{skill_id}/queue?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Rows at most (default 100, at most 10 000).
    #[param(maximum = 10_000)]
    pub limit: Option<usize>,
}

/// `GET /v1/agents?status=&skill=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentFilter {
    /// Only agents in this status.
    pub status: Option<AgentStatus>,
    /// Only agents with this skill.
    pub skill: Option<SkillId>,
    /// Only agents of this group.
    pub group: Option<crate::ids::GroupId>,
}

/// `GET /v1/events?skill=a,b&type=assigned,closed`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Comma-separated skills (all when absent or empty).
    #[param(pattern = r"^([A-Za-z0-9._:-]+(~[A-Za-z0-9._:-]+)?(,[A-Za-z0-9._:-]+(~[A-Za-z0-9._:-]+)?)*)?$")]
    pub skill: Option<String>,
    /// Comma-separated event types (all when absent or empty): names of
    /// [`crate::events::EVENT_NAMES`], each (a test checks).
    #[param(
        pattern = "^((opened|offer|offer_declined|assigned|unassigned|first_response|inactive|reactivated|soon_overdue|overdue|follow_up_set|transferred|fallback_activated|closed|reopened|agent_status_changed)(,(opened|offer|offer_declined|assigned|unassigned|first_response|inactive|reactivated|soon_overdue|overdue|follow_up_set|transferred|fallback_activated|closed|reopened|agent_status_changed))*)?$"
    )]
    pub r#type: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_pattern_names_every_event_and_nothing_else() {
        let doc = serde_json::to_value(<crate::api::openapi::ApiDoc as utoipa::OpenApi>::openapi()).expect("doc");
        let params = doc["paths"]["/v1/events"]["get"]["parameters"]
            .as_array()
            .expect("params")
            .clone();
        let ty = params.iter().find(|p| p["name"] == "type").expect("type");
        let pattern = ty["schema"]["pattern"].as_str().expect("pattern");
        let inner = pattern
            .strip_prefix("^((")
            .and_then(|s| s.split_once(")(,(").map(|(a, _)| a))
            .expect("shape");
        let mut listed: Vec<&str> = inner.split('|').collect();
        let mut names = crate::events::EVENT_NAMES.to_vec();
        listed.sort_unstable();
        names.sort_unstable();
        assert_eq!(listed, names);
    }
}
