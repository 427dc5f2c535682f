//! Configuration: a TOML file (or the embedded default) parsed into serde structs with
//! `deny_unknown_fields`, then validated into typed settings. Every error names the
//! field and the reason, e.g. `skills[1].sla.normal_secs: must be at least 1`.
//!
//! Every field has a default; `docs/config.md` lists them. The same [`SkillSpec`] shape
//! is the body of `PUT /v1/skills/{id}`.

use crate::store::{Durability, StoreConfig};
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::agent::{AgentSpec, AgentStatus};
use crate::domain::capacity::{WarmupPolicy, Weight};
use crate::domain::rank::{PriorityRule, RankWeights};
use crate::domain::skill::{GroupRouting, RoutingPolicy, Skill, UnassignPolicy};
use crate::domain::sla::{OffHours, SlaPolicy, Span, WorkingHours};
use crate::ids::{AgentId, GroupId, SkillId};

/// The configuration the binary starts with when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// A configuration value that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub skill_defaults: SkillSpec,
    #[serde(default)]
    pub skills: Vec<NamedSkill>,
    #[serde(default)]
    pub agents: Vec<NamedAgent>,
    #[serde(default)]
    pub store: StoreSection,
    /// Present: this node is one of a cluster (see `cluster/README.md`).
    pub cluster: Option<ClusterSection>,
}

/// `[cluster]`: this node's part in a cluster of `switchboard serve` processes that act
/// as one router, with PostgreSQL (`[store] url`) as the record of state, membership
/// and shard ownership.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Unique in the cluster; letters, digits, `-`, `_`, `.`.
    pub node_name: Option<String>,
    /// The cluster port's address (bound to this address only), e.g. `127.0.0.1:7001`.
    pub listen: Option<String>,
    /// The magic cookie every node of the cluster shares (`SWITCHBOARD_CLUSTER_COOKIE`
    /// overrides).
    pub cookie: Option<String>,
    /// The HTTP address other nodes forward requests to. Default: `server.listen`
    /// (which must then not be a wildcard address).
    pub advertise_http: Option<String>,
    /// How long a shard lease lasts without renewal, in milliseconds: a dead node's
    /// shards are taken over after it. Default 6000 (renewed every 2 s).
    pub lease_ms: Option<u64>,
    /// Mutual TLS on the cluster port: this node's certificate and key, and the CA that
    /// signed every node's certificate. All three or none.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub tls_ca: Option<std::path::PathBuf>,
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node: String,
    pub listen: std::net::SocketAddr,
    pub cookie: String,
    pub advertise_http: Option<String>,
    pub lease: Duration,
    pub tls: Option<crate::cluster::transport::TlsFiles>,
}

impl ClusterSection {
    pub fn validate(&self, env: &BTreeMap<String, String>, store: &StoreConfig) -> Result<ClusterConfig, ConfigError> {
        let node = self
            .node_name
            .clone()
            .ok_or_else(|| ConfigError::new("cluster.node_name", "is required"))?;
        if node.is_empty() || node.len() > 64 || !node.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError::new(
                "cluster.node_name",
                format!("{node:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
        let listen = self
            .listen
            .as_deref()
            .ok_or_else(|| ConfigError::new("cluster.listen", "is required (the cluster port, e.g. 127.0.0.1:7001)"))?;
        let listen: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| ConfigError::new("cluster.listen", format!("{listen:?} is not an IP address and port")))?;
        let cookie = env
            .get("SWITCHBOARD_CLUSTER_COOKIE")
            .cloned()
            .or_else(|| self.cookie.clone())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ConfigError::new("cluster.cookie", "is required (or SWITCHBOARD_CLUSTER_COOKIE)"))?;
        let lease = Duration::from_millis(self.lease_ms.unwrap_or(6000));
        if !(Duration::from_millis(300)..=Duration::from_secs(600)).contains(&lease) {
            return Err(ConfigError::new("cluster.lease_ms", "must be between 300 and 600000"));
        }
        let tls = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(crate::cluster::transport::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => {
                return Err(ConfigError::new(
                    "cluster.tls_cert",
                    "tls_cert, tls_key and tls_ca go together: give all three or none",
                ))
            }
        };
        if let Some(url) = &store.url {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                return Err(ConfigError::new(
                    "store.url",
                    "a cluster's nodes share a PostgreSQL store: set [store] url = \"postgres://...\"",
                ));
            }
        }
        Ok(ClusterConfig {
            node,
            listen,
            cookie,
            advertise_http: self.advertise_http.clone(),
            lease,
            tls,
        })
    }
}

/// `[store]`: where the router's state is recorded (see `docs/config.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`. `serve` defaults it to
    /// `sqlite://DATA_DIR/switchboard.db`.
    pub url: Option<String>,
    /// `commit` (default) or `relaxed`.
    pub durability: Option<String>,
    pub max_batch: Option<usize>,
    pub gather_ms: Option<u64>,
    /// The platform stream's events kept in the store (per node); 0 keeps none.
    pub events_kept: Option<u64>,
    /// SQLite with commit durability: commit to a change log, apply to the tables in
    /// the background. Default true.
    pub change_log: Option<bool>,
    /// How long the change log's groups wait to be applied to the tables, ms.
    /// Default 250.
    pub apply_ms: Option<u64>,
}

/// `[server]`: where and how the HTTP API listens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Bearer token required on `/v1` (the `SWITCHBOARD_API_TOKEN` variable overrides).
    pub api_token: Option<String>,
    /// Request bodies above this many bytes get 413. Default 65536.
    pub max_body_bytes: Option<usize>,
    /// Messages in flight inside the engine above which the API answers 503. Default 100000.
    pub max_in_flight: Option<i64>,
    /// Events buffered per agent event stream before a slow client is cut off. Default 256.
    pub event_stream_buffer: Option<usize>,
    /// HTTP worker threads. Default: the number of cores.
    pub workers: Option<usize>,
}

