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
//!
//! Why these crates: the writer is one thread running one transaction at a time, so
//! synchronous clients fit it exactly. `rusqlite` is the reference SQLite binding and
//! builds SQLite in (`bundled`: no system library to match); `postgres` is the
//! synchronous face of `tokio-postgres`, from the same maintainers. `sqlx` would bring
//! a connection pool and an async driver that this single writer does not use (its
//! SQLite driver runs a worker thread of its own anyway).

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{Histogram, HistogramOpts, IntCounter, Opts};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::domain::agent::Agent;
use crate::domain::consumer::ConsumerRecord;
use crate::domain::conversation::Conversation;
use crate::domain::skill::Skill;
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            durability: Durability::Commit,
            max_batch: 1024,
            gather: Duration::from_millis(2),
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
}

/// The table a change goes to, and the row's id: the writer keeps the latest change
/// per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Skill(SkillId),
    Agent(AgentId),
    Conversation(ConversationId),
    Consumer(ConsumerId),
}

impl Change {
    pub fn key(&self) -> Key {
        match self {
            Change::Skill(s) => Key::Skill(s.id.clone()),
            Change::Agent(a) => Key::Agent(a.id.clone()),
            Change::Conversation(c) => Key::Conversation(c.id.clone()),
            Change::Consumer(id, _) | Change::ForgetConsumer(id) => Key::Consumer(id.clone()),
            Change::ForgetConversation(id) => Key::Conversation(id.clone()),
        }
    }
}

/// A row as the backends write it.
#[derive(Clone, Debug)]
pub enum Row {
    Skill {
        id: String,
        record: String,
    },
    Agent {
        id: String,
        status: &'static str,
        record: String,
    },
    Conversation {
        id: String,
        skill: String,
        state: &'static str,
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
}

impl Row {
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
                    status: a.status.as_str(),
                    record: serde_json::to_string(&a)?,
                }
            }
            Change::Conversation(c) => Row::Conversation {
                id: c.id.to_string(),
                skill: c.skill.to_string(),
                state: c.state.as_str(),
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
        })
    }
}

/// Everything the store holds, read at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub skills: Vec<Skill>,
    pub agents: Vec<Agent>,
    pub conversations: Vec<Conversation>,
    pub consumers: Vec<(ConsumerId, ConsumerRecord)>,
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
    /// Writes the rows in one transaction: all or nothing.
    fn commit(&mut self, rows: &[Row]) -> anyhow::Result<()>;
}

/// The schema, the same for both backends (plain `TEXT` columns, `$n` parameters,
/// `ON CONFLICT` upserts: SQL that SQLite and PostgreSQL both read).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS switchboard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS skills (id TEXT PRIMARY KEY, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, status TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, skill TEXT NOT NULL, state TEXT NOT NULL, \
     agent_id TEXT, consumer_id TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS consumers (id TEXT PRIMARY KEY, record TEXT NOT NULL)",
];

/// The version of [`SCHEMA`], kept in `switchboard_meta`; a store written by a newer
/// version stops start-up instead of being misread.
pub const SCHEMA_VERSION: &str = "1";

pub const UPSERT_SKILL: &str =
    "INSERT INTO skills (id, record) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET record = excluded.record";
pub const UPSERT_AGENT: &str = "INSERT INTO agents (id, status, record) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, record = excluded.record";
pub const UPSERT_CONVERSATION: &str =
    "INSERT INTO conversations (id, skill, state, agent_id, consumer_id, record) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (id) DO UPDATE SET skill = excluded.skill, state = excluded.state, agent_id = excluded.agent_id, \
     consumer_id = excluded.consumer_id, record = excluded.record";
pub const UPSERT_CONSUMER: &str =
    "INSERT INTO consumers (id, record) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET record = excluded.record";

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
    tx: mpsc::Sender<(u64, Change)>,
}

