//! The durable record of the router's state, the way Redis keeps an in-memory store
//! durable: memory stays the working copy, the store is the record.
//!
//! One schema, a row per entity with its latest state (not a log), in two backends
//! behind [`Backend`]: SQLite in WAL mode, embedded, the default ([`sqlite`]), and
//! PostgreSQL for clusters ([`postgres`]). An operator reads it with `sqlite3` or `psql`:
//! every table has the entity's id, a few columns worth filtering on, and its whole
//! record as JSON.
//!
//! Writes go through one writer thread per node ([`Store`]): actors hand it the new
//! state of what they changed and get a sequence number; the writer drains everything
//! queued, keeps the latest state per entity, and commits the group in one
//! transaction while the next group gathers (group commit). With
//! [`Durability::Commit`] an actor waits for its number to be committed before it
//! answers or tells anyone ([`Store::committed`]); with [`Durability::Relaxed`] it goes
//! on at once and the writer commits within milliseconds, as Redis' `everysec`.
//! With SQLite and commit durability, a group commit is a record appended to a change
//! log and synced, and the tables follow a fraction of a second behind ([`log`]).
//!
//! Why these crates: the writer is one thread running one transaction at a time, so
//! synchronous clients fit it exactly. `rusqlite` is the reference SQLite binding and
//! builds SQLite in (`bundled`: no system library to match); `postgres` is the
//! synchronous face of `tokio-postgres`, from the same maintainers. `sqlx` would bring
//! a connection pool and an async driver that this single writer does not use (its
//! SQLite driver runs a worker thread of its own anyway).

pub mod log;
pub mod postgres;
pub mod sqlite;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::keeper::Ownership;
use crate::cluster::lease::{Fenced, Lease};
use crate::cluster::placement::shard_of;
use crate::domain::agent::Agent;
use crate::domain::consumer::ConsumerRecord;
use crate::domain::conversation::Conversation;
use crate::domain::skill::Skill;
use crate::events::RouterEvent;
use crate::ids::{AgentId, ConsumerId, ConversationId, SkillId};

/// When a write counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A write is committed before the engine answers or tells anyone about it.
    #[default]
    Commit,
    /// The engine answers first; the writer commits within milliseconds. A crash can
    /// lose the last few milliseconds of acknowledged writes (as Redis' `everysec`).
    Relaxed,
}

/// The `[store]` section, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://…`; `None` runs in memory only.
    pub url: Option<String>,
    pub durability: Durability,
    /// Most changes committed in one transaction.
    pub max_batch: usize,
    /// With relaxed durability, how long the writer lets a group gather after its
    /// first change before it commits (unless the group is full). A few milliseconds of
    /// gathering merge the states of one conversation (open, assigned, answered, closed
    /// often fall within them) into one row and spread a commit's fixed cost over more
    /// rows. With commit durability every change has a waiter, so the writer commits
    /// at once, and a group is what gathered during the previous commit.
    pub gather: Duration,
    /// The platform stream's events kept in the store, per node (the newest; `0` keeps
    /// none): how far back `Last-Event-ID` reaches across a restart.
    pub events_kept: u64,
    /// With SQLite and commit durability, commit groups to a change log and bring the
    /// tables up to date from it in the background ([`log`]); off, each group is
    /// committed to the tables.
    pub change_log: bool,
    /// How long the change log's groups wait to be applied to the tables (their
    /// latest row per entity in one transaction).
    pub apply_every: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            durability: Durability::Commit,
            max_batch: 1024,
            gather: Duration::from_millis(2),
            events_kept: 100_000,
            change_log: true,
            apply_every: Duration::from_millis(250),
        }
    }
}

/// A change to the record: the latest state of one entity, or its removal.
#[derive(Clone, Debug)]
pub enum Change {
    Skill(Arc<Skill>),
    /// Held conversations and offers are not stored: at recovery the first come from
    /// the conversations' own records and the second are void.
    Agent(Box<Agent>),
    Conversation(Box<Conversation>),
    Consumer(ConsumerId, ConsumerRecord),
    ForgetConversation(ConversationId),
    ForgetConsumer(ConsumerId),
    /// An event of the platform stream (`GET /v1/events`), appended under the node's
    /// name with its id: events are a log, never coalesced.
    Event {
        node: Arc<str>,
        id: u64,
        event: Box<RouterEvent>,
    },
    /// Deletes the node's events but the newest `keep` (the log's bounded window);
    /// issued after the event `after`.
    TrimEvents {
        node: Arc<str>,
        keep: u64,
        after: u64,
    },
}

/// The table a change goes to, and the row's id: the writer keeps the latest change
/// per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Skill(SkillId),
    Agent(AgentId),
    Conversation(ConversationId),
    Consumer(ConsumerId),
    /// Each event and each trim is a key of its own: kept, in order, never merged.
    Event(u64),
    TrimEvents(u64),
}

impl Change {
    pub fn key(&self) -> Key {
        match self {
            Change::Skill(s) => Key::Skill(s.id.clone()),
            Change::Agent(a) => Key::Agent(a.id.clone()),
            Change::Conversation(c) => Key::Conversation(c.id.clone()),
            Change::Consumer(id, _) | Change::ForgetConsumer(id) => Key::Consumer(id.clone()),
            Change::ForgetConversation(id) => Key::Conversation(id.clone()),
            Change::Event { id, .. } => Key::Event(*id),
            Change::TrimEvents { after, .. } => Key::TrimEvents(*after),
        }
    }
}

impl Key {
    /// The shard the row belongs to (in a cluster, only the holder of its lease may
    /// write it).
    pub fn shard(&self) -> u16 {
        shard_of(match self {
            Key::Skill(id) => id.as_str(),
            Key::Agent(id) => id.as_str(),
            Key::Conversation(id) => id.as_str(),
            Key::Consumer(id) => id.as_str(),
            // Not an entity's row: no shard of its own (and never fenced).
            Key::Event(_) | Key::TrimEvents(_) => "",
        })
    }

    /// Whether a cluster node's writes of this row are fenced by its shard's lease.
    /// Skills are the same on every node (each writes the same record), and a
    /// consumer's record (first-time, last agent) is advisory and written by the node of
    /// whichever conversation the consumer last had: last write wins for both.
    pub fn fenced(&self) -> bool {
        matches!(self, Key::Agent(_) | Key::Conversation(_))
    }

    /// The shard the writer fences this row by, or [`UNFENCED`].
    fn fence_shard(&self) -> u16 {
        if self.fenced() {
            self.shard()
        } else {
            UNFENCED
        }
    }
}

/// The fence shard of a row no lease guards ([`Key::fenced`]), and of every row of a
/// store without fencing.
pub const UNFENCED: u16 = u16::MAX;

/// A row as the backends write it (and as the change log holds it, [`log`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Row {
    Skill {
        id: String,
        record: String,
    },
    Agent {
        id: String,
        status: Cow<'static, str>,
        record: String,
    },
    Conversation {
        id: String,
        skill: String,
        state: Cow<'static, str>,
        agent_id: Option<String>,
        consumer_id: String,
        record: String,
    },
    Consumer {
        id: String,
        record: String,
    },
    DeleteConversation(String),
    DeleteConsumer(String),
    Event {
        node: Arc<str>,
        id: i64,
        skill: Option<String>,
        kind: Cow<'static, str>,
        record: String,
    },
    TrimEvents {
        node: Arc<str>,
        trim: Trim,
    },
    /// The change log's groups through this one are in the tables
    /// (`switchboard_meta.change_log_applied`, [`log`]).
    LogApplied(u64),
}