/// `[routing]`: engine-wide rules. Durations in whole seconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    pub overflow: Option<f64>,
    pub manual_sla_release_secs: Option<u64>,
    pub reactivate_before_secs: Option<u64>,
    pub soon_overdue_before_secs: Option<u64>,
    /// Replaced by `[routing.unassign]`: present, it is refused with a message that says so.
    pub unassign_grace_secs: Option<u64>,
    pub unassign: Option<UnassignSection>,
    /// Reasons an agent may give for being away (`{"status": "away", "reason": "lunch"}`); at most 10.
    pub away_reasons: Option<Vec<String>>,
    pub transfer_to_agent_max_wait_secs: Option<u64>,
    pub sticky_window_secs: Option<u64>,
    pub offer_retry_after_secs: Option<u64>,
    pub closed_retention_secs: Option<u64>,
    pub closed_retention_max: Option<usize>,
    pub max_open_conversations: Option<u64>,
    pub max_consumers: Option<usize>,
    pub passivate_after_secs: Option<u64>,
    pub agent_choice: Option<crate::domain::skill::AgentChoice>,
    pub backlog_after_secs: Option<u64>,
    /// An online agent with no open event stream this long is set away. Default: never.
    pub disconnected_away_after_secs: Option<u64>,
    pub warmup: Option<WarmupSection>,
    pub ranking: Option<RankingSection>,
}

/// `[routing.unassign]`: automatic unassignment, off unless set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnassignSection {
    pub away_after_secs: Option<u64>,
    pub offline_after_secs: Option<u64>,
    pub unresponsive_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupSection {
    pub interval_secs: Option<u64>,
    pub idle_reset_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingSection {
    pub due: Option<f64>,
    pub queued: Option<f64>,
    pub freshness: Option<f64>,
    pub priority_point_secs: Option<f64>,
}

/// A skill's settings; every field optional (defaults from `[skill_defaults]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillSpec {
    #[serde(default, deserialize_with = "crate::strict::object")]
    pub sla: Option<SlaSpec>,
    #[serde(default, deserialize_with = "crate::strict::object")]
    pub smart_capacity: Option<SmartCapacitySpec>,
    /// Between 25 minutes and 90 days.
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1500, maximum = 7_776_000)]
    pub auto_close_after_secs: Option<u64>,
    /// Another skill, known (400 otherwise).
    #[schema(value_type = Option<crate::ids::SkillId>)]
    pub fallback_skill: Option<String>,
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub fallback_after_secs: Option<u64>,
    /// Whether agents away (or back soon) count as unavailable for the fallback. Default true.
    pub fallback_when_away: Option<bool>,
    /// The skills a conversation of this one may be transferred to. Default: any.
    #[schema(value_type = Option<Vec<crate::ids::SkillId>>)]
    pub transfer_to: Option<Vec<String>>,
    /// Absent or null: assignments are auto-accepted.
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub offer_timeout_secs: Option<u64>,
    #[serde(default, deserialize_with = "crate::strict::objects")]
    pub priority_rules: Option<Vec<PriorityRule>>,
    #[serde(default, deserialize_with = "crate::strict::object")]
    pub working_hours: Option<WorkingHoursSpec>,
    #[serde(default, deserialize_with = "crate::strict::object")]
    pub group_routing: Option<GroupRoutingSpec>,
}

/// How a skill shares conversations among agent groups, one of: `cascade`, groups in
/// priority order (the next only when the ones before have no agent with room); `split`,
/// each group's percentage of the conversations (summing to 100). Agents of a group not
/// listed, or of none, come after every listed group. At most 32 groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRoutingSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::ids::GroupId>>, min_items = 1, max_items = 32)]
    pub cascade: Option<Vec<String>>,
    /// Group → percent (1 to 100), summing to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, u32>>)]
    pub split: Option<BTreeMap<String, u32>>,
}

const MAX_GROUPS: usize = 32;

