//! The queue's rank key: a blend of fixed timestamps that orders conversations the same
//! way at every instant.
//!
//! `score = w_due·due_at + w_queued·queued_at − w_fresh·last_consumer_message_at
//!          − priority·priority_point`
//!
//! Smaller is served first. Every input is a fixed instant, so the key of a waiting
//! conversation never changes with the clock and an ordered map keyed by it never needs
//! re-sorting. What does change with time (becoming overdue) changes the key's `tier`
//! through a timer that re-keys one entry.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Weights of the blend. Defaults: `due = 1`, `queued = 1`, `freshness = 0.25`, and one
/// priority point is worth five minutes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankWeights {
    pub due: f64,
    pub queued: f64,
    pub freshness: f64,
    pub priority_point_secs: f64,
}

impl Default for RankWeights {
    fn default() -> Self {
        RankWeights {
            due: 1.0,
            queued: 1.0,
            freshness: 0.25,
            priority_point_secs: 300.0,
        }
    }
}

/// Overdue conversations come before all others...
pub const TIER_OVERDUE: u8 = 0;
/// ...then follow-ups coming due (a manual SLA the agent set, actionable
/// `reactivate_before` ahead of it)...
pub const TIER_FOLLOW_UP: u8 = 1;
/// ...then the rest, by score.
pub const TIER_NORMAL: u8 = 2;

/// Position in a skill queue; smaller is offered first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RankKey {
    pub tier: u8,
    /// The blend, in milliseconds (relative to the epoch, weights applied).
    pub score: i64,
    /// Unique per conversation: breaks ties and keeps keys distinct in a map.
    pub seq: u64,
}

/// The timestamps a rank key is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankInputs {
    pub overdue: bool,
    /// A follow-up coming due (at the top of its queue, after the overdue).
    pub follow_up: bool,
    pub due_at: Timestamp,
    pub queued_at: Timestamp,
    pub last_consumer_message_at: Timestamp,
    pub priority: i32,
    pub seq: u64,
}

pub fn rank_key(inputs: &RankInputs, w: &RankWeights) -> RankKey {
    let ms = |t: Timestamp| t.as_millis() as f64;
    let score = w.due * ms(inputs.due_at) + w.queued * ms(inputs.queued_at)
        - w.freshness * ms(inputs.last_consumer_message_at)
        - f64::from(inputs.priority) * w.priority_point_secs * 1000.0;
    RankKey {
        tier: if inputs.overdue {
            TIER_OVERDUE
        } else if inputs.follow_up {
            TIER_FOLLOW_UP
        } else {
            TIER_NORMAL
        },
        score: score as i64,
        seq: inputs.seq,
    }
}

/// A business-priority rule on a conversation attribute.
///
/// `equals` compares as text; `at_least` compares numerically. Besides the attributes
/// given at open, every conversation has `transfers` (a count), `returned_to_queue`,
/// `urgent` and `first_time` (`"true"`/`"false"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    pub attribute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<i64>,
    /// Priority points added when the rule matches (negative demotes).
    pub boost: i32,
}

impl PriorityRule {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        let equals_ok = self.equals.as_deref().is_none_or(|e| e == value);
        let at_least_ok = self
            .at_least
            .is_none_or(|min| value.parse::<i64>().is_ok_and(|v| v >= min));
        equals_ok && at_least_ok
    }
}

/// Sum of the boosts of the matching rules; `lookup` resolves an attribute name.
pub fn priority<'a>(rules: &[PriorityRule], lookup: impl Fn(&str) -> Option<std::borrow::Cow<'a, str>>) -> i32 {
    rules
        .iter()
        .filter(|r| r.matches(lookup(&r.attribute).as_deref()))
        .map(|r| r.boost)
        .fold(0i32, i32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::time::Duration;

    fn inputs(due_min: u64, queued_min: u64, last_min: u64, seq: u64) -> RankInputs {
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let m = |x: u64| t0.plus(Duration::from_secs(60 * x));
        RankInputs {
            overdue: false,
            follow_up: false,
            due_at: m(due_min),
            queued_at: m(queued_min),
            last_consumer_message_at: m(last_min),
            priority: 0,
            seq,
        }
    }

    #[test]
    fn earlier_due_earlier_queue_and_priority_come_first() {
        let w = RankWeights::default();
        let a = rank_key(&inputs(60, 0, 0, 1), &w);
        let b = rank_key(&inputs(30, 0, 0, 2), &w);
        assert!(b < a, "earlier due first");
        let c = rank_key(&inputs(60, 5, 5, 3), &w);
        assert!(a < c, "longer in queue first");
        let mut vip = inputs(60, 5, 5, 4);
        vip.priority = 5;
        assert!(rank_key(&vip, &w) < a, "five priority points beat five minutes");
    }

    #[test]
    fn overdue_beats_everything() {
        let w = RankWeights::default();
        let mut late = inputs(600, 500, 500, 1);
        late.overdue = true;
        let mut vip = inputs(0, 0, 0, 2);
        vip.priority = 1000;
        assert!(rank_key(&late, &w) < rank_key(&vip, &w));
    }

    #[test]
    fn a_follow_up_coming_due_comes_after_the_overdue_and_before_the_rest() {
        let w = RankWeights::default();
        let mut follow_up = inputs(600, 500, 500, 1);
        follow_up.follow_up = true;
        let mut vip = inputs(0, 0, 0, 2);
        vip.priority = 1000;
        let mut late = inputs(900, 800, 800, 3);
        late.overdue = true;
        assert!(rank_key(&late, &w) < rank_key(&follow_up, &w));
        assert!(rank_key(&follow_up, &w) < rank_key(&vip, &w));
    }

    #[test]
    fn fresher_consumer_message_ranks_higher_at_equal_deadlines() {
        let w = RankWeights::default();
        let stale = rank_key(&inputs(60, 0, 0, 1), &w);
        let fresh = rank_key(&inputs(60, 0, 20, 2), &w);
        assert!(fresh < stale);
    }

    #[test]
    fn rules_match_text_and_numbers() {
        let rules = vec![
            PriorityRule {
                attribute: "tier".into(),
                equals: Some("vip".into()),
                at_least: None,
                boost: 5,
            },
            PriorityRule {
                attribute: "transfers".into(),
                equals: None,
                at_least: Some(2),
                boost: 3,
            },
            PriorityRule {
                attribute: "channel".into(),
                equals: Some("sms".into()),
                at_least: None,
                boost: -1,
            },
        ];
        let attrs = |name: &str| -> Option<Cow<'static, str>> {
            match name {
                "tier" => Some(Cow::Borrowed("vip")),
                "transfers" => Some(Cow::Borrowed("2")),
                _ => None,
            }
        };
        assert_eq!(priority(&rules, attrs), 8);
    }
}