/// How a trim of the event log finds what it deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trim {
    /// Everything but the newest this many, searched for ([`TRIM_EVENTS`]): early in
    /// an era, when older eras' events are among the newest.
    Keep(i64),
    /// Everything up to this id ([`TRIM_EVENTS_THROUGH`]): the trim's event and the
    /// window before it are all of one era, whose ids have no gaps.
    Through(i64),
}

impl Trim {
    /// The window of `keep` events that ends at event `after`.
    fn after(after: u64, keep: u64) -> Trim {
        if event_seq(after) > keep {
            Trim::Through(event_id_column(after - keep))
        } else {
            Trim::Keep(event_id_column(keep))
        }
    }

    /// The statement and its `$2` (`$1` is the node).
    pub fn statement(self) -> (&'static str, i64) {
        match self {
            Trim::Keep(keep) => (TRIM_EVENTS, keep),
            Trim::Through(last) => (TRIM_EVENTS_THROUGH, last),
        }
    }
}

impl Row {
    /// The row's id.
    pub fn id(&self) -> &str {
        match self {
            Row::Skill { id, .. }
            | Row::Agent { id, .. }
            | Row::Conversation { id, .. }
            | Row::Consumer { id, .. }
            | Row::DeleteConversation(id)
            | Row::DeleteConsumer(id) => id,
            Row::Event { node, .. } | Row::TrimEvents { node, .. } => node,
            Row::LogApplied(_) => "",
        }
    }

    /// The table and id of the entity the row holds the latest state of (a later row
    /// of the same replaces it); `None` for what is never merged (events, trims).
    pub fn entity(&self) -> Option<(u8, String)> {
        match self {
            Row::Skill { id, .. } => Some((0, id.clone())),
            Row::Agent { id, .. } => Some((1, id.clone())),
            Row::Conversation { id, .. } | Row::DeleteConversation(id) => Some((2, id.clone())),
            Row::Consumer { id, .. } | Row::DeleteConsumer(id) => Some((3, id.clone())),
            Row::Event { .. } | Row::TrimEvents { .. } | Row::LogApplied(_) => None,
        }
    }

    /// The row's shard, as stored in its `shard` column (the same as its key's).
    pub fn shard(&self) -> i32 {
        i32::from(shard_of(self.id()))
    }

    pub fn encode(change: Change) -> Result<Row, serde_json::Error> {
        Ok(match change {
            Change::Skill(s) => Row::Skill {
                id: s.id.to_string(),
                record: serde_json::to_string(&*s)?,
            },
            Change::Agent(mut a) => {
                a.conversations.clear();
                a.reservations.clear();
                Row::Agent {
                    id: a.id.to_string(),
                    status: Cow::Borrowed(a.status.as_str()),
                    record: serde_json::to_string(&a)?,
                }
            }
            Change::Conversation(c) => Row::Conversation {
                id: c.id.to_string(),
                skill: c.skill.to_string(),
                state: Cow::Borrowed(c.state.as_str()),
                agent_id: c.agent_id.as_ref().map(|a| a.to_string()),
                consumer_id: c.consumer_id.to_string(),
                record: serde_json::to_string(&c)?,
            },
            Change::Consumer(id, r) => Row::Consumer {
                id: id.to_string(),
                record: serde_json::to_string(&r)?,
            },
            Change::ForgetConversation(id) => Row::DeleteConversation(id.to_string()),
            Change::ForgetConsumer(id) => Row::DeleteConsumer(id.to_string()),
            Change::Event { node, id, event } => Row::Event {
                node,
                id: event_id_column(id),
                skill: event.skill.as_ref().map(|s| s.to_string()),
                kind: Cow::Borrowed(event.kind.name()),
                record: serde_json::to_string(&event)?,
            },
            Change::TrimEvents { node, keep, after } => Row::TrimEvents {
                node,
                trim: Trim::after(after, keep),
            },
        })
    }
}

/// An event id as the `BIGINT` column holds it (ids stay far below `i64::MAX`: see
/// [`event_era_base`]).
fn event_id_column(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Bits of an event id that count events within one era: a node's ids are
/// `era << EVENT_SEQ_BITS | n`, `n` from 1, and each start of a node with a store is a
/// new era. Ids thus only grow, across restarts and crashes alike (events given an id
/// but not committed before a crash are never reused for others), and stay below 2^53,
/// exact as JSON numbers, for 8 191 starts.
pub const EVENT_SEQ_BITS: u32 = 40;

/// The first id of an era, less one: the node's next event is `base + 1`.
pub fn event_era_base(era: u64) -> u64 {
    era << EVENT_SEQ_BITS
}

/// Whether the event `id` follows `after` with nothing between: the next id of the
/// same era; the first id of a later era when `after` is known to be the last event of
/// its era (`anchored`: the store holds `after` and nothing of its era after it); and
/// from the very beginning (`after` 0), a node's first id (1 without a store, era 1's
/// first with one).
pub fn event_follows(after: u64, id: u64, anchored: bool) -> bool {
    let era = |id: u64| id >> EVENT_SEQ_BITS;
    id == after + 1 || (event_seq(id) == 1 && era(id) > era(after) && (anchored || (after == 0 && era(id) == 1)))
}

/// An event id's count within its era ([`EVENT_SEQ_BITS`]).
fn event_seq(id: u64) -> u64 {
    id & ((1 << EVENT_SEQ_BITS) - 1)
}

/// A stored event as the platform stream replays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: u64,
    pub skill: Option<String>,
    pub kind: String,
    pub record: String,
}

/// Everything the store holds, read at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub skills: Vec<Skill>,
    pub agents: Vec<Agent>,
    pub conversations: Vec<Conversation>,
    pub consumers: Vec<(ConsumerId, ConsumerRecord)>,
    /// A cluster node taking shards: the conversations of other shards assigned to the
    /// agents taken (what those agents hold on other nodes).
    pub held_elsewhere: Vec<Conversation>,
}

/// Decodes one stored record; the error names the table and the row.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(table: &str, id: &str, json: &str) -> anyhow::Result<T> {
    serde_json::from_str(json).map_err(|e| anyhow::anyhow!("row {id:?} of table {table} is not a valid record: {e}"))
}