impl GroupRoutingSpec {
    pub fn validate(&self, at: &str) -> Result<GroupRouting, ConfigError> {
        let group = |field: String, name: &str| GroupId::new(name).map_err(|e| ConfigError::new(field, e.to_string()));
        match (&self.cascade, &self.split) {
            (Some(list), None) => {
                if list.is_empty() || list.len() > MAX_GROUPS {
                    return Err(ConfigError::new(format!("{at}.cascade"), "1 to 32 groups"));
                }
                let mut out: Vec<GroupId> = Vec::with_capacity(list.len());
                for (i, name) in list.iter().enumerate() {
                    let g = group(format!("{at}.cascade[{i}]"), name)?;
                    if out.contains(&g) {
                        return Err(ConfigError::new(
                            format!("{at}.cascade[{i}]"),
                            format!("{name:?} is listed twice"),
                        ));
                    }
                    out.push(g);
                }
                Ok(GroupRouting::Cascade(out))
            }
            (None, Some(shares)) => {
                if shares.is_empty() || shares.len() > MAX_GROUPS {
                    return Err(ConfigError::new(format!("{at}.split"), "1 to 32 groups"));
                }
                let mut out = Vec::with_capacity(shares.len());
                for (name, &percent) in shares {
                    let g = group(format!("{at}.split.{name}"), name)?;
                    if !(1..=100).contains(&percent) {
                        return Err(ConfigError::new(
                            format!("{at}.split.{name}"),
                            "a percentage from 1 to 100",
                        ));
                    }
                    out.push((g, percent));
                }
                let total: u32 = out.iter().map(|(_, p)| p).sum();
                if total != 100 {
                    return Err(ConfigError::new(
                        format!("{at}.split"),
                        format!("the percentages sum to {total}, not 100"),
                    ));
                }
                Ok(GroupRouting::Split(out))
            }
            _ => Err(ConfigError::new(at, "set one of cascade and split")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaSpec {
    /// Response time of a normal wait.
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub normal_secs: Option<u64>,
    /// After the consumer asked for an urgent answer.
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub urgent_secs: Option<u64>,
    /// For a consumer's first conversation.
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub first_time_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmartCapacitySpec {
    /// Greater than 0.
    #[schema(minimum = 0, maximum = 100)]
    pub active_weight: Option<f64>,
    /// At most `active_weight`.
    #[schema(minimum = 0, maximum = 100)]
    pub inactive_weight: Option<f64>,
    #[serde(default, deserialize_with = "crate::strict::opt")]
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub inactive_after_secs: Option<u64>,
}

/// Open hours per weekday as `"HH:MM-HH:MM"` spans in local time (a missing day is
/// closed; overlapping spans are merged), special dates (`"YYYY-MM-DD"`) that replace the
/// weekday, and the time zone: an IANA name (daylight-saving time followed) or a fixed
/// offset from UTC, not both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingHoursSpec {
    /// An IANA time zone such as `Europe/Berlin`; replaces `utc_offset_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Europe/Berlin")]
    pub time_zone: Option<String>,
    #[serde(default, deserialize_with = "crate::strict::de")]
    #[schema(minimum = -50_400, maximum = 50_400)]
    pub utc_offset_secs: i32,
    #[serde(default)]
    pub monday: Vec<String>,
    #[serde(default)]
    pub tuesday: Vec<String>,
    #[serde(default)]
    pub wednesday: Vec<String>,
    #[serde(default)]
    pub thursday: Vec<String>,
    #[serde(default)]
    pub friday: Vec<String>,
    #[serde(default)]
    pub saturday: Vec<String>,
    #[serde(default)]
    pub sunday: Vec<String>,
    #[serde(default)]
    pub special: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSkill {
    pub id: String,
    #[serde(flatten)]
    pub spec: SkillSpec,
}

/// An agent registered at start (handy for demos and fixed teams).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedAgent {
    pub id: String,
    pub skills: Vec<String>,
    pub max_slots: u32,
    pub max_open: Option<u32>,
    pub status: Option<AgentStatus>,
    /// The agent's group (`group_routing` of a skill).
    pub group: Option<String>,
}

/// The validated engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub routing: RoutingPolicy,
    /// The template new skills start from (`id` is a placeholder).
    pub skill_defaults: Skill,
    pub skills: Vec<Skill>,
    pub agents: Vec<(AgentId, AgentSpec, AgentStatus)>,
    /// Capacity of the domain-event broadcast channel.
    pub event_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            routing: RoutingPolicy::default(),
            skill_defaults: builtin_skill_defaults(),
            skills: Vec::new(),
            agents: Vec::new(),
            event_capacity: 65_536,
        }
    }
}

/// The validated `[server]` section.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub api_token: Option<String>,
    pub max_body_bytes: usize,
    pub max_in_flight: i64,
    pub event_stream_buffer: usize,
    pub workers: usize,
}

/// Everything the binary needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: EngineConfig,
    /// No url: in memory only.
    pub store: StoreConfig,
    /// `[cluster]`: this node is one of several.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Parses and validates a TOML document. `env` supplies environment overrides
    /// (`SWITCHBOARD_API_TOKEN`), passed in so that tests stay pure.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| ConfigError::new("config", e.to_string().trim_end()))?;
        file.validate(env)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        match Config::from_toml(DEFAULT_CONFIG, &BTreeMap::new()) {
            Ok(c) => c,
            // The embedded file is checked by a unit test; this cannot happen in a release.
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }
}

fn secs(v: Option<u64>, default: Duration) -> Duration {
    v.map(Duration::from_secs).unwrap_or(default)
}

/// Auto-close bounds, as LivePerson's: a conversation waiting for the consumer is
/// closed by the system after 25 minutes at the least and 90 days at the most (the
/// default: a messaging conversation may wait days for its consumer).
pub const AUTO_CLOSE_MIN: Duration = Duration::from_secs(25 * 60);
pub const AUTO_CLOSE_MAX: Duration = Duration::from_secs(90 * 86_400);

/// The longest duration a skill's setting takes (366 days): beyond it, deadlines would
/// run past what a timestamp holds, and no operator means it.
pub const MAX_SKILL_SECS: u64 = 31_622_400;

fn positive_secs(field: &str, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::new(field, "must be at least 1")),
        Some(x) if x > MAX_SKILL_SECS => Err(ConfigError::new(
            field,
            format!("{x} is more than {MAX_SKILL_SECS} (366 days)"),
        )),
        _ => Ok(secs(v, default)),
    }
}

fn weight(field: &str, v: Option<f64>, default: Weight, max: f64) -> Result<Weight, ConfigError> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && (0.0..=max).contains(&x) => Ok(Weight::from_slots(x)),
        Some(x) => Err(ConfigError::new(field, format!("{x} is not between 0 and {max}"))),
    }
}

fn finite(field: &str, v: Option<f64>, default: f64) -> Result<f64, ConfigError> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Some(x) => Err(ConfigError::new(field, format!("{x} must be a finite number >= 0"))),
    }
}

/// The built-in skill defaults: SLA 1 h / 10 min urgent / 30 min first time; weights
/// 1.0 active, 0.1 inactive after 10 min; auto-close after 90 days; auto-accept.
pub fn builtin_skill_defaults() -> Skill {
    Skill {
        id: SkillId::new("default").unwrap_or_else(|_| unreachable!("valid literal id")),
        sla: SlaPolicy {
            normal: Duration::from_secs(3600),
            urgent: Duration::from_secs(600),
            first_time: Duration::from_secs(1800),
        },
        active_weight: Weight::from_slots(1.0),
        inactive_weight: Weight::from_slots(0.1),
        inactive_after: Duration::from_secs(600),
        auto_close_after: AUTO_CLOSE_MAX,
        fallback_skill: None,
        fallback_after: None,
        fallback_when_away: true,
        transfer_to: None,
        offer_timeout: None,
        priority_rules: Vec::new(),
        working_hours: None,
        off_hours: OffHours::default(),
        group_routing: None,
    }
}

