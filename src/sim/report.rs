//! The simulation report: per skill (service level, waits, SLA breaches, abandonment),
//! per agent group (occupancy, busy weight, capacity held by inactive conversations),
//! the Erlang C prediction when the scenario is an M/M/c queue, and time series for the
//! SVG chart. Rendered as text, JSON and SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::sim::erlang::ErlangC;
use crate::sim::scenario::Scenario;
use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkillReport {
    /// Conversations that arrived in the measured window.
    pub conversations: u64,
    pub assigned: u64,
    pub abandoned: u64,
    /// Still unassigned when the run stopped (counted as missing the target).
    pub unfinished: u64,
    /// Share assigned within `service_level_target_secs`.
    pub service_level: f64,
    /// Share that waited at all.
    pub p_wait: f64,
    /// Mean wait of the assigned conversations.
    pub avg_wait_secs: f64,
    pub p50_wait_secs: f64,
    pub p90_wait_secs: f64,
    pub max_wait_secs: f64,
    pub sla_breaches: u64,
    pub abandonment: f64,
    /// The estimated wait each assigned conversation was shown at open, against the wait
    /// it had (`None` when no estimate was known at any open).
    pub estimated_wait: Option<EstimateCheck>,
}

/// How the queue's estimated wait at open compared with the waits that followed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EstimateCheck {
    /// Assigned conversations that had an estimate at open.
    pub conversations: u64,
    pub mean_estimated_secs: f64,
    pub mean_actual_secs: f64,
    /// Mean of |estimated − actual|.
    pub mean_abs_error_secs: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupReport {
    pub agents: u32,
    /// Time-average of `busy / max_slots` over online agents.
    pub occupancy: f64,
    /// Time-average busy weight of an online agent.
    pub avg_busy_weight: f64,
    /// Share of the busy weight held by inactive conversations.
    pub inactive_share_of_busy: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    pub t_secs: Vec<u64>,
    /// Actionable unassigned conversations per skill.
    pub queue_depth: BTreeMap<String, Vec<u32>>,
    /// Average load (busy / max_slots) of online agents per group.
    pub load: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    pub service_level_target_secs: u64,
    /// Simulated seconds until the last measured conversation was served.
    pub simulated_secs: u64,
    pub conversations: u64,
    pub skills: BTreeMap<String, SkillReport>,
    pub agent_groups: BTreeMap<String, GroupReport>,
    /// The formula's prediction when the scenario is an M/M/c queue.
    pub erlang_c: Option<ErlangC>,
    /// Router calls the engine refused (0 in a consistent run).
    pub engine_errors: u64,
    /// Wall-clock seconds (the only field that differs between identical runs).
    pub wall_secs: f64,
    pub series: Series,
}

#[derive(Debug, Default, Clone)]
struct SkillAcc {
    waits: Vec<f64>,
    /// (estimated at open, actual wait) of assigned conversations with an estimate.
    estimates: Vec<(f64, f64)>,
    abandoned: u64,
    unfinished: u64,
    breaches: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct GroupAcc {
    busy: f64,
    inactive: f64,
    slots: f64,
    agent_samples: u64,
}

/// Accumulates what the simulation observes.
#[derive(Debug)]
pub struct Collector {
    skill_names: Vec<String>,
    skill_of_stream: Vec<usize>,
    group_names: Vec<String>,
    skills: Vec<SkillAcc>,
    groups: Vec<GroupAcc>,
    measure_from: Timestamp,
    measure_to: Timestamp,
    start: Timestamp,
    series: Series,
}

impl Collector {
    pub fn new(sc: &Scenario) -> Self {
        let skill_names: Vec<String> = sc.skills.iter().map(|s| s.id.to_string()).collect();
        let skill_of_stream = sc
            .arrivals
            .iter()
            .map(|a| sc.skills.iter().position(|s| s.id == a.skill).unwrap_or(0))
            .collect();
        let group_names: Vec<String> = sc.groups.iter().map(|g| g.name.clone()).collect();
        Collector {
            skills: vec![SkillAcc::default(); skill_names.len()],
            groups: vec![GroupAcc::default(); group_names.len()],
            series: Series {
                t_secs: Vec::new(),
                queue_depth: skill_names.iter().map(|s| (s.clone(), Vec::new())).collect(),
                load: group_names.iter().map(|g| (g.clone(), Vec::new())).collect(),
            },
            skill_names,
            skill_of_stream,
            group_names,
            measure_from: sc.start.plus(Duration::from_secs(sc.warmup_secs)),
            measure_to: sc.start.plus(Duration::from_secs(sc.duration_secs)),
            start: sc.start,
        }
    }

