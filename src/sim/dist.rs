//! Distributions of the scenario: fixed, exponential and lognormal, given by their mean.
//! Sampling is by inversion from a seeded generator, so a scenario and a seed give the
//! same draws on every machine.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// `{ distribution = "exponential", mean_secs = 300 }`; lognormal also takes `sigma`
/// (the standard deviation of the underlying normal, default 1.0).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistSpec {
    pub distribution: Kind,
    /// The mean (seconds for durations; `mean` is accepted for counts).
    #[serde(alias = "mean")]
    pub mean_secs: f64,
    #[serde(default)]
    pub sigma: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Fixed,
    Exponential,
    Lognormal,
}

/// A validated distribution of non-negative values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    Fixed(f64),
    Exponential {
        mean: f64,
    },
    /// `exp(N(mu, sigma²))` with `mu` chosen so that the mean is as asked.
    Lognormal {
        mu: f64,
        sigma: f64,
    },
}

impl DistSpec {
    pub fn validate(&self, field: &str) -> Result<Dist, String> {
        if !(self.mean_secs.is_finite() && self.mean_secs >= 0.0) {
            return Err(format!("{field}.mean_secs: must be a finite number >= 0"));
        }
        match self.distribution {
            Kind::Fixed => Ok(Dist::Fixed(self.mean_secs)),
            Kind::Exponential => Ok(Dist::Exponential { mean: self.mean_secs }),
            Kind::Lognormal => {
                let sigma = self.sigma.unwrap_or(1.0);
                if !(sigma.is_finite() && sigma > 0.0 && sigma < 5.0) {
                    return Err(format!("{field}.sigma: must be between 0 and 5"));
                }
                if self.mean_secs <= 0.0 {
                    return Err(format!("{field}.mean_secs: a lognormal mean must be > 0"));
                }
                Ok(Dist::Lognormal {
                    mu: self.mean_secs.ln() - sigma * sigma / 2.0,
                    sigma,
                })
            }
        }
    }
}

impl Dist {
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Exponential { mean } => mean,
            Dist::Lognormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
        }
    }

    /// One draw, in seconds.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Exponential { mean } => -mean * (1.0 - rng.gen::<f64>()).ln(),
            Dist::Lognormal { mu, sigma } => (mu + sigma * standard_normal(rng)).exp(),
        }
    }

    pub fn sample_duration(&self, rng: &mut impl Rng) -> Duration {
        Duration::from_secs_f64(self.sample(rng).clamp(0.0, 1e9))
    }
}

/// Box–Muller.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn mean_of(d: Dist) -> f64 {
        let mut rng = SmallRng::seed_from_u64(7);
        (0..200_000).map(|_| d.sample(&mut rng)).sum::<f64>() / 200_000.0
    }

    #[test]
    fn sample_means_match() {
        for spec in [
            DistSpec {
                distribution: Kind::Fixed,
                mean_secs: 30.0,
                sigma: None,
            },
            DistSpec {
                distribution: Kind::Exponential,
                mean_secs: 300.0,
                sigma: None,
            },
            DistSpec {
                distribution: Kind::Lognormal,
                mean_secs: 300.0,
                sigma: Some(1.0),
            },
        ] {
            let d = spec.validate("x").expect("valid");
            let m = mean_of(d);
            assert!(
                (m - 300.0_f64.min(spec.mean_secs)).abs() / spec.mean_secs < 0.02,
                "{spec:?}: {m}"
            );
        }
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let e = DistSpec {
            distribution: Kind::Lognormal,
            mean_secs: 10.0,
            sigma: Some(-1.0),
        }
        .validate("handling");
        assert_eq!(e, Err("handling.sigma: must be between 0 and 5".to_string()));
    }
}