impl RoutingSection {
    fn unassign_policy(&self) -> Result<UnassignPolicy, ConfigError> {
        if self.unassign_grace_secs.is_some() {
            return Err(ConfigError::new(
                "routing.unassign_grace_secs",
                "replaced by [routing.unassign] away_after_secs and offline_after_secs: automatic \
                 unassignment is opt-in and only takes conversations waiting for the agent's answer",
            ));
        }
        let u = self.unassign.clone().unwrap_or_default();
        let opt = |field: &str, v: Option<u64>| -> Result<Option<Duration>, ConfigError> {
            match v {
                Some(0) => Err(ConfigError::new(
                    field,
                    "must be at least 1 (leave it out to turn the rule off)",
                )),
                v => Ok(v.map(Duration::from_secs)),
            }
        };
        Ok(UnassignPolicy {
            away_after: opt("routing.unassign.away_after_secs", u.away_after_secs)?,
            offline_after: opt("routing.unassign.offline_after_secs", u.offline_after_secs)?,
            unresponsive_after: opt("routing.unassign.unresponsive_after_secs", u.unresponsive_after_secs)?,
        })
    }

    fn away_reasons(&self) -> Result<Vec<String>, ConfigError> {
        let list = self.away_reasons.clone().unwrap_or_default();
        if list.len() > 10 {
            return Err(ConfigError::new(
                "routing.away_reasons",
                format!("{} reasons: at most 10", list.len()),
            ));
        }
        for (i, r) in list.iter().enumerate() {
            let field = format!("routing.away_reasons[{i}]");
            if r.is_empty() || r.len() > 64 || r.chars().any(char::is_control) {
                return Err(ConfigError::new(field, "1 to 64 printable characters"));
            }
            if list[..i].contains(r) {
                return Err(ConfigError::new(field, format!("{r:?} is listed twice")));
            }
        }
        Ok(list)
    }

    pub fn validate(&self) -> Result<RoutingPolicy, ConfigError> {
        let d = RoutingPolicy::default();
        let warmup = match &self.warmup {
            None => None,
            Some(w) => Some(WarmupPolicy {
                interval: positive_secs("routing.warmup.interval_secs", w.interval_secs, Duration::from_secs(90))?,
                idle_reset: positive_secs(
                    "routing.warmup.idle_reset_secs",
                    w.idle_reset_secs,
                    Duration::from_secs(3600),
                )?,
            }),
        };
        let r = self.ranking.clone().unwrap_or_default();
        let dr = RankWeights::default();
        let ranking = RankWeights {
            due: finite("routing.ranking.due", r.due, dr.due)?,
            queued: finite("routing.ranking.queued", r.queued, dr.queued)?,
            freshness: finite("routing.ranking.freshness", r.freshness, dr.freshness)?,
            priority_point_secs: finite(
                "routing.ranking.priority_point_secs",
                r.priority_point_secs,
                dr.priority_point_secs,
            )?,
        };
        Ok(RoutingPolicy {
            overflow: weight("routing.overflow", self.overflow, d.overflow, 100.0)?,
            manual_sla_release: secs(self.manual_sla_release_secs, d.manual_sla_release),
            reactivate_before: secs(self.reactivate_before_secs, d.reactivate_before),
            soon_overdue_before: secs(self.soon_overdue_before_secs, d.soon_overdue_before),
            unassign: self.unassign_policy()?,
            away_reasons: self.away_reasons()?,
            transfer_to_agent_max_wait: secs(self.transfer_to_agent_max_wait_secs, d.transfer_to_agent_max_wait),
            sticky_window: secs(self.sticky_window_secs, d.sticky_window),
            warmup,
            ranking,
            offer_retry_after: positive_secs(
                "routing.offer_retry_after_secs",
                self.offer_retry_after_secs,
                d.offer_retry_after,
            )?,
            closed_retention: secs(self.closed_retention_secs, d.closed_retention),
            closed_retention_max: self.closed_retention_max.unwrap_or(d.closed_retention_max),
            max_open_conversations: match self.max_open_conversations {
                Some(0) => return Err(ConfigError::new("routing.max_open_conversations", "must be at least 1")),
                v => v.unwrap_or(d.max_open_conversations),
            },
            max_consumers: self.max_consumers.unwrap_or(d.max_consumers),
            passivate_after: positive_secs(
                "routing.passivate_after_secs",
                self.passivate_after_secs,
                d.passivate_after,
            )?,
            agent_choice: self.agent_choice.unwrap_or(d.agent_choice),
            backlog_after: positive_secs("routing.backlog_after_secs", self.backlog_after_secs, d.backlog_after)?,
            disconnected_away_after: match self.disconnected_away_after_secs {
                None => None,
                s => Some(positive_secs(
                    "routing.disconnected_away_after_secs",
                    s,
                    Duration::ZERO,
                )?),
            },
        })
    }
}

