//! The settings that drive routing: per skill ([`Skill`]) and engine-wide
//! ([`RoutingPolicy`]). These are the typed, validated forms of the TOML config and of
//! `PUT /v1/skills/{id}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::capacity::{WarmupPolicy, Weight};
use crate::domain::conversation::Activity;
use crate::domain::rank::{PriorityRule, RankWeights};
use crate::domain::sla::{OffHours, Sla, SlaKind, SlaPolicy, WorkingHours};
use crate::ids::{GroupId, SkillId};
use crate::time::Timestamp;

/// One skill: a queue with its SLAs, Smart Capacity weights and priority rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    pub id: SkillId,
    pub sla: SlaPolicy,
    /// Weight of a conversation while the consumer is engaged.
    pub active_weight: Weight,
    /// Weight once the consumer has gone quiet (the agent wrote last).
    pub inactive_weight: Weight,
    /// Consumer silence after the agent's message that makes a conversation inactive.
    pub inactive_after: Duration,
    /// A conversation that waits for the consumer this long is closed by the system.
    pub auto_close_after: Duration,
    /// Also offered to this skill when no agent of this one is online, or after
    /// `fallback_after` in the queue.
    pub fallback_skill: Option<SkillId>,
    pub fallback_after: Option<Duration>,
    /// Whether agents away (or back soon) count as unavailable for the fallback: `true`
    /// (the default), only online agents keep conversations from falling back; `false`,
    /// an agent of the skill away or back soon does too.
    #[serde(default = "yes")]
    pub fallback_when_away: bool,
    /// The skills a conversation of this one may be transferred to; `None`: any.
    #[serde(default)]
    pub transfer_to: Option<Vec<SkillId>>,
    /// `None`: assignments are auto-accepted. `Some(t)`: the agent has `t` to accept.
    pub offer_timeout: Option<Duration>,
    pub priority_rules: Vec<PriorityRule>,
    pub working_hours: Option<WorkingHours>,
    /// Off hours switched by hand (`PUT /v1/skills/{id}/off-hours`): state, not settings,
    /// so a `PUT /v1/skills/{id}` keeps it.
    #[serde(default)]
    pub off_hours: OffHours,
    /// How conversations are shared among agent groups; `None`: groups play no part.
    #[serde(default)]
    pub group_routing: Option<GroupRouting>,
}

/// How a skill shares its conversations among agent groups (LivePerson's skill routing
/// configuration, for teams and BPO vendors). Agents of a group not listed, or of none,
/// come after every listed group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRouting {
    /// In priority order: a group's agents get conversations only when no agent of the
    /// groups before it has room.
    Cascade(Vec<GroupId>),
    /// Percentages of the conversations offered (summing to 100): each goes to the group
    /// furthest below its share that has an agent with room.
    Split(Vec<(GroupId, u32)>),
}

impl GroupRouting {
    /// The listed groups, in order.
    pub fn groups(&self) -> Vec<&GroupId> {
        match self {
            GroupRouting::Cascade(g) => g.iter().collect(),
            GroupRouting::Split(g) => g.iter().map(|(g, _)| g).collect(),
        }
    }
}

fn yes() -> bool {
    true
}

impl Skill {
    /// The deadline of a wait of `kind` that started at `anchor`, in this skill's open
    /// time; `None` while it is off hours by hand (see [`SlaPolicy::due`]).
    pub fn due(&self, anchor: Timestamp, kind: SlaKind) -> Option<Sla> {
        self.sla.due(anchor, kind, self.working_hours.as_ref(), &self.off_hours)
    }

    /// Whether a conversation of this skill may be transferred to `to`.
    pub fn may_transfer_to(&self, to: &SkillId) -> bool {
        self.transfer_to.as_ref().is_none_or(|allowed| allowed.contains(to))
    }

    pub fn weight(&self, activity: Activity) -> Weight {
        match activity {
            Activity::Active => self.active_weight,
            Activity::Inactive => self.inactive_weight,
        }
    }
}

/// Which of the agents with room gets a conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentChoice {
    /// LivePerson's routing logic: the lowest utilization (`busy / max_slots`) first,
    /// then the agent this queue offered to least recently.
    #[default]
    Utilization,
    /// The most free weight (`max_slots + overflow - busy`) first: a 10-slot agent at
    /// 50% before an idle 3-slot agent (switchboard's rule before `agent_choice`).
    MostFree,
}

