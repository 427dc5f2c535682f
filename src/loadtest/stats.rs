//! What `switchboard loadtest` measures, and its summary (text and JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::loadtest::Options;

#[derive(Debug, Default)]
pub struct Recorder {
    latencies: Mutex<BTreeMap<&'static str, Vec<u32>>>,
    assignments: Mutex<Vec<u32>>,
    errors: Mutex<BTreeMap<String, u64>>,
    retries: std::sync::atomic::AtomicU64,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

impl Recorder {
    pub fn latency(&self, endpoint: &'static str, d: Duration) {
        if let Ok(mut m) = self.latencies.lock() {
            m.entry(endpoint).or_default().push(micros(d));
        }
    }

    pub fn assignment(&self, d: Duration) {
        if let Ok(mut v) = self.assignments.lock() {
            v.push(micros(d));
        }
    }

    /// A request sent again to the next node (the previous one refused to connect or
    /// answered 503).
    pub fn retried(&self) {
        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn error(&self, kind: String) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }

    pub fn summary(
        &self,
        opts: &Options,
        opened: u64,
        sent_for: Duration,
        unfinished: u64,
        states: BTreeMap<String, u64>,
        sla: (u64, u64),
    ) -> Summary {
        let latencies = self.latencies.lock().map(|m| m.clone()).unwrap_or_default();
        let mut endpoints = BTreeMap::new();
        let mut all: Vec<u32> = Vec::new();
        for (name, mut v) in latencies {
            if name == "setup" {
                continue;
            }
            all.extend_from_slice(&v);
            endpoints.insert(name.to_string(), Percentiles::of(&mut v));
        }
        let mut assign = self.assignments.lock().map(|v| v.clone()).unwrap_or_default();
        let errors = self.errors.lock().map(|m| m.clone()).unwrap_or_default();
        let http = Percentiles::of(&mut all);
        let assignment = Percentiles::of(&mut assign);
        Summary {
            target_rate: opts.rate,
            achieved_rate: opened as f64 / sent_for.as_secs_f64().max(1e-9),
            duration_secs: sent_for.as_secs_f64(),
            agents: opts.agents,
            skills: opts.skills,
            opened,
            errors_total: errors.values().sum(),
            retries: self.retries.load(std::sync::atomic::Ordering::Relaxed),
            errors,
            lost: states.get("lost").copied().unwrap_or(0),
            states,
            unfinished_lifecycles: unfinished,
            assign_p50_ms: assignment.p50_ms,
            assign_p99_ms: assignment.p99_ms,
            assignment,
            http_p50_ms: http.p50_ms,
            http_p99_ms: http.p99_ms,
            http_max_ms: http.max_ms,
            endpoints,
            sla_attainment: if sla.1 == 0 { 1.0 } else { sla.0 as f64 / sla.1 as f64 },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(v: &mut [u32]) -> Self {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let at = |p: f64| f64::from(v[(((v.len() - 1) as f64) * p).round() as usize]) / 1000.0;
        Percentiles {
            count: v.len(),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target_rate: f64,
    /// Conversations opened per second of the arrival phase.
    pub achieved_rate: f64,
    pub duration_secs: f64,
    pub agents: usize,
    pub skills: usize,
    pub opened: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    /// Requests sent again to another node after a refused connection or a 503.
    pub retries: u64,
    /// Conversations opened that the server no longer knows.
    pub lost: u64,
    /// Every conversation opened, by the state the server reports at the end.
    pub states: BTreeMap<String, u64>,
    pub unfinished_lifecycles: u64,
    /// Open (due time) → `assigned` event on the agent's stream.
    pub assign_p50_ms: f64,
    pub assign_p99_ms: f64,
    pub assignment: Percentiles,
    /// All requests of the run, from their due time.
    pub http_p50_ms: f64,
    pub http_p99_ms: f64,
    pub http_max_ms: f64,
    pub endpoints: BTreeMap<String, Percentiles>,
    /// Share of conversations whose first agent answer came before its SLA due time.
    pub sla_attainment: f64,
}

impl Summary {
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "switchboard loadtest: {:.1}/s target, {:.1}/s achieved over {:.1} s ({} agents, {} skills)",
            self.target_rate, self.achieved_rate, self.duration_secs, self.agents, self.skills
        );
        let _ = writeln!(
            s,
            "conversations opened {}   errors {}   lost {}   retried on another node {}",
            self.opened, self.errors_total, self.lost, self.retries
        );
        for (k, n) in &self.errors {
            let _ = writeln!(s, "  error {k}: {n}");
        }
        let states: Vec<String> = self.states.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "reconciliation: {} (unfinished lifecycles {})",
            states.join(", "),
            self.unfinished_lifecycles
        );
        let _ = writeln!(
            s,
            "open -> assigned   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            self.assignment.p50_ms, self.assignment.p99_ms, self.assignment.max_ms
        );
        let _ = writeln!(
            s,
            "SLA attainment (first answer before due) {:.2}%",
            100.0 * self.sla_attainment
        );
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "endpoint (from due time)", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (name, p) in &self.endpoints {
            let _ = writeln!(
                s,
                "{:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            );
        }
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>9.2} {:>9} {:>9.2} {:>9.2}",
            "all requests", "", self.http_p50_ms, "", self.http_p99_ms, self.http_max_ms
        );
        s
    }
}