impl SkillSpec {
    /// Resolves the spec against `defaults`; `at` prefixes field names in errors.
    /// Whether `fallback_skill` exists is checked by the caller, who knows the skills.
    pub fn resolve(&self, id: SkillId, defaults: &Skill, at: &str) -> Result<Skill, ConfigError> {
        let f = |name: &str| {
            if at.is_empty() {
                name.to_string()
            } else {
                format!("{at}.{name}")
            }
        };
        let sla = self.sla.clone().unwrap_or_default();
        let cap = self.smart_capacity.clone().unwrap_or_default();
        let active_weight = weight(
            &f("smart_capacity.active_weight"),
            cap.active_weight,
            defaults.active_weight,
            100.0,
        )?;
        if active_weight == Weight::ZERO {
            return Err(ConfigError::new(
                f("smart_capacity.active_weight"),
                "must be greater than 0",
            ));
        }
        let inactive_weight = weight(
            &f("smart_capacity.inactive_weight"),
            cap.inactive_weight,
            defaults.inactive_weight,
            100.0,
        )?;
        if inactive_weight > active_weight {
            return Err(ConfigError::new(
                f("smart_capacity.inactive_weight"),
                "must not exceed active_weight",
            ));
        }
        let fallback_skill = match &self.fallback_skill {
            None => defaults.fallback_skill.clone(),
            Some(s) => {
                let fb = SkillId::new(s).map_err(|e| ConfigError::new(f("fallback_skill"), e.to_string()))?;
                if fb == id {
                    return Err(ConfigError::new(
                        f("fallback_skill"),
                        "a skill cannot fall back to itself",
                    ));
                }
                Some(fb)
            }
        };
        let priority_rules = self
            .priority_rules
            .clone()
            .unwrap_or_else(|| defaults.priority_rules.clone());
        for (i, rule) in priority_rules.iter().enumerate() {
            if rule.attribute.is_empty() {
                return Err(ConfigError::new(
                    f(&format!("priority_rules[{i}].attribute")),
                    "must not be empty",
                ));
            }
            if rule.equals.is_none() && rule.at_least.is_none() {
                return Err(ConfigError::new(
                    f(&format!("priority_rules[{i}]")),
                    "needs `equals` or `at_least`",
                ));
            }
        }
        let transfer_to = match &self.transfer_to {
            None => defaults.transfer_to.clone(),
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        SkillId::new(s).map_err(|e| ConfigError::new(f(&format!("transfer_to[{i}]")), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let working_hours = match &self.working_hours {
            None => defaults.working_hours.clone(),
            Some(w) => Some(w.validate(&f("working_hours"))?),
        };
        let group_routing = match &self.group_routing {
            None => defaults.group_routing.clone(),
            Some(g) => Some(g.validate(&f("group_routing"))?),
        };
        Ok(Skill {
            id,
            sla: SlaPolicy {
                normal: positive_secs(&f("sla.normal_secs"), sla.normal_secs, defaults.sla.normal)?,
                urgent: positive_secs(&f("sla.urgent_secs"), sla.urgent_secs, defaults.sla.urgent)?,
                first_time: positive_secs(&f("sla.first_time_secs"), sla.first_time_secs, defaults.sla.first_time)?,
            },
            active_weight,
            inactive_weight,
            inactive_after: positive_secs(
                &f("smart_capacity.inactive_after_secs"),
                cap.inactive_after_secs,
                defaults.inactive_after,
            )?,
            auto_close_after: match self.auto_close_after_secs {
                None => defaults.auto_close_after,
                Some(s) if (AUTO_CLOSE_MIN.as_secs()..=AUTO_CLOSE_MAX.as_secs()).contains(&s) => Duration::from_secs(s),
                Some(s) => {
                    return Err(ConfigError::new(
                        f("auto_close_after_secs"),
                        format!(
                            "{s} is not between {} (25 minutes) and {} (90 days)",
                            AUTO_CLOSE_MIN.as_secs(),
                            AUTO_CLOSE_MAX.as_secs()
                        ),
                    ))
                }
            },
            fallback_skill,
            fallback_when_away: self.fallback_when_away.unwrap_or(defaults.fallback_when_away),
            transfer_to,
            fallback_after: match self.fallback_after_secs {
                None => defaults.fallback_after,
                s => Some(positive_secs(&f("fallback_after_secs"), s, Duration::ZERO)?),
            },
            offer_timeout: match self.offer_timeout_secs {
                Some(0) => {
                    return Err(ConfigError::new(
                        f("offer_timeout_secs"),
                        "must be at least 1 (omit it for auto-accept)",
                    ))
                }
                None => defaults.offer_timeout,
                s => Some(positive_secs(&f("offer_timeout_secs"), s, Duration::ZERO)?),
            },
            priority_rules,
            working_hours,
            off_hours: OffHours::default(),
            group_routing,
        })
    }
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 3600 + m * 60)
}

fn parse_spans(field: &str, spans: &[String]) -> Result<Vec<Span>, ConfigError> {
    let mut out = Vec::with_capacity(spans.len());
    for (i, s) in spans.iter().enumerate() {
        let bad = || {
            ConfigError::new(
                format!("{field}[{i}]"),
                format!("{s:?} is not \"HH:MM-HH:MM\" with start before end"),
            )
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (parse_hhmm(a).ok_or_else(bad)?, parse_hhmm(b).ok_or_else(bad)?);
        if start >= end {
            return Err(bad());
        }
        out.push(Span { start, end });
    }
    Ok(Span::merged(out))
}

impl WorkingHoursSpec {
    pub fn validate(&self, at: &str) -> Result<WorkingHours, ConfigError> {
        if !(-14 * 3600..=14 * 3600).contains(&self.utc_offset_secs) {
            return Err(ConfigError::new(
                format!("{at}.utc_offset_secs"),
                "must be within ±14 hours",
            ));
        }
        let time_zone = match &self.time_zone {
            None => None,
            Some(_) if self.utc_offset_secs != 0 => {
                return Err(ConfigError::new(
                    format!("{at}.time_zone"),
                    "set either time_zone or utc_offset_secs, not both",
                ))
            }
            Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| {
                ConfigError::new(
                    format!("{at}.time_zone"),
                    format!("{name:?} is not an IANA time zone name such as \"Europe/Berlin\""),
                )
            })?),
        };
        let days = [
            ("monday", &self.monday),
            ("tuesday", &self.tuesday),
            ("wednesday", &self.wednesday),
            ("thursday", &self.thursday),
            ("friday", &self.friday),
            ("saturday", &self.saturday),
            ("sunday", &self.sunday),
        ];
        let mut weekly: [Vec<Span>; 7] = Default::default();
        for (i, (name, spans)) in days.iter().enumerate() {
            weekly[i] = parse_spans(&format!("{at}.{name}"), spans)?;
        }
        if weekly.iter().all(Vec::is_empty) {
            return Err(ConfigError::new(at, "no open hours on any weekday"));
        }
        let mut special = BTreeMap::new();
        for (date, spans) in &self.special {
            let d = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| ConfigError::new(format!("{at}.special"), format!("{date:?} is not a YYYY-MM-DD date")))?;
            special.insert(d, parse_spans(&format!("{at}.special.{date}"), spans)?);
        }
        Ok(WorkingHours {
            utc_offset_secs: self.utc_offset_secs,
            time_zone,
            weekly,
            special,
        })
    }
}

