//! Identifiers: client-chosen strings of 1–128 characters from `[A-Za-z0-9._:-]`, with
//! at most one `~` between two such runs: what follows it is the id's placement key in a
//! cluster (`c-17~general` is placed with skill `general`'s queue;
//! [`crate::cluster::placement`]).
//!
//! Each id is an `Arc<str>` newtype, so the many copies that travel in actor messages
//! cost a reference count, not an allocation. Deserializing validates.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {value:?}: ids are 1-128 characters of [A-Za-z0-9._:-], with at most one `~` (not first or last) before a placement key")]
pub struct InvalidId {
    pub value: String,
}

pub fn is_valid_id(s: &str) -> bool {
    let run = |r: &str| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    };
    s.len() <= 128
        && match s.split_once('~') {
            None => run(s),
            Some((name, key)) => run(name) && run(key),
        }
}

/// [`is_valid_id`] as a regular expression (the OpenAPI document's pattern).
pub const ID_PATTERN: &str = "^[A-Za-z0-9._:-]+(~[A-Za-z0-9._:-]+)?$";

/// An id in the OpenAPI document: the string `is_valid_id` accepts.
fn id_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(128))
        .pattern(Some(ID_PATTERN))
        .into()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(s: impl AsRef<str>) -> Result<Self, InvalidId> {
                let s = s.as_ref();
                if is_valid_id(s) {
                    Ok(Self(Arc::from(s)))
                } else {
                    Err(InvalidId { value: s.chars().take(200).collect() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

id_type!(
    /// A conversation, chosen by the client or generated at open.
    ConversationId
);
id_type!(
    /// A human agent.
    AgentId
);
id_type!(
    /// A group of agents (a team, a BPO vendor): skills may route to groups in order or
    /// by percentage.
    GroupId
);
id_type!(
    /// A skill: one queue, one set of SLA and Smart Capacity settings.
    SkillId
);
id_type!(
    /// The consumer (end customer) behind conversations.
    ConsumerId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_only() {
        assert!(ConversationId::new("c-1.a_b:9").is_ok());
        assert!(ConversationId::new("").is_err());
        assert!(ConversationId::new("a b").is_err());
        assert!(ConversationId::new("é").is_err());
        assert!(ConversationId::new("x".repeat(128)).is_ok());
        assert!(ConversationId::new("x".repeat(129)).is_err());
    }

    #[test]
    fn one_tilde_may_separate_a_placement_key() {
        assert!(ConversationId::new("c-17~general").is_ok());
        for bad in ["~general", "c-17~", "~", "a~b~c", "c 1~g", "c~g/1"] {
            assert!(ConversationId::new(bad).is_err(), "{bad}");
        }
        assert!(ConversationId::new(format!("{}~g", "x".repeat(126))).is_ok());
        assert!(ConversationId::new(format!("{}~g", "x".repeat(127))).is_err());
    }

    #[test]
    fn deserializing_validates() {
        let ok: Result<AgentId, _> = serde_json::from_str("\"a1\"");
        assert!(ok.is_ok());
        let bad: Result<AgentId, _> = serde_json::from_str("\"a/1\"");
        assert!(bad.is_err());
    }
}
