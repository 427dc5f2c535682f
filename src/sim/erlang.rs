//! The Erlang C formula for an M/M/c queue: Poisson arrivals at rate `λ`, exponential
//! service at rate `μ` per server, `c` servers, infinite patience.

/// Predictions for one M/M/c queue.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ErlangC {
    /// Offered load `a = λ/μ`, in Erlangs.
    pub offered_load: f64,
    /// `ρ = a / c`.
    pub occupancy: f64,
    /// Probability that an arrival waits at all.
    pub p_wait: f64,
    pub avg_wait_secs: f64,
    /// Probability that the wait is at most the target.
    pub service_level: f64,
}

/// `arrivals_per_sec = λ`, `mean_service_secs = 1/μ`, `servers = c`, `target_secs = t`.
/// `None` when the queue is unstable (`a >= c`).
pub fn erlang_c(arrivals_per_sec: f64, mean_service_secs: f64, servers: u32, target_secs: f64) -> Option<ErlangC> {
    let c = f64::from(servers);
    let a = arrivals_per_sec * mean_service_secs;
    if servers == 0 || a >= c || a <= 0.0 {
        return None;
    }
    // Σ_{k<c} a^k/k! and a^c/c!, summed iteratively for stability.
    let mut term = 1.0;
    let mut sum = 0.0;
    for k in 0..servers {
        sum += term;
        term *= a / f64::from(k + 1);
    }
    let top = term * c / (c - a);
    let p_wait = top / (sum + top);
    let mu = 1.0 / mean_service_secs;
    let drain = c * mu - arrivals_per_sec;
    Some(ErlangC {
        offered_load: a,
        occupancy: a / c,
        p_wait,
        avg_wait_secs: p_wait / drain,
        service_level: 1.0 - p_wait * (-drain * target_secs).exp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_example() {
        // 100 calls/hour of 3 minutes on 6 agents: a = 5 Erlangs; C(6,5) ≈ 0.5875.
        let e = erlang_c(100.0 / 3600.0, 180.0, 6, 20.0).expect("stable");
        assert!((e.p_wait - 0.5875).abs() < 1e-3, "{e:?}");
        assert!((e.avg_wait_secs - 105.75).abs() < 0.5, "{e:?}");
        assert!((e.service_level - 0.4743).abs() < 1e-3, "{e:?}");
    }

    #[test]
    fn single_server_is_m_m_1() {
        let e = erlang_c(0.8, 1.0, 1, 0.0).expect("stable");
        assert!((e.p_wait - 0.8).abs() < 1e-12);
        assert!((e.avg_wait_secs - 4.0).abs() < 1e-9);
        assert!(erlang_c(1.0, 1.0, 1, 0.0).is_none());
    }
}