/// Decodes the `(id, record)` rows a backend reads, on every core while the backend
/// reads on: at start-up the JSON decoding of a million conversations costs about
/// twice the reading. Keeps the rows' order; the first bad row (in that order) is the
/// error.
pub(crate) fn decode_rows<T: Send>(
    rows: impl Iterator<Item = anyhow::Result<(String, String)>>,
    decode: impl Fn(&str, &str) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    const CHUNK: usize = 2048;
    let decoders = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    type Decoded<T> = Vec<(usize, anyhow::Result<Vec<T>>)>;
    let (tx, rx) = mpsc::sync_channel::<(usize, Vec<(String, String)>)>(decoders * 2);
    let rx = Mutex::new(rx);
    let (rx, decode) = (&rx, &decode);
    std::thread::scope(|scope| {
        let workers = (0..decoders)
            .map(|_| {
                std::thread::Builder::new()
                    .name("switchboard-decode".into())
                    .spawn_scoped(scope, move || -> Decoded<T> {
                        let mut out = Vec::new();
                        let mut failed = false;
                        loop {
                            let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            let Ok((index, chunk)) = next else { return out };
                            // After a bad chunk, a decoder keeps receiving (and decodes
                            // nothing more): the reader is never left blocked on a full
                            // channel.
                            if failed {
                                continue;
                            }
                            let decoded: anyhow::Result<Vec<T>> =
                                chunk.iter().map(|(id, record)| decode(id, record)).collect();
                            failed = decoded.is_err();
                            out.push((index, decoded));
                        }
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .context("starting the store's decoding threads")?;
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut chunks = 0;
        let mut read = Ok(());
        for row in rows {
            match row {
                Ok(row) => chunk.push(row),
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                // Receivers outlive this loop: send fails only if every decoder is gone.
                if tx.send((chunks, full)).is_err() {
                    break;
                }
                chunks += 1;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send((chunks, chunk));
        }
        drop(tx);
        let mut parts = Vec::new();
        for worker in workers {
            parts.extend(
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a decoding thread panicked"))?,
            );
        }
        read?;
        parts.sort_by_key(|(index, _)| *index);
        let mut all = Vec::new();
        for (_, part) in parts {
            let part = part?;
            if all.is_empty() {
                all.reserve_exact(part.len() * (chunks + 1));
            }
            all.extend(part);
        }
        Ok(all)
    })
}

/// A store's backend: one schema, two databases.
pub trait Backend: Send {
    /// Reads every row.
    fn load(&mut self) -> anyhow::Result<Snapshot>;
    /// Reads the rows of these shards (a cluster node taking them over), and every
    /// skill.
    fn load_shards(&mut self, shards: &[u16]) -> anyhow::Result<Snapshot>;
    /// The assigned conversations of shards other than `shards` whose agent is one of
    /// `agents` (a cluster node taking agents over: what they hold on other nodes).
    fn load_held(&mut self, agents: &[String], shards: &[u16]) -> anyhow::Result<Vec<Conversation>> {
        let _ = (agents, shards);
        Ok(Vec::new())
    }
    /// One consumer's stored record (JSON), if any: a cluster node opening a
    /// conversation reads the consumer's latest record, which the node of their last
    /// conversation wrote. `None` where nothing else can have written (one node).
    fn load_consumer(&mut self, id: &str) -> anyhow::Result<Option<String>> {
        let _ = id;
        Ok(None)
    }
    /// The stored state and agent of each of these conversations (absent: deleted).
    fn load_states(&mut self, ids: &[String]) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
        let _ = ids;
        Ok(Vec::new())
    }
    /// Starts the node's next event era ([`NEXT_EVENT_ERA`]) and returns it.
    fn next_event_era(&mut self, node: &str) -> anyhow::Result<u64>;
    /// The node's stored events with ids in `after+1..=through`, oldest first, at most
    /// `limit`.
    fn load_events(&mut self, node: &str, after: u64, through: u64, limit: usize) -> anyhow::Result<Vec<StoredEvent>>;
    /// Writes the rows in one transaction: all or nothing.
    fn commit(&mut self, rows: &[Row]) -> anyhow::Result<()>;
    /// Writes the rows in one transaction if, inside it, `node` still holds every one
    /// of `leases` ([`crate::cluster::lease::fence`]); otherwise writes nothing and says
    /// which shards it lost. Only a store shared by a cluster (PostgreSQL) can fence.
    fn commit_fenced(&mut self, rows: &[Row], node: &str, leases: &[Lease]) -> anyhow::Result<Result<(), Fenced>> {
        let _ = (rows, node, leases);
        anyhow::bail!("this store cannot fence writes (a cluster needs the PostgreSQL store)")
    }
}

/// The schema, the same for both backends (plain `TEXT` columns, `$n` parameters,
/// `ON CONFLICT` upserts: SQL that SQLite and PostgreSQL both read). Every entity's row
/// carries its shard ([`Key::shard`], from its id), so a cluster node that takes a
/// shard reads that shard's rows only ([`Backend::load_shards`]).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS switchboard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS skills (id TEXT PRIMARY KEY, record TEXT NOT NULL, shard INTEGER)",
    "CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, status TEXT NOT NULL, record TEXT NOT NULL, \
     shard INTEGER)",
    "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, skill TEXT NOT NULL, state TEXT NOT NULL, \
     agent_id TEXT, consumer_id TEXT NOT NULL, record TEXT NOT NULL, shard INTEGER)",
    "CREATE TABLE IF NOT EXISTS consumers (id TEXT PRIMARY KEY, record TEXT NOT NULL, shard INTEGER)",
    // The platform stream's log: appended, trimmed to a window, never updated. Added to
    // version 2 as it stands (a table more: a build that does not know it ignores it).
    "CREATE TABLE IF NOT EXISTS events (node TEXT NOT NULL, id BIGINT NOT NULL, skill TEXT, type TEXT NOT NULL, \
     record TEXT NOT NULL, PRIMARY KEY (node, id))",
];

/// The tables of entities: each has `id`, `record` and `shard`.
pub const ENTITY_TABLES: [&str; 4] = ["skills", "agents", "conversations", "consumers"];

/// The version of [`SCHEMA`], kept in `switchboard_meta`; a store written by a newer
/// version stops start-up instead of being misread. Version 1 (before the `shard`
/// columns) is migrated at open: the column is added and filled from the ids.
pub const SCHEMA_VERSION: &str = "2";

/// What version 1 lacks: run once per entity table, then its rows' shards are filled.
pub fn add_shard_column(table: &str) -> String {
    format!("ALTER TABLE {table} ADD COLUMN shard INTEGER")
}

pub const UPSERT_SKILL: &str = "INSERT INTO skills (id, record, shard) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET record = excluded.record, shard = excluded.shard";
pub const UPSERT_AGENT: &str = "INSERT INTO agents (id, status, record, shard) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, record = excluded.record, shard = excluded.shard";
pub const UPSERT_CONVERSATION: &str =
    "INSERT INTO conversations (id, skill, state, agent_id, consumer_id, record, shard) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (id) DO UPDATE SET skill = excluded.skill, state = excluded.state, agent_id = excluded.agent_id, \
     consumer_id = excluded.consumer_id, record = excluded.record, shard = excluded.shard";
/// Counts the node's starts (its event era, [`EVENT_SEQ_BITS`]) in `switchboard_meta`
/// under `event_era:NODE`, returning the new count.
pub const NEXT_EVENT_ERA: &str = "INSERT INTO switchboard_meta (key, value) VALUES ($1, '1') \
     ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(switchboard_meta.value AS BIGINT) + 1 AS TEXT) \
     RETURNING value";

/// The node's events after `$2` up to `$3`, oldest first, at most `$4`.
pub const SELECT_EVENTS: &str = "SELECT id, skill, type, record FROM events \
     WHERE node = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT $4";

/// Keeps the node's newest `$2` events (the `OFFSET` walks the primary key's index:
/// about 5 ms for 100 000 in SQLite, inside a group commit, so used only where
/// [`TRIM_EVENTS_THROUGH`] cannot be).
pub const TRIM_EVENTS: &str = "DELETE FROM events WHERE node = $1 AND id <= \
     (SELECT id FROM events WHERE node = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

/// Deletes the node's events up to id `$2`: what [`TRIM_EVENTS`] does, without the
/// search, when the id is known ([`Trim::Through`]).
pub const TRIM_EVENTS_THROUGH: &str = "DELETE FROM events WHERE node = $1 AND id <= $2";

pub const INSERT_EVENT: &str = "INSERT INTO events (node, id, skill, type, record) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (node, id) DO NOTHING";

/// The key of a node's era in `switchboard_meta`.
pub fn event_era_key(node: &str) -> String {
    format!("event_era:{node}")
}

/// Records the change log's last group in the tables ([`Row::LogApplied`]).
pub const SET_LOG_APPLIED: &str = "INSERT INTO switchboard_meta (key, value) VALUES ('change_log_applied', $1) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

pub const UPSERT_CONSUMER: &str = "INSERT INTO consumers (id, record, shard) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET record = excluded.record, shard = excluded.shard";

/// A store url fit for logs and errors: `postgres://user:secret@host/db` →
/// `postgres://user@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Opens the backend that `url` names, creating the schema if the store is new.
pub fn open(url: &str, durability: Durability) -> anyhow::Result<Box<dyn Backend>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Box::new(sqlite::Sqlite::open(std::path::Path::new(path), durability)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::Postgres::open(url)?))
    } else {
        anyhow::bail!("store url {url:?}: must start with sqlite:// or postgres://")
    }
}

