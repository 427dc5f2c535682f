//! The scenario file of `switchboard simulate` (documented in `docs/simulation.md`):
//! parsed with `deny_unknown_fields`, validated with errors that name the field.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{ConfigError, NamedSkill, RoutingSection, SkillSpec};
use crate::domain::skill::{RoutingPolicy, Skill};
use crate::ids::SkillId;
use crate::sim::dist::{Dist, DistSpec};
use crate::time::Timestamp;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub duration_secs: u64,
    #[serde(default)]
    pub seed: u64,
    /// Virtual start time (matters for working hours and shifts). Default 2026-01-05T00:00:00Z, a Monday.
    pub start: Option<String>,
    /// Conversations arriving before this are simulated but not reported.
    #[serde(default)]
    pub warmup_secs: u64,
    /// How often agent load and queue depth are sampled. Default 60.
    pub sample_every_secs: Option<u64>,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub skill_defaults: SkillSpec,
    pub skills: Vec<NamedSkill>,
    pub agents: Vec<AgentGroupSpec>,
    pub arrivals: Vec<ArrivalSpec>,
    #[serde(default)]
    pub consumer: ConsumerSpec,
    pub handling: DistSpec,
    #[serde(default)]
    pub agent: AgentBehaviourSpec,
    #[serde(default)]
    pub report: ReportSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroupSpec {
    pub name: Option<String>,
    pub count: u32,
    pub skills: Vec<String>,
    pub max_slots: u32,
    pub max_open: Option<u32>,
    /// Daily shifts as `["08:00", "17:00"]` pairs (UTC); default: online all the time.
    #[serde(default)]
    pub shifts: Vec<[String; 2]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalSpec {
    pub skill: String,
    /// Poisson arrivals per hour.
    pub per_hour: Option<f64>,
    /// 24 rates per hour, one per hour of the day (UTC), instead of `per_hour`.
    pub per_hour_of_day: Option<Vec<f64>>,
    /// Share of conversations where the consumer asks for urgency.
    #[serde(default)]
    pub urgent_share: f64,
    /// Attributes set on a share of the conversations, e.g. `{ name = "tier", value = "vip", share = 0.1 }`.
    #[serde(default)]
    pub attributes: Vec<AttributeShare>,
    /// Consumers are drawn from a pool of this size (returning consumers); default: all new.
    pub consumers: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeShare {
    pub name: String,
    pub value: String,
    pub share: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// Consumer messages per conversation, the first included. Default: fixed 1.
    pub messages: Option<DistSpec>,
    /// Chance that the consumer answers an agent's reply (otherwise goes quiet for good).
    pub reply_probability: Option<f64>,
    /// Delay before the consumer answers. Default: exponential, 2 minutes.
    pub reply_delay: Option<DistSpec>,
    /// A consumer still unassigned after this leaves (the conversation is closed). Default: never.
    pub patience: Option<DistSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBehaviourSpec {
    /// Wrap-up after the last reply before the agent closes. Default: fixed 0.
    pub close_after: Option<DistSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Service level: share of conversations assigned within this. Default 60.
    pub service_level_target_secs: Option<u64>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub duration_secs: u64,
    pub seed: u64,
    pub start: Timestamp,
    pub warmup_secs: u64,
    pub sample_every_secs: u64,
    pub routing: RoutingPolicy,
    pub skills: Vec<Skill>,
    pub groups: Vec<AgentGroup>,
    pub arrivals: Vec<Arrivals>,
    pub messages: Dist,
    pub reply_probability: f64,
    pub reply_delay: Dist,
    pub patience: Option<Dist>,
    pub handling: Dist,
    pub close_after: Dist,
    pub service_level_target_secs: u64,
}

#[derive(Debug, Clone)]
pub struct AgentGroup {
    pub name: String,
    pub count: u32,
    pub skills: Vec<SkillId>,
    pub max_slots: u32,
    pub max_open: Option<u32>,
    /// Seconds of the day `[start, end)`; empty: always online.
    pub shifts: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
pub struct Arrivals {
    pub skill: SkillId,
    /// Arrivals per second for each hour of the day.
    pub rate_by_hour: [f64; 24],
    pub urgent_share: f64,
    pub attributes: Vec<AttributeShare>,
    pub consumers: Option<u64>,
}

impl Arrivals {
    pub fn max_rate(&self) -> f64 {
        self.rate_by_hour.iter().copied().fold(0.0, f64::max)
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

fn dist(field: &str, spec: Option<&DistSpec>, default: Dist) -> Result<Dist, ConfigError> {
    match spec {
        None => Ok(default),
        Some(s) => s.validate(field).map_err(|m| {
            let (f, r) = m.split_once(": ").unwrap_or((field, &m));
            err(f, r)
        }),
    }
}

fn share(field: &str, v: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(err(field, format!("{v} is not a share between 0 and 1")))
    }
}

fn time_of_day(field: &str, s: &str) -> Result<u32, ConfigError> {
    let bad = || err(field, format!("{s:?} is not HH:MM"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if (h < 24 && m < 60) || (h == 24 && m == 0) {
        Ok(h * 3600 + m * 60)
    } else {
        Err(bad())
    }
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Scenario, ConfigError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| err("scenario", e.to_string().trim_end()))?;
        file.validate()
    }
}

impl ScenarioFile {
    pub fn validate(self) -> Result<Scenario, ConfigError> {
        if self.duration_secs == 0 {
            return Err(err("duration_secs", "must be at least 1"));
        }
        if self.warmup_secs >= self.duration_secs {
            return Err(err("warmup_secs", "must be shorter than duration_secs"));
        }
        let start = match &self.start {
            None => Timestamp::parse_rfc3339("2026-01-05T00:00:00Z").map_err(|e| err("start", e.to_string()))?,
            Some(s) => Timestamp::parse_rfc3339(s).map_err(|e| err("start", format!("{s:?}: {e}")))?,
        };
        let routing = self.routing.validate()?;
        let builtin = crate::config::builtin_skill_defaults();
        let defaults = self
            .skill_defaults
            .resolve(builtin.id.clone(), &builtin, "skill_defaults")?;
        let mut skills: Vec<Skill> = Vec::new();
        for (i, s) in self.skills.iter().enumerate() {
            let at = format!("skills[{i}]");
            let id = SkillId::new(&s.id).map_err(|e| err(format!("{at}.id"), e.to_string()))?;
            if skills.iter().any(|k| k.id == id) {
                return Err(err(format!("{at}.id"), format!("duplicate skill {id:?}")));
            }
            skills.push(s.spec.resolve(id, &defaults, &at)?);
        }
        if skills.is_empty() {
            return Err(err("skills", "a scenario needs at least one skill"));
        }
        for (i, s) in skills.iter().enumerate() {
            if let Some(fb) = &s.fallback_skill {
                if !skills.iter().any(|k| &k.id == fb) {
                    return Err(err(
                        format!("skills[{i}].fallback_skill"),
                        format!("unknown skill {fb:?}"),
                    ));
                }
            }
        }
        let known = |s: &str| skills.iter().find(|k| k.id.as_str() == s).map(|k| k.id.clone());
        let mut groups = Vec::new();
        for (i, g) in self.agents.iter().enumerate() {
            let at = format!("agents[{i}]");
            let spec = crate::config::validate_agent_spec(&at, &g.skills, g.max_slots, g.max_open, |s| {
                known(s.as_str()).is_some()
            })?;
            if g.count == 0 {
                return Err(err(format!("{at}.count"), "must be at least 1"));
            }
            let mut shifts = Vec::new();
            for (j, [a, b]) in g.shifts.iter().enumerate() {
                let f = format!("{at}.shifts[{j}]");
                let (start, end) = (time_of_day(&f, a)?, time_of_day(&f, b)?);
                if start >= end {
                    return Err(err(
                        f,
                        "a shift must start before it ends (split overnight shifts in two)",
                    ));
                }
                shifts.push((start, end));
            }
            let name = g.name.clone().unwrap_or_else(|| format!("group{i}"));
            if crate::ids::AgentId::new(format!("{name}-0")).is_err() {
                return Err(err(format!("{at}.name"), "must be a valid id prefix"));
            }
            groups.push(AgentGroup {
                name,
                count: g.count,
                skills: spec.skills,
                max_slots: spec.max_slots,
                max_open: spec.max_open,
                shifts,
            });
        }
        if groups.is_empty() {
            return Err(err("agents", "a scenario needs at least one agent group"));
        }
        let mut arrivals = Vec::new();
        for (i, a) in self.arrivals.iter().enumerate() {
            let at = format!("arrivals[{i}]");
            let skill =
                known(&a.skill).ok_or_else(|| err(format!("{at}.skill"), format!("unknown skill {:?}", a.skill)))?;
            let rate_by_hour: [f64; 24] = match (&a.per_hour, &a.per_hour_of_day) {
                (Some(r), None) => [*r / 3600.0; 24],
                (None, Some(v)) if v.len() == 24 => {
                    let mut out = [0.0; 24];
                    for (h, r) in v.iter().enumerate() {
                        out[h] = r / 3600.0;
                    }
                    out
                }
                (None, Some(_)) => return Err(err(format!("{at}.per_hour_of_day"), "needs exactly 24 rates")),
                _ => return Err(err(at, "give exactly one of per_hour and per_hour_of_day")),
            };
            if rate_by_hour.iter().any(|r| !r.is_finite() || *r < 0.0) {
                return Err(err(format!("{at}.per_hour"), "rates must be finite and >= 0"));
            }
            for (j, attr) in a.attributes.iter().enumerate() {
                share(&format!("{at}.attributes[{j}].share"), attr.share)?;
            }
            arrivals.push(Arrivals {
                skill,
                rate_by_hour,
                urgent_share: share(&format!("{at}.urgent_share"), a.urgent_share)?,
                attributes: a.attributes.clone(),
                consumers: match a.consumers {
                    Some(0) => return Err(err(format!("{at}.consumers"), "must be at least 1")),
                    c => c,
                },
            });
        }
        if arrivals.is_empty() {
            return Err(err("arrivals", "a scenario needs at least one arrival stream"));
        }
        let c = &self.consumer;
        let messages = dist("consumer.messages", c.messages.as_ref(), Dist::Fixed(1.0))?;
        if messages.mean() < 1.0 {
            return Err(err(
                "consumer.messages",
                "a conversation has at least one message (mean >= 1)",
            ));
        }
        let sample_every_secs = self.sample_every_secs.unwrap_or(60);
        if sample_every_secs == 0 {
            return Err(err("sample_every_secs", "must be at least 1"));
        }
        Ok(Scenario {
            duration_secs: self.duration_secs,
            seed: self.seed,
            start,
            warmup_secs: self.warmup_secs,
            sample_every_secs,
            routing,
            skills,
            groups,
            arrivals,
            messages,
            reply_probability: share("consumer.reply_probability", c.reply_probability.unwrap_or(1.0))?,
            reply_delay: dist(
                "consumer.reply_delay",
                c.reply_delay.as_ref(),
                Dist::Exponential { mean: 120.0 },
            )?,
            patience: match &c.patience {
                None => None,
                Some(p) => Some(dist("consumer.patience", Some(p), Dist::Fixed(0.0))?),
            },
            handling: dist("handling", Some(&self.handling), Dist::Fixed(0.0))?,
            close_after: dist("agent.close_after", self.agent.close_after.as_ref(), Dist::Fixed(0.0))?,
            service_level_target_secs: self.report.service_level_target_secs.unwrap_or(60),
        })
    }
}

impl Scenario {
    /// The Erlang C prediction when the scenario is an M/M/c queue: one skill, Poisson
    /// arrivals at a constant rate, exponential handling, one message, agents with one
    /// slot online all the time, no abandonment.
    pub fn erlang_c(&self) -> Option<crate::sim::erlang::ErlangC> {
        let single_skill = self.skills.len() == 1 && self.arrivals.len() == 1;
        let constant = self
            .arrivals
            .first()
            .is_some_and(|a| a.rate_by_hour.iter().all(|r| *r == a.rate_by_hour[0]));
        let one_message = self.messages == Dist::Fixed(1.0);
        let exponential = matches!(self.handling, Dist::Exponential { .. });
        let one_slot = self.groups.iter().all(|g| g.max_slots == 1 && g.shifts.is_empty());
        let no_wrap_up = self.close_after == Dist::Fixed(0.0);
        if !(single_skill
            && constant
            && one_message
            && exponential
            && one_slot
            && no_wrap_up
            && self.patience.is_none())
        {
            return None;
        }
        let servers: u32 = self.groups.iter().map(|g| g.count).sum();
        crate::sim::erlang::erlang_c(
            self.arrivals[0].rate_by_hour[0],
            self.handling.mean(),
            servers,
            self.service_level_target_secs as f64,
        )
    }
}

/// The attributes of a conversation drawn from a stream's shares.
pub fn attributes_for(shares: &[AttributeShare], mut roll: impl FnMut() -> f64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in shares {
        if roll() < a.share {
            out.insert(a.name.clone(), a.value.clone());
        }
    }
    out
}
