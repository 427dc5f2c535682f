//! Shared by the benches: medians of repeated runs, printed as `name value unit` lines.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Runs `f` `runs` times; returns the median of what it returns.
pub fn median_of<T: PartialOrd + Copy>(runs: usize, mut f: impl FnMut() -> T) -> T {
    let mut v: Vec<T> = (0..runs).map(|_| f()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Nanoseconds per operation of `ops` operations done by `f`.
pub fn ns_per_op(ops: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / ops as f64
}

pub fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.3} {unit}");
}

pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

/// Resident memory of this process, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
