//! The embedded backend: one SQLite file in WAL mode (readers never block the writer).
//! `synchronous = FULL` with commit durability (each commit reaches the disk before it
//! returns: a group commit before anyone is answered, or, with the change log
//! ([`super::log`]), the applier's transaction before the log behind it is cut),
//! `NORMAL` with relaxed durability (survives a crash of the process; a power cut may
//! lose the last commits). Checkpoints are SQLite's
//! automatic ones (every 1 000 WAL pages, in the commit that crosses the threshold):
//! a checkpoint thread of our own was tried and let the WAL grow without bound under
//! sustained writes (a `PASSIVE` checkpoint never catches up with a busy writer).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::cluster::placement::shard_of;

use super::{add_shard_column, decode, Backend, Durability, Row, Snapshot, StoredEvent, ENTITY_TABLES, SCHEMA};
use super::{event_era_key, INSERT_EVENT, NEXT_EVENT_ERA, SCHEMA_VERSION, SELECT_EVENTS};
use super::{UPSERT_AGENT, UPSERT_CONSUMER, UPSERT_CONVERSATION, UPSERT_SKILL};

#[derive(Debug)]
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (or creates) the database file. A file that is not a switchboard store,
    /// or is damaged, is an error that names it; it is never replaced.
    pub fn open(path: &Path, durability: Durability) -> anyhow::Result<Sqlite> {
        let named = |what: &str| format!("{what} the SQLite store {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| named("opening"))?;
        let sync = match durability {
            Durability::Commit => "FULL",
            Durability::Relaxed => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; \
             PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;"
        ))
        .with_context(|| named("reading"))?;
        let mut store = Sqlite {
            conn,
            path: path.to_path_buf(),
        };
        store.ensure_schema().with_context(|| named("reading"))?;
        Ok(store)
    }

    fn ensure_schema(&mut self) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        for statement in SCHEMA {
            tx.execute(statement, [])?;
        }
        let version = meta(&tx, "schema_version")?;
        match version.as_deref() {
            None => {
                tx.execute(
                    "INSERT INTO switchboard_meta (key, value) VALUES ('schema_version', $1)",
                    params![SCHEMA_VERSION],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some("1") => {
                for table in ENTITY_TABLES {
                    tx.execute(&add_shard_column(table), [])?;
                    let ids: Vec<String> = tx
                        .prepare(&format!("SELECT id FROM {table}"))?
                        .query_map([], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    let mut set = tx.prepare(&format!("UPDATE {table} SET shard = $1 WHERE id = $2"))?;
                    for id in &ids {
                        set.execute(params![i32::from(shard_of(id)), id])?;
                    }
                }
                tx.execute(
                    "UPDATE switchboard_meta SET value = $1 WHERE key = 'schema_version'",
                    params![SCHEMA_VERSION],
                )?;
                tracing::info!(path = %self.path.display(), "store migrated from schema version 1 to {SCHEMA_VERSION}");
            }
            Some(other) => anyhow::bail!("schema version {other} (this build reads version {SCHEMA_VERSION})"),
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads every table's rows that `filter` (an SQL condition on the row, with the
    /// parameter `$1` bound to `param`) keeps.
    fn load_where(&self, filter: &str, param: &str) -> anyhow::Result<Snapshot> {
        let sql = |table: &str| format!("SELECT id, record FROM {table} WHERE {filter}");
        Ok(Snapshot {
            // Every skill, whatever the shards: skills are the same on every node.
            skills: self.rows(
                &format!("SELECT id, record FROM skills WHERE true OR ({filter})"),
                param,
                "skills",
                |id, r| decode("skills", id, r),
            )?,
            agents: self.rows(&sql("agents"), param, "agents", |id, r| decode("agents", id, r))?,
            conversations: self.rows(&sql("conversations"), param, "conversations", |id, r| {
                decode("conversations", id, r)
            })?,
            consumers: self.rows(&sql("consumers"), param, "consumers", |id, r| {
                let consumer = crate::ids::ConsumerId::new(id)
                    .map_err(|e| anyhow::anyhow!("row {id:?} of table consumers: {e}"))?;
                Ok((consumer, decode("consumers", id, r)?))
            })?,
            held_elsewhere: Vec::new(),
        })
    }

    /// The change log's last group applied to the tables ([`super::log`]); 0 for none.
    pub fn log_applied(&self) -> anyhow::Result<u64> {
        let value = meta(&self.conn, "change_log_applied")
            .with_context(|| format!("reading the SQLite store {}", self.path.display()))?;
        value.map_or(Ok(0), |v| {
            v.parse()
                .with_context(|| format!("change_log_applied {v:?} in the SQLite store {}", self.path.display()))
        })
    }

    fn rows<T: Send>(
        &self,
        sql: &str,
        param: &str,
        table: &str,
        decode_row: impl Fn(&str, &str) -> anyhow::Result<T> + Sync,
    ) -> anyhow::Result<Vec<T>> {
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = match stmt.parameter_count() {
            0 => stmt.query([])?,
            _ => stmt.query(params![param])?,
        };
        let read = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(
                row.get(0)
                    .and_then(|id| Ok((id, row.get(1)?)))
                    .map_err(anyhow::Error::from),
            ),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        });
        super::decode_rows(read, decode_row).with_context(|| format!("in table {table}"))
    }
}

/// The value under `key` in `switchboard_meta`, if any.
fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM switchboard_meta WHERE key = $1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

impl Backend for Sqlite {
    fn load(&mut self) -> anyhow::Result<Snapshot> {
        self.load_where("true", "")
            .with_context(|| format!("reading the SQLite store {}", self.path.display()))
    }

    fn load_shards(&mut self, shards: &[u16]) -> anyhow::Result<Snapshot> {
        let list = serde_json::to_string(shards)?;
        self.load_where("shard IN (SELECT value FROM json_each($1))", &list)
            .with_context(|| format!("reading shards of the SQLite store {}", self.path.display()))
    }

    fn next_event_era(&mut self, node: &str) -> anyhow::Result<u64> {
        let era: String = self
            .conn
            .query_row(NEXT_EVENT_ERA, params![event_era_key(node)], |r| r.get(0))
            .with_context(|| format!("counting starts in the SQLite store {}", self.path.display()))?;
        Ok(era.parse()?)
    }

    fn load_events(&mut self, node: &str, after: u64, through: u64, limit: usize) -> anyhow::Result<Vec<StoredEvent>> {
        let mut stmt = self.conn.prepare_cached(SELECT_EVENTS)?;
        let rows = stmt.query_map(
            params![
                node,
                super::event_id_column(after),
                super::event_id_column(through),
                limit as i64
            ],
            |r| {
                Ok(StoredEvent {
                    id: r.get::<_, i64>(0)? as u64,
                    skill: r.get(1)?,
                    kind: r.get(2)?,
                    record: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn commit(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut skill = tx.prepare_cached(UPSERT_SKILL)?;
            let mut agent = tx.prepare_cached(UPSERT_AGENT)?;
            let mut conversation = tx.prepare_cached(UPSERT_CONVERSATION)?;
            let mut consumer = tx.prepare_cached(UPSERT_CONSUMER)?;
            let mut forget_conversation = tx.prepare_cached("DELETE FROM conversations WHERE id = $1")?;
            let mut forget_consumer = tx.prepare_cached("DELETE FROM consumers WHERE id = $1")?;
            let mut event = tx.prepare_cached(INSERT_EVENT)?;
            for row in rows {
                match row {
                    Row::Skill { id, record } => skill.execute(params![id, record, row.shard()])?,
                    Row::Agent { id, status, record } => agent.execute(params![id, status, record, row.shard()])?,
                    Row::Conversation {
                        id,
                        skill,
                        state,
                        agent_id,
                        consumer_id,
                        record,
                    } => conversation.execute(params![id, skill, state, agent_id, consumer_id, record, row.shard()])?,
                    Row::Consumer { id, record } => consumer.execute(params![id, record, row.shard()])?,
                    Row::DeleteConversation(id) => forget_conversation.execute(params![id])?,
                    Row::DeleteConsumer(id) => forget_consumer.execute(params![id])?,
                    Row::Event {
                        node,
                        id,
                        skill,
                        kind,
                        record,
                    } => event.execute(params![&**node, id, skill, kind, record])?,
                    Row::TrimEvents { node, trim } => {
                        let (sql, bound) = trim.statement();
                        tx.execute(sql, params![&**node, bound])?
                    }
                    Row::LogApplied(n) => tx.execute(super::SET_LOG_APPLIED, params![n.to_string()])?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }
}