/// The store's series, registered by [`crate::metrics`].
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub commit_seconds: Histogram,
    pub batch_rows: Histogram,
    pub errors: IntCounter,
    pub rows_written: IntCounter,
    pub rows_fenced: IntCounter,
    /// Changes queued for the writer and not committed yet: with relaxed durability,
    /// what a crash would lose; at rest, 0.
    pub pending: IntGauge,
    /// The change log ([`log`]): time and rows of each transaction that brings the
    /// tables up to date, and the log's bytes on disk.
    pub apply_seconds: Histogram,
    pub apply_rows: Histogram,
    pub log_bytes: IntGauge,
}

impl StoreMetrics {
    fn new() -> Self {
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        StoreMetrics {
            commit_seconds: histogram(
                "switchboard_store_commit_seconds",
                "Time to commit one group of changes to the store.",
                vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0],
            ),
            batch_rows: histogram(
                "switchboard_store_batch_rows",
                "Rows written per commit (the latest state per entity).",
                vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
            ),
            errors: counter(
                "switchboard_store_errors_total",
                "Commits to the store that failed (and were retried).",
            ),
            rows_written: counter("switchboard_store_rows_written_total", "Rows written to the store."),
            rows_fenced: counter(
                "switchboard_store_rows_fenced_total",
                "Rows refused because the node no longer held their shard's lease (cluster).",
            ),
            pending: IntGauge::with_opts(Opts::new(
                "switchboard_store_pending_changes",
                "Changes queued for the store's writer and not committed yet (with relaxed durability, what a crash would lose).",
            ))
            .unwrap_or_else(|e| panic!("switchboard_store_pending_changes: {e}")),
            apply_seconds: histogram(
                "switchboard_store_apply_seconds",
                "Time to bring the tables up to date from the change log (one transaction).",
                vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            ),
            apply_rows: histogram(
                "switchboard_store_apply_rows",
                "Rows written per transaction from the change log (the latest state per entity over `store.apply_ms`).",
                vec![10.0, 100.0, 1000.0, 5000.0, 10000.0, 25000.0, 50000.0],
            ),
            log_bytes: IntGauge::with_opts(Opts::new(
                "switchboard_store_change_log_bytes",
                "Bytes of the change log on disk (its segments are deleted once applied to the tables).",
            ))
            .unwrap_or_else(|e| panic!("switchboard_store_change_log_bytes: {e}")),
        }
    }
}

/// With relaxed durability, how many changes may wait for the writer before writers
/// wait for it too.
pub const RELAXED_MAX_LAG: u64 = 100_000;

/// Where the writer has got to.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// Every change numbered up to this one is committed.
    committed: u64,
}

struct Sender {
    next: u64,
    tx: mpsc::Sender<(u64, Change, Option<i64>)>,
}

/// A change queued: its number, and its row's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub n: u64,
    pub shard: u16,
}

/// In a cluster, whose leases the writer's commits must hold: every group commit checks,
/// inside its transaction, that this node still holds the shards of its rows under the
/// epochs it was granted (fencing); the rows of a shard it lost are refused, never
/// written.
#[derive(Clone, Debug)]
pub struct Fencing {
    pub node: String,
    pub ownership: watch::Receiver<Ownership>,
}

/// The rows of `shard` among the changes numbered `first..=last` were refused.
#[derive(Clone, Debug)]
struct Refusal {
    shard: u16,
    first: u64,
    last: u64,
}

/// Refusals kept for waiters to find: a waiter looks as soon as its change's group is
/// done, so only a burst of this many refused groups in between could hide one.
const REFUSALS_KEPT: usize = 4096;

#[derive(Default)]
struct Refusals {
    recent: Mutex<VecDeque<Refusal>>,
    node: String,
}

impl Refusals {
    fn record(&self, first: u64, last: u64, shards: &BTreeSet<u16>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for &shard in shards {
            if recent.len() == REFUSALS_KEPT {
                recent.pop_front();
            }
            recent.push_back(Refusal { shard, first, last });
        }
    }

    fn check(&self, t: Ticket) -> Result<(), Fenced> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match recent
            .iter()
            .rev()
            .any(|r| r.shard == t.shard && r.first <= t.n && t.n <= r.last)
        {
            true => Err(Fenced {
                node: self.node.clone(),
                shards: vec![t.shard],
            }),
            false => Ok(()),
        }
    }
}

/// The node's writer: a thread that commits changes in groups.
pub struct Store {
    durability: Durability,
    sender: Mutex<Sender>,
    progress: watch::Receiver<Progress>,
    healthy: Arc<AtomicBool>,
    refusals: Arc<Refusals>,
    pub metrics: StoreMetrics,
    url: String,
    fencing: Option<Fencing>,
    /// Whose events this store's writer appends: the cluster node's name, empty for a
    /// single node.
    node: Arc<str>,
    /// A connection for point reads (consumer records at open), opened on first use
    /// and dropped after an error.
    reader: Mutex<Option<Box<dyn Backend>>>,
    /// With a change log: its applier, asked to bring the tables up to date before
    /// they are read.
    applier: Option<mpsc::SyncSender<log::Apply>>,
    /// False while the applier's last transaction failed (it retries).
    tables_healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store, reads what it holds, and starts the writer.
    pub fn open(config: &StoreConfig) -> anyhow::Result<(Arc<Store>, Snapshot)> {
        let url = config
            .url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no store url configured"))?;
        let (mut backend, log) = match url.strip_prefix("sqlite://") {
            Some(path) => {
                let path = std::path::Path::new(path);
                let mut sqlite = sqlite::Sqlite::open(path, config.durability)?;
                // Whatever this start's settings, a log left by the last one holds
                // acknowledged changes.
                let recovered = log::recover(path, &mut sqlite)?;
                let log = (config.change_log && config.durability == Durability::Commit)
                    .then(|| {
                        let shared = log::Shared::default();
                        log::ChangeLog::create(path, recovered.next, &shared)
                            .map(|log| (log, path.to_path_buf(), shared))
                    })
                    .transpose()?;
                (Box::new(sqlite) as Box<dyn Backend>, log)
            }
            None => (open(&url, config.durability)?, None),
        };
        let snapshot = backend.load()?;
        Ok((Store::start(backend, log, config, url, None)?, snapshot))
    }