    pub fn breach(&mut self, stream: usize) {
        self.skills[self.skill_of_stream[stream]].breaches += 1;
    }

    /// A measured conversation: its wait if it was assigned; unassigned ones were
    /// abandoned or still waiting when the run stopped.
    pub fn conversation(&mut self, stream: usize, wait: Option<Duration>, abandoned: bool, estimate: Option<Duration>) {
        let acc = &mut self.skills[self.skill_of_stream[stream]];
        if let (Some(w), Some(e)) = (wait, estimate) {
            acc.estimates.push((e.as_secs_f64(), w.as_secs_f64()));
        }
        match (wait, abandoned) {
            (Some(w), _) => acc.waits.push(w.as_secs_f64()),
            (None, true) => acc.abandoned += 1,
            (None, false) => acc.unfinished += 1,
        }
    }

    /// `per_group`: (busy, inactive weight, slots, online agents) summed over online agents.
    pub fn sample(&mut self, now: Timestamp, per_group: &[(f64, f64, f64, u32)], depth: Vec<u32>) {
        let measured = now >= self.measure_from && now <= self.measure_to;
        self.series.t_secs.push(now.since(self.start).as_secs());
        for (i, &(busy, inactive, slots, n)) in per_group.iter().enumerate() {
            if measured {
                let g = &mut self.groups[i];
                g.busy += busy;
                g.inactive += inactive;
                g.slots += slots;
                g.agent_samples += u64::from(n);
            }
            let load = if slots > 0.0 { busy / slots } else { 0.0 };
            if let Some(v) = self.series.load.get_mut(&self.group_names[i]) {
                v.push(load);
            }
        }
        for (i, d) in depth.into_iter().enumerate() {
            if let Some(v) = self.series.queue_depth.get_mut(&self.skill_names[i]) {
                v.push(d);
            }
        }
    }

    pub fn finish(self, sc: &Scenario, wall: Duration, engine_errors: u64) -> Report {
        let target = sc.service_level_target_secs as f64;
        let mut skills = BTreeMap::new();
        let mut total = 0;
        for (name, acc) in self.skill_names.iter().zip(&self.skills) {
            let mut waits = acc.waits.clone();
            waits.sort_by(f64::total_cmp);
            let assigned = waits.len() as u64;
            let n = assigned + acc.abandoned + acc.unfinished;
            total += n;
            let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
            let pct = |p: f64| -> f64 {
                if waits.is_empty() {
                    0.0
                } else {
                    waits[(((waits.len() - 1) as f64) * p).round() as usize]
                }
            };
            skills.insert(
                name.clone(),
                SkillReport {
                    conversations: n,
                    assigned,
                    abandoned: acc.abandoned,
                    unfinished: acc.unfinished,
                    service_level: share(waits.iter().filter(|w| **w <= target).count()),
                    p_wait: if n == 0 {
                        0.0
                    } else {
                        1.0 - waits.iter().filter(|w| **w <= 0.0).count() as f64 / n as f64
                    },
                    avg_wait_secs: if waits.is_empty() {
                        0.0
                    } else {
                        waits.iter().sum::<f64>() / waits.len() as f64
                    },
                    p50_wait_secs: pct(0.5),
                    p90_wait_secs: pct(0.9),
                    max_wait_secs: waits.last().copied().unwrap_or(0.0),
                    sla_breaches: acc.breaches,
                    abandonment: share(acc.abandoned as usize),
                    estimated_wait: (!acc.estimates.is_empty()).then(|| {
                        let n = acc.estimates.len() as f64;
                        EstimateCheck {
                            conversations: acc.estimates.len() as u64,
                            mean_estimated_secs: acc.estimates.iter().map(|(e, _)| e).sum::<f64>() / n,
                            mean_actual_secs: acc.estimates.iter().map(|(_, w)| w).sum::<f64>() / n,
                            mean_abs_error_secs: acc.estimates.iter().map(|(e, w)| (e - w).abs()).sum::<f64>() / n,
                        }
                    }),
                },
            );
        }
        let mut agent_groups = BTreeMap::new();
        for ((name, acc), g) in self.group_names.iter().zip(&self.groups).zip(&sc.groups) {
            agent_groups.insert(
                name.clone(),
                GroupReport {
                    agents: g.count,
                    occupancy: if acc.slots > 0.0 { acc.busy / acc.slots } else { 0.0 },
                    avg_busy_weight: if acc.agent_samples > 0 {
                        acc.busy / acc.agent_samples as f64
                    } else {
                        0.0
                    },
                    inactive_share_of_busy: if acc.busy > 0.0 { acc.inactive / acc.busy } else { 0.0 },
                },
            );
        }
        Report {
            seed: sc.seed,
            duration_secs: sc.duration_secs,
            warmup_secs: sc.warmup_secs,
            service_level_target_secs: sc.service_level_target_secs,
            simulated_secs: self.series.t_secs.last().copied().unwrap_or(0),
            conversations: total,
            skills,
            agent_groups,
            erlang_c: sc.erlang_c(),
            engine_errors,
            wall_secs: wall.as_secs_f64(),
            series: self.series,
        }
    }
}

/// A chart panel: its title and one named line per skill or group.
type Panel<'a> = (&'a str, Vec<(&'a String, Vec<f64>)>);

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60)
}

