//! SLAs: response deadlines, their kinds, and working hours that pause the clock.
//!
//! A conversation that waits for an agent has a deadline `due_at = anchor + sla`, where
//! the anchor is the consumer message that started the current wait (the first message
//! the agent has not answered yet), a transfer, or a return to the queue. Working hours
//! count only open time: a message at 22:00 with a one-hour SLA and a 09:00 opening is
//! due at 10:00 the next working day.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;
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

    /// The deadline of a wait that started at `anchor`: its response time of open time
    /// later (see [`add_open_time`]). `None` while the skill is off hours by hand and the
    /// open time before the switch did not cover it: the clock stands still until the
    /// switch goes back.
    pub fn due(&self, anchor: Timestamp, kind: SlaKind, hours: Option<&WorkingHours>, off: &OffHours) -> Option<Sla> {
        let due_at = add_open_time(anchor, self.response_time(kind), hours, off)?;
        Some(Sla { kind, due_at })
    }
}

/// Open hours within one day, in seconds since local midnight: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// Sorted, with overlapping and touching spans merged into one.
    pub fn merged(mut spans: Vec<Span>) -> Vec<Span> {
        spans.sort();
        let mut out: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match out.last_mut() {
                Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
                _ => out.push(s),
            }
        }
        out
    }
}

const DAY_SECS: u32 = 86_400;

/// A skill's weekly schedule with special dates, in a named time zone (daylight-saving
/// time followed) or at a fixed offset from UTC.
///
/// A span's times are wall-clock times: it opens at the first instant the zone's clocks
/// show its start and closes at the first instant they show its end. On a day the clocks
/// go back, 01:00-03:00 is open three hours (from the first 01:00); on a day they go
/// forward past 02:00-03:00, a span from 02:30 opens at 03:00 (when the clocks jump) and
/// 01:00-03:00 is open one hour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkingHours {
    pub utc_offset_secs: i32,
    /// An IANA zone (`Europe/Berlin`); when set, `utc_offset_secs` is 0 and unused.
    #[serde(default)]
    pub time_zone: Option<Tz>,
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
        add_open_time(from, d, Some(self), &OffHours::default()).unwrap_or(from.plus(d))
    }

    /// The local date at `at` (milliseconds since the epoch).
    fn local_date(&self, at: i64) -> Option<NaiveDate> {
        match self.time_zone {
            Some(tz) => tz.timestamp_millis_opt(at).single().map(|t| t.date_naive()),
            None => chrono::DateTime::from_timestamp_millis(at + i64::from(self.utc_offset_secs) * 1000)
                .map(|t| t.date_naive()),
        }
    }

    /// The first instant (milliseconds) at which the clocks show `secs` past midnight of
    /// `date`, or a later time (the end of a daylight-saving gap that skips it).
    fn instant(&self, date: NaiveDate, secs: u32) -> Option<i64> {
        let (date, secs) = if secs >= DAY_SECS {
            (date.succ_opt()?, secs - DAY_SECS)
        } else {
            (date, secs)
        };
        let local = date.and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60)?;
        let Some(tz) = self.time_zone else {
            return Some(local.and_utc().timestamp_millis() - i64::from(self.utc_offset_secs) * 1000);
        };
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.timestamp_millis()),
            LocalResult::Ambiguous(a, b) => Some(a.min(b).timestamp_millis()),
            LocalResult::None => {
                // In a gap the clocks jump over `local`: find the jump, the first second
                // they show `local` or later (offsets are within a day of UTC).
                let shows = |t: i64| tz.timestamp_opt(t, 0).single().map(|x| x.naive_local());
                let at_utc = local.and_utc().timestamp();
                let (mut lo, mut hi) = (at_utc - 2 * i64::from(DAY_SECS), at_utc + 2 * i64::from(DAY_SECS));
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if shows(mid)? >= local {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                Some(hi * 1000)
            }
        }
    }

    /// Calls `f` with each open period `[begin, end)` from `from` on, in order, until it
    /// returns true; false when two years pass without that.
    fn each_open(&self, from: i64, mut f: impl FnMut(i64, Option<i64>) -> bool) -> bool {
        let Some(mut date) = self.local_date(from) else {
            return false;
        };
        for _ in 0..(2 * 366) {
            for span in self.spans_on(date) {
                let (Some(open), Some(close)) = (self.instant(date, span.start), self.instant(date, span.end)) else {
                    continue;
                };
                let begin = open.max(from);
                if close > begin && f(begin, Some(close)) {
                    return true;
                }
            }
            let Some(next) = date.succ_opt() else { return false };
            date = next;
        }
        false
    }
}

