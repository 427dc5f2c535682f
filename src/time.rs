//! Time as the engine sees it.
//!
//! Domain functions take `now: Timestamp` as an argument and never read a clock. Actors
//! read the [`Clock`], which is built on `tokio::time::Instant`: under tokio's paused
//! clock (tests, `switchboard simulate`) a day of conversations passes in milliseconds.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC. Serialized as an RFC 3339 string.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(d)))
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_millis(d)))
    }

    /// Time elapsed from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        Ok(Self(
            DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc).timestamp_millis(),
        ))
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC, milliseconds"))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

/// The engine's clock: a fixed wall-clock origin plus tokio's monotonic time since start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Timestamp,
    started: tokio::time::Instant,
}

impl Clock {
    /// A clock that starts at the current wall-clock time.
    pub fn system() -> Self {
        let now = Utc::now().timestamp_millis();
        Self::starting_at(Timestamp::from_millis(now))
    }

    /// A clock whose `now()` is `origin` at this instant (simulations, tests).
    pub fn starting_at(origin: Timestamp) -> Self {
        Self {
            origin,
            started: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.origin.plus(self.started.elapsed())
    }

    /// The tokio instant at which `now()` reads `at` (`at` in the past maps to the past).
    pub fn instant(&self, at: Timestamp) -> tokio::time::Instant {
        match at.0.checked_sub(self.origin.0) {
            Some(ms) if ms >= 0 => self.started + Duration::from_millis(ms as u64),
            _ => self.started,
        }
    }

    /// How long from now until `at` (zero if `at` has passed).
    pub fn until(&self, at: Timestamp) -> Duration {
        at.since(self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::from_millis(1_790_000_000_123);
        let s = t.to_rfc3339();
        assert_eq!(s, "2026-09-21T14:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&s).ok(), Some(t));
    }

    #[test]
    fn since_saturates_at_zero() {
        let a = Timestamp::from_millis(1000);
        let b = Timestamp::from_millis(4000);
        assert_eq!(b.since(a), Duration::from_secs(3));
        assert_eq!(a.since(b), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_paused_tokio_time() {
        let clock = Clock::starting_at(Timestamp::from_millis(0));
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(90_000));
    }
}
