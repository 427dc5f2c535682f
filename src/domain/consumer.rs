//! What the router remembers of a consumer between conversations: whether they wrote
//! before (the first-time SLA) and the agent who served them last (return to the same
//! agent while that assignment is recent).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::AgentId;
use crate::time::Timestamp;

/// The last agent who served a consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    #[serde(default)]
    pub last_agent: Option<(AgentId, Timestamp)>,
}

impl ConsumerRecord {
    /// The agent a new conversation of this consumer prefers: the last one, if that
    /// assignment is within `sticky_window` of `now`.
    pub fn preferred_agent(&self, now: Timestamp, sticky_window: Duration) -> Option<AgentId> {
        self.last_agent
            .as_ref()
            .filter(|(_, at)| now.since(*at) <= sticky_window)
            .map(|(agent, _)| agent.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_agent_is_preferred_within_the_sticky_window_only() {
        let a = AgentId::new("a1").expect("id");
        let at = Timestamp::from_millis(0);
        let r = ConsumerRecord {
            last_agent: Some((a.clone(), at)),
        };
        let window = Duration::from_secs(60);
        assert_eq!(r.preferred_agent(at.plus(window), window), Some(a));
        assert_eq!(
            r.preferred_agent(at.plus(window).plus(Duration::from_millis(1)), window),
            None
        );
        assert_eq!(ConsumerRecord::default().preferred_agent(at, window), None);
    }
}