/// Periods in which an operator switched a skill off hours by hand (LivePerson's shift
/// scheduler in manual mode): SLA clocks stand still in them, as outside working hours.
/// Sorted; only the last may still run (`until: None`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OffHours {
    pub periods: Vec<OffPeriod>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffPeriod {
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

impl OffHours {
    /// Periods kept: enough for any wait still running (SLAs are at most 366 days).
    const KEEP: Duration = Duration::from_secs(400 * 86_400);
    const MAX_PERIODS: usize = 1000;

    /// Since when the skill is off hours, if it is now.
    pub fn since(&self) -> Option<Timestamp> {
        self.periods.last().filter(|p| p.until.is_none()).map(|p| p.from)
    }

    /// Switches off hours on or off at `now`; false when it already was so. Forgets
    /// periods that ended long ago.
    pub fn switch(&mut self, on: bool, now: Timestamp) -> bool {
        match (on, self.periods.last_mut()) {
            (true, Some(p)) if p.until.is_none() => return false,
            (true, last) => {
                let from = last.and_then(|p| p.until).map_or(now, |u| u.max(now));
                self.periods.push(OffPeriod { from, until: None });
            }
            (false, Some(p)) if p.until.is_none() => p.until = Some(now.max(p.from)),
            (false, _) => return false,
        }
        let horizon = now.minus(Self::KEEP);
        let stale = self.periods.partition_point(|p| p.until.is_some_and(|u| u < horizon));
        let excess = self.periods.len().saturating_sub(Self::MAX_PERIODS);
        self.periods.drain(..stale.max(excess));
        true
    }
}

/// The instant when `d` of open time has passed since `from`: open is inside the working
/// hours (all the time without them) and outside every off-hours period. With `d = 0`,
/// `from` when open, else the next opening. `None` when an off-hours period still runs
/// before `d` is covered (nobody knows yet when the clock starts again).
pub fn add_open_time(from: Timestamp, d: Duration, hours: Option<&WorkingHours>, off: &OffHours) -> Option<Timestamp> {
    let mut remaining = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut due: Option<i64> = None;
    // Takes open time from `[begin, end)` minus the off-hours periods; true when done
    // (`due` set, or an off-hours period that still runs).
    let mut take = |begin: i64, end: Option<i64>| -> bool {
        let mut b = begin;
        let first = off
            .periods
            .partition_point(|p| p.until.is_some_and(|u| u.as_millis() <= b));
        for p in &off.periods[first..] {
            let p_from = p.from.as_millis();
            if end.is_some_and(|e| p_from >= e) {
                break;
            }
            let piece = p_from - b;
            if piece > 0 {
                if remaining <= piece {
                    due = Some(b + remaining);
                    return true;
                }
                remaining -= piece;
            }
            match p.until {
                None => return true,
                Some(u) => b = b.max(u.as_millis()),
            }
            if end.is_some_and(|e| b >= e) {
                return false;
            }
        }
        match end {
            None => {
                due = Some(b.saturating_add(remaining));
                true
            }
            Some(e) if remaining <= e - b => {
                due = Some(b + remaining);
                true
            }
            Some(e) => {
                remaining -= e - b;
                false
            }
        }
    };
    let start = from.as_millis();
    match hours {
        None => {
            take(start, None);
        }
        Some(h) => {
            if !h.each_open(start, &mut take) {
                // No open hours within two years: every hour counts.
                return Some(from.plus(d));
            }
        }
    }
    due.map(Timestamp::from_millis)
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
            time_zone: None,
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

    fn due(anchor: Timestamp, kind: SlaKind, hours: Option<&WorkingHours>) -> Timestamp {
        policy()
            .due(anchor, kind, hours, &OffHours::default())
            .expect("a deadline")
            .due_at
    }

    fn span(start_h: u32, end_h: u32) -> Span {
        Span {
            start: start_h * 3600,
            end: end_h * 3600,
        }
    }

    fn berlin(weekly: [Vec<Span>; 7]) -> WorkingHours {
        WorkingHours {
            time_zone: Some(chrono_tz::Europe::Berlin),
            weekly,
            ..WorkingHours::default()
        }
    }

    #[test]
    fn a_named_zone_follows_daylight_saving_time() {
        let mut h = nine_to_five_weekdays();
        h.time_zone = Some(chrono_tz::Europe::Berlin);
        // Winter (CET, UTC+1): 09:00 in Berlin is 08:00 UTC.
        assert!(!h.is_open(at("2026-11-24T07:59:00Z")));
        assert!(h.is_open(at("2026-11-24T08:00:00Z")));
        assert_eq!(
            due(at("2026-11-24T07:30:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-11-24T09:00:00Z")
        );
        // Summer (CEST, UTC+2): 09:00 in Berlin is 07:00 UTC.
        assert!(h.is_open(at("2026-07-14T07:00:00Z")));
        assert!(!h.is_open(at("2026-07-14T15:00:00Z")));
        assert_eq!(
            due(at("2026-07-14T06:30:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-07-14T08:00:00Z")
        );
        // Across the change (Sunday 29 March 2026): 30 minutes on Friday in CET, the
        // other 30 on Monday from 09:00 CEST.
        assert_eq!(
            due(at("2026-03-27T15:30:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-03-30T07:30:00Z")
        );
        // And back (Sunday 25 October 2026).
        assert_eq!(
            due(at("2026-10-23T14:30:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-10-26T08:30:00Z")
        );
    }

    #[test]
    fn spans_on_the_days_the_clocks_change_last_what_the_wall_clock_shows() {
        let sunday_night = |s: Span| berlin([vec![], vec![], vec![], vec![], vec![], vec![], vec![s]]);
        // 29 March 2026, clocks forward at 02:00: 01:00-03:00 is one hour, from 00:00 UTC.
        let h = sunday_night(span(1, 3));
        let ninety_minutes = Duration::from_secs(5400);
        assert_eq!(
            h.add_working_time(at("2026-03-28T12:00:00Z"), ninety_minutes),
            // 60 minutes that night, the other 30 the next Sunday at 01:00 CEST.
            at("2026-04-04T23:30:00Z")
        );
        // 25 October 2026, clocks back at 03:00: 01:00-03:00 is three hours, from the
        // first 01:00 (23:00 UTC the day before) to 03:00 CET (02:00 UTC).
        let two_and_a_half_hours = Duration::from_secs(9000);
        assert_eq!(
            h.add_working_time(at("2026-10-24T12:00:00Z"), two_and_a_half_hours),
            at("2026-10-25T01:30:00Z")
        );
        assert!(h.is_open(at("2026-10-25T01:59:00Z")));
        assert!(!h.is_open(at("2026-10-25T02:00:00Z")));
        // A span that starts in the skipped hour opens when the clocks jump (03:00 CEST,
        // 01:00 UTC).
        let h = sunday_night(Span {
            start: 2 * 3600 + 1800,
            end: 4 * 3600,
        });
        assert!(!h.is_open(at("2026-03-29T00:59:59Z")));
        assert!(h.is_open(at("2026-03-29T01:00:00Z")));
        assert!(!h.is_open(at("2026-03-29T02:00:00Z")));
    }

    #[test]
    fn overlapping_and_touching_spans_merge() {
        assert_eq!(
            Span::merged(vec![span(13, 14), span(9, 12), span(11, 13), span(16, 17)]),
            vec![span(9, 14), span(16, 17)]
        );
    }

    #[test]
    fn off_hours_by_hand_stops_the_clock_until_switched_back() {
        let policy = policy();
        let mut off = OffHours::default();
        let ten = at("2026-11-24T10:00:00Z");
        let due_at = |off: &OffHours, hours: Option<&WorkingHours>| {
            policy.due(ten, SlaKind::Normal, hours, off).map(|s| s.due_at)
        };
        assert!(off.switch(true, at("2026-11-24T10:20:00Z")));
        assert!(!off.switch(true, at("2026-11-24T10:30:00Z")), "already off");
        assert_eq!(off.since(), Some(at("2026-11-24T10:20:00Z")));
        // 20 minutes ran before the switch; the rest waits for it to go back.
        assert_eq!(due_at(&off, None), None);
        assert!(off.switch(false, at("2026-11-24T12:00:00Z")));
        assert!(!off.switch(false, at("2026-11-24T12:10:00Z")), "already back");
        assert_eq!(off.since(), None);
        assert_eq!(due_at(&off, None), Some(at("2026-11-24T12:40:00Z")));
        // With working hours too: a second period, then the evening closes the day.
        off.switch(true, at("2026-11-24T12:10:00Z"));
        off.switch(false, at("2026-11-24T16:50:00Z"));
        let h = nine_to_five_weekdays();
        // 20 + 10 + 10 minutes on Tuesday, the last 20 on Wednesday morning.
        assert_eq!(due_at(&off, Some(&h)), Some(at("2026-11-25T09:20:00Z")));
        // A wait that starts while off hours is due its whole SLA after the switch back.
        assert_eq!(
            policy
                .due(at("2026-11-24T13:00:00Z"), SlaKind::Urgent, None, &off)
                .map(|s| s.due_at),
            Some(at("2026-11-24T17:00:00Z"))
        );
    }

    #[test]
    fn off_hours_forgets_periods_no_wait_can_reach() {
        let mut off = OffHours::default();
        let day = Duration::from_secs(86_400);
        let start = at("2026-01-01T00:00:00Z");
        for i in 0..500 {
            off.switch(true, start.plus(day * i));
            off.switch(false, start.plus(day * i + Duration::from_secs(3600)));
        }
        // Those that ended within 400 days of the last switch.
        assert_eq!(off.periods.first().map(|p| p.from), Some(start.plus(day * 99)));
        assert!(off
            .periods
            .windows(2)
            .all(|w| w[0].until.is_some_and(|u| u <= w[1].from)));
    }

    #[test]
    fn due_is_anchor_plus_response_time_of_the_kind() {
        let t = at("2026-11-24T10:00:00Z");
        assert_eq!(due(t, SlaKind::Normal, None), at("2026-11-24T11:00:00Z"));
        assert_eq!(due(t, SlaKind::Urgent, None), at("2026-11-24T10:10:00Z"));
        assert_eq!(due(t, SlaKind::FirstTime, None), at("2026-11-24T10:30:00Z"));
        assert_eq!(SlaPolicy::kind_for(true, true), SlaKind::Urgent);
        assert_eq!(SlaPolicy::kind_for(false, true), SlaKind::FirstTime);
    }

    #[test]
    fn off_hours_message_is_due_after_the_next_opening() {
        let h = nine_to_five_weekdays();
        // Tuesday 22:00 → Wednesday 10:00.
        assert_eq!(
            due(at("2026-11-24T22:00:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-11-25T10:00:00Z")
        );
        // Friday 16:30 → 30 min on Friday, 30 min on Monday.
        assert_eq!(
            due(at("2026-11-27T16:30:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-11-30T09:30:00Z")
        );
        // In hours: plain addition.
        assert_eq!(
            due(at("2026-11-24T10:00:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-11-24T11:00:00Z")
        );
    }

    #[test]
    fn special_dates_replace_the_weekly_schedule_and_offset_applies() {
        let mut h = nine_to_five_weekdays();
        let thursday = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        h.special.insert(thursday, vec![]);
        assert_eq!(
            due(at("2026-11-25T16:30:00Z"), SlaKind::Normal, Some(&h)),
            at("2026-11-27T09:30:00Z"),
            "closed Thursday is skipped"
        );

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