    /// Opens the store with its writes fenced by `fencing`'s leases (a cluster node).
    /// What the node serves is loaded as it takes shards, so nothing is read here.
    pub fn open_fenced(config: &StoreConfig, fencing: Fencing) -> anyhow::Result<Arc<Store>> {
        let url = config
            .url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no store url configured"))?;
        let backend = open(&url, config.durability)?;
        Store::start(backend, None, config, url, Some(fencing))
    }

    fn start(
        backend: Box<dyn Backend>,
        log: Option<(log::ChangeLog, std::path::PathBuf, log::Shared)>,
        config: &StoreConfig,
        url: String,
        fencing: Option<Fencing>,
    ) -> anyhow::Result<Arc<Store>> {
        let (tx, rx) = mpsc::channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let healthy = Arc::new(AtomicBool::new(true));
        let tables_healthy = Arc::new(AtomicBool::new(true));
        let metrics = StoreMetrics::new();
        let refusals = Arc::new(Refusals {
            recent: Mutex::default(),
            node: fencing.as_ref().map(|f| f.node.clone()).unwrap_or_default(),
        });
        let store_fencing = fencing.clone();
        let (sink, applier) = match log {
            None => (Sink::Tables(backend), None),
            Some((log, db, shared)) => {
                // Bounded: if the tables cannot be written for long, the writer waits
                // for the applier (and requests for the writer), as with a failing
                // commit, instead of queueing groups in memory without end.
                let (apply_tx, apply_rx) = mpsc::sync_channel(log::APPLY_QUEUE);
                let applier = log::Applier {
                    db,
                    backend,
                    rx: apply_rx,
                    every: config.apply_every,
                    metrics: metrics.clone(),
                    healthy: Arc::clone(&tables_healthy),
                    shared,
                };
                std::thread::Builder::new()
                    .name("switchboard-apply".into())
                    .spawn(move || applier.run())
                    .context("starting the store's applier thread")?;
                (
                    Sink::Log {
                        log,
                        applier: apply_tx.clone(),
                    },
                    Some(apply_tx),
                )
            }
        };
        let writer = Writer {
            sink,
            rx,
            progress: progress_tx,
            healthy: Arc::clone(&healthy),
            refusals: Arc::clone(&refusals),
            fencing,
            metrics: metrics.clone(),
            max_batch: config.max_batch.max(1),
            gather: match config.durability {
                Durability::Relaxed => config.gather,
                Durability::Commit => Duration::ZERO,
            },
        };
        // Without its writer every waiter would wait forever: a failed spawn is an error.
        std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || writer.run())
            .context("starting the store's writer thread")?;
        Ok(Arc::new(Store {
            durability: config.durability,
            sender: Mutex::new(Sender { next: 0, tx }),
            progress,
            healthy,
            refusals,
            metrics,
            url,
            node: store_fencing.as_ref().map_or("", |f| f.node.as_str()).into(),
            fencing: store_fencing,
            reader: Mutex::new(None),
            applier,
            tables_healthy,
        }))
    }

    /// Runs `read` on the reader connection (opened on first use, dropped after an
    /// error). Blocking: call it off the async threads.
    fn read<T>(&self, read: impl FnOnce(&mut dyn Backend) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let backend = match reader.as_mut() {
            Some(b) => b,
            None => reader.insert(open(&self.url, self.durability)?),
        };
        let result = read(backend.as_mut());
        if result.is_err() {
            *reader = None;
        }
        result
    }

    /// A consumer's record as stored now (blocking: call it off the async threads).
    pub fn read_consumer(&self, id: &ConsumerId) -> anyhow::Result<Option<ConsumerRecord>> {
        self.read(|b| b.load_consumer(id.as_str()))?
            .map(|j| decode("consumers", id.as_str(), &j))
            .transpose()
    }

    /// Starts this node's next event era (blocking): its events are numbered from
    /// [`event_era_base`] of it on.
    pub fn begin_event_era(&self) -> anyhow::Result<u64> {
        self.read(|b| b.next_event_era(&self.node))
    }

    /// This node's stored events in `after+1..=through`, oldest first, at most `limit`
    /// (blocking).
    pub fn read_events(&self, after: u64, through: u64, limit: usize) -> anyhow::Result<Vec<StoredEvent>> {
        self.read_events_of(&self.node, after, through, limit)
    }

    /// The same for `node`'s events (a cluster node reading those of a node that is
    /// gone, from the store they share).
    pub fn read_events_of(
        &self,
        node: &str,
        after: u64,
        through: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        self.settle_blocking();
        self.read(|b| b.load_events(node, after, through, limit))
    }

    /// With a change log, brings the tables up to date with every group committed so
    /// far (blocking: call it off the async threads).
    fn settle_blocking(&self) {
        if let Some(applier) = &self.applier {
            let (done, wait) = tokio::sync::oneshot::channel();
            if applier.send(log::Apply::Settle(done)).is_ok() {
                let _ = wait.blocking_recv();
            }
        }
    }

    /// Queues an event of the platform stream for the log.
    pub fn write_event(&self, id: u64, event: &RouterEvent) {
        self.write(Change::Event {
            node: Arc::clone(&self.node),
            id,
            event: Box::new(event.clone()),
        });
    }

    /// Queues the trim of this node's events to the newest `keep`, after event `after`.
    pub fn trim_events(&self, keep: u64, after: u64) {
        self.write(Change::TrimEvents {
            node: Arc::clone(&self.node),
            keep,
            after,
        });
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Reads the records of these shards, and every skill, on a connection of its own
    /// (blocking: call it off the runtime). What a cluster node does when it takes
    /// shards over.
    /// The stored state (`queued`, `assigned`, ...) and agent of each of these
    /// conversations, on a connection of its own (blocking). Absent: deleted.
    pub fn read_states(&self, ids: &[String]) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
        open(&self.url, self.durability)?.load_states(ids)
    }

    pub fn read_shards(&self, shards: &[u16]) -> anyhow::Result<Snapshot> {
        let mut backend = open(&self.url, self.durability)?;
        let mut snapshot = backend.load_shards(shards)?;
        let agents: Vec<String> = snapshot.agents.iter().map(|a| a.id.to_string()).collect();
        if !agents.is_empty() {
            snapshot.held_elsewhere = backend.load_held(&agents, shards)?;
        }
        Ok(snapshot)
    }

    /// False while the last commit failed (the writer retries).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.tables_healthy.load(Ordering::Acquire)
    }

    /// Queues a change; returns its ticket for [`Store::committed`].
    pub fn write(&self, change: Change) -> Ticket {
        // Only a fenced store needs the shard (hashing the id costs on every write). A
        // fenced row carries the epoch under which this node holds its shard now: it is
        // written under that epoch or not at all, so a change made before the node lost
        // and took the shard again (its engine read the shard back in between) is refused.
        let shard = if self.fencing.is_some() {
            change.key().fence_shard()
        } else {
            UNFENCED
        };
        let epoch = match &self.fencing {
            Some(f) if shard != UNFENCED => f.ownership.borrow().serves(shard, Instant::now()).map(|l| l.epoch),
            _ => None,
        };
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered and sent under one lock: the writer receives them in order, so
        // "committed up to n" covers every change numbered n or less.
        sender.next += 1;
        let n = sender.next;
        self.metrics.pending.inc();
        // The writer only stops when the store is dropped.
        let _ = sender.tx.send((n, change, epoch));
        Ticket { n, shard }
    }

    /// Waits until a change is committed, or refused because this node lost its
    /// shard's lease (a cluster node: see [`Fencing`]). With relaxed durability, at
    /// once, unless the writer has fallen more than [`RELAXED_MAX_LAG`] changes behind
    /// (a slow or unreachable database): then until it is back within that lag, so the
    /// changes queued in memory stay bounded. (A relaxed write that is refused later is
    /// counted in `switchboard_store_rows_fenced_total` and logged.)
    pub async fn committed(&self, t: Ticket) -> Result<(), Fenced> {
        match self.durability {
            Durability::Commit => {
                self.wait_for(t.n).await;
                self.refusals.check(t)
            }
            Durability::Relaxed => {
                if t.n > self.progress.borrow().committed + RELAXED_MAX_LAG {
                    self.wait_for(t.n - RELAXED_MAX_LAG).await;
                }
                Ok(())
            }
        }
    }

    /// Waits until change `n` is committed, whatever the durability.
    pub async fn wait_for(&self, n: u64) {
        let mut progress = self.progress.clone();
        let _ = progress.wait_for(|p| p.committed >= n).await;
    }

    /// Waits until everything queued so far is committed (a clean shutdown).
    pub async fn flush(&self) {
        let last = self.sender.lock().unwrap_or_else(|p| p.into_inner()).next;
        self.wait_for(last).await;
        // The tables too, so that a clean stop leaves no log to replay.
        if let Some(applier) = &self.applier {
            let (done, wait) = tokio::sync::oneshot::channel();
            let mut settle = log::Apply::Settle(done);
            // Never blocks the async thread on a full queue.
            loop {
                match applier.try_send(settle) {
                    Ok(()) => {
                        let _ = wait.await;
                        break;
                    }
                    Err(mpsc::TrySendError::Full(again)) => {
                        settle = again;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }
}

/// Where the writer commits its groups.
enum Sink {
    /// To the tables.
    Tables(Box<dyn Backend>),
    /// To the change log, whose applier brings the tables up to date ([`log`]).
    Log {
        log: log::ChangeLog,
        applier: mpsc::SyncSender<log::Apply>,
    },
}

struct Writer {
    sink: Sink,
    rx: mpsc::Receiver<(u64, Change, Option<i64>)>,
    progress: watch::Sender<Progress>,
    healthy: Arc<AtomicBool>,
    refusals: Arc<Refusals>,
    fencing: Option<Fencing>,
    metrics: StoreMetrics,
    max_batch: usize,
    gather: Duration,
}

impl Writer {
    fn run(mut self) {
        type Latest = HashMap<Key, (Change, Option<i64>)>;
        let mut latest: Latest = HashMap::new();
        let mut order: Vec<Key> = Vec::new();
        // Blocks for the first change of a group, then takes whatever else is queued:
        // while one group commits, the next gathers.
        while let Ok((mut last, first, epoch)) = self.rx.recv() {
            let group_first = last;
            latest.clear();
            order.clear();
            let add = |change: Change, epoch: Option<i64>, latest: &mut Latest, order: &mut Vec<Key>| {
                let key = change.key();
                if latest.insert(key.clone(), (change, epoch)).is_none() {
                    order.push(key);
                }
            };
            add(first, epoch, &mut latest, &mut order);
            let until = Instant::now() + self.gather;
            let mut taken = 1;
            while taken < self.max_batch {
                let next = match self.rx.try_recv() {
                    Ok(next) => next,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) if self.gather.is_zero() => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        match self.rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                            Ok(next) => next,
                            Err(_) => break,
                        }
                    }
                };
                last = next.0;
                taken += 1;
                add(next.1, next.2, &mut latest, &mut order);
            }
            let mut rows = Vec::with_capacity(order.len());
            for key in &order {
                if let Some((change, epoch)) = latest.remove(key) {
                    match Row::encode(change) {
                        Ok(row) => rows.push(((key.fence_shard(), epoch), row)),
                        Err(e) => tracing::error!(?key, error = %e, "a change could not be encoded; skipped"),
                    }
                }
            }
            let refused = self.commit(rows);
            if !refused.is_empty() {
                // Recorded before the progress moves: a waiter woken by it finds them.
                self.refusals.record(group_first, last, &refused);
            }
            self.progress.send_modify(|p| p.committed = last);
            self.metrics.pending.sub((last + 1 - group_first) as i64);
        }
    }

    /// Commits, retrying with a doubling pause until it succeeds: a change is never
    /// dropped, and whoever waits for it waits (the store is unhealthy meanwhile). With
    /// fencing, the rows of shards the node no longer holds are refused instead: those
    /// it no longer believes it holds at once, those the database finds lost inside the
    /// transaction after (and the rest committed). Returns the refused shards.
    fn commit(&mut self, rows: Vec<((u16, Option<i64>), Row)>) -> BTreeSet<u16> {
        let mut refused = BTreeSet::new();
        let (tagged, mut rows): (Vec<(u16, Option<i64>)>, Vec<Row>) = rows.into_iter().unzip();
        if let Sink::Log { .. } = self.sink {
            // Only the embedded store has a change log, and it is never fenced.
            self.append(rows);
            return refused;
        }
        let Some(fencing) = self.fencing.clone() else {
            let _ = self.commit_with(&rows, |backend, rows| backend.commit(rows).map(Ok));
            return refused;
        };
        // The epoch each fenced shard's rows were written under; a shard whose rows
        // in this group were written under two epochs (lost and taken again in
        // between) is refused whole.
        let mut written: BTreeMap<u16, Option<i64>> = BTreeMap::new();
        let mut mixed: BTreeSet<u16> = BTreeSet::new();
        for (shard, epoch) in &tagged {
            if *shard != UNFENCED && *written.entry(*shard).or_insert(*epoch) != *epoch {
                mixed.insert(*shard);
            }
        }
        let mut shards: Vec<u16> = tagged.iter().map(|(s, _)| *s).collect();
        loop {
            // Held now (the node's belief) under the epoch the rows were written under;
            // the database has the last word.
            let leases: BTreeMap<u16, Lease> = {
                let ownership = fencing.ownership.borrow();
                let now = Instant::now();
                shards
                    .iter()
                    .filter(|shard| **shard != UNFENCED && !mixed.contains(shard))
                    .filter_map(|shard| ownership.serves(*shard, now).map(|l| (*shard, l)))
                    .filter(|(shard, l)| written.get(shard).copied().flatten() == Some(l.epoch))
                    .collect()
            };
            self.refuse(&mut shards, &mut rows, &mut refused, |shard| {
                shard != UNFENCED && !leases.contains_key(&shard)
            });
            if rows.is_empty() {
                return refused;
            }
            let leases: Vec<Lease> = leases.into_values().collect();
            let node = fencing.node.as_str();
            match self.commit_with(&rows, |backend, rows| backend.commit_fenced(rows, node, &leases)) {
                Ok(()) => return refused,
                // Lost in the meantime: refuse those, commit the rest.
                Err(lost) => {
                    let lost: BTreeSet<u16> = lost.shards.into_iter().collect();
                    self.refuse(&mut shards, &mut rows, &mut refused, |shard| lost.contains(&shard));
                    if rows.is_empty() {
                        return refused;
                    }
                }
            }
        }
    }

    /// Drops the rows whose shard `lost` says (`shards[i]` is the shard of `rows[i]`),
    /// adding their shards to `refused`.
    fn refuse(
        &self,
        shards: &mut Vec<u16>,
        rows: &mut Vec<Row>,
        refused: &mut BTreeSet<u16>,
        lost: impl Fn(u16) -> bool,
    ) {
        let before = rows.len();
        let mut kept = (Vec::with_capacity(before), Vec::with_capacity(before));
        for (shard, row) in shards.drain(..).zip(rows.drain(..)) {
            if lost(shard) {
                refused.insert(shard);
            } else {
                kept.0.push(shard);
                kept.1.push(row);
            }
        }
        (*shards, *rows) = kept;
        let dropped = before - rows.len();
        if dropped > 0 {
            self.metrics.rows_fenced.inc_by(dropped as u64);
            tracing::warn!(rows = dropped, shards = ?refused, "writes refused: this node no longer holds their shards");
        }
    }

    /// Appends a group to the change log, retrying with a doubling pause until it
    /// succeeds, then hands its rows to the applier.
    fn append(&mut self, rows: Vec<Row>) {
        let Sink::Log { log, applier } = &mut self.sink else {
            return;
        };
        let (n, took) = retry("store commit failed", rows.len(), &self.metrics, &self.healthy, || {
            let started = Instant::now();
            Ok((log.append(&rows)?, started.elapsed()))
        });
        self.metrics.committed(rows.len(), took);
        self.healthy.store(true, Ordering::Release);
        // The applier stops only with the store.
        let _ = applier.send(log::Apply::Group(n, rows));
    }

    /// Runs `commit` until the database answers, with a doubling pause between
    /// attempts; a refusal by fencing is an answer.
    fn commit_with(
        &mut self,
        rows: &[Row],
        commit: impl Fn(&mut dyn Backend, &[Row]) -> anyhow::Result<Result<(), Fenced>>,
    ) -> Result<(), Fenced> {
        // Only called with the tables as the sink ([`Writer::commit`] sends the log's
        // groups to [`Writer::append`]).
        let Sink::Tables(backend) = &mut self.sink else {
            return Ok(());
        };
        let (answer, took) = retry("store commit failed", rows.len(), &self.metrics, &self.healthy, || {
            let started = Instant::now();
            Ok((commit(backend.as_mut(), rows)?, started.elapsed()))
        });
        if answer.is_ok() {
            self.metrics.committed(rows.len(), took);
        }
        self.healthy.store(true, Ordering::Release);
        answer
    }
}

