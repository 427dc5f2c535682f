//! SLAs: response deadlines, their kinds, and working hours that pause the clock.
//!
//! A conversation that waits for an agent has a deadline `due_at = anchor + sla`, where
//! the anchor is the consumer message that started the current wait (the first message
//! the agent has not answered yet), a transfer, or a return to the queue. Working hours
//! count only open time: a message at 22:00 with a one-hour SLA and a 09:00 opening is
//! due at 10:00 the next working day.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Which response time applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaKind {
    Normal,
    /// The consumer asked for an urgent answer.
    Urgent,
    /// The consumer's first conversation.
    FirstTime,
    /// Set by an agent ("I'll get back to you in 2 hours").
    Manual,
}

/// A deadline and the kind of promise behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sla {
    pub kind: SlaKind,
    pub due_at: Timestamp,
}

/// The response times of one skill.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlaPolicy {
    pub normal: Duration,
    pub urgent: Duration,
    pub first_time: Duration,
}

impl SlaPolicy {
    /// The kind that applies: urgent before first-time before normal.
    pub fn kind_for(urgent: bool, first_time: bool) -> SlaKind {
        if urgent {
            SlaKind::Urgent
        } else if first_time {
            SlaKind::FirstTime
        } else {
            SlaKind::Normal
        }
    }

    pub fn response_time(&self, kind: SlaKind) -> Duration {
        match kind {
            SlaKind::Urgent => self.urgent,
            SlaKind::FirstTime => self.first_time,
            SlaKind::Normal | SlaKind::Manual => self.normal,
        }
    }

    /// The deadline of a wait that started at `anchor`.
    pub fn due(&self, anchor: Timestamp, kind: SlaKind, hours: Option<&WorkingHours>) -> Sla {
        let sla = self.response_time(kind);
        let due_at = match hours {
            Some(h) => h.add_working_time(anchor, sla),
            None => anchor.plus(sla),
        };
        Sla { kind, due_at }
    }
}

/// Open hours within one day, in seconds since local midnight: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

const DAY_MS: i64 = 86_400_000;

/// A skill's weekly schedule with special dates, at a fixed offset from UTC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkingHours {
    pub utc_offset_secs: i32,
    /// Monday first; each day's spans sorted and disjoint.
    pub weekly: [Vec<Span>; 7],
    /// Dates whose spans replace the weekly ones (an empty list: closed all day).
    pub special: BTreeMap<NaiveDate, Vec<Span>>,
}

impl WorkingHours {
    fn spans_on(&self, date: NaiveDate) -> &[Span] {
        match self.special.get(&date) {
            Some(spans) => spans,
            None => &self.weekly[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// Whether `at` falls in open hours.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.add_working_time(at, Duration::ZERO) == at
    }

    /// The instant when `d` of open time has passed since `from`. With `d = 0` that is
    /// `from` itself during open hours, else the next opening. A schedule with no open
    /// hours in the next two years counts every hour as open.
    pub fn add_working_time(&self, from: Timestamp, d: Duration) -> Timestamp {
        let offset_ms = i64::from(self.utc_offset_secs) * 1000;
        let mut cursor = from.as_millis() + offset_ms;
        let mut remaining = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        for _ in 0..(2 * 366) {
            let day_start = cursor.div_euclid(DAY_MS) * DAY_MS;
            let Some(date) = chrono::DateTime::from_timestamp_millis(day_start).map(|t| t.date_naive()) else {
                break;
            };
            for span in self.spans_on(date) {
                let open = day_start + i64::from(span.start) * 1000;
                let close = day_start + i64::from(span.end) * 1000;
                if close <= cursor {
                    continue;
                }
                let begin = open.max(cursor);
                let available = close - begin;
                if remaining <= available {
                    return Timestamp::from_millis(begin + remaining - offset_ms);
                }
                remaining -= available;
                cursor = close;
            }
            cursor = day_start + DAY_MS;
        }
        from.plus(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("test timestamp")
    }

    fn nine_to_five_weekdays() -> WorkingHours {
        let day = vec![Span {
            start: 9 * 3600,
            end: 17 * 3600,
        }];
        WorkingHours {
            utc_offset_secs: 0,
            weekly: [day.clone(), day.clone(), day.clone(), day.clone(), day, vec![], vec![]],
            special: BTreeMap::new(),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> SlaPolicy {
        SlaPolicy {
            normal: HOUR,
            urgent: Duration::from_secs(600),
            first_time: Duration::from_secs(1800),
        }
    }

    #[test]
    fn due_is_anchor_plus_response_time_of_the_kind() {
        let t = at("2026-11-24T10:00:00Z");
        assert_eq!(
            policy().due(t, SlaKind::Normal, None).due_at,
            at("2026-11-24T11:00:00Z")
        );
        assert_eq!(
            policy().due(t, SlaKind::Urgent, None).due_at,
            at("2026-11-24T10:10:00Z")
        );
        assert_eq!(
            policy().due(t, SlaKind::FirstTime, None).due_at,
            at("2026-11-24T10:30:00Z")
        );
        assert_eq!(SlaPolicy::kind_for(true, true), SlaKind::Urgent);
        assert_eq!(SlaPolicy::kind_for(false, true), SlaKind::FirstTime);
    }

    #[test]
    fn off_hours_message_is_due_after_the_next_opening() {
        let h = nine_to_five_weekdays();
        // Tuesday 22:00 → Wednesday 10:00.
        let due = policy().due(at("2026-11-24T22:00:00Z"), SlaKind::Normal, Some(&h));
        assert_eq!(due.due_at, at("2026-11-25T10:00:00Z"));
        // Friday 16:30 → 30 min on Friday, 30 min on Monday.
        let due = policy().due(at("2026-11-27T16:30:00Z"), SlaKind::Normal, Some(&h));
        assert_eq!(due.due_at, at("2026-11-30T09:30:00Z"));
        // In hours: plain addition.
        let due = policy().due(at("2026-11-24T10:00:00Z"), SlaKind::Normal, Some(&h));
        assert_eq!(due.due_at, at("2026-11-24T11:00:00Z"));
    }

    #[test]
    fn special_dates_replace_the_weekly_schedule_and_offset_applies() {
        let mut h = nine_to_five_weekdays();
        let thursday = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        h.special.insert(thursday, vec![]);
        let due = policy().due(at("2026-11-25T16:30:00Z"), SlaKind::Normal, Some(&h));
        assert_eq!(due.due_at, at("2026-11-27T09:30:00Z"), "closed Thursday is skipped");

        h.utc_offset_secs = 3600; // 09:00 local is 08:00 UTC
        assert!(h.is_open(at("2026-11-24T08:30:00Z")));
        assert!(!h.is_open(at("2026-11-24T16:30:00Z")));
    }

    #[test]
    fn a_schedule_without_open_hours_counts_all_time() {
        let h = WorkingHours::default();
        let t = at("2026-11-24T10:00:00Z");
        assert_eq!(h.add_working_time(t, HOUR), at("2026-11-24T11:00:00Z"));
    }
}