/// The node's writer: a thread that commits changes in groups.
pub struct Store {
    durability: Durability,
    sender: Mutex<Sender>,
    progress: watch::Receiver<Progress>,
    healthy: Arc<AtomicBool>,
    pub metrics: StoreMetrics,
    url: String,
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
        let mut backend = open(&url, config.durability)?;
        let snapshot = backend.load()?;
        Ok((Store::start(backend, config, url)?, snapshot))
    }

    fn start(backend: Box<dyn Backend>, config: &StoreConfig, url: String) -> anyhow::Result<Arc<Store>> {
        let (tx, rx) = mpsc::channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let healthy = Arc::new(AtomicBool::new(true));
        let metrics = StoreMetrics::new();
        let writer = Writer {
            backend,
            rx,
            progress: progress_tx,
            healthy: Arc::clone(&healthy),
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
            metrics,
            url,
        }))
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// False while the last commit failed (the writer retries).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Queues a change; returns its number for [`Store::committed`].
    pub fn write(&self, change: Change) -> u64 {
        let mut sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered and sent under one lock: the writer receives them in order, so
        // "committed up to n" covers every change numbered n or less.
        sender.next += 1;
        let n = sender.next;
        // The writer only stops when the store is dropped.
        let _ = sender.tx.send((n, change));
        n
    }

    /// Waits until change `n` is committed. With relaxed durability, at once, unless
    /// the writer has fallen more than [`RELAXED_MAX_LAG`] changes behind (a slow or
    /// unreachable database): then until it is back within that lag, so the changes
    /// queued in memory stay bounded.
    pub async fn committed(&self, n: u64) {
        match self.durability {
            Durability::Commit => self.wait_for(n).await,
            Durability::Relaxed => {
                if n > self.progress.borrow().committed + RELAXED_MAX_LAG {
                    self.wait_for(n - RELAXED_MAX_LAG).await;
                }
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
    }
}

struct Writer {
    backend: Box<dyn Backend>,
    rx: mpsc::Receiver<(u64, Change)>,
    progress: watch::Sender<Progress>,
    healthy: Arc<AtomicBool>,
    metrics: StoreMetrics,
    max_batch: usize,
    gather: Duration,
}

impl Writer {
    fn run(mut self) {
        let mut latest: HashMap<Key, Change> = HashMap::new();
        let mut order: Vec<Key> = Vec::new();
        // Blocks for the first change of a group, then takes whatever else is queued:
        // while one group commits, the next gathers.
        while let Ok((mut last, first)) = self.rx.recv() {
            latest.clear();
            order.clear();
            let add = |change: Change, latest: &mut HashMap<Key, Change>, order: &mut Vec<Key>| {
                let key = change.key();
                if latest.insert(key.clone(), change).is_none() {
                    order.push(key);
                }
            };
            add(first, &mut latest, &mut order);
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
                add(next.1, &mut latest, &mut order);
            }
            let mut rows = Vec::with_capacity(order.len());
            for key in &order {
                if let Some(change) = latest.remove(key) {
                    match Row::encode(change) {
                        Ok(row) => rows.push(row),
                        Err(e) => tracing::error!(?key, error = %e, "a change could not be encoded; skipped"),
                    }
                }
            }
            self.commit(&rows);
            self.progress.send_modify(|p| p.committed = last);
        }
    }

    /// Commits, retrying with a doubling pause until it succeeds: a change is never
    /// dropped, and whoever waits for it waits (the store is unhealthy meanwhile).
    fn commit(&mut self, rows: &[Row]) {
        let mut pause = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.backend.commit(rows) {
                Ok(()) => {
                    self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    self.metrics.batch_rows.observe(rows.len() as f64);
                    self.metrics.rows_written.inc_by(rows.len() as u64);
                    self.healthy.store(true, Ordering::Release);
                    return;
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    self.healthy.store(false, Ordering::Release);
                    tracing::error!(error = %format!("{e:#}"), rows = rows.len(), retry_in_ms = pause.as_millis() as u64, "store commit failed");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
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
            max_batch: 1024,
            gather: Duration::from_millis(2),
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
        store.committed(n).await;

        let mut backend = open(&dir.url(), Durability::Commit).expect("reopen");
        let read = backend.load().expect("load");
        assert_eq!(read.skills.len(), 1);
        assert_eq!(read.conversations, vec![c], "the latest state, and only it");
    }

    #[tokio::test]
    async fn relaxed_durability_answers_at_once_and_the_writer_commits_soon_after() {
        let dir = TempDir::new("relaxed");
        let (store, _) = Store::open(&config(&dir, Durability::Relaxed)).expect("open");
        let skill = EngineConfig::default().skill_defaults;
        let n = store.write(Change::Conversation(Box::new(conversation("c1", &skill))));
        // Does not wait for the commit...
        store.committed(n).await;
        // ...which comes within milliseconds.
        tokio::time::timeout(std::time::Duration::from_secs(5), store.wait_for(n))
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