/// Automatic unassignment, LivePerson's "automatically unassign conversations": opt-in
/// (every field `None` by default), and it only ever takes conversations pending the
/// agent's answer (the consumer wrote last). An agent on a break keeps the rest, and a
/// follow-up the agent promised stays with them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnassignPolicy {
    /// An agent away this long gives back the conversations waiting for its answer.
    pub away_after: Option<Duration>,
    /// An agent offline this long gives back the conversations waiting for its answer.
    pub offline_after: Option<Duration>,
    /// An online agent who leaves a consumer message unanswered this long gives that
    /// conversation back (LivePerson's example: 60 s).
    pub unresponsive_after: Option<Duration>,
}

impl UnassignPolicy {
    /// Some rule gives conversations back: only then does an agent need to know how
    /// long each of its conversations has waited for its answer.
    pub fn is_on(&self) -> bool {
        self.away_after.is_some() || self.offline_after.is_some() || self.unresponsive_after.is_some()
    }
}

/// Engine-wide routing rules (the `[routing]` table of the config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutingPolicy {
    /// Load an agent may carry past `max_slots` for one more conversation.
    pub overflow: Weight,
    /// A manual SLA further away than this releases the conversation's weight at once.
    pub manual_sla_release: Duration,
    /// A released conversation becomes active this long before its manual due time.
    pub reactivate_before: Duration,
    /// "Soon overdue" starts this long before the due time.
    pub soon_overdue_before: Duration,
    /// Automatic unassignment (off unless configured).
    #[serde(default)]
    pub unassign: UnassignPolicy,
    /// Reasons an agent may give for being away (at most 10).
    #[serde(default)]
    pub away_reasons: Vec<String>,
    /// A transfer to a named agent waits this long for them, then any agent may take it.
    pub transfer_to_agent_max_wait: Duration,
    /// A returning consumer prefers their last agent if that assignment is this recent.
    pub sticky_window: Duration,
    pub warmup: Option<WarmupPolicy>,
    pub ranking: RankWeights,
    /// An offer declined by every candidate is retried after this long.
    pub offer_retry_after: Duration,
    /// A closed conversation stays visible to the API this long...
    pub closed_retention: Duration,
    /// ...and at most this many closed conversations are kept (the oldest go first).
    pub closed_retention_max: usize,
    /// Open (not closed) conversations above which a new one is refused with
    /// `Overloaded` (HTTP 503): the bound that keeps memory from growing without end
    /// when conversations are opened faster than they close.
    pub max_open_conversations: u64,
    /// Consumers remembered (first-time SLA, return to the same agent); past this
    /// many, the least recently seen is forgotten.
    pub max_consumers: usize,
    /// A conversation activation with no work for this long is passivated, whatever
    /// the state (a quiet conversation at once); the next message activates it again.
    pub passivate_after: Duration,
    /// Which agent with room gets a conversation.
    #[serde(default)]
    pub agent_choice: AgentChoice,
    /// Queue backlog management: an agent who answers a consumer message older than
    /// this gives the conversation its inactive weight at once (the consumer has most
    /// likely left), instead of after the skill's `inactive_after`.
    pub backlog_after: Duration,
    /// An online agent with no open event stream this long is set away; `None`: never.
    #[serde(default)]
    pub disconnected_away_after: Option<Duration>,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            overflow: Weight::from_slots(0.5),
            manual_sla_release: Duration::from_secs(30 * 60),
            reactivate_before: Duration::from_secs(10 * 60),
            soon_overdue_before: Duration::from_secs(5 * 60),
            unassign: UnassignPolicy::default(),
            away_reasons: Vec::new(),
            transfer_to_agent_max_wait: Duration::from_secs(2 * 3600),
            sticky_window: Duration::from_secs(7 * 86_400),
            warmup: None,
            ranking: RankWeights::default(),
            offer_retry_after: Duration::from_secs(30),
            closed_retention: Duration::from_secs(10 * 60),
            closed_retention_max: 100_000,
            max_open_conversations: 5_000_000,
            max_consumers: 2_000_000,
            passivate_after: Duration::from_secs(30),
            agent_choice: AgentChoice::Utilization,
            backlog_after: Duration::from_secs(2 * 3600),
            disconnected_away_after: None,
        }
    }
}