impl Report {
    /// The human summary.
    pub fn text(&self, name: &str) -> String {
        let mut s = String::new();
        let speed = self.duration_secs as f64 / self.wall_secs.max(1e-9);
        let _ = writeln!(
            s,
            "switchboard simulate: {name} (seed {}): {} simulated in {:.2} s of wall time ({:.0}x real time)",
            self.seed,
            hms(self.duration_secs),
            self.wall_secs,
            speed
        );
        let _ = writeln!(
            s,
            "{} conversations measured; service level target {} s",
            self.conversations, self.service_level_target_secs
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<14} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>8} {:>8} {:>9} {:>9}",
            "skill", "convs", "assigned", "abandon", "SL", "p_wait", "avg wait", "p50", "p90", "breaches", "unfinished"
        );
        for (name, k) in &self.skills {
            let _ = writeln!(
                s,
                "{:<14} {:>8} {:>8} {:>8} {:>6.1}% {:>6.1}% {:>8.1}s {:>7.1}s {:>7.1}s {:>9} {:>9}",
                name,
                k.conversations,
                k.assigned,
                k.abandoned,
                100.0 * k.service_level,
                100.0 * k.p_wait,
                k.avg_wait_secs,
                k.p50_wait_secs,
                k.p90_wait_secs,
                k.sla_breaches,
                k.unfinished
            );
        }
        if self.skills.values().any(|k| k.estimated_wait.is_some()) {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<14} {:>8} {:>14} {:>12} {:>16}",
                "estimated wait", "convs", "mean estimate", "mean actual", "mean |error|"
            );
            for (name, k) in &self.skills {
                if let Some(e) = &k.estimated_wait {
                    let _ = writeln!(
                        s,
                        "{:<14} {:>8} {:>13.1}s {:>11.1}s {:>15.1}s",
                        name, e.conversations, e.mean_estimated_secs, e.mean_actual_secs, e.mean_abs_error_secs
                    );
                }
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<14} {:>7} {:>10} {:>16} {:>24}",
            "agent group", "agents", "occupancy", "avg busy weight", "inactive share of busy"
        );
        for (name, g) in &self.agent_groups {
            let _ = writeln!(
                s,
                "{:<14} {:>7} {:>9.1}% {:>16.2} {:>23.1}%",
                name,
                g.agents,
                100.0 * g.occupancy,
                g.avg_busy_weight,
                100.0 * g.inactive_share_of_busy
            );
        }
        if let Some(e) = &self.erlang_c {
            let k = self.skills.values().next();
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "M/M/c check (Erlang C, {:.2} Erlangs, occupancy {:.1}%):",
                e.offered_load,
                100.0 * e.occupancy
            );
            if let Some(k) = k {
                let _ = writeln!(
                    s,
                    "  service level  simulated {:>6.2}%   formula {:>6.2}%",
                    100.0 * k.service_level,
                    100.0 * e.service_level
                );
                let _ = writeln!(
                    s,
                    "  p_wait         simulated {:>6.2}%   formula {:>6.2}%",
                    100.0 * k.p_wait,
                    100.0 * e.p_wait
                );
                let _ = writeln!(
                    s,
                    "  avg wait       simulated {:>6.1} s   formula {:>6.1} s",
                    k.avg_wait_secs, e.avg_wait_secs
                );
            }
        }
        if self.engine_errors > 0 {
            let _ = writeln!(
                s,
                "\nwarning: the engine refused {} calls of the simulated world",
                self.engine_errors
            );
        }
        s
    }

    /// An SVG chart: queue depth per skill (top) and agent load per group (bottom).
    pub fn svg(&self) -> String {
        const W: f64 = 960.0;
        const PANEL: f64 = 260.0;
        const LEFT: f64 = 60.0;
        const RIGHT: f64 = 160.0;
        const TOP: f64 = 40.0;
        const GAP: f64 = 70.0;
        let colors = [
            "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
        ];
        let t = &self.series.t_secs;
        let t_max = t.last().copied().unwrap_or(1).max(1) as f64;
        let plot_w = W - LEFT - RIGHT;
        let x = |secs: u64| LEFT + plot_w * secs as f64 / t_max;
        let mut out = String::new();
        let h = TOP + 2.0 * PANEL + GAP + 50.0;
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let panels: [Panel; 2] = [
            (
                "Actionable conversations waiting, per skill",
                self.series
                    .queue_depth
                    .iter()
                    .map(|(k, v)| (k, v.iter().map(|d| f64::from(*d)).collect()))
                    .collect(),
            ),
            (
                "Agent load (busy / max_slots) of online agents, per group",
                self.series.load.iter().map(|(k, v)| (k, v.clone())).collect(),
            ),
        ];
        for (p, (title, lines)) in panels.iter().enumerate() {
            let y0 = TOP + p as f64 * (PANEL + GAP);
            let y_max = lines
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .fold(0.0, f64::max)
                .max(1.0);
            let y = |v: f64| y0 + PANEL - PANEL * v / y_max;
            let _ = writeln!(
                out,
                r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{title}</text>"#,
                y0 - 10.0
            );
            let _ = writeln!(
                out,
                r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
            );
            for i in 0..=4 {
                let v = y_max * f64::from(i) / 4.0;
                let _ = writeln!(
                    out,
                    r##"<line x1="{LEFT}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                    LEFT + plot_w,
                    LEFT - 6.0,
                    y(v) + 4.0,
                    if p == 1 { format!("{v:.2}") } else { format!("{v:.0}") },
                    yy = y(v)
                );
            }
            let hours = (t_max / 3600.0).ceil() as u64;
            let step = (hours / 12).max(1);
            for hr in (0..=hours).step_by(step as usize) {
                let xx = x(hr * 3600);
                if xx <= LEFT + plot_w + 0.5 {
                    let _ = writeln!(
                        out,
                        r#"<text x="{xx}" y="{}" text-anchor="middle">{hr}h</text>"#,
                        y0 + PANEL + 16.0
                    );
                }
            }
            for (i, (name, values)) in lines.iter().enumerate() {
                let color = colors[i % colors.len()];
                let points: String = t
                    .iter()
                    .zip(values)
                    .map(|(tt, v)| format!("{:.1},{:.1} ", x(*tt), y(*v)))
                    .collect();
                let _ = writeln!(
                    out,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>"#
                );
                let ly = y0 + 14.0 + 18.0 * i as f64;
                let _ = writeln!(
                    out,
                    r#"<rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
                    LEFT + plot_w + 12.0,
                    ly - 10.0,
                    LEFT + plot_w + 30.0,
                    ly
                );
            }
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">simulated time</text>"#,
            LEFT + plot_w / 2.0,
            h - 10.0
        );
        out.push_str("</svg>\n");
        out
    }
}