impl ConfigFile {
    pub fn validate(self, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let routing = self.routing.validate()?;
        let builtin = builtin_skill_defaults();
        let skill_defaults = self
            .skill_defaults
            .resolve(builtin.id.clone(), &builtin, "skill_defaults")?;
        let mut skills: Vec<Skill> = Vec::with_capacity(self.skills.len());
        for (i, s) in self.skills.iter().enumerate() {
            let at = format!("skills[{i}]");
            let id = SkillId::new(&s.id).map_err(|e| ConfigError::new(format!("{at}.id"), e.to_string()))?;
            if skills.iter().any(|k| k.id == id) {
                return Err(ConfigError::new(format!("{at}.id"), format!("duplicate skill {id:?}")));
            }
            skills.push(s.spec.resolve(id, &skill_defaults, &at)?);
        }
        for (i, s) in skills.iter().enumerate() {
            if let Some(fb) = &s.fallback_skill {
                if !skills.iter().any(|k| &k.id == fb) {
                    return Err(ConfigError::new(
                        format!("skills[{i}].fallback_skill"),
                        format!("unknown skill {fb:?}"),
                    ));
                }
            }
            for (j, to) in s.transfer_to.iter().flatten().enumerate() {
                if !skills.iter().any(|k| &k.id == to) {
                    return Err(ConfigError::new(
                        format!("skills[{i}].transfer_to[{j}]"),
                        format!("unknown skill {to:?}"),
                    ));
                }
            }
        }
        let mut agents = Vec::with_capacity(self.agents.len());
        for (i, a) in self.agents.iter().enumerate() {
            let at = format!("agents[{i}]");
            let id = AgentId::new(&a.id).map_err(|e| ConfigError::new(format!("{at}.id"), e.to_string()))?;
            let mut spec = validate_agent_spec(&at, &a.skills, a.max_slots, a.max_open, |s| {
                skills.iter().any(|k| &k.id == s)
            })?;
            spec.group = match &a.group {
                None => None,
                Some(g) => Some(GroupId::new(g).map_err(|e| ConfigError::new(format!("{at}.group"), e.to_string()))?),
            };
            agents.push((id, spec, a.status.unwrap_or(AgentStatus::Offline)));
        }
        let s = self.server;
        let api_token = env
            .get("SWITCHBOARD_API_TOKEN")
            .cloned()
            .or(s.api_token)
            .filter(|t| !t.is_empty());
        let server = ServerConfig {
            listen: s.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string()),
            api_token,
            max_body_bytes: s.max_body_bytes.unwrap_or(65_536),
            max_in_flight: s.max_in_flight.unwrap_or(100_000),
            event_stream_buffer: s.event_stream_buffer.unwrap_or(256).max(1),
            workers: s.workers.unwrap_or(0),
        };
        if server.max_in_flight < 1 {
            return Err(ConfigError::new("server.max_in_flight", "must be at least 1"));
        }
        let store = self.store.validate()?;
        let cluster = match &self.cluster {
            Some(c) => Some(c.validate(env, &store)?),
            None => None,
        };
        Ok(Config {
            server,
            store,
            cluster,
            engine: EngineConfig {
                routing,
                skill_defaults,
                skills,
                agents,
                event_capacity: 65_536,
            },
        })
    }
}

/// The most events `store.events_kept` may keep: a trim early in a node's era (its
/// first `events_kept` events after a start) walks that many index entries.
pub const MAX_EVENTS_KEPT: u64 = 10_000_000;

impl StoreSection {
    pub fn validate(&self) -> Result<StoreConfig, ConfigError> {
        let d = StoreConfig::default();
        let durability = match self.durability.as_deref() {
            None | Some("commit") => Durability::Commit,
            Some("relaxed") => Durability::Relaxed,
            Some(other) => {
                return Err(ConfigError::new(
                    "store.durability",
                    format!("{other:?} is not \"commit\" or \"relaxed\""),
                ))
            }
        };
        if let Some(url) = &self.url {
            let known = ["sqlite://", "postgres://", "postgresql://"];
            if !known.iter().any(|p| url.starts_with(p)) || known.contains(&url.as_str()) {
                return Err(ConfigError::new(
                    "store.url",
                    format!("{url:?} is not sqlite://PATH or postgres://USER@HOST/DB"),
                ));
            }
        }
        let max_batch = self.max_batch.unwrap_or(d.max_batch);
        if max_batch == 0 {
            return Err(ConfigError::new("store.max_batch", "must be at least 1"));
        }
        let gather = Duration::from_millis(self.gather_ms.unwrap_or(d.gather.as_millis() as u64));
        if gather > Duration::from_millis(100) {
            return Err(ConfigError::new("store.gather_ms", "must be at most 100"));
        }
        let events_kept = self.events_kept.unwrap_or(d.events_kept);
        if events_kept > MAX_EVENTS_KEPT {
            return Err(ConfigError::new(
                "store.events_kept",
                format!("{events_kept} is more than {MAX_EVENTS_KEPT}"),
            ));
        }
        let apply_every = Duration::from_millis(self.apply_ms.unwrap_or(d.apply_every.as_millis() as u64));
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&apply_every) {
            return Err(ConfigError::new("store.apply_ms", "must be between 10 and 60000"));
        }
        Ok(StoreConfig {
            url: self.url.clone(),
            durability,
            max_batch,
            gather,
            events_kept,
            change_log: self.change_log.unwrap_or(d.change_log),
            apply_every,
        })
    }
}