/// Runs `attempt` until it succeeds, with a doubling pause between attempts (50 ms to
/// 5 s): a change is never dropped. Each failure is counted in
/// `switchboard_store_errors_total`, logged as `what`, and leaves `healthy` false.
pub(crate) fn retry<T>(
    what: &str,
    rows: usize,
    metrics: &StoreMetrics,
    healthy: &AtomicBool,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> T {
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt() {
            Ok(done) => return done,
            Err(e) => {
                metrics.errors.inc();
                healthy.store(false, Ordering::Release);
                tracing::error!(error = %format!("{e:#}"), rows, retry_in_ms = pause.as_millis() as u64, "{what}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl StoreMetrics {
    /// A group of `rows` committed in `took`.
    fn committed(&self, rows: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.batch_rows.observe(rows as f64);
        self.rows_written.inc_by(rows as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::domain::conversation::OpenRequest;
    use crate::time::Timestamp;

    #[test]
    fn the_password_is_not_shown() {
        assert_eq!(
            redact_url("postgres://sb:secret@127.0.0.1:5433/sb"),
            "postgres://sb@127.0.0.1:5433/sb"
        );
        assert_eq!(redact_url("postgres://127.0.0.1/sb"), "postgres://127.0.0.1/sb");
        assert_eq!(
            redact_url("sqlite://data/switchboard.db"),
            "sqlite://data/switchboard.db"
        );
    }

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("switchboard-store-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }

        fn url(&self) -> String {
            format!("sqlite://{}", self.0.join("switchboard.db").display())
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn conversation(id: &str, skill: &Skill) -> Conversation {
        Conversation::open(
            OpenRequest {
                id: ConversationId::new(id).expect("id"),
                consumer_id: ConsumerId::new("u1").expect("id"),
                skill: skill.id.clone(),
                attributes: Default::default(),
                urgent: false,
                first_time: true,
                preferred_agent: None,
                seq: 1,
            },
            Timestamp::from_millis(1_800_000_000_000),
            skill,
        )
    }

    fn config(dir: &TempDir, durability: Durability) -> StoreConfig {
        StoreConfig {
            url: Some(dir.url()),
            durability,
            ..StoreConfig::default()
        }
    }

    #[tokio::test]
    async fn the_writer_commits_the_latest_state_of_each_entity() {
        let dir = TempDir::new("latest");
        let (store, snapshot) = Store::open(&config(&dir, Durability::Commit)).expect("open");
        assert!(snapshot.conversations.is_empty(), "a new store is empty");
        let skill = Arc::new(EngineConfig::default().skill_defaults);
        let mut c = conversation("c1", &skill);
        store.write(Change::Skill(Arc::clone(&skill)));
        store.write(Change::Conversation(Box::new(c.clone())));
        c.urgent = true;
        store.write(Change::Conversation(Box::new(c.clone())));
        let gone = conversation("c2", &skill);
        store.write(Change::Conversation(Box::new(gone.clone())));
        let n = store.write(Change::ForgetConversation(gone.id.clone()));
        store.committed(n).await.expect("not fenced");
        // With the change log (the default), the tables are brought up to date from it.
        store.flush().await;

        let mut backend = open(&dir.url(), Durability::Commit).expect("reopen");
        let read = backend.load().expect("load");
        assert_eq!(read.skills.len(), 1);
        assert_eq!(read.conversations, vec![c], "the latest state, and only it");
    }

    #[tokio::test]
    async fn a_crash_before_the_tables_are_brought_up_to_date_loses_nothing_committed() {
        let dir = TempDir::new("log-crash");
        let config = StoreConfig {
            apply_every: Duration::from_secs(3600),
            ..config(&dir, Durability::Commit)
        };
        let (store, _) = Store::open(&config).expect("open");
        let skill = Arc::new(EngineConfig::default().skill_defaults);
        let mut c = conversation("c1", &skill);
        store.write(Change::Skill(Arc::clone(&skill)));
        store.write(Change::Conversation(Box::new(c.clone())));
        c.urgent = true;
        let n = store.write(Change::Conversation(Box::new(c.clone())));
        store.committed(n).await.expect("not fenced");
        let tables = open(&dir.url(), Durability::Commit)
            .expect("reopen")
            .load()
            .expect("load");
        assert!(
            tables.conversations.is_empty(),
            "committed to the log, not yet to the tables"
        );
        // A crash: the writer and the applier never finish.
        std::mem::forget(store);
        let (_store, snapshot) = Store::open(&config).expect("recovers");
        assert_eq!(snapshot.conversations, vec![c], "the latest state committed");
        assert_eq!(snapshot.skills.len(), 1);
    }

    #[tokio::test]
    async fn relaxed_durability_answers_at_once_and_the_writer_commits_soon_after() {
        let dir = TempDir::new("relaxed");
        let (store, _) = Store::open(&config(&dir, Durability::Relaxed)).expect("open");
        let skill = EngineConfig::default().skill_defaults;
        let n = store.write(Change::Conversation(Box::new(conversation("c1", &skill))));
        // Does not wait for the commit...
        store.committed(n).await.expect("not fenced");
        // ...which comes within milliseconds.
        tokio::time::timeout(std::time::Duration::from_secs(5), store.wait_for(n.n))
            .await
            .expect("committed within 5 s");
        let read = open(&dir.url(), Durability::Relaxed)
            .expect("reopen")
            .load()
            .expect("load");
        assert_eq!(read.conversations.len(), 1);
    }

    #[test]
    fn a_store_of_another_schema_version_is_refused_and_left_alone() {
        let dir = TempDir::new("version");
        drop(open(&dir.url(), Durability::Commit).expect("create"));
        let path = dir.0.join("switchboard.db");
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute(
            "UPDATE switchboard_meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .expect("update");
        drop(conn);
        let err = format!(
            "{:#}",
            open(&dir.url(), Durability::Commit).map(|_| ()).expect_err("refused")
        );
        assert!(err.contains("schema version 99"), "{err}");
        assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    }

    #[test]
    fn rows_decoded_on_several_threads_keep_their_order_and_the_first_bad_row_is_named() {
        let rows = |bad: Option<usize>| {
            (0..10_000usize).map(move |i| {
                let record = if Some(i) == bad { "{".to_string() } else { i.to_string() };
                Ok((format!("r{i}"), record))
            })
        };
        let read: Vec<usize> =
            decode_rows(rows(None), |id, r| decode("numbers", id, r)).expect("every row is a record");
        assert_eq!(read, (0..10_000).collect::<Vec<_>>());
        let err = decode_rows(rows(Some(7_000)), |id, r| decode::<usize>("numbers", id, r)).expect_err("a bad row");
        assert!(err.to_string().contains("\"r7000\" of table numbers"), "{err}");
        let failed_read = (0..5_000usize)
            .map(|i| Ok((format!("r{i}"), i.to_string())))
            .chain(std::iter::once(Err(anyhow::anyhow!("disk I/O error"))));
        let err = decode_rows(failed_read, |id, r| decode::<usize>("numbers", id, r)).expect_err("a read error");
        assert!(err.to_string().contains("disk I/O error"), "{err}");
    }

    /// The schema of version 1, as stores written before the `shard` columns have it.
    pub(crate) const SCHEMA_V1: &[&str] = &[
        "CREATE TABLE switchboard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO switchboard_meta (key, value) VALUES ('schema_version', '1')",
        "CREATE TABLE skills (id TEXT PRIMARY KEY, record TEXT NOT NULL)",
        "CREATE TABLE agents (id TEXT PRIMARY KEY, status TEXT NOT NULL, record TEXT NOT NULL)",
        "CREATE TABLE conversations (id TEXT PRIMARY KEY, skill TEXT NOT NULL, state TEXT NOT NULL, \
         agent_id TEXT, consumer_id TEXT NOT NULL, record TEXT NOT NULL)",
        "CREATE TABLE consumers (id TEXT PRIMARY KEY, record TEXT NOT NULL)",
    ];

    #[test]
    fn a_trim_deletes_through_a_known_id_once_the_era_holds_the_whole_window() {
        let trim = |keep: u64, after: u64| match Row::encode(Change::TrimEvents {
            node: Arc::from("n1"),
            keep,
            after,
        }) {
            Ok(Row::TrimEvents { trim, .. }) => trim,
            other => panic!("{other:?}"),
        };
        let era = |e: u64| event_era_base(e);
        // The window lies within the trim's era, whose ids have no gaps.
        assert_eq!(trim(20, era(1) + 30), Trim::Through(event_id_column(era(1) + 10)));
        assert_eq!(trim(20, era(3) + 21), Trim::Through(event_id_column(era(3) + 1)));
        // Early in an era the newest `keep` reach into older eras: searched for.
        assert_eq!(trim(20, era(1) + 20), Trim::Keep(20));
        assert_eq!(trim(20, era(2) + 5), Trim::Keep(20));
        assert_eq!(trim(0, era(2) + 5), Trim::Through(event_id_column(era(2) + 5)));
    }

    #[test]
    fn a_version_1_store_is_migrated_and_a_shard_s_rows_are_read_alone() {
        let dir = TempDir::new("migrate");
        std::fs::create_dir_all(&dir.0).expect("dir");
        let skill = EngineConfig::default().skill_defaults;
        let conn = rusqlite::Connection::open(dir.0.join("switchboard.db")).expect("sqlite");
        for statement in SCHEMA_V1 {
            conn.execute(statement, []).expect("v1 schema");
        }
        let ids = ["c1", "c2", "c3", "c4", "c5", "c6"];
        for id in ids {
            let c = conversation(id, &skill);
            conn.execute(
                "INSERT INTO conversations (id, skill, state, consumer_id, record) VALUES ($1, 'general', 'queued', 'u1', $2)",
                rusqlite::params![id, serde_json::to_string(&c).expect("json")],
            )
            .expect("v1 row");
        }
        drop(conn);

        let mut backend = open(&dir.url(), Durability::Commit).expect("migrated at open");
        assert_eq!(
            backend.load().expect("load").conversations.len(),
            ids.len(),
            "every row kept"
        );
        let conn = rusqlite::Connection::open(dir.0.join("switchboard.db")).expect("sqlite");
        let version: String = conn
            .query_row(
                "SELECT value FROM switchboard_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        for id in ids {
            let shard: i32 = conn
                .query_row("SELECT shard FROM conversations WHERE id = $1", [id], |r| r.get(0))
                .expect("shard filled");
            assert_eq!(shard, i32::from(shard_of(id)), "{id}");
        }

        // New rows carry their shard too; a shard's rows are read without the others.
        backend
            .commit(&[Row::encode(Change::Conversation(Box::new(conversation("c7", &skill)))).expect("row")])
            .expect("commit");
        let wanted = [shard_of("c2"), shard_of("c7")];
        let mut read: Vec<String> = backend
            .load_shards(&wanted)
            .expect("load shards")
            .conversations
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        read.sort();
        let mut expected: Vec<String> = ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
            .into_iter()
            .filter(|id| wanted.contains(&shard_of(id)))
            .map(String::from)
            .collect();
        expected.sort();
        assert!(
            expected.contains(&"c7".to_string()) && expected.len() < 7,
            "{expected:?}"
        );
        assert_eq!(read, expected);
    }

    #[test]
    fn a_row_that_is_not_a_record_is_an_error_naming_it() {
        let dir = TempDir::new("badrow");
        drop(open(&dir.url(), Durability::Commit).expect("create"));
        let conn = rusqlite::Connection::open(dir.0.join("switchboard.db")).expect("sqlite");
        conn.execute(
            "INSERT INTO conversations (id, skill, state, consumer_id, record) VALUES ('c9', 'general', 'queued', 'u1', '{')",
            [],
        )
        .expect("insert");
        drop(conn);
        let err = format!(
            "{:#}",
            open(&dir.url(), Durability::Commit)
                .expect("open")
                .load()
                .map(|_| ())
                .expect_err("refused")
        );
        assert!(err.contains("\"c9\"") && err.contains("conversations"), "{err}");
    }
}
