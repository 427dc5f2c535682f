//! Smart Capacity arithmetic: how much room an agent really has.
//!
//! Loads are kept in thousandths of a slot ([`Weight`]) so that sums are exact and
//! comparisons deterministic: `0.1 + 0.1 + 0.1` is exactly `0.3` here.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A load in thousandths of a slot (`1000` = one active conversation at weight 1.0).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Weight(pub u32);

impl Weight {
    pub const ZERO: Weight = Weight(0);

    /// Rounds to the nearest thousandth; negative and non-finite inputs give zero.
    pub fn from_slots(slots: f64) -> Self {
        if slots.is_finite() && slots > 0.0 {
            Weight((slots * 1000.0).round().min(u32::MAX as f64) as u32)
        } else {
            Weight(0)
        }
    }

    pub fn as_slots(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    pub fn saturating_sub(self, other: Weight) -> Weight {
        Weight(self.0.saturating_sub(other.0))
    }
}

impl Add for Weight {
    type Output = Weight;
    fn add(self, rhs: Weight) -> Weight {
        Weight(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Weight {
    fn add_assign(&mut self, rhs: Weight) {
        *self = *self + rhs;
    }
}

impl Sub for Weight {
    type Output = Weight;
    fn sub(self, rhs: Weight) -> Weight {
        self.saturating_sub(rhs)
    }
}

impl std::iter::Sum for Weight {
    fn sum<I: Iterator<Item = Weight>>(iter: I) -> Weight {
        iter.fold(Weight::ZERO, Add::add)
    }
}

impl fmt::Debug for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.as_slots())
    }
}

/// The limits of one agent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityLimits {
    /// Nominal concurrency, e.g. 4 conversations.
    pub max_slots: u32,
    /// How far past `max_slots` one more conversation may push the load (default 0.5).
    pub overflow: Weight,
    /// Hard cap on assigned conversations whatever their weight.
    pub max_open: Option<u32>,
}

impl CapacityLimits {
    /// The most weight the agent may carry: `max_slots + overflow`.
    pub fn ceiling(&self) -> Weight {
        Weight(self.max_slots.saturating_mul(1000)) + self.overflow
    }
}

/// Why an agent cannot take one more conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoRoom {
    /// The agent is not online.
    NotOnline,
    /// `busy + incoming` would pass `max_slots + overflow`.
    Weight,
    /// `max_open` conversations are assigned already.
    MaxOpen,
    /// Warm-up: the next conversation is allowed later.
    WarmingUp,
    /// The agent already holds this conversation or an offer for it.
    AlreadyHeld,
}

/// `busy + incoming <= max_slots + overflow`, and fewer than `max_open` open.
pub fn fits(busy: Weight, num_open: u32, incoming: Weight, limits: &CapacityLimits) -> Result<(), NoRoom> {
    if limits.max_open.is_some_and(|max| num_open >= max) {
        return Err(NoRoom::MaxOpen);
    }
    if busy + incoming > limits.ceiling() {
        return Err(NoRoom::Weight);
    }
    Ok(())
}

/// Weight the agent can still take: `max_slots + overflow - busy` (zero when over).
pub fn free_weight(busy: Weight, limits: &CapacityLimits) -> Weight {
    limits.ceiling().saturating_sub(busy)
}

/// `busy / max_slots`, the figure shown to people (may pass 1.0 by the overflow).
pub fn load(busy: Weight, max_slots: u32) -> f64 {
    if max_slots == 0 {
        return 0.0;
    }
    busy.as_slots() / f64::from(max_slots)
}

/// Warm-up settings: a fresh agent gets one conversation at once, then one more every
/// `interval`, until it holds `max_slots` conversations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupPolicy {
    pub interval: Duration,
    /// An agent that had no assignment for this long warms up again.
    pub idle_reset: Duration,
}

/// An agent's warm-up progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warmup {
    pub warming: bool,
    /// The last assignment made during this warm-up.
    pub last_step_at: Option<Timestamp>,
}

impl Warmup {
    /// Starts a warm-up (login, or a long time without assignments).
    pub fn restart() -> Self {
        Warmup {
            warming: true,
            last_step_at: None,
        }
    }

    /// When the next conversation may be assigned; `None` means now.
    pub fn next_allowed_at(&self, policy: &WarmupPolicy) -> Option<Timestamp> {
        if !self.warming {
            return None;
        }
        self.last_step_at.map(|t| t.plus(policy.interval))
    }

    pub fn allows(&self, now: Timestamp, policy: &WarmupPolicy) -> bool {
        self.next_allowed_at(policy).is_none_or(|at| now >= at)
    }

    /// Records an assignment; the warm-up ends once the agent holds `max_slots`.
    pub fn on_assigned(&mut self, now: Timestamp, num_open: u32, max_slots: u32) {
        if self.warming {
            self.last_step_at = Some(now);
            if num_open >= max_slots {
                self.warming = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_slots: u32) -> CapacityLimits {
        CapacityLimits {
            max_slots,
            overflow: Weight::from_slots(0.5),
            max_open: None,
        }
    }

    #[test]
    fn overflow_allows_a_small_excess_only() {
        // The design's example: 3 slots, busy 2.1 may take one more (3.1), busy 2.6 may not.
        let one = Weight::from_slots(1.0);
        assert_eq!(fits(Weight::from_slots(2.1), 3, one, &limits(3)), Ok(()));
        assert_eq!(fits(Weight::from_slots(2.6), 3, one, &limits(3)), Err(NoRoom::Weight));
        assert_eq!(fits(Weight::from_slots(2.5), 3, one, &limits(3)), Ok(()));
    }

    #[test]
    fn inactive_weights_sum_exactly() {
        let tenth = Weight::from_slots(0.1);
        let busy: Weight = std::iter::repeat_n(tenth, 10).sum();
        assert_eq!(busy, Weight::from_slots(1.0));
        assert_eq!(free_weight(busy, &limits(2)), Weight::from_slots(1.5));
    }

    #[test]
    fn max_open_caps_whatever_the_weight() {
        let l = CapacityLimits {
            max_open: Some(5),
            ..limits(4)
        };
        let busy = Weight::from_slots(0.5);
        assert_eq!(fits(busy, 4, Weight::from_slots(1.0), &l), Ok(()));
        assert_eq!(fits(busy, 5, Weight::from_slots(1.0), &l), Err(NoRoom::MaxOpen));
    }

    #[test]
    fn load_is_busy_over_slots() {
        assert!((load(Weight::from_slots(3.1), 3) - 3.1 / 3.0).abs() < 1e-9);
        assert_eq!(load(Weight::ZERO, 0), 0.0);
    }

    #[test]
    fn warmup_paces_assignments_then_ends() {
        let policy = WarmupPolicy {
            interval: Duration::from_secs(90),
            idle_reset: Duration::from_secs(3600),
        };
        let t0 = Timestamp::from_millis(0);
        let mut w = Warmup::restart();
        assert!(w.allows(t0, &policy), "the first conversation comes at once");
        w.on_assigned(t0, 1, 3);
        assert!(!w.allows(t0.plus(Duration::from_secs(89)), &policy));
        assert!(w.allows(t0.plus(Duration::from_secs(90)), &policy));
        w.on_assigned(t0.plus(Duration::from_secs(90)), 2, 3);
        w.on_assigned(t0.plus(Duration::from_secs(180)), 3, 3);
        assert!(!w.warming, "warm-up ends when the agent is full");
        assert!(w.allows(t0.plus(Duration::from_secs(181)), &policy));
    }
}