/// Checks an agent registration: skills known, at least one slot.
pub fn validate_agent_spec(
    at: &str,
    skills: &[String],
    max_slots: u32,
    max_open: Option<u32>,
    skill_exists: impl Fn(&SkillId) -> bool,
) -> Result<AgentSpec, ConfigError> {
    let f = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    if skills.is_empty() {
        return Err(ConfigError::new(f("skills"), "an agent needs at least one skill"));
    }
    let mut ids = Vec::with_capacity(skills.len());
    for (i, s) in skills.iter().enumerate() {
        let id = SkillId::new(s).map_err(|e| ConfigError::new(format!("{}[{i}]", f("skills")), e.to_string()))?;
        if !skill_exists(&id) {
            return Err(ConfigError::new(
                format!("{}[{i}]", f("skills")),
                format!("unknown skill {id:?}"),
            ));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if max_slots == 0 || max_slots > 1000 {
        return Err(ConfigError::new(f("max_slots"), "must be between 1 and 1000"));
    }
    if max_open == Some(0) {
        return Err(ConfigError::new(
            f("max_open"),
            "must be at least 1 (omit it for no cap)",
        ));
    }
    Ok(AgentSpec {
        skills: ids,
        max_slots,
        max_open,
        group: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, &BTreeMap::new())
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = parse(DEFAULT_CONFIG).expect("valid default");
        assert!(c.engine.skills.len() >= 2);
        assert_eq!(c.server.listen, "127.0.0.1:8080");
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").expect("empty is fine");
        assert_eq!(c.engine.routing, RoutingPolicy::default());
        assert_eq!(c.engine.skill_defaults.inactive_weight, Weight::from_slots(0.1));
        assert_eq!(c.engine.skill_defaults.sla.normal, Duration::from_secs(3600));
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let e = parse("[routing]\noverflw = 0.5\n").expect_err("typo");
        assert!(e.reason.contains("overflw"), "{e}");
        assert!(e.reason.contains("line 2"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            parse("[[skills]]\nid = \"a\"\n[[skills]]\nid = \"b\"\nsla = { normal_secs = 0 }\n").expect_err("zero sla");
        assert_eq!(e.field, "skills[1].sla.normal_secs");
        let e = parse("[[skills]]\nid = \"a\"\nfallback_skill = \"nope\"\n").expect_err("fallback");
        assert_eq!(e.field, "skills[0].fallback_skill");
        let e = parse("[[skills]]\nid = \"a\"\ntransfer_to = [\"a\", \"nope\"]\n").expect_err("transfer_to");
        assert_eq!(e.field, "skills[0].transfer_to[1]");
        let e = parse("[[skills]]\nid = \"a\"\nsmart_capacity = { inactive_weight = 2.0 }\n").expect_err("weights");
        assert_eq!(e.field, "skills[0].smart_capacity.inactive_weight");
        let e = parse("[[skills]]\nid = \"a\"\n[[agents]]\nid = \"x\"\nskills = [\"b\"]\nmax_slots = 3\n")
            .expect_err("skill");
        assert_eq!(e.field, "agents[0].skills[0]");
        let e = parse("[[skills]]\nid = \"a b\"\n").expect_err("id");
        assert_eq!(e.field, "skills[0].id");
    }

    #[test]
    fn automatic_unassignment_is_opt_in_and_the_old_grace_setting_says_what_replaced_it() {
        let c = parse("").expect("empty");
        assert_eq!(c.engine.routing.unassign, UnassignPolicy::default());
        let c = parse("[routing.unassign]\naway_after_secs = 600\nunresponsive_after_secs = 60\n").expect("set");
        assert_eq!(c.engine.routing.unassign.away_after, Some(Duration::from_secs(600)));
        assert_eq!(c.engine.routing.unassign.offline_after, None);
        assert_eq!(
            c.engine.routing.unassign.unresponsive_after,
            Some(Duration::from_secs(60))
        );
        let e = parse("[routing]\nunassign_grace_secs = 120\n").expect_err("replaced");
        assert_eq!(e.field, "routing.unassign_grace_secs");
        assert!(e.reason.contains("[routing.unassign]"), "{e}");
        let e = parse("[routing.unassign]\nunresponsive_after_secs = 0\n").expect_err("zero");
        assert_eq!(e.field, "routing.unassign.unresponsive_after_secs");
    }

    #[test]
    fn away_reasons_are_at_most_ten_distinct_names() {
        let c = parse("[routing]\naway_reasons = [\"lunch\", \"training\"]\n").expect("two");
        assert_eq!(c.engine.routing.away_reasons, ["lunch", "training"]);
        let eleven: Vec<String> = (0..11).map(|i| format!("\"r{i}\"")).collect();
        let e = parse(&format!("[routing]\naway_reasons = [{}]\n", eleven.join(", "))).expect_err("eleven");
        assert_eq!(e.field, "routing.away_reasons");
        let e = parse("[routing]\naway_reasons = [\"lunch\", \"lunch\"]\n").expect_err("twice");
        assert_eq!(e.field, "routing.away_reasons[1]");
        let e = parse("[routing]\naway_reasons = [\"\"]\n").expect_err("empty");
        assert_eq!(e.field, "routing.away_reasons[0]");
    }

    #[test]
    fn auto_close_is_bounded_25_minutes_to_90_days_default_90_days() {
        let c = parse("[[skills]]\nid = \"a\"\n").expect("valid");
        assert_eq!(c.engine.skills[0].auto_close_after, AUTO_CLOSE_MAX);
        for ok in [1500, 7200, 7_776_000] {
            let c = parse(&format!("[[skills]]\nid = \"a\"\nauto_close_after_secs = {ok}\n")).expect("in bounds");
            assert_eq!(c.engine.skills[0].auto_close_after, Duration::from_secs(ok));
        }
        for bad in [0, 60, 1499, 7_776_001] {
            let e =
                parse(&format!("[[skills]]\nid = \"a\"\nauto_close_after_secs = {bad}\n")).expect_err("out of bounds");
            assert!(e.to_string().contains("auto_close_after_secs"), "{e}");
        }
    }

    #[test]
    fn working_hours_parse_and_validate() {
        let ok = parse("[[skills]]\nid = \"a\"\n[skills.working_hours]\nmonday = [\"09:00-12:00\", \"13:00-17:00\"]\nspecial = { \"2026-12-25\" = [] }\n")
            .expect("valid hours");
        let h = ok.engine.skills[0].working_hours.clone().expect("hours");
        assert_eq!(h.weekly[0].len(), 2);
        assert_eq!(h.special.len(), 1);
        let e = parse("[[skills]]\nid = \"a\"\n[skills.working_hours]\nmonday = [\"17:00-09:00\"]\n")
            .expect_err("backwards");
        assert_eq!(e.field, "skills[0].working_hours.monday[0]");
    }

    #[test]
    fn group_routing_is_a_cascade_or_a_split_of_100_percent() {
        let skill = |body: &str| {
            parse(&format!("[[skills]]\nid = \"a\"\ngroup_routing = {body}\n[[agents]]\nid = \"x\"\nskills = [\"a\"]\nmax_slots = 2\ngroup = \"vendor\"\n"))
        };
        let ok = skill("{ split = { vendor = 60, inhouse = 40 } }").expect("split");
        assert_eq!(
            ok.engine.skills[0].group_routing,
            Some(GroupRouting::Split(vec![
                (GroupId::new("inhouse").expect("id"), 40),
                (GroupId::new("vendor").expect("id"), 60)
            ]))
        );
        assert_eq!(ok.engine.agents[0].1.group, Some(GroupId::new("vendor").expect("id")));
        let ok = skill("{ cascade = [\"inhouse\", \"vendor\"] }").expect("cascade");
        assert!(matches!(ok.engine.skills[0].group_routing, Some(GroupRouting::Cascade(ref g)) if g.len() == 2));
        for (body, field) in [
            (
                "{ split = { vendor = 60, inhouse = 30 } }",
                "skills[0].group_routing.split",
            ),
            (
                "{ split = { vendor = 0, inhouse = 100 } }",
                "skills[0].group_routing.split.vendor",
            ),
            ("{ cascade = [\"a\", \"a\"] }", "skills[0].group_routing.cascade[1]"),
            ("{ cascade = [] }", "skills[0].group_routing.cascade"),
            ("{ cascade = [\"bad group\"] }", "skills[0].group_routing.cascade[0]"),
            ("{ cascade = [\"a\"], split = { a = 100 } }", "skills[0].group_routing"),
            ("{}", "skills[0].group_routing"),
        ] {
            let e = skill(body).expect_err(body);
            assert_eq!(e.field, field, "{body}: {e}");
        }
    }

    #[test]
    fn working_hours_take_a_named_time_zone_and_merge_overlapping_spans() {
        let hours = |body: &str| parse(&format!("[[skills]]\nid = \"a\"\n[skills.working_hours]\n{body}"));
        let ok = hours("time_zone = \"Europe/Berlin\"\nmonday = [\"09:00-12:00\", \"11:00-13:00\", \"13:00-14:00\", \"16:00-17:00\"]\n")
            .expect("valid hours");
        let h = ok.engine.skills[0].working_hours.clone().expect("hours");
        assert_eq!(h.time_zone, Some(chrono_tz::Europe::Berlin));
        assert_eq!(
            h.weekly[0],
            vec![
                Span {
                    start: 9 * 3600,
                    end: 14 * 3600
                },
                Span {
                    start: 16 * 3600,
                    end: 17 * 3600
                }
            ],
            "overlapping and touching spans merged"
        );
        let e = hours("time_zone = \"Europe/Bonn\"\nmonday = [\"09:00-17:00\"]\n").expect_err("no such zone");
        assert_eq!(e.field, "skills[0].working_hours.time_zone");
        assert!(e.reason.contains("IANA"), "{e}");
        let e = hours("time_zone = \"Europe/Berlin\"\nutc_offset_secs = 3600\nmonday = [\"09:00-17:00\"]\n")
            .expect_err("both");
        assert_eq!(e.field, "skills[0].working_hours.time_zone");
    }

    #[test]
    fn env_token_overrides_file() {
        let mut env = BTreeMap::new();
        env.insert("SWITCHBOARD_API_TOKEN".to_string(), "s3cret".to_string());
        let c = Config::from_toml("[server]\napi_token = \"file\"\n", &env).expect("valid");
        assert_eq!(c.server.api_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_cluster_section_is_validated_field_by_field() {
        const PG: &str = "[store]\nurl = \"postgres://u@127.0.0.1:5432/db\"\n";
        let ok = parse(&format!(
            "{PG}[cluster]\nnode_name = \"node-1\"\nlisten = \"127.0.0.1:7001\"\ncookie = \"c\"\n"
        ))
        .expect("valid");
        let c = ok.cluster.expect("cluster");
        assert_eq!(
            (c.node.as_str(), c.listen.port(), c.lease),
            ("node-1", 7001, Duration::from_millis(6000))
        );
        assert!(
            parse("").expect("no section").cluster.is_none(),
            "without [cluster] nothing changes"
        );
        for (body, field) in [
            ("listen = \"127.0.0.1:7001\"\ncookie = \"c\"\n", "cluster.node_name"),
            (
                "node_name = \"a b\"\nlisten = \"127.0.0.1:7001\"\ncookie = \"c\"\n",
                "cluster.node_name",
            ),
            ("node_name = \"n\"\ncookie = \"c\"\n", "cluster.listen"),
            (
                "node_name = \"n\"\nlisten = \"localhost\"\ncookie = \"c\"\n",
                "cluster.listen",
            ),
            ("node_name = \"n\"\nlisten = \"127.0.0.1:7001\"\n", "cluster.cookie"),
            (
                "node_name = \"n\"\nlisten = \"127.0.0.1:7001\"\ncookie = \"c\"\nlease_ms = 10\n",
                "cluster.lease_ms",
            ),
            (
                "node_name = \"n\"\nlisten = \"127.0.0.1:7001\"\ncookie = \"c\"\ntls_cert = \"a.pem\"\n",
                "cluster.tls_cert",
            ),
        ] {
            let e = parse(&format!("{PG}[cluster]\n{body}")).expect_err(body);
            assert_eq!(e.field, field, "{body}");
        }
        // A cluster shares a PostgreSQL store: SQLite is refused.
        let e = parse("[store]\nurl = \"sqlite://x.db\"\n[cluster]\nnode_name = \"n\"\nlisten = \"127.0.0.1:7001\"\ncookie = \"c\"\n")
            .expect_err("sqlite");
        assert_eq!(e.field, "store.url");
        // The cookie may come from the environment.
        let mut env = BTreeMap::new();
        env.insert("SWITCHBOARD_CLUSTER_COOKIE".to_string(), "from-env".to_string());
        let c = Config::from_toml(
            &format!("{PG}[cluster]\nnode_name = \"n\"\nlisten = \"127.0.0.1:7001\"\n"),
            &env,
        )
        .expect("cookie from env");
        assert_eq!(c.cluster.expect("cluster").cookie, "from-env");
    }
}
